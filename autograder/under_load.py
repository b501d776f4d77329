"""Grade the solution repeatedly while CPU-bound processes compete with the grader: the check
that load never costs a correct submission points (a benchmark, not a CI test).

    python -m autograder.under_load [--runs 10] [--hogs 2] [--file solution/model.py]

Each run is a full `make grade` of the file beside `--hogs` busy-looping processes. Prints one
line per run (score, seconds, rows not measured) and a summary; exits 1 if any run of the
solution lost points to anything but "not measured".
"""

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from infkit import paths

from .local import grade_in_root


def _hog():
    x = 0
    while True:
        x += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=2, help="busy-looping processes beside the grader")
    parser.add_argument("--file", type=Path, default=paths.SOLUTION_MODEL)
    args = parser.parse_args(argv)
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    lost = 0
    try:
        for run in range(1, args.runs + 1):
            with open(Path("/dev/null"), "w") as quiet:
                graded = grade_in_root(args.file, upload_name="model.py", log=quiet)
            rows = (graded.results or {}).get("tests", [])
            total = sum(r["max_score"] for r in rows)
            unmeasured = [r["name"] for r in rows if r["output"].startswith("NOT MEASURED")]
            failed = [r["name"] for r in rows if r["status"] != "passed" and r["name"] not in unmeasured]
            score = (graded.results or {}).get("score", 0)
            print(
                f"run {run}: {score:g}/{total:g} in {graded.seconds:.0f} s, load {open('/proc/loadavg').read().split()[0]}"
                f"; not measured: {unmeasured or 'none'}; failed: {failed or 'none'}",
                flush=True,
            )
            lost += bool(failed)
    finally:
        for h in hogs:
            h.kill()
    print(
        f"{args.runs - lost}/{args.runs} runs lost no points to anything but 'not measured' ({time.strftime('%Y-%m-%d')})"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
