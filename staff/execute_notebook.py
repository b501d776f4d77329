"""Run notebooks/inference.ipynb headless in a Jupyter kernel, as `make notebook` and CI do.

    python -m staff.execute_notebook            # model.py = INFKIT_MODEL, else the solution: any cell error fails
    python -m staff.execute_notebook --starter  # the untouched starter: it must stop at the first check
                                           # cell with the short "not implemented yet" message

The executed copy goes to build/notebook/ for a look; the committed notebook stays clean.
Without a GPU the notebook picks the tiny offline workload by itself (infkit.notebook).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "notebooks"
NOTEBOOK = HERE / "inference.ipynb"
OUT_DIR = ROOT / "build" / "notebook"
FIRST_STUB = "check-buffers"  # the first piece a student writes
MAX_ERROR_LINES = 4  # a friendly stop is a few lines, not a traceback


def tag(cell) -> str:
    return (cell.metadata.get("tags") or ["?"])[0]


def errors(cell):
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def text_of(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            data = o.get("data", {})
            parts.append(data.get("text/plain", "") if "image/png" not in data else "[figure]\n")
        elif o.output_type == "error":
            parts.append("\n".join(o.traceback) + "\n")
    return "".join(parts)


def execute(model: Path, timeout: int):
    """Execute a fresh copy; returns (notebook, error or None, seconds)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["INFKIT_MODEL"] = str(model)
    # The kernelspec runs "python": make that this interpreter (the kit's .venv).
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # Start where Jupyter would: the notebook's own folder (the set-up cell finds the kit from there).
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as e:
        error = e
    return nb, error, time.perf_counter() - start


def show(nb):
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            print(f"--- [{tag(cell)}]")
            print(text_of(cell).rstrip())


def check_starter_stop(nb) -> list[str]:
    """What is wrong with how the starter run stopped ([] if it stopped as it should)."""
    failed = [c for c in nb.cells if c.cell_type == "code" and errors(c)]
    if not failed:
        return ["the notebook ran to the end on the starter; it should stop at the first stub"]
    cell, problems = failed[0], []
    if tag(cell) != FIRST_STUB:
        problems.append(f"the first error is in cell [{tag(cell)}], expected [{FIRST_STUB}]")
    err = errors(cell)[0]
    lines = "\n".join(err.traceback)
    if err.ename != "Stop":
        problems.append(f"the error is {err.ename}, expected infkit.notebook.Stop (a friendly message)")
    if "not implemented yet" not in lines:
        problems.append("the message does not say 'not implemented yet'")
    if len(err.traceback) > MAX_ERROR_LINES or "Traceback" in lines or 'File "' in lines:
        problems.append(f"the error shows a traceback ({len(err.traceback)} lines), not a short message")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--starter", action="store_true", help="run against starter/model.py and expect a stop"
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)

    if args.starter:
        model = ROOT / "starter" / "model.py"
    else:
        model = Path(os.environ.get("INFKIT_MODEL") or ROOT / "solution" / "model.py")
    nb, error, seconds = execute(model.resolve(), args.timeout)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / ("inference.starter.ipynb" if args.starter else "inference.executed.ipynb")
    nbformat.write(nb, out)
    show(nb)
    print(f"\nexecuted {NOTEBOOK.name} against {model} in {seconds:.0f} s; copy with outputs: {out}")

    if args.starter:
        problems = check_starter_stop(nb)
        if problems:
            sys.exit("starter run: " + "; ".join(problems))
        print(f"starter run stopped at [{FIRST_STUB}] with the friendly message, as it should")
    elif error is not None:
        sys.exit(f"a cell failed:\n{error}")


if __name__ == "__main__":
    main()
