"""Speed tests, measured on fixed CPU fixtures that the rubric declares (rubric.SpeedFixture;
the worker gets the fixture in its job, so this file holds no policy).

Two measurements of the same calls. In-process (`measure`, shown for information): the worker
times the student's method against the naive `generate` of the reference module (the given
code, same weights) in interleaved repetitions after a warm-up, and returns the raw seconds and
the tokens produced. Kernel-timed (`run_role`, the verdict): timing the student's process with
its own clock can be faked by the code being timed, so the pass/fail ratio comes from the
kernel's CPU accounting of separate workers, read by the harness: "naive" (the given naive
generate; the student's file is never imported), "student" (the student's method) and, for a
speculative fixture, "stranger" (the student's generate_speculative with a draft that never
agrees). Each worker sets up (imports, fixtures, one one-token call), says so, and only then
learns the seed of its calls' prompts (sandbox.run_worker reads its CPU time in between), so
per call = (worker CPU - its own set-up CPU) / calls. Every call gets its own prompt, drawn
afresh for each grading, and every output of the student's calls is checked, so caching
answers does not pay.
"""

import torch

from infkit import checks, fixtures, timing


def pin_threads() -> None:
    """The grader's thread count before each timed call (worker.pin_threads says why)."""
    torch.set_num_threads(1)


def describe(fx) -> str:
    """The fixture, in words."""
    words = f"batch {fx.batch}, prompt {fx.prompt}, {fx.new} new tokens"
    return words + (f", num_speculative={fx.num_speculative}" if fx.draft_layers else "")


def _models(fx, owner):
    """(model, draft or None) of `owner`'s code with the fixture's weights."""
    if not fx.draft_layers:
        return fixtures.make_model(owner, fx.target, seed=fx.seed), None
    draft, target = fixtures.make_pair(
        owner, fixtures.PairSpec(fx.target, fx.draft_layers, fx.draft_scale), fx.seed
    )
    return target, draft


def stranger_draft(fx, owner):
    """A 1-layer model from another seed: shaped like the fixture draft, agreeing by chance only.
    A real speculative decoder pays k draft steps and a verify for every token with it, while a
    generate_kv dressed up as speculative decoding costs the same with either draft. Every role
    of a speculative fixture builds it, so its cost cancels."""
    return fixtures.make_model(owner, dict(fx.target, n_layer=1), seed=fx.stranger_seed)


def _student_call(fx, model, draft):
    if fx.method == "generate_kv":
        return lambda p, n: model.generate_kv(p, n, top_k=1)
    return lambda p, n: model.generate_speculative(p, n, draft, top_k=1, num_speculative=fx.num_speculative)


def case(fx):
    """(prompt, new tokens) of the in-process timing."""
    return fixtures.random_prompt(fx.batch, fx.prompt, fx.target["vocab_size"], seed=fx.prompt_seed), fx.new


def cpu_prompts(fx, n: int, seed: int) -> list:
    """The kernel-timed calls' prompts, one per call (`seed`: the grading's, sent after set-up)."""
    vocab = fx.target["vocab_size"]
    return [fixtures.random_prompt(fx.batch, fx.prompt, vocab, seed=seed + i) for i in range(n)]


def _interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Call every fn once to warm up, then `repeats` rounds in turn; seconds and last outputs."""
    outputs = {}
    for name, fn in fns.items():
        pin_threads()
        outputs[name] = fn()
    seconds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            pin_threads()
            with timing.timed("cpu", seconds[name]):
                outputs[name] = fn()
    return seconds, outputs


@torch.no_grad()
def measure(fx, module, ref) -> dict:
    """In-process timings {"seconds": {"naive", "student"[, "kv"]: [s, ...]}, "out_student"[,
    "out_kv"]}. A speculative fixture also times the student's generate_kv on the target, for
    the leaderboard only (without it, the rest is timed)."""
    model, draft = _models(fx, module)
    checks.repair_cache_allocation(model, *([draft] if draft is not None else []))  # graded in buffers only
    naive, _ = _models(fx, ref)
    prompt, new = case(fx)
    student = _student_call(fx, model, draft)
    fns = {"naive": lambda: naive.generate(prompt, new, top_k=1), "student": lambda: student(prompt, new)}
    if fx.method != "generate_kv":
        fns["kv"] = lambda: model.generate_kv(prompt, new, top_k=1)
        try:
            fns["kv"]()
        except Exception:
            del fns["kv"]
    seconds, outputs = _interleaved(fns, fx.repeats)
    return {
        "seconds": seconds,
        **{f"out_{k}": v.detach().clone() for k, v in outputs.items() if k != "naive"},
    }


@torch.no_grad()
def run_role(fx, role: str, module, ref, next_seed) -> dict:
    """One worker's share of the kernel-timed measurement: role "naive" (module is None),
    "student" or "stranger" (the student's code). `next_seed()` reports the set-up done and
    returns the seed of the timed calls' prompts."""
    owner = ref if role == "naive" else module
    model, draft = _models(fx, owner)
    stranger = stranger_draft(fx, owner) if draft is not None else None
    if role != "naive":  # a wrong cache dtype is graded in buffers only
        checks.repair_cache_allocation(model, *[m for m in (draft, stranger) if m is not None])
    n_naive, n_student = fx.calls
    if role == "naive":
        call = lambda p, n: model.generate(p, n, top_k=1)
    else:
        call = _student_call(fx, model, draft if role == "student" else stranger)
    pin_threads()
    call(case(fx)[0], 1)  # load kernels, allocate: the same one-token call in every role
    prompts = cpu_prompts(fx, n_naive if role == "naive" else n_student, next_seed())
    outputs = []
    for p in prompts:
        pin_threads()
        outputs.append(call(p, fx.new).detach().clone())
    return {"outputs": outputs}


def reference_model(fx, ref):
    """The fixture's target with the given code (the harness's, to check the student's outputs
    against: checks.verify_greedy)."""
    return _models(fx, ref)[0]
