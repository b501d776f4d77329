"""Build the two zips staff hand out:

  build/autograder.zip  upload to Gradescope: setup.sh and run_autograder at the root, the
                        harness, infkit, and the given code (starter/model.py) as the reference
  build/handout.zip     for students: one folder inference-kit/ with the starter model.py,
                        infkit, the public tests, run.sh, the notebook, the written template

No solution code goes in either (tests/test_autograder_package.py checks it), and the handout
leaves out the staff's own tools (NOT_FOR_STUDENTS). The handout is what students get and what a
student-facing repository is made from: never publish the kit itself. Its build stops while the
Colab link still says YOUR-ORG (ALLOW_PLACEHOLDER=1 lets a local try through).
    python -m autograder.build autograder|handout [--out build]
"""

import argparse
import os
import sys
import zipfile
from pathlib import Path

from infkit import paths

ROOT = paths.ROOT
HERE = Path(__file__).parent
AUTOGRADER_FILES = (
    "__init__.py",
    "confine.py",
    "harness.py",
    "load.py",
    "rows.py",
    "rubric.py",
    "sandbox.py",
    "screen.py",
    "selfcheck.py",
    "speed.py",
    "text.py",
    "verdicts.py",
    "worker.py",
    "local.py",
)


# infkit modules that stay with staff: the written part's calculator computes every answer of
# the written key, so it must never reach students (nor does the grader need it).
STAFF_ONLY = ("inference_math.py",)
# ... and the staff's own tools, which students never run: measuring fixture pairs
# (docs/fixtures.md), the verify-cost probe, and making the starter from the solution.
# tests/test_handout.py checks that nothing the handout runs imports them.
NOT_FOR_STUDENTS = STAFF_ONLY + ("pairs.py", "verify_cost.py", "starter.py")

# The "Open in Colab" link starts with this placeholder; the handout must not ship it.
PLACEHOLDER = "YOUR-ORG"
PLACEHOLDER_FILES = ("README.md", "notebooks/inference.py", "notebooks/inference.ipynb")


def _package(folder: Path, leave_out=STAFF_ONLY):
    """The .py files of a package that may leave the staff tree, without caches."""
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts and p.name not in leave_out)


def placeholder_problems(root: Path = ROOT) -> list[str]:
    """The files that still hold the YOUR-ORG placeholder of the Colab link."""
    return [
        name
        for name in PLACEHOLDER_FILES
        if (root / name).is_file() and PLACEHOLDER in (root / name).read_text()
    ]


def check_placeholder(allow: bool | None = None):
    """Stop the handout build while the Colab link still says YOUR-ORG, unless allowed
    (ALLOW_PLACEHOLDER=1, for a local try; the kit's tests pass allow=True)."""
    if allow is None:
        allow = os.environ.get("ALLOW_PLACEHOLDER") == "1"
    found = placeholder_problems()
    if found and not allow:
        raise SystemExit(
            f"make handout: {', '.join(found)} still link to Colab through {PLACEHOLDER}. Put the GitHub "
            "organisation of the handout repository there (notebooks/inference.py, then "
            "`make notebook-build`; the README's badge), or set ALLOW_PLACEHOLDER=1 for a local try."
        )


def _add(z: zipfile.ZipFile, arcname: str, data: bytes, executable: bool = False):
    info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))  # fixed: reproducible zips
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    z.writestr(info, data)


def _script(path: Path) -> bytes:
    data = path.read_bytes()
    if b"\r" in data or not data.startswith(b"#!"):
        raise SystemExit(f"{path}: scripts need a #! line and Unix line endings")
    return data


def build_autograder(out: Path) -> Path:
    target = out / "autograder.zip"
    with zipfile.ZipFile(target, "w") as z:
        _add(z, "setup.sh", _script(HERE / "setup.sh"), executable=True)
        _add(z, "run_autograder", _script(HERE / "run_autograder"), executable=True)
        _add(z, "requirements.txt", (HERE / "requirements.txt").read_bytes())
        _add(z, "constraints-py310.txt", (HERE / "constraints-py310.txt").read_bytes())
        for name in AUTOGRADER_FILES:
            _add(z, f"autograder/{name}", (HERE / name).read_bytes())
        for p in _package(ROOT / "infkit"):
            _add(z, p.relative_to(ROOT).as_posix(), p.read_bytes())
        _add(z, "starter/model.py", paths.STARTER_MODEL.read_bytes())  # the reference: given code only
    return target


def handout_files() -> list[tuple[str, Path]]:
    """(path inside inference-kit/, source file) for everything students get."""
    files = [
        ("model.py", paths.STARTER_MODEL),
        ("README.md", HERE / "handout_README.md"),
        ("Makefile", HERE / "handout_Makefile"),
        ("requirements.txt", ROOT / "requirements.txt"),
        ("pyproject.toml", HERE / "handout_pyproject.toml"),  # pytest's settings only: no staff tools
        ("run.sh", ROOT / "run.sh"),
    ]
    files += [(p.relative_to(ROOT).as_posix(), p) for p in _package(ROOT / "infkit", NOT_FOR_STUDENTS)]
    files += [(f"tests_public/{p.name}", p) for p in sorted((HERE / "tests_public").glob("*.py"))]
    for optional in ("notebooks/inference.ipynb", "written/template.tex"):
        if (ROOT / optional).is_file():
            files.append((optional, ROOT / optional))
    return files


def build_handout(out: Path, allow_placeholder: bool | None = None) -> Path:
    check_placeholder(allow_placeholder)
    target = out / "handout.zip"
    with zipfile.ZipFile(target, "w") as z:
        for arcname, src in handout_files():
            _add(z, f"inference-kit/{arcname}", src.read_bytes(), executable=arcname == "run.sh")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["autograder", "handout"])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    target = build_autograder(args.out) if args.what == "autograder" else build_handout(args.out)
    with zipfile.ZipFile(target) as z:
        print(f"wrote {target} ({len(z.namelist())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
