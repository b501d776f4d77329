"""`make grade`: the Gradescope flow on this machine, in a temporary root.

    python -m autograder.local path/to/model.py [--results results.json]

Lays out ROOT/submission (your file, or a folder's contents) and ROOT/results as Gradescope
does, runs the harness with AUTOGRADER_ROOT pointing there, copies results.json out and
prints a readable summary.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder import sandbox
from infkit import paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", type=Path, help="a model.py, or a folder as uploaded")
    parser.add_argument("--results", type=Path, default=Path("build/results.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gradescope-root-") as tmp:
        root = Path(tmp)
        sub = root / "submission"
        if args.submission.is_dir():
            shutil.copytree(args.submission, sub)
        else:
            sub.mkdir()
            shutil.copy(args.submission, sub / args.submission.name)
        (root / "results").mkdir()
        # as root on a development machine whose Python the worker account cannot reach
        sandbox.provide_worker_python(sandbox.worker_user())
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHONPATH=str(paths.ROOT))
        subprocess.run([sys.executable, "-m", "autograder.harness"], cwd=paths.ROOT, env=env, check=False)
        results_file = root / "results" / "results.json"
        if not results_file.is_file():
            print("no results.json was written: that is a harness bug", file=sys.stderr)
            return 1
        results = json.loads(results_file.read_text())
        args.results.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(results_file, args.results)
    print(f"\nresults.json: {args.results}  (score {results['score']:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
