"""The grading policy in one place: the rows and their points (one per behaviour of each piece,
public and hidden), the hidden fixtures, the speed policies (fixtures, thresholds,
confirmations, gated rows), retries, the time budget, and which pieces depend on which. The
rules that apply it are code: harness.py (skips, "NOT MEASURED"), verdicts.py (confirmations,
gates), infkit/checks.py (behaviours, cases, tolerances).

Implementation part: 50 points. KV cache 30 (buffers 4, prefill 6, attn_decode 8,
gpt_decode 4, generate_kv 8 of which 2 for speed), speculative decoding 20 (16 correctness,
4 speed). Every behaviour has a public row (the seed and shape students run themselves in
tests_public/) and a hidden one (other seeds and shapes, shown after the due date), so a
mistake costs the rows of the behaviour it breaks and hard-coding the public case does not pay.
"""

import os
from dataclasses import dataclass

from infkit import checks, optional, pieces
from infkit.checks import PUBLIC_SHAPE

VISIBLE, HIDDEN = "visible", "after_due_date"
# The hidden rows' fixtures: other seeds and another shape than the public tests' (these live
# here only, and the handout does not carry this file).
HIDDEN_SHAPE = dict(n_layer=2, n_head=3, n_embd=48, vocab_size=384, block_size=96)
HIDDEN_SEEDS = (11, 29)


@dataclass(frozen=True)
class Test:
    name: str
    kind: str  # "check" (a behaviour of a piece of infkit.checks), "speed", or "optional" (infkit.optional)
    piece: str  # the piece checked, or the speed test's name
    points: float
    visibility: str = VISIBLE
    shape: object = PUBLIC_SHAPE
    seeds: tuple = (0,)
    timeout_s: float = 60.0  # of the worker that probes the piece (one per piece and visibility)
    behaviour: str = ""  # a "check" row's behaviour (infkit.checks.BEHAVIOURS[piece])


# Points per behaviour, (public, hidden): a mistake confined to one behaviour costs its rows.
POINTS = {
    "buffers": {"layout": (0.75, 0.25), "dtype": (0.75, 0.25), "state": (0.75, 0.25), "setup": (0.75, 0.25)},
    "prefill": {"output": (1, 0.5), "keys_values": (2, 1), "seq_pos": (1, 0.5)},
    "attn_decode": {"one_token": (2, 1), "chunk": (1, 1), "seq_pos": (1, 0.5), "fast_path": (1, 0.5)},
    "gpt_decode": {"logits": (2, 0.5), "kv_pos": (1, 0.5)},
    "generate_kv": {
        "ordinary": (1, 0.5),
        "edge_lengths": (0.75, 0.25),
        "block_size": (0.75, 0.25),
        "one_prefill": (0.5, 0.5),
        "fresh_cache": (0.5, 0.25),
        "fast_path": (0.5, 0.25),
    },
    "speculative": {
        "fixture_draft": (2, 1),
        "any_draft": (2, 1),
        "edge_lengths": (1.5, 1),
        "block_size": (1.5, 1),
        "one_pass": (2, 1),
        "fast_path": (1, 1),
    },
}
LABELS = {
    "buffers": "KV 1/5 buffers",
    "prefill": "KV 2/5 prefill",
    "attn_decode": "KV 3/5 attn_decode",
    "gpt_decode": "KV 4/5 gpt_decode",
    "generate_kv": "KV 5/5 generate_kv",
    "speculative": "Speculative",
}
HIDDEN_SUFFIX = "(hidden: other seeds and shapes)"


def _piece(piece: str):
    rows = []
    for behaviour, (public, hidden) in POINTS[piece].items():
        name = f"{LABELS[piece]}: {behaviour}"
        rows.append(Test(f"{name} (public)", "check", piece, public, behaviour=behaviour))
        rows.append(
            Test(
                f"{name} {HIDDEN_SUFFIX}",
                "check",
                piece,
                hidden,
                HIDDEN,
                HIDDEN_SHAPE,
                HIDDEN_SEEDS,
                behaviour=behaviour,
            )
        )
    return rows


def _optional(piece: str, name: str, points: float = 0.0, timeout_s: float = 60.0) -> Test:
    """The row of an optional piece (infkit/pieces.py, optional=True), graded by its probe and
    judge (infkit/optional.py). 0 points by default, so the row only reports; staff who want
    extra credit set its points here, and they come on top of the 50."""
    return Test(name, "optional", piece, points, timeout_s=timeout_s)


TESTS = [
    *_piece("buffers"),
    *_piece("prefill"),
    *_piece("attn_decode"),
    *_piece("gpt_decode"),
    *_piece("generate_kv"),
    Test("KV speed: generate_kv vs the naive generate", "speed", "kv_speed", 2, timeout_s=150),
    *_piece("speculative"),
    Test("Speculative speed: vs the target model's naive generate", "speed", "spec_speed", 4, timeout_s=150),
    _optional(
        "sampling",
        "Optional: speculative sampling (temperature > 0) keeps the target's distribution",
        points=0.0,
        timeout_s=120,
    ),
]


def check_rows(tests: list) -> None:
    """Raise AssertionError unless the rows follow the registry of pieces (infkit/pieces.py):
    every behaviour of each checked piece, one row per optional piece with its probe and judge
    (infkit/optional.py), unique names, and 50 points besides the optional rows."""
    assert tuple(dict.fromkeys(t.piece for t in tests if t.kind == "check")) == pieces.CHECKED
    assert all(tuple(POINTS[p]) == tuple(checks.BEHAVIOURS[p]) for p in pieces.CHECKED)
    optional_rows = tuple(t.piece for t in tests if t.kind == "optional")
    assert optional_rows == pieces.OPTIONAL == tuple(optional.PAIRS), (optional_rows, pieces.OPTIONAL)
    assert len({t.name for t in tests}) == len(tests), "row names are unique"
    assert sum(t.points for t in tests if t.kind != "optional") == 50


check_rows(TESTS)
TOTAL = sum(t.points for t in TESTS)
HIDDEN_POINTS = sum(t.points for t in TESTS if t.visibility != VISIBLE)
OPTIONAL_POINTS = sum(t.points for t in TESTS if t.kind == "optional")  # extra credit, if any


# ---------------------------------------------------------------------------------------
# Speed verdicts. Each speed test is measured twice (autograder/speed.py): as ratios inside one
# worker (shown for information) and, for the verdict, from the CPU seconds the kernel counts
# for separate workers. A speed test also gates correctness rows whose check counts tokens with
# hooks inside the student's process (which code written for it can fool): those rows keep
# their points only if a second kernel-timed ratio confirms the behaviour.


@dataclass(frozen=True)
class SpeedFixture:
    """What a speed test times on the CPU (autograder/speed.py builds it; the worker gets it in
    its job): fixed random weights, prompts and calls, against the given code's naive generate."""

    method: str  # the student's method that is timed: "generate_kv" or "generate_speculative"
    target: dict  # the model's shape (GPTConfig fields)
    batch: int
    prompt: int  # prompt tokens
    new: int  # new tokens per call
    seed: int  # the weights
    prompt_seed: int  # the in-process timing's prompt
    calls: tuple  # kernel-timed calls per worker: (naive, student), on prompts drawn afresh for
    # each grading (the worker learns their seed only after its set-up CPU was read)
    repeats: int = 3  # in-process timed rounds after a warm-up (the median is shown)
    draft_layers: int = 0  # a speculative fixture: its draft is the target's first layers
    draft_scale: float = 0.0  # output-projection scale of the target's later blocks (infkit.fixtures)
    num_speculative: int = 0
    stranger_seed: int = 0  # weights of the 1-layer draft that (almost) never agrees


@dataclass(frozen=True)
class SpeedPolicy:
    fixture: SpeedFixture  # what is timed
    piece: str  # the correctness piece whose judge explains an error in it
    min_ratio: float  # naive CPU per call / the student's, needed for the speed points
    gated: tuple  # rows (by piece) whose points also need the confirmation below
    confirmation: str  # how they are confirmed (autograder/verdicts.py CONFIRMATIONS)
    confirm_ratio: float  # the confirmation's kernel-timed figure must reach this (see SPEED)
    confirm_what: str  # what the confirmation shows, for messages
    confirm_measures: str  # what the confirmation's figure is, for messages
    confirm_fails: str  # what a ratio below confirm_ratio means, for messages

    @property
    def method(self) -> str:
        return self.fixture.method


SPEED = {
    # generate_kv. Confirmation = the same ratio: a KV cache is far above 2x, re-running the
    # whole sequence every step about 1x (the solution's figures, dated: docs/performance.md).
    "kv_speed": SpeedPolicy(
        fixture=SpeedFixture(
            method="generate_kv",
            # a prompt long enough that re-running it dominates
            target=dict(n_layer=4, n_head=4, n_embd=128, vocab_size=2048, block_size=320),
            batch=2,
            prompt=128,
            new=32,
            seed=5,
            prompt_seed=5,
            calls=(6, 12),
        ),
        piece="generate_kv",
        min_ratio=3.0,
        gated=("generate_kv",),
        confirmation="same_ratio",
        confirm_ratio=2.0,
        confirm_what="one new token per step after the prefill",
        confirm_measures="the ratio naive / yours at",
        confirm_fails="it recomputes the sequence",
    ),
    # speculative vs the target's naive generate, batch 1, an 8-layer target and its 1-layer
    # draft. Confirmation = the extra CPU per call with a draft that never agrees, as a fraction
    # of one naive call (verdicts.draft_sensitivity): a decoder that verifies drafts pays for
    # them, one whose cost ignores the draft reads about 0 (dated figures: docs/performance.md).
    "spec_speed": SpeedPolicy(
        fixture=SpeedFixture(
            method="generate_speculative",
            target=dict(n_layer=8, n_head=4, n_embd=128, vocab_size=2048, block_size=320),
            batch=1,
            prompt=96,
            new=64,
            seed=5,
            prompt_seed=6,
            calls=(4, 12),
            draft_layers=1,
            draft_scale=0.05,
            num_speculative=4,
            stranger_seed=104,
        ),
        piece="speculative",
        min_ratio=1.15,
        gated=("speculative", "spec_speed"),
        confirmation="draft_sensitivity",
        confirm_ratio=0.15,
        confirm_what="the drafted tokens verified in one batched pass of the target",
        confirm_measures="the extra cost with a draft that never agrees, as a fraction of a naive call, at",
        confirm_fails="the draft's proposals do not change the work your code does",
    ),
}
# The leaderboard (Gradescope's): (name, speed test, figure of autograder/verdicts.py
# LEADERBOARD_FIGURES), every figure from the kernel-timed, output-checked calls
LEADERBOARD = (
    ("KV cache tokens/s (CPU fixture)", "kv_speed", "tokens_per_s"),
    ("Speculative speedup over the naive generate (CPU fixture)", "spec_speed", "over_naive"),
)
KERNEL_ATTEMPTS = 3  # kernel-timed measurements of a ratio that falls short, at most

# ---------------------------------------------------------------------------------------
# Time. A worker that runs out of time on a busy machine is not the student's fault: the harness
# measures how much CPU it gets (autograder/load.py) and scales limits by it; a timing that still
# cannot finish is "not measured" (0 points for that row, staff re-run), never a failure.
BUDGET_S = float(os.environ.get("AUTOGRADER_BUDGET_S", "480"))  # Gradescope's default limit is 600
BUSY_CONTENTION = 1.3  # wall / CPU seconds of a busy loop above this: the machine is busy
LOAD_RETRIES = 2  # re-runs of a job that timed out on a busy machine, each with a longer limit

# ---------------------------------------------------------------------------------------
# Dependencies: a failing piece's message names these when they fail too ("fix ... first"), and
# a gated row keeps its points when its speed test could not run because one of these fails
# (that mistake costs its own points, once).
PREREQUISITES = {
    "gpt_decode": ("attn_decode",),
    "generate_kv": ("prefill", "attn_decode", "gpt_decode"),
    "kv_speed": ("prefill", "attn_decode", "gpt_decode", "generate_kv"),
    # generate_speculative prefills the target and the draft (forward with enable_kv), then decodes
    "speculative": ("prefill", "attn_decode", "gpt_decode"),
    "spec_speed": ("prefill", "attn_decode", "gpt_decode", "speculative"),
}
# A fast-path (DEBUG off) failure of these is explained by one of attn_decode, which computes
# their attention: they keep their points and say so.
FAST_PATH_EXPLAINED_BY = {"generate_kv": "attn_decode", "speculative": "attn_decode"}


def select_rows(pattern: str) -> list:
    """The rows whose name contains `pattern` (any case), for staff re-running part of a grading,
    and the speed tests whose confirmation gates any of them, so their evidence is measured."""
    chosen = [t for t in TESTS if pattern.lower() in t.name.lower()]
    if not chosen:
        raise SystemExit(f"no row of autograder/rubric.py matches {pattern!r}")
    pieces_chosen = {t.piece for t in chosen}
    gates = {name for name, policy in SPEED.items() if pieces_chosen & set(policy.gated)}
    return [t for t in TESTS if t in chosen or (t.kind == "speed" and t.piece in gates)]


# ---------------------------------------------------------------------------------------
# The READMEs' points table is generated from POINTS, the checks' own behaviour descriptions
# and SPEED (`python -m autograder.rubric --write`; a test keeps them equal).


def points_table() -> str:
    """The README's points table: one line per behaviour, and the speed tests."""
    speed_of = {policy.piece: (name, policy) for name, policy in SPEED.items()}
    lines = ["| piece | behaviour | public | hidden | what earns the points |", "|---|---|---|---|---|"]
    for piece in pieces.CHECKED:
        for behaviour, (public, hidden) in POINTS[piece].items():
            words = checks.BEHAVIOURS[piece][behaviour]
            lines.append(f"| `{piece}` | {behaviour} | {public:g} | {hidden:g} | {words} |")
        if piece in speed_of:
            name, policy = speed_of[piece]
            points = sum(t.points for t in TESTS if t.piece == name)
            lines.append(
                f"| `{piece}` | speed | {points:g} | | >= {policy.min_ratio}x the naive `generate` on the "
                "grader's CPU fixture (CPU seconds the kernel counts) |"
            )
    return "\n".join(lines)


def speed_table() -> str:
    """The speed tests' workloads, for students: what is timed, on which model, how."""
    lines = [
        "| speed test | model (layers x width, vocabulary) | batch | prompt + new tokens | draft, tokens per round |",
        "|---|---|---|---|---|",
    ]
    for policy in SPEED.values():
        f = policy.fixture
        shape = f"{f.target['n_layer']} x {f.target['n_embd']}, {f.target['vocab_size']}"
        draft = (
            f"its first {f'{f.draft_layers} layers' if f.draft_layers > 1 else 'layer'}, "
            f"`num_speculative={f.num_speculative}`"
            if f.draft_layers
            else "none"
        )
        lines.append(
            f"| `{f.method}` >= {policy.min_ratio}x naive | {shape} | {f.batch} | {f.prompt} + {f.new} | {draft} |"
        )
    return "\n".join(lines)


TABLES = {  # marker -> (the table, the READMEs that hold it)
    "points-table": (points_table, ("README.md", "handout/README.md")),
    "speed-table": (speed_table, ("handout/README.md",)),
    "pieces-table": (pieces.contract_table, ("README.md",)),
}


def _region(text: str, marker: str) -> tuple[int, int]:
    """Where the table between `<!-- marker -->` and `<!-- /marker -->` of a README starts and ends."""
    return text.index(f"<!-- {marker} -->\n") + len(f"<!-- {marker} -->\n"), text.index(f"<!-- /{marker} -->")


def table_in(text: str, marker: str) -> str:
    """The table between `<!-- marker -->` and `<!-- /marker -->` of a README."""
    start, end = _region(text, marker)
    return text[start:end].strip()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for marker, (make, readmes) in TABLES.items():
        table = make()
        print(table)
        if "--write" in sys.argv:  # replace the table between the markers of each README
            for name in readmes:
                text = (root / name).read_text()
                start, end = _region(text, marker)
                (root / name).write_text(text[:start] + table + "\n" + text[end:])
