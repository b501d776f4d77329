"""`make grade-under-load`'s CPU quota: the gradings it runs get the share of a core it says."""

import os
import time
from pathlib import Path

import pytest

from autograder import under_load


def _cpu_cgroup_writable() -> bool:
    root = (
        Path("/sys/fs/cgroup")
        if Path("/sys/fs/cgroup/cgroup.controllers").exists()
        else Path("/sys/fs/cgroup/cpu")
    )
    return os.geteuid() == 0 and os.access(root, os.W_OK)


@pytest.mark.skipif(not _cpu_cgroup_writable(), reason="needs root and a writable cpu cgroup")
def test_cpu_quota_halves_the_cpu_a_busy_loop_gets():
    with under_load.cpu_quota(0.5):
        wall, cpu = time.monotonic(), time.process_time()
        while time.process_time() - cpu < 0.6:
            pass
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert share < 0.65, share  # a quota caps the share; load beside it can only lower it
    assert not any(p.name.startswith("infkit-under-load-") for p in Path("/sys/fs/cgroup/cpu").glob("*"))
