"""Speed tests, measured as ratios inside one worker process on fixed CPU fixtures.

The worker times the student's code against the naive `generate` of the reference module
(the given code, same weights) in interleaved repetitions after a warm-up, and returns the
raw seconds and the tokens it produced; the harness checks the tokens and takes medians.
The fixtures are defined here, not in infkit.fixtures, so that they stay fixed.
"""

import torch

from infkit import checks, fixtures, timing

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


def describe(piece: str) -> str:
    """The fixture of a speed test, in words."""
    if piece == "kv_speed":
        return f"batch {KV_BATCH}, prompt {KV_PROMPT}, {KV_NEW} new tokens"
    return f"batch 1, prompt {SPEC_PROMPT}, {SPEC_NEW} new tokens, num_speculative={SPEC_K}"


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
            with timing.timed("cpu", seconds[name]):
                outputs[name] = fn()
    return seconds, outputs


@torch.no_grad()
def measure_kv(module, ref) -> dict:
    student = fixtures.make_model(module, KV_SHAPE, seed=SEED)
    checks.repair_cache_allocation(student)  # a wrong cache dtype is graded in buffers only
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
    checks.repair_cache_allocation(target, draft)
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

# The verdict: timing the student's own process with its own clock can be faked by the code
# being timed, so the pass/fail ratio comes from the kernel's CPU accounting of three separate
# workers, read by the harness: "setup" (fixtures and one one-token call), "naive" (the given
# naive generate; the student's file is never imported) and "student" (the student's method).
# Per call = (worker CPU - setup CPU) / calls. Every call gets its own prompt, and every output
# of the student's calls is checked, so caching answers does not pay.
# Enough naive calls that the spread of a process's fixed cost (imports and fixtures, ~4 s of
# CPU, +-0.6 s between processes) moves the naive figure by well under 0.1 s a call.
CPU_CALLS = {"kv_speed": (6, 12), "spec_speed": (4, 12)}  # (naive calls, student calls)

# The speculative points also need the decoder's cost to depend on the draft the way speculative
# decoding's does. The "stranger" role runs the student's generate_speculative on the student
# role's prompts with a draft that (almost) never agrees: a real decoder then pays k draft
# steps and a verify for every token, while a generate_kv dressed up as speculative decoding
# costs the same with either draft. Every spec role builds the stranger, so its cost cancels.
STRANGER_SEED = SEED + 99


def stranger_draft(owner):
    """A 1-layer model from another seed: shaped like the fixture draft, agreeing by chance only."""
    return fixtures.make_model(owner, dict(SPEC_PAIR.target, n_layer=1), seed=STRANGER_SEED)


def cpu_prompts(piece: str, n: int) -> list:
    if piece == "kv_speed":
        return [
            fixtures.random_prompt(KV_BATCH, KV_PROMPT, KV_SHAPE["vocab_size"], seed=SEED * 1000 + i)
            for i in range(n)
        ]
    vocab = SPEC_PAIR.target["vocab_size"]
    return [fixtures.random_prompt(1, SPEC_PROMPT, vocab, seed=SEED * 2000 + i) for i in range(n)]


@torch.no_grad()
def run_role(piece: str, role: str, module, ref) -> dict:
    """One worker's share of the kernel-timed measurement: role "setup", "naive" (module is
    None), "student" or "stranger" (the student's code)."""
    owner = ref if role in ("setup", "naive") else module
    if piece == "kv_speed":
        model, draft, new = fixtures.make_model(owner, KV_SHAPE, seed=SEED), None, KV_NEW
    else:
        (draft, model), new = fixtures.make_pair(owner, SPEC_PAIR, seed=SEED), SPEC_NEW
        stranger = stranger_draft(owner)
    if role in ("student", "stranger"):  # a wrong cache dtype is graded in buffers only
        checks.repair_cache_allocation(model, *([] if draft is None else [draft, stranger]))
    n_naive, n_student = CPU_CALLS[piece]
    prompts = cpu_prompts(piece, n_student if role in ("student", "stranger") else n_naive)
    if role == "student" and piece == "kv_speed":
        call = lambda p, n: model.generate_kv(p, n, top_k=1)
    elif role in ("student", "stranger"):
        used = draft if role == "student" else stranger
        call = lambda p, n: model.generate_speculative(p, n, used, top_k=1, num_speculative=SPEC_K)
    else:
        call = lambda p, n: model.generate(p, n, top_k=1)
    call(prompts[0], 1)  # load kernels, allocate: the same one-token call in every role
    if role == "setup":
        return {"outputs": []}
    return {"outputs": [call(p, new).detach().clone() for p in prompts]}


def expected_cpu_outputs(piece: str, ref) -> tuple:
    """(reference model, expected outputs of the student role's calls), computed by the harness."""
    if piece == "kv_speed":
        model, new = fixtures.make_model(ref, KV_SHAPE, seed=SEED), KV_NEW
    else:
        (_, model), new = fixtures.make_pair(ref, SPEC_PAIR, seed=SEED), SPEC_NEW
    return model, [model.generate(p, new, top_k=1) for p in cpu_prompts(piece, CPU_CALLS[piece][1])]


def expected_outputs(name: str, ref):
    """What the reference's naive generate produces on the speed fixture (computed by the harness)."""
    if name == "kv_speed":
        model = fixtures.make_model(ref, KV_SHAPE, seed=SEED)
        prompt, new = kv_case()
    else:
        _, model = fixtures.make_pair(ref, SPEC_PAIR, seed=SEED)
        prompt, new = spec_case()
    return model, model.generate(prompt, new, top_k=1)
