"""The optional pieces' graders: a probe and a judge for each piece of infkit/pieces.py marked
`optional=True`, by the piece's name. The autograder runs every optional piece the same way:

  probe(module) -> record   in the sandboxed worker, on the student's module; the record holds
                            plain values only (lists, numbers, strings, dicts of them), which is
                            all the worker's output may carry
  judge(ref, record) -> (passed, message)
                            in the grader's own process, with the given code as `ref`; the
                            message is the row's detail after PASS or FAIL

An exception raised by the probe is the student's (its row says "not implemented yet" for a
NotImplementedError, else what was raised). The worker imports the probe by the name a job gives
it (`module:function`, see `reference`), from the worker's copy of this package.
"""

from collections.abc import Callable
from dataclasses import dataclass

from . import pieces, sampling_check


@dataclass(frozen=True)
class Pair:
    probe: Callable  # probe(module) -> record
    judge: Callable  # judge(ref, record) -> (passed, message)


PAIRS = {
    "sampling": Pair(sampling_check.probe, sampling_check.judge),
}

assert tuple(PAIRS) == pieces.OPTIONAL, "one pair per optional piece, in the registry's order"


def _check(piece: str) -> Callable:
    """An optional piece checked in one process (`python -m infkit.checks model.py PIECE`): its
    probe on the module, its judge with the module's own given code as the reference."""

    def check(module) -> tuple[bool, str]:
        pair = PAIRS[piece]
        try:
            record = pair.probe(module)
        except NotImplementedError as e:  # the stub, as the autograder's row says it
            return False, f"not implemented yet ({e})"
        return pair.judge(module, record)

    return check


CHECKS = {piece: _check(piece) for piece in PAIRS}


def reference(fn: Callable) -> str:
    """How a job names a probe to the worker: `module:function`."""
    return f"{fn.__module__}:{fn.__qualname__}"


def source(fn: Callable) -> str:
    """Where a judge decides, as file:function (results.json rows name it)."""
    return f"{fn.__module__.replace('.', '/')}.py:{fn.__qualname__}"
