"""Build the two zips staff hand out, each a copy of folders, so that what a folder holds is what
ships (no list here says what to leave out):

  build/autograder.zip  upload to Gradescope: the folder autograder/ whole, its two entry points
                        (setup.sh, run_autograder) also at the zip's root where Gradescope runs
                        them, the files of infkit/ that the autograder's modules import
                        (autograder/imports.py), and the given code (starter/model.py) as the
                        reference
  build/handout.zip     for students, one folder inference-kit/: the folder handout/ whole (its
                        README, Makefile, pyproject.toml, public tests), infkit/ whole (the code
                        students share with Gradescope), the starter as model.py, and the client's
                        top-level files students use (STUDENT_FILES)

Staff tools live in staff/ and the kit's own tests and self-test submissions in tests/: neither
folder is copied (tests/test_autograder_package.py checks both zips). The handout is what students
get and what a student-facing repository is made from: never publish the kit itself. Its build
stops while the Colab link still says YOUR-ORG (ALLOW_PLACEHOLDER=1 lets a local try through).
    python -m staff.build autograder|handout [--out build]
"""

import argparse
import os
import sys
import zipfile
from pathlib import Path

from autograder import imports
from infkit import paths

ROOT = paths.ROOT
AUTOGRADER = ROOT / "autograder"
HANDOUT = ROOT / "handout"
# Gradescope runs these two from the zip's root.
GRADESCOPE_ENTRY_POINTS = ("setup.sh", "run_autograder")
# The client's top-level files that students use besides handout/ and infkit/.
STUDENT_FILES = ("run.sh", "requirements.txt", "notebooks/inference.ipynb", "written/template.tex")

# The "Open in Colab" link starts with this placeholder; the handout must not ship it.
PLACEHOLDER = "YOUR-ORG"
PLACEHOLDER_FILES = ("README.md", "notebooks/inference.py", "notebooks/inference.ipynb")


def folder_files(folder: Path) -> list[Path]:
    """Every file of a folder, without caches (__pycache__, and hidden ones like .pytest_cache)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix != ".pyc"
        and not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(folder).parts)
    )


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


def autograder_files() -> list[tuple[str, Path]]:
    """(path inside the zip, source file) for everything Gradescope gets."""
    own = folder_files(AUTOGRADER)
    files = [(name, AUTOGRADER / name) for name in GRADESCOPE_ENTRY_POINTS]
    files += [(p.relative_to(ROOT).as_posix(), p) for p in own]
    needed = imports.infkit_files([p for p in own if p.suffix == ".py"], ROOT)
    files += [(p.relative_to(ROOT).as_posix(), p) for p in needed]
    files.append(("starter/model.py", paths.STARTER_MODEL))  # the reference: given code only
    return files


def build_autograder(out: Path) -> Path:
    target = out / "autograder.zip"
    with zipfile.ZipFile(target, "w") as z:
        for arcname, src in autograder_files():
            if src.name in GRADESCOPE_ENTRY_POINTS:
                _add(z, arcname, _script(src), executable=True)
            else:
                _add(z, arcname, src.read_bytes())
    return target


def handout_files() -> list[tuple[str, Path]]:
    """(path inside inference-kit/, source file) for everything students get."""
    files = [("model.py", paths.STARTER_MODEL)]
    files += [(p.relative_to(HANDOUT).as_posix(), p) for p in folder_files(HANDOUT)]
    files += [(p.relative_to(ROOT).as_posix(), p) for p in folder_files(ROOT / "infkit")]
    files += [(name, ROOT / name) for name in STUDENT_FILES if (ROOT / name).is_file()]
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
