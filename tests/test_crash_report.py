"""A crash of the student's code inside a check: the public tests and `python -m infkit.checks`
show the error and the line of model.py first, in a few lines, and the traceback on request."""

import os
import subprocess
import sys

import pytest

from infkit import paths
from tests.submissions import variants

ROOT = paths.ROOT
KEYS = "keys = self.kv_cache[0, :B, :, :end]  # (B, nh, end, hs)"
BROKEN = "keys = self.kv_cache[0, :B, :, :end, 99]  # (B, nh, end, hs)"


@pytest.fixture
def crashing(tmp_path):
    """The solution whose attention decode indexes past the cache's last dimension."""
    path = tmp_path / "model.py"
    path.write_text(variants.substitute(variants.solution_text(), (KEYS, BROKEN)))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if BROKEN in text)
    return path, line


def _run(args, model, traceback=False):
    env = dict(os.environ, INFKIT_MODEL=str(model))
    env.pop("INFKIT_TRACEBACK", None)
    if traceback:
        env["INFKIT_TRACEBACK"] = "1"
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _student_first(text: str, line: int):
    lines = [s for s in text.splitlines() if s.strip()]
    first = next(i for i, s in enumerate(lines) if "your code raised IndexError" in s)
    assert f"at model.py line {line}, in decode: {BROKEN.split('  #')[0]}" in lines[first + 1], text
    assert "INFKIT_TRACEBACK=1" in "\n".join(lines[first : first + 4])
    assert "Traceback" not in text and "infkit/checks.py" not in text, text


def test_public_test_shows_the_students_line_first(crashing):
    path, line = crashing
    test = ROOT / "handout" / "tests_public" / "test_public.py"
    out = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test), "-k", "attn_decode"], path
    )
    assert out.returncode == 1, out.stdout
    _student_first(out.stdout, line)
    full = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test), "-k", "attn_decode"],
        path,
        traceback=True,
    )
    assert "infkit/checks.py" in full.stdout and "IndexError" in full.stdout


def test_checks_cli_shows_the_students_line_first(crashing):
    path, line = crashing
    out = _run([sys.executable, "-m", "infkit.checks", str(path), "attn_decode"], path)
    assert out.returncode == 1
    _student_first(out.stdout, line)
    assert "python -m infkit.checks" in out.stdout
    full = _run([sys.executable, "-m", "infkit.checks", str(path), "attn_decode"], path, traceback=True)
    assert "Traceback" in full.stdout and "infkit/checks.py" in full.stdout
