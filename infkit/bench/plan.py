"""Before a run starts: how many threads it uses, about how long it takes, and what to do on a
busy machine.

Threads: torch's default (one per core) is the wrong choice on a machine that other programs
share. A thread that waits for a core stalls the others at every matrix multiply, so a 4-token
verify step on two contended threads cost several times a 1-token step and speculative decoding
looked slower than the plain KV loop. One thread per core that is actually free keeps the
ratios meaningful; on a busy machine one thread is the steadiest choice.

The estimate scales the kit's reference run (REFERENCE_SECONDS, the default workload on the
default stand-in pair, 2 threads on 2 quiet cores) by this run's workload and thread count. It
is an order of magnitude, not a promise: another CPU, or a busy one, changes it.
"""

import math
import time
from dataclasses import replace

from . import machine
from .config import Config, Workload

# A core counts as free when other programs leave at least this much of it idle.
FREE_CORE = 0.75
# The kit's reference run: the default ./run.sh on the kit's 2-core machine, quiet.
REFERENCE_SECONDS = 228.0
REFERENCE_THREADS = 2
# A forward pass over n tokens costs about (n + PASS_OVERHEAD) token-units: reading every weight
# once costs as much as computing ~24 tokens on the reference stand-in, which is what makes a
# 1-token decode step far dearer than 1/384 of a 384-token prefill.
PASS_OVERHEAD = 24
# What the estimate covers: the offline default pair on the CPU, outside --debug.
ESTIMATED_PAIR = "bench"


def choose_threads(n_cores: int, others_cores: float | None) -> tuple[int, str]:
    """(threads, why) from how many cores' worth of CPU other programs use (None: unknown)."""
    if others_cores is None:
        return n_cores, f"{n_cores} threads, one per core (how busy the machine is cannot be measured here)"
    free = sum(1 for i in range(n_cores) if min(1.0, max(0.0, others_cores - i)) <= 1 - FREE_CORE)
    if free == 0:
        return 1, (
            f"1 thread: the machine is busy (other programs use {others_cores:.1f} of its {n_cores} cores)"
        )
    if free == n_cores:
        return free, f"{free} threads, one per core (all {n_cores} free)"
    return free, (
        f"{free} thread{'s' if free > 1 else ''}, one per free core "
        f"(other programs use {others_cores:.1f} of {n_cores} cores)"
    )


def others_cores_now(window_s: float = 0.5) -> float | None:
    """Cores' worth of CPU that other programs use, over a short window (Linux), else from the
    1-minute load average (which lags and counts threads waiting on a disk), else None."""
    n = machine.cores()
    start = machine.snapshot()
    time.sleep(window_s)
    share = machine.others_share(start, machine.snapshot(), n)
    if share is not None:
        return share * n
    return machine.load_average()


def _pass(n_tokens: int, batch: int) -> float:
    return batch * n_tokens + PASS_OVERHEAD


def _call_units(method: str, batch: int, prompt: int, new: int, k: int) -> float:
    """Token-units of one call: naive re-runs the context per token; the others prefill once and
    then run one short pass per token (speculative: one draft step per token, one verify pass
    per round, the draft counted at a third of the target)."""
    if new == 0:
        return _pass(prompt, batch)
    if method == "naive":
        return sum(_pass(prompt + i, batch) for i in range(new))
    if method in ("speculative", "hf_assisted", "speculative_sampled", "agreeing"):
        rounds = math.ceil(new / (k + 1))
        return _pass(prompt, batch) + rounds * _pass(k + 1, batch) + new * _pass(1, batch) / 3
    return _pass(prompt, batch) + new * _pass(1, batch)


def workload_units(w: Workload, k: int, agreeing: bool) -> float:
    total = 0.0
    methods = list(w.methods) + (["agreeing"] if agreeing and w.test == "latency" else [])
    for B in w.batch_sizes:
        for m in methods:
            if m == "agreeing":
                runs, samples = B == 1 and "speculative" in w.methods, w.samples
            else:
                runs, samples = w.runs_at(m, B), w.samples_of(m, B)
            if runs:
                total += samples * _call_units(m, B, w.prompt_len, w.new_tokens, k)
    return total


def units(config: Config) -> float:
    return sum(workload_units(w, config.num_speculative, config.agreeing) for w in config.workloads)


def covered(config: Config) -> bool:
    """Whether the reference run says anything about `config`: the same pair on a CPU, outside
    --debug and --compile (each changes the cost per token several times over)."""
    return (
        config.pair == ESTIMATED_PAIR
        and not config.model
        and config.device == "cpu"
        and not config.debug
        and not config.compile
    )


def reference_applies(config: Config, workload: Workload) -> bool:
    """Whether a test's figures can stand beside the kit's CPU reference figures: the reference
    pair on a CPU (covered) and this test's workload as the default command line sets it."""
    if not covered(config):
        return False
    from .cli import parse  # cli imports this module's callers, not this module

    default = parse([]).workload(workload.test)
    same = ("batch_sizes", "prompt_len", "new_tokens", "samples")
    return default is not None and all(getattr(default, f) == getattr(workload, f) for f in same)


def estimate_seconds(config: Config, threads: int, reference: Config) -> float | None:
    """About how long the timed part of `config` takes with `threads` threads, scaled from the
    reference run (`reference`: the default command line's Config, fitted to the same pair);
    None where the reference says nothing."""
    if not covered(config):
        return None
    scale = units(config) / units(reference)
    # fewer threads than the reference: at best proportionally slower (an upper estimate on a
    # quiet machine, where one thread runs a little better than half as fast as two)
    return REFERENCE_SECONDS * scale * max(1.0, REFERENCE_THREADS / threads)


def estimate_line(seconds: float | None) -> str:
    if seconds is None:
        return (
            "estimated time: none for this pair or device (the estimate covers the offline default on a CPU)"
        )
    minutes = seconds / 60
    when = f"{seconds:.0f} s" if seconds < 120 else f"{minutes:.0f} min"
    return (
        f"estimated time: about {when} on a quiet machine like the kit's reference (2 cores, "
        f"{REFERENCE_SECONDS:.0f} s for the default), longer on a busy or slower one"
    )


BUSY_ADVICE = (
    "On a machine you cannot make quiet (shared, a Colab CPU runtime): keep --threads 1 and run a "
    "smaller workload, e.g. `./run.sh --threads 1 --skip throughput` (the latency test alone) or "
    "`./run.sh --threads 1 --new-tokens 32 --latency-samples 1`; compare ratios from one run only."
)

# On a busy machine, when the thread count is run.sh's own choice, the throughput test generates
# this many tokens instead of its default 64: naive generate is half the default run's cost, and
# one thread that shares its core with other programs would otherwise take more than twice the
# quiet run's wall time. The ratios keep their direction; they are not the reference's figures.
BUSY_NEW_TOKENS = 32


def busy_workload(config: Config, busy: bool) -> tuple[Config, str | None]:
    """(the config to run, a line saying what changed or None). Shrinks the throughput test's
    generation on a busy machine when nothing asked for the default workload to be kept: the
    thread count left to run.sh, --new-tokens at its default, no --full-workload, on a CPU."""
    from .cli import parse  # cli imports this module's callers, not this module

    throughput = config.workload("throughput")
    default = parse([]).workload("throughput")
    if (
        not busy
        or config.full_workload
        or config.threads
        or config.device != "cpu"
        or throughput is None
        or default is None
        or throughput.new_tokens != default.new_tokens
        or throughput.new_tokens <= BUSY_NEW_TOKENS
    ):
        return config, None
    smaller = tuple(
        replace(w, new_tokens=BUSY_NEW_TOKENS) if w is throughput else w for w in config.workloads
    )
    line = (
        f"busy machine: the throughput test generates {BUSY_NEW_TOKENS} tokens, not "
        f"{throughput.new_tokens}, to keep the run short (--full-workload keeps the default)"
    )
    return replace(config, workloads=smaller), line


def busy_warning(others_cores: float | None, n_cores: int) -> str | None:
    """The warning printed before the run when other programs hold at least one core."""
    if others_cores is None or others_cores < 1 - FREE_CORE:
        return None
    return (
        f"WARNING: other programs use {others_cores:.1f} of this machine's {n_cores} cores: this run "
        f"will take longer than on a quiet machine and its figures may be marked UNSTABLE. {BUSY_ADVICE}"
    )
