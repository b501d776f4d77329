"""The written part's calculator (staff/inference_math.py) against hand calculations, and its
FLOP formulas against PyTorch's own FLOP counter run on the solution model."""

import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infkit import paths
from staff import inference_math as im

XL, SMALL, T4 = im.SHAPES["gpt2-xl"], im.SHAPES["gpt2"], im.GPUS["t4"]


def test_shapes_are_gpt2s():
    assert [(s.n_layer, s.n_head, s.n_embd) for s in im.SHAPES.values()] == [
        (12, 12, 768),
        (24, 16, 1024),
        (36, 20, 1280),
        (48, 25, 1600),
    ]
    assert XL.d_ff == 6400 and SMALL.d_ff == 3072 and XL.vocab_size == 50257


def test_mha_naive_by_hand():
    # d = 1600, h = 25: qkv 2*1600*4800 + proj 2*1600*1600 FLOPs per token; q k^T and att v
    # 2 * 2 * 1600 per token per position; weights (4800 + 1600) * 1600 numbers of 2 bytes;
    # activations 10 * 1600 numbers per token; scores 2 * 25 numbers per token per position
    c = im.mha_naive(XL)
    assert (c.C1, c.C2) == (2 * 1600 * 4800 + 2 * 1600 * 1600, 4 * 1600) == (20_480_000, 6_400)
    assert (
        (c.C3, c.C4, c.C5, c.C6) == (2 * 6400 * 1600, 2 * 16_000, 2 * 50, 2) == (20_480_000, 32_000, 100, 2)
    )


def test_mlp_naive_by_hand():
    c = im.mlp_naive(XL)
    assert c.C1 == 2 * 1600 * 6400 * 2 == 40_960_000
    assert c.C3 == 2 * (2 * 1600 * 6400) == 40_960_000
    assert c.C4 == 2 * (1600 + 6400 + 6400 + 1600) == 32_000
    assert c.C2 == c.C5 == c.C6 == 0


def test_whole_model_by_hand():
    c = im.model_naive(XL)
    # C1 is twice the block parameter count (48 * 12 d^2 = 1.47e9): the familiar 2 FLOPs/param/token
    assert c.C1 == 2 * 48 * 12 * 1600**2 == 2_949_120_000
    assert (c.C2, c.C3, c.C4, c.C5, c.C6) == (307_200, 2_949_120_000, 3_072_000, 4_800, 96)
    assert c.flops(1, 32) == 2_949_120_000 * 32 + 307_200 * 32**2
    assert c.bytes(2, 10) == 2_949_120_000 + 3_072_000 * 20 + 4_800 * 200 + 96 * 100


def test_decode_by_hand():
    assert im.kv_bytes_per_layer_per_token(XL) == 2 * 1600 * 2 == 6400
    a = im.mha_decode(XL)
    assert (a.D1, a.D2, a.D3) == (20_480_000, 6_400, 20_480_000)
    assert a.D4 == 2 * 8 * 1600 and a.D5 == 2 * (2 * 1600 + 2 * 25)
    m = im.model_decode(XL)
    # one token after a cache of 31 attends over 32 positions
    assert m.flops(1, 31) == 48 * (61_440_000 + 6_400 * 32)
    assert m.bytes(64, 1023) == 48 * (61_440_000 + 64 * (25_600 + 32_000) + 64 * 1024 * 6_500)
    # with an empty cache, decoding one token is the naive pass over one token
    naive = im.model_naive(XL)
    assert m.flops(1, 0) == naive.flops(1, 1)


def test_decode_latency_by_hand():
    gpt2_params = 12 * 12 * 768**2 + 768 * 50257
    xl_params = 48 * 12 * 1600**2 + 1600 * 50257
    assert (gpt2_params, xl_params) == (123_532_032, 1_554_971_200)
    assert im.decode_latency(SMALL, T4) * 1e6 == pytest.approx(2 * gpt2_params / 300e9 * 1e6)  # ~824 us
    assert im.decode_latency(XL, T4) * 1e3 == pytest.approx(10.366, abs=1e-3)
    assert im.decode_latency(XL, T4) / im.decode_latency(SMALL, T4) == pytest.approx(12.59, abs=0.01)


def test_roofline():
    assert T4.ridge == pytest.approx(216.67, abs=0.01)
    assert im.bound(1e9, 1e9, T4) == "memory" and im.bound(1e12, 1e9, T4) == "compute"
    assert im.step_time(65e12, 1, T4) == 1.0 and im.step_time(1, 300e9, T4) == 1.0


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 0.99])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_expected_tokens_by_enumeration(alpha, k):
    # the first rejection at draft i (prob alpha^i (1 - alpha)) yields i + 1 tokens; no rejection
    # (prob alpha^k) yields k + 1
    by_cases = sum(alpha**i * (1 - alpha) * (i + 1) for i in range(k)) + alpha**k * (k + 1)
    assert im.expected_tokens(alpha, k) == pytest.approx(by_cases)
    # without the extra token after k acceptances, that last case yields k
    assert im.expected_tokens(alpha, k, bonus=False) == pytest.approx(by_cases - alpha**k)


def test_best_k():
    c = im.decode_latency(SMALL, T4) / im.decode_latency(XL, T4)
    assert im.speculative_speedup(0.75, c, 1) == pytest.approx(1.75 / (1 + c))
    assert im.best_k(0.75, c) == 5  # 2.353 vs 2.347 at k = 6 and 2.315 at k = 4
    assert im.best_k(0.5, c) == 3 and im.best_k(0.9, c) > 5
    assert im.best_k(0.75, 0.0, k_max=10) == 10  # a free draft: draft as far as allowed
    assert im.best_k(0.75, 1.0) == 1  # a draft as slow as the target never pays; k = 1 is least bad


def test_tex_number():
    assert im.tex_number(6400) == "6{,}400"
    assert im.tex_number(2_949_120_000) == r"2.95\times10^{9}"
    assert im.tex_number(823.54688) == "824"
    assert im.tex_number(0.0794433) == "0.0794"
    assert im.tex_number(9.996e9) == r"1.00\times10^{10}"
    assert im.tex_number("memory") == "memory"


def test_cli_outputs(tmp_path):
    a = im.main(["--gpu", "t4", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "answers.json").read_text())
    assert saved == json.loads(json.dumps(a))
    for key in (
        "q2_1_3_flops_coeff_BN",
        "q2_1_3_flops_coeff_BN2",
        "q2_2_1_kv_bytes_per_layer_per_token",
        "q2_3_1_gpt2_decode_us",
        "q2_3_2_gpt2xl_decode_ms",
        "q2_3_2_cost_ratio",
        "q2_3_3_best_k",
    ):
        assert key in saved and rf"\defans{{{key}}}" in (tmp_path / "answers.tex").read_text()
    assert saved["q2_1_4_B1_N32_bound"] == "memory" and saved["q2_1_4_B64_N1024_bound"] == "compute"
    assert all(saved[f"q2_2_5_{c}_bound"] == "memory" for c in ("B1_N32", "B1_N1024", "B64_N32", "B64_N1024"))
    assert (tmp_path / "roofline.pdf").stat().st_size > 1000 and (tmp_path / "roofline.png").exists()
    h100 = im.answers(im.GPUS["h100"])
    assert h100["q2_3_2_gpt2xl_decode_ms"] < saved["q2_3_2_gpt2xl_decode_ms"] / 10


# ---- the LaTeX sources, checked without TeX (`make written` compiles them)

QUESTIONS = {"2.1.1": 4, "2.1.2": 3, "2.1.3": 3, "2.1.4": 7, "2.2.1": 1, "2.2.2": 3, "2.2.3": 3}
QUESTIONS |= {"2.2.4": 3, "2.2.5": 7, "2.3.1": 4, "2.3.2": 4, "2.3.3": 8}


def _tex(name: str) -> str:
    """A file of written/ without its comments."""
    return re.sub(r"(?<!\\)%.*", "", (paths.ROOT / "written" / name).read_text())


def test_template_has_every_question_and_no_answers():
    tex = _tex("template.tex")
    asked = dict(re.findall(r"\\question\{([\d.]+)\}\{[^}]*\}\{(\d+)\}", tex))
    assert {q: int(p) for q, p in asked.items()} == QUESTIONS and sum(QUESTIONS.values()) == 50
    assert re.findall(r"\\begin\{answer\}(?:\[[^]]*\])?\{([\d.]+)\}", tex) == list(QUESTIONS)
    # students get this file alone: it must not pull in anything, least of all the answers
    assert not re.search(r"\\(input|include|InputIfFileExists)\b", tex)


def test_key_uses_only_computed_answers():
    tex = _tex("key.tex")
    assert set(re.findall(r"\\defsolution\{([\d.]+)\}", tex)) == set(QUESTIONS)
    names = set(im.answers(T4))
    used = set(re.findall(r"\\ans\{([^}]+)\}", tex))
    assert len(used) > 30
    for name in used:  # names inside the table-row macros carry #1, #2 for the case
        pattern = re.compile(re.sub(r"#\d", r"\\w+", name) + "$")
        assert any(pattern.match(n) for n in names), (
            f"key.tex uses \\ans{{{name}}}, which the calculator lacks"
        )


# ---- the FLOP formulas against torch's FLOP counter on the solution model (DEBUG: explicit
# attention matmuls, which the counter sees). Counted: every matmul, and the LM head on the
# positions that get logits, which the formulas leave out.

CFG = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=96, block_size=64, bias=True)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def small_model(sol):
    torch.manual_seed(0)
    return sol.GPT(sol.GPTConfig(**CFG)).eval()


@pytest.mark.parametrize("B,N", [(1, 8), (3, 20)])
def test_naive_flops_match_torch(small_model, B, N):
    shape = im.Shape("t", CFG["n_layer"], CFG["n_head"], CFG["n_embd"], CFG["vocab_size"])
    idx = torch.randint(0, CFG["vocab_size"], (B, N))
    with torch.no_grad():
        counted = _counted(lambda: small_model(idx))
    head = 2 * B * CFG["n_embd"] * CFG["vocab_size"]  # last position only
    assert counted == im.model_naive(shape).flops(B, N) + head


@pytest.mark.parametrize("B,n_cache", [(1, 7), (4, 30)])
def test_decode_flops_match_torch(small_model, B, n_cache):
    shape = im.Shape("t", CFG["n_layer"], CFG["n_head"], CFG["n_embd"], CFG["vocab_size"])
    idx = torch.randint(0, CFG["vocab_size"], (B, n_cache + 1))
    small_model.prefill(idx[:, :-1])
    counted = _counted(lambda: small_model.decode(idx[:, -1:]))
    head = 2 * B * CFG["n_embd"] * CFG["vocab_size"]
    assert counted == im.model_decode(shape).flops(B, n_cache) + head


def test_weight_bytes_match_the_model(sol):
    # the matmul weights of a real-size model, built on the meta device (no memory used)
    for s in im.SHAPES.values():
        with torch.device("meta"):
            cfg = sol.GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd, vocab_size=s.vocab_size)
            model = sol.GPT(cfg)
        blocks = sum(p.numel() for n, p in model.transformer.h.named_parameters() if p.dim() == 2)
        assert im.weight_bytes(s, lm_head=False) == 2 * blocks
        assert im.weight_bytes(s) == 2 * (blocks + model.lm_head.weight.numel())
