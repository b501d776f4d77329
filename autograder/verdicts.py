"""From what the workers recorded to verdicts: the speed tests' ratios from the kernel's CPU
accounting, the gates and prerequisites that autograder/rubric.py declares, applied to a
grading's rows, and the leaderboard. The harness runs the workers and writes the rows; the
numbers and the rules it applies to them live here and in the rubric.
"""

import statistics
import time

from infkit import checks

from . import rubric, speed

# ---------------------------------------------------------------------------------------
# Speed tests


def speed_test(grader, test: rubric.Test) -> str:
    """One speed test (rubric.SPEED): in-process ratios for information, then the verdict
    and the confirmation of its gated rows from the kernel's CPU accounting."""
    policy = rubric.SPEED[test.piece]
    fx = policy.fixture
    (result,) = grader.run_job(test)
    if result["error"] is not None:
        checks.judge(policy.piece, grader.ref, {}, result["error"])
    rec = result["rec"]
    secs = {k: statistics.median(float(x) for x in v) for k, v in rec["seconds"].items()}
    if min(secs.values()) <= 0:
        raise checks.CheckFailed("the grader could not read your code's timings.")
    model, expected = speed.expected_outputs(fx, grader.ref)
    checks.compare_greedy(model, rec["out_student"], expected, f"{policy.method} on the speed fixture")
    grader.speed_records[test.piece] = (secs, rec, model, expected)
    mine = secs["student"]
    detail = (
        f"naive generate {secs['naive']:.3f} s, your {policy.method} {mine:.3f} s "
        f"({speed.describe(fx)}, median of {fx.repeats}): {secs['naive'] / mine:.2f}x faster; "
        f"needed >= {policy.min_ratio}x"
    )
    cpu_ratio, cpu_detail = kernel_timed_ratio(grader, test, policy.min_ratio)
    detail = f"{detail}. Verdict from the kernel's CPU accounting of separate processes: {cpu_detail}"
    confirmed, confirm_detail = CONFIRMATIONS[policy.confirmation](grader, test, policy, cpu_ratio)
    grader.confirmed[test.piece] = confirmed
    detail += f"; {confirm_detail}" if confirm_detail else ""
    if cpu_ratio < policy.min_ratio:
        raise checks.CheckFailed(f"too slow: {detail}.")
    return detail


def _kernel_cpu(grader, test: rubric.Test, roles: tuple, cpu: dict):
    """Run one worker per role; keep each role's least CPU seconds of its timed calls (from
    the kernel: the worker's CPU less its own set-up's, sandbox.run_worker) in `cpu`, and check
    every output of the student's calls."""
    policy = rubric.SPEED[test.piece]
    # each checked role has prompts of its own (harness.Grader.call_seed_for); all computed
    # before any worker runs, so the harness's own work never competes with a timed one
    checked = {r: _cpu_expected(grader, test.piece, r) for r in roles if r in ("student", "stranger")}
    for role in roles:
        (result,) = grader.run_job(test, role=role)
        if result["error"] is not None:
            checks.judge(policy.piece, grader.ref, {}, result["error"])
        cpu[role] = min(cpu.get(role, float("inf")), grader.last_cpu_s - grader.last_setup_cpu_s)
        if role in checked:
            model, expected = checked[role]
            outputs = result["rec"]["outputs"]
            if not isinstance(outputs, list) or len(outputs) != len(expected):
                raise checks.CheckFailed("the grader got incomplete outputs from your code.")
            drafted = " with a draft that never agrees" if role == "stranger" else ""
            for i, (got, want) in enumerate(zip(outputs, expected)):
                checks.compare_greedy(model, got, want, f"{policy.method}{drafted} on speed prompt {i}")


def _cpu_expected(grader, piece: str, role: str):
    if (piece, role) not in grader.expected_cpu:
        fx = rubric.SPEED[piece].fixture
        seed = grader.call_seed_for(piece, role)
        grader.expected_cpu[piece, role] = speed.expected_cpu_outputs(fx, grader.ref, seed)
    return grader.expected_cpu[piece, role]


def _per_call(cpu: dict, role: str, calls: int) -> float:
    return max(cpu[role], 1e-3) / calls


def _attempts(grader):
    """1, 2, ... KERNEL_ATTEMPTS for the runs of a kernel-timed measurement; a retry only
    while time is left for the tests still to come."""
    for runs in range(1, rubric.KERNEL_ATTEMPTS + 1):
        if runs > 1 and grader.deadline - time.monotonic() < 90:
            return
        yield runs


def kernel_timed_ratio(grader, test: rubric.Test, need: float) -> tuple[float, str]:
    """The pass/fail ratio, from CPU seconds the kernel counted for two workers' timed calls
    (the fixture's `calls`; autograder/speed.py): nothing the student's code does in its
    process can lower them.

    On a shared machine a worker's CPU time also grows when others compete for caches and
    memory (and, in a VM, with time stolen by the host), so a ratio below `need` is measured
    again, up to KERNEL_ATTEMPTS times, keeping each role's smallest CPU time: the least
    disturbed run of each. Re-measuring cannot make slow code look fast: no run of it costs
    less than it does."""
    cpu = grader.kernel_cpu[test.piece] = {}
    n_naive, n_student = rubric.SPEED[test.piece].fixture.calls
    for runs in _attempts(grader):  # noqa: B007 (runs is reported below)
        _kernel_cpu(grader, test, ("naive", "student"), cpu)
        per_naive = _per_call(cpu, "naive", n_naive)
        per_student = _per_call(cpu, "student", n_student)
        ratio = per_naive / per_student
        if ratio >= need:
            break
    least = f", least of {runs} runs" if runs > 1 else ""
    return ratio, (
        f"naive {per_naive:.3f} s, yours {per_student:.3f} s of CPU per call "
        f"({n_naive} and {n_student} calls{least}): {ratio:.2f}x"
    )


def draft_sensitivity(
    grader, test: rubric.Test, policy: rubric.SpeedPolicy, cpu_ratio: float
) -> tuple[float, str]:
    """How much more CPU the student's generate_speculative costs per call with a draft that
    never agrees (see speed.stranger_draft) than with the fixture draft, as a fraction of one
    naive call measured by kernel_timed_ratio.

    Each role's CPU is its timed calls' alone: the worker's CPU less its own set-up's, read
    by the kernel in between (sandbox.run_worker). A worker's fixed cost (imports, fixtures;
    about 6 s of CPU, varying by 0.5-1.5 s between processes on a busy machine) would
    otherwise sit in a difference of a few seconds. Each role is measured at least twice and
    keeps its least CPU time, so one disturbed stranger run cannot confirm a decoder whose
    cost ignores the draft, and a difference below the bar is measured again like
    kernel_timed_ratio's."""
    cpu = grader.kernel_cpu[test.piece]
    n_naive, n = policy.fixture.calls
    per_naive = _per_call(cpu, "naive", n_naive)
    for runs in _attempts(grader):
        _kernel_cpu(
            grader, test, ("stranger", "student", "stranger") if runs == 1 else ("student", "stranger"), cpu
        )
        extra = (cpu["stranger"] - cpu["student"]) / n
        fraction = extra / per_naive
        if fraction >= policy.confirm_ratio:
            break
    return fraction, (
        f"with a draft that never agrees it costs {extra:+.3f} s more CPU per call, {fraction:.2f} of a "
        f"naive call (least of {runs + 1} runs each; speculative decoding needs >= {policy.confirm_ratio} here)"
    )


def same_ratio(grader, test: rubric.Test, policy: rubric.SpeedPolicy, cpu_ratio: float) -> tuple[float, str]:
    """The confirmation is the verdict's own kernel-timed ratio (nothing more to measure)."""
    return cpu_ratio, ""


# rubric.SpeedPolicy.confirmation -> (grader, test, policy, the verdict's ratio) -> (figure, words)
CONFIRMATIONS = {"same_ratio": same_ratio, "draft_sensitivity": draft_sensitivity}


def _tokens_per_s(record, fx) -> float:
    secs = record[0]
    return fx.batch * fx.new / secs["student"]


def _over_generate_kv(record, fx) -> float:
    """The student's generate_kv time over their speculative time, where generate_kv was timed
    and its output is right; else 0."""
    secs, rec, model, expected = record
    try:
        if "kv" in secs and not checks.compare_greedy(model, rec["out_kv"], expected, "generate_kv"):
            return secs["kv"] / secs["student"]
    except checks.CheckFailed:
        pass
    return 0.0


LEADERBOARD_FIGURES = {"tokens_per_s": (_tokens_per_s, 1), "over_generate_kv": (_over_generate_kv, 3)}


def leaderboard(grader) -> list:
    """rubric.LEADERBOARD's entries, 0 where their speed test did not run or failed early."""
    entries = []
    for name, piece, figure in rubric.LEADERBOARD:
        compute, digits = LEADERBOARD_FIGURES[figure]
        record = grader.speed_records.get(piece)
        value = compute(record, rubric.SPEED[piece].fixture) if record else 0.0
        entries.append({"name": name, "value": round(value, digits), "order": "desc"})
    return entries


# ---------------------------------------------------------------------------------------
# After all rows


def apply_gates(grader, tests, rows):
    """Rows whose check counts tokens with hooks inside the student's process keep their points
    only if the kernel-timed confirmation of their speed test (rubric.SPEED) reaches its ratio.
    A confirmation that could not be measured because the machine was busy takes nothing; one
    that could not be measured because the student's code failed on the speed fixture does."""
    failed = _failed_public_pieces(tests, rows)
    for piece, policy in rubric.SPEED.items():
        row = next((r for t, r in zip(tests, rows) if t.piece == piece), None)
        if row is None or row["output"].startswith("ERROR") or piece in grader.not_measured:
            continue  # not part of this run, failed on our side, or too busy to measure
        ratio = grader.confirmed.get(piece)
        if ratio is not None and ratio >= policy.confirm_ratio:
            continue
        if ratio is None and failed & set(rubric.PREREQUISITES.get(policy.piece, ())):
            continue  # its speed test failed because a piece it uses fails: that costs points there
        if ratio is None:
            why = (
                f"the speed test, which confirms this by measuring the cost, could not run your "
                f"{policy.method} (see that test's message)"
            )
        else:
            why = (
                f"the speed test measured {policy.confirm_measures} {ratio:.2f} by the kernel's CPU accounting, "
                f"where a correct {policy.method} measures well above {policy.confirm_ratio}: {policy.confirm_fails}"
            )
        for test, r in zip(tests, rows):
            if test.piece in policy.gated and r["status"] == "passed":
                message = f"FAIL: {policy.method} must show {policy.confirm_what}; {why}."
                r.update(score=0.0, status="failed", output=message)


def _failed_public_pieces(tests, rows) -> set:
    return {
        t.piece for t, r in zip(tests, rows) if r["status"] != "passed" and t.visibility == rubric.VISIBLE
    }


def name_prerequisites(tests, rows):
    """A failed row whose piece uses another piece that failed its public test says to fix that
    one first (rubric.PREREQUISITES), so one mistake reads as one mistake."""
    failed = _failed_public_pieces(tests, rows)
    for test, row in zip(tests, rows):
        if row["status"] == "passed" or row["output"].startswith(("ERROR", "NOT MEASURED")):
            continue
        before = [p for p in rubric.PREREQUISITES.get(test.piece, ()) if p in failed]
        if before:
            row["output"] += f"\n(Fix {' and '.join(before)} first: {test.piece} uses it, and it fails too.)"
