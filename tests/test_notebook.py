"""The Colab notebook: committed copy up to date with its source (notebooks/inference.py),
structure, and its helpers (infkit.notebook).

Executing it in a kernel takes a minute or two: that is `make notebook` / `make notebook-starter`.
"""

import ast
import re
import subprocess
import sys

import nbformat
import pytest

from infkit import checks, paths
from infkit import notebook as nb

NOTEBOOKS = paths.ROOT / "notebooks"


def _builder():
    from staff import build_notebook

    return build_notebook


@pytest.fixture(scope="module")
def builder():
    return _builder()


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOKS / "inference.ipynb", as_version=4)


def _tags(notebook):
    return [c.metadata["tags"][0] for c in notebook.cells]


def test_committed_notebook_is_current(builder):
    committed = (NOTEBOOKS / "inference.ipynb").read_text()
    assert committed == builder.render(), "notebooks/inference.ipynb is stale: run `make notebook-build`"


def test_committed_notebook_is_clean_and_valid(notebook):
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit the notebook without outputs"
            ast.parse(cell.source)  # plain Python: no shell magics, so the headless run sees the same code


def test_one_check_cell_per_piece_in_order(notebook):
    tags = _tags(notebook)
    check_cells = [t for t in tags if t.startswith("check-")]
    assert check_cells == [f"check-{p}" for p in checks.PIECES]
    for cell in notebook.cells:
        tag = cell.metadata["tags"][0]
        if tag.startswith("check-"):
            assert cell.source == f'nb.check("{tag.removeprefix("check-")}")'
    # the set-up comes first, the speed test after every check, Gradescope last
    assert tags.index("setup") < tags.index("check-buffers")
    assert tags.index("bench") > tags.index("check-speculative")
    assert tags[-2:] == ["submit", "download"]


def test_notebook_says_what_the_issue_asks(notebook, builder):
    text = "\n".join(c.source for c in notebook.cells)
    for needle in ("CUBLAS_WORKSPACE_CONFIG", "DEBUG", "Gradescope", "gpt2-large", builder.COLAB_URL):
        assert needle in text, f"the notebook never mentions {needle}"
    assert builder.COLAB_URL in (paths.ROOT / "README.md").read_text(), "README lacks the Open in Colab link"


def test_cells_hold_glue_not_logic(notebook):
    """Checks and timing live in infkit; only the set-up cell (which runs before infkit can
    be imported) may define a function."""
    for cell in notebook.cells:
        if cell.cell_type != "code" or cell.metadata["tags"][0] == "setup":
            continue
        tree = ast.parse(cell.source)
        defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs, f"cell [{cell.metadata['tags'][0]}] defines {defs}: put logic in infkit"
        assert "perf_counter" not in cell.source and "CHECKS" not in cell.source


def test_stop_renders_as_its_message():
    assert nb.Stop("first line\nsecond line")._render_traceback_() == ["first line", "second line"]


def test_check_passes_the_solution(capsys):
    nb.check("buffers", path=paths.SOLUTION_MODEL)
    assert capsys.readouterr().out.startswith("PASS  buffers")


def test_check_stops_politely_on_the_starter():
    with pytest.raises(nb.Stop) as info:
        nb.check("buffers", path=paths.STARTER_MODEL)
    message = str(info.value)
    assert "not implemented yet" in message and "TODO(buffers)" in message


def test_check_points_at_the_students_line(tmp_path):
    source = paths.STARTER_MODEL.read_text()
    broken = tmp_path / "model.py"
    broken.write_text(source.replace("raise NotImplementedError(", "raise RuntimeError(", 1))
    line = next(
        i for i, text in enumerate(broken.read_text().splitlines(), 1) if "raise RuntimeError(" in text
    )
    with pytest.raises(nb.Stop) as info:
        nb.check("buffers", path=broken)
    assert "your code raised RuntimeError" in str(info.value)
    assert f"model.py line {line}" in str(info.value)


def test_figure_tolerates_missing_keys():
    result = {"kv": {"tokens_per_s": 12.5}, "acceptance_rate": None}
    assert nb.figure(result, "kv", "tokens_per_s") == 12.5
    assert nb.figure(result, "naive", "tokens_per_s") is None
    assert nb.figure(result, "acceptance_rate") is None
    assert nb.fmt(None) == "n/a" and nb.fmt(2.0, unit="x") == "2.00x"


def test_bench_accepts_every_option_the_notebook_passes():
    """The notebook drives run.sh's program by its command line: the option names must exist."""
    help_text = subprocess.run(
        [sys.executable, "-m", "infkit.bench", "--help"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    offered = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    used = {"--impl", "--json", "--batch-size", "--num-speculative"}
    for work in nb.WORKLOADS.values():
        for key in ("run", "batch", "spec"):
            used |= {flag for flag in nb.bench_command(**work[key]) if flag.startswith("--")}
    assert used <= offered, f"infkit.bench lacks {sorted(used - offered)}"


def test_the_speculative_sweep_sizes_the_latency_test():
    """The num_speculative sweep times run.sh's latency test alone (speculative decoding's
    workload), at the sizes the notebook asks for: options of the other test would be ignored."""
    from infkit.bench import cli

    for work in nb.WORKLOADS.values():
        command = nb.bench_command(**work["spec"])
        (latency,) = cli.parse(command[command.index("infkit.bench") + 1 :]).workloads
        assert latency.test == "latency" and "speculative" in latency.methods
        assert (latency.prompt_len, latency.new_tokens) == (
            work["spec"]["latency_prompt_len"],
            work["spec"]["latency_new_tokens"],
        )


def test_the_source_is_a_percent_format_file(builder):
    """Every cell of the .ipynb comes from notebooks/inference.py, as jupytext reads it; the
    build refuses what the notebook's tests could not find instead of dropping it."""
    text = (NOTEBOOKS / "inference.py").read_text()
    assert text.count("\n# %%") == len(builder.CELLS)
    with pytest.raises(builder.SourceError, match="a raw cell"):
        builder.parse('# %% [raw] tags=["a"]\nx\n')
    with pytest.raises(builder.SourceError, match="metadata besides its tag"):
        builder.parse('# %% tags=["a"] collapsed=true\nx = 1\n')
    with pytest.raises(builder.SourceError, match="exactly one tag"):
        builder.parse('# %% tags=["a", "b"]\nx = 1\n')
    with pytest.raises(builder.SourceError, match="used twice"):
        builder.parse('# %% tags=["a"]\nx = 1\n# %% tags=["a"]\ny = 2\n')
    with pytest.raises(builder.SourceError, match="exactly one tag"):
        builder.parse("# %%\nx = 1\n")
    assert builder.parse(
        '# header\n# %% [markdown] tags=["t"]\n# # Title\n#\n# text\n\n\n# %% tags=["c"]\nx = 1\n\n'
    ) == [
        ("t", "md", "# Title\n\ntext"),
        ("c", "code", "x = 1"),
    ]


def test_first_cell_says_how_to_get_a_gpu_and_to_save_model_py(notebook):
    first = notebook.cells[0].source
    assert "Runtime > Change runtime type > T4 GPU" in first and "download `model.py` first" in first


def test_cpu_runtime_in_colab_is_told_how_to_switch():
    text = nb.Env(in_colab=True, device="cpu", online=False).describe()
    assert "Runtime > Change runtime type > T4 GPU" in text and "download model.py first" in text
    assert "Change runtime" not in nb.Env(in_colab=False, device="cpu", online=False).describe()


def test_speed_figures_on_a_cpu_are_not_held_against_the_goals():
    """The goals are the run's own (its JSON's `figures`), shown only with the released weights."""
    result = {"kv_speedup_vs_naive": 1.7, "spec_speedup_vs_kv": 1.1, "acceptance_rate": 0.5}
    result["figures"] = {"kv_speedup_vs_naive": {"goal": 10.0}, "spec_speedup_vs_kv": {"goal": 2.0}}
    cpu = nb.speed_summary(result, nb.Env(in_colab=True, device="cpu", online=False))
    assert "1.70x" in cpu and "T4 figure >" not in cpu and "not how fast it is" in cpu
    assert "goal" not in cpu
    gpu = nb.speed_summary(result, nb.Env(in_colab=True, device="cuda", online=True))
    assert "1.70x   (course's T4 figure > 10x)" in gpu and "not how fast" not in gpu
    assert "not graded" in gpu and "goal" not in gpu


def test_detect_asks_the_benchmarks_hub_check(monkeypatch):
    """One hub check for the kit: the notebook's GPU runtime uses the benchmark's, so either
    offline variable keeps both off the network."""
    import contextlib

    import torch

    from infkit import bench_models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(bench_models.socket, "create_connection", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.delenv("INFKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert nb.detect().online
    for variable in ("INFKIT_OFFLINE", "HF_HUB_OFFLINE"):
        with monkeypatch.context() as m:
            m.setenv(variable, "1")
            assert not nb.detect().online, variable
    found = [p.name for p in (paths.ROOT / "infkit").rglob("*.py") if "create_connection" in p.read_text()]
    assert found == ["bench_models.py"], found
