"""The external oracle: transformers' GPT-2 on the same weights must agree with ours."""

import pytest
import torch

from infkit import fixtures, hf


@pytest.mark.parametrize("seed", [0, 1])
def test_logits_match_transformers(sol, seed):
    model = fixtures.make_model(sol, "tiny", seed=seed)
    oracle = hf.to_hf(model)
    idx = fixtures.random_prompt(2, 33, model.config.vocab_size, seed=seed)
    ours, _ = model(idx, all_logits=True)
    theirs = oracle(idx).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_tokens_match_transformers_generate(sol, seed):
    model = fixtures.make_model(sol, "tiny", seed=seed)
    oracle = hf.to_hf(model)
    idx = fixtures.random_prompt(1, 12, model.config.vocab_size, seed=seed)
    theirs = hf.hf_generate(oracle, idx, 40)
    assert torch.equal(model.generate_kv(idx, 40, top_k=1), theirs)
    assert torch.equal(model.generate(idx, 40, top_k=1), theirs)


def test_from_hf_round_trip(sol):
    hf_model = hf.random_hf_gpt2(n_layer=2, n_head=4, n_embd=32, vocab_size=300, n_positions=48)
    model = sol.GPT.from_hf(hf_model).eval()
    assert model.config.n_layer == 2 and model.config.vocab_size == 300
    idx = fixtures.random_prompt(2, 20, 300, seed=4)
    ours, _ = model(idx, all_logits=True)
    torch.testing.assert_close(ours, hf_model(idx).logits, rtol=1e-5, atol=1e-5)
    # and back: the transformers twin of the converted model holds the same weights
    again = hf.to_hf(model)
    for name, value in hf_model.state_dict().items():
        if name in again.state_dict():
            assert torch.equal(again.state_dict()[name], value), name


def test_from_pretrained_goes_through_transformers(sol, monkeypatch):
    """from_pretrained's download is replaced by an in-memory model; the conversion is real."""
    import transformers

    made = hf.random_hf_gpt2(n_layer=1, n_head=2, n_embd=16, vocab_size=100, n_positions=32)
    calls = []

    def fake_from_pretrained(name, *args, **kwargs):
        calls.append(name)
        return made

    monkeypatch.setattr(transformers.GPT2LMHeadModel, "from_pretrained", fake_from_pretrained)
    model = sol.GPT.from_pretrained("gpt2")
    assert calls == ["gpt2"]
    idx = fixtures.random_prompt(1, 10, 100)
    torch.testing.assert_close(model(idx, all_logits=True)[0], made(idx).logits, rtol=1e-5, atol=1e-5)
