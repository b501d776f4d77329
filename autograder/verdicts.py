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
        _failed_on_fixture(grader, test.piece, result["error"])
    rec = result["rec"]
    secs = {k: statistics.median(float(x) for x in v) for k, v in rec["seconds"].items()}
    if min(secs.values()) <= 0:
        raise checks.CheckFailed("the grader could not read your code's timings.")
    prompt, new = speed.case(fx)
    _check_on_fixture(
        grader, test.piece, prompt, new, rec["out_student"], f"{policy.method} on the speed fixture"
    )
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
    grader.speed_passed.add(test.piece)
    return detail


def _failed_on_fixture(grader, piece: str, error: dict):
    """The student's code raised on the speed fixture: remember what (a prerequisite that raised
    the same may explain it, apply_gates), then fail the row with the student's own error."""
    grader.speed_failure[piece] = {"kind": "raised", "type": error.get("type"), "where": error.get("where")}
    checks.raise_for_error(rubric.SPEED[piece].piece, error)


def _check_on_fixture(grader, piece: str, prompt, new: int, got, what: str):
    """The student's output on a speed prompt must be the reference's greedy decoding
    (checks.verify_greedy: one forward pass of the fixture's reference model over it)."""
    if piece not in grader.speed_reference:
        grader.speed_reference[piece] = speed.reference_model(rubric.SPEED[piece].fixture, grader.ref)
    try:
        checks.verify_greedy(grader.speed_reference[piece], prompt, new, got, what)
    except checks.CheckFailed:
        grader.speed_failure[piece] = {"kind": "wrong_output"}
        raise


def _kernel_cpu(grader, test: rubric.Test, roles: tuple, cpu: dict):
    """Run one worker per role; keep each role's least CPU seconds of its timed calls (from
    the kernel: the worker's CPU less its own set-up's, sandbox.run_worker) in `cpu`, and check
    every output of the student's calls."""
    policy = rubric.SPEED[test.piece]
    fx = policy.fixture
    for role in roles:
        (result,) = grader.run_job(test, role=role)
        if result["error"] is not None:
            _failed_on_fixture(grader, test.piece, result["error"])
        cpu[role] = min(cpu.get(role, float("inf")), grader.last_cpu_s - grader.last_setup_cpu_s)
        if role in ("student", "stranger"):  # checked once the worker is done, never beside it
            # every worker has prompts of its own (harness.Grader.new_call_seed)
            prompts = speed.cpu_prompts(fx, fx.calls[1], grader.call_seeds[test.piece, role])
            outputs = result["rec"]["outputs"]
            if not isinstance(outputs, list) or len(outputs) != len(prompts):
                raise checks.CheckFailed("the grader got incomplete outputs from your code.")
            drafted = " with a draft that never agrees" if role == "stranger" else ""
            for i, (got, prompt) in enumerate(zip(outputs, prompts)):
                what = f"{policy.method}{drafted} on speed prompt {i}"
                _check_on_fixture(grader, test.piece, prompt, fx.new, got, what)


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
    by the kernel in between (sandbox.run_worker). A worker's fixed cost (its fixtures; a
    fresh Python's imports, 1.9-2.5 s and varying by a second, before workers were forked from a
    template: docs/grading.md) would otherwise sit in a difference of a few seconds. Each role is measured at least twice and
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


def _kernel_per_call(grader, piece: str):
    """(naive, student) CPU seconds per call from the kernel-timed workers, or None where the
    speed test did not pass: only calls whose outputs the grader checked count."""
    cpu = grader.kernel_cpu.get(piece, {})
    if piece not in grader.speed_passed or not {"naive", "student"} <= set(cpu):
        return None
    n_naive, n_student = rubric.SPEED[piece].fixture.calls
    return _per_call(cpu, "naive", n_naive), _per_call(cpu, "student", n_student)


def _tokens_per_s(grader, piece: str) -> float:
    """Tokens per CPU second of the student's kernel-timed calls."""
    per_call = _kernel_per_call(grader, piece)
    fx = rubric.SPEED[piece].fixture
    return fx.batch * fx.new / per_call[1] if per_call else 0.0


def _over_naive(grader, piece: str) -> float:
    """The kernel-timed ratio naive / student of the speed test."""
    per_call = _kernel_per_call(grader, piece)
    return per_call[0] / per_call[1] if per_call else 0.0


# rubric.LEADERBOARD's figures: every one from kernel-timed calls whose outputs were checked
# (the in-process timings are the upload's to steer, so they are shown, never ranked)
LEADERBOARD_FIGURES = {"tokens_per_s": (_tokens_per_s, 1), "over_naive": (_over_naive, 2)}


def leaderboard(grader) -> list:
    """rubric.LEADERBOARD's entries, 0 where their speed test did not pass."""
    entries = []
    for name, piece, figure in rubric.LEADERBOARD:
        compute, digits = LEADERBOARD_FIGURES[figure]
        entries.append({"name": name, "value": round(compute(grader, piece), digits), "order": "desc"})
    return entries


# ---------------------------------------------------------------------------------------
# After all rows


NOT_MEASURED_GATE = (
    "NOT MEASURED: your code passed this check, but its points also need the speed test's "
    "confirmation that {method} shows {what}, and the grading machine was too busy to time it. "
    "This says nothing about your code: the course staff will re-run the grading, which scores this row."
)


def apply_gates(grader, tests, rows):
    """Rows whose check counts tokens with hooks inside the student's process keep their points
    only with their evidence: the kernel-timed confirmation of their speed test (rubric.SPEED)
    measured at or above its bar, or a prerequisite whose failure explains why it could not be
    measured (the same failure seen again on the speed fixture, prerequisite_explains). A
    confirmation the machine was too busy to measure withholds the points as NOT MEASURED,
    flagged for staff (a re-run scores them)."""
    failed = _failed_public_pieces(tests, rows)
    for piece, policy in rubric.SPEED.items():
        row = next((r for t, r in zip(tests, rows) if t.piece == piece), None)
        if row is None or row["extra_data"]["stage"] == "autograder_error":
            continue  # not part of this run, or failed on our side
        ratio = grader.confirmed.get(piece)
        if ratio is not None and ratio >= policy.confirm_ratio:
            continue
        gated = [(t, r) for t, r in zip(tests, rows) if t.piece in policy.gated and r["status"] == "passed"]
        if not gated:
            continue
        # a speed test the machine was too busy for, or that the time budget left unrun, is no
        # evidence either way: withheld for staff to re-run, never paid and never failed
        if piece in grader.not_measured or row["extra_data"]["stage"] in ("not_measured", "not_run"):
            message = NOT_MEASURED_GATE.format(method=policy.method, what=policy.confirm_what)
            for _, r in gated:
                r.update(score=0.0, status="failed", output=message)
                r["extra_data"].update(
                    stage="not_measured",
                    withheld=r["max_score"],
                    decided_by="autograder/verdicts.py:apply_gates",
                )
            continue
        if ratio is None:
            explained_by = prerequisite_explains(grader, piece, failed)
            if explained_by:
                for _, r in gated:
                    r["output"] += (
                        f"\n(Its speed test could not confirm it because your {explained_by} fails there too; "
                        "that mistake costs its own rows.)"
                    )
                continue
            why = (
                f"the speed test, which confirms this by measuring the cost, could not run your "
                f"{policy.method} (see that test's message)"
            )
        else:
            why = (
                f"the speed test measured {policy.confirm_measures} {ratio:.2f} by the kernel's CPU accounting, "
                f"where a correct {policy.method} measures well above {policy.confirm_ratio}: {policy.confirm_fails}"
            )
        message = f"FAIL: {policy.method} must show {policy.confirm_what}; {why}."
        for _, r in gated:
            r.update(score=0.0, status="failed", output=message)
            r["extra_data"].update(stage="gated", decided_by="autograder/verdicts.py:apply_gates", gate=piece)


def prerequisite_explains(grader, piece: str, failed: set) -> str | None:
    """The prerequisite (rubric.PREREQUISITES) whose failure explains why the speed test `piece`
    failed on the student's code, or None. It explains it only if its own check, run again on
    the speed fixture's model, fails the same way there: the same exception at the same line, or
    wrong values where the speed test got wrong outputs. A failure staged for the public probes
    alone therefore explains nothing."""
    failure = grader.speed_failure.get(piece)
    policy = rubric.SPEED[piece]
    if failure is None:
        return None
    fx = policy.fixture
    for prerequisite in rubric.PREREQUISITES.get(piece, ()):
        if prerequisite not in failed or prerequisite == policy.piece:
            continue
        test = rubric.Test(
            f"{prerequisite} on the {piece} fixture",
            "check",
            prerequisite,
            0.0,
            rubric.HIDDEN,
            dict(fx.target),
            (fx.seed,),
        )
        try:
            (outcomes,) = grader._judge_piece(test)
        except Exception:  # it could not even run there: no evidence
            continue
        for outcome in outcomes.values():
            if outcome.passed:
                continue
            if failure["kind"] == "raised":
                error = outcome.error or {}
                if (error.get("type"), error.get("where")) == (failure["type"], failure["where"]):
                    return prerequisite
            elif outcome.stage == "check_failed":
                return prerequisite
    return None


def _failed_public_pieces(tests, rows) -> set:
    return {
        t.piece
        for t, r in zip(tests, rows)
        if r["status"] != "passed" and t.visibility == rubric.VISIBLE and t.kind == "check"
    }


STUDENT_FAILURES = ("check_failed", "raised", "not_implemented", "timed_out", "crashed")


def name_prerequisites(tests, rows):
    """A failed row whose piece uses another piece that failed its public test says to fix that
    one first (rubric.PREREQUISITES), so one mistake reads as one mistake."""
    failed = _failed_public_pieces(tests, rows)
    for test, row in zip(tests, rows):
        if row["status"] == "passed" or row["extra_data"]["stage"] not in STUDENT_FAILURES:
            continue
        before = [p for p in rubric.PREREQUISITES.get(test.piece, ()) if p in failed and p != test.piece]
        if before:
            row["output"] += f"\n(Fix {' and '.join(before)} first: {test.piece} uses it, and it fails too.)"
            record = row["extra_data"]
            record.update(stage="prerequisite_failed", cause=record["stage"], prerequisites=before)
