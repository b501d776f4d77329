"""How busy the machine was while the benchmark ran.

Two measures. On Linux, the CPU time that other programs took during each test: the whole
machine's busy time from /proc/stat minus this process's own CPU time, as a share of all cores'
time. It sees a CPU-bound neighbour within seconds and forgets one that has ended. Where it is
unknown (no /proc/stat), the 1-minute load average per core decides instead: before the run, and
after it less the run's own threads. The load average lags a minute behind (a program that just
ended still counts, one that just started does not yet) and also counts threads waiting on a
disk, so where the measured share exists it is reported, not judged."""

import os
import time
from dataclasses import dataclass

from .config import LOAD_LIMIT, OTHERS_LIMIT

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (a VM's stolen time counts)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def _machine_busy_seconds() -> float | None:
    """Seconds all CPUs spent busy since boot (Linux), or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / ticks


def _own_seconds() -> float:
    t = os.times()  # every thread of this process (torch's included); it starts no children
    return t.user + t.system


@dataclass(frozen=True)
class Snapshot:
    wall: float
    machine_busy: float | None
    own: float


def snapshot() -> Snapshot:
    return Snapshot(time.perf_counter(), _machine_busy_seconds(), _own_seconds())


def others_share(start: Snapshot, end: Snapshot, n_cores: int) -> float | None:
    """Share of all cores' time that other programs used between two snapshots (0 to 1)."""
    wall = end.wall - start.wall
    if start.machine_busy is None or end.machine_busy is None or wall <= 0:
        return None
    others = (end.machine_busy - start.machine_busy) - (end.own - start.own)
    return min(1.0, max(0.0, others / (wall * n_cores)))


def own_cores(start: Snapshot, end: Snapshot) -> float:
    """How many cores this process kept busy between two snapshots, on average."""
    wall = end.wall - start.wall
    return (end.own - start.own) / wall if wall > 0 else 0.0


def busy_reasons(
    load_before: float | None, shares: dict, n_cores: int, load_after_others: float | None = None
) -> dict[str, list[str]]:
    """Why each test's figures may be noise: {test: [reason, ...]} (empty lists: quiet).
    shares: each test's others_share (None off Linux). load_before, and load_after_others (the
    load average after the run less this run's own cores), are judged only for tests whose
    share is unknown: the share is measured during the test itself."""
    reasons = {test: [] for test in shares}
    limit = LOAD_LIMIT * n_cores
    for test, share in shares.items():
        if share is not None and share > OTHERS_LIMIT:
            reasons[test].append(f"other programs used {100 * share:.0f}% of the CPU during the {test} test")
        if share is None and load_before is not None and load_before > limit:
            reasons[test].append(f"load average {load_before:.2f} on {n_cores} cores before the run")
    last = list(shares)[-1] if shares else None
    if last and shares[last] is None and load_after_others is not None and load_after_others > limit:
        reasons[last].append(f"load average {load_after_others:.2f} above this run's own threads after it")
    return reasons
