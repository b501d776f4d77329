"""Correctness checks for each piece of the student contract, behaviour by behaviour.

Each piece (infkit/pieces.py) has named behaviours (BEHAVIOURS) and two halves, so that the
same check can run in one process (public tests, notebook) or split across two (the autograder):

  probe_<piece>(module, rec, errors, shape, seed)
      runs the student's code on seeded fixtures and records its raw outputs (tensors, ints)
      in rec[behaviour], and what it raised in errors[behaviour]; nothing is judged here
  JUDGES[piece][behaviour](ref, rec[behaviour], shape, seed)
      rebuilds the same fixtures from a reference module `ref` (the given code: forward, naive
      generate), computes the expected outputs itself and compares: returns what was run, or
      raises CheckFailed with what to fix

`probe()` and `judge()` run them (judge gives an Outcome per behaviour). The autograder runs
the probe in a sandboxed worker and the judges in its own trusted process, so student code
never sees the code that decides. `CHECKS[piece](module)` does both in one process, with the
module's own given code as the reference.

Run the checks against a model.py from the shell:  python -m infkit.checks PATH [piece ...]
"""

import contextlib
import copy
import dataclasses
import functools
import math
import os
import sys

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

# The public tests use this shape; the autograder's hidden rows pass other seeds and shapes
# (they live with the autograder only).
PUBLIC_SHAPE = "tiny"

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


# The reference's models and outputs, shared by the judges of one judge() call (several
# behaviours compare with the same naive generate()); judge() empties it when it starts.
_REFERENCE = {}


def _once(key, compute):
    if key not in _REFERENCE:
        _REFERENCE[key] = compute()
    return _REFERENCE[key]


def _ref_model(ref, shape, seed):
    return _once(("model", id(ref), repr(shape), seed), lambda: _model(ref, shape, seed))


def _ref_generate(model, idx, new):
    """The reference's greedy tokens for idx (naive generate), once per judge() call."""
    key = ("generate", id(model), tuple(idx.shape), hash(tuple(idx.flatten().tolist())), new)
    return _once(key, lambda: model.generate(idx, new, top_k=1))


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
# Behaviours. Each piece's check is a set of named behaviours, each recorded and judged on its
# own: an exception or a mismatch in one behaviour leaves the others' verdicts alone. The
# autograder gives every behaviour its own rows and points.

BEHAVIOURS = {
    "buffers": {
        "layout": "init_kv_cache registers kv_cache as a buffer laid out (2, batch, n_head, positions, head_dim)",
        "dtype": "the cache takes the weights' dtype and device (allocated in a float32 and in a float64 model)",
        "state": "the cache starts empty (seq_pos 0), is non-persistent and moves with the model (.double())",
        "setup": "setup_kv_cache gives every layer a cache of block_size positions",
    },
    "prefill": {
        "output": "forward() with enable_kv returns the same logits as without it",
        "keys_values": "every layer's cache holds the prompt's keys (index 0) and values (index 1)",
        "seq_pos": "every layer's seq_pos is the prompt's length afterwards",
    },
    "attn_decode": {
        "one_token": "decode() of one new token equals forward() on the whole sequence",
        "chunk": "decode() of several new tokens at once equals forward() (causal among the new tokens)",
        "seq_pos": "decode() advances seq_pos by the number of new tokens",
        "fast_path": "the same steps outside DEBUG (SDPA, the code ./run.sh times) equal forward()",
    },
    "gpt_decode": {
        "logits": "GPT.decode gives forward()'s logits one token at a time, at the right positions",
        "kv_pos": "kv_pos advances by one per decoded token",
    },
    "generate_kv": {
        "ordinary": "the same tokens as generate() for ordinary prompts (batch 1 and 3)",
        "edge_lengths": "the same tokens for a one-token prompt and for 0 and 1 new tokens",
        "block_size": "the same tokens when generating up to exactly block_size",
        "one_prefill": "one prefill of the prompt, then one token per decode step",
        "fresh_cache": "a second call (after a longer first one) starts from an empty cache",
        "fast_path": "the same tokens outside DEBUG (the code ./run.sh times)",
    },
    "speculative": {
        "fixture_draft": "exactly the target's greedy tokens with the fixture draft",
        "any_draft": "exactly the target's greedy tokens with a draft that never agrees and with an identical one",
        "edge_lengths": "exactly greedy for 0 and 1 new tokens and for num_speculative above what is left",
        "block_size": "exactly greedy when generating up to exactly block_size (no draft runs past it)",
        "one_pass": "all drafted tokens of a round verified in one pass of the target",
        "fast_path": "the same tokens outside DEBUG (the code ./run.sh times)",
    },
}
assert tuple(BEHAVIOURS) == PIECES, "every checked piece of infkit/pieces.py needs its behaviours"


@contextlib.contextmanager
def _recording(rec, errors, *names):
    """Record into rec[name] for each of `names`; an exception of the student's code becomes
    the error of those behaviours (the first one each keeps) and the probe goes on."""
    parts = [rec.setdefault(name, {}) for name in names]
    try:
        yield parts[0] if len(parts) == 1 else parts
    except Exception as e:
        for name in names:
            errors.setdefault(name, e)


# ---------------------------------------------------------------------------------------
# 1. buffers


def _cache_record(attn, rec):
    buffers = dict(attn.named_buffers())
    cache = buffers.get("kv_cache")
    rec["registered"] = isinstance(cache, torch.Tensor)
    if rec["registered"]:
        rec.update(shape=list(cache.shape), dtype=str(cache.dtype), device=str(cache.device))
    rec["weights_dtype"] = str(attn.c_attn.weight.dtype)
    rec["weights_device"] = str(attn.c_attn.weight.device)


def probe_buffers(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    with _recording(rec, errors, "layout") as r:
        attn = _model(module, shape, seed).transformer.h[0].attn
        attn.init_kv_cache(3, 40)
        _cache_record(attn, r)
    with _recording(rec, errors, "dtype") as r:
        r["allocations"] = []
        for dtype in (torch.float32, torch.float64):  # a second dtype: float32 alone proves nothing
            attn = _model(module, shape, seed).to(dtype).transformer.h[0].attn
            attn.init_kv_cache(3, 40)
            one = {}
            _cache_record(attn, one)
            r["allocations"].append(one)
    with _recording(rec, errors, "state") as r:
        model = _model(module, shape, seed)
        attn = model.transformer.h[0].attn
        attn.init_kv_cache(3, 40)
        r["seq_pos"] = _as_int(getattr(attn, "seq_pos", None))
        r["persistent"] = any("kv_cache" in k for k in model.state_dict())
        before = getattr(attn, "kv_cache", None)
        model.double()
        after = getattr(attn, "kv_cache", None)
        r["dtype_before"] = str(getattr(before, "dtype", None))
        r["dtype_after_double"] = str(getattr(after, "dtype", None))
    with _recording(rec, errors, "setup") as r:
        model = _model(module, shape, seed)
        model.setup_kv_cache(2)
        r["setup_shapes"] = [
            list(b.attn.kv_cache.shape)
            if isinstance(getattr(b.attn, "kv_cache", None), torch.Tensor)
            else None
            for b in model.transformer.h
        ]


def _expected_cache_shape(shape, batch=3, positions=40):
    cfg = fixtures.config_kwargs(shape)
    return [2, batch, cfg["n_head"], positions, cfg["n_embd"] // cfg["n_head"]]


def _judge_layout(ref, rec, shape, seed) -> str:
    if "registered" not in rec:
        return ""
    if not rec["registered"]:
        _fail("init_kv_cache must register the cache with self.register_buffer('kv_cache', ...).")
    expected, got = _expected_cache_shape(shape), rec["shape"]
    roomy = len(got) == 5 and got[1] >= 3 and got[3] >= 40  # more rows or positions change nothing
    if not (roomy and [got[0], got[2], got[4]] == [expected[0], expected[2], expected[4]]):
        _fail(
            f"kv_cache has shape {tuple(got)}; expected (2, batch_size, n_head, max_seq_len, "
            f"head_dim) = {tuple(expected)} for init_kv_cache(3, 40): decode() and the grader index "
            "it in that order."
        )
    return f"init_kv_cache(3, 40) registered kv_cache {tuple(got)}"


def _judge_dtype(ref, rec, shape, seed) -> str:
    allocations = rec.get("allocations", [])
    if len(allocations) != 2:
        return ""
    for one in allocations:
        if not one["registered"]:
            _fail("init_kv_cache must register the cache with self.register_buffer('kv_cache', ...).")
        if one["dtype"] != one["weights_dtype"]:
            _fail(
                f"in a model whose weights are {one['weights_dtype']}, kv_cache is {one['dtype']}: allocate "
                "it with dtype=self.c_attn.weight.dtype (a cache in another dtype breaks or blurs the "
                "attention that multiplies it with the queries)."
            )
        if one["device"] != one["weights_device"]:
            _fail(
                f"kv_cache is on {one['device']} while the weights are on {one['weights_device']}: "
                "allocate it on self.c_attn.weight.device."
            )
    return "kv_cache took the weights' dtype in a float32 and in a float64 model, on their device (CPU)"


def _judge_state(ref, rec, shape, seed) -> str:
    if "dtype_after_double" not in rec:
        return ""
    if rec["seq_pos"] != 0:
        _fail(f"init_kv_cache must leave self.seq_pos == 0 (an empty cache); it is {rec['seq_pos']}.")
    if rec["persistent"]:
        _fail("register the cache with persistent=False, so state_dict() and from_pretrained are unchanged.")
    if rec["dtype_before"] == "None":
        _fail("init_kv_cache must register the cache with self.register_buffer('kv_cache', ...).")
    if rec["dtype_after_double"] != "torch.float64":
        _fail("the cache must move with the model (.to / .double): register it as a buffer.")
    return "seq_pos 0 after init_kv_cache, kv_cache not in state_dict(), converted by model.double()"


def _judge_setup(ref, rec, shape, seed) -> str:
    if "setup_shapes" not in rec:
        return ""
    block = fixtures.config_kwargs(shape)["block_size"]
    for i, s in enumerate(rec["setup_shapes"]):
        if s is None or len(s) != 5 or s[1] < 2 or s[3] < block:
            _fail(f"setup_kv_cache(2) left layer {i} without a (2, >=2, n_head, block_size, head_dim) cache.")
    return f"setup_kv_cache(2) gave all {len(rec['setup_shapes'])} layers a cache of {block} positions"


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


def probe_prefill(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    with _recording(rec, errors, "output", "keys_values", "seq_pos") as (out, kv, pos):
        model = _model(module, shape, seed)
        idx = _prefill_prompt(shape, seed)
        B, T = idx.shape
        ensure_cache(model, B + 1)
        for block in model.transformer.h:
            block.attn.enable_kv = True
        try:
            with torch.no_grad():
                out["logits"] = _detach(model(idx, all_logits=True)[0])
        finally:
            for block in model.transformer.h:
                block.attn.enable_kv = False
        pos["seq_pos"] = [_as_int(b.attn.seq_pos) for b in model.transformer.h]
        kv["k"] = [_detach(b.attn.kv_cache[0, :B, :, :T]) for b in model.transformer.h]
        kv["v"] = [_detach(b.attn.kv_cache[1, :B, :, :T]) for b in model.transformer.h]


def _judge_prefill_output(ref, rec, shape, seed) -> str:
    if "logits" not in rec:
        return ""
    idx = _prefill_prompt(shape, seed)
    _, expected = _once(
        ("kv", id(ref), repr(shape), seed), lambda: _capture_kv(_ref_model(ref, shape, seed), idx)
    )
    if not _close(rec["logits"], expected):
        _fail(f"filling the cache changed forward()'s output ({_diff(rec['logits'], expected)}).")
    return f"forward() with enable_kv gave the same logits for a {idx.size(0)}x{idx.size(1)} prompt"


def _judge_prefill_kv(ref, rec, shape, seed) -> str:
    idx = _prefill_prompt(shape, seed)
    expected, _ = _once(
        ("kv", id(ref), repr(shape), seed), lambda: _capture_kv(_ref_model(ref, shape, seed), idx)
    )
    if "v" not in rec or not len(rec["k"]) == len(rec["v"]) == len(expected):
        return ""
    for i, (k, v) in enumerate(expected):
        if not _close(rec["k"][i], k):
            _fail(
                f"layer {i}: kv_cache[0, :B, :, :T] does not hold the prompt's keys ({_diff(rec['k'][i], k)}). "
                "Keys go in index 0, values in index 1, laid out (B, n_head, T, head_dim)."
            )
        if not _close(rec["v"][i], v):
            _fail(
                f"layer {i}: kv_cache[1, :B, :, :T] does not hold the prompt's values ({_diff(rec['v'][i], v)})."
            )
    return f"every layer's cache held the keys and values of a {idx.size(0)}x{idx.size(1)} prompt"


def _judge_prefill_seq_pos(ref, rec, shape, seed) -> str:
    T = _prefill_prompt(shape, seed).size(1)
    n_layer = fixtures.config_kwargs(shape)["n_layer"]
    if len(rec.get("seq_pos", [])) != n_layer:
        return ""
    for i, pos in enumerate(rec["seq_pos"]):
        if pos != T:
            _fail(f"after a prefill of {T} tokens, layer {i} has seq_pos {pos}; expected {T}.")
    return f"every layer's seq_pos was {T} after a {T}-token prefill"


# ---------------------------------------------------------------------------------------
# 3. attention decode: a chunk from an empty cache, then single tokens, then a multi-token
# chunk, each compared with forward() of layer 0's attention on the whole sequence.


def _attn_input(shape, seed, batch=2, total=15, first=6):
    C = fixtures.config_kwargs(shape)["n_embd"]
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, total, C, generator=g)
    chunks = [(0, first)] + [(t, t + 1) for t in range(first, total - 4)] + [(total - 4, total)]
    return x, chunks


def _decode_chunks(module, shape, seed, into=None):
    """Layer 0's decode() over the chunks of _attn_input, from an empty cache. `into` receives
    seq_pos and the outputs step by step, so what came before an exception is kept."""
    into = {} if into is None else into
    into.update(seq_pos=[], y=[])
    model = _model(module, shape, seed)
    attn = model.transformer.h[0].attn
    x, chunks = _attn_input(shape, seed)
    ensure_cache(model, x.size(0))
    with torch.no_grad():
        for start, end in chunks:
            into["seq_pos"].append(_as_int(attn.seq_pos))
            into["y"].append(_detach(attn.decode(x[:, start:end])))
    into["final_seq_pos"] = _as_int(attn.seq_pos)
    return into["seq_pos"], into["y"], into["final_seq_pos"]


def probe_attn_decode(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    steps = {}  # one run serves three behaviours; what it recorded before an exception stays
    with _recording(rec, errors, "one_token", "chunk", "seq_pos"):
        _decode_chunks(module, shape, seed, into=steps)
    for name in ("one_token", "chunk", "seq_pos"):
        rec[name].update(steps)
    with _recording(rec, errors, "fast_path") as r:
        r["debug_y"] = steps.get("y", [])
        with fast_path(module):  # the same steps outside DEBUG: the attention students benchmark
            r["y"] = _decode_chunks(module, shape, seed)[1]


def _attn_expected(ref, shape, seed):
    return _once(("attn", id(ref), repr(shape), seed), lambda: _attn_expected_now(ref, shape, seed))


def _attn_expected_now(ref, shape, seed):
    model = _model(ref, shape, seed)
    x, chunks = _attn_input(shape, seed)
    with torch.no_grad():
        return model.transformer.h[0].attn(x), chunks  # (B, total, C), no cache involved


def _judge_attn_steps(rec, shape, seed, ref, single: bool) -> str:
    expected, chunks = _attn_expected(ref, shape, seed)
    ys = rec.get("y", [])
    checked = 0
    for (start, end), y in zip(chunks, ys):
        if (end - start == 1) != single:
            continue
        checked += 1
        if not _close(y, expected[:, start:end]):
            kind = "one new token" if single else f"{end - start} new tokens at once"
            hint = (
                " The new token should attend to every cached position and itself."
                if single
                else " With several new tokens, token i may attend to the cache and to new tokens 0..i only."
            )
            _fail(
                f"decode() of {kind} at positions {start}..{end - 1} differs from forward() on the "
                f"whole sequence ({_diff(y, expected[:, start:end])}).{hint}"
            )
    if len(ys) != len(chunks):
        return ""
    what = (
        "single new tokens" if single else "chunks of several new tokens (from an empty cache and after one)"
    )
    return f"decode() matched forward() for {checked} steps of {what}, batch {expected.size(0)}"


def _judge_attn_one_token(ref, rec, shape, seed) -> str:
    return _judge_attn_steps(rec, shape, seed, ref, single=True)


def _judge_attn_chunk(ref, rec, shape, seed) -> str:
    return _judge_attn_steps(rec, shape, seed, ref, single=False)


def _judge_attn_seq_pos(ref, rec, shape, seed) -> str:
    x, chunks = _attn_input(shape, seed)
    if len(rec.get("seq_pos", [])) != len(chunks) or "final_seq_pos" not in rec:
        return ""
    for (start, end), pos in zip(chunks, rec["seq_pos"]):
        if pos != start:
            _fail(
                f"before decoding positions {start}..{end - 1}, seq_pos is {pos}; "
                "decode() must advance seq_pos by the number of new tokens, once."
            )
    if rec["final_seq_pos"] != x.size(1):
        _fail(f"after decoding {x.size(1)} positions, seq_pos is {rec['final_seq_pos']}.")
    return f"seq_pos advanced by the number of new tokens over {len(chunks)} decode() calls"


def _judge_attn_fast_path(ref, rec, shape, seed) -> str:
    """Outside DEBUG, each step gives what it gives in DEBUG (within FAST_TOL): where DEBUG is
    right that is forward()'s value, and a step wrong in DEBUG costs its points in the DEBUG
    rows, not here a second time."""
    expected, chunks = _attn_expected(ref, shape, seed)
    debug = rec.get("debug_y", [])
    wrong_in_debug = 0
    for i, ((start, end), y) in enumerate(zip(chunks, rec.get("y", []))):
        want = expected[:, start:end]
        if i < len(debug) and not _close(debug[i], want):
            if not isinstance(debug[i], torch.Tensor) or debug[i].shape != want.shape:
                continue
            want, wrong_in_debug = debug[i], wrong_in_debug + 1
        if not _close(y, want, FAST_TOL):
            attn, x = _ref_model(ref, shape, seed).transformer.h[0].attn, _attn_input(shape, seed)[0]
            hint = hints.fast_path_mask(attn, x, start, end, y, lambda a, b: _close(a, b, FAST_TOL))
            raise FastPathFailed(
                f"decode() of positions {start}..{end - 1} is {FAST_PATH_WRONG} "
                f"({_diff(y, expected[:, start:end])}). {hint}"
            )
    if len(rec.get("y", [])) != len(chunks):
        return ""
    note = f"; {wrong_in_debug} of them are wrong in DEBUG too, judged there" if wrong_in_debug else ""
    return (
        f"outside DEBUG, decode() gave forward()'s values (tolerance {FAST_TOL:g}) for all {len(chunks)} "
        f"steps{note}"
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


def probe_gpt_decode(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    with _recording(rec, errors, "logits", "kv_pos") as (logits, kv_pos):
        model = _model(module, shape, seed)
        idx = _decode_prompt(shape, seed)
        ensure_cache(model, idx.size(0))
        logits["standin_attention"] = bool(attention_problem(module, shape))
        if logits["standin_attention"]:
            use_standin_attention(model)
        kv_pos["kv_pos"], logits["steps"] = [], []
        for t in range(idx.size(1)):
            kv_pos["kv_pos"].append(_as_int(model.kv_pos))
            logits["steps"].append(_detach(model.decode(idx[:, t : t + 1])))
        kv_pos["final_kv_pos"] = _as_int(model.kv_pos)


def _judge_gpt_logits(ref, rec, shape, seed) -> str:
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
    for t, step in zip(range(total), steps):
        if not _close(step, expected[:, t : t + 1]):
            _fail(
                f"GPT.decode of the token at position {t} differs from forward() "
                f"({_diff(step, expected[:, t : t + 1])}).{hints.decode_position(model, idx, steps, t, _close)}"
            )
    if len(steps) != total:
        return ""
    summary = f"GPT.decode matched forward() at {total} one-token steps from an empty cache, batch {B}"
    return summary + (f" ({STANDIN_ATTENTION_NOTE})" if rec.get("standin_attention") else "")


def _judge_gpt_kv_pos(ref, rec, shape, seed) -> str:
    total = _decode_prompt(shape, seed).size(1)
    for t, pos in enumerate(rec.get("kv_pos", [])):
        if pos != t:
            _fail(f"kv_pos is {pos} before decoding position {t}: advance it once per new token.")
    if len(rec.get("kv_pos", [])) != total or "final_kv_pos" not in rec:
        return ""
    if rec["final_kv_pos"] != total:
        _fail(f"after decoding {total} tokens, kv_pos is {rec['final_kv_pos']}; expected {total}.")
    return f"kv_pos went 0, 1, ..., {total} over {total} one-token decode() calls"


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


def _token_ids(got, shape: tuple, what: str):
    """`got` as torch.long, once it is a tensor of token ids of `shape` (else CheckFailed)."""
    if not isinstance(got, torch.Tensor) or got.is_floating_point() or got.dtype == torch.bool:
        _fail(
            f"{what} must return a tensor of token ids (torch.long); got {getattr(got, 'dtype', type(got))}."
        )
    if tuple(got.shape) != shape:
        _fail(f"{what} returned shape {tuple(got.shape)}; expected {shape} (prompt + max_new_tokens).")
    return got.long()


def compare_greedy(model, got, expected, what: str, near_tie=None, failure=CheckFailed) -> str:
    """'' if equal; a note if they differ only after a near-tie (a top-2 margin below
    `near_tie`, NEAR_TIE by default); raises `failure` otherwise."""
    near_tie = NEAR_TIE if near_tie is None else near_tie
    got = _token_ids(got, tuple(expected.shape), what)
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


def verify_greedy(model, prompt, new: int, got, what: str, near_tie=None, failure=CheckFailed) -> str:
    """compare_greedy's verdict on `got` (prompt + `new` tokens) without running the naive
    generate: one forward pass of the reference over got's own tokens gives, at every new
    position, the token greedy decoding picks after that prefix. Up to the first difference
    got's prefix is the naive generate's, so the first new position whose token is not that
    pick is where got leaves the naive output, and the pick's top-2 margin there is
    compare_greedy's near-tie test (a row is excused from there on). Costs one forward of the
    whole sequence instead of `new` of growing ones. The prompt must come back unchanged."""
    near_tie = NEAR_TIE if near_tie is None else near_tie
    batch, plen = prompt.shape
    got = _token_ids(got, (batch, plen + new), what)
    if new:
        with torch.no_grad():
            logits, _ = model(got[:, :-1], all_logits=True)
        scores = logits[:, plen - 1 :].float()  # (B, new, V): the scores of each new position
    notes = []
    for row in range(batch):
        changed = (got[row, :plen] != prompt[row]).nonzero()
        if changed.numel():
            pos = int(changed[0])
            raise failure(
                f"{what}: row {row} differs from the naive generate() at position {pos} "
                f"(got token {int(got[row, pos])}, expected {int(prompt[row, pos])}): the prompt "
                "must come back unchanged."
            )
        if not new:
            continue
        picks = scores[row].argmax(-1)
        differs = (got[row, plen:] != picks).nonzero()
        if not differs.numel():
            continue
        i = int(differs[0])
        top2 = scores[row, i].topk(2).values
        margin = float(top2[0] - top2[1])
        if margin >= near_tie:
            raise failure(
                f"{what}: row {row} differs from the naive generate() at position {plen + i} "
                f"(got token {int(got[row, plen + i])}, expected {int(picks[i])})."
            )
        notes.append(
            f"row {row} differs from position {plen + i} after a near-tie (top-2 margin {margin:.2g}); excused"
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


# The behaviour each case of _kv_cases shows
KV_CASE_BEHAVIOUR = ("edge_lengths", "ordinary", "ordinary", "edge_lengths", "edge_lengths", "block_size")


def _counts_need_a_run(rec, errors, counted: str, case_behaviours):
    """A counting behaviour with no run to count takes the error of the first case that raised."""
    if rec[counted]["runs"] or counted in errors:
        return
    first = next((errors[b] for b in case_behaviours if b in errors), None)
    if first is not None:
        errors[counted] = first


def probe_generate_kv(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    names = tuple(BEHAVIOURS["generate_kv"])
    with _recording(rec, errors, *names):
        model = _model(module, shape, seed)
        rec["one_prefill"]["grader_cache"] = repair_cache_allocation(model)
        rec["one_prefill"]["standin_decode"] = bool(decode_problem(module, shape))
        if rec["one_prefill"]["standin_decode"]:
            use_standin_decode(model)
    if len(errors) == len(names):  # the model could not even be set up
        return
    cases, (a, new_a), (b, new_b) = _kv_prompts(shape, seed)
    notes = {k: rec["one_prefill"][k] for k in ("grader_cache", "standin_decode")}
    for name in names:
        rec[name].update(notes, runs=[])
    for i, (idx, new) in enumerate(cases):
        behaviour = KV_CASE_BEHAVIOUR[i]
        with _recording(rec, errors, behaviour) as r:
            counter = _TokenCounter(model)
            try:
                got = model.generate_kv(idx, new, top_k=1)
            finally:
                counter.remove()
            r["runs"].append({"case": i, "out": _detach(got)})
            rec["one_prefill"]["runs"].append({"case": i, "calls": counter.calls})
    _counts_need_a_run(rec, errors, "one_prefill", KV_CASE_BEHAVIOUR)
    with _recording(rec, errors, "fresh_cache") as r:
        model.generate_kv(a, new_a, top_k=1)
        r["runs"].append({"case": -1, "out": _detach(model.generate_kv(b, new_b, top_k=1))})
    with _recording(rec, errors, "fast_path") as r:
        idx, new = cases[FAST_KV_CASE]
        debug = [
            run["out"] for run in rec[KV_CASE_BEHAVIOUR[FAST_KV_CASE]]["runs"] if run["case"] == FAST_KV_CASE
        ]
        r["debug_out"] = debug[0] if debug else None
        with fast_path(module):
            r["runs"].append({"case": FAST_KV_CASE, "out": _detach(model.generate_kv(idx, new, top_k=1))})


def _kv_notes(rec) -> list:
    notes = [GRADER_CACHE_NOTE] if rec.get("grader_cache") else []
    return notes + ([STANDIN_NOTE] if rec.get("standin_decode") else [])


def _with_notes(summary: str, notes: list) -> str:
    notes = [n for n in notes if n]
    return summary + (f" ({'; '.join(notes)})" if notes else "")


def _compare_fast_path(model, got, debug, expected, what: str) -> str:
    """The fast path's tokens against the reference's; where the same call is already wrong in
    DEBUG (judged by its own row), against the DEBUG tokens instead, so that one mistake is not
    charged twice. Returns a note, or raises FastPathFailed."""
    try:
        if debug is not None:
            compare_greedy(model, debug, expected, what)
    except CheckFailed:
        if isinstance(got, torch.Tensor) and isinstance(debug, torch.Tensor) and torch.equal(got, debug):
            return "the same tokens as in DEBUG, where this call is wrong (judged by its own row)"
        raise FastPathFailed(
            f"{what} gives other tokens outside DEBUG than in DEBUG ({FAST_PATH_WRONG})."
        ) from None
    return compare_greedy(
        model, got, expected, f"{what} {FAST_PATH_WRONG}", near_tie=FAST_TOL, failure=FastPathFailed
    )


def _judge_kv_outputs(ref, rec, shape, seed, behaviour: str) -> str:
    """The runs of `behaviour`'s cases against the naive generate() of the given code."""
    model = _ref_model(ref, shape, seed)
    cases, _, (b, new_b) = _kv_prompts(shape, seed)
    mine = [i for i, name in enumerate(KV_CASE_BEHAVIOUR) if name == behaviour]
    if behaviour == "fresh_cache":
        mine, cases = [-1], {-1: (b, new_b)}
    elif behaviour == "fast_path":
        mine = [FAST_KV_CASE]
    cases = dict(enumerate(cases)) if isinstance(cases, list) else cases
    runs = rec.get("runs", [])
    notes, described = _kv_notes(rec), []
    for run in runs:
        idx, new = cases[run["case"]]
        B, T = idx.shape
        what = f"generate_kv(batch {B}, prompt {T}, {new} new)"
        if behaviour == "fresh_cache":
            what = f"a second generate_kv call ({what}, after a longer first one; reset the cache)"
        expected = _ref_generate(model, idx, new)
        if behaviour == "fast_path":
            notes.append(_compare_fast_path(model, run["out"], rec.get("debug_out"), expected, what))
        else:
            notes.append(compare_greedy(model, run["out"], expected, what))
        described.append(f"{B}x{T} + {new}")
    if sorted(r["case"] for r in runs) != sorted(mine):
        return ""
    where = " outside DEBUG" if behaviour == "fast_path" else ""
    return _with_notes(f"generate_kv matched generate(){where} for {', '.join(described)} tokens", notes)


def _judge_kv_one_prefill(ref, rec, shape, seed) -> str:
    cases, _, _ = _kv_prompts(shape, seed)
    runs = rec.get("runs", [])
    for run in runs:
        (idx, new), calls = cases[run["case"]], run["calls"]
        T = idx.size(1)
        if new == 0:
            continue
        if not calls or calls[0] != T or any(c != 1 for c in calls[1:]):
            _fail(
                f"generate_kv must run the prompt once (prefill, {T} tokens) and then one token "
                f"per step; the first layer saw tokens per call: {calls[:8]}{'...' if len(calls) > 8 else ''}."
            )
        if len(calls) not in (new, new + 1):
            _fail(f"generate_kv made {len(calls)} forward passes for {new} new tokens; expected {new}.")
    if not runs:
        return ""
    return _with_notes(f"one prefill, then one token per decode step, in {len(runs)} calls", _kv_notes(rec))


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


def max_verify_passes(new: int, k: int) -> int:
    """Target passes allowed for `new` tokens when every draft is right: one per round of
    min(k, new) tokens (without the bonus token; with it, rounds add k + 1), plus the prompt's
    prefill and one spare. One pass per token is far above this once new >= 2k."""
    return math.ceil(new / max(1, min(k, new))) + 2


# The behaviour each case of _spec_cases shows
SPEC_CASE_BEHAVIOUR = ("ordinary", "ordinary", "edge_lengths", "edge_lengths", "edge_lengths", "block_size")


def _spec_behaviour(draft: str, case: int) -> str:
    kind = SPEC_CASE_BEHAVIOUR[case]
    if kind == "ordinary":
        return "fixture_draft" if draft == DRAFTS[0] else "any_draft"
    return kind


def probe_speculative(module, rec, errors, shape=PUBLIC_SHAPE, seed=0):
    names = tuple(BEHAVIOURS["speculative"])
    with _recording(rec, errors, *names):
        draft, target = fixtures.make_pair(module, _pair_spec(shape), seed=seed)
        stranger = fixtures.make_model(module, dict(fixtures.config_kwargs(shape), n_layer=1), seed=seed + 99)
        identical = copy.deepcopy(target)
        grader_cache = repair_cache_allocation(target, draft, stranger, identical)
        standin = bool(decode_problem(module, shape))
        if standin:
            use_standin_decode(target, draft, stranger, identical)
    if len(errors) == len(names):  # the models could not even be set up
        return
    for name in names:
        rec[name].update(grader_cache=grader_cache, standin_decode=standin, runs=[])
    drafts = dict(zip(DRAFTS, (draft, stranger, identical)))
    cases = list(zip(_spec_prompts(shape, seed), _spec_cases(shape)))
    for name in DRAFTS:
        for i, (idx, (_, new, k)) in enumerate(cases):
            with _recording(rec, errors, _spec_behaviour(name, i)) as r:
                counter = _TokenCounter(target)
                try:
                    got = target.generate_speculative(idx, new, drafts[name], top_k=1, num_speculative=k)
                finally:
                    counter.remove()
                r["runs"].append({"draft": name, "case": i, "out": _detach(got)})
                if name == "an identical draft":
                    rec["one_pass"]["runs"].append({"case": i, "calls": len(counter.calls)})
    _counts_need_a_run(rec, errors, "one_pass", ("any_draft", "edge_lengths", "block_size"))
    with _recording(rec, errors, "fast_path") as r:
        idx, (_, new, k) = cases[FAST_SPEC_CASE]
        mine = rec[_spec_behaviour(DRAFTS[0], FAST_SPEC_CASE)]["runs"]
        debug = [run["out"] for run in mine if run["case"] == FAST_SPEC_CASE and run["draft"] == DRAFTS[0]]
        r["debug_out"] = debug[0] if debug else None
        with fast_path(module):
            got = target.generate_speculative(idx, new, draft, top_k=1, num_speculative=k)
        r["runs"].append({"draft": DRAFTS[0], "case": FAST_SPEC_CASE, "out": _detach(got)})


def _judge_spec_outputs(ref, rec, shape, seed, behaviour: str) -> str:
    _, target = _once(
        ("pair", id(ref), repr(shape), seed), lambda: fixtures.make_pair(ref, _pair_spec(shape), seed=seed)
    )
    prompts, cases = _spec_prompts(shape, seed), _spec_cases(shape)
    if behaviour == "fast_path":
        mine = [(DRAFTS[0], FAST_SPEC_CASE)]
    else:
        mine = [(d, i) for d in DRAFTS for i in range(len(cases)) if _spec_behaviour(d, i) == behaviour]
    runs = rec.get("runs", [])
    notes = _kv_notes(rec)
    for run in runs:
        i = run["case"]
        got, prompt_len, (_, new, k) = run["out"], prompts[i].size(1), cases[i]
        expected = _ref_generate(target, prompts[i], new)
        what = (
            f"generate_speculative with {run['draft']} (prompt {prompt_len}, {new} new, num_speculative={k})"
        )
        if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[1] > expected.shape[1]:
            _fail(f"{what} returned {got.shape[1] - prompt_len} new tokens; stop at exactly max_new_tokens.")
        if behaviour == "fast_path":
            notes.append(_compare_fast_path(target, got, rec.get("debug_out"), expected, what))
        else:
            notes.append(compare_greedy(target, got, expected, what))
    if sorted((r["draft"], r["case"]) for r in runs) != sorted(mine):
        return ""
    shown = sorted({d for d, _ in mine})
    lengths = sorted({(prompts[i].size(1), cases[i][1]) for _, i in mine})
    where = " outside DEBUG" if behaviour == "fast_path" else ""
    return _with_notes(
        f"the target's greedy tokens{where} with {' / '.join(shown)} for (prompt, new) = "
        + ", ".join(f"({p}, {n})" for p, n in lengths),
        notes,
    )


def _judge_spec_one_pass(ref, rec, shape, seed) -> str:
    prompts, cases = _spec_prompts(shape, seed), _spec_cases(shape)
    runs = rec.get("runs", [])
    for run in runs:
        i = run["case"]
        new, k = cases[i][1], cases[i][2]
        if run["calls"] > max_verify_passes(new, k):
            _fail(
                f"generate_speculative with an identical draft (prompt {prompts[i].size(1)}, {new} new, "
                f"num_speculative={k}): the target ran {run['calls']} times for {new} tokens although every "
                "draft was right; verify all k drafted tokens in ONE batched pass of the target (one pass "
                f"per round of k tokens: at most {max_verify_passes(new, k)} passes here, prefill included)."
            )
    if not runs:
        return ""
    return f"with a draft that always agrees, the target ran one pass per round in {len(runs)} calls"


# ---------------------------------------------------------------------------------------
# Each piece's probe (run in the worker, on the student's code: records outputs only) and,
# per behaviour, its judge (run by the grader: computes what is expected from the given code
# and compares; returns what was run, '' for an incomplete record, or raises CheckFailed).
PROBES = {
    "buffers": probe_buffers,
    "prefill": probe_prefill,
    "attn_decode": probe_attn_decode,
    "gpt_decode": probe_gpt_decode,
    "generate_kv": probe_generate_kv,
    "speculative": probe_speculative,
}
JUDGES = {
    "buffers": {"layout": _judge_layout, "dtype": _judge_dtype, "state": _judge_state, "setup": _judge_setup},
    "prefill": {
        "output": _judge_prefill_output,
        "keys_values": _judge_prefill_kv,
        "seq_pos": _judge_prefill_seq_pos,
    },
    "attn_decode": {
        "one_token": _judge_attn_one_token,
        "chunk": _judge_attn_chunk,
        "seq_pos": _judge_attn_seq_pos,
        "fast_path": _judge_attn_fast_path,
    },
    "gpt_decode": {"logits": _judge_gpt_logits, "kv_pos": _judge_gpt_kv_pos},
    "generate_kv": {
        **{
            b: functools.partial(_judge_kv_outputs, behaviour=b)
            for b in ("ordinary", "edge_lengths", "block_size", "fresh_cache", "fast_path")
        },
        "one_prefill": _judge_kv_one_prefill,
    },
    "speculative": {
        **{
            b: functools.partial(_judge_spec_outputs, behaviour=b)
            for b in ("fixture_draft", "any_draft", "edge_lengths", "block_size", "fast_path")
        },
        "one_pass": _judge_spec_one_pass,
    },
}
assert tuple(PROBES) == PIECES, "every checked piece of infkit/pieces.py needs a probe"
assert all(set(JUDGES[p]) == set(BEHAVIOURS[p]) for p in PIECES), "a judge for every behaviour"


def judge_source(piece: str, behaviour: str) -> str:
    """Where a behaviour's verdict is decided, as file:function (results.json rows name it)."""
    fn = JUDGES[piece][behaviour]
    fn = getattr(fn, "func", fn)  # a functools.partial
    return f"infkit/checks.py:{fn.__name__}"


def probe(piece, module, shape=PUBLIC_SHAPE, seed=0):
    """Run one piece's probe; return (record, errors): record[behaviour] holds what that
    behaviour produced (kept up to an exception, so the judge can point at the first wrong
    step), errors[behaviour] the exception the student's code raised there, if any."""
    rec, errors = {}, {}
    try:
        with torch.no_grad():
            PROBES[piece](module, rec, errors, shape=shape, seed=seed)
    except Exception as e:  # outside every behaviour's own recording: all of them share it
        for behaviour in BEHAVIOURS[piece]:
            errors.setdefault(behaviour, e)
    return rec, errors


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One behaviour's verdict. stage: "passed", "check_failed" (a wrong value),
    "not_implemented" (a stub) or "raised" (the student's code raised)."""

    passed: bool
    message: str  # for the student: what was run (passed) or what differed and what to fix
    stage: str
    fast_path: bool = False  # failed outside DEBUG only
    error: dict | None = None  # what the student's code raised (describe_error), if that decided it


def error_message(piece: str, error: dict) -> str:
    """What a student's exception (describe_error's dict) says to them."""
    if error.get("not_implemented"):
        return f"{LABELS[piece]} is not implemented yet ({error['message']})."
    where = f" ({error['where']})" if error.get("where") else ""
    hint = hints.explain_error(error["type"], error["message"])  # what to do, when it is known
    return f"your code raised {error['type']}: {error['message']}{where}" + (f"\n{hint}" if hint else "")


class NotImplementedYet(CheckFailed):
    """The student's code hit a stub."""


class StudentRaised(CheckFailed):
    """The student's code raised."""


def raise_for_error(piece: str, error: dict):
    raise (NotImplementedYet if error.get("not_implemented") else StudentRaised)(error_message(piece, error))


def _judge_one(piece, behaviour, ref, rec, error, shape, seed) -> Outcome:
    try:
        summary = JUDGES[piece][behaviour](ref, rec, shape, seed) if rec else ""
    except FastPathFailed as e:
        return Outcome(False, str(e), "check_failed", fast_path=True)
    except CheckFailed as e:  # an earlier mismatch comes before an exception raised later
        return Outcome(False, str(e), "check_failed")
    except Exception as e:  # a malformed record: the student's code returned something odd
        if error is None:
            return Outcome(
                False, f"the grader could not use your code's outputs ({type(e).__name__}).", "check_failed"
            )
        summary = ""
    if error is not None:
        stage = "not_implemented" if error.get("not_implemented") else "raised"
        return Outcome(False, error_message(piece, error), stage, error=error)
    if not summary:  # the probe stopped early without an error: a malformed record
        return Outcome(False, "the grader got incomplete outputs from your code.", "check_failed")
    return Outcome(True, summary, "passed")


def judge(piece, ref, rec, errors=None, shape=PUBLIC_SHAPE, seed=0) -> dict:
    """Judge a probe's record, behaviour by behaviour: {behaviour: Outcome}. `errors` maps a
    behaviour to what the student's code raised there: an exception, or describe_error's dict."""
    errors = {b: describe_error(e) if isinstance(e, BaseException) else e for b, e in (errors or {}).items()}
    _REFERENCE.clear()
    return {
        b: _judge_one(piece, b, ref, rec.get(b, {}), errors.get(b), shape, seed) for b in BEHAVIOURS[piece]
    }


def describe_error(e: BaseException, filename: str = "model.py") -> dict:
    """A JSON-able description of an exception, naming the deepest line in `filename`."""
    where = ""
    for frame in hints.student_frames(e, filename)[-1:]:
        where = f"{filename} line {frame.lineno}: {(frame.line or '').strip()[:100]}"
    return {
        "type": type(e).__name__,
        "message": str(e)[:500],
        "not_implemented": isinstance(e, NotImplementedError),
        "where": where,
    }


def _in_process(piece):
    def check(module, shape=PUBLIC_SHAPE, seed=0) -> str:
        """Every behaviour of the piece, with the module's own given code as the reference.
        Returns what was run; raises CheckFailed naming each behaviour that failed (or the
        student's own exception, traceback intact, when that is all that went wrong)."""
        rec, errors = probe(piece, module, shape=shape, seed=seed)
        outcomes = judge(piece, module, rec, errors, shape=shape, seed=seed)
        failed = {b: o for b, o in outcomes.items() if not o.passed}
        if not failed:
            return "; ".join(o.message for o in outcomes.values())
        if all(o.stage == "not_implemented" for o in failed.values()):
            _fail(next(iter(failed.values())).message)
        raised = [errors[b] for b, o in failed.items() if o.stage == "raised"]
        if len(raised) == len(failed):
            raise raised[0]  # the student's own exception, traceback intact
        lines = [f"{b}: {o.message}" for b, o in failed.items()]
        passed = [b for b, o in outcomes.items() if o.passed]
        tail = f"\n(passed: {', '.join(passed)})" if passed else ""
        raise (FastPathFailed if all(o.fast_path for o in failed.values()) else CheckFailed)(
            "\n".join(lines) + tail
        )

    check.__name__ = f"check_{piece}"
    return check


CHECKS = {p: _in_process(p) for p in PIECES}


def run(module_or_path, pieces=PIECES, optional_checks=None, **kwargs) -> dict:
    """Run checks and print one friendly line per piece. `optional_checks`: {piece: check} for
    pieces outside PIECES, each check(module) -> (passed, message). Returns
    {piece: (passed, message)}."""
    module = module_or_path
    if isinstance(module_or_path, (str, os.PathLike)):
        module = loading.load_model_module(module_or_path, debug=True)
    results = {}
    for piece in pieces:
        try:
            if piece in PIECES:
                message, passed = CHECKS[piece](module, **kwargs), True
            else:
                passed, message = optional_checks[piece](module)
        except CheckFailed as e:
            message, passed = str(e), False
        except Exception as e:  # the student's code raised: its error and line first, in short
            message, passed = hints.checks_crash(e, module, piece), False
        results[piece] = (passed, message)
        print(f"{'PASS' if passed else 'FAIL'}  {piece:12s} {message}")
    return results


if __name__ == "__main__":
    import argparse

    known = (*PIECES, *pieces.OPTIONAL)
    parser = argparse.ArgumentParser(
        prog="python -m infkit.checks",
        description="Check model.py piece by piece, with the public tests' own checks.",
    )
    parser.add_argument("model", help="path to your model.py")
    parser.add_argument(
        "pieces",
        nargs="*",
        metavar="piece",
        help=f"any of {', '.join(known)} (default: {', '.join(PIECES)}; an optional piece only when named)",
    )
    args = parser.parse_args()
    unknown = [p for p in args.pieces if p not in known]
    if unknown:
        parser.error(f"unknown piece {', '.join(unknown)}: choose from {', '.join(known)}")
    if not os.path.isfile(args.model):
        sys.exit(f"no file {args.model}: give the path to your model.py")
    from . import optional  # the optional pieces' checks, only when run as a command

    outcome = run(args.model, args.pieces or PIECES, optional_checks=optional.CHECKS)
    sys.exit(0 if all(ok for ok, _ in outcome.values()) else 1)
