"""Speed tests, measured as ratios inside one worker process on fixed CPU fixtures.

The worker times the student's code against the naive `generate` of the reference module
(the given code, same weights) in interleaved repetitions after a warm-up, and returns the
raw seconds and the tokens it produced; the harness checks the tokens and takes medians.
The fixtures are defined here, not in infkit.fixtures, so that they stay fixed.
"""

import time

import torch

from infkit import fixtures

SEED = 5
# generate_kv vs naive generate: a prompt long enough that re-running it dominates.
KV_SHAPE = dict(n_layer=4, n_head=4, n_embd=128, vocab_size=2048, block_size=320)
KV_BATCH, KV_PROMPT, KV_NEW = 2, 128, 32
# speculative vs the target's naive generate, batch 1: an 8-layer target and its 1-layer draft.
SPEC_PAIR = fixtures.PairSpec(
    target=dict(n_layer=8, n_head=4, n_embd=128, vocab_size=2048, block_size=320), draft_layers=1, scale=0.05
)
SPEC_PROMPT, SPEC_NEW, SPEC_K = 96, 64, 4
REPEATS = 3


def kv_case():
    prompt = fixtures.random_prompt(KV_BATCH, KV_PROMPT, KV_SHAPE["vocab_size"], seed=SEED)
    return prompt, KV_NEW


def spec_case():
    prompt = fixtures.random_prompt(1, SPEC_PROMPT, SPEC_PAIR.target["vocab_size"], seed=SEED + 1)
    return prompt, SPEC_NEW


def _interleaved(fns: dict, repeats: int = REPEATS) -> tuple[dict, dict]:
    """Call every fn once to warm up, then `repeats` rounds in turn; seconds and last outputs."""
    outputs = {name: fn() for name, fn in fns.items()}
    seconds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            seconds[name].append(time.perf_counter() - t0)
    return seconds, outputs


@torch.no_grad()
def measure_kv(module, ref) -> dict:
    student = fixtures.make_model(module, KV_SHAPE, seed=SEED)
    naive = fixtures.make_model(ref, KV_SHAPE, seed=SEED)
    prompt, new = kv_case()
    seconds, outputs = _interleaved(
        {
            "naive": lambda: naive.generate(prompt, new, top_k=1),
            "kv": lambda: student.generate_kv(prompt, new, top_k=1),
        }
    )
    return {"seconds": seconds, "out_kv": outputs["kv"].detach().clone()}


@torch.no_grad()
def measure_spec(module, ref) -> dict:
    draft, target = fixtures.make_pair(module, SPEC_PAIR, seed=SEED)
    _, naive = fixtures.make_pair(ref, SPEC_PAIR, seed=SEED)
    prompt, new = spec_case()
    fns = {
        "naive": lambda: naive.generate(prompt, new, top_k=1),
        "spec": lambda: target.generate_speculative(prompt, new, draft, top_k=1, num_speculative=SPEC_K),
        "kv": lambda: target.generate_kv(prompt, new, top_k=1),
    }
    try:  # generate_kv only feeds the leaderboard here: without it, time the rest
        fns["kv"]()
    except Exception:
        del fns["kv"]
    seconds, outputs = _interleaved(fns)
    return {
        "seconds": seconds,
        **{f"out_{k}": v.detach().clone() for k, v in outputs.items() if k != "naive"},
    }


MEASURE = {"kv_speed": measure_kv, "spec_speed": measure_spec}


def expected_outputs(name: str, ref):
    """What the reference's naive generate produces on the speed fixture (computed by the harness)."""
    if name == "kv_speed":
        model = fixtures.make_model(ref, KV_SHAPE, seed=SEED)
        prompt, new = kv_case()
    else:
        _, model = fixtures.make_pair(ref, SPEC_PAIR, seed=SEED)
        prompt, new = spec_case()
    return model, model.generate(prompt, new, top_k=1)
