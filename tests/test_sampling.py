"""Speculative sampling (temperature > 0) keeps the target's distribution exactly.

The chi-square test in infkit.sampling_check compares seeded speculative runs with the
target's exact distribution over the next two tokens of a 5-token-vocabulary micro model.
The same test must reject two plausible wrong acceptance rules, or it proves nothing.
"""

import pytest
import torch

from infkit import fixtures
from infkit import sampling_check as sc

SEED = 1  # micro pair whose draft is far from the target (total variation ~0.4-0.8)
RUNS = 2000


def _accept_when_p_ge_q(drafted, draft_probs, p):
    """Wrong: deterministic acceptance when p(x) >= q(x), instead of with probability p/q."""
    k = drafted.numel()
    for i in range(k):
        x, q = drafted[i], draft_probs[i][0]
        if p[i, x] < q[x]:
            residual = (p[i] - q).clamp_min(0)
            return torch.cat((drafted[:i], torch.multinomial(residual / residual.sum(), 1))), i
    return torch.cat((drafted, torch.multinomial(p[k], 1))), k


def _resample_from_p(drafted, draft_probs, p):
    """Wrong: after a rejection, draws from p instead of the residual max(0, p - q)."""
    k = drafted.numel()
    for i in range(k):
        x, q = drafted[i], draft_probs[i][0]
        if torch.rand(()) >= p[i, x] / q[x]:
            return torch.cat((drafted[:i], torch.multinomial(p[i], 1))), i
    return torch.cat((drafted, torch.multinomial(p[k], 1))), k


def _run(module, temperature, top_k):
    draft, target = sc.micro_pair(module, seed=SEED)
    prompt = fixtures.random_prompt(1, 4, sc.MICRO_SHAPE["vocab_size"], seed=SEED)
    dist = sc.exact_distribution(module, target, prompt, 2, temperature, top_k)
    counts = sc.sample_speculative(
        target, draft, prompt, 2, RUNS, seed=0, num_speculative=2, temperature=temperature, top_k=top_k
    )
    return sc.distribution_test(counts, dist)


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.8, 3)])
def test_speculative_sampling_matches_target(sol, temperature, top_k):
    result = _run(sol, temperature, top_k)
    assert result["passed"], result


@pytest.mark.parametrize("wrong_rule", [_accept_when_p_ge_q, _resample_from_p])
def test_wrong_rules_are_rejected(sol, monkeypatch, wrong_rule):
    monkeypatch.setattr(sol.GPT, "_accept_sampled", staticmethod(wrong_rule))
    result = _run(sol, 0.8, 3)
    assert not result["passed"], f"{wrong_rule.__name__} slipped through: {result}"


def test_critical_value_approximation():
    # tabulated chi-square upper quantiles: df=10, alpha=0.01 -> 23.209; df=24, alpha=1e-3 -> 51.179
    assert abs(sc.chi_square_critical(10, 0.01) - 23.209) < 0.1
    assert abs(sc.chi_square_critical(24, 1e-3) - 51.179) < 0.2
