"""Shared fixtures for the kit's own tests: the solution and the starter, loaded in DEBUG."""

import atexit
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest
import torch

from autograder import sandbox
from infkit import fixtures, loading, paths

# The fixtures are tiny: one thread avoids thread-pool overhead and oversubscription on
# shared CI cores (a 16-wide matmul is 30x slower with two contended threads).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sol():
    """solution/model.py in DEBUG mode (fp32, deterministic, explicit attention)."""
    return loading.load_model_module(paths.SOLUTION_MODEL, debug=True)


@pytest.fixture(scope="session")
def starter():
    return loading.load_model_module(paths.STARTER_MODEL, debug=True)


@pytest.fixture(scope="session")
def tiny(sol):
    return fixtures.make_model(sol, "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_pair(sol):
    return fixtures.make_pair(sol, "tiny", seed=0)


def _worker_for_root():
    """As root, the autograder runs student code as an unprivileged account or refuses to grade.
    Where that account cannot run this interpreter (pyenv in root's home, say), point the
    workers at a venv of the system's Python of the same version that sees our packages, so the
    tests exercise the real privilege drop; with none, grading fails closed and tests say so."""
    if os.geteuid() != 0:
        return
    # A uid of its own for this session: the grader kills every process of its worker account
    # after each job, which must not hit the workers of a test session running beside this one.
    os.environ.setdefault("AUTOGRADER_WORKER_USER", str(2_000_000_000 + os.getpid()))
    user = sandbox.worker_user()
    if os.environ.get("AUTOGRADER_WORKER_PYTHON") or sandbox.can_run_as(user):
        return
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if base is None:
        return
    venv = tempfile.mkdtemp(prefix="worker-python-")
    os.chmod(venv, 0o755)
    atexit.register(shutil.rmtree, venv, ignore_errors=True)
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True)
    site = subprocess.run(
        [f"{venv}/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(f"{site}/infkit-shared.pth", "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    os.environ["AUTOGRADER_WORKER_PYTHON"] = f"{venv}/bin/python"


_worker_for_root()
