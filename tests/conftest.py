"""Shared fixtures for the kit's own tests: the solution and the starter, loaded in DEBUG."""

import pytest
import torch

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
