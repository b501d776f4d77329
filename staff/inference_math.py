"""The arithmetic of the written part: FLOPs, memory traffic and latency of GPT-2 inference.

Every number in the staff answer key (written/key.tex) comes from here. The command

    python -m staff.inference_math --gpu t4 --out build/written

writes answers.json, answers.tex (the LaTeX macros the key reads) and the roofline figure.

Counting conventions (the key states the same ones):
  - a multiply-add is 2 FLOPs; only matmuls are counted (softmax, GELU, scaling, LayerNorm,
    residual adds, biases are lower order and ignored);
  - every number is 16-bit: 2 bytes;
  - memory traffic = the weights, read once per forward pass, plus the inputs and outputs of
    every matmul (read from / written to GPU memory once each); the attention scores
    (B, n_head, N, N) are one matmul's output and the next one's input, so they are written
    once and read once, and the causal mask (N, N), shared by every row and head, is read once;
  - embeddings, LayerNorms, residuals and the LM head are left out unless a question says so;
  - a forward pass takes max(FLOPs / peak FLOP/s, bytes / bandwidth): compute and memory
    traffic overlap perfectly (the roofline model).
"""

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from infkit import fixtures

BYTES = 2  # 16-bit numbers
FLOPS_PER_MAC = 2  # a multiply-add is two floating-point operations


@dataclass(frozen=True)
class Shape:
    """The sizes of a GPT-2 that the arithmetic needs (d_ff is the MLP's hidden width)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int = fixtures.VOCAB

    @property
    def d_ff(self) -> int:
        return 4 * self.n_embd


SHAPES = {
    name: Shape(name, s["n_layer"], s["n_head"], s["n_embd"], s["vocab_size"])
    for name, s in fixtures.SHAPES.items()
    if name.startswith("gpt2")
}


@dataclass(frozen=True)
class GPU:
    """Peak numbers from the datasheet: 16-bit dense tensor-core FLOP/s and DRAM bandwidth."""

    key: str
    name: str
    bandwidth: float  # bytes / s
    flops: float  # FLOP / s

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP / byte) above which a kernel is compute-bound."""
        return self.flops / self.bandwidth


GPUS = {
    # the course's numbers for the T4
    "t4": GPU("t4", "NVIDIA T4", 300e9, 65e12),
    # SXM parts, dense (no sparsity) BF16
    "a100": GPU("a100", "NVIDIA A100 SXM 80GB", 2039e9, 312e12),
    "h100": GPU("h100", "NVIDIA H100 SXM", 3350e9, 989e12),
}


# --------------------------------------------------------------------------------------
# 2.1 naive forward pass over B x N tokens: FLOPs = C1 BN + C2 BN^2,
#     bytes = C3 + C4 BN + C5 BN^2 + C6 N^2


class _Coefficients:
    """Cost coefficients add up layer by layer and scale by a layer count: n * cost + cost."""

    def __add__(self, other):
        return type(self)(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def __rmul__(self, n: int):
        return type(self)(*(n * a for a in asdict(self).values()))


@dataclass(frozen=True)
class NaiveCost(_Coefficients):
    C1: float = 0  # FLOPs per token
    C2: float = 0  # FLOPs per token per attended position
    C3: float = 0  # bytes, once per pass (weights)
    C4: float = 0  # bytes per token (activations)
    C5: float = 0  # bytes per token per attended position (attention scores)
    C6: float = 0  # bytes per N^2 (the causal mask, shared by the batch)

    def flops(self, B: int, N: int) -> float:
        return self.C1 * B * N + self.C2 * B * N * N

    def bytes(self, B: int, N: int) -> float:
        return self.C3 + self.C4 * B * N + self.C5 * B * N * N + self.C6 * N * N


def mha_naive(s: Shape) -> NaiveCost:
    """One attention layer (c_attn, q k^T, att v, c_proj) over B x N tokens."""
    d, h = s.n_embd, s.n_head
    return NaiveCost(
        # c_attn d -> 3d and c_proj d -> d: 4d^2 MACs per token
        C1=FLOPS_PER_MAC * 4 * d * d,
        # q k^T and att v: each N x N x head_dim MACs per head, n_head heads: 2 N d per token
        C2=FLOPS_PER_MAC * 2 * d,
        # weights of c_attn (3d^2) and c_proj (d^2)
        C3=BYTES * 4 * d * d,
        # c_attn reads x, writes q, k, v (4d); q k^T reads q, k (2d); att v reads v, writes y
        # (2d); c_proj reads y, writes its output (2d): 10 d numbers per token
        C4=BYTES * 10 * d,
        # the scores: written by q k^T, read by att v, n_head x N numbers per token
        C5=BYTES * 2 * h,
        # the N x N causal mask, read once
        C6=BYTES * 1,
    )


def mlp_naive(s: Shape) -> NaiveCost:
    """One MLP (c_fc d -> d_ff, c_proj d_ff -> d) over B x N tokens."""
    d, f = s.n_embd, s.d_ff
    return NaiveCost(
        C1=FLOPS_PER_MAC * 2 * d * f,
        C3=BYTES * 2 * d * f,
        # c_fc reads x (d) and writes d_ff; c_proj reads d_ff and writes d
        C4=BYTES * (2 * d + 2 * f),
    )


def model_naive(s: Shape) -> NaiveCost:
    """All n_layer blocks (no embeddings, LayerNorms, residuals or LM head)."""
    return s.n_layer * (mha_naive(s) + mlp_naive(s))


# --------------------------------------------------------------------------------------
# 2.2 decoding B new tokens (one per row) after a KV cache of B x N tokens. Each new token
#     attends over T = N + 1 positions (the cache and itself): FLOPs = D1 B + D2 B T,
#     bytes = D3 + D4 B + D5 B T


def kv_bytes_per_layer_per_token(s: Shape) -> int:
    """A key and a value of n_embd numbers each (n_head heads x head_dim)."""
    return BYTES * 2 * s.n_embd


@dataclass(frozen=True)
class DecodeCost(_Coefficients):
    D1: float = 0  # FLOPs per new token
    D2: float = 0  # FLOPs per new token per attended position
    D3: float = 0  # bytes, once per step (weights)
    D4: float = 0  # bytes per new token
    D5: float = 0  # bytes per new token per attended position (the cache, the scores)

    def flops(self, B: int, n_cache: int) -> float:
        return self.D1 * B + self.D2 * B * (n_cache + 1)

    def bytes(self, B: int, n_cache: int) -> float:
        return self.D3 + self.D4 * B + self.D5 * B * (n_cache + 1)


def mha_decode(s: Shape) -> DecodeCost:
    """One attention layer for one new token per row, over the cache plus itself."""
    d, h = s.n_embd, s.n_head
    return DecodeCost(
        D1=FLOPS_PER_MAC * 4 * d * d,
        D2=FLOPS_PER_MAC * 2 * d,
        D3=BYTES * 4 * d * d,
        # c_attn reads x, writes q, k, v (4d; k, v land in the cache); the attention reads q and
        # writes y (2d); c_proj reads y, writes its output (2d)
        D4=BYTES * 8 * d,
        # every attended position: its key and value read (2d), its score written and read (2h)
        D5=BYTES * (2 * d + 2 * h),
    )


def mlp_decode(s: Shape) -> DecodeCost:
    """The MLP does not look at other positions: the naive cost with BN = B."""
    m = mlp_naive(s)
    return DecodeCost(D1=m.C1, D3=m.C3, D4=m.C4)


def model_decode(s: Shape) -> DecodeCost:
    return s.n_layer * (mha_decode(s) + mlp_decode(s))


# --------------------------------------------------------------------------------------
# roofline


def step_time(flops: float, nbytes: float, gpu: GPU) -> float:
    """Seconds for a pass that needs `flops` and moves `nbytes`, on the roofline model."""
    return max(flops / gpu.flops, nbytes / gpu.bandwidth)


def bound(flops: float, nbytes: float, gpu: GPU) -> str:
    return "compute" if flops / nbytes > gpu.ridge else "memory"


# --------------------------------------------------------------------------------------
# 2.3 speculative decoding


def weight_bytes(s: Shape, lm_head: bool = True) -> int:
    """Bytes of the matmul weights a decode step reads: every block, and the d x V LM head."""
    per_layer = 4 * s.n_embd**2 + 2 * s.n_embd * s.d_ff
    head = s.n_embd * s.vocab_size if lm_head else 0
    return BYTES * (s.n_layer * per_layer + head)


def decode_latency(s: Shape, gpu: GPU) -> float:
    """Seconds per token at B = 1: reading the weights dominates (FLOPs and the cache are small)."""
    return weight_bytes(s, lm_head=True) / gpu.bandwidth


def expected_tokens(alpha: float, k: int, bonus: bool = True) -> float:
    """Tokens a round yields when each of k drafted tokens is accepted with probability alpha,
    independently: 1 + alpha + ... + alpha^k. The +1 is the target's own token at the first
    rejection, or its extra token after k acceptances; a verifier that scores only the k prefixes
    before the drafted tokens (bonus=False) gets no extra token: 1 + alpha + ... + alpha^(k-1)."""
    n = k + 1 if bonus else k
    if alpha == 1:
        return float(n)
    return (1 - alpha**n) / (1 - alpha)


def speculative_speedup(alpha: float, c: float, k: int, bonus: bool = True) -> float:
    """Tokens per unit time against plain decoding: a round costs k draft steps (c each, in units
    of a target step) and one target pass that checks all k + 1 prefixes at once (memory-bound
    at B = 1, so as long as one ordinary step)."""
    return expected_tokens(alpha, k, bonus) / (k * c + 1)


def best_k(alpha: float, c: float, k_max: int = 64, bonus: bool = True) -> int:
    """The number of drafted tokens per round with the highest expected speedup (k >= 1)."""
    return max(range(1, k_max + 1), key=lambda k: speculative_speedup(alpha, c, k, bonus))


# --------------------------------------------------------------------------------------
# everything the key needs, as one flat dict (answers.json and the LaTeX macros)

NAIVE_CASES = [(1, 32), (1, 1024), (64, 32), (64, 1024)]  # (B, N), 2.1.4
ALPHA = 0.75  # 2.3.3: the two models agree on 75% of greedy predictions
ALPHAS = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9]  # 2.3.3: how the best k moves with the acceptance rate


def case_key(B: int, N: int) -> str:
    return f"B{B}_N{N}"


def answers(gpu: GPU, target: Shape = SHAPES["gpt2-xl"], draft: Shape = SHAPES["gpt2"]) -> dict:
    a: dict = {"gpu": gpu.name, "gpu_bandwidth": gpu.bandwidth, "gpu_flops": gpu.flops, "ridge": gpu.ridge}
    for prefix, s in (("target", target), ("draft", draft)):
        a[f"{prefix}_model"] = s.name
        a.update(
            {f"{prefix}_{f}": getattr(s, f) for f in ("n_layer", "n_head", "n_embd", "vocab_size", "d_ff")}
        )
        a[f"{prefix}_head_dim"] = s.n_embd // s.n_head
        a[f"{prefix}_block_params"] = weight_bytes(s, lm_head=False) // BYTES

    # 2.1.1-2.1.3: per-layer attention, per-layer MLP, whole model
    for q, cost in (
        ("q2_1_1", mha_naive(target)),
        ("q2_1_2", mlp_naive(target)),
        ("q2_1_3", model_naive(target)),
    ):
        a.update({f"{q}_{k}": v for k, v in asdict(cost).items()})
    a["q2_1_3_flops_coeff_BN"] = a["q2_1_3_C1"]
    a["q2_1_3_flops_coeff_BN2"] = a["q2_1_3_C2"]

    # 2.1.4 and 2.2.5: the same four shapes, naive and with a cache of N - 1 tokens
    naive, dec = model_naive(target), model_decode(target)
    for B, N in NAIVE_CASES:
        for q, flops, nbytes in (
            ("q2_1_4", naive.flops(B, N), naive.bytes(B, N)),
            ("q2_2_5", dec.flops(B, N - 1), dec.bytes(B, N - 1)),
        ):
            p = f"{q}_{case_key(B, N)}"
            a[f"{p}_flops"] = flops
            a[f"{p}_bytes"] = nbytes
            a[f"{p}_intensity"] = flops / nbytes
            a[f"{p}_compute_ms"] = 1e3 * flops / gpu.flops
            a[f"{p}_memory_ms"] = 1e3 * nbytes / gpu.bandwidth
            a[f"{p}_time_ms"] = 1e3 * step_time(flops, nbytes, gpu)
            a[f"{p}_bound"] = bound(flops, nbytes, gpu)
        p = case_key(B, N)
        a[f"q2_2_5_{p}_speedup"] = a[f"q2_1_4_{p}_time_ms"] / a[f"q2_2_5_{p}_time_ms"]

    # 2.2.1-2.2.4
    kv = kv_bytes_per_layer_per_token(target)
    a["q2_2_1_kv_bytes_per_layer_per_token"] = kv
    a["q2_2_1_kv_bytes_per_token"] = target.n_layer * kv
    a["q2_2_1_kv_bytes_full_context"] = target.n_layer * kv * 1024  # one row at N = 1024, all layers
    for q, cost in (("q2_2_2", mha_decode(target)), ("q2_2_3", mlp_decode(target)), ("q2_2_4", dec)):
        a.update({f"{q}_{k}": v for k, v in asdict(cost).items()})

    # 2.3.1-2.3.2: B = 1 decoding reads every weight once per token
    for q, s in (("q2_3_1", draft), ("q2_3_2", target)):
        a[f"{q}_weight_bytes_blocks"] = weight_bytes(s, lm_head=False)
        a[f"{q}_weight_bytes_head"] = weight_bytes(s) - weight_bytes(s, lm_head=False)
        a[f"{q}_weight_bytes"] = weight_bytes(s)
    a["q2_3_1_gpt2_decode_us"] = 1e6 * decode_latency(draft, gpu)
    a["q2_3_2_gpt2xl_decode_ms"] = 1e3 * decode_latency(target, gpu)
    a["q2_3_2_cost_ratio"] = decode_latency(target, gpu) / decode_latency(draft, gpu)  # target / draft
    # the B = 1 decode step's intensity: ~1 FLOP per byte, far below the ridge
    a["q2_3_2_intensity"] = dec.flops(1, 255) / dec.bytes(1, 255)

    # 2.3.3
    c = 1 / a["q2_3_2_cost_ratio"]
    a["q2_3_3_alpha"] = ALPHA
    a["q2_3_3_c"] = c
    for k in range(1, 9):
        a[f"q2_3_3_k{k}_tokens"] = expected_tokens(ALPHA, k)
        a[f"q2_3_3_k{k}_cost"] = k * c + 1
        a[f"q2_3_3_k{k}_speedup"] = speculative_speedup(ALPHA, c, k)
    a["q2_3_3_best_k"] = best_k(ALPHA, c)
    a["q2_3_3_best_speedup"] = speculative_speedup(ALPHA, c, a["q2_3_3_best_k"])
    a["q2_3_3_nobonus_best_k"] = k_nb = best_k(ALPHA, c, bonus=False)
    a["q2_3_3_nobonus_best_speedup"] = speculative_speedup(ALPHA, c, k_nb, bonus=False)
    for alpha in ALPHAS:
        tag = f"a{round(100 * alpha)}"
        a[f"q2_3_3_{tag}_best_k"] = best_k(alpha, c)
        a[f"q2_3_3_{tag}_best_speedup"] = speculative_speedup(alpha, c, best_k(alpha, c))
    return a


# --------------------------------------------------------------------------------------
# output: LaTeX macros, answers.json, the roofline figure


def tex_number(x, sig: int = 3) -> str:
    """A number as LaTeX math: exact integers below 10^8 digit-grouped, others to `sig`
    significant figures, with a power of ten when large or small."""
    if isinstance(x, str):
        return x
    if float(x).is_integer() and abs(x) < 1e8:
        return f"{int(x):,}".replace(",", "{,}")
    if x == 0:
        return "0"
    exp = math.floor(math.log10(abs(x)))
    if -2 <= exp < 4:
        return f"{x:.{max(sig - 1 - exp, 0)}f}"
    mant = f"{x / 10**exp:.{sig - 1}f}"
    if float(mant) >= 10:  # rounding carried over (9.996 -> 10.0)
        exp, mant = exp + 1, f"{x / 10 ** (exp + 1):.{sig - 1}f}"
    return rf"{mant}\times10^{{{exp}}}"


def tex_macros(a: dict) -> str:
    r"""One \defans{key}{value} per answer; the key typesets them with \ans{key}."""
    lines = [
        "% Generated by `python -m staff.inference_math`; do not edit. Staff only: holds the answers.",
        rf"\def\gpuname{{{a['gpu']}}}",
        rf"\def\gpubandwidth{{{tex_number(a['gpu_bandwidth'] / 1e9)}~GB/s}}",
        rf"\def\gpuflops{{{tex_number(a['gpu_flops'] / 1e12)}~TFLOP/s}}",
    ]
    for key, value in a.items():
        sig = 4 if key.endswith("_speedup") else 3  # k = 5 and k = 6 differ in the fourth digit
        lines.append(rf"\defans{{{key}}}{{{tex_number(value, sig)}}}")
    return "\n".join(lines) + "\n"


def plot_roofline(a: dict, gpu: GPU, path: Path) -> None:
    """Attainable FLOP/s against arithmetic intensity, with the eight passes of 2.1.4 and 2.2.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [10 ** (i / 20) for i in range(-11, 90)]  # 0.3 .. 3e4 FLOP / byte
    ax.plot(xs, [min(gpu.flops, gpu.bandwidth * i) / 1e12 for i in xs], color="0.2", lw=1.5)
    ax.axvline(gpu.ridge, color="0.6", ls="--", lw=1)
    ax.text(gpu.ridge * 1.1, gpu.flops / 1e12 / 30, f"ridge {gpu.ridge:.0f} FLOP/B", color="0.4", fontsize=8)
    ax.text(0.4, gpu.flops / 1e12 * 1.6, "memory-bound", color="0.4", fontsize=8)
    ax.text(gpu.ridge * 8, gpu.flops / 1e12 * 1.6, "compute-bound", color="0.4", fontsize=8)
    # colour = the (B, N) case, filled = naive pass, open = one step with a cache of N - 1
    for i, (B, N) in enumerate(NAIVE_CASES):
        for q, marker, size in (("q2_1_4", "o", 7), ("q2_2_5", "s", 9 - i)):
            p = f"{q}_{case_key(B, N)}"
            achieved = a[f"{p}_flops"] / (a[f"{p}_time_ms"] / 1e3) / 1e12
            filled = f"C{i}" if q == "q2_1_4" else "none"
            ax.plot(a[f"{p}_intensity"], achieved, marker, color=f"C{i}", mfc=filled, ms=size, mew=1.5)
        ax.plot([], [], "o", color=f"C{i}", label=f"B={B}, N={N}")
    ax.plot([], [], "o", color="k", label="naive pass (2.1.4)")
    ax.plot([], [], "s", color="k", mfc="none", label="KV cache, N-1 cached (2.2.5)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attainable TFLOP/s")
    ax.set_ylim(top=gpu.flops / 1e12 * 4)
    ax.set_title(f"GPT2-XL forward passes on the {gpu.name} (roofline)")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, which="major", color="0.9")
    fig.tight_layout()
    for suffix in (".pdf", ".png"):
        fig.savefig(
            path.with_suffix(suffix), dpi=150, metadata={"CreationDate": None} if suffix == ".pdf" else {}
        )
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gpu", choices=sorted(GPUS), default="t4", help="GPU preset (default: t4, the course's)"
    )
    parser.add_argument("--bandwidth", type=float, help="override the preset's memory bandwidth, GB/s")
    parser.add_argument("--tflops", type=float, help="override the preset's 16-bit peak, TFLOP/s")
    parser.add_argument("--out", type=Path, default=Path("build/written"), help="output folder")
    args = parser.parse_args(argv)

    gpu = GPUS[args.gpu]
    if args.bandwidth or args.tflops:
        gpu = GPU(
            gpu.key,
            gpu.name + " (custom)",
            args.bandwidth * 1e9 if args.bandwidth else gpu.bandwidth,
            args.tflops * 1e12 if args.tflops else gpu.flops,
        )
    a = answers(gpu)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answers.json").write_text(json.dumps(a, indent=1) + "\n")
    (args.out / "answers.tex").write_text(tex_macros(a))
    plot_roofline(a, gpu, args.out / "roofline")
    print(
        f"{gpu.name}: wrote {args.out}/answers.json, answers.tex, roofline.pdf/.png "
        f"(GPT2 {a['q2_3_1_gpt2_decode_us']:.0f} us/token, GPT2-XL {a['q2_3_2_gpt2xl_decode_ms']:.2f} ms/token, "
        f"best k = {a['q2_3_3_best_k']})"
    )
    return a


if __name__ == "__main__":
    main()
