"""The student corpus (tests/submissions/student_corpus.py): each realistic submission builds, its
mistake shows the behaviour it is named after, and the grader's verdicts match EXPECTED,
piece by piece, in process (fast) and through the real harness (slow)."""

import copy
import math

import pytest
import torch

from autograder import harness, rubric
from infkit import checks, fixtures, loading
from tests.submissions import student_corpus as corpus

NAMES = sorted(corpus.CORPUS)


@pytest.fixture(scope="session")
def load(tmp_path_factory):
    """name -> the entry's model.py, imported in DEBUG (once per session)."""
    folder, loaded = tmp_path_factory.mktemp("corpus"), {}

    def get(name):
        if name not in loaded:
            path = folder / f"{name}.py"
            path.write_text(corpus.build(name))
            loaded[name] = loading.load_model_module(path, debug=True)
        return loaded[name]

    return get


def test_table_covers_every_rubric_row():
    assert set(corpus.ROWS) == {t.piece for t in rubric.TESTS}
    behaviours = {(t.piece, t.behaviour) for t in rubric.TESTS if t.behaviour}
    for name in NAMES:
        for failing in corpus.EXPECTED[name]:
            assert failing in corpus.ROWS or failing in behaviours, (name, failing)
        points = corpus.expected_points(name)
        assert set(points) == {t.name for t in rubric.TESTS}


# What a careful TA takes from each single-defect entry (of 50): the rows of the behaviour the
# defect breaks, public and hidden, plus the speed row where the defect makes it slow or wrong.
POINTS_LOST = {
    "cache_torch_empty": 0,
    "cache_bfloat16": 1,  # buffers dtype
    "cache_hardcoded_float32": 1,  # buffers dtype
    "decode_one_token_only": 6,  # attn_decode chunk (2) + the speculative speed row (4)
    "speculative_no_bonus": 0,
    "speculative_draft_generate_kv": 0,
    "speculative_cacheless": 0,
    "decode_is_causal_sdpa": 1.5,  # attn_decode fast_path
    "hardcoded_cuda": 4,  # buffers: init_kv_cache raises on the CPU, nothing of it can be seen
    "draft_past_block_size": 2.5,  # speculative block_size
    "generate_kv_one_short": 1,  # generate_kv edge_lengths
}


@pytest.mark.parametrize("name", NAMES)
def test_points_lost_are_the_broken_behaviours_rows(name):
    assert set(POINTS_LOST) == set(NAMES)
    assert 50 - sum(corpus.expected_points(name).values()) == POINTS_LOST[name]


@pytest.mark.parametrize("name", NAMES)
def test_entry_builds_and_imports(name, load):
    text = corpus.build(name)
    compile(text, f"{name}.py", "exec")
    for piece, body in corpus.CORPUS[name].regions.items():
        assert body in text, piece
        assert body not in corpus.variants.solution_text(), piece  # written, not copied
    module = load(name)
    assert module.GPT and module.DEBUG is True


CASES = [pytest.param(name, piece, id=f"{name}-{piece}") for name in NAMES for piece in corpus.CORRECTNESS]


@pytest.mark.parametrize("name,piece", CASES)
def test_in_process_check_agrees(name, piece, load):
    """infkit.checks on the public shape fails exactly the behaviours EXPECTED names (a fast-path
    failure that the harness excuses because attn_decode has it too counts as passed)."""
    module = load(name)
    rec, errors = checks.probe(piece, module)
    outcomes = checks.judge(piece, module, rec, errors)
    tests = {t.behaviour: t for t in rubric.TESTS if t.piece == piece and t.visibility == rubric.VISIBLE}
    for behaviour, outcome in outcomes.items():
        expected_fail = corpus.fails(name, tests[behaviour])
        if outcome.fast_path and not expected_fail and rubric.FAST_PATH_EXPLAINED_BY.get(piece):
            attn = next(t for t in rubric.TESTS if t.piece == "attn_decode" and t.behaviour == "fast_path")
            if corpus.fails(name, attn):
                continue
        assert outcome.passed != expected_fail, (behaviour, outcome.message)


# ---------------------------------------------------------------------------------------
# Each mistake behaves as its name says (what a TA would see running the code)


def _prompt(module_model, batch, length, seed=3):
    return fixtures.random_prompt(batch, length, module_model.config.vocab_size, seed=seed)


def _install_cache(model, batch):
    """A cache of the documented layout (the weights' dtype and device), as a grader would."""
    for block in model.transformer.h:
        attn, w = block.attn, block.attn.c_attn.weight
        shape = (2, batch, attn.n_head, model.config.block_size, attn.n_embd // attn.n_head)
        attn.register_buffer("kv_cache", torch.zeros(shape, dtype=w.dtype, device=w.device), persistent=False)
        attn.seq_pos = 0


def test_torch_empty_cache_contents_never_matter(load):
    model = fixtures.make_model(load("cache_torch_empty"))
    idx = _prompt(model, 2, 7)
    model.setup_kv_cache(2)
    for block in model.transformer.h:
        block.attn.kv_cache.fill_(float("nan"))  # garbage in every unused slot
    assert torch.equal(model.generate_kv(idx, 20, top_k=1), model.generate(idx, 20, top_k=1))


def test_bfloat16_cache_breaks_only_its_own_piece(load):
    model = fixtures.make_model(load("cache_bfloat16"))
    idx = _prompt(model, 2, 7)
    with pytest.raises(RuntimeError, match="dtype|type"):
        model.generate_kv(idx, 5, top_k=1)
    _install_cache(model, 2)  # with a float32 cache the rest of the KV code is right
    assert torch.equal(model.generate_kv(idx, 20, top_k=1), model.generate(idx, 20, top_k=1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the mistake shows on a machine without CUDA")
def test_hardcoded_cuda_breaks_only_its_own_piece(load):
    model = fixtures.make_model(load("hardcoded_cuda"))
    idx = _prompt(model, 1, 9)
    with pytest.raises((AssertionError, RuntimeError)):
        model.setup_kv_cache(1)
    _install_cache(model, 1)
    assert torch.equal(model.generate_kv(idx, 20, top_k=1), model.generate(idx, 20, top_k=1))


def test_one_token_decode_is_right_for_one_token_only(load):
    module = load("decode_one_token_only")
    model = fixtures.make_model(module)
    idx = _prompt(model, 2, 7)
    assert torch.equal(model.generate_kv(idx, 20, top_k=1), model.generate(idx, 20, top_k=1))
    attn = model.transformer.h[0].attn
    x = torch.randn(2, 6, model.config.n_embd, generator=torch.Generator().manual_seed(0))
    model.setup_kv_cache(2)
    chunk = attn.decode(x)  # six new tokens at once from an empty cache: no mask among them
    expected = attn(x)
    assert torch.allclose(chunk[:, -1], expected[:, -1], atol=1e-5)  # the last one sees everything
    assert not torch.allclose(chunk[:, 0], expected[:, 0], atol=1e-2)  # the first sees the future
    draft, target = fixtures.make_pair(module, "tiny")
    prompts = [_prompt(target, 1, 9, seed=s) for s in range(3)]
    differs = [
        not torch.equal(
            target.generate_speculative(p, 24, draft, top_k=1, num_speculative=4),
            target.generate(p, 24, top_k=1),
        )
        for p in prompts
    ]
    assert any(differs)


def test_is_causal_sdpa_is_right_in_debug_only(load):
    module = load("decode_is_causal_sdpa")
    model = fixtures.make_model(module)
    idx = _prompt(model, 2, 9)
    assert torch.equal(model.generate_kv(idx, 16, top_k=1), model.generate(idx, 16, top_k=1))
    try:
        module.set_debug(False)  # the fast path students benchmark
        fast_kv, fast_naive = model.generate_kv(idx, 16, top_k=1), model.generate(idx, 16, top_k=1)
    finally:
        module.set_debug(True)
    assert not torch.equal(fast_kv, fast_naive)


def _target_passes(target, draft, prompt, new, k):
    counter = checks._TokenCounter(target)
    try:
        out = target.generate_speculative(prompt, new, draft, top_k=1, num_speculative=k)
    finally:
        counter.remove()
    assert torch.equal(out, target.generate(prompt, new, top_k=1))
    return counter.calls


def test_no_bonus_verifies_each_round_in_one_pass(load, sol):
    new, k = 31, 3
    _, target = fixtures.make_pair(load("speculative_no_bonus"), "tiny")
    prompt = _prompt(target, 1, 9)
    calls = _target_passes(target, copy.deepcopy(target), prompt, new, k)
    rounds = math.ceil(new / k)  # an identical draft: k tokens a round, no bonus
    assert len(calls) == 1 + rounds and calls[0] == prompt.size(1)
    assert calls[1:] == [k] * (rounds - 1) + [new - k * (rounds - 1)]  # the last round drafts what is left
    _, sol_target = fixtures.make_pair(sol, "tiny")
    with_bonus = _target_passes(sol_target, copy.deepcopy(sol_target), prompt, new, k)
    assert len(with_bonus) < len(calls) < new / 2  # more than with the bonus, far fewer than naive


def test_draft_generate_kv_reprefills_the_draft(load):
    new, k = 24, 4
    draft, target = fixtures.make_pair(load("speculative_draft_generate_kv"), "tiny")
    prompt = _prompt(target, 1, 9)
    counter = checks._TokenCounter(draft)
    try:
        target_calls = _target_passes(target, draft, prompt, new, k)
    finally:
        counter.remove()
    prefills = [n for n in counter.calls if n > 1]
    rounds = len(target_calls) - 1
    assert rounds - 1 <= len(prefills) <= rounds  # one per round (the last may need no draft)
    assert prefills == sorted(prefills) and prefills[0] == prompt.size(1)


def test_cacheless_never_allocates_a_cache(load):
    draft, target = fixtures.make_pair(load("speculative_cacheless"), "tiny")
    prompt = _prompt(target, 1, 9)
    calls = _target_passes(target, draft, prompt, 24, 4)
    assert all(n >= prompt.size(1) for n in calls) and calls == sorted(calls)  # whole sequences
    assert all(m.transformer.h[0].attn.kv_cache is None for m in (draft, target))


def test_unclipped_draft_fails_only_at_the_end_of_the_context(load, sol):
    _, target = fixtures.make_pair(load("draft_past_block_size"), "tiny")
    block = target.config.block_size
    prompt = _prompt(target, 1, block - 28)
    identical = copy.deepcopy(target)  # always agrees: k + 1 tokens a round, deterministic
    _target_passes(target, identical, prompt, 20, 4)  # with room left: right
    with pytest.raises((ValueError, IndexError)):
        target.generate_speculative(prompt, 28, identical, top_k=1, num_speculative=4)
    _, sol_target = fixtures.make_pair(sol, "tiny")
    _target_passes(sol_target, copy.deepcopy(sol_target), prompt, 28, 4)  # the solution fills it


# ---------------------------------------------------------------------------------------
# Through the real harness: every row's points equal expected_points (slow: a full grading
# of each entry, speed tests included)


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    results = {}

    def get(name):
        if name not in results:
            sub = tmp_path_factory.mktemp(name) / "submission"
            sub.mkdir()
            (sub / "model.py").write_text(corpus.build(name))
            # verdicts, not Gradescope's time budget: on a shared machine a whole grading can
            # outrun it, and the tests left then score 0 without being run
            results[name] = harness.grade(sub, budget_s=4 * harness.BUDGET_S)
        return results[name]

    return get


ROW_CASES = [pytest.param(name, row, id=f"{name}-{row}") for name in NAMES for row in corpus.ROWS]


@pytest.mark.slow
@pytest.mark.parametrize("name,row", ROW_CASES)
def test_harness_points_match(name, row, graded):
    results = graded(name)
    expected = corpus.expected_points(name)
    piece_of = {t.name: t.piece for t in rubric.TESTS}
    got = {r["name"]: (r["score"], r["output"]) for r in results["tests"] if piece_of.get(r["name"]) == row}
    assert got, f"no {row} rows in the results"
    for test_name, (score, output) in got.items():
        assert score == expected[test_name], (
            f"{test_name}: {score} points, expected {expected[test_name]}: {output}"
        )


# What the failing row's message must tell the student, checked on the public row of
# (piece or speed test, behaviour).
MESSAGES = {
    ("decode_one_token_only", "spec_speed", ""): "fix attn_decode first",
    ("decode_is_causal_sdpa", "attn_decode", "fast_path"): "DEBUG",
    ("hardcoded_cuda", "buffers", "dtype"): "cuda",  # the student's own error, quoting the line
    ("generate_kv_one_short", "generate_kv", "edge_lengths"): "0 new",
    ("cache_hardcoded_float32", "buffers", "dtype"): "float64",
}


@pytest.mark.slow
@pytest.mark.parametrize("name,row,behaviour", sorted(MESSAGES))
def test_harness_message_names_the_fix(name, row, behaviour, graded):
    public_row = next(
        t.name
        for t in rubric.TESTS
        if t.piece == row and t.behaviour == behaviour and t.visibility == rubric.VISIBLE
    )
    (output,) = [r["output"] for r in graded(name)["tests"] if r["name"] == public_row]
    assert MESSAGES[name, row, behaviour].lower() in output.lower(), output
