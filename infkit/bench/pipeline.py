"""One run, stage by stage: measure each test (watching the machine while it runs) and its
probes, then analyse the samples into figures. cli.main drives it and report.py prints it."""

import functools
import statistics
import sys
from dataclasses import dataclass, field

from . import analyse, machine, plan, probes
from .config import Config, Workload
from .measure import measure_test, progress_steps, prompts_for
from .methods import make_methods


@dataclass
class TestRun:
    workload: Workload
    rows: dict  # (method, batch) -> measure.Row
    prompts: object
    others_share: float | None  # other programs' share of the CPU while this test ran
    own_cores: float  # cores this process kept busy during it


@dataclass
class Measured:
    tests: dict[str, TestRun]
    cores: int
    load_before: float | None
    load_after: float | None = None
    prefill_s: list[float] | None = None  # the latency test's prompt, prefilled alone
    bandwidth: dict | None = None


@dataclass
class Analysis:
    figures: dict[str, analyse.Figure]
    values: dict = field(default_factory=dict)  # the other figures of the summary, by JSON key
    reasons: dict[str, list[str]] = field(default_factory=dict)  # test -> why it may be noise


def measure_all(models, config: Config, load_before: float | None) -> Measured:
    from tqdm import tqdm

    methods = make_methods(models, config.num_speculative, config.temperature)
    measured = Measured(tests={}, cores=machine.cores(), load_before=load_before)
    total = sum(progress_steps(w, methods) for w in config.workloads)
    with tqdm(total=total, desc="benchmark", unit="run", file=sys.stderr) as progress:
        for w in config.workloads:
            start = machine.snapshot()
            prompts = prompts_for(w, models.target.config.vocab_size, config.seed)
            ceiling = None  # the latency test's always-agreeing draft, timed in every turn
            if w.test == "latency" and config.agreeing and "speculative" in w.methods:
                ceiling = functools.partial(probes.agreeing_turn, models, w, config)
            rows = measure_test(models, methods, w, prompts, config, progress, after_turn=ceiling)
            if w.test == "latency":
                latency_probes(models, rows, w, config, measured)
            end = machine.snapshot()
            share = machine.others_share(start, end, measured.cores)
            measured.tests[w.test] = TestRun(w, rows, prompts, share, machine.own_cores(start, end))
    last = config.workloads[-1]
    measured.bandwidth = probes.bandwidth_samples(models.target, last.prompt_len, config.device)
    measured.load_after = machine.load_average()
    return measured


def latency_probes(models, rows: dict, w: Workload, config: Config, measured: Measured) -> None:
    """The latency test's prompt's prefill alone; the ceiling's row, if it is not whole (a wrong
    speculative output, a decoder that bypassed the wrapper), is dropped."""
    agreeing = rows.get(("agreeing", 1))
    if agreeing is not None and (agreeing.status != "ok" or not agreeing.seconds):
        del rows["agreeing", 1]
    kv, spec = rows.get(("kv", 1)), rows.get(("speculative", 1))
    if not (kv and kv.seconds and spec and spec.seconds):
        return
    measured.prefill_s = probes.prefill_seconds(models.target, w.prompt_len, config.device)


def analyse_all(measured: Measured, config: Config) -> Analysis:
    shares = {test: run.others_share for test, run in measured.tests.items()}
    last = list(measured.tests.values())[-1]
    after = None if measured.load_after is None else measured.load_after - last.own_cores
    reasons = machine.busy_reasons(measured.load_before, shares, measured.cores, after)
    analysis = Analysis(figures={}, reasons=reasons)
    for run in measured.tests.values():
        analyse.summarise_rows(run.rows, run.workload)
        analyse.check_outputs(run.rows)
    for spec in analyse.FIGURES:
        run = measured.tests.get(spec.test)
        if run is None:
            figure, by_batch = analyse.Figure(None, test=spec.test), {}
        else:
            applies = plan.reference_applies(config, run.workload)
            figure, by_batch = analyse.spec_figure(spec, run.rows, run.workload, applies)
        analysis.figures[spec.key] = figure
        if spec.largest_batch:
            analysis.values[f"{spec.key}_batch"] = figure.batch
            analysis.values[f"{spec.key}_by_batch"] = by_batch
    latency_values(measured, config, analysis)
    bandwidth_values(measured, analysis)
    analysis.figures = analyse.judge(analysis.figures, analysis.reasons)
    return analysis


def latency_values(measured: Measured, config: Config, analysis: Analysis) -> None:
    """Acceptance rates, and speculative vs KV after the prompt's prefill (both pay it; a
    speculative round cannot shorten it)."""
    run = measured.tests.get("latency")
    rows, w = (run.rows, run.workload) if run else ({}, None)
    k = config.num_speculative
    rate, source = analyse.acceptance(rows.get(("speculative", 1)), w, k) if w else (None, "unavailable")
    analysis.values.update(acceptance_rate=rate, acceptance_rate_source=source)
    if ("agreeing", 1) in rows:
        analysis.values["agreeing_draft_acceptance"] = analyse.acceptance(rows["agreeing", 1], w, k)[0]
    if config.temperature:
        sampled = analyse.acceptance(rows.get(("speculative_sampled", 1)), w, k)[0] if w else None
        analysis.values.update(temperature=config.temperature, acceptance_rate_sampled=sampled)
    if measured.prefill_s:
        prefill = statistics.median(measured.prefill_s)
        phase = analyse.speedup(
            rows.get(("kv", 1)), rows.get(("speculative", 1)), "latency", 1, offset=prefill
        )
        if phase.value is not None:
            analysis.values["prefill_s"] = prefill
            analysis.figures["spec_speedup_vs_kv_decode_phase"] = phase


def bandwidth_values(measured: Measured, analysis: Analysis) -> None:
    """A batch-1 decode step against its lower bound, weight bytes / copy bandwidth. The
    bandwidth is the best of the copies (as STREAM reports it): what the memory can deliver, so
    the figure's range is the decode step's own spread, not the copies' noise as well."""
    bw = measured.bandwidth
    if not bw:
        return
    bandwidth = bw["copy_bytes"] / min(bw["copy_s"])  # bytes per second
    step = statistics.median(bw["step_s"])
    limit = bw["weight_bytes"] / bandwidth
    ratios = [limit / s for s in bw["step_s"]]
    test = list(measured.tests)[-1]  # measured right after the last test
    analysis.figures["fraction_of_bandwidth_limit"] = analyse.Figure(
        limit / step, min(ratios), max(ratios), test
    )
    analysis.values.update(
        decode_ms_per_token=1000 * step,
        decode_ms_range=[1000 * min(bw["step_s"]), 1000 * max(bw["step_s"])],
        bandwidth_limit_ms_per_token=1000 * limit,
        weight_bytes=bw["weight_bytes"],
        copy_bandwidth_gbs=bandwidth / 1e9,
    )
