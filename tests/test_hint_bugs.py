"""Each hint that names a bug is tested with that bug and with its nearest neighbour: the hint
must name the bug that is there, and must not name it for the neighbour."""

import pytest

from infkit import checks, loading
from tests.submissions import variants

ARANGE = "pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)"


def _load(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(text)
    return loading.load_model_module(path, debug=True)


def _gpt_decode_failure(tmp_path, new_line) -> str:
    module = _load(tmp_path, variants.substitute(variants.solution_text(), (ARANGE, new_line)))
    with pytest.raises(checks.CheckFailed) as info:
        checks.CHECKS["gpt_decode"](module)
    return str(info.value)


@pytest.mark.parametrize(
    "new_line, position, at_step",
    [
        # one too far: token 0 already differs, at position 1
        (ARANGE.replace("arange(start, start + t", "arange(start + 1, start + t + 1"), "kv_pos + 1 (= 1)", 0),
        # an arange from 0 on every call: token 0 is right, token 1 sits at 0
        (ARANGE.replace("arange(start, start + t", "arange(0, t"), "0", 1),
        # one step behind (clamped at 0): token 1 sits at 0 as well, so it gets that hint
        (
            ARANGE.replace("arange(start, start + t", "arange(max(start - 1, 0), max(start - 1, 0) + t"),
            "0",
            1,
        ),
    ],
)
def test_position_hint_names_the_misplacement_that_is_there(tmp_path, new_line, position, at_step):
    message = _gpt_decode_failure(tmp_path, new_line)
    assert f"token at position {at_step} differs" in message, message
    assert f"with this token at position {position};" in message, message
    assert f"sits at position kv_pos (= {at_step})" in message
    # the other suspect is not named
    other = "at position 0;" if position.startswith("kv_pos") else "at position kv_pos + 1"
    assert other not in message, message


def test_position_hint_names_no_position_for_another_bug(tmp_path):
    """Positions right, the token embedding wrong: no position is blamed."""
    wrong_token = (
        "x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))",
        "x = self.transformer.drop(self.transformer.wte(idx.flip(0)) + self.transformer.wpe(pos))",
    )
    module = _load(tmp_path, variants.substitute(variants.solution_text(), wrong_token))
    with pytest.raises(checks.CheckFailed) as info:
        checks.CHECKS["gpt_decode"](module)
    message = str(info.value)
    assert "match no misplaced position" in message and "kv_pos + 1" not in message, message


def test_the_kits_off_by_one_variant_gets_the_off_by_one_hint(tmp_path):
    module = _load(tmp_path, variants.buggy("decode_position_off_by_one"))
    with pytest.raises(checks.CheckFailed, match=r"at position kv_pos \+ 1"):
        checks.CHECKS["gpt_decode"](module)


FAST_ATTEND = "y = attend(q, keys.to(q.dtype), values.to(q.dtype), q_start=start)"


def _fast_path_failure(tmp_path, fast_call) -> str:
    """The solution with `fast_call` as its attention outside DEBUG (DEBUG stays right)."""
    new = f"y = (attend(q, keys, values, q_start=start) if DEBUG else {fast_call})"
    module = _load(tmp_path, variants.substitute(variants.solution_text(), (FAST_ATTEND, new)))
    with pytest.raises(checks.FastPathFailed) as info:
        checks.CHECKS["attn_decode"](module)
    return str(info.value)


def test_mask_hint_names_the_top_left_causal_mask(tmp_path):
    message = _fast_path_failure(tmp_path, "F.scaled_dot_product_attention(q, keys, values, is_causal=True)")
    assert "aligned to the top-left" in message and "is_causal=True" in message, message
    assert "no mask at all" not in message


def test_mask_hint_names_a_missing_mask(tmp_path):
    """The neighbour: no mask at all is right for one new token, wrong for several."""
    message = _fast_path_failure(tmp_path, "F.scaled_dot_product_attention(q, keys, values)")
    assert "no mask at all" in message and "top-left" not in message, message
    assert "positions 0..5" in message  # the first chunk of 6 new tokens, not a single one


def test_mask_hint_names_no_mask_for_another_fast_path_bug(tmp_path):
    message = _fast_path_failure(
        tmp_path, "F.scaled_dot_product_attention(q, keys, values, attn_mask=None, scale=1.0)"
    )
    assert "matches no misplaced mask" in message and "top-left" not in message, message


def test_dtype_hint_blames_the_cache_only_when_it_is_the_cache(tmp_path):
    """The cache-dtype hint's neighbour: the cache is right, another tensor of the attention is
    in another dtype. The hint names the two dtypes, not the cache."""
    from infkit import notebook as nb

    cast = "y = attend(q, keys.to(q.dtype), values.to(q.dtype), q_start=start)"
    path = tmp_path / "model.py"
    path.write_text(
        variants.substitute(variants.solution_text(), (cast, cast.replace("attend(q,", "attend(q.double(),")))
    )
    with pytest.raises(nb.Stop) as info:
        nb.check("attn_decode", path=path)
    message = str(info.value)
    assert "two dtypes" in message and "float64" in message and "float32" in message, message
    assert "the KV cache is" not in message, message
