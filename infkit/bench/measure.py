"""Timing one test: every method warmed up once, then the methods take turns sample by sample
(so a slow drift of the machine hits all of them alike), each call timed with a device
synchronisation (infkit.timing). Records seconds and outputs; judges nothing.

Every sample of a row is the same call on the same prompts. A row's spread is then the
machine's noise alone: with a different prompt per sample it would also hold the prompts'
differences (a speculative call's time follows its prompt's acceptance), and a spread that
no re-run on a quiet machine can narrow would be reported as noise."""

import traceback
from dataclasses import dataclass, field

from .. import corpus, timing
from .config import SPECULATIVE, WARMUP_PROMPT, Config, Workload
from .methods import counted_call, failure


@dataclass
class Row:
    """One method at one batch size in one test. Measuring fills the first block; analyse.py
    the second (None where there is no figure)."""

    test: str
    method: str
    batch: int
    status: str = "ok"
    seconds: list[float] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # sample index -> output tokens (CPU)
    passes: list[list[int]] = field(default_factory=list)  # target pass lengths per call
    spec_stats: list[dict] = field(default_factory=list)
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    tokens_per_s: float | None = None
    ms_per_token: float | None = None
    matches_naive: bool | None = None  # equal to its reference's output (named checked_against)
    checked_against: str | None = None

    def as_json(self) -> dict:
        hidden = ("outputs", "passes", "spec_stats")
        return {k: v for k, v in self.__dict__.items() if k not in hidden}


def prompts_for(workload: Workload, vocab_size: int, seed: int):
    """Corpus windows: one batch of max(batch_sizes) prompts, which every sample repeats (batch
    B takes the first B)."""
    n = max(workload.batch_sizes)
    return corpus.sample_prompts(n, workload.prompt_len, seed=seed, vocab_size=vocab_size)


def timed_methods(workload: Workload, methods: dict, batch: int) -> list[str]:
    return [m for m in workload.methods if m in methods and workload.runs_at(m, batch)]


def progress_steps(workload: Workload, methods: dict) -> int:
    """Warm-ups and timed calls, for the progress bar."""
    return sum(
        1 + workload.samples_of(m, B)
        for B in workload.batch_sizes
        for m in timed_methods(workload, methods, B)
    )


def warm_up(row: Row, fn, batch, workload: Workload, config: Config) -> None:
    """Allocations and kernel choice (a stub fails here): a prefill and a decode step, and for
    the speculative methods a few rounds, after the end of the first prompt only (a full-length
    prefill would teach the warm-up nothing more)."""
    steps = 2 * config.num_speculative + 2 if row.method in SPECULATIVE else 2
    try:
        fn(batch[:, -WARMUP_PROMPT:], min(workload.new_tokens, steps))
    except Exception as e:
        row.status = failure(e)
        if not isinstance(e, NotImplementedError) and config.debug:
            traceback.print_exc()


def time_sample(row: Row, fn, batch, sample: int, workload: Workload, target, device: str) -> None:
    """One timed call; a speculative one also counts the target's passes for the acceptance."""
    try:
        if row.method in ("speculative", "speculative_sampled"):
            out, passes, stats = counted_call(target, device, row.seconds, fn, batch, workload.new_tokens)
            row.passes.append(passes)
            if stats is not None:
                row.spec_stats.append(stats)
        else:
            with timing.timed(device, row.seconds):
                out = fn(batch, workload.new_tokens)
        row.outputs[sample] = out.cpu()
    except Exception as e:
        row.status = failure(e)


def measure_test(
    models, methods: dict, workload: Workload, prompts, config: Config, progress, after_turn=None
) -> dict:
    """{(method, batch): Row} for one test's workload. after_turn(rows, B, s, batch), if given,
    runs after every method has had its turn at sample s, so that a row derived from those
    turns' outputs (the latency test's ceiling) is timed among them, not after them."""
    rows = {}
    for B in workload.batch_sizes:
        names = timed_methods(workload, methods, B)
        batch = prompts[:B].to(config.device)  # every sample repeats this call
        for m in names:
            rows[m, B] = Row(test=workload.test, method=m, batch=B)
            warm_up(rows[m, B], methods[m], batch, workload, config)
            progress.update(1)
        for s in range(workload.samples):
            for m in names:  # the methods take turns, sample by sample
                row = rows[m, B]
                if row.status == "ok" and s < workload.samples_of(m, B):
                    time_sample(row, methods[m], batch, s, workload, models.target, config.device)
                    progress.update(1)
            if after_turn is not None:
                after_turn(rows, B, s, batch)
    return rows
