"""Which files of the shared package `infkit` a piece of code needs: the files its import
statements reach, directly or through each other.

Two copies are made from it, so that neither carries code it never runs: the worker's code
folder of every grading job (sandbox.prepare_code_dir: what worker.py and speed.py import) and
the Gradescope zip (staff/build.py: what the autograder's modules import). The walk reads import
statements anywhere in a file, inside functions too, so a lazy import counts like any other; only
a module's `if __name__ == "__main__":` block, which runs when the file is a program, is left out.
"""

import ast
from pathlib import Path

PACKAGE = "infkit"


def _module_file(root: Path, dotted: str) -> Path | None:
    """The file of a module under `root` (a package's __init__.py), or None if there is none."""
    base = root.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _package_of(root: Path, path: Path) -> str | None:
    """The dotted package that holds `path` when it lies under root/infkit, else None."""
    try:
        parts = path.relative_to(root).with_suffix("").parts
    except ValueError:
        return None
    if not parts or parts[0] != PACKAGE:
        return None
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def _is_main_block(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`, whose body runs only when the file is run as a program."""
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _imported(root: Path, path: Path) -> set[str]:
    """Dotted names of the infkit modules (or names inside them) that a file imports, leaving out
    its `if __name__ == "__main__":` block (a module imported as a library never runs it)."""
    names = set()
    package = _package_of(root, path)
    tree = ast.parse(path.read_text(), str(path))
    tree.body = [node for node in tree.body if not _is_main_block(node)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue  # a relative import outside infkit (the autograder's own modules)
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def infkit_files(entries, root: Path) -> list[Path]:
    """Every infkit file under `root` that the `entries` (files) import, with the __init__.py of
    each package on the way, sorted."""
    found: set[Path] = set()
    todo = [Path(e) for e in entries]
    while todo:
        path = todo.pop()
        for dotted in _imported(root, path):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way, then the module itself
                file = _module_file(root, ".".join(parts[:i]))
                if file is not None and file not in found:
                    found.add(file)
                    todo.append(file)
    return sorted(found)
