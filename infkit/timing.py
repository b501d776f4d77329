"""Honest wall-clock timing: warm-up, device synchronisation, several samples, medians. The one
timer that run.sh (infkit.bench) and the autograder's speed ratios share."""

import statistics
import time
from contextlib import contextmanager

import torch


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def timed(device, out: list):
    """Append the seconds spent in the block to `out` (CUDA events on GPU)."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        yield
        end.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(end) / 1000.0)
    else:
        t0 = time.perf_counter()
        yield
        out.append(time.perf_counter() - t0)


def time_call(fn, device="cpu", repeats: int = 3, warmup: int = 1) -> list[float]:
    """Run fn() warmup times untimed, then repeats times timed; return the seconds."""
    for _ in range(warmup):
        fn()
    seconds: list[float] = []
    for _ in range(repeats):
        with timed(device, seconds):
            fn()
    return seconds


def median(xs) -> float:
    return statistics.median(xs)
