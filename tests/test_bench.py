"""The benchmark works end to end on tiny workloads. These tests check that figures are
printed, the JSON is written in its declared shape, and noise is flagged; never how fast
anything is (timing belongs to run.sh)."""

import json
import os
import subprocess
import sys
import types
import typing

import pytest
import torch

from infkit import bench_models, fixtures, loading, paths
from infkit.bench import analyse, cli, machine, main, measure, probes, setup, summary
from infkit.bench.config import Workload
from infkit.bench.measure import Row
from infkit.bench.methods import counted_call

TINY = ["--pair", "tiny", "--prompt-len", "12", "--new-tokens", "8", "--samples", "2"]
TINY += ["--latency-prompt-len", "8", "--latency-new-tokens", "16", "--latency-samples", "2"]
# the notebook's and the figures: each keeps its key, now from its own test
KEYS = {
    "kv_speedup_vs_naive": "throughput",
    "kv_vs_transformers": "throughput",
    "spec_speedup_vs_kv_long_prompt": "throughput",
    "spec_speedup_vs_kv": "latency",
    "spec_vs_transformers_assisted": "latency",
    "spec_speedup_vs_kv_agreeing_draft": "latency",
}


def run_bench(tmp_path, *extra):
    out = tmp_path / "bench.json"
    assert main([*TINY, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def assert_declared(report: dict):
    """The JSON holds every key summary.Summary requires, and nothing it does not declare."""
    declared = typing.get_type_hints(summary.Summary)
    assert summary.Summary.__required_keys__ <= set(report), summary.Summary.__required_keys__ - set(report)
    assert set(report) <= set(declared), set(report) - set(declared)
    for figure in report["figures"].values():
        assert set(figure) == set(typing.get_type_hints(summary.FigureJSON))
    assert set(report["machine"]) == set(typing.get_type_hints(summary.MachineJSON))


def test_solution_reports_every_figure_from_its_own_test(tmp_path, capsys):
    report = run_bench(tmp_path, "--batch-size", "1", "2")
    assert_declared(report)
    for key, test in KEYS.items():
        figure = report["figures"][key]
        assert figure["test"] == test, key
        if figure["failure"] is None:  # a ceiling below its figure (noise) has no value
            assert isinstance(report[key], float) and report[key] > 0, key
            assert figure["low"] <= figure["value"] <= figure["high"], key
    assert 0 <= report["acceptance_rate"] <= 1
    assert report["workloads"]["throughput"]["new_tokens"] == 8
    assert report["workloads"]["throughput"]["batch_sizes"] == [1, 2]
    latency = report["workloads"]["latency"]
    assert (latency["prompt_len"], latency["new_tokens"], latency["batch_sizes"]) == (8, 16, [1])
    assert report["workload"]["new_tokens"] == 8 and report["workload"]["batch_sizes"] == [1, 2]  # as before
    assert report["workload"]["draft_head"] == "int8" and report["workload"]["num_speculative"] == 3  # CPU
    assert report["spec_speedup_vs_kv_decode_phase"] > 0 and report["prefill_s"] > 0
    assert report["agreeing_draft_acceptance"] == 1.0
    rows = {(r["test"], r["method"], r["batch"]): r for r in report["rows"]}
    assert ("throughput", "speculative", 2) not in rows  # speculative decoding is batch 1 only
    assert ("latency", "naive", 1) not in rows  # the latency test checks against generate_kv
    # naive runs at the smallest batch only (by default); at batch 2, generate_kv is checked
    # against transformers instead, and each headline ratio comes from the largest batch it has
    assert ("throughput", "naive", 2) not in rows and rows["throughput", "kv", 2]["checked_against"] == "hf"
    # transformers generate: at the largest batch in the throughput test (where its figure is
    # taken), at batch 1 in the latency test
    assert ("throughput", "hf", 1) not in rows and ("latency", "hf", 1) in rows
    assert report["workloads"]["throughput"]["hf_batch_sizes"] == [2]
    assert report["kv_speedup_vs_naive_batch"] == 1 and report["kv_vs_transformers_batch"] == 2
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["status"])
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        if row["method"] != "naive":  # every method's greedy output was checked in the same run
            assert row["matches_naive"] is True, key
    printed = capsys.readouterr().out
    assert "Throughput test" in printed and "Latency test" in printed and "ms/token" in printed
    assert "transformers assisted" in printed and "machine: " in printed


def test_unfinished_model_gets_a_row_not_a_traceback(tmp_path, capsys):
    report = run_bench(tmp_path, "--impl", str(paths.STARTER_MODEL), "--skip", "hf_assisted")
    for test in ("throughput", "latency"):
        rows = {r["method"]: r for r in report["rows"] if r["test"] == test}
        for method in ("kv", "speculative"):
            assert rows[method]["status"].startswith("not implemented yet"), rows[method]
    assert {r["status"] for r in report["rows"] if r["method"] == "naive"} == {"ok"}
    assert report["kv_speedup_vs_naive"] is None and report["spec_speedup_vs_kv"] is None
    assert "not implemented yet" in capsys.readouterr().out


def test_wrong_output_gets_no_speedup(tmp_path):
    """A generate_kv that is fast but wrong must not be credited with a speedup."""
    source = paths.SOLUTION_MODEL.read_text()
    line = "out[:, T + i] = idx_next"
    assert line in source
    broken = tmp_path / "model.py"
    broken.write_text(source.replace(line, "out[:, T + i] = (idx_next + 1) % self.config.vocab_size"))
    report = run_bench(tmp_path, "--impl", str(broken), "--skip", "speculative", "hf_assisted")
    rows = {r["method"]: r for r in report["rows"] if r["test"] == "throughput"}
    assert rows["kv"]["matches_naive"] is False
    assert report["kv_speedup_vs_naive"] is None and report["kv_vs_transformers"] is None
    assert "latency" not in report["workloads"]  # nothing speculative left to compare


def test_naive_at_every_batch_when_asked(tmp_path):
    args = ["--batch-size", "1", "2", "--naive-batch-size", "1", "2", "--skip", "latency"]
    report = run_bench(tmp_path, *args)
    rows = {(r["method"], r["batch"]): r for r in report["rows"]}
    assert rows["naive", 2]["status"] == "ok" and rows["kv", 2]["checked_against"] == "naive"
    assert report["kv_speedup_vs_naive_batch"] == 2
    assert list(report["workloads"]) == ["throughput"]


def test_every_sample_repeats_the_same_call():
    """A row's spread must be the machine's noise, so every sample is the same call on the same
    prompts (batch B the first B of them), never a new prompt whose acceptance differs."""
    calls = []

    def record(batch, new_tokens):
        calls.append((batch.clone(), new_tokens))
        return batch

    w = Workload("throughput", ("kv",), (1, 2), prompt_len=40, new_tokens=3, samples=3, batch_samples=3,
                 naive_samples=0, naive_batch_sizes=(), hf_batch_sizes=())  # fmt: skip
    prompts = measure.prompts_for(w, vocab_size=512, seed=0)
    assert prompts.shape == (2, 40) and not torch.equal(prompts[0], prompts[1])
    progress = types.SimpleNamespace(update=lambda n: None)
    models = types.SimpleNamespace(target=None)  # only speculative rows count target passes
    rows = measure.measure_test(models, {"kv": record}, w, prompts, cli.parse([]), progress)
    assert [len(rows["kv", B].seconds) for B in (1, 2)] == [3, 3]
    timed = [batch for batch, n in calls if n == w.new_tokens and batch.size(1) == 40]
    assert len(timed) == 6
    for batch in timed:
        assert torch.equal(batch, prompts[: batch.size(0)])


def test_the_ceiling_takes_its_turn_among_the_methods():
    """The always-agreeing draft is timed right after the other methods at each sample, so a
    slow drift of the machine cannot put the ceiling below the figure it bounds."""
    order = []

    def method(name):
        return lambda batch, n: order.append(name) or batch

    w = Workload("latency", ("kv", "hf"), (1,), prompt_len=40, new_tokens=3, samples=2, batch_samples=1,
                 naive_samples=0, naive_batch_sizes=(), hf_batch_sizes=(1,))  # fmt: skip
    prompts = measure.prompts_for(w, vocab_size=512, seed=0)
    progress = types.SimpleNamespace(update=lambda n: None)
    models = types.SimpleNamespace(target=None)
    after = lambda rows, B, s, batch: order.append(f"ceiling {s}")  # noqa: E731
    measure.measure_test(
        models, {"kv": method("kv"), "hf": method("hf")}, w, prompts, cli.parse([]), progress, after
    )
    assert order == ["kv", "hf", "kv", "hf", "ceiling 0", "kv", "hf", "ceiling 1"]  # warm-ups first


@torch.no_grad()
def test_no_ceiling_for_a_wrong_speculative_output():
    module = loading.load_model_module(paths.SOLUTION_MODEL)
    draft, target = fixtures.make_pair(module, "tiny")
    models = bench_models.Models(target, draft, "tiny", "stand-in")
    w = cli.parse(TINY).workload("latency")
    prompt = fixtures.random_prompt(1, 8, target.config.vocab_size, seed=2)
    right = target.generate_kv(prompt, w.new_tokens, top_k=1)
    rows = {
        ("kv", 1): Row("latency", "kv", 1, outputs={0: right, 1: right}),
        ("speculative", 1): Row("latency", "speculative", 1, outputs={0: right, 1: right + 1}),
    }
    probes.agreeing_turn(models, w, cli.parse(TINY), rows, 1, 0, prompt)
    assert rows["agreeing", 1].status == "ok" and len(rows["agreeing", 1].seconds) == 1
    probes.agreeing_turn(models, w, cli.parse(TINY), rows, 1, 1, prompt)  # wrong at sample 1
    assert rows["agreeing", 1].status == "dropped"
    probes.agreeing_turn(models, w, cli.parse(TINY), rows, 1, 0, prompt)
    assert not rows["agreeing", 1].seconds  # not timed again


def test_each_test_runs_only_with_something_to_compare():
    """The notebook's sweeps: a throughput sweep leaves the latency test out, and a speculative
    sweep the throughput test, so each reads the rows of the workload it asked for."""
    tests = lambda *skip: [w.test for w in cli.parse(["--skip", *skip]).workloads]  # noqa: E731
    assert tests() == ["throughput", "latency"]
    assert tests("speculative", "hf_assisted") == ["throughput"]
    assert tests("naive", "hf", "hf_assisted") == ["latency"]
    assert tests("throughput") == ["latency"]
    with pytest.raises(SystemExit, match="nothing to measure"):
        cli.parse(["--skip", "throughput", "latency"])


def test_latency_default_fits_a_small_model(capsys):
    config = setup.fit_to_model(
        cli.parse(["--latency-prompt-len", "32", "--skip", "throughput"]), block_size=100
    )
    assert config.workload("latency").new_tokens == 68 and "generates 68 tokens" in capsys.readouterr().out
    too_long = cli.parse(
        ["--latency-prompt-len", "32", "--latency-new-tokens", "100", "--skip", "throughput"]
    )
    with pytest.raises(SystemExit, match="exceeds this model.s block_size 100: pass smaller ones"):
        setup.fit_to_model(too_long, block_size=100)


def test_ratio_ranges_pair_samples_on_the_same_prompts():
    assert analyse.sample_ratios([4.0, 6.0], [2.0, 2.0]) == [2.0, 3.0]
    assert analyse.sample_ratios([10.0], [2.0, 5.0]) == [5.0, 2.0]  # one sample: against each
    kv = Row("latency", "kv", 1, seconds=[10.0, 12.0, 11.0], matches_naive=True)
    spec = Row("latency", "speculative", 1, seconds=[5.0, 5.0, 5.0], matches_naive=True)
    figure = analyse.speedup(kv, spec, "latency", 1)
    assert (figure.value, figure.low, figure.high) == (11.0 / 5.0, 2.0, 2.4)
    spec.matches_naive = False  # a wrong output gets no figure
    assert analyse.speedup(kv, spec, "latency", 1).value is None


def test_noise_is_judged_from_ranges_machine_and_ceilings():
    quiet = {"latency": []}
    steady = analyse.Figure(2.2, 2.1, 2.3, "latency")
    judged = analyse.judge({"spec_speedup_vs_kv": steady}, quiet)
    assert not judged["spec_speedup_vs_kv"].unstable
    wide = analyse.Figure(2.0, 1.4, 2.6, "latency")
    assert analyse.judge({"spec_speedup_vs_kv": wide}, quiet)["spec_speedup_vs_kv"].unstable
    busy = {"latency": ["other programs used 40% of the CPU during the latency test"]}
    assert analyse.judge({"spec_speedup_vs_kv": steady}, busy)["spec_speedup_vs_kv"].unstable
    below = analyse.Figure(1.9, 1.85, 1.95, "latency")  # a ceiling under what it bounds
    judged = analyse.judge({"spec_speedup_vs_kv": steady, "spec_speedup_vs_kv_agreeing_draft": below}, quiet)
    assert (
        judged["spec_speedup_vs_kv_agreeing_draft"].failure
        and judged["spec_speedup_vs_kv_agreeing_draft"].unstable
    )


def test_busy_machine_is_measured():
    start = machine.Snapshot(wall=0.0, machine_busy=100.0, own=10.0)
    end = machine.Snapshot(wall=10.0, machine_busy=115.0, own=20.0)  # 15 s busy, 10 s of them ours
    assert machine.others_share(start, end, n_cores=2) == pytest.approx(0.25)
    assert machine.others_share(start, machine.Snapshot(10.0, None, 20.0), 2) is None  # no /proc/stat
    reasons = machine.busy_reasons(load_before=0.2, shares={"throughput": 0.02, "latency": 0.3}, n_cores=2)
    assert reasons["throughput"] == [] and "30% of the CPU during the latency test" in reasons["latency"][0]
    assert machine.busy_reasons(load_before=0.2, shares={"latency": 0.01}, n_cores=2) == {"latency": []}
    # a high load average before the run (a program that just ended: it lags a minute) is not
    # judged where the share of other programs was measured during the test itself
    assert machine.busy_reasons(load_before=1.9, shares={"latency": 0.01}, n_cores=2) == {"latency": []}
    assert machine.busy_reasons(load_before=1.9, shares={"latency": None}, n_cores=2)["latency"]
    # off Linux (no shares) the load average after the run, less the run's own cores, decides
    assert machine.busy_reasons(0.2, {"latency": None}, 2, load_after_others=2.5)["latency"]
    assert machine.busy_reasons(0.2, {"latency": 0.01}, 2, load_after_others=2.5) == {"latency": []}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="measures other programs' CPU time on Linux")
def test_a_cpu_bound_neighbour_gets_a_warning(tmp_path, capsys):
    """A small run beside CPU-bound processes (one per core): the run must say its figures are
    noise. Asserts the warning, never a speed."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(machine.cores())]
    try:
        report = run_bench(tmp_path, "--batch-size", "1", "--skip", "hf", "hf_assisted", "agreeing")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    printed = capsys.readouterr().out
    assert "WARNING" in printed and "UNSTABLE" in printed and "of the CPU during the" in printed
    assert report["unstable"] is True and report["warnings"]
    assert all(report["machine"]["busy"][test] for test in ("throughput", "latency"))
    assert report["figures"]["kv_speedup_vs_naive"]["unstable"] is True


def test_acceptance_from_target_passes_without_spec_stats():
    """No spec_stats: count rounds from the target's passes. 10 new tokens, k = 4: a prefill of
    the prompt, then 3 rounds keep 4 + 3 + 0 drafts plus one token each."""
    w = Workload("latency", ("speculative",), (1,), prompt_len=12, new_tokens=10, samples=1, batch_samples=1,
                 naive_samples=0, naive_batch_sizes=(), hf_batch_sizes=())  # fmt: skip
    row = Row("latency", "speculative", 1, passes=[[11, 5, 6, 5]])
    rate, source = analyse.acceptance(row, w, k=4)
    assert source == "estimated from target passes"
    assert rate == pytest.approx(7 / 12)
    # an implementation that re-runs the whole sequence has no prefill pass
    rate, _ = analyse.acceptance(Row("latency", "speculative", 1, passes=[[16, 21, 25]]), w, k=4)
    assert rate == pytest.approx(7 / 12)


@torch.no_grad()
def test_int8_draft_head_changes_cost_not_outputs():
    """The draft's int8 head is the same head for ours and the transformers assistant; greedy
    speculative output still equals the target's naive output, and the draft still mostly
    agrees with the target (its head moved by quantization error only)."""
    module = loading.load_model_module(paths.SOLUTION_MODEL)
    draft, target = fixtures.make_pair(module, "small")
    models = bench_models.place(bench_models.Models(target, draft, "small", "stand-in"), "cpu", debug=False)
    prompt = fixtures.random_prompt(1, 24, target.config.vocab_size, seed=3)
    fp32_logits = draft(prompt)[0]
    assert bench_models.int8_draft_head(models) == "int8"
    assert isinstance(draft.lm_head, bench_models.Int8Head) and models.hf_draft.lm_head is draft.lm_head
    assert draft.lm_head.weight is draft.transformer.wte.weight  # still there for code that reads it
    int8_logits = draft(prompt)[0]
    assert torch.equal(fp32_logits.argmax(-1), int8_logits.argmax(-1))
    assert (int8_logits - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
    expected = target.generate(prompt, 16, top_k=1)
    assert torch.equal(target.generate_speculative(prompt, 16, draft, top_k=1), expected)
    assert target.spec_stats["accepted"] > 0


@pytest.mark.parametrize("variant", ["solution", "cacheless"])
@torch.no_grad()
def test_agreeing_draft_is_always_accepted(variant, tmp_path):
    """The ceiling's draft: whatever the implementation (cached, or re-running whole sequences
    through forward), every drafted token is accepted and the output is still the target's."""
    from infkit.agreeing_draft import AgreeingDraft
    from tests.submissions import variants

    path = paths.SOLUTION_MODEL
    if variant == "cacheless":
        path = tmp_path / "model.py"
        path.write_text(variants.cacheless_speculative())
    module = loading.load_model_module(path)
    draft, target = fixtures.make_pair(module, "tiny")
    prompt = fixtures.random_prompt(1, 12, target.config.vocab_size, seed=5)
    expected = target.generate(prompt, 12, top_k=1)  # 3 full rounds of k + 1 = 4
    assert fixtures.greedy_agreement(draft, target, prompt, 12) < 1  # the real draft does not agree
    agreeing = AgreeingDraft(draft, expected)
    out, passes, stats = counted_call(
        target, "cpu", [], target.generate_speculative, prompt, 12, agreeing, top_k=1, num_speculative=3
    )
    assert torch.equal(out, expected) and agreeing.calls > 0
    w = Workload("latency", ("speculative",), (1,), prompt_len=12, new_tokens=12, samples=1, batch_samples=1,
                 naive_samples=0, naive_batch_sizes=(), hf_batch_sizes=())  # fmt: skip
    row = Row("latency", "agreeing", 1, passes=[passes], spec_stats=[stats] if stats else [])
    assert analyse.acceptance(row, w, k=3)[0] == 1.0


def test_int8_draft_head_falls_back_to_fp32(monkeypatch, capsys):
    """A torch without quantized kernels: the draft keeps its fp32 head and the run says so."""

    def unavailable(head):
        raise RuntimeError("no quantized engine")

    monkeypatch.setattr(bench_models, "Int8Head", unavailable)
    module = loading.load_model_module(paths.SOLUTION_MODEL)
    draft, target = fixtures.make_pair(module, "tiny")
    head = draft.lm_head
    models = bench_models.Models(target, draft, "tiny", "stand-in")
    assert bench_models.int8_draft_head(models) == "fp32 (int8 unavailable)"
    assert draft.lm_head is head and "draft stays fp32" in capsys.readouterr().out


def test_offline_means_stand_in_without_waiting(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not bench_models.hub_reachable()
    assert bench_models.load_pretrained(None, "gpt2") is None
    assert "stand-in" in capsys.readouterr().out


def test_run_sh_end_to_end(tmp_path):
    out = tmp_path / "run.json"
    env = dict(os.environ, INFKIT_OFFLINE="1")
    cmd = ["./run.sh", *TINY, "--samples", "1", "--latency-samples", "1", "--json", str(out)]
    done = subprocess.run(cmd, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "KV cache vs naive" in done.stdout and "speculative vs KV" in done.stdout
    assert_declared(json.loads(out.read_text()))


def test_help_says_which_workload_each_figure_comes_from():
    done = subprocess.run(
        [sys.executable, "-m", "infkit.bench", "--help"], cwd=paths.ROOT, capture_output=True, text=True
    )
    for option in ("--impl", "--model", "--draft", "--device", "--batch-size", "--prompt-len"):
        assert option in done.stdout
    for option in ("--new-tokens", "--num-speculative", "--samples", "--json", "--compile"):
        assert option in done.stdout
    for option in ("--latency-prompt-len", "--latency-new-tokens", "--latency-samples"):
        assert option in done.stdout
    assert "throughput test" in done.stdout and "latency test" in done.stdout
    assert "KV cache vs naive" in done.stdout and "speculative vs KV" in done.stdout


def test_temperature_rows_and_figures(tmp_path, capsys):
    report = run_bench(tmp_path, "--temperature", "0.8", "--skip", "throughput", "hf", "hf_assisted")
    assert report["temperature"] == 0.8 and report["workload"]["temperature"] == 0.8
    assert isinstance(report["spec_speedup_vs_kv_sampled"], float)
    assert 0 <= report["acceptance_rate_sampled"] <= 1
    rows = {r["method"]: r for r in report["rows"]}
    assert rows["speculative_sampled"]["status"] == "ok" and rows["speculative_sampled"]["test"] == "latency"
    assert rows["speculative_sampled"]["matches_naive"] is None  # sampled: not compared
    assert "at temperature 0.8" in capsys.readouterr().out
