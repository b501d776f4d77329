"""Does speculative sampling keep the target's distribution? A statistical check.

With temperature > 0, speculative sampling is correct when the tokens it emits are distributed
exactly as if the target had sampled them alone. On a micro model with a tiny vocabulary the
target's distribution over the next few tokens can be enumerated exactly, so we can draw many
seeded speculative runs and compare the counts with a chi-square test.

False alarms: the threshold is the chi-square quantile at ALPHA, so a correct implementation
fails with probability ALPHA per test (1e-4; and the runs are seeded, so a given seed either
always passes or always fails). The wrong rules we know of ("accept when p >= q", "resample from
p after a rejection", "always accept") shift the distribution by far more than the noise at
the sample sizes used here (the kit's own tests measure each).
"""

import itertools
import math
from statistics import NormalDist

import torch

from . import fixtures

# Small enough to enumerate every continuation, big enough that draft and target disagree.
MICRO_SHAPE = dict(n_layer=3, n_head=2, n_embd=16, vocab_size=5, block_size=32)
# The deeper layers are not damped (scale 1): the draft's q is far from the target's p.
MICRO_PAIR = fixtures.PairSpec(target=MICRO_SHAPE, draft_layers=1, scale=1.0)
ALPHA = 1e-4


def micro_pair(module, seed: int = 0):
    return fixtures.make_pair(module, MICRO_PAIR, seed=seed)


@torch.no_grad()
def exact_distribution(module, target, prompt, n_tokens: int, temperature=1.0, top_k=None):
    """{continuation tuple: probability} under target-only sampling, by enumeration."""
    V = target.config.vocab_size
    dist = {}
    for cont in itertools.product(range(V), repeat=n_tokens):
        prob = 1.0
        seq = prompt
        for tok in cont:
            logits, _ = target(seq)
            prob *= float(module.token_probs(logits[:, -1], temperature, top_k)[0, tok])
            seq = torch.cat((seq, torch.tensor([[tok]])), dim=1)
        dist[cont] = prob
    return dist


def sample_speculative(target, draft, prompt, n_tokens: int, runs: int, seed=0, num_speculative=3, **kw):
    """Counts of the continuations produced by `runs` seeded speculative runs."""
    torch.manual_seed(seed)
    counts: dict = {}
    T = prompt.size(1)
    for _ in range(runs):
        out = target.generate_speculative(prompt, n_tokens, draft, num_speculative=num_speculative, **kw)
        cont = tuple(out[0, T:].tolist())
        counts[cont] = counts.get(cont, 0) + 1
    return counts


def chi_square_critical(df: int, alpha: float = ALPHA) -> float:
    """Upper alpha quantile of chi-square(df), Wilson-Hilferty approximation (good for df >= 3)."""
    z = NormalDist().inv_cdf(1 - alpha)
    h = 2.0 / (9.0 * df)
    return df * (1 - h + z * math.sqrt(h)) ** 3


def chi_square(counts: dict, dist: dict, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom. Outcomes with fewer than min_expected
    expected counts are pooled into one cell, as the test's approximation requires."""
    n = sum(counts.values())
    unexpected = [c for c in counts if dist.get(c, 0.0) == 0.0]
    if unexpected:  # an outcome the target can never produce: infinitely unlikely
        return math.inf, 1
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for outcome, p in dist.items():
        expected = n * p
        observed = counts.get(outcome, 0)
        if expected < min_expected:
            pooled_obs += observed
            pooled_exp += expected
        else:
            cells.append((observed, expected))
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    return stat, len(cells) - 1


def distribution_test(counts: dict, dist: dict, alpha: float = ALPHA) -> dict:
    stat, df = chi_square(counts, dist)
    critical = chi_square_critical(max(df, 1), alpha)
    n = sum(counts.values())
    tv = 0.5 * sum(abs(counts.get(o, 0) / n - p) for o, p in dist.items())
    return {"chi2": stat, "df": df, "critical": critical, "passed": stat <= critical, "tv": tv, "runs": n}


# The graded case of the optional piece: seed, runs, temperature, top_k.
GRADED = dict(seed=1, runs=2000, temperature=0.8, top_k=3)


def _graded_case(module):
    draft, target = micro_pair(module, seed=GRADED["seed"])
    prompt = fixtures.random_prompt(1, 4, MICRO_SHAPE["vocab_size"], seed=GRADED["seed"])
    return draft, target, prompt


def sample_optional_piece(module) -> dict:
    """Run the student's speculative sampler on the graded case; returns the counts."""
    draft, target, prompt = _graded_case(module)
    return sample_speculative(
        target, draft, prompt, 2, GRADED["runs"], seed=0, num_speculative=2,
        temperature=GRADED["temperature"], top_k=GRADED["top_k"],
    )  # fmt: skip


def judge_optional_piece(ref, counts: dict) -> dict:
    """Compare counts with the exact distribution computed from the reference module."""
    _, target, prompt = _graded_case(ref)
    dist = exact_distribution(ref, target, prompt, 2, GRADED["temperature"], GRADED["top_k"])
    return distribution_test(counts, dist)


# The grader's probe and judge of the optional piece (infkit/optional.py): the probe runs in the
# sandboxed worker, so the counts travel as lists [*continuation, count].


def probe(module) -> dict:
    """The student's counts on the graded case, as plain lists."""
    return {"counts": [[*outcome, n] for outcome, n in sample_optional_piece(module).items()]}


def judge(ref, rec: dict) -> tuple[bool, str]:
    """(passed, message): the probe's counts against the exact distribution of `ref`."""
    counts = {tuple(int(x) for x in row[:-1]): int(row[-1]) for row in rec["counts"]}
    verdict = judge_optional_piece(ref, counts)
    detail = (
        f"chi-square {verdict['chi2']:.1f} against a threshold of {verdict['critical']:.1f} "
        f"(df {verdict['df']}, {verdict['runs']} seeded runs, total variation {verdict['tv']:.3f})"
    )
    if verdict["passed"]:
        return True, detail
    return False, (
        f"the tokens your speculative sampler emits do not follow the target's distribution: {detail}. "
        "Accept with probability min(1, p/q); after a rejection sample from max(0, p - q) normalised."
    )


def check_sampling(module) -> dict:
    """The optional piece in one process (notebook): distribution_test's dict."""
    return judge_optional_piece(module, sample_optional_piece(module))
