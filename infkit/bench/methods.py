"""The methods the benchmark times, each a function of a prompt batch (B, T) and a token count
returning (B, T + new_tokens), and the one timed call that also counts a speculative decoder's
target passes."""

from .. import timing


class PassCounter:
    """Counts a model's forward passes (calls of its token embedding) and their lengths, so
    the acceptance rate can be derived for any speculative implementation."""

    def __init__(self, model):
        self.lengths = []
        self.handle = model.transformer.wte.register_forward_hook(
            lambda mod, inp, out: self.lengths.append(inp[0].size(1))
        )

    def close(self):
        self.handle.remove()


def make_methods(models, k: int, temperature: float | None) -> dict:
    """Every method this pair can run; each test picks its own. k: tokens drafted per round."""
    target, draft = models.target, models.draft
    methods = {
        "naive": lambda p, n: target.generate(p, n, top_k=1),
        "kv": lambda p, n: target.generate_kv(p, n, top_k=1),
        "speculative": lambda p, n: target.generate_speculative(p, n, draft, top_k=1, num_speculative=k),
    }
    if temperature:
        methods["kv_sampled"] = lambda p, n: target.generate_kv(p, n, temperature=temperature)
        methods["speculative_sampled"] = lambda p, n: target.generate_speculative(
            p, n, draft, temperature=temperature, num_speculative=k
        )
    if models.hf_target is not None:
        from .. import hf

        methods["hf"] = lambda p, n: hf.hf_generate(models.hf_target, p, n)
        # assisted generation with the same draft and the same k, drafted every round
        for cfg in (models.hf_target.generation_config, models.hf_draft.generation_config):
            cfg.num_assistant_tokens = k
            cfg.num_assistant_tokens_schedule = "constant"
        methods["hf_assisted"] = lambda p, n: hf.hf_generate(
            models.hf_target, p, n, assistant_model=models.hf_draft
        )
    return methods


def counted_call(target, device, seconds, fn, *args, **kwargs):
    """Time fn(*args, **kwargs) into `seconds` while counting the target's forward passes.
    Returns (output, pass lengths, this call's spec_stats or None if it keeps none)."""
    if hasattr(target, "spec_stats"):
        del target.spec_stats  # only this call's counts, if it keeps any
    counter = PassCounter(target)
    try:
        with timing.timed(device, seconds):
            out = fn(*args, **kwargs)
    finally:
        counter.close()
    stats = getattr(target, "spec_stats", None)
    return out, list(counter.lengths), dict(stats) if isinstance(stats, dict) else None


def failure(err: BaseException) -> str:
    """The row's status for a method that raised: a stub's "not implemented yet", or the error."""
    if isinstance(err, NotImplementedError):
        return f"not implemented yet ({str(err).split(':')[0] or 'NotImplementedError'})"
    return f"error: {type(err).__name__}: {err}"[:120]
