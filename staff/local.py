"""`make grade`: the Gradescope flow on this machine, in a temporary root.

    python -m staff.local path/to/model.py [--results results.json]

Lays out ROOT/submission (your file, or a folder's contents) and ROOT/results as Gradescope
does, runs the harness with AUTOGRADER_ROOT pointing there, copies results.json out and
prints a readable summary. `grade_in_root` is the same flow as a function: `make grade-all`
(staff/grade_all.py) runs it once per submission of a class.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autograder import sandbox
from infkit import paths

# The harness gets this long after a polite interrupt (SIGINT: it kills its worker and cleans
# up its folders in its `finally`) before it is killed outright.
INTERRUPT_GRACE_S = 15.0


@dataclass
class Graded:
    """What one run of the harness left behind."""

    results: dict | None  # results.json as the harness wrote it; None when it wrote none
    returncode: int | None  # the harness's exit status (None: killed by us)
    seconds: float
    timed_out: bool = False  # killed after `timeout_s`
    interrupted: bool = False  # stopped because `stop` was set: its results must not be kept


def grade_in_root(
    submission: Path,
    *,
    upload_name: str | None = None,
    tests: str | None = None,
    row: str | None = None,
    log=None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    worker_user: str | None = None,
) -> Graded:
    """Grade one upload (a file or a folder as uploaded) exactly as Gradescope does: the harness
    in its own process on ROOT/submission, results read back from ROOT/results/results.json.

    upload_name: the name the file gets in ROOT/submission (default: its own name).
    tests: pieces for AUTOGRADER_TESTS (their public tests only), e.g. "buffers,prefill".
    row: AUTOGRADER_ROW, the rows whose name contains it (rubric.select_rows), e.g. "KV 5/5".
    log: a file object for the harness's output (default: this process's stdout).
    The harness runs in its own session, so a Ctrl-C at the terminal reaches only the caller;
    setting `stop` or passing `timeout_s` interrupts it (SIGINT, then SIGKILL)."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gradescope-root-") as tmp:
        root = Path(tmp)
        sub = root / "submission"
        if submission.is_dir():
            shutil.copytree(submission, sub, symlinks=True)
        else:
            sub.mkdir()
            shutil.copy(submission, sub / (upload_name or submission.name))
        (root / "results").mkdir()
        sandbox.provide_worker_python(sandbox.worker_user())  # as root: a Python the worker account can run
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHONPATH=str(paths.ROOT))
        env.pop("AUTOGRADER_TESTS", None)
        if worker_user:  # parallel gradings as root: each its own account (end_job kills by account)
            env["AUTOGRADER_WORKER_USER"] = worker_user
        env.pop("AUTOGRADER_ROW", None)
        if tests:
            env["AUTOGRADER_TESTS"] = tests
        if row:
            env["AUTOGRADER_ROW"] = row
        proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.harness"],
            cwd=paths.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,
        )
        timed_out = interrupted = False
        deadline = None if timeout_s is None else start + timeout_s
        try:
            while proc.poll() is None:
                if stop is not None and stop.is_set():
                    interrupted = True
                    break
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:  # interrupted, timed out, or the caller got an exception
                _stop_group(proc)
        results_file = root / "results" / "results.json"
        results = None
        if results_file.is_file() and not (interrupted or timed_out):
            results = json.loads(results_file.read_text())
        code = None if (interrupted or timed_out) else proc.returncode
    return Graded(results, code, time.monotonic() - start, timed_out, interrupted)


def _stop_group(proc: subprocess.Popen):
    """SIGINT to the harness's process group (its `finally` kills its worker), then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", type=Path, help="a model.py, or a folder as uploaded")
    parser.add_argument("--results", type=Path, default=Path("build/results.json"))
    parser.add_argument(
        "--row",
        help="re-run only the rows whose name contains this (and the speed tests that gate them), "
        'e.g. "KV 5/5 generate_kv: edge_lengths (hidden"',
    )
    args = parser.parse_args(argv)
    graded = grade_in_root(args.submission, tests=os.environ.get("AUTOGRADER_TESTS"), row=args.row)
    if graded.results is None:
        print("no results.json was written: that is a harness bug", file=sys.stderr)
        return 1
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(graded.results, indent=2))
    print(f"\nresults.json: {args.results}  (score {graded.results['score']:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
