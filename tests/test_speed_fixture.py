"""A speed test is one declared object (rubric.SpeedPolicy with its SpeedFixture): speed.py
times whatever the fixture says, so changing a size, a seed or a call count is one edit."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from autograder import rubric, speed, verdicts
from infkit import checks, fixtures

TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=128, block_size=64)


def shrunk(piece: str):
    """The piece's fixture, tiny, as the worker receives it (through JSON)."""
    fx = rubric.SPEED[piece].fixture
    small = dataclasses.replace(fx, target=TINY, batch=fx.batch, prompt=8, new=5, calls=(1, 2), repeats=1)
    return SimpleNamespace(**json.loads(json.dumps(dataclasses.asdict(small))))


@pytest.mark.parametrize("piece", sorted(rubric.SPEED))
def test_speed_py_times_what_the_fixture_declares(sol, piece):
    fx = shrunk(piece)
    rec = speed.measure(fx, sol, sol)
    assert {"naive", "student"} <= set(rec["seconds"]) and all(len(v) == 1 for v in rec["seconds"].values())
    model = speed.reference_model(fx, sol)
    prompt, new = speed.case(fx)
    expected = model.generate(prompt, new, top_k=1)
    assert rec["out_student"].shape == (fx.batch, fx.prompt + fx.new)
    assert rec["out_student"].tolist() == expected.tolist()
    asked = []

    def next_seed():  # the harness's handshake: the seed comes after the set-up
        asked.append(1)
        return 1234

    student = speed.run_role(fx, "student", sol, sol, next_seed)["outputs"]
    naive = speed.run_role(fx, "naive", None, sol, next_seed)["outputs"]
    want = [model.generate(p, fx.new, top_k=1) for p in speed.cpu_prompts(fx, fx.calls[1], 1234)]
    assert len(asked) == 2
    assert len(student) == fx.calls[1] and len(naive) == fx.calls[0]
    assert [o.tolist() for o in student] == [w.tolist() for w in want]
    assert str(fx.new) in speed.describe(fx) and str(fx.prompt) in speed.describe(fx)


def test_every_policy_names_what_exists():
    for name, policy in rubric.SPEED.items():
        assert policy.confirmation in verdicts.CONFIRMATIONS, name
        assert policy.method in ("generate_kv", "generate_speculative"), name
        assert bool(policy.fixture.draft_layers) == (policy.method == "generate_speculative"), name
        assert set(policy.gated) <= {t.piece for t in rubric.TESTS}, name
    for _, piece, figure in rubric.LEADERBOARD:
        assert piece in rubric.SPEED and figure in verdicts.LEADERBOARD_FIGURES


def _verdict(fn, *args):
    """What a greedy comparison says: ("ok", note) or ("fail", message)."""
    try:
        return "ok", fn(*args)
    except checks.CheckFailed as e:
        return "fail", str(e)


def test_verify_greedy_gives_compare_greedys_verdicts(starter):
    """The harness checks a speed call's output with one forward pass over it
    (checks.verify_greedy) instead of running the naive generate: same verdict and message on
    a correct output, a wrong token, a near-tie, a wrong dtype and a wrong shape."""
    model = fixtures.make_model(starter, TINY, seed=3)
    prompt = fixtures.random_prompt(2, 8, TINY["vocab_size"], seed=4)
    new = 6
    expected = model.generate(prompt, new, top_k=1)
    wrong = expected.clone()
    wrong[1, 8 + 2] = (wrong[1, 8 + 2] + 1) % TINY["vocab_size"]
    cases = {
        "correct": (expected.clone(), None),
        "wrong token": (wrong, None),
        "near-tie": (wrong, 1e9),  # every margin counts as a near-tie: the row is excused
        "float": (expected.float(), None),
        "short": (expected[:, :-1], None),
    }
    for name, (got, near_tie) in cases.items():
        old = _verdict(checks.compare_greedy, model, got, expected, "x", near_tie)
        fast = _verdict(checks.verify_greedy, model, prompt, new, got, "x", near_tie)
        assert fast[0] == old[0], name
        if name == "near-tie":
            assert (
                "row 1 differs from position 10 after a near-tie" in fast[1] and fast[1][:45] == old[1][:45]
            )
        else:
            assert fast == old, name
    assert _verdict(checks.verify_greedy, model, prompt, new, wrong, "x")[0] == "fail"
    changed = expected.clone()
    changed[0, 3] += 1
    verdict, message = _verdict(checks.verify_greedy, model, prompt, new, changed, "x")
    assert verdict == "fail" and "position 3" in message and "prompt must come back unchanged" in message


@pytest.mark.parametrize("piece", sorted(rubric.SPEED))
def test_verify_greedy_passes_the_naive_output_on_each_speed_fixture(starter, piece):
    """On the real fixture: the naive generate's own output on a kernel-timed prompt passes,
    with no near-tie note, and the same output with one new token changed fails."""
    fx = rubric.SPEED[piece].fixture
    model = speed.reference_model(fx, starter)
    (prompt,) = speed.cpu_prompts(fx, 1, seed=77)
    naive = model.generate(prompt, fx.new, top_k=1)
    assert checks.verify_greedy(model, prompt, fx.new, naive, "naive") == ""
    wrong = naive.clone()
    wrong[0, -5] = (wrong[0, -5] + 1) % fx.target["vocab_size"]
    with pytest.raises(checks.CheckFailed, match="differs from the naive generate"):
        checks.verify_greedy(model, prompt, fx.new, wrong, "wrong")
