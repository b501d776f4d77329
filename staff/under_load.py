"""Grade the solution repeatedly while CPU-bound processes compete with the grader: the check
that load never costs a correct submission points (a benchmark, not a CI test).

    python -m staff.under_load [--runs 10] [--hogs 2] [--cpu-quota 0.5] [--file solution/model.py]

Each run is a full `make grade` of the file beside `--hogs` busy-looping processes and, with
`--cpu-quota F` (root, a writable cgroup), inside a cgroup that lets the grading use F of one
core. Prints one line per run (score, seconds, rows not measured) and a summary; exits 1 if any
run of the solution lost points to anything but "not measured".
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from infkit import paths

from .local import grade_in_root

KEPT = paths.ROOT / "build" / "under-load"


def _hog():
    # Its own session, as a neighbour in another container would be: where the kernel groups
    # scheduling by session (autogroup), hogs left in ours would share one slice between them
    # while each worker, which runs in a session of its own, got a whole core.
    os.setsid()
    x = 0
    while True:
        x += 1


@contextlib.contextmanager
def cpu_quota(fraction: float):
    """Run the body, and every process it starts, in a cgroup allowed `fraction` of one core
    (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`); the hogs stay outside it."""
    period = 100_000
    name = f"infkit-under-load-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    group = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/cpu") / name
    try:
        group.mkdir()
        if v2:
            (group / "cpu.max").write_text(f"{int(fraction * period)} {period}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(fraction * period)))
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as e:
        sys.exit(f"--cpu-quota needs root and a writable cpu cgroup ({group}: {e})")
    try:
        yield
    finally:
        (group.parent / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()


def _one_run(run: int, file: Path) -> tuple[bool, bool]:
    """Grade `file` once; print its line; (lost points to anything but "not measured", full marks)."""
    KEPT.mkdir(parents=True, exist_ok=True)  # each run's log and results.json, to read a failure
    with open(KEPT / f"run-{run}.log", "w") as log:
        graded = grade_in_root(file, upload_name="model.py", log=log)
    (KEPT / f"run-{run}.json").write_text(json.dumps(graded.results, indent=1))
    rows = (graded.results or {}).get("tests", [])
    total = sum(r["max_score"] for r in rows)
    unmeasured = [r["name"] for r in rows if r.get("extra_data", {}).get("stage") == "not_measured"]
    failed = [r["name"] for r in rows if r["status"] != "passed" and r["name"] not in unmeasured]
    score = (graded.results or {}).get("score", 0)
    print(
        f"run {run}: {score:g}/{total:g} in {graded.seconds:.0f} s, load {open('/proc/loadavg').read().split()[0]}"
        f"; not measured: {unmeasured or 'none'}; failed: {failed or 'none'}",
        flush=True,
    )
    return bool(failed), bool(rows) and score == total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=2, help="busy-looping processes beside the grader")
    parser.add_argument("--cpu-quota", type=float, help="the grading's share of one core (e.g. 0.5)")
    parser.add_argument("--file", type=Path, default=paths.SOLUTION_MODEL)
    args = parser.parse_args(argv)
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    lost = full = 0
    quota = cpu_quota(args.cpu_quota) if args.cpu_quota else contextlib.nullcontext()
    try:
        with quota:  # entered after the hogs started: they compete from outside the quota
            for run in range(1, args.runs + 1):
                failed, full_marks = _one_run(run, args.file)
                lost, full = lost + failed, full + full_marks
    finally:
        for h in hogs:
            h.kill()
    print(
        f"{full}/{args.runs} runs got full marks; {args.runs - lost}/{args.runs} lost no points to anything "
        f"but 'not measured' ({time.strftime('%Y-%m-%d')})"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
