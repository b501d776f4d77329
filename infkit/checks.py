"""Correctness checks for each piece of the student contract.

Each piece has two halves, so that the same check can run in one process (public tests,
notebook) or split across two (the autograder):

  probe_<piece>(module, rec, shape, seed)   runs the student's code on seeded fixtures and
                                            records its raw outputs (tensors, ints) in `rec`;
                                            nothing is judged here
  judge_<piece>(ref, rec, shape, seed)      rebuilds the same fixtures from a reference module
                                            `ref` (the given code: forward, naive generate),
                                            computes the expected outputs itself and compares;
                                            raises CheckFailed with what to fix

The autograder runs the probe in a sandboxed worker and the judge in its own trusted process,
so student code never sees (or patches) the code that decides. `CHECKS[piece](module)` does
both in one process, with the module's own given code as the reference.

Run the checks against a model.py from the shell:  python -m infkit.checks PATH [piece ...]
"""

import contextlib
import copy
import functools
import math
import os
import sys
import traceback

import torch

from . import fixtures, hints, loading, pieces

PIECES = pieces.CHECKED  # in the order students write them (the registry: infkit/pieces.py)

# Tolerances for comparing logits / hidden states in DEBUG mode (fp32 on CPU). A correct cache
# changes only the order of float additions, which moves values by ~1e-6. INFKIT_TOL_SCALE
# scales both (e.g. 10 to loosen); INFKIT_EXACT=1 demands bit equality.
TOL_SCALE = float(os.environ.get("INFKIT_TOL_SCALE", "1"))
RTOL = 1e-4 * TOL_SCALE
ATOL = 1e-4 * TOL_SCALE
EXACT = os.environ.get("INFKIT_EXACT") == "1"
# A greedy token may legitimately differ where the reference's top two logits are closer than
# this (float noise can flip the argmax); such a mismatch is excused and reported.
NEAR_TIE = 1e-4 * TOL_SCALE

# The public tests use these; the autograder's hidden tests pass other seeds and shapes.
PUBLIC_SHAPE = "tiny"
HIDDEN_SHAPE = dict(n_layer=2, n_head=3, n_embd=48, vocab_size=384, block_size=96)

LABELS = pieces.LABELS  # how messages name each piece


class CheckFailed(AssertionError):
    """A check found a mistake; the message is written for the student."""


class FastPathFailed(CheckFailed):
    """Correct in DEBUG, wrong outside it (the path ./run.sh and the notebook time)."""


# Outside DEBUG (SDPA, the CPU Linear's few-row path, 16-bit autocast on CUDA) values move by
# ~1e-6 in fp32 on the CPU; a wrong mask moves them by far more than this.
FAST_TOL = 1e-3
FAST_PATH_WRONG = (
    "correct in DEBUG, wrong outside it (DEBUG = False, the code ./run.sh and the notebook time)"
)
MASK_HINT = (
    "Look at the attention call and its mask: with fewer new queries than cached keys, "
    "scaled_dot_product_attention(..., is_causal=True) aligns the mask to the top-left, so a new "
    "token sees only the first keys; pass an explicit mask (or the given attend(q, k, v, q_start))."
)


@contextlib.contextmanager
def fast_path(module):
    """Run the block with the module's DEBUG off (its fast path), then switch DEBUG back on."""
    loading.set_debug(module, False)
    try:
        yield
    finally:
        loading.set_debug(module, True)


def _fail(message: str):
    raise CheckFailed(message)


def _close(got, expected, tol=None) -> bool:
    if not isinstance(got, torch.Tensor) or not got.is_floating_point() or got.shape != expected.shape:
        return False
    got = got.to(expected.dtype)
    if tol is not None:  # the fast path: other kernels, other rounding
        return torch.allclose(got, expected, rtol=tol, atol=tol)
    if EXACT:
        return torch.equal(got, expected)
    return torch.allclose(got, expected, rtol=RTOL, atol=ATOL)


def _diff(got, expected) -> str:
    if not isinstance(got, torch.Tensor):
        return f"got {type(got).__name__}, expected a tensor"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not got.is_floating_point():
        return f"dtype {got.dtype}, expected floating point"
    return f"max abs difference {float((got.to(expected.dtype) - expected).abs().max()):.3g}"


def _model(module, shape, seed):
    return fixtures.make_model(module, shape, seed=seed)


def _head_dim(model):
    return model.config.n_embd // model.config.n_head


def _grader_allocation(attn, batch_size: int, max_seq_len: int):
    """The documented cache layout, allocated by the grader for a student's attention module."""
    w = attn.c_attn.weight
    shape = (2, batch_size, attn.n_head, max_seq_len, attn.n_embd // attn.n_head)
    attn.register_buffer("kv_cache", torch.zeros(shape, dtype=w.dtype, device=w.device), persistent=False)
    attn.seq_pos = 0


def cache_problem(attn, batch_size: int, max_seq_len: int) -> str:
    """'' if attn.kv_cache can serve batch_size rows and max_seq_len positions in the
    documented layout, dtype and device; else what is wrong, in words."""
    cache = getattr(attn, "kv_cache", None)
    w = attn.c_attn.weight
    if not isinstance(cache, torch.Tensor):
        return "no kv_cache tensor was registered"
    head_dim = attn.n_embd // attn.n_head
    s = tuple(cache.shape)
    if len(s) != 5 or s[0] != 2 or s[1] < batch_size or s[2] != attn.n_head or s[3] < max_seq_len:
        return f"kv_cache has shape {s}, not (2, {batch_size}, {attn.n_head}, {max_seq_len}, {head_dim})"
    if s[4] != head_dim:
        return f"kv_cache has shape {s}: its last dimension must be head_dim = {head_dim}"
    if cache.dtype != w.dtype:
        return f"kv_cache is {cache.dtype} while the weights are {w.dtype}"
    if cache.device != w.device:
        return f"kv_cache is on {cache.device} while the weights are on {w.device}"
    return ""


def ensure_cache(model, batch_size: int):
    """Allocate empty caches with the student's setup_kv_cache(). Where that raises or leaves a
    cache of the wrong layout, dtype or device (the buffers piece's problem, graded there), the
    grader allocates the documented layout itself, so later pieces are graded on their own."""
    try:
        model.setup_kv_cache(batch_size)
        blocks = model.transformer.h
        if not any(cache_problem(b.attn, batch_size, model.config.block_size) for b in blocks):
            return "student"
    except Exception:  # NotImplementedError, a 'cuda' device on a CPU machine, ...
        pass
    for block in model.transformer.h:
        _grader_allocation(block.attn, batch_size, model.config.block_size)
    return "fallback"


def repair_cache_allocation(*models) -> bool:
    """If the student's init_kv_cache raises or allocates a cache of the wrong layout, dtype or
    device, make every attention module of `models` allocate the documented cache instead, so
    that generate_kv and generate_speculative are graded on their own logic. True if it did."""
    attn = models[0].transformer.h[0].attn
    saved = {name: b for name, b in attn.named_buffers(recurse=False)}
    try:
        attn.init_kv_cache(2, 8)
        broken = bool(cache_problem(attn, 2, 8)) or attn.seq_pos != 0
    except NotImplementedError:
        return False  # the stub: the piece's own test says "not implemented yet"
    except Exception:
        broken = True
    finally:
        attn.register_buffer("kv_cache", saved.get("kv_cache"), persistent=False)
        attn.seq_pos = 0
    if broken:
        for model in models:
            for block in model.transformer.h:
                block.attn.init_kv_cache = functools.partial(_grader_allocation, block.attn)
    return broken


def _as_int(x):
    """seq_pos and friends as a plain int (or a string saying what they were instead)."""
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, int):
        return x
    if isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_floating_point():
        return int(x)
    return repr(x)[:60]


def _detach(t):
    return t.detach().clone().cpu() if isinstance(t, torch.Tensor) else t


# ---------------------------------------------------------------------------------------
# 1. buffers


def probe_buffers(module, rec, shape=PUBLIC_SHAPE, seed=0):
    model = _model(module, shape, seed)
    attn = model.transformer.h[0].attn
    rec["weights_dtype"] = str(attn.c_attn.weight.dtype)
    attn.init_kv_cache(3, 40)
    buffers = dict(attn.named_buffers())
    rec["registered"] = isinstance(buffers.get("kv_cache"), torch.Tensor)
    if not rec["registered"]:
        return
    cache = buffers["kv_cache"]
    rec["shape"] = list(cache.shape)
    rec["dtype"] = str(cache.dtype)
    rec["device"] = str(cache.device)
    rec["seq_pos"] = _as_int(getattr(attn, "seq_pos", None))
    rec["persistent"] = any("kv_cache" in k for k in model.state_dict())
    model.double()
    rec["dtype_after_double"] = str(attn.kv_cache.dtype)
    model.float()
    model.setup_kv_cache(2)
    rec["setup_shapes"] = [
        None if block.attn.kv_cache is None else list(block.attn.kv_cache.shape)
        for block in model.transformer.h
    ]


def judge_buffers(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    """Only what changes behaviour is checked: the layout decode() and the grader index into,
    the weights' dtype and device (another dtype fails or loses precision in attention), an
    empty cache (seq_pos 0), non-persistence (state_dict() and checkpoint loading unchanged) and
    a buffer that moves with the model. The initial values are not checked: no correct program
    reads a position before writing it, so torch.empty is as good as torch.zeros."""
    cfg = fixtures.config_kwargs(shape)
    if "registered" not in rec:
        return ""
    if not rec["registered"]:
        _fail("init_kv_cache must register the cache with self.register_buffer('kv_cache', ...).")
    head_dim = cfg["n_embd"] // cfg["n_head"]
    expected = [2, 3, cfg["n_head"], 40, head_dim]
    got = rec["shape"]
    roomy = len(got) == 5 and got[1] >= 3 and got[3] >= 40  # more rows or positions change nothing
    if not (roomy and [got[0], got[2], got[4]] == [2, cfg["n_head"], head_dim]):
        _fail(
            f"kv_cache has shape {tuple(got)}; expected (2, batch_size, n_head, max_seq_len, "
            f"head_dim) = {tuple(expected)} for init_kv_cache(3, 40): decode() and the grader index "
            "it in that order."
        )
    if rec["dtype"] != rec.get("weights_dtype", "torch.float32"):
        _fail(
            f"kv_cache is {rec['dtype']} but the weights are {rec.get('weights_dtype')}: allocate it with "
            "dtype=self.c_attn.weight.dtype (a cache in another dtype breaks or blurs the attention "
            "that multiplies it with the queries)."
        )
    if rec.get("device", "cpu") != "cpu":
        _fail(
            f"kv_cache is on {rec['device']}: allocate it on the weights' device, self.c_attn.weight.device."
        )
    if rec["seq_pos"] != 0:
        _fail("init_kv_cache must leave self.seq_pos == 0 (an empty cache).")
    if rec["persistent"]:
        _fail("register the cache with persistent=False, so state_dict() and from_pretrained are unchanged.")
    if "dtype_after_double" not in rec:
        return ""
    if rec["dtype_after_double"] != "torch.float64":
        _fail("the cache must move with the model (.to / .double): register it as a buffer.")
    if "setup_shapes" not in rec:
        return ""
    for i, s in enumerate(rec["setup_shapes"]):
        if s is None or len(s) != 5 or s[1] < 2 or s[3] < cfg["block_size"]:
            _fail(f"setup_kv_cache(2) left layer {i} without a (2, >=2, n_head, block_size, head_dim) cache.")
    return f"kv_cache {tuple(expected)} registered, non-persistent, follows the model's dtype"


# ---------------------------------------------------------------------------------------
# 2. prefill (batch 2, prompt 11)


def _capture_kv(model, idx):
    """Keys and values of every layer for a full forward of idx: (B, nh, T, hs) each."""
    captured = []
    nh = model.config.n_head

    def hook(mod, inp, out):
        B, T, C3 = out.shape
        C = C3 // 3
        _, k, v = out.split(C, dim=2)
        captured.append(
            (k.view(B, T, nh, C // nh).transpose(1, 2), v.view(B, T, nh, C // nh).transpose(1, 2))
        )

    handles = [b.attn.c_attn.register_forward_hook(hook) for b in model.transformer.h]
    try:
        with torch.no_grad():
            logits, _ = model(idx, all_logits=True)
    finally:
        for h in handles:
            h.remove()
    return captured, logits


def _prefill_prompt(shape, seed, batch=2, prompt_len=11):
    return fixtures.random_prompt(
        batch, prompt_len, fixtures.config_kwargs(shape)["vocab_size"], seed=seed + 1
    )


def probe_prefill(module, rec, shape=PUBLIC_SHAPE, seed=0):
    model = _model(module, shape, seed)
    idx = _prefill_prompt(shape, seed)
    B, T = idx.shape
    ensure_cache(model, B + 1)
    for block in model.transformer.h:
        block.attn.enable_kv = True
    try:
        with torch.no_grad():
            rec["logits"] = _detach(model(idx, all_logits=True)[0])
    finally:
        for block in model.transformer.h:
            block.attn.enable_kv = False
    seq_pos = [_as_int(b.attn.seq_pos) for b in model.transformer.h]
    k = [_detach(b.attn.kv_cache[0, :B, :, :T]) for b in model.transformer.h]
    v = [_detach(b.attn.kv_cache[1, :B, :, :T]) for b in model.transformer.h]
    rec.update(seq_pos=seq_pos, k=k, v=v)


def judge_prefill(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    model = _model(ref, shape, seed)
    idx = _prefill_prompt(shape, seed)
    B, T = idx.shape
    expected_kv, expected_logits = _capture_kv(model, idx)
    if "logits" not in rec:
        return ""
    if not _close(rec["logits"], expected_logits):
        _fail(f"filling the cache changed forward()'s output ({_diff(rec['logits'], expected_logits)}).")
    if "v" not in rec or not len(rec["k"]) == len(rec["v"]) == len(rec["seq_pos"]) == len(expected_kv):
        return ""
    for i, (k, v) in enumerate(expected_kv):
        if rec["seq_pos"][i] != T:
            _fail(f"after a prefill of {T} tokens, layer {i} has seq_pos {rec['seq_pos'][i]}; expected {T}.")
        if not _close(rec["k"][i], k):
            _fail(
                f"layer {i}: kv_cache[0, :B, :, :T] does not hold the prompt's keys ({_diff(rec['k'][i], k)}). "
                "Keys go in index 0, values in index 1, laid out (B, n_head, T, head_dim)."
            )
        if not _close(rec["v"][i], v):
            _fail(
                f"layer {i}: kv_cache[1, :B, :, :T] does not hold the prompt's values ({_diff(rec['v'][i], v)})."
            )
    return f"prefill of {B}x{T} tokens stored every layer's keys and values"


# ---------------------------------------------------------------------------------------
# 3. attention decode: a chunk from an empty cache, then single tokens, then a multi-token
# chunk, each compared with forward() of layer 0's attention on the whole sequence.


def _attn_input(shape, seed, batch=2, total=15, first=6):
    C = fixtures.config_kwargs(shape)["n_embd"]
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, total, C, generator=g)
    chunks = [(0, first)] + [(t, t + 1) for t in range(first, total - 4)] + [(total - 4, total)]
    return x, chunks


def _decode_chunks(module, shape, seed):
    """Layer 0's decode() over the chunks of _attn_input, from an empty cache."""
    model = _model(module, shape, seed)
    attn = model.transformer.h[0].attn
    x, chunks = _attn_input(shape, seed)
    ensure_cache(model, x.size(0))
    seq_pos, ys = [], []
    with torch.no_grad():
        for start, end in chunks:
            seq_pos.append(_as_int(attn.seq_pos))
            ys.append(_detach(attn.decode(x[:, start:end])))
    return seq_pos, ys, _as_int(attn.seq_pos)


def probe_attn_decode(module, rec, shape=PUBLIC_SHAPE, seed=0):
    rec["seq_pos"], rec["y"], rec["final_seq_pos"] = _decode_chunks(module, shape, seed)
    with fast_path(module):  # the same steps outside DEBUG: the attention students benchmark
        rec["y_fast"] = _decode_chunks(module, shape, seed)[1]


def judge_attn_decode(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    model = _model(ref, shape, seed)
    x, chunks = _attn_input(shape, seed)
    with torch.no_grad():
        expected = model.transformer.h[0].attn(x)  # (B, total, C), no cache involved
    for (start, end), pos, y in zip(chunks, rec.get("seq_pos", []), rec.get("y", [])):
        if pos != start:
            _fail(
                f"before decoding positions {start}..{end - 1}, seq_pos is {pos}; "
                f"decode() must advance seq_pos by the number of new tokens, once."
            )
        if not _close(y, expected[:, start:end]):
            kind = "one new token" if end - start == 1 else f"{end - start} new tokens at once"
            hint = (
                " With several new tokens, token i may attend to the cache and to new tokens 0..i only."
                if end - start > 1
                else " The new token should attend to every cached position and itself."
            )
            _fail(
                f"decode() of {kind} at positions {start}..{end - 1} differs from forward() on the "
                f"whole sequence ({_diff(y, expected[:, start:end])}).{hint}"
            )
    if "final_seq_pos" not in rec or len(rec["y"]) != len(chunks):
        return ""
    total = x.size(1)
    if rec["final_seq_pos"] != total:
        _fail(f"after decoding {total} positions, seq_pos is {rec['final_seq_pos']}.")
    if "y_fast" not in rec:
        return ""
    for (start, end), y in zip(chunks, rec["y_fast"]):
        if not _close(y, expected[:, start:end], FAST_TOL):
            raise FastPathFailed(
                f"decode() of positions {start}..{end - 1} is {FAST_PATH_WRONG} "
                f"({_diff(y, expected[:, start:end])}). {hints.fast_path_mask(model.transformer.h[0].attn, x, start, end, y, lambda a, b: _close(a, b, FAST_TOL))}"
            )
    return (
        f"decode matched forward() for {len(chunks)} steps (single tokens and chunks), batch {x.size(0)}, "
        "in DEBUG and outside it"
    )


# ---------------------------------------------------------------------------------------
# 4. GPT decode: one token at a time from an empty cache. Several tokens at once go through the
# attention's decode (graded in attn_decode) and are exercised by speculative decoding.


def _decode_prompt(shape, seed, batch=2, total=14):
    return fixtures.random_prompt(batch, total, fixtures.config_kwargs(shape)["vocab_size"], seed=seed + 3)


def attention_problem(module, shape) -> str:
    """'' if layer 0's decode() matches the attention's forward() for a chunk and then single
    tokens (in DEBUG); else what went wrong."""
    try:
        _, ys, _ = _decode_chunks(module, shape, 0)
    except Exception as e:
        return f"CausalSelfAttention.decode raised {type(e).__name__}"
    model = _model(module, shape, 0)
    x, chunks = _attn_input(shape, 0)
    with torch.no_grad():
        expected = model.transformer.h[0].attn(x)
    ok = all(_close(y, expected[:, a:b]) for (a, b), y in zip(chunks, ys))
    return "" if ok else "CausalSelfAttention.decode does not match forward()"


def use_standin_attention(model):
    """Replace every layer's decode() by the grader's cache-less stand-in: the given attention
    forward() over the hidden states the cache would hold (positions 0..seq_pos-1). GPT.decode
    is then graded on its own logic when the student's attention decode is wrong."""
    for block in model.transformer.h:
        attn, state = block.attn, {"x": None}

        def decode(x, attn=attn, state=state):
            kept = 0 if state["x"] is None else min(attn.seq_pos, state["x"].size(1))
            previous = x[:, :0] if state["x"] is None else state["x"][:, :kept]
            state["x"] = torch.cat((previous, x), dim=1)
            attn.seq_pos = state["x"].size(1)
            return attn(state["x"])[:, kept:]

        attn.decode = decode


STANDIN_ATTENTION_NOTE = (
    "graded with the grader's stand-in for the attention's decode, because yours does not match "
    "forward() (see attn_decode): GPT.decode's own logic is right"
)


def probe_gpt_decode(module, rec, shape=PUBLIC_SHAPE, seed=0):
    model = _model(module, shape, seed)
    idx = _decode_prompt(shape, seed)
    ensure_cache(model, idx.size(0))
    rec["standin_attention"] = bool(attention_problem(module, shape))
    if rec["standin_attention"]:
        use_standin_attention(model)
    rec["kv_pos"], rec["steps"] = [], []
    for t in range(idx.size(1)):
        rec["kv_pos"].append(_as_int(model.kv_pos))
        rec["steps"].append(_detach(model.decode(idx[:, t : t + 1])))


def judge_gpt_decode(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    model = _model(ref, shape, seed)
    idx = _decode_prompt(shape, seed)
    B, total = idx.shape
    with torch.no_grad():
        expected, _ = model(idx, all_logits=True)  # (B, total, V)
    steps = rec.get("steps", [])
    if not steps:
        return ""
    got = steps[0]
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (B, 1, model.config.vocab_size):
        shape_got = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        _fail(
            f"GPT.decode(idx) must return logits (B, T_new, V) = {(B, 1, model.config.vocab_size)}; got {shape_got}."
        )
    for t, pos, step in zip(range(total), rec.get("kv_pos", []), steps):
        if pos != t:
            _fail(f"kv_pos is {pos} before decoding position {t}: advance it once per new token.")
        if not _close(step, expected[:, t : t + 1]):
            _fail(
                f"GPT.decode of the token at position {t} differs from forward() "
                f"({_diff(step, expected[:, t : t + 1])}).{hints.decode_position(model, idx, steps, t, _close)}"
            )
    if len(steps) != total:
        return ""
    summary = f"GPT.decode matched forward() at {total} one-token steps from an empty cache, batch {B}"
    return summary + (f" ({STANDIN_ATTENTION_NOTE})" if rec.get("standin_attention") else "")


# ---------------------------------------------------------------------------------------
# 5 and 6: generation. Greedy outputs are compared token for token with the naive baseline.


def _first_mismatch(got, expected):
    diff = (got != expected).nonzero()
    return None if diff.numel() == 0 else tuple(diff[0].tolist())


def _near_tie(model, expected, row, pos) -> float:
    """Top-2 logit margin of the reference at the token where outputs first differ."""
    with torch.no_grad():
        logits, _ = model(expected[row : row + 1, :pos])
    top2 = logits[0, -1].topk(2).values
    return float(top2[0] - top2[1])


def compare_greedy(model, got, expected, what: str, near_tie=None, failure=CheckFailed) -> str:
    """'' if equal; a note if they differ only after a near-tie (a top-2 margin below
    `near_tie`, NEAR_TIE by default); raises `failure` otherwise."""
    near_tie = NEAR_TIE if near_tie is None else near_tie
    if not isinstance(got, torch.Tensor) or got.is_floating_point() or got.dtype == torch.bool:
        _fail(
            f"{what} must return a tensor of token ids (torch.long); got {getattr(got, 'dtype', type(got))}."
        )
    if got.shape != expected.shape:
        _fail(
            f"{what} returned shape {tuple(got.shape)}; expected {tuple(expected.shape)} (prompt + max_new_tokens)."
        )
    got = got.long()
    if _first_mismatch(got, expected) is None:
        return ""
    notes = []
    for row in range(expected.size(0)):  # every differing row must start differing at a near-tie
        where = _first_mismatch(got[row : row + 1], expected[row : row + 1])
        if where is None:
            continue
        pos = where[1]
        margin = _near_tie(model, expected, row, pos)
        if margin >= near_tie:
            raise failure(
                f"{what}: row {row} differs from the naive generate() at position {pos} "
                f"(got token {int(got[row, pos])}, expected {int(expected[row, pos])})."
            )
        notes.append(
            f"row {row} differs from position {pos} after a near-tie (top-2 margin {margin:.2g}); excused"
        )
    return "; ".join(notes)


class _TokenCounter:
    """Counts how many tokens pass through a model's first c_attn per call. While the grader's
    stand-in decode (below) runs, it counts the tokens the student's code handed to it."""

    def __init__(self, model):
        self.calls: list[int] = []
        self.model = model
        self.handle = model.transformer.h[0].attn.c_attn.register_forward_hook(self._hook)
        model.__dict__.setdefault("_grader_counters", []).append(self)

    def _hook(self, mod, inp, out):
        if not self.model.__dict__.get("_grader_standin_busy"):
            self.calls.append(int(inp[0].shape[1]))

    def remove(self):
        self.handle.remove()
        self.model.__dict__["_grader_counters"].remove(self)


def decode_problem(module, shape) -> str:
    """'' if the prefill and GPT.decode pieces match forward() for a prompt, a single token and
    a chunk (in DEBUG); else what went wrong. Decides whether generation is graded on the
    grader's stand-in for them."""
    model = _model(module, shape, 0)
    idx = _decode_prompt(shape, 0, batch=2, total=8)
    try:
        ensure_cache(model, idx.size(0))
        got = torch.cat(
            [
                model.prefill(idx[:, :5], all_logits=True),
                model.decode(idx[:, 5:6]),
                model.decode(idx[:, 6:8]),
            ],
            dim=1,
        )
    except Exception as e:
        return f"prefill or GPT.decode raised {type(e).__name__}"
    expected, _ = model(idx, all_logits=True)
    return "" if _close(got, expected) else "GPT.decode does not match forward()"


def use_standin_decode(*models):
    """Replace prefill() and decode() of `models` by the grader's cache-less stand-in: the given
    forward() over the tokens that the cache would hold (positions 0..kv_pos-1, so set_kv_pos
    rollbacks work). Generation is then graded on its own logic when the student's decode
    pieces are wrong (graded in attn_decode / gpt_decode). Correct results, no speed."""
    for model in models:
        state = {"tokens": None}

        def run(tokens, model=model, state=state):
            state["tokens"] = tokens
            model.set_kv_pos(tokens.size(1))
            model.__dict__["_grader_standin_busy"] = True
            try:
                logits, _ = model(tokens, all_logits=True)
            finally:
                model.__dict__["_grader_standin_busy"] = False
            for counter in model.__dict__.get("_grader_counters", []):
                counter.calls.append(tokens.size(1) - state["kept"])
            return logits

        def prefill(idx, all_logits=False, model=model, state=state, run=run):
            model.setup_kv_cache(idx.size(0))
            state["kept"] = 0
            logits = run(idx)
            return logits if all_logits else logits[:, -1:]

        def decode(idx, model=model, state=state, run=run):
            kept = 0 if state["tokens"] is None else min(model.kv_pos, state["tokens"].size(1))
            previous = idx[:, :0] if state["tokens"] is None else state["tokens"][:, :kept]
            state["kept"] = kept
            return run(torch.cat((previous, idx), dim=1))[:, kept:]

        model.prefill, model.decode = prefill, decode


STANDIN_NOTE = (
    "graded with the grader's stand-in for prefill and GPT.decode, because yours do not match "
    "forward() (see prefill, attn_decode and gpt_decode): this piece's own logic is right"
)


def _kv_cases(shape):
    """(batch, prompt length, new tokens): the contract's boundaries included (a one-token
    prompt, 0 and 1 new tokens, generating up to exactly block_size)."""
    block = fixtures.config_kwargs(shape)["block_size"]
    return ((1, 1, 20), (1, 9, 25), (3, 7, 17), (2, 5, 0), (2, 3, 1), (1, block - 12, 12))


FAST_KV_CASE = 2  # the case also run outside DEBUG


def _kv_prompts(shape, seed):
    vocab = fixtures.config_kwargs(shape)["vocab_size"]
    cases = [
        (fixtures.random_prompt(b, t, vocab, seed=seed * 100 + i), new)
        for i, (b, t, new) in enumerate(_kv_cases(shape))
    ]
    # a second call must not see the first one's cache: a long run, then a short prompt
    first = fixtures.random_prompt(1, 30, vocab, seed=seed + 7)
    second = fixtures.random_prompt(1, 4, vocab, seed=seed + 8)
    return cases, (first, 20), (second, 12)


GRADER_CACHE_NOTE = (
    "graded with a cache the grader allocated, because your init_kv_cache is wrong (see buffers)"
)


def probe_generate_kv(module, rec, shape=PUBLIC_SHAPE, seed=0):
    model = _model(module, shape, seed)
    rec["grader_cache"] = repair_cache_allocation(model)
    rec["standin_decode"] = bool(decode_problem(module, shape))
    if rec["standin_decode"]:
        use_standin_decode(model)
    cases, (a, new_a), (b, new_b) = _kv_prompts(shape, seed)
    rec["out"], rec["calls"] = [], []
    for idx, new in cases:
        counter = _TokenCounter(model)
        try:
            got = model.generate_kv(idx, new, top_k=1)
        finally:
            counter.remove()
        rec["out"].append(_detach(got))
        rec["calls"].append(counter.calls)
    model.generate_kv(a, new_a, top_k=1)
    rec["second"] = _detach(model.generate_kv(b, new_b, top_k=1))
    idx, new = cases[FAST_KV_CASE]
    with fast_path(module):
        rec["out_fast"] = _detach(model.generate_kv(idx, new, top_k=1))


def judge_generate_kv(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    model = _model(ref, shape, seed)
    cases, _, (b, new_b) = _kv_prompts(shape, seed)
    notes = [GRADER_CACHE_NOTE] if rec.get("grader_cache") else []
    notes += [STANDIN_NOTE] if rec.get("standin_decode") else []
    expected_all = []
    for (idx, new), got, calls in zip(cases, rec.get("out", []), rec.get("calls", [])):
        B, T = idx.shape
        expected = model.generate(idx, new, top_k=1)
        expected_all.append(expected)
        notes.append(compare_greedy(model, got, expected, f"generate_kv(batch {B}, prompt {T}, {new} new)"))
        if new == 0:
            continue
        if not calls or calls[0] != T or any(c != 1 for c in calls[1:]):
            _fail(
                f"generate_kv must run the prompt once (prefill, {T} tokens) and then one token "
                f"per step; the first layer saw tokens per call: {calls[:8]}{'...' if len(calls) > 8 else ''}."
            )
        if len(calls) not in (new, new + 1):
            _fail(f"generate_kv made {len(calls)} forward passes for {new} new tokens; expected {new}.")
    if "second" not in rec or len(rec["out"]) != len(cases):
        return ""
    expected = model.generate(b, new_b, top_k=1)
    notes.append(
        compare_greedy(
            model,
            rec["second"],
            expected,
            "a second generate_kv call (after a longer first one; reset the cache)",
        )
    )
    if "out_fast" not in rec:
        return ""
    B, T = cases[FAST_KV_CASE][0].shape
    compare_greedy(
        model,
        rec["out_fast"],
        expected_all[FAST_KV_CASE],
        f"generate_kv(batch {B}, prompt {T}) {FAST_PATH_WRONG}",
        near_tie=FAST_TOL,
        failure=FastPathFailed,
    )
    notes = [n for n in notes if n]
    summary = (
        f"generate_kv matched generate() on {len(cases) + 1} cases (up to block_size), one token per "
        "decode step, and outside DEBUG"
    )
    return summary + (f" ({'; '.join(notes)})" if notes else "")


def _spec_cases(shape):
    """(prompt length, new tokens, num_speculative): the boundaries included (num_speculative
    above what is left, a one-token prompt, 0 and 1 new tokens, up to exactly block_size)."""
    block = fixtures.config_kwargs(shape)["block_size"]
    return ((1, 24, 4), (9, 31, 3), (5, 7, 10), (5, 0, 3), (6, 1, 3), (block - 14, 14, 4))


DRAFTS = ("the fixture draft", "a draft that never agrees", "an identical draft")
FAST_SPEC_CASE = 1  # run with the fixture draft outside DEBUG too


def _pair_spec(shape):
    return fixtures.PairSpec(target=shape, draft_layers=1, scale=0.05)


def _spec_prompts(shape, seed):
    vocab = fixtures.config_kwargs(shape)["vocab_size"]
    return [
        fixtures.random_prompt(1, t, vocab, seed=seed * 100 + i)
        for i, (t, _, _) in enumerate(_spec_cases(shape))
    ]


def probe_speculative(module, rec, shape=PUBLIC_SHAPE, seed=0):
    draft, target = fixtures.make_pair(module, _pair_spec(shape), seed=seed)
    stranger = fixtures.make_model(module, dict(fixtures.config_kwargs(shape), n_layer=1), seed=seed + 99)
    identical = copy.deepcopy(target)
    rec["grader_cache"] = repair_cache_allocation(target, draft, stranger, identical)
    rec["standin_decode"] = bool(decode_problem(module, shape))
    if rec["standin_decode"]:
        use_standin_decode(target, draft, stranger, identical)
    drafts = dict(zip(DRAFTS, (draft, stranger, identical)))
    cases = list(zip(_spec_prompts(shape, seed), _spec_cases(shape)))
    rec["out"], rec["calls"] = [], []
    for name in DRAFTS:
        for idx, (_, new, k) in cases:
            counter = _TokenCounter(target)
            try:
                got = target.generate_speculative(idx, new, drafts[name], top_k=1, num_speculative=k)
            finally:
                counter.remove()
            rec["out"].append(_detach(got))
            rec["calls"].append(counter.calls)
    idx, (_, new, k) = cases[FAST_SPEC_CASE]
    with fast_path(module):
        rec["out_fast"] = _detach(target.generate_speculative(idx, new, draft, top_k=1, num_speculative=k))


def max_verify_passes(new: int, k: int) -> int:
    """Target passes allowed for `new` tokens when every draft is right: one per round of
    min(k, new) tokens (without the bonus token; with it, rounds add k + 1), plus the prompt's
    prefill and one spare. One pass per token is far above this once new >= 2k."""
    return math.ceil(new / max(1, min(k, new))) + 2


def judge_speculative(ref, rec, shape=PUBLIC_SHAPE, seed=0) -> str:
    _, target = fixtures.make_pair(ref, _pair_spec(shape), seed=seed)
    prompts, cases = _spec_prompts(shape, seed), _spec_cases(shape)
    expected = [target.generate(idx, new, top_k=1) for idx, (_, new, _) in zip(prompts, cases)]
    runs = [(name, i) for name in DRAFTS for i in range(len(cases))]
    notes = [GRADER_CACHE_NOTE] if rec.get("grader_cache") else []
    notes += [STANDIN_NOTE] if rec.get("standin_decode") else []
    for (name, i), got, calls in zip(runs, rec.get("out", []), rec.get("calls", [])):
        prompt_len, new, k = prompts[i].size(1), cases[i][1], cases[i][2]
        what = f"generate_speculative with {name} (prompt {prompt_len}, {new} new, num_speculative={k})"
        if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[1] > expected[i].shape[1]:
            _fail(f"{what} returned {got.shape[1] - prompt_len} new tokens; stop at exactly max_new_tokens.")
        notes.append(compare_greedy(target, got, expected[i], what))
        if name == "an identical draft" and len(calls) > max_verify_passes(new, k):
            _fail(
                f"{what}: the target ran {len(calls)} times for {new} tokens although every draft was "
                f"right; verify all k drafted tokens in ONE batched pass of the target (one pass per round "
                f"of k tokens: at most {max_verify_passes(new, k)} passes here, prefill included)."
            )
    if len(rec.get("out", [])) != len(runs) or "out_fast" not in rec:
        return ""
    compare_greedy(
        target,
        rec["out_fast"],
        expected[FAST_SPEC_CASE],
        f"generate_speculative with the fixture draft {FAST_PATH_WRONG}",
        near_tie=FAST_TOL,
        failure=FastPathFailed,
    )
    notes = [n for n in notes if n]
    summary = (
        f"speculative output equals the target's greedy output for {len(DRAFTS)} drafts x {len(cases)} "
        "cases (up to block_size), and outside DEBUG"
    )
    return summary + (f" ({'; '.join(notes)})" if notes else "")


# Each piece's probe (run in the worker, on the student's code: records outputs only) and judge
# (run by the grader: computes what is expected from the given code and compares).
PROBES = {
    "buffers": probe_buffers,
    "prefill": probe_prefill,
    "attn_decode": probe_attn_decode,
    "gpt_decode": probe_gpt_decode,
    "generate_kv": probe_generate_kv,
    "speculative": probe_speculative,
}
JUDGES = {
    "buffers": judge_buffers,
    "prefill": judge_prefill,
    "attn_decode": judge_attn_decode,
    "gpt_decode": judge_gpt_decode,
    "generate_kv": judge_generate_kv,
    "speculative": judge_speculative,
}
assert tuple(PROBES) == tuple(JUDGES) == PIECES, (
    "every checked piece of infkit/pieces.py needs a probe and a judge"
)


def probe(piece, module, shape=PUBLIC_SHAPE, seed=0):
    """Run one probe; return (record, exception or None). The record keeps what was
    produced before an exception, so the judge can point at the first wrong step."""
    rec = {}
    try:
        with torch.no_grad():
            PROBES[piece](module, rec, shape=shape, seed=seed)
        return rec, None
    except Exception as e:  # the student's code raised: the judge turns it into a message
        return rec, e


def judge(piece, ref, rec, error=None, shape=PUBLIC_SHAPE, seed=0) -> str:
    """Judge a probe's record. `error` is None, or a dict {type, message, not_implemented,
    where} describing what the student's code raised. Returns a summary or raises."""
    # nothing recorded before the error: no need to compute the expected outputs
    summary = JUDGES[piece](ref, rec, shape=shape, seed=seed) if rec else ""
    if error is not None:
        if error.get("not_implemented"):
            _fail(f"{LABELS[piece]} is not implemented yet ({error['message']}).")
        where = f" ({error['where']})" if error.get("where") else ""
        hint = hints.explain_error(error["type"], error["message"])  # what to do, when it is known
        _fail(f"your code raised {error['type']}: {error['message']}{where}" + (f"\n{hint}" if hint else ""))
    if not summary:  # the probe stopped early without an error: a malformed record
        _fail("the grader got incomplete outputs from your code.")
    return summary


def describe_error(e: BaseException, filename: str = "model.py") -> dict:
    """A JSON-able description of an exception, naming the deepest line in `filename`."""
    where = ""
    for frame in traceback.extract_tb(e.__traceback__):
        if os.path.basename(frame.filename) == filename:
            where = f"{filename} line {frame.lineno}: {(frame.line or '').strip()[:100]}"
    return {
        "type": type(e).__name__,
        "message": str(e)[:500],
        "not_implemented": isinstance(e, NotImplementedError),
        "where": where,
    }


def _in_process(piece):
    def check(module, shape=PUBLIC_SHAPE, seed=0) -> str:
        rec, err = probe(piece, module, shape=shape, seed=seed)
        summary = JUDGES[piece](module, rec, shape=shape, seed=seed)  # an earlier mismatch first
        if err is not None:
            if isinstance(err, NotImplementedError):
                _fail(f"{LABELS[piece]} is not implemented yet ({err}).")
            raise err  # the student's own exception, traceback intact
        if not summary:
            _fail("the check stopped early.")
        return summary

    check.__name__ = f"check_{piece}"
    return check


CHECKS = {p: _in_process(p) for p in PIECES}


def run(module_or_path, pieces=PIECES, **kwargs) -> dict:
    """Run checks and print one friendly line per piece. Returns {piece: (passed, message)}."""
    module = module_or_path
    if isinstance(module_or_path, (str, os.PathLike)):
        module = loading.load_model_module(module_or_path, debug=True)
    results = {}
    for piece in pieces:
        try:
            message, passed = CHECKS[piece](module, **kwargs), True
        except CheckFailed as e:
            message, passed = str(e), False
        except Exception as e:  # the student's code raised: its error and line first, in short
            message, passed = hints.checks_crash(e, module, piece), False
        results[piece] = (passed, message)
        print(f"{'PASS' if passed else 'FAIL'}  {piece:12s} {message}")
    return results


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m infkit.checks PATH/TO/model.py [piece ...]")
    outcome = run(sys.argv[1], sys.argv[2:] or PIECES)
    sys.exit(0 if all(ok for ok, _ in outcome.values()) else 1)
