"""The per-piece checks: the solution passes them all, the starter fails each one politely."""

import pytest

from autograder import rubric
from infkit import checks, loading
from tests.submissions import variants


@pytest.mark.parametrize("piece", checks.PIECES)
def test_solution_passes(sol, piece):
    checks.CHECKS[piece](sol)
    checks.CHECKS[piece](sol, shape=rubric.HIDDEN_SHAPE, seed=3)


@pytest.mark.parametrize("piece", checks.PIECES)
def test_starter_fails_with_not_implemented(starter, piece):
    with pytest.raises(checks.CheckFailed, match="not implemented yet"):
        checks.CHECKS[piece](starter)


def _load_text(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(text)
    return loading.load_model_module(path, debug=True)


def test_speculative_without_bonus_token_passes(tmp_path):
    """The handout's algorithm without the optional bonus token verifies in one pass per round."""
    module = _load_text(tmp_path, variants.speculative_without_bonus())
    assert "the target's greedy tokens" in checks.CHECKS["speculative"](module)


def test_verify_pass_budget_tells_rounds_from_tokens():
    for new, k in ((24, 4), (31, 3), (14, 4), (7, 10)):
        per_round_without_bonus = -(-new // min(k, new)) + 1  # rounds plus the prefill
        assert per_round_without_bonus <= checks.max_verify_passes(new, k) < new


def test_fast_path_bug_fails_attn_decode_only_there(tmp_path):
    """A decode that is right in DEBUG but masks wrongly with SDPA outside it: the fast-path check
    catches it and names the mask."""
    module = _load_text(tmp_path, variants.buggy("decode_fast_path_causal_mask"))
    with pytest.raises(checks.FastPathFailed, match="correct in DEBUG, wrong outside it.*mask"):
        checks.CHECKS["attn_decode"](module)
    for piece in ("buffers", "prefill", "gpt_decode"):
        checks.CHECKS[piece](module)


@pytest.mark.parametrize(
    "old, new, piece_message",
    [
        (
            "torch.zeros(shape, device=w.device, dtype=w.dtype)",
            "torch.empty(shape, device=w.device, dtype=w.dtype)",
            None,
        ),
        (
            "torch.zeros(shape, device=w.device, dtype=w.dtype)",
            "torch.zeros(shape, device=w.device, dtype=torch.bfloat16)",
            "dtype",
        ),
        (
            "shape = (2, batch_size, self.n_head, max_seq_len, head_dim)",
            "shape = (2, batch_size + 1, self.n_head, max_seq_len + 8, head_dim)",
            None,
        ),
    ],
)
def test_cache_allocation_details(tmp_path, old, new, piece_message):
    """Only what changes behaviour costs the buffers points (torch.empty and spare room do not),
    and a cache in the wrong dtype costs only them: later pieces run on the grader's cache."""
    module = _load_text(tmp_path, variants.substitute(variants.solution_text(), (old, new)))
    if piece_message is None:
        checks.CHECKS["buffers"](module)
    else:
        with pytest.raises(checks.CheckFailed, match=piece_message):
            checks.CHECKS["buffers"](module)
    for piece in ("prefill", "attn_decode", "gpt_decode", "generate_kv", "speculative"):
        checks.CHECKS[piece](module)


def failing_behaviours(module, piece, **kwargs) -> set:
    rec, errors = checks.probe(piece, module, **kwargs)
    return {b for b, o in checks.judge(piece, module, rec, errors, **kwargs).items() if not o.passed}


def test_every_behaviour_is_judged_for_the_solution(sol):
    for piece in checks.PIECES:
        assert failing_behaviours(sol, piece) == set(), piece


@pytest.mark.parametrize("dtype", ["torch.float32", "torch.bfloat16"])
def test_a_hard_coded_cache_dtype_fails_the_dtype_behaviour_only(tmp_path, dtype):
    """The dtype row allocates in a float64 model too, so a cache hard-coded to float32 (right for
    every float32 fixture) fails it, and only it."""
    text = variants.substitute(
        variants.solution_text(),
        (
            "torch.zeros(shape, device=w.device, dtype=w.dtype)",
            f"torch.zeros(shape, device=w.device, dtype={dtype})",
        ),
    )
    assert failing_behaviours(_load_text(tmp_path, text), "buffers") == {"dtype"}


def test_an_error_in_one_behaviour_leaves_the_others_judged(tmp_path):
    """generate_kv raising for max_new_tokens == 0 fails the edge lengths, and nothing else."""
    text = variants.substitute(
        variants.solution_text(),
        (
            "    def generate_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):\n",
            "    def generate_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):\n"
            "        if max_new_tokens == 0:\n"
            "            raise ValueError('nothing to generate')\n",
        ),
    )
    module = _load_text(tmp_path, text)
    assert failing_behaviours(module, "generate_kv") == {"edge_lengths"}
    rec, errors = checks.probe("generate_kv", module)
    outcome = checks.judge("generate_kv", module, rec, errors)["edge_lengths"]
    assert outcome.stage == "raised" and "nothing to generate" in outcome.message


def test_the_checks_command_names_every_piece_and_checks_the_optional_one():
    """`python -m infkit.checks --help` lists the pieces, the optional one included, and naming
    the optional piece runs its check (a stub: "not implemented yet", exit status 1)."""
    import subprocess
    import sys

    from infkit import paths, pieces

    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "infkit.checks", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=paths.ROOT,
    )
    helped = run("--help")
    assert helped.returncode == 0 and all(p in helped.stdout for p in (*checks.PIECES, *pieces.OPTIONAL))
    (optional,) = pieces.OPTIONAL
    stub = run(str(paths.STARTER_MODEL), optional)
    assert (
        stub.returncode == 1 and f"FAIL  {optional}" in stub.stdout and "not implemented yet" in stub.stdout
    )
    assert "Traceback" not in stub.stdout + stub.stderr
    unknown = run(str(paths.STARTER_MODEL), "nonsense")
    assert unknown.returncode == 2 and "unknown piece nonsense" in unknown.stderr
