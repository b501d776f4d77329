"""How busy the grading machine is, measured where it matters: the CPU this process gets.

A busy loop of a fixed amount of work takes `contention` times longer in wall-clock time than
in CPU time when other processes compete for the cores (or a CPU quota throttles the container).
The harness scales its time limits by it, and calls a timeout on a busy machine "not measured"
rather than the student's fault.
"""

import time


def contention(seconds: float = 0.3) -> float:
    """Wall seconds per CPU second of this process over a busy loop of about `seconds`: 1.0
    on an idle core, 2.0 when it gets half a core."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    x = 0
    while time.process_time() - cpu0 < seconds:
        for i in range(10_000):
            x += i
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return max(1.0, wall / max(cpu, 1e-6))
