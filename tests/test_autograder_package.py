"""The two zips: the Gradescope autograder (layout, scripts, runs as Gradescope would) and the
student handout (its contents, no solution code, the public tests work inside it)."""

import hashlib
import importlib.metadata
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder import imports, rubric
from infkit import paths
from staff import build, starter


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    return build.build_autograder(out), build.build_handout(out, allow_placeholder=True)


def extract(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            z.extract(info, dest)
            mode = info.external_attr >> 16
            if mode:
                (dest / info.filename).chmod(stat.S_IMODE(mode))
    return dest


def test_autograder_zip_layout(zips):
    with zipfile.ZipFile(zips[0]) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "autograder/requirements.txt", "autograder/harness.py"} <= names
        assert {
            "autograder/selfcheck.py",
            "autograder/confine.py",
            "autograder/screen.py",
        } <= names  # setup.sh, the sandbox and the static screen need them
        assert "starter/model.py" in names and not any(n.startswith("solution/") for n in names)
        for script in ("setup.sh", "run_autograder"):
            data = z.read(script)
            assert data.startswith(b"#!/usr/bin/env bash\n") and b"\r" not in data
            assert b"set -euo pipefail" in data
            assert (z.getinfo(script).external_attr >> 16) & 0o111, f"{script} is not executable"
        reqs = z.read("autograder/requirements.txt").decode()
        pins = [line for line in reqs.splitlines() if line and not line.startswith("#")]
        assert pins and all("==" in line for line in pins) and "torch==2.13.0" in pins


def test_python310_constraints_hold_the_pins(zips):
    """The Python 3.10 lock (setup.sh's pip constraints on Gradescope) must agree with every pin
    of the autograder's requirements.txt, or Gradescope's build would fail to resolve."""
    here = Path(__file__).resolve().parent.parent / "autograder"

    def pins(text):
        lines = [line.split("#")[0].strip() for line in text.splitlines()]
        return dict(line.lower().replace("_", "-").split("==") for line in lines if line)

    lock = pins((here / "constraints-py310.txt").read_text())
    required = pins((here / "requirements.txt").read_text())
    for name, version in required.items():
        if name != "torch":  # installed first, from the PyTorch CPU index
            assert lock.get(name) == version, (name, version, lock.get(name))
    assert "torch" not in lock
    with zipfile.ZipFile(zips[0]) as z:
        assert z.read("autograder/constraints-py310.txt") == (here / "constraints-py310.txt").read_bytes()
    assert "constraints-py310.txt" in (here / "setup.sh").read_text()


def requirement_closure(roots, python_version="3.10") -> set[str]:
    """Every distribution that installing `roots` brings in, by the requirements recorded in
    this environment's metadata, with markers evaluated for Gradescope's Python."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.12", "extra": ""}
    seen, todo = set(), [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # only needed on 3.10 (tomli, exceptiongroup): no metadata here to follow
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(canonicalize_name(req.name))
    return seen


def test_python310_lock_holds_every_installed_package():
    """Everything in the grader's venv is pinned on 3.10, torch's own dependencies included
    (torch itself comes from the PyTorch CPU index), and the lock holds nothing else."""
    here = Path(__file__).resolve().parent.parent / "autograder"
    lock = {
        canonicalize_name(line.split("==")[0])
        for line in (here / "constraints-py310.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    lines = (here / "requirements.txt").read_text().splitlines()
    closure = requirement_closure([Requirement(line).name for line in lines if line and line[0] != "#"])
    assert {"sympy", "networkx", "jinja2", "markupsafe", "mpmath", "filelock", "fsspec"} <= closure
    assert closure - {"torch"} <= lock, sorted(closure - {"torch"} - lock)
    assert lock <= closure, sorted(lock - closure)


def test_setup_installs_as_locked():
    """apt-get update before any apt-get install; torch alone from the CPU index (its
    dependencies then come from PyPI under the lock); the build proves itself."""
    text = (paths.ROOT / "autograder" / "setup.sh").read_text()
    code = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    installs = [i for i, line in enumerate(code) if line.startswith("apt-get install")]
    assert installs and all("apt-get update" in code[i - 1] for i in installs)
    torch_line = next(line for line in code if "download.pytorch.org/whl/cpu" in line)
    assert "--no-deps" in torch_line and '"torch==' in torch_line
    assert "-m autograder.selfcheck" in text


def test_run_autograder_as_gradescope_would(zips, tmp_path):
    """Unpack the zip as /autograder/source, run run_autograder with the root moved."""
    source = extract(zips[0], tmp_path / "source")
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "model.py").write_text(paths.SOLUTION_MODEL.read_text())
    venv = Path(sys.executable).parent.parent
    env = dict(
        os.environ, AUTOGRADER_ROOT=str(tmp_path), INFKIT_VENV=str(venv), AUTOGRADER_TESTS="buffers,prefill"
    )
    env.pop("PYTHONPATH", None)
    subprocess.run([str(source / "run_autograder")], env=env, check=True, timeout=300)
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    public = [t for t in rubric.TESTS if t.piece in ("buffers", "prefill") and t.visibility == rubric.VISIBLE]
    assert [t["name"] for t in results["tests"]] == [t.name for t in public], results
    assert all(t["status"] == "passed" for t in results["tests"]), results
    assert results["score"] == 7


@pytest.mark.slow
def test_selfcheck_from_the_unpacked_zip(zips, tmp_path):
    """setup.sh's last step, as on Gradescope: from the unpacked source, with this venv."""
    source = extract(zips[0], tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOGRADER_ROOT")}
    done = subprocess.run(
        [sys.executable, "-m", "autograder.selfcheck"],
        cwd=source,
        env=dict(env, PYTHONPATH=str(source)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "selfcheck: ok" in done.stdout, done.stdout + done.stderr


def test_handout_contents(zips):
    with zipfile.ZipFile(zips[1]) as z:
        names = set(z.namelist())
        assert all(n.startswith("inference-kit/") for n in names)
        for required in ("model.py", "run.sh", "Makefile", "requirements.txt", "pyproject.toml", "README.md"):
            assert f"inference-kit/{required}" in names
        assert "inference-kit/tests_public/test_public.py" in names
        assert "inference-kit/infkit/paths.py" in names
        if (paths.ROOT / "notebooks/inference.ipynb").exists():
            assert "inference-kit/notebooks/inference.ipynb" in names
        if (paths.ROOT / "written/template.tex").exists():
            assert "inference-kit/written/template.tex" in names
        forbidden = ("solution/", "written/key", "answers", "autograder/", "tests/", "staff/")
        assert not [n for n in names if any(f in n.removeprefix("inference-kit/") for f in forbidden)]
        assert z.read("inference-kit/model.py") == paths.STARTER_MODEL.read_bytes()
        assert (z.getinfo("inference-kit/run.sh").external_attr >> 16) & 0o111


def solution_only_lines() -> list[str]:
    """Lines of the solution's marked regions that the starter does not have (the answers)."""
    solution = paths.SOLUTION_MODEL.read_text()
    starter_text, _ = starter.strip_solution(solution)
    lines, inside = [], False
    for line in solution.splitlines():
        if starter.BEGIN.match(line):
            inside = True
        elif starter.END.match(line):
            inside = False
        elif inside and not starter.STUB.match(line):
            text = line.strip()
            if len(text) > 25 and text not in starter_text:
                lines.append(text)
    assert len(lines) > 20  # the regions hold real code
    return lines


def test_no_written_key_material_leaves_the_staff_tree(zips):
    """The written part's calculator computes the key's answers: staff only."""
    for zip_path in zips:
        with zipfile.ZipFile(zip_path) as z:
            names = z.namelist()
        assert not [
            n for n in names if n.endswith(("inference_math.py", "key.tex", "answers.json", "answers.tex"))
        ]
        assert not [n for n in names if "build/written" in n]


def test_handout_has_no_solution_code(zips):
    answers = solution_only_lines()
    with zipfile.ZipFile(zips[1]) as z:
        for name in z.namelist():
            text = z.read(name).decode("utf-8", "replace")
            leaked = [a for a in answers if a in text]
            assert not leaked, f"{name} contains solution code: {leaked[:3]}"


@pytest.mark.parametrize("which", ["starter", "solution"])
def test_public_tests_inside_the_handout(zips, tmp_path, which):
    kit = extract(zips[1], tmp_path) / "inference-kit"
    if which == "solution":
        (kit / "model.py").write_text(paths.SOLUTION_MODEL.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("INFKIT_MODEL", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests_public"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if which == "solution":
        assert done.returncode == 0, done.stdout[-3000:]
        assert "6 passed" in done.stdout
    else:
        assert done.returncode == 1 and "6 failed" in done.stdout, done.stdout[-3000:]
        assert done.stdout.count("not implemented yet") >= 6
        assert "Traceback" not in done.stdout


@pytest.mark.parametrize("script", ["setup.sh", "run_autograder"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(paths.ROOT / "autograder" / script)], check=True)


def test_the_zip_is_the_autograder_folder_and_the_infkit_it_imports(zips):
    """What Gradescope gets is a copy of folders: autograder/ whole (its entry points also at the
    root), the infkit files its modules import and nothing else of infkit, the given code."""
    with zipfile.ZipFile(zips[0]) as z:
        names = {n for n in z.namelist() if not n.endswith("/")}
    own = {p.relative_to(paths.ROOT).as_posix() for p in build.folder_files(paths.ROOT / "autograder")}
    grader = sorted((paths.ROOT / "autograder").glob("*.py"))
    needed = {p.relative_to(paths.ROOT).as_posix() for p in imports.infkit_files(grader, paths.ROOT)}
    assert names == own | needed | set(build.GRADESCOPE_ENTRY_POINTS) | {"starter/model.py"}
    assert {"infkit/checks.py", "infkit/optional.py", "infkit/sampling_check.py"} <= needed
    assert not {"infkit/notebook.py", "infkit/requirements.py"} & needed  # the students' alone


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(paths.ROOT).as_posix()
        for p in build.folder_files(folder)
    }


def test_no_staff_or_test_file_in_either_zip(zips):
    """Neither zip holds a file of staff/ or tests/, under its own name or any other (by content)."""
    kept_back = {**_file_hashes(paths.ROOT / "staff"), **_file_hashes(paths.ROOT / "tests")}
    kept_back.pop(hashlib.sha256(b"").hexdigest(), None)
    for zip_path in zips:
        with zipfile.ZipFile(zip_path) as z:
            for name in z.namelist():
                inner = name.removeprefix("inference-kit/")
                assert not inner.startswith(("staff/", "tests/")), (zip_path.name, name)
                digest = hashlib.sha256(z.read(name)).hexdigest()
                assert digest not in kept_back, (zip_path.name, name, kept_back.get(digest))


IMPORT_ALL = """
import importlib, pathlib, sys
root = pathlib.Path.cwd().resolve()
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    if parts[0] not in ("autograder", "infkit") or parts[-1] == "__main__":
        continue  # a __main__ module runs its program when imported
    name = ".".join(parts).removesuffix(".__init__")
    module = importlib.import_module(name)
    assert pathlib.Path(module.__file__).resolve().is_relative_to(root), (name, module.__file__)
print("imported", sum(1 for m in sys.modules if m.split(".")[0] in ("autograder", "infkit")))
"""


@pytest.mark.parametrize("which", ["autograder", "handout"])
def test_each_zip_imports_from_a_clean_environment(zips, tmp_path, which):
    """Unpacked on its own, with none of the kit's folders on the path, every module of the zip
    imports, and from the zip's own copy."""
    root = extract(zips[0] if which == "autograder" else zips[1], tmp_path)
    if which == "handout":
        root = root / "inference-kit"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INFKIT_MODEL", "AUTOGRADER_ROOT")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "imported" in done.stdout, done.stdout + done.stderr[-3000:]
