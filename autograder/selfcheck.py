"""setup.sh's proof that the build can grade: run once on Gradescope, after the install.

    python -m autograder.selfcheck     # prints "selfcheck: ok", or what is wrong and exits 1

It checks, in order:
1. the packages import, the offline tokenizer round-trips, and torch is a CPU build (a CUDA
   build needs far more than a worker's address-space cap: every worker would crash on import);
2. as root, the worker account exists and can start the worker's Python under the worker's
   confinement (otherwise the harness refuses to grade: student code never runs as root);
3. the starter, graded through run_autograder as Gradescope runs it (the unprivileged account,
   the real limits), gets for every test the record "not implemented yet": the worker had torch
   and the kit (from the template it was forked from) and reached the student's stub. "The
   starter scored 0" is not enough: a worker that cannot import torch also scores 0.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from infkit import paths

from . import confine, sandbox

STARTER_TESTS = "buffers"  # one public test: a worker's start-up and the stub's record
NOT_IMPLEMENTED = "is not implemented yet"


def install_problem() -> str | None:
    """Why the installed packages cannot grade, or None."""
    try:
        import tiktoken  # noqa: F401
        import torch
        import transformers  # noqa: F401

        from infkit import tokenizer
    except Exception as e:
        return f"the grader's packages do not import ({type(e).__name__}: {e})."
    if tokenizer.decode(tokenizer.encode("Call me Ishmael.")) != "Call me Ishmael.":
        return "the offline GPT-2 tokenizer does not round-trip text."
    cuda_wheels = sorted(
        d.metadata["Name"]
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("nvidia-")
    )
    if torch.version.cuda is not None or cuda_wheels:
        return (
            f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda}; "
            f"{', '.join(cuda_wheels) or 'no nvidia-* wheels'}): it cannot load under a worker's "
            f"{sandbox.MEMORY_MB} MB address-space cap and wastes gigabytes. Install the CPU build: "
            "pip install --index-url https://download.pytorch.org/whl/cpu torch==<version>."
        )
    return None


def run_autograder_script() -> Path:
    """run_autograder: at the root of the unpacked zip, under autograder/ in the repository."""
    for candidate in (paths.ROOT / "run_autograder", paths.ROOT / "autograder" / "run_autograder"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("run_autograder is neither in the source root nor in autograder/")


def starter_problem(tests: str = STARTER_TESTS) -> str | None:
    """Grade the starter through run_autograder in a temporary Gradescope root; why its records
    are not all "not implemented yet", or None."""
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # as /autograder: the worker account passes through it
        (root / "submission").mkdir()
        (root / "submission" / "model.py").write_bytes(paths.STARTER_MODEL.read_bytes())
        env = dict(
            os.environ,
            AUTOGRADER_ROOT=str(root),
            AUTOGRADER_SOURCE=str(paths.ROOT),
            AUTOGRADER_TESTS=tests,
            INFKIT_VENV=sys.prefix,
        )
        done = subprocess.run(
            ["bash", str(run_autograder_script())], env=env, capture_output=True, text=True, timeout=600
        )
        results_file = root / "results" / "results.json"
        if not results_file.is_file():
            return f"run_autograder wrote no results.json (exit {done.returncode}):\n{done.stdout[-2000:]}"
        results = json.loads(results_file.read_text())
    rows = results.get("tests") or []
    if not rows:
        return "grading the starter produced no test results."
    wrong = [r for r in rows if r.get("status") != "failed" or NOT_IMPLEMENTED not in r.get("output", "")]
    if wrong:
        shown = "\n".join(f"  {r.get('name')}: {r.get('output', '')[:400]}" for r in wrong)
        return (
            'grading the starter should give "not implemented yet" for every test, but:\n'
            f"{shown}\nThe harness's log:\n{done.stdout[-3000:]}"
        )
    return None


def problems(tests: str = STARTER_TESTS) -> list[str]:
    """Every reason the build cannot grade, in the order a fix should take them."""
    found = []
    install = install_problem()
    if install:
        return [install]  # nothing below can work without the packages
    _, account = sandbox.choose_worker()
    if account:
        return [account]
    for warning in confine.warnings(confine.probe()):
        print(f"selfcheck: {warning}")  # a weaker sandbox, reported, not fatal
    starter = starter_problem(tests)
    if starter:
        found.append(starter)
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"selfcheck: FAILED: {problem}", file=sys.stderr)
    if not found:
        user = sandbox.worker_user()
        who = f"uid {user[0]}" if user else f"uid {os.geteuid()} (not root: the worker runs as this user)"
        print(f"selfcheck: ok (the starter's worker ran as {who}; torch is a CPU build)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
