"""From raw samples to figures: each row's median and spread, its output checked against its
reference, every ratio with its range over the same samples, the acceptance rate, and which
figures are noise (a wide range, a busy machine, a ceiling below what it bounds)."""

import statistics
from dataclasses import dataclass, replace

import torch

from .config import REFERENCES, SPREAD_LIMIT, Workload
from .measure import Row


@dataclass(frozen=True)
class FigureSpec:
    """A headline ratio: how much faster `fast` is than `slow`, within one test."""

    key: str  # its JSON key
    test: str
    slow: str
    fast: str
    label: str
    # the kit's CPU reference: the range this figure took over three quiet default runs on the
    # kit's 2-core machine (README); shown only beside the same pair and workload, never a goal
    reference: tuple[float, float] | None = None
    largest_batch: bool = False  # at the largest batch where both have a figure (else batch 1)


# Adding a figure to run.sh: a row here and its key in summary.Summary (the JSON's declared type;
# the kit's tests fail without it); a new method also needs config.METHODS, LABELS,
# TEST_METHODS, REFERENCES and its call in methods.make_methods.
FIGURES = (
    FigureSpec("kv_speedup_vs_naive", "throughput", "naive", "kv", "KV cache vs naive", (11.16, 13.78), True),
    FigureSpec(
        "kv_vs_transformers",
        "throughput",
        "hf",
        "kv",
        "generate_kv vs transformers generate",
        (1.80, 1.98),
        True,
    ),
    FigureSpec(
        "spec_speedup_vs_kv_long_prompt",
        "throughput",
        "kv",
        "speculative",
        "speculative vs KV, prefill included",
    ),
    FigureSpec("spec_speedup_vs_kv", "latency", "kv", "speculative", "speculative vs KV", (2.50, 2.65)),
    FigureSpec(
        "spec_speedup_vs_kv_agreeing_draft",
        "latency",
        "kv",
        "agreeing",
        "  with a draft that always agreed (ceiling)",
    ),
    FigureSpec(
        "spec_vs_transformers_assisted",
        "latency",
        "hf_assisted",
        "speculative",
        "speculative vs transformers assisted",
        (2.27, 2.35),
    ),
    FigureSpec(
        "spec_speedup_vs_kv_sampled", "latency", "kv_sampled", "speculative_sampled", "speculative vs KV, T>0"
    ),
)
CEILINGS = {"spec_speedup_vs_kv_agreeing_draft": "spec_speedup_vs_kv"}  # a ceiling -> the figure it bounds


@dataclass(frozen=True)
class Figure:
    """A ratio, its range over the samples, and whether it can be trusted."""

    value: float | None
    low: float | None = None
    high: float | None = None
    test: str = ""
    batch: int | None = None
    reference: tuple[float, float] | None = None  # the kit's CPU reference range, where it applies
    unstable: bool = False
    failure: str | None = None  # the measurement contradicts itself: no figure

    @property
    def wide(self) -> bool:
        return (
            self.value is not None
            and self.low is not None
            and (self.high - self.low) > SPREAD_LIMIT * self.value
        )


def summarise_rows(rows: dict, workload: Workload) -> None:
    """Median and spread of each row's samples, tokens/s and ms per generated token."""
    for row in rows.values():
        if not row.seconds:
            continue
        row.median_s = statistics.median(row.seconds)
        row.min_s, row.max_s = min(row.seconds), max(row.seconds)
        row.tokens_per_s = row.batch * workload.new_tokens / row.median_s
        row.ms_per_token = 1000 * row.median_s / workload.new_tokens


def same_outputs(row: Row, ref: Row) -> bool | None:
    """Equal greedy outputs on every sample both rows ran; None if they share none."""
    common = sorted(set(row.outputs) & set(ref.outputs))
    if not common:
        return None
    return all(torch.equal(row.outputs[s], ref.outputs[s]) for s in common)


def check_outputs(rows: dict) -> None:
    """Each row against the first of its references that ran on the same prompts."""
    for (m, B), row in rows.items():
        for ref_name in REFERENCES.get(m, ()):
            ref = rows.get((ref_name, B))
            if ref and ref.status == "ok" and row.outputs:
                row.matches_naive = same_outputs(row, ref)
                row.checked_against = ref_name
                if row.matches_naive is not None:
                    break


def sample_ratios(slow: list[float], fast: list[float], paired: bool = True) -> list[float]:
    """slow / fast for every pair of samples timed on the same prompts (sample i with sample i);
    a row with a single sample, or samples of unrelated measurements (paired=False), are paired
    with each of the other's."""
    if not paired or len(slow) == 1 or len(fast) == 1:
        return [a / b for a in slow for b in fast]
    return [a / b for a, b in zip(slow, fast)]


def usable(row: Row | None) -> bool:
    return bool(row and row.status == "ok" and row.seconds and row.matches_naive is not False)


def speedup(slow: Row | None, fast: Row | None, test: str, batch: int, offset: float = 0.0) -> Figure:
    """median(slow) / median(fast), with the range of the per-sample ratios; `offset` seconds
    (a shared prefill) come off every sample first. No figure for a missing or wrong row."""
    if not (usable(slow) and usable(fast)):
        return Figure(None, test=test, batch=batch)
    a = [s - offset for s in slow.seconds]
    b = [s - offset for s in fast.seconds]
    if min(a + b) <= 0:
        return Figure(None, test=test, batch=batch)
    ratios = sample_ratios(a, b)
    value = statistics.median(a) / statistics.median(b)
    return Figure(value, min(ratios), max(ratios), test=test, batch=batch)


def spec_figure(
    spec: FigureSpec, rows: dict, workload: Workload, with_reference: bool = False
) -> tuple[Figure, dict]:
    """One FigureSpec's figure, and its value at every batch size of the test; with_reference:
    the run is the kit's reference pair and workload, so its reference range is attached."""
    by_batch = {
        B: speedup(rows.get((spec.slow, B)), rows.get((spec.fast, B)), spec.test, B)
        for B in workload.batch_sizes
    }
    measured = [B for B, f in by_batch.items() if f.value is not None]
    if spec.largest_batch:
        B = max(measured) if measured else max(workload.batch_sizes)
    else:
        B = 1
    figure = by_batch.get(B, Figure(None, test=spec.test, batch=B))
    reference = spec.reference if with_reference else None
    return replace(figure, reference=reference), {b: f.value for b, f in by_batch.items()}


def acceptance(row: Row | None, workload: Workload, k: int) -> tuple[float | None, str]:
    """Fraction of drafted tokens accepted: exact from the model's spec_stats where it keeps them
    (the contract's generate_speculative does), else estimated from the target's passes."""
    if row is None:
        return None, "unavailable"
    drafted = sum(st.get("drafted", 0) for st in row.spec_stats)
    if drafted:
        return sum(st.get("accepted", 0) for st in row.spec_stats) / drafted, "spec_stats"
    if not row.passes:
        return None, "unavailable"
    rates = [
        estimate_from_passes(lengths, workload.prompt_len, workload.new_tokens, k) for lengths in row.passes
    ]
    if any(r is None for r in rates):
        return None, "unavailable"
    return sum(rates) / len(rates), "estimated from target passes"


def estimate_from_passes(lengths: list[int], prompt_len: int, new_tokens: int, k: int) -> float | None:
    """The acceptance rate of one speculative call from the lengths of the target's forward
    passes: every round is one target pass that keeps its accepted drafts plus one token of its
    own, so accepted = new tokens - rounds, out of k drafted per round. A short last round may
    draft fewer than k, so this slightly underestimates."""
    # a first pass no longer than the prompt is a prefill, not a round
    rounds = len(lengths) - (1 if lengths and lengths[0] <= prompt_len else 0)
    if rounds <= 0:
        return None
    return max(0.0, min(1.0, (new_tokens - rounds) / (rounds * k)))


def judge(figures: dict, reasons: dict) -> dict:
    """Mark each figure unstable when its range is wide or its test ran on a busy machine, and
    a ceiling measured below the figure it bounds as a failure (the noise exceeded the gap)."""
    judged = {}
    for key, f in figures.items():
        unstable = f.value is not None and (f.wide or bool(reasons.get(f.test)))
        judged[key] = replace(f, unstable=unstable)
    for ceiling, bounded in CEILINGS.items():
        c, b = judged.get(ceiling), judged.get(bounded)
        if c and b and c.value is not None and b.value is not None and c.value < b.value:
            failure = f"measured {c.value:.2f}x, below the figure it bounds ({b.value:.2f}x)"
            judged[ceiling] = replace(c, unstable=True, failure=failure)
    return judged
