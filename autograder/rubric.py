"""Every graded test and its points, in one place.

Implementation part: 50 points. KV cache 30 (buffers 4, prefill 6, attn_decode 8,
gpt_decode 4, generate_kv 8 of which 2 for speed), speculative decoding 20 (16 correctness,
4 speed). Each correctness piece is split into a public test (the seed and shape students
run themselves in tests_public/) and a hidden one (other seeds and shapes, shown after the
due date), so partial work earns partial credit and hard-coding the public case does not pay.
"""

from dataclasses import dataclass

from infkit.checks import HIDDEN_SHAPE, PUBLIC_SHAPE

VISIBLE, HIDDEN = "visible", "after_due_date"
# The optional piece (GPT._accept_sampled): 0 points by default, so the test only reports.
# Staff who want extra credit set the points here; they come on top of the 50.
SAMPLING_POINTS = 0.0


@dataclass(frozen=True)
class Test:
    name: str
    kind: str  # "check" (a piece of infkit.checks), "speed", or "sampling" (the optional piece)
    piece: str  # the piece checked, or the speed test's name
    points: float
    visibility: str = VISIBLE
    shape: object = PUBLIC_SHAPE
    seeds: tuple = (0,)
    timeout_s: float = 60.0


def _piece(label: str, piece: str, public: float, hidden: float, hidden_seeds=(11, 29)):
    return [
        Test(f"{label} (public)", "check", piece, public),
        Test(
            f"{label} (hidden: other seeds and shapes)",
            "check",
            piece,
            hidden,
            HIDDEN,
            HIDDEN_SHAPE,
            hidden_seeds,
        ),
    ]


TESTS = [
    *_piece("KV 1/5 buffers: init_kv_cache", "buffers", 3, 1),
    *_piece("KV 2/5 prefill: forward fills the cache", "prefill", 4, 2),
    *_piece("KV 3/5 attn_decode: CausalSelfAttention.decode", "attn_decode", 5, 3),
    *_piece("KV 4/5 gpt_decode: GPT.decode", "gpt_decode", 3, 1),
    *_piece("KV 5/5 generate_kv", "generate_kv", 4, 2),
    Test("KV speed: generate_kv vs the naive generate", "speed", "kv_speed", 2, timeout_s=150),
    *_piece("Speculative: generate_speculative", "speculative", 10, 6),
    Test("Speculative speed: vs the target model's naive generate", "speed", "spec_speed", 4, timeout_s=150),
    Test(
        "Optional: speculative sampling (temperature > 0) keeps the target's distribution",
        "sampling",
        "sampling",
        SAMPLING_POINTS,
        timeout_s=120,
    ),
]

TOTAL = sum(t.points for t in TESTS)
HIDDEN_POINTS = sum(t.points for t in TESTS if t.visibility != VISIBLE)
assert TOTAL - SAMPLING_POINTS == 50, TOTAL
