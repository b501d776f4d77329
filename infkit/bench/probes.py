"""The extra measurements that explain a test's figures: the prompt's prefill alone, the
speculative loop with a draft that always agrees, and a batch-1 decode step against the memory
bandwidth. Each returns raw samples (or None when the implementation cannot run it)."""

import torch

from .. import timing
from ..agreeing_draft import AgreeingDraft
from .config import Config, Workload
from .measure import Row
from .methods import counted_call


@torch.no_grad()
def prefill_seconds(model, prompt_len: int, device: str, repeats: int = 3) -> list[float] | None:
    """The prompt's prefill through the target, which both generate_kv and speculative decoding
    pay and speculative decoding cannot shorten."""
    idx = torch.zeros(1, prompt_len, dtype=torch.long, device=device)
    try:
        return timing.time_call(lambda: model.prefill(idx), device, repeats, warmup=0)
    except Exception:  # prefill not implemented (or broken): no figure
        return None


@torch.no_grad()
def agreeing_turn(
    models, workload: Workload, config: Config, rows: dict, batch_size: int, s: int, prompt
) -> None:
    """One timed call of generate_speculative with a draft that always agrees, at the real
    draft's cost, on sample s's prompt, right after the other methods' turns at s (measure_test's
    after_turn): the most speculative decoding can gain on this workload. The agreeing draft
    replays generate_kv's output, so it runs only while the speculative decoder's output equals
    it. The row is marked dropped, and not timed again, when that output differs, when the
    implementation never calls the draft through the wrapper (it reached past it), or when the
    ceiling's own output is not generate_kv's."""
    kv, spec = rows.get(("kv", 1)), rows.get(("speculative", 1))
    if batch_size != 1 or not (kv and spec and s in kv.outputs and s in spec.outputs):
        return
    if ("agreeing", 1) in rows and rows["agreeing", 1].status != "ok":
        return  # dropped at an earlier turn
    dropped = Row(test=workload.test, method="agreeing", batch=1, status="dropped")
    if not torch.equal(spec.outputs[s], kv.outputs[s]):  # a wrong decoder has no ceiling
        rows["agreeing", 1] = dropped
        return
    row = rows.setdefault(("agreeing", 1), Row(test=workload.test, method="agreeing", batch=1))
    reference = kv.outputs[s].to(config.device)
    draft = AgreeingDraft(models.draft, reference)
    k, n = config.num_speculative, workload.new_tokens
    fn = models.target.generate_speculative
    try:
        out, lengths, stats = counted_call(
            models.target, config.device, row.seconds, fn, prompt, n, draft, top_k=1, num_speculative=k
        )
    except Exception:
        out = None
    if out is None or draft.calls == 0 or not torch.equal(out.cpu(), reference.cpu()):
        rows["agreeing", 1] = dropped
        return
    row.outputs[s] = out.cpu()
    row.passes.append(lengths)
    if stats is not None:
        row.spec_stats.append(stats)
    row.matches_naive, row.checked_against = True, "kv"


@torch.no_grad()
def bandwidth_samples(model, prompt_len: int, device: str, steps: int = 10) -> dict | None:
    """A batch-1 decode step must read every weight once, so weight bytes / memory bandwidth is
    its lower bound. Bandwidth: a large copy (bytes read + written / time); the step: one-token
    decode() calls after a prefill of `prompt_len` tokens."""
    n_bytes = 1 << 28
    buf = torch.empty(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(buf)
    copy_s = timing.time_call(lambda: dst.copy_(buf), device=device, repeats=5, warmup=2)
    weights = {id(p): p for p in model.parameters()}.values()  # the tied head counts once
    idx = torch.zeros(1, prompt_len, dtype=torch.long, device=device)
    tok = torch.zeros(1, 1, dtype=torch.long, device=device)

    def step():
        model.set_kv_pos(prompt_len)
        model.decode(tok)

    try:
        model.prefill(idx)
        step_s = timing.time_call(step, device=device, repeats=steps, warmup=1)
    except Exception:  # decode not implemented (or broken): no figure
        return None
    return {
        "copy_bytes": 2 * n_bytes,  # read + written per copy
        "copy_s": copy_s,
        "step_s": step_s,
        "weight_bytes": sum(p.numel() * p.element_size() for p in weights),
    }
