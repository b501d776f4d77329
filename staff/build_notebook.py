"""Write notebooks/inference.ipynb from notebooks/inference.py (the notebook's source).

    python -m staff.build_notebook          # (re)write the notebook
    python -m staff.build_notebook --check  # exit 1 if the committed notebook is stale

The source is a plain Python file in jupytext's "percent" format, so ruff lints and formats
its code cells and an editor can run it: `# %% tags=["name"]` starts a code cell,
`# %% [markdown] tags=["name"]` a text cell whose lines are comments. jupytext (pinned in
requirements.txt) reads it; this script keeps the cells, checks that every cell carries exactly
one tag (tests and `make notebook-starter` look for them), and writes the notebook with fixed
cell ids and Colab's metadata, so that a rebuild is byte-identical. A comment before the first
cell marker describes the file and is not a cell.

Cells hold no logic of their own beyond glue and plots: checks come from infkit.checks and
speed figures from the run.sh benchmark, both through infkit.notebook.
"""

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"
SOURCE = HERE / "inference.py"
NOTEBOOK = HERE / "inference.ipynb"
# The "Open in Colab" address in the title cell. It starts as YOUR-ORG; staff put the GitHub
# organisation of the handout repository there and in the README (`make handout` checks).
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+\.ipynb")
KINDS = {"markdown": "md", "code": "code"}
# Cell metadata jupytext derives from the layout of the source, not from what it says.
LAYOUT = {"lines_to_next_cell"}


class SourceError(ValueError):
    pass


def parse(text: str) -> list[tuple[str, str, str]]:
    """[(tag, "md" | "code", source), ...] of a percent-format file, as jupytext reads it."""
    cells = jupytext.reads(text, fmt="py:percent").cells
    if cells and not cells[0].metadata.get("tags") and _is_header(cells[0]):
        cells = cells[1:]
    result = []
    for number, cell in enumerate(cells, 1):
        tags = cell.metadata.get("tags", [])
        if len(tags) != 1:
            raise SourceError(f"{SOURCE.name}, cell {number}: a cell needs exactly one tag, got {tags}")
        if cell.cell_type not in KINDS:
            raise SourceError(
                f"{SOURCE.name}, cell [{tags[0]}]: a {cell.cell_type} cell (only code and markdown)"
            )
        other = set(cell.metadata) - {"tags"} - LAYOUT
        if other:
            raise SourceError(f"{SOURCE.name}, cell [{tags[0]}]: metadata besides its tag: {sorted(other)}")
        result.append((tags[0], KINDS[cell.cell_type], cell.source))
    tags = [tag for tag, _, _ in result]
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise SourceError(f"{SOURCE.name}: tags used twice: {duplicates}")
    return result


def _is_header(cell) -> bool:
    """The file's opening comment, which jupytext reads as a code cell of its own."""
    return cell.cell_type == "code" and all(line.startswith("#") for line in cell.source.splitlines())


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
