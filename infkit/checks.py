"""Correctness checks for each piece of the student contract, one function per piece.

Every check builds its own fixture models from a seed, computes the expected answer itself
(a full forward pass, or the given naive `generate`) and talks to the student's code only
through the contract in model.py's docstrings. A failed check raises CheckFailed with a
message that says what to fix; a passed one returns a short summary. The public tests, the
autograder (with other seeds and shapes) and the notebook all call these, so they agree.

Run a check against a model.py from the shell:  python -m infkit.checks PATH [piece ...]
"""

import copy
import os
import sys

import torch

from . import fixtures, loading

PIECES = ("buffers", "prefill", "attn_decode", "gpt_decode", "generate_kv", "speculative")

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


class CheckFailed(AssertionError):
    """A check found a mistake; the message is written for the student."""


def _fail(message: str):
    raise CheckFailed(message)


def _close(got, expected) -> bool:
    if EXACT:
        return torch.equal(got, expected)
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=RTOL, atol=ATOL)


def _diff(got, expected) -> str:
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    return f"max abs difference {float((got - expected).abs().max()):.3g}"


def _shape_kwargs(shape):
    return fixtures.config_kwargs(shape)


def _model(module, shape, seed):
    return fixtures.make_model(module, shape, seed=seed)


def _head_dim(model):
    return model.config.n_embd // model.config.n_head


def ensure_cache(model, batch_size: int):
    """Allocate empty caches with the student's setup_kv_cache(); if their buffers piece is
    not done yet, allocate the documented layout here, so later pieces can still be graded."""
    try:
        model.setup_kv_cache(batch_size)
        return "student"
    except NotImplementedError:
        for block in model.transformer.h:
            attn = block.attn
            w = attn.c_attn.weight
            shape = (2, batch_size, attn.n_head, model.config.block_size, _head_dim(model))
            attn.register_buffer("kv_cache", torch.zeros(shape, dtype=w.dtype), persistent=False)
            attn.seq_pos = 0
        return "fallback"


def _not_implemented(piece: str, err: NotImplementedError):
    _fail(f"{piece} is not implemented yet ({err}).")


# ---------------------------------------------------------------------------------------
# 1. buffers


def check_buffers(module, shape=PUBLIC_SHAPE, seed=0) -> str:
    model = _model(module, shape, seed)
    attn = model.transformer.h[0].attn
    cfg = model.config
    try:
        attn.init_kv_cache(3, 40)
    except NotImplementedError as e:
        _not_implemented("buffers (CausalSelfAttention.init_kv_cache)", e)
    buffers = dict(attn.named_buffers())
    if "kv_cache" not in buffers:
        _fail("init_kv_cache must register the cache with self.register_buffer('kv_cache', ...).")
    cache = buffers["kv_cache"]
    expected = (2, 3, cfg.n_head, 40, _head_dim(model))
    if tuple(cache.shape) != expected:
        _fail(
            f"kv_cache has shape {tuple(cache.shape)}; expected (2, batch_size, n_head, "
            f"max_seq_len, head_dim) = {expected} for init_kv_cache(3, 40)."
        )
    if cache.dtype != attn.c_attn.weight.dtype:
        _fail(f"kv_cache dtype is {cache.dtype}; use the dtype of the module's weights.")
    if cache.abs().sum() != 0:
        _fail("a freshly allocated kv_cache should be all zeros.")
    if getattr(attn, "seq_pos", None) != 0:
        _fail("init_kv_cache must leave self.seq_pos == 0 (an empty cache).")
    if any("kv_cache" in k for k in model.state_dict()):
        _fail("register the cache with persistent=False, so state_dict() and from_pretrained are unchanged.")
    model.double()
    if attn.kv_cache.dtype != torch.float64:
        _fail("the cache must move with the model (.to / .double): register it as a buffer.")
    model.float()
    model.setup_kv_cache(2)
    for i, block in enumerate(model.transformer.h):
        c = block.attn.kv_cache
        if c is None or c.size(1) < 2 or c.size(3) != cfg.block_size:
            _fail(f"setup_kv_cache(2) left layer {i} without a (2, >=2, n_head, block_size, head_dim) cache.")
    return f"kv_cache {expected} registered, non-persistent, follows the model's dtype"


# ---------------------------------------------------------------------------------------
# 2. prefill


def _capture_kv(model, idx):
    """Keys and values of every layer for a full forward of idx: (B, nh, T, hs) each."""
    captured = []

    def hook(mod, inp, out):
        B, T, C3 = out.shape
        C = C3 // 3
        _, k, v = out.split(C, dim=2)
        nh = model.config.n_head
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


def check_prefill(module, shape=PUBLIC_SHAPE, seed=0, batch=2, prompt_len=11) -> str:
    model = _model(module, shape, seed)
    idx = fixtures.random_prompt(batch, prompt_len, model.config.vocab_size, seed=seed + 1)
    expected_kv, expected_logits = _capture_kv(model, idx)
    ensure_cache(model, batch + 1)
    for block in model.transformer.h:
        block.attn.enable_kv = True
    try:
        with torch.no_grad():
            logits, _ = model(idx, all_logits=True)
    except NotImplementedError as e:
        _not_implemented("prefill (the enable_kv branch of CausalSelfAttention.forward)", e)
    finally:
        for block in model.transformer.h:
            block.attn.enable_kv = False
    if not _close(logits, expected_logits):
        _fail(f"filling the cache changed forward()'s output ({_diff(logits, expected_logits)}).")
    for i, (block, (k, v)) in enumerate(zip(model.transformer.h, expected_kv)):
        attn = block.attn
        if attn.seq_pos != prompt_len:
            _fail(
                f"after a prefill of {prompt_len} tokens, layer {i} has seq_pos {attn.seq_pos}; expected {prompt_len}."
            )
        cached_k = attn.kv_cache[0, :batch, :, :prompt_len]
        cached_v = attn.kv_cache[1, :batch, :, :prompt_len]
        if not _close(cached_k, k):
            _fail(
                f"layer {i}: kv_cache[0, :B, :, :T] does not hold the prompt's keys ({_diff(cached_k, k)}). "
                "Keys go in index 0, values in index 1, laid out (B, n_head, T, head_dim)."
            )
        if not _close(cached_v, v):
            _fail(
                f"layer {i}: kv_cache[1, :B, :, :T] does not hold the prompt's values ({_diff(cached_v, v)})."
            )
    return f"prefill of {batch}x{prompt_len} tokens stored every layer's keys and values"


# ---------------------------------------------------------------------------------------
# 3. attention decode


def check_attn_decode(module, shape=PUBLIC_SHAPE, seed=0, batch=2, total=15, first=6) -> str:
    """CausalSelfAttention.decode alone: a chunk from an empty cache, then single tokens,
    then a multi-token chunk, each compared with forward() on the whole sequence."""
    model = _model(module, shape, seed)
    attn = model.transformer.h[0].attn
    C = model.config.n_embd
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, total, C, generator=g)
    with torch.no_grad():
        expected = attn(x)  # (B, total, C), no cache involved
    ensure_cache(model, batch)
    chunks = [(0, first)] + [(t, t + 1) for t in range(first, total - 4)] + [(total - 4, total)]
    try:
        with torch.no_grad():
            for start, end in chunks:
                if attn.seq_pos != start:
                    _fail(
                        f"before decoding positions {start}..{end - 1}, seq_pos is {attn.seq_pos}; "
                        f"decode() must advance seq_pos by the number of new tokens, once."
                    )
                y = attn.decode(x[:, start:end])
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
    except NotImplementedError as e:
        _not_implemented("attn_decode (CausalSelfAttention.decode)", e)
    if attn.seq_pos != total:
        _fail(f"after decoding {total} positions, seq_pos is {attn.seq_pos}.")
    return f"decode matched forward() for {len(chunks)} steps (single tokens and chunks), batch {batch}"


# ---------------------------------------------------------------------------------------
# 4. GPT decode


def check_gpt_decode(module, shape=PUBLIC_SHAPE, seed=0, batch=2, total=14, first=5) -> str:
    model = _model(module, shape, seed)
    idx = fixtures.random_prompt(batch, total, model.config.vocab_size, seed=seed + 3)
    with torch.no_grad():
        expected, _ = model(idx, all_logits=True)  # (B, total, V)
    ensure_cache(model, batch)
    try:
        got = model.decode(idx[:, :first])
        if tuple(got.shape) != (batch, first, model.config.vocab_size):
            _fail(f"GPT.decode(idx) must return logits (B, T_new, V); got {tuple(got.shape)}.")
        if not _close(got, expected[:, :first]):
            _fail(
                f"GPT.decode from an empty cache differs from forward() ({_diff(got, expected[:, :first])})."
            )
        for t in range(first, total):
            if model.kv_pos != t:
                _fail(
                    f"kv_pos is {model.kv_pos} before decoding position {t}: advance it once per new token."
                )
            step = model.decode(idx[:, t : t + 1])
            if not _close(step, expected[:, t : t + 1]):
                _fail(
                    f"GPT.decode of the token at position {t} differs from forward() "
                    f"({_diff(step, expected[:, t : t + 1])}). Check the position embedding: the new "
                    f"token sits at position kv_pos (= {t}), not kv_pos + 1."
                )
    except NotImplementedError as e:
        _not_implemented("gpt_decode (GPT.decode, or a piece it calls)", e)
    return f"GPT.decode matched forward() at {total - first + 1} steps, batch {batch}"


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


def compare_greedy(model, got, expected, what: str) -> str:
    """'' if equal; a note if they differ only after a near-tie; raises otherwise."""
    if got.shape != expected.shape:
        _fail(
            f"{what} returned shape {tuple(got.shape)}; expected {tuple(expected.shape)} (prompt + max_new_tokens)."
        )
    where = _first_mismatch(got, expected)
    if where is None:
        return ""
    row, pos = where
    margin = _near_tie(model, expected, row, pos)
    if margin < NEAR_TIE:
        return f"row {row} differs from position {pos} after a near-tie (top-2 margin {margin:.2g}); excused"
    _fail(
        f"{what}: row {row} differs from the naive generate() at position {pos} "
        f"(got token {int(got[row, pos])}, expected {int(expected[row, pos])})."
    )


class _TokenCounter:
    """Counts how many tokens pass through a model's first c_attn per call."""

    def __init__(self, model):
        self.calls: list[int] = []
        self.handle = model.transformer.h[0].attn.c_attn.register_forward_hook(self._hook)

    def _hook(self, mod, inp, out):
        self.calls.append(inp[0].shape[1])

    def remove(self):
        self.handle.remove()


def check_generate_kv(module, shape=PUBLIC_SHAPE, seed=0, cases=((1, 1, 20), (1, 9, 25), (3, 7, 17))) -> str:
    model = _model(module, shape, seed)
    notes = []
    for i, (batch, prompt_len, new) in enumerate(cases):
        idx = fixtures.random_prompt(batch, prompt_len, model.config.vocab_size, seed=seed * 100 + i)
        expected = model.generate(idx, new, top_k=1)
        counter = _TokenCounter(model)
        try:
            got = model.generate_kv(idx, new, top_k=1)
        except NotImplementedError as e:
            _not_implemented("generate_kv (or a piece it calls)", e)
        finally:
            counter.remove()
        note = compare_greedy(
            model, got, expected, f"generate_kv(batch {batch}, prompt {prompt_len}, {new} new)"
        )
        if note:
            notes.append(note)
        calls = counter.calls
        if not calls or calls[0] != prompt_len or any(c != 1 for c in calls[1:]):
            _fail(
                f"generate_kv must run the prompt once (prefill, {prompt_len} tokens) and then one token "
                f"per step; the first layer saw tokens per call: {calls[:8]}{'...' if len(calls) > 8 else ''}."
            )
        if len(calls) not in (new, new + 1):
            _fail(f"generate_kv made {len(calls)} forward passes for {new} new tokens; expected {new}.")
    # a second call must not see the first one's cache
    a = fixtures.random_prompt(1, 30, model.config.vocab_size, seed=seed + 7)
    b = fixtures.random_prompt(1, 4, model.config.vocab_size, seed=seed + 8)
    expected = model.generate(b, 12, top_k=1)
    model.generate_kv(a, 20, top_k=1)
    note = compare_greedy(model, model.generate_kv(b, 12, top_k=1), expected, "a second generate_kv call")
    if note:
        notes.append(note)
    summary = f"generate_kv matched generate() on {len(cases) + 1} cases, one token per decode step"
    return summary + (f" ({'; '.join(notes)})" if notes else "")


def _speculative_drafts(module, target, shape, seed, pair_spec):
    draft, _ = fixtures.make_pair(module, pair_spec, seed=seed)
    stranger = fixtures.make_model(module, dict(_shape_kwargs(shape), n_layer=1), seed=seed + 99)
    return {
        "the fixture draft": draft,
        "a draft that never agrees": stranger,
        "an identical draft": copy.deepcopy(target),
    }


def check_speculative(module, shape=PUBLIC_SHAPE, seed=0, cases=((1, 24, 4), (9, 31, 3), (5, 7, 10))) -> str:
    spec = fixtures.PairSpec(target="tiny", draft_layers=1, scale=0.05)
    if shape != "tiny":
        spec = fixtures.PairSpec(target=shape, draft_layers=1, scale=0.05)
    _, target = fixtures.make_pair(module, spec, seed=seed)
    drafts = _speculative_drafts(module, target, shape, seed, spec)
    notes = []
    for name, draft in drafts.items():
        for i, (prompt_len, new, k) in enumerate(cases):
            idx = fixtures.random_prompt(1, prompt_len, target.config.vocab_size, seed=seed * 100 + i)
            expected = target.generate(idx, new, top_k=1)
            counter = _TokenCounter(target)
            try:
                got = target.generate_speculative(idx, new, draft, top_k=1, num_speculative=k)
            except NotImplementedError as e:
                _not_implemented("generate_speculative", e)
            finally:
                counter.remove()
            what = f"generate_speculative with {name} (prompt {prompt_len}, {new} new, num_speculative={k})"
            if got.shape[1] > expected.shape[1]:
                _fail(
                    f"{what} returned {got.shape[1] - prompt_len} new tokens; stop at exactly max_new_tokens."
                )
            note = compare_greedy(target, got, expected, what)
            if note:
                notes.append(note)
            if name == "an identical draft":
                rounds = -(-new // (k + 1))
                if len(counter.calls) > rounds + 2:
                    _fail(
                        f"{what}: the target ran {len(counter.calls)} times for {new} tokens although every "
                        f"draft was right; verify all k drafted tokens in ONE batched pass of the target "
                        f"(expected about {rounds} passes)."
                    )
    summary = (
        f"speculative output equals the target's greedy output for {len(drafts)} drafts x {len(cases)} cases"
    )
    return summary + (f" ({'; '.join(notes)})" if notes else "")


CHECKS = {
    "buffers": check_buffers,
    "prefill": check_prefill,
    "attn_decode": check_attn_decode,
    "gpt_decode": check_gpt_decode,
    "generate_kv": check_generate_kv,
    "speculative": check_speculative,
}


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
        except Exception as e:  # the student's code raised: report it in one line
            message, passed = f"your code raised {type(e).__name__}: {e}", False
        results[piece] = (passed, message)
        print(f"{'PASS' if passed else 'FAIL'}  {piece:12s} {message}")
    return results


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m infkit.checks PATH/TO/model.py [piece ...]")
    outcome = run(sys.argv[1], sys.argv[2:] or PIECES)
    sys.exit(0 if all(ok for ok, _ in outcome.values()) else 1)
