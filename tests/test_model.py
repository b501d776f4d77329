"""The reference solution against its own naive baseline, in DEBUG mode on CPU."""

import copy

import pytest
import torch

from infkit import fixtures, loading, paths
from staff import verify_cost


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch,prompt_len,new", [(1, 1, 17), (1, 13, 31), (4, 7, 23), (4, 30, 9)])
def test_generate_kv_matches_generate(sol, seed, batch, prompt_len, new):
    model = fixtures.make_model(sol, "tiny", seed=seed)
    idx = fixtures.random_prompt(batch, prompt_len, model.config.vocab_size, seed=seed)
    expected = model.generate(idx, new, top_k=1)
    got = model.generate_kv(idx, new, top_k=1)
    assert torch.equal(got, expected)


def test_decode_logits_match_full_forward(tiny):
    idx = fixtures.random_prompt(2, 20, tiny.config.vocab_size, seed=7)
    tiny.prefill(idx[:, :12])
    for t in range(12, 20):
        step = tiny.decode(idx[:, t : t + 1])  # (B, 1, V)
        full, _ = tiny(idx[:, : t + 1])
        torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
    assert tiny.kv_pos == 20


def test_multi_token_decode_matches_full_forward(tiny):
    idx = fixtures.random_prompt(2, 24, tiny.config.vocab_size, seed=8)
    tiny.prefill(idx[:, :10])
    chunk = tiny.decode(idx[:, 10:15])  # 5 tokens at once: causal among themselves
    full, _ = tiny(idx[:, :15], all_logits=True)
    torch.testing.assert_close(chunk, full[:, 10:15], rtol=1e-5, atol=1e-5)


def test_rollback_then_decode(tiny):
    idx = fixtures.random_prompt(1, 20, tiny.config.vocab_size, seed=9)
    other = fixtures.random_prompt(1, 4, tiny.config.vocab_size, seed=10)
    tiny.prefill(idx[:, :12])
    tiny.decode(other)  # junk that will be rejected
    tiny.set_kv_pos(12)
    got = tiny.decode(idx[:, 12:16])
    full, _ = tiny(idx[:, :16], all_logits=True)
    torch.testing.assert_close(got, full[:, 12:16], rtol=1e-5, atol=1e-5)


def test_batch_rows_are_independent(tiny):
    idx = fixtures.random_prompt(3, 9, tiny.config.vocab_size, seed=11)
    batched = tiny.generate_kv(idx, 15, top_k=1)
    for b in range(3):
        assert torch.equal(batched[b : b + 1], tiny.generate_kv(idx[b : b + 1], 15, top_k=1))


def test_second_call_does_not_see_first(tiny):
    a = fixtures.random_prompt(1, 30, tiny.config.vocab_size, seed=12)
    b = fixtures.random_prompt(1, 5, tiny.config.vocab_size, seed=13)
    fresh = tiny.generate_kv(b, 10, top_k=1)
    tiny.generate_kv(a, 20, top_k=1)
    assert torch.equal(tiny.generate_kv(b, 10, top_k=1), fresh)


def test_cache_is_a_non_persistent_buffer(sol):
    tiny = fixtures.make_model(sol, "tiny")
    tiny.setup_kv_cache(2)
    attn = tiny.transformer.h[0].attn
    cfg = tiny.config
    assert "kv_cache" in dict(attn.named_buffers())
    assert attn.kv_cache.shape == (2, 2, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
    assert not any("kv_cache" in k for k in tiny.state_dict())


def _speculative_cases(sol):
    draft, target = fixtures.make_pair(sol, "tiny", seed=0)
    stranger = fixtures.make_model(sol, dict(fixtures.SHAPES["tiny"], n_layer=1), seed=99)
    twin = copy.deepcopy(target)
    return target, {"pair": draft, "never-agrees": stranger, "identical": twin, "itself": target}


@pytest.mark.parametrize("draft_name", ["pair", "never-agrees", "identical", "itself"])
@pytest.mark.parametrize("k", [1, 3, 4, 8])
def test_speculative_equals_target_greedy(sol, draft_name, k):
    target, drafts = _speculative_cases(sol)
    draft = drafts[draft_name]
    for seed, (plen, new) in enumerate([(1, 20), (9, 33), (16, 5)]):
        idx = fixtures.random_prompt(1, plen, target.config.vocab_size, seed=seed)
        expected = target.generate(idx, new, top_k=1)
        got = target.generate_speculative(idx, new, draft, top_k=1, num_speculative=k)
        assert torch.equal(got, expected), (draft_name, k, seed)


def test_speculative_acceptance_tracks_the_draft(sol):
    target, drafts = _speculative_cases(sol)
    idx = fixtures.random_prompt(1, 8, target.config.vocab_size, seed=1)
    rates = {}
    for name, draft in drafts.items():
        target.generate_speculative(idx, 40, draft, top_k=1, num_speculative=4)
        s = target.spec_stats
        rates[name] = s["accepted"] / s["drafted"]
    assert rates["identical"] == 1.0
    assert rates["never-agrees"] < 0.2
    assert rates["never-agrees"] < rates["pair"] < 1.0


def test_speculative_rejects_batches(sol, tiny_pair):
    draft, target = tiny_pair
    with pytest.raises(ValueError, match="batch size 1"):
        target.generate_speculative(torch.zeros(2, 3, dtype=torch.long), 4, draft, top_k=1)


def test_zero_new_tokens(tiny, tiny_pair):
    idx = fixtures.random_prompt(2, 5, tiny.config.vocab_size)
    assert torch.equal(tiny.generate(idx, 0), idx)
    assert torch.equal(tiny.generate_kv(idx, 0), idx)
    draft, target = tiny_pair
    assert torch.equal(target.generate_speculative(idx[:1], 0, draft), idx[:1])


def test_exactly_block_size(tiny, tiny_pair):
    size = tiny.config.block_size
    idx = fixtures.random_prompt(1, size - 10, tiny.config.vocab_size, seed=3)
    expected = tiny.generate(idx, 10, top_k=1)
    assert expected.shape == (1, size)
    assert torch.equal(tiny.generate_kv(idx, 10, top_k=1), expected)
    draft, target = tiny_pair
    want = target.generate(idx, 10, top_k=1)
    assert torch.equal(target.generate_speculative(idx, 10, draft, top_k=1, num_speculative=6), want)


@pytest.mark.parametrize("method", ["generate", "generate_kv", "generate_speculative"])
def test_past_block_size_is_a_clear_error(tiny_pair, method):
    draft, target = tiny_pair
    idx = fixtures.random_prompt(1, target.config.block_size - 3, target.config.vocab_size)
    args = (idx, 4, draft) if method == "generate_speculative" else (idx, 4)
    with pytest.raises(ValueError, match="block_size 128"):
        getattr(target, method)(*args, top_k=1)


def test_decode_past_capacity_is_a_clear_error(tiny):
    idx = fixtures.random_prompt(1, tiny.config.block_size, tiny.config.vocab_size)
    tiny.prefill(idx)
    with pytest.raises(ValueError, match="block_size"):
        tiny.decode(idx[:, :1])


def test_sampling_is_seeded(tiny):
    idx = fixtures.random_prompt(2, 5, tiny.config.vocab_size)
    torch.manual_seed(0)
    a = tiny.generate_kv(idx, 12, temperature=0.8, top_k=50)
    torch.manual_seed(0)
    b = tiny.generate(idx, 12, temperature=0.8, top_k=50)
    assert torch.equal(a, b)


def test_linear_fast_path_matches_nn_linear():
    """Outside DEBUG the model's Linear computes 2-16 rows on CPU as W @ x^T (the verify
    step's fix, docs/performance.md): the values of nn.Linear up to rounding, any shape."""
    fast = loading.load_model_module(paths.SOLUTION_MODEL)  # the file's own DEBUG = False
    assert not fast.DEBUG
    torch.manual_seed(0)
    for bias in (True, False):
        layer = fast.Linear(48, 80, bias=bias)
        plain = torch.nn.Linear(48, 80, bias=bias)
        plain.load_state_dict(layer.state_dict())
        for shape in [(1, 1, 48), (1, 5, 48), (3, 1, 48), (2, 8, 48), (1, 17, 48), (5, 48), (48,)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)
            # row-major out: a transposed layout would put the next layer on MKL's slow path
            assert layer(x).is_contiguous()
        x = torch.randn(48, 5).T  # an input stored transposed
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)


def test_multi_token_decode_on_the_fast_path():
    """A verify-sized decode outside DEBUG (fast Linear, SDPA) agrees with the full forward."""
    fast = loading.load_model_module(paths.SOLUTION_MODEL)
    model = fixtures.make_model(fast, "tiny", seed=0)
    idx = fixtures.random_prompt(1, 24, model.config.vocab_size, seed=8)
    with torch.no_grad():
        model.prefill(idx[:, :10])
        chunk = model.decode(idx[:, 10:15])
        full, _ = model(idx[:, :15], all_logits=True)
    torch.testing.assert_close(chunk, full[:, 10:15], rtol=1e-4, atol=1e-4)


def test_verify_cost_tool_runs():
    results = verify_cost.main(["--pair", "tiny", "--prompt-len", "8", "--repeats", "1"])
    assert set(results) == {"model's Linear", "plain nn.Linear"}
    assert all(ms > 0 for r in results.values() for ms in r.values())
