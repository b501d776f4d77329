"""The benchmark works end to end on a tiny workload. These tests check that figures are
printed and the JSON is written, never how fast anything is (timing belongs to run.sh)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from infkit import bench, bench_models, fixtures, loading, paths

TINY = ["--pair", "tiny", "--prompt-len", "12", "--new-tokens", "8", "--samples", "2"]
KEYS = (
    "kv_speedup_vs_naive",
    "spec_speedup_vs_kv",
    "kv_vs_transformers",
    "spec_vs_transformers_assisted",
    "acceptance_rate",
)


def run_bench(tmp_path, *extra):
    out = tmp_path / "bench.json"
    assert bench.main([*TINY, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_solution_reports_every_figure(tmp_path, capsys):
    report = run_bench(tmp_path, "--batch-size", "1", "2")
    for key in KEYS:
        assert isinstance(report[key], float) and report[key] > 0, key
    assert 0 <= report["acceptance_rate"] <= 1
    assert report["workload"]["new_tokens"] == 8 and report["workload"]["batch_sizes"] == [1, 2]
    assert {"device", "versions", "command"} <= set(report)
    assert report["workload"]["draft_head"] == "int8"  # the CPU default
    assert report["spec_speedup_vs_kv_decode_phase"] > 0 and report["prefill_s"] > 0
    assert report["spec_speedup_vs_kv_agreeing_draft"] > 0 and report["agreeing_draft_acceptance"] == 1.0
    assert report["workload"]["num_speculative"] == 3  # the CPU default
    rows = {(r["method"], r["batch"]): r for r in report["rows"]}
    assert ("speculative", 2) not in rows  # speculative decoding is batch 1 only
    # naive runs at the smallest batch only (by default); at batch 2, generate_kv is checked
    # against transformers instead, and each headline ratio comes from the largest batch it has
    assert ("naive", 2) not in rows and rows["kv", 2]["checked_against"] == "hf"
    assert report["kv_speedup_vs_naive_batch"] == 1 and report["kv_vs_transformers_batch"] == 2
    for (method, batch), row in rows.items():
        assert row["status"] == "ok", (method, batch, row["status"])
        if method != "naive":  # every method's greedy output was checked in the same run
            assert row["matches_naive"] is True, (method, batch)
    printed = capsys.readouterr().out
    assert "generate_speculative" in printed and "transformers assisted" in printed


def test_unfinished_model_gets_a_row_not_a_traceback(tmp_path, capsys):
    report = run_bench(tmp_path, "--impl", str(paths.STARTER_MODEL), "--skip", "hf_assisted")
    rows = {r["method"]: r for r in report["rows"]}
    assert rows["naive"]["status"] == "ok"
    for method in ("kv", "speculative"):
        assert rows[method]["status"].startswith("not implemented yet"), rows[method]
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
    rows = {r["method"]: r for r in report["rows"]}
    assert rows["kv"]["matches_naive"] is False
    assert report["kv_speedup_vs_naive"] is None and report["kv_vs_transformers"] is None


def test_naive_at_every_batch_when_asked(tmp_path):
    report = run_bench(
        tmp_path,
        "--batch-size",
        "1",
        "2",
        "--naive-batch-size",
        "1",
        "2",
        "--skip",
        "speculative",
        "hf_assisted",
    )
    rows = {(r["method"], r["batch"]): r for r in report["rows"]}
    assert rows["naive", 2]["status"] == "ok" and rows["kv", 2]["checked_against"] == "naive"
    assert report["kv_speedup_vs_naive_batch"] == 2


def test_acceptance_from_target_passes_without_spec_stats():
    """No spec_stats: count rounds from the target's passes. 10 new tokens, k = 4: a prefill of
    the prompt, then 3 rounds keep 4 + 3 + 0 drafts plus one token each."""
    args = bench.parse_args(["--prompt-len", "12", "--new-tokens", "10", "--num-speculative", "4"])
    row = {"passes": [[11, 5, 6, 5]]}
    rate, source = bench.acceptance(row, args)
    assert source == "estimated from target passes"
    assert rate == pytest.approx(7 / 12)
    # an implementation that re-runs the whole sequence has no prefill pass
    rate, _ = bench.acceptance({"passes": [[16, 21, 25]]}, args)
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
    from autograder import variants
    from infkit.agreeing_draft import AgreeingDraft

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
    out, passes, stats = bench.counted_call(
        target, "cpu", [], target.generate_speculative, prompt, 12, agreeing, top_k=1, num_speculative=3
    )
    assert torch.equal(out, expected) and agreeing.calls > 0
    args = bench.parse_args(["--prompt-len", "12", "--new-tokens", "12"])
    rate, _ = bench.acceptance({"passes": [passes], "spec_stats": [stats] if stats else []}, args)
    assert rate == 1.0


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
    cmd = ["./run.sh", *TINY, "--samples", "1", "--json", str(out)]
    done = subprocess.run(cmd, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "KV cache vs naive" in done.stdout
    assert set(KEYS) <= set(json.loads(out.read_text()))


def test_help_lists_the_options():
    done = subprocess.run(
        [sys.executable, "-m", "infkit.bench", "--help"], cwd=paths.ROOT, capture_output=True, text=True
    )
    for option in ("--impl", "--model", "--draft", "--device", "--batch-size", "--prompt-len"):
        assert option in done.stdout
    for option in ("--new-tokens", "--num-speculative", "--samples", "--json", "--compile"):
        assert option in done.stdout


def test_temperature_rows_and_figures(tmp_path, capsys):
    report = run_bench(tmp_path, "--temperature", "0.8", "--skip", "hf", "hf_assisted")
    assert report["temperature"] == 0.8 and report["workload"]["temperature"] == 0.8
    assert isinstance(report["spec_speedup_vs_kv_sampled"], float)
    assert 0 <= report["acceptance_rate_sampled"] <= 1
    rows = {r["method"]: r for r in report["rows"]}
    assert rows["speculative_sampled"]["status"] == "ok"
    assert rows["speculative_sampled"]["matches_naive"] is None  # sampled: not compared
    assert "at temperature 0.8" in capsys.readouterr().out
