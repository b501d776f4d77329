"""A speed test is one declared object (rubric.SpeedPolicy with its SpeedFixture): speed.py
times whatever the fixture says, so changing a size, a seed or a call count is one edit."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from autograder import rubric, speed, verdicts

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
    model, expected = speed.expected_outputs(fx, sol)
    assert rec["out_student"].shape == (fx.batch, fx.prompt + fx.new)
    assert rec["out_student"].tolist() == expected.tolist()
    asked = []

    def next_seed():  # the harness's handshake: the seed comes after the set-up
        asked.append(1)
        return 1234

    student = speed.run_role(fx, "student", sol, sol, next_seed)["outputs"]
    naive = speed.run_role(fx, "naive", None, sol, next_seed)["outputs"]
    _, want = speed.expected_cpu_outputs(fx, sol, 1234)
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
