"""Write notebooks/inference.ipynb from notebooks/inference.py (the notebook's source).

    python notebooks/build_notebook.py          # (re)write the notebook
    python notebooks/build_notebook.py --check  # exit 1 if the committed notebook is stale

The source is a plain Python file in jupytext's "percent" format, so ruff lints and formats
its code cells and an editor can run it: `# %% tags=["name"]` starts a code cell,
`# %% [markdown] tags=["name"]` a text cell whose lines are comments (`# ` stripped here).
Every cell carries exactly one tag, which tests and `make notebook-starter` look for. jupytext
reads the same cells from the file (`jupytext --to ipynb`, checked with jupytext 1.19; it also
makes the header comment a cell of its own); this converter exists so that building the
notebook needs nothing beyond nbformat.

Cells hold no logic of their own beyond glue and plots: checks come from infkit.checks and
speed figures from the run.sh benchmark, both through infkit.notebook.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "inference.py"
NOTEBOOK = HERE / "inference.ipynb"
MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
# The "Open in Colab" address in the title cell. It starts as YOUR-ORG; staff put the GitHub
# organisation of the handout repository there and in the README (`make handout` checks).
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+\.ipynb")


class SourceError(ValueError):
    pass


def parse(text: str) -> list[tuple[str, str, str]]:
    """[(tag, "md" | "code", source), ...] of a percent-format file; what comes before the
    first cell marker (a comment about the file) is not a cell."""
    cells, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = MARKER.match(line)
        if match:
            tags = json.loads(match.group("tags") or "[]")
            if len(tags) != 1:
                raise SourceError(f"{SOURCE.name} line {number}: a cell needs exactly one tag, got {tags}")
            current = (tags[0], "md" if match.group("markdown") else "code", [])
            cells.append(current)
        elif line.startswith("# %%"):
            raise SourceError(f"{SOURCE.name} line {number}: not a cell marker this converter reads: {line}")
        elif current is not None:
            current[2].append(line)
    result = []
    for tag, kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "md":
            lines = [_uncomment(tag, line) for line in lines]
        result.append((tag, kind, "\n".join(lines)))
    tags = [tag for tag, _, _ in result]
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise SourceError(f"{SOURCE.name}: tags used twice: {duplicates}")
    return result


def _uncomment(tag: str, line: str) -> str:
    if line == "#":
        return ""
    if not line.startswith("# "):
        raise SourceError(f"{SOURCE.name}: a line of markdown cell [{tag}] is not a comment: {line!r}")
    return line[2:]


CELLS = parse(SOURCE.read_text())
COLAB_URL = COLAB_LINK.search(CELLS[0][2]).group(0)


def build(cells=CELLS) -> nbformat.NotebookNode:
    notebook_cells = []
    for tag, kind, source in cells:
        make = new_markdown_cell if kind == "md" else new_code_cell
        # A fixed id per cell (nbformat would draw random ones) keeps rebuilds byte-identical.
        notebook_cells.append(make(source, id=tag, metadata={"tags": [tag]}))
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        # Colab reads these: open with a GPU runtime and a table of contents.
        "accelerator": "GPU",
        "colab": {"provenance": [], "toc_visible": True, "gpuType": "T4"},
    }
    nb = new_notebook(cells=notebook_cells, metadata=metadata)
    nbformat.validate(nb)
    return nb


def render() -> str:
    return nbformat.writes(build())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed notebook is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not NOTEBOOK.exists() or NOTEBOOK.read_text() != text:
            sys.exit(f"{NOTEBOOK} is stale: run `make notebook-build`")
        print(f"{NOTEBOOK.name} is up to date")
        return
    NOTEBOOK.write_text(text)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
