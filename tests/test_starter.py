"""The student starter: generated from the solution, importable, stubs raise, baseline works."""

import pytest
import torch

from infkit import fixtures, paths
from staff import starter as starter_gen


def test_committed_starter_is_current():
    expected, pieces = starter_gen.strip_solution(paths.SOLUTION_MODEL.read_text())
    assert paths.STARTER_MODEL.read_text() == expected, "run `make starter` and commit"
    assert tuple(dict.fromkeys(pieces)) == starter_gen.PIECES


def test_no_solution_code_in_starter():
    text = paths.STARTER_MODEL.read_text()
    for leak in ("kv_cache[0, :B", "cumprod", "clamp_min", "self.seq_pos = end", "BEGIN SOLUTION"):
        assert leak not in text, leak


def test_baseline_works_in_starter(starter):
    model = fixtures.make_model(starter, "tiny", seed=0)
    idx = fixtures.random_prompt(2, 5, model.config.vocab_size)
    assert model.generate(idx, 6, top_k=1).shape == (2, 11)


def test_stubs_raise_not_implemented(starter):
    draft, target = fixtures.make_pair(starter, "tiny", seed=0)
    idx = fixtures.random_prompt(1, 5, target.config.vocab_size)
    with pytest.raises(NotImplementedError, match="TODO\\(buffers\\)"):
        target.setup_kv_cache(1)
    with pytest.raises(NotImplementedError, match="TODO\\(generate_kv\\)"):
        target.generate_kv(idx, 3, top_k=1)
    with pytest.raises(NotImplementedError, match="TODO\\(speculative\\)"):
        target.generate_speculative(idx, 3, draft, top_k=1)
    attn = target.transformer.h[0].attn
    attn.kv_cache = torch.zeros(2, 1, 4, 128, 16)  # stand-in so the later stubs are reached
    attn.enable_kv = True
    with pytest.raises(NotImplementedError, match="TODO\\(prefill\\)"):
        attn(torch.zeros(1, 3, 64))
    with pytest.raises(NotImplementedError, match="TODO\\(attn_decode\\)"):
        attn.decode(torch.zeros(1, 1, 64))
    with pytest.raises(NotImplementedError, match="TODO\\(gpt_decode\\)"):
        target.decode(idx[:, :1])
