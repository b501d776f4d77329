"""`make grade-under-load`'s CPU quota: the gradings it runs get the share of a core it says."""

import os
import time
from pathlib import Path

import pytest

from staff import under_load


def _cpu_cgroup_root() -> Path:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    return Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/cpu")


def _cpu_cgroup_writable() -> bool:
    return os.geteuid() == 0 and os.access(_cpu_cgroup_root(), os.W_OK)


@pytest.mark.skipif(not _cpu_cgroup_writable(), reason="needs root and a writable cpu cgroup")
def test_cpu_quota_halves_the_cpu_a_busy_loop_gets():
    with under_load.cpu_quota(0.5):
        wall, cpu = time.monotonic(), time.process_time()
        while time.process_time() - cpu < 0.6:
            pass
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert share < 0.65, share  # a quota caps the share; load beside it can only lower it
    # its own group is gone (a `make grade-under-load` running beside the tests keeps its own)
    assert not (_cpu_cgroup_root() / f"infkit-under-load-{os.getpid()}").exists()
