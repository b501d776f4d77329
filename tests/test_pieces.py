"""The registry of pieces (infkit/pieces.py) is the one list everything else follows."""

import re

from infkit import checks, loading, optional, paths, pieces
from staff import starter as starter_gen


def test_every_piece_names_a_stub_of_the_starter():
    """Each piece's `where` is a method of the given classes, and its stub raises
    NotImplementedError("TODO(name): ...") in the starter, in the registry's order."""
    module = loading.load_model_module(paths.STARTER_MODEL)
    for piece in pieces.PIECES:
        owner, method = piece.where.split(".")
        assert callable(getattr(getattr(module, owner), method)), piece.where
    todos = re.findall(r"TODO\((\w+)[,)]", paths.STARTER_MODEL.read_text())
    assert tuple(dict.fromkeys(todos)) == pieces.NAMES


def test_checks_and_starter_follow_the_registry():
    assert checks.PIECES == tuple(checks.PROBES) == tuple(checks.JUDGES) == pieces.CHECKED
    assert tuple(checks.BEHAVIOURS) == pieces.CHECKED
    assert starter_gen.PIECES == pieces.NAMES
    assert set(pieces.OPTIONAL) == set(pieces.NAMES) - set(pieces.CHECKED)
    assert tuple(optional.PAIRS) == pieces.OPTIONAL  # each optional piece's probe and judge
