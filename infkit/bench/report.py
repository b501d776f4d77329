"""What a run prints, and the JSON summary it writes (summary.Summary)."""

import json
import statistics

import torch

from .. import bench_models
from .analyse import FIGURES
from .config import LABELS, OTHERS_LIMIT, SPREAD_LIMIT
from .plan import BUSY_ADVICE
from .summary import Summary, device_info, figure_json, headline_values, versions

EXTRA_LABELS = {  # in the warnings, where a figure's line has no neighbours to explain it
    "spec_speedup_vs_kv_agreeing_draft": "speculative vs KV with a draft that always agreed (the ceiling)",
    "spec_speedup_vs_kv_decode_phase": "speculative vs KV after the prompt's prefill",
    "fraction_of_bandwidth_limit": "decode step against the bandwidth limit",
}


def fmt(x, spec=".2f", unit=""):
    return "-" if x is None else f"{x:{spec}}{unit}"


def spread(row) -> str:
    if row.min_s is None:
        return ""
    return "(1 sample)" if len(row.seconds) == 1 else f"({row.min_s:.2f}-{row.max_s:.2f})"


def check_note(row) -> str:
    ref = LABELS.get(row.checked_against or "", "")
    return {None: "", True: f"= {ref}", False: f"DIFFERS from {ref} (no speedup credited)"}[row.matches_naive]


def figure_line(label: str, figure, width: int = 52) -> str:
    """'label: 2.31x (2.20-2.40)   kit's CPU reference 2.50-2.65x', or why there is no figure."""
    if figure.failure:
        return f"{label + ':':{width}s} MEASUREMENT FAILED ({figure.failure}: the noise exceeded the gap)"
    text = f"{label + ':':{width}s} {fmt(figure.value, '.2f', 'x'):>7s}"
    if figure.value is not None:
        text += f" ({figure.low:.2f}-{figure.high:.2f})"
    if figure.reference:
        text += f"   kit's CPU reference {figure.reference[0]:.2f}-{figure.reference[1]:.2f}x"
    return text + ("   UNSTABLE" if figure.unstable else "")


def throughput_lines(run, figures) -> list[str]:
    w = run.workload
    head = f"{'method':24s} {'batch':>5s} {'tokens/s':>9s} {'s/call (min-max)':>22s} {'vs naive':>9s}  output"
    lines = [
        f"Throughput test: batch sizes {', '.join(map(str, w.batch_sizes))}; {w.prompt_len}-token prompts, "
        f"{w.new_tokens} new tokens",
        head,
        "-" * len(head),
    ]
    for (m, B), row in run.rows.items():
        if row.status != "ok":
            lines.append(f"{LABELS[m]:24s} {B:5d} {row.status}")
            continue
        naive = run.rows.get(("naive", B))
        speed = (
            naive.median_s / row.median_s
            if naive and naive.median_s and row.median_s and m != "naive"
            else None
        )
        seconds = f"{fmt(row.median_s, '.2f')} {spread(row)}"
        lines.append(
            f"{LABELS[m]:24s} {B:5d} {fmt(row.tokens_per_s, '9.1f')} {seconds:>22s} "
            f"{fmt(speed, '8.1f', 'x'):>9s}  {check_note(row)}"
        )
    lines.append("")
    for spec in FIGURES:
        if spec.test == "throughput":
            f = figures[spec.key]
            lines.append(figure_line(f"{spec.label} (batch {f.batch or 1})", f))
    return lines


def latency_lines(run, figures, values) -> list[str]:
    w = run.workload
    head = f"{'method':34s} {'s/request (min-max)':>22s} {'ms/token':>9s} {'vs KV':>7s}  output"
    lines = [
        f"Latency test: batch 1; {w.prompt_len}-token prompts, {w.new_tokens} new tokens; "
        f"{w.samples} requests per method",
        head,
        "-" * len(head),
    ]
    kv = run.rows.get(("kv", 1))
    for (m, _), row in run.rows.items():
        if row.status != "ok":
            lines.append(f"{LABELS[m]:34s} {row.status}")
            continue
        speed = kv.median_s / row.median_s if kv and kv.median_s and row.median_s and m != "kv" else None
        seconds = f"{fmt(row.median_s, '.2f')} {spread(row)}"
        lines.append(
            f"{LABELS[m]:34s} {seconds:>22s} {fmt(row.ms_per_token, '9.1f')} {fmt(speed, '6.2f', 'x'):>7s}  "
            f"{check_note(row)}"
        )
    lines.append("")
    for spec in FIGURES:
        if spec.test == "latency" and (spec.key != "spec_speedup_vs_kv_sampled" or "temperature" in values):
            lines.append(figure_line(spec.label, figures[spec.key]))
            if spec.key == "spec_speedup_vs_kv" and "spec_speedup_vs_kv_decode_phase" in figures:
                label = f"  after the prompt's prefill ({values['prefill_s']:.2f} s in both)"
                lines.append(figure_line(label, figures["spec_speedup_vs_kv_decode_phase"]))
    rate = f"{fmt(values['acceptance_rate'])} ({values['acceptance_rate_source']})"
    if "temperature" in values:
        rate += f"; at temperature {values['temperature']}: {fmt(values['acceptance_rate_sampled'])}"
    return lines + [f"{'draft acceptance rate:':52s} {rate}"]


def bandwidth_line(figures, values) -> list[str]:
    if "decode_ms_per_token" not in values:
        return []
    lo, hi = values["decode_ms_range"]
    return [
        f"batch-1 decode step: {values['decode_ms_per_token']:.2f} ms/token ({lo:.2f}-{hi:.2f}); memory-bandwidth "
        f"limit {values['bandwidth_limit_ms_per_token']:.2f} ms (weights {values['weight_bytes'] / 1e9:.2f} GB at "
        f"{values['copy_bandwidth_gbs']:.1f} GB/s copy): "
        f"{100 * figures['fraction_of_bandwidth_limit'].value:.0f}% of the limit"
    ]


def sample_spread(measured) -> tuple[float | None, str]:
    """The largest (max - min) / median over every row with several samples, and its row."""
    worst, where = None, ""
    for test, run in measured.tests.items():
        for row in run.rows.values():
            if len(row.seconds) > 1:
                s = (max(row.seconds) - min(row.seconds)) / statistics.median(row.seconds)
                if worst is None or s > worst:
                    worst, where = s, f"{LABELS[row.method]}, {test} test"
    return worst, where


def warnings(analysis) -> list[str]:
    """Why figures are noise: the machine was busy, or a ratio's samples disagree."""
    found = [f"{reason}" for reasons in analysis.reasons.values() for reason in reasons]
    found = list(dict.fromkeys(found))  # a load average before the run is every test's reason
    labels = {spec.key: spec.label.strip() for spec in FIGURES} | EXTRA_LABELS
    for key, f in analysis.figures.items():
        if f.failure:
            found.append(f"{labels.get(key, key)}: measurement failed, {f.failure}")
        elif f.value is not None and f.wide:
            found.append(
                f"{labels.get(key, key)}: its samples span {f.low:.2f}x-{f.high:.2f}x, more than "
                f"{100 * SPREAD_LIMIT:.0f}% of the figure"
            )
    return found


def machine_lines(measured, analysis) -> list[str]:
    shares = ", ".join(
        f"{test} test {fmt(None if run.others_share is None else 100 * run.others_share, '.0f', '%')}"
        for test, run in measured.tests.items()
    )
    worst, where = sample_spread(measured)
    lines = [
        f"machine: {measured.cores} cores; load average {fmt(measured.load_before)} before the run, "
        f"{fmt(measured.load_after)} after (its own threads included); other programs' share of the CPU: "
        f"{shares} (busy above {100 * OTHERS_LIMIT:.0f}%); samples of one row differ by up to "
        f"{fmt(None if worst is None else 100 * worst, '.0f', '%')} ({where or 'one sample each'})",
    ]
    found = warnings(analysis)
    if not found:
        return lines + [
            f"figures: stable (a quiet machine, every ratio's samples within {100 * SPREAD_LIMIT:.0f}% of it)"
        ]
    lines.append("WARNING: figures marked UNSTABLE are noise, not a property of the code under test:")
    lines += [f"  - {reason}" for reason in found]
    lines.append(f"  {BUSY_ADVICE}")
    return lines


REFERENCE_NOTE = (
    "kit's CPU reference: the range of three quiet default runs on the kit's own 2-core CPU, to compare "
    "with; not a goal. Points come only from the autograder's own speed tests (README, \"What the "
    'autograder does").'
)


def text(measured, analysis) -> str:
    lines = []
    if "throughput" in measured.tests:
        lines += throughput_lines(measured.tests["throughput"], analysis.figures) + [""]
    if "latency" in measured.tests:
        lines += latency_lines(measured.tests["latency"], analysis.figures, analysis.values) + [""]
    lines += bandwidth_line(analysis.figures, analysis.values)
    if any(f.reference for f in analysis.figures.values()):
        lines.append(REFERENCE_NOTE)
    return "\n".join(lines + machine_lines(measured, analysis))


def header(config, models, draft_head: str, corpus_source: str) -> str:
    return "\n".join(
        [
            f"model.py: {config.impl}",
            f"pair: {models.name} ({models.source}); target {bench_models.describe(models.target)}; "
            f"draft {bench_models.describe(models.draft)}, {draft_head} head",
            f"device {config.device} ({dtype_of(models.target)}, {torch.get_num_threads()} threads); "
            f"k = {config.num_speculative} drafted per round; "
            f"prompts from {corpus_source}; greedy",
        ]
    )


def dtype_of(model) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


def summary(config, models, draft_head: str, corpus_source: str, measured, analysis) -> Summary:
    workloads = {test: run.workload.as_json() for test, run in measured.tests.items()}
    first = next(iter(workloads.values()))  # the throughput test's, when it ran (as before the split)
    workload = dict(
        impl=str(config.impl),
        pair=models.name,
        weights=models.source,
        target=bench_models.describe(models.target),
        draft=bench_models.describe(models.draft),
        draft_head=draft_head,
        dtype=dtype_of(models.target),
        num_speculative=config.num_speculative,
        corpus=corpus_source,
        compile=config.compile,
        greedy=True,
        temperature=config.temperature,
        **{k: first[k] for k in ("batch_sizes", "prompt_len", "new_tokens", "samples", "naive_samples")},
        **{k: first[k] for k in ("batch_samples", "naive_batch_sizes", "hf_batch_sizes")},
    )
    found = warnings(analysis)
    out = headline_values(analysis) | analysis.values
    return Summary(
        **out,
        figures={k: figure_json(f) for k, f in analysis.figures.items()},
        unstable=any(f.unstable for f in analysis.figures.values()),
        warnings=found,
        machine=dict(
            cores=measured.cores,
            load_before=measured.load_before,
            load_after=measured.load_after,
            others_share={t: r.others_share for t, r in measured.tests.items()},
            busy=analysis.reasons,
            max_sample_spread=sample_spread(measured)[0],
        ),
        workload=workload,
        workloads=workloads,
        rows=[row.as_json() for run in measured.tests.values() for row in run.rows.values()],
        device=device_info(config.device),
        versions=versions(),
        command=config.command,
    )


def write_json(path: str, report: Summary) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=str)
