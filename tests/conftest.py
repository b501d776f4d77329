"""Shared fixtures for the kit's own tests: the solution and the starter, loaded in DEBUG."""

import os

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
    """As root, the autograder runs student code as an unprivileged account or refuses to grade;
    give this pytest run a uid of its own and, where needed, a Python that uid can run, so the
    tests exercise the real privilege drop (with none, grading fails closed and tests say so)."""
    if os.geteuid() != 0:
        return
    # The grader kills every process of its worker account after each job, which must not hit
    # the workers of a test session running beside this one.
    os.environ.setdefault("AUTOGRADER_WORKER_USER", str(2_000_000_000 + os.getpid()))
    sandbox.provide_worker_python(sandbox.worker_user())


_worker_for_root()
