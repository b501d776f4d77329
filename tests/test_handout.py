"""The student handout holds what students use and nothing of the staff's: every infkit module
that run.sh, the public tests or the notebook imports ships, infkit reaches nothing of the staff
tools or the kit's tests; and its build refuses the YOUR-ORG placeholder of the Colab link."""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infkit import paths
from staff import build

ROOT = paths.ROOT
INFKIT = ROOT / "infkit"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebook", ROOT / "staff" / "build_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def infkit_imports(source: str, package_relative: bool) -> set[str]:
    """The infkit modules a piece of Python imports (any depth: imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("infkit.")}
        elif isinstance(node, ast.ImportFrom):
            relative = node.level >= 1 and package_relative
            if node.module == "infkit" or (relative and node.module is None):
                found |= {a.name for a in node.names}
            elif node.module and (node.module.startswith("infkit.") or relative):
                found.add(node.module.removeprefix("infkit.").split(".")[0])
    return {name for name in found if (INFKIT / f"{name}.py").is_file() or (INFKIT / name).is_dir()}


def source_of(name: str) -> str:
    """An infkit module's source, or all of a subpackage's (infkit/bench/)."""
    if (INFKIT / name).is_dir():
        return "\n".join(f.read_text() for f in sorted((INFKIT / name).glob("*.py")))
    return (INFKIT / f"{name}.py").read_text()


def reachable_from_the_handout() -> set[str]:
    """infkit modules reached from what students run: run.sh (python -m infkit.bench), the
    public tests, and the notebook's code cells (through infkit.notebook)."""
    todo = {"bench"}
    for test in (ROOT / "handout" / "tests_public").glob("*.py"):
        todo |= infkit_imports(test.read_text(), package_relative=False)
    for _, kind, source in _builder().CELLS:
        if kind == "code":
            todo |= infkit_imports(source, package_relative=False)
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= infkit_imports(source_of(name), package_relative=True)
    return seen


def shipped_modules() -> set[str]:
    return {Path(arc.split("/")[1]).stem for arc, _ in build.handout_files() if arc.startswith("infkit/")}


def test_run_sh_runs_infkit_bench():
    assert "-m infkit.bench" in (ROOT / "run.sh").read_text()


def test_everything_the_handout_runs_ships():
    reached = reachable_from_the_handout()
    assert {"bench", "notebook", "checks", "requirements", "hints"} <= reached
    missing = reached - shipped_modules()
    assert not missing, f"the handout runs infkit modules it does not ship: {sorted(missing)}"


def test_the_shared_package_stands_alone():
    """infkit is what students and Gradescope share: no module of it imports the staff tools,
    the kit's tests, the autograder or the reference, so copying the folder is enough."""
    others = {"staff", "tests", "autograder", "solution", "starter"}
    for path in sorted(INFKIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            reached = {n.split(".")[0] for n in names} & others
            assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}"


def test_the_notebook_source_does_not_ship():
    assert "notebooks/inference.py" not in dict(build.handout_files())


def test_placeholder_stops_the_handout_build(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "placeholder_problems", lambda root=ROOT: ["README.md"])
    monkeypatch.delenv("ALLOW_PLACEHOLDER", raising=False)
    with pytest.raises(SystemExit) as info:
        build.build_handout(tmp_path)
    message = str(info.value)
    assert "YOUR-ORG" in message and "ALLOW_PLACEHOLDER=1" in message and "README.md" in message
    assert not (tmp_path / "handout.zip").exists()
    monkeypatch.setenv("ALLOW_PLACEHOLDER", "1")
    assert build.build_handout(tmp_path).is_file()


def test_placeholder_problems_reads_the_files(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "README.md").write_text(
        "[badge](https://colab.research.google.com/github/course-org/x.ipynb)"
    )
    (tmp_path / "notebooks" / "inference.ipynb").write_text('{"source": "github/YOUR-ORG/inference-kit"}')
    assert build.placeholder_problems(tmp_path) == ["notebooks/inference.ipynb"]
    # the kit as committed still has it (staff replace it before a term)
    if "YOUR-ORG" in (ROOT / "README.md").read_text():
        assert "README.md" in build.placeholder_problems()


def test_the_colab_link_is_the_same_everywhere():
    url = _builder().COLAB_URL
    assert url in (ROOT / "README.md").read_text(), "README's Open in Colab badge differs from the notebook's"
    assert "/blob/main/notebooks/inference.ipynb" in url


def test_readme_says_publish_the_handout_not_the_kit():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "make handout" in text and "never the kit itself" in text


def test_make_passes_allow_placeholder_through(tmp_path):
    """`make handout ALLOW_PLACEHOLDER=1` must reach the build's environment."""
    probe = tmp_path / "Makefile"
    probe.write_text('show:\n\t@echo "[$$ALLOW_PLACEHOLDER]"\n')
    env = {k: v for k, v in os.environ.items() if k != "ALLOW_PLACEHOLDER"}
    out = subprocess.run(
        ["make", "-s", "-f", str(probe), "ALLOW_PLACEHOLDER=1"], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "[1]", out


# ---------------------------------------------------------------------------------------
# What the built handout says: every file speaks to a student.

STAFF_COMMANDS = re.compile(
    r"make (?:starter|check-starter|test-slow|grade|grade-all|grade-under-load|handout|autograder|written|"
    r"lock-py310|notebook-build|notebook-starter|notebook|format|lint)\b"
    r"|python -m (?:autograder|staff|tests)\b"
)
# a path a file cites: it must be in the handout
CITED = re.compile(
    r"(?<![\w/.])((?:docs|autograder|staff|handout|solution|starter|written|notebooks|infkit|tests_public|tests)/[\w./-]*\w)"
)


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """The handout as built, unpacked: {path inside inference-kit/: text}, and its folder."""
    out = tmp_path_factory.mktemp("handout")
    zip_path = build.build_handout(out, allow_placeholder=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(out)
        names = [n for n in z.namelist() if not n.endswith("/")]
    root = out / "inference-kit"
    texts = {n.removeprefix("inference-kit/"): (out / n).read_text() for n in names}
    return texts, root


def readable(name: str, text: str) -> str:
    """What a student reads in a file: a notebook's cell sources, any other file as it is."""
    if name.endswith(".ipynb"):
        return "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
    return text


def test_handout_pyproject_is_the_students(handout):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    texts, root = handout
    config = tomllib.loads(texts["pyproject.toml"])
    assert set(config) == {"tool"} and set(config["tool"]) == {"pytest"}, config
    options = config["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests_public"]
    assert "markers" not in options and "addopts" not in options  # no slow tests to deselect
    for name in options["testpaths"] + options["pythonpath"]:
        assert (root / name).exists(), name


def test_bare_pytest_in_the_handout_collects_the_public_tests(handout):
    _, root = handout
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "INFKIT_MODEL"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests_public/") for line in collected), out.stdout
    assert "Warning" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_no_staff_commands_in_the_handout(handout):
    texts, _ = handout
    texts = {n: readable(n, t) for n, t in texts.items()}
    found = {n: STAFF_COMMANDS.findall(t) for n, t in texts.items() if STAFF_COMMANDS.search(t)}
    assert not found, found
    addressed = [n for n, t in texts.items() if re.search(r"\bstaff:", t, re.IGNORECASE)]
    assert not addressed, f"instructions addressed to staff: {addressed}"


def test_no_solution_or_rubric_in_the_handout(handout):
    """'solution' only as the path the tools look for in the course's own tree ("solution"),
    never in words; the rubric not at all."""
    texts, _ = handout
    for name, text in texts.items():
        text = readable(name, text)
        words = text.replace('"solution"', "").replace("SOLUTION_MODEL", "")
        assert not re.search(r"solution", words, re.IGNORECASE), (
            name,
            re.findall(r".{40}solution.{40}", words, re.I),
        )
        assert "rubric" not in text.lower(), name


def test_the_starter_and_pieces_speak_to_the_student(handout):
    texts, _ = handout
    first = texts["model.py"].splitlines()[0]
    assert first.startswith("# Your model.py") and "generated" not in first, first
    pieces_doc = ast.get_docstring(ast.parse(texts["infkit/pieces.py"]))
    assert "Adding a piece" not in pieces_doc and "rubric" not in pieces_doc, pieces_doc


def test_every_cited_path_ships(handout):
    texts, _ = handout
    missing = {}
    for name, text in texts.items():
        for path in CITED.findall(readable(name, text)):
            shipped = path in texts or any(n.startswith(path.rstrip("/") + "/") for n in texts)
            if not shipped:
                missing.setdefault(name, set()).add(path)
    assert not missing, missing


def test_fp16_on_a_t4_in_the_notebook_and_help(handout):
    texts, _ = handout
    from infkit.bench import cli

    notebook = readable("notebooks/inference.ipynb", texts["notebooks/inference.ipynb"])
    help_text = " ".join(cli._parser().format_help().split())
    for text in (notebook, help_text):
        assert "fp16 on a T4" in text, text[:200]
        for sentence in re.findall(r"[^.]*\bbf16\b[^.]*", text):
            assert "Ampere" in sentence, sentence


def test_a_check_that_never_ends_stops_with_a_message(handout, tmp_path):
    """A loop that never ends in model.py fails its public test after the limit, with words, not
    a hang; the other pieces pass."""
    _, root = handout
    model = tmp_path / "model.py"
    model.write_text(
        paths.SOLUTION_MODEL.read_text()
        + "\n\ndef _forever(self, *args, **kwargs):\n    while True:\n        pass\n\n\nGPT.generate_kv = _forever\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(INFKIT_MODEL=str(model), INFKIT_TEST_TIMEOUT_S="3")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests_public",
            "-k",
            "generate_kv or buffers",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "1 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "generate_kv: still running after 3 s" in done.stdout and "Traceback" not in done.stdout
