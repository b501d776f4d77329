"""Generate the student's starter/model.py from solution/model.py.

In the solution, each piece students write sits between marker comments:

        # BEGIN SOLUTION <piece>
        # STUB raise NotImplementedError("TODO(<piece>): ...")
        ...reference code...
        # END SOLUTION

The starter keeps everything outside the markers, turns the `# STUB ` lines into code (same
indentation) and drops the rest of the region. `python -m staff.starter --check` fails when
the committed starter differs from what the solution generates.
"""

import argparse
import re
import sys
from pathlib import Path

from infkit import pieces
from infkit.paths import SOLUTION_MODEL, STARTER_MODEL

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION (\w+)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
STUB = re.compile(r"^(\s*)# STUB ?(.*)$")
# The starter's first lines speak to the student who opens it (the file is theirs from then on);
# that it is generated is the staff's business (this module and the kit's README). The counts
# of pieces follow the registry (infkit/pieces.py).
_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
HEADER = (
    f"# Your model.py: fill in every TODO(...) stub, in the README's order ({_WORDS[len(pieces.CHECKED)]} "
    f"pieces, plus {_WORDS[len(pieces.OPTIONAL)]}\n# optional); `pytest tests_public` checks each piece.\n"
)
PIECES = pieces.NAMES  # the solution's regions, in this order (the registry: infkit/pieces.py)


def strip_solution(source: str) -> tuple[str, list[str]]:
    """Return (starter source, names of the regions replaced)."""
    out, pieces, region = [], [], None
    for lineno, line in enumerate(source.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line)
        if begin:
            if region:
                raise ValueError(f"line {lineno}: BEGIN SOLUTION inside region {region!r}")
            region = begin.group(2)
            pieces.append(region)
            continue
        if END.match(line):
            if not region:
                raise ValueError(f"line {lineno}: END SOLUTION without BEGIN")
            region = None
            continue
        if region is None:
            out.append(line)
        else:
            stub = STUB.match(line)
            if stub:
                out.append(stub.group(1) + stub.group(2) + "\n")
    if region:
        raise ValueError(f"region {region!r} is never closed")
    text = "".join(out)
    if "SOLUTION" in text:
        raise ValueError("a SOLUTION marker survived stripping")
    return HEADER + text, pieces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="fail if the starter is stale")
    parser.add_argument("--solution", type=Path, default=SOLUTION_MODEL)
    parser.add_argument("--out", type=Path, default=STARTER_MODEL)
    args = parser.parse_args(argv)
    starter, pieces = strip_solution(args.solution.read_text())
    pieces = list(dict.fromkeys(pieces))  # a piece may span several regions
    if tuple(pieces) != PIECES:
        print(f"expected pieces {PIECES}, found {tuple(pieces)}", file=sys.stderr)
        return 1
    if args.check:
        if not args.out.exists() or args.out.read_text() != starter:
            print(f"{args.out} is stale: run `make starter` and commit it", file=sys.stderr)
            return 1
        print(f"{args.out} matches {args.solution}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(starter)
    print(f"wrote {args.out} ({len(pieces)} stubs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
