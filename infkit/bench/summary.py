"""The JSON summary that `--json PATH` writes, as a declared type. infkit.notebook and the tests
read it; every key below is written on every run (None where there is no figure), except the
ones in _Optional, which appear only when their measurement ran."""

import platform
from dataclasses import asdict
from typing import TypedDict

import torch

from .analyse import FIGURES


class FigureJSON(TypedDict):
    value: float | None  # None: no figure (not run, failed, wrong output, or a measurement failure)
    low: float | None  # the range of the ratio over the samples
    high: float | None
    test: str  # "throughput" or "latency": whose workload it comes from
    batch: int | None
    reference: list[float] | None  # the kit's CPU reference range (same pair and workload only)
    unstable: bool  # wide range, or its test ran on a busy machine
    failure: str | None  # a measurement that contradicts itself (a ceiling below its figure)


class MachineJSON(TypedDict):
    cores: int
    load_before: float | None  # 1-minute load average before the run
    load_after: float | None  # after it: includes the run's own threads
    others_share: dict[str, float | None]  # per test: other programs' share of all cores (Linux)
    busy: dict[str, list[str]]  # per test: why its figures may be noise (empty: quiet)
    max_sample_spread: float | None  # largest (max - min) / median over the timed rows


class _Optional(TypedDict, total=False):
    temperature: float  # with --temperature
    spec_speedup_vs_kv_sampled: float | None
    acceptance_rate_sampled: float | None
    prefill_s: float  # the latency test's prompt, prefilled alone (median)
    spec_speedup_vs_kv_decode_phase: float | None
    agreeing_draft_acceptance: float | None
    decode_ms_per_token: float  # batch-1 decode step against the memory bandwidth
    decode_ms_range: list[float]
    bandwidth_limit_ms_per_token: float
    fraction_of_bandwidth_limit: float | None
    weight_bytes: int
    copy_bandwidth_gbs: float


class Summary(_Optional):
    kv_speedup_vs_naive: float | None  # throughput test, at kv_speedup_vs_naive_batch
    kv_speedup_vs_naive_batch: int | None
    kv_speedup_vs_naive_by_batch: dict[int, float | None]
    kv_vs_transformers: float | None  # throughput test, at kv_vs_transformers_batch
    kv_vs_transformers_batch: int | None
    kv_vs_transformers_by_batch: dict[int, float | None]
    spec_speedup_vs_kv_long_prompt: float | None  # throughput workload, batch 1, prefill included
    spec_speedup_vs_kv: float | None  # latency test
    spec_vs_transformers_assisted: float | None  # latency test
    spec_speedup_vs_kv_agreeing_draft: float | None  # latency test's ceiling
    acceptance_rate: float | None  # latency test
    acceptance_rate_source: str
    figures: dict[str, FigureJSON]  # every ratio above with its range and stability
    unstable: bool  # any figure unstable
    warnings: list[str]
    machine: MachineJSON
    workload: dict  # the pair and settings, plus the throughput test's lengths (as before)
    workloads: dict[str, dict]  # each test's own workload (config.Workload.as_json)
    rows: list[dict]  # every timed row (measure.Row.as_json), each naming its test
    device: dict
    versions: dict
    command: str


def figure_json(figure) -> FigureJSON:
    return FigureJSON(**asdict(figure))


def versions() -> dict:
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def device_info(device: str) -> dict:
    if device.startswith("cuda"):
        return {"device": device, "name": torch.cuda.get_device_name(device)}
    return {
        "device": "cpu",
        "name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def headline_values(analysis) -> dict:
    """Each figure's value under its own key; a measurement failure has none."""
    values = {}
    for key, f in analysis.figures.items():
        values[key] = None if f.failure else f.value
    for spec in FIGURES:
        values.setdefault(spec.key, None)
    return values
