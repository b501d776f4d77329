"""The static screen (autograder/screen.py): it refuses uploads that reach into the grader or
the interpreter, never a real student's file, and a refused upload gets a valid results.json
with every row 0, one message naming the line and the construct, and a flag for staff."""

import json

import pytest
from test_autograder import assert_valid

from autograder import harness, rubric, screen
from infkit import paths
from tests.submissions import student_corpus, variants


def kit_corpus() -> dict[str, str]:
    """Every model.py the kit holds that a student could have written: the solution, the
    starter, the other correct implementations, every buggy variant, every realistic student
    file."""
    files = {
        "solution/model.py": paths.SOLUTION_MODEL.read_text(),
        "starter/model.py": paths.STARTER_MODEL.read_text(),
        "variants.cacheless_speculative": variants.cacheless_speculative(),
        "variants.speculative_without_bonus": variants.speculative_without_bonus(),
    }
    files.update({f"variants.BUGGY[{n}]": variants.buggy(n) for n in variants.BUGGY})
    files.update({f"student_corpus[{n}]": student_corpus.build(n) for n in student_corpus.CORPUS})
    return files


def test_no_file_of_the_kits_corpus_is_refused():
    files = kit_corpus()
    refused = {name: r.flag for name, text in files.items() if (r := screen.screen(text)) is not None}
    assert len(files) == 4 + len(variants.BUGGY) + len(student_corpus.CORPUS) == 29
    assert refused == {}, f"{len(refused)} of {len(files)} refused: {refused}"


# (snippet, the construct the message must name), each appended to the starter
REFUSED = [
    ("from infkit import checks", "from infkit import"),
    ("import infkit.checks as c", "import infkit.checks"),
    ("import autograder.harness", "import autograder.harness"),
    ("import speed", "import speed"),
    ("import worker", "import worker"),
    ("from solution.model import GPT", "from solution.model import"),
    ("from . import checks", "from . import"),
    ("import gc", "import gc"),
    ("import ctypes", "import ctypes"),
    ("import importlib", "import importlib"),
    ("import builtins", "import builtins"),
    ("import inspect", "import inspect"),
    ("import pickle", "import pickle"),
    ("import runpy", "import runpy"),
    ("import sys\nmods = sys.modules", ".modules (not called)"),
    ("import sys\nf = sys._getframe(1)", "._getframe"),
    ("import torch\nmodule = torch.sys", ".sys"),
    ("def f():\n    pass\ng = f.__globals__", ".__globals__"),
    ("def f():\n    pass\nc = f.__code__", ".__code__"),
    ("subs = object.__subclasses__()", ".__subclasses__"),
    ("m = type(1).__mro__", ".__mro__"),
    ("b = __builtins__", "__builtins__"),
    ("imp = __import__('infkit')", "__import__"),
    ("g = globals()", "globals"),
    ("name = 'x' + '1'\nexec(name)", "exec() of a string built at run time"),
    ("src = 'pass'\neval(src)", "eval() of a string built at run time"),
    ("code = compile(open('x').read(), 'x', 'exec')", "compile() of a string built at run time"),
    ("exec('import infkit')", "import infkit"),  # a literal is screened as code
    ("import sys\ngetattr(sys, 'mod' + 'ules')", "getattr() of a name built at run time"),
    ("import sys\ngetattr(sys, 'modules')", ".modules (not called)"),
    ("x = getattr", "getattr used as a value"),
    ("d = {}\nv = d['__builtins__']", "'__builtins__'"),
    ("import os\nfor _ in os.walk('/'):\n    pass", ".walk"),
    ("import os\nnames = os.listdir('..')", ".listdir"),
    ("from pathlib import Path\nfiles = list(Path('/').rglob('model.py'))", ".rglob"),
    ("import torch\nstate = torch.load('w.pt', weights_only=False)", "weights_only=False"),
    ("import torch.utils.cpp_extension as ext", ".cpp_extension"),
    ("from torch.utils.cpp_extension import load_inline", ".cpp_extension"),
    ("import sys\nsys.settrace(None)", ".settrace"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame", ".__traceback__"),
    ("v = vars()", "vars() of anything but self"),
    ("from torch import load\nstate = load('w.pt', weights_only=False)", "weights_only=False"),
    ("import torch\nloads = torch.serialization.pickle.loads", ".pickle"),
    ("import types\nc = types.CodeType", ".CodeType"),
    ("import operator\nget = operator.attrgetter('f_back')", "f_back"),
    ("import operator\nget = operator.attrgetter('sys.modules')", ".sys"),
    (
        "import operator\nname = 'x'\nget = operator.attrgetter(name)",
        "attrgetter() of a name built at run time",
    ),
]


@pytest.mark.parametrize("snippet,construct", REFUSED)
def test_each_route_into_the_grader_is_refused_with_its_line(snippet, construct):
    starter = variants.starter_text()
    refusal = screen.screen(starter + "\n" + snippet + "\n")
    assert refusal is not None, snippet
    assert construct in refusal.construct, refusal
    first_line = starter.count("\n") + 2
    assert first_line <= refusal.line <= first_line + snippet.count("\n"), refusal
    assert f"line {refusal.line}" in refusal.message and refusal.construct in refusal.message


# Near misses that real model code writes: allowed
ALLOWED = [
    "import torch\nm = torch.nn.Linear(2, 2)\nn = len(list(m.modules()))",
    "import torch\nf = torch.compile",
    "import re\np = re.compile('a+')",
    "import torch\nx = torch.stack([torch.ones(1)])",
    "import sys\nprint('hi', file=sys.stderr)",
    "class A:\n    def f(self):\n        return getattr(self, 'kv_cache', None), vars(self), self.__dict__",
    "exec('x = 1')",
    "import torch\nimport io\nstate = torch.load(io.BytesIO(b''), weights_only=True) if False else None",
    "import os\nhere = os.path.dirname(os.path.abspath(__file__))",
    "print(type(1).__name__, int.__doc__)",
    "import math, copy, dataclasses, typing, functools, itertools, contextlib, warnings, time",
    "from transformers import GPT2LMHeadModel",
]


@pytest.mark.parametrize("snippet", ALLOWED)
def test_what_model_code_writes_is_allowed(snippet):
    assert screen.screen(variants.starter_text() + "\n" + snippet + "\n") is None


def test_files_python_cannot_compile_are_left_to_the_worker():
    """A syntax error is the student's import error, as the worker reports it; so are null bytes
    and a nesting too deep to parse."""
    assert screen.screen("def broken(:\n") is None
    assert screen.screen(b"x = 1\0\n") is None
    assert screen.screen("x = " + "(" * 5000 + ")" * 5000) is None


def test_a_refused_upload_is_never_run_and_says_why(tmp_path, monkeypatch):
    """The forged-probe upload (issue 28, item 1: the starter swapping infkit.checks' probes for
    ones that report what the judge expects) gets 0 on every row with the refusal's message and
    a flag, without a single worker: nothing of the file ran."""
    ran = []
    monkeypatch.setattr(harness.Grader, "__init__", lambda *a, **k: ran.append(1))
    sub = tmp_path / "submission"
    sub.mkdir()
    text = variants.hostile("forges_probes", tmp_path, paths.ROOT)
    (sub / "model.py").write_text(text)
    results = harness.grade(sub)
    assert_valid(results)
    assert not ran and results["score"] == 0 and len(results["tests"]) == len(rubric.TESTS)
    line = text.splitlines().index("from infkit import checks as _checks") + 1
    flag = f"refused: model.py line {line}: from infkit import ..."
    assert results["extra_data"]["flags"] == [flag]
    for row in results["tests"]:
        assert row["score"] == 0 and row["output"].startswith(f"REFUSED: model.py line {line}: from infkit")
        assert row["extra_data"]["flags"] == [flag]
    assert "REFUSED" in results["output"]
    json.dumps(results)


def test_staff_can_grade_without_the_screen(tmp_path, monkeypatch):
    """AUTOGRADER_SCREEN=off (the harness's environment, which no upload sets) lets staff see
    what a flagged upload does inside the sandbox; the sandbox's own tests rely on it."""
    path = tmp_path / "model.py"
    path.write_text(variants.starter_text() + "\nimport gc\n")
    assert screen.screen_upload(path).construct == "import gc"
    monkeypatch.setenv(screen.SCREEN_ENV, "off")
    assert screen.screen_upload(path) is None


# issue 28's uploads (variants.HOSTILE_POINTS): those the screen refuses, and those it lets
# through to the sandbox (there they earn what the code itself deserves)
REFUSED_UPLOADS = (
    "forges_probes",
    "forges_probes_via_sys_modules",
    "keyring_channel",
    "walks_up_to_solution",
)


def test_the_screen_refuses_exactly_the_uploads_that_reach_into_the_grader(tmp_path):
    refused = {
        name
        for name in variants.HOSTILE_POINTS
        if screen.screen(variants.hostile(name, tmp_path, paths.ROOT))
    }
    assert refused == set(REFUSED_UPLOADS)


@pytest.mark.parametrize("name", REFUSED_UPLOADS)
def test_a_refused_upload_of_issue_28_gets_its_points(tmp_path, name):
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "model.py").write_text(variants.hostile(name, tmp_path, paths.ROOT))
    results = harness.grade(sub)
    assert_valid(results)
    assert results["score"] == variants.HOSTILE_POINTS[name] and results["extra_data"]["flags"][0].startswith(
        "refused: "
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(variants.HOSTILE_POINTS) - set(REFUSED_UPLOADS)))
def test_an_admitted_upload_of_issue_28_gets_its_points_in_a_full_grading(tmp_path, name):
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "model.py").write_text(variants.hostile(name, tmp_path, paths.ROOT))
    results = harness.grade(sub)
    assert_valid(results)
    lost = [(r["name"], r["output"][:300]) for r in results["tests"] if r["score"] < r["max_score"]]
    assert results["score"] == variants.HOSTILE_POINTS[name], lost
