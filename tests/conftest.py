"""Shared fixtures for the kit's own tests: the solution and the starter, loaded in DEBUG."""

import pytest

from infkit import fixtures, loading, paths


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
