"""The optional piece (GPT._accept_sampled) left as its stub: a sampled request stops with a
NotImplementedError that names it, greedy requests are unaffected, and the check for it
changes no random state."""

import pytest
import torch

from infkit import fixtures, loading
from tests.submissions import variants

STUB = '        raise NotImplementedError("TODO(sampling, optional): not written")\n'


@pytest.fixture(scope="module")
def greedy_only(tmp_path_factory):
    """The solution with the optional piece back to a stub (every required piece written)."""
    path = tmp_path_factory.mktemp("greedy_only") / "model.py"
    path.write_text(variants.replace_region(variants.solution_text(), "sampling", STUB))
    return loading.load_model_module(path, debug=True)


def test_sampled_request_names_the_optional_piece(greedy_only):
    draft, target = fixtures.make_pair(greedy_only, "tiny", seed=0)
    prompt = fixtures.random_prompt(1, 8, target.config.vocab_size, seed=0)
    for kwargs in ({}, {"temperature": 0.7}, {"temperature": 1.0, "top_k": 5}):  # {}: the defaults
        with pytest.raises(NotImplementedError, match="optional piece GPT._accept_sampled"):
            target.generate_speculative(prompt, 10, draft, **kwargs)
    for kwargs in ({"top_k": 1}, {"temperature": 0}):
        assert torch.equal(
            target.generate_speculative(prompt, 10, draft, **kwargs), target.generate(prompt, 10, top_k=1)
        )


def test_the_written_piece_samples(sol):
    draft, target = fixtures.make_pair(sol, "tiny", seed=0)
    prompt = fixtures.random_prompt(1, 8, target.config.vocab_size, seed=0)
    assert sol.sampling_written(target)
    assert target.generate_speculative(prompt, 10, draft).shape == (1, 18)


def test_the_check_leaves_the_random_state_alone(sol, greedy_only):
    for module in (sol, greedy_only):
        torch.manual_seed(3)
        expected = torch.rand(4)
        torch.manual_seed(3)
        module.sampling_written(fixtures.make_model(module, "tiny", seed=0))
        assert torch.equal(torch.rand(4), expected)
    assert not greedy_only.sampling_written(fixtures.make_model(greedy_only, "tiny", seed=0))


def test_acceptance_plot_needs_no_spec_stats(sol, tmp_path):
    """The notebook's acceptance-vs-temperature plot: exact counts where spec_stats is kept, an
    estimate from the target's passes where it is not, never None for a working decoder."""
    path = tmp_path / "model.py"
    path.write_text(
        variants.substitute(
            variants.solution_text(),
            ("        self.spec_stats = stats\n        return seq\n", "        return seq\n"),
        )
    )
    without = loading.load_model_module(path, debug=True)
    from infkit import notebook

    exact = dict(notebook.acceptance_vs_temperature(sol, temperatures=(0.0, 1.0), new_tokens=24))
    estimated = dict(notebook.acceptance_vs_temperature(without, temperatures=(0.0, 1.0), new_tokens=24))
    assert all(rate is not None for rate in estimated.values()), estimated
    for t in exact:  # the estimate only undercounts a short last round
        assert exact[t] - 0.25 <= estimated[t] <= exact[t] + 1e-9, (t, exact, estimated)
