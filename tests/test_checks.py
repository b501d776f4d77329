"""The per-piece checks: the solution passes them all, the starter fails each one politely."""

import pytest

from infkit import checks


@pytest.mark.parametrize("piece", checks.PIECES)
def test_solution_passes(sol, piece):
    checks.CHECKS[piece](sol)
    checks.CHECKS[piece](sol, shape=checks.HIDDEN_SHAPE, seed=3)


@pytest.mark.parametrize("piece", checks.PIECES)
def test_starter_fails_with_not_implemented(starter, piece):
    with pytest.raises(checks.CheckFailed, match="not implemented yet"):
        checks.CHECKS[piece](starter)
