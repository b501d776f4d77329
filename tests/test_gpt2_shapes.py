"""GPT-2-sized random fixtures: the cache path agrees with the baseline at real widths.

Slow (hundreds of MB of weights each): run with `make test-slow`.
"""

import pytest
import torch

from infkit import fixtures


def test_small_shape_kv_matches_naive(sol):
    model = fixtures.make_model(sol, "small", seed=0)
    idx = fixtures.random_prompt(2, 17, model.config.vocab_size, seed=1)
    assert torch.equal(model.generate_kv(idx, 12, top_k=1), model.generate(idx, 12, top_k=1))


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["gpt2", "gpt2-medium", "gpt2-large"])
def test_gpt2_shapes(sol, shape):
    model = fixtures.make_model(sol, shape, seed=0)
    cfg = fixtures.SHAPES[shape]
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (
        cfg["n_layer"],
        cfg["n_head"],
        cfg["n_embd"],
    )
    idx = fixtures.random_prompt(1, 9, model.config.vocab_size, seed=2)
    naive = model.generate(idx, 6, top_k=1)
    assert torch.equal(model.generate_kv(idx, 6, top_k=1), naive)
    assert len(set(naive[0, 9:].tolist())) >= 3, f"degenerate output: {naive[0, 9:].tolist()}"
    del model
