"""The trusted half of the autograder: runs every test of the rubric, writes results.json.

It never imports the student's file. For each test it starts a sandboxed worker (sandbox.py)
that runs the student's code and returns raw outputs; this process rebuilds the same fixtures
from the reference module (the given code of starter/model.py: forward and the naive generate),
computes the expected outputs itself and judges with infkit.checks' judges. Whatever happens,
results.json is written by this process, last, in a `finally`.

    AUTOGRADER_ROOT=/tmp/root python -m autograder.harness    # Gradescope layout under a root
"""

import dataclasses
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from infkit import checks, loading, optional, paths

from . import load, rubric, sandbox, screen, text, verdicts
from .rows import STAGES, error_row, flags_of

ROOT = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
BUDGET_S = rubric.BUDGET_S
UPLOAD_HINT = (
    "Upload your edited model.py itself: one file named exactly model.py (not a zip, not a "
    "notebook, not a renamed copy such as 'model (1).py')."
)
STAFF_HINT = "This is a problem with the autograder, not with your code: please contact the course staff."


class HarnessError(Exception):
    """The grader itself failed (not the student's code)."""


# A flag of results.json: a job's leftovers could not be removed. main() then exits with
# CLEANUP_FAILED_EXIT, and `make grade-all` stops rather than grade the next upload here.
CLEANUP_FLAG, CLEANUP_FAILED_EXIT = sandbox.CLEANUP_FLAG, sandbox.CLEANUP_FAILED_EXIT


class WorkerTimedOut(Exception):
    """A worker ran past its limit: the student's fault only if the machine was quiet."""


class Skip(Exception):
    """A test that is not run; the message says why."""


class BudgetSpent(Skip):
    """Not run: the grading's time budget was spent on a quiet machine."""


class TimedOut(checks.CheckFailed):
    """The student's code ran past its limit on a quiet machine."""


class ImportFailed(checks.CheckFailed):
    """model.py did not import (or its import flooded the output)."""


class WorkerCrashed(checks.CheckFailed):
    """The worker died or was stopped at a limit; `limit` says which (results.json records it)."""

    def __init__(self, message: str, limit: str):
        super().__init__(message)
        self.limit = limit


class NotMeasured(Exception):
    """A timing that could not be completed because the machine was too busy: not the student's
    fault, and not a verdict. The row gets no points and says that staff will re-run it."""


NOT_MEASURED = (
    "NOT MEASURED: the grading machine was too busy to time this test ({why}). This says nothing "
    "about your code; the course staff will re-run the grading."
)


# ---------------------------------------------------------------------------------------
# The submission


def find_submission(folder: Path) -> tuple[Path | None, str]:
    """(path to model.py or None, a note for the student)."""
    files = (
        [p for p in folder.rglob("*") if p.is_file() and "__MACOSX" not in p.parts] if folder.is_dir() else []
    )
    if (folder / "model.py").is_file():
        return folder / "model.py", ""
    nested = [p for p in files if p.name == "model.py"]
    if len(nested) == 1:
        rel = nested[0].relative_to(folder)
        return nested[0], f"Graded {rel}; next time upload model.py on its own."
    names = ", ".join(sorted(str(p.relative_to(folder)) for p in files)[:10]) or "nothing"
    return None, f"No model.py in your submission (it holds: {names}). {UPLOAD_HINT}"


# ---------------------------------------------------------------------------------------
# Running one test


class Grader:
    def __init__(self, model_path: Path, work: Path, budget_s: float = BUDGET_S, timeout_scale: float = 1.0):
        self.model_path = model_path
        self.work = work
        self.deadline = time.monotonic() + budget_s
        self.timeout_scale = timeout_scale
        # Fail closed: as root, student code runs as the worker account or not at all.
        self.user, self.cannot_run = sandbox.choose_worker()
        if self.cannot_run:
            print(f"HARNESS ERROR: {self.cannot_run}")
        for warning in sandbox.confine.warnings(sandbox.confine.probe()):
            print(warning)
        if self.user:  # the worker may pass through our folder, but not list or read it
            work.chmod(0o711)
        self.code = sandbox.prepare_code_dir(work)
        self.ref = loading.load_model_module(paths.STARTER_MODEL, debug=True)
        self.import_error = None  # once the file fails to import, later tests say so and skip
        self.timed_out = set()  # pieces whose public test timed out: skip their hidden test
        self.not_implemented = set()  # pieces whose public test hit a stub: skip their hidden test
        self.tests = rubric.TESTS  # the rows of this grading (grade() sets them)
        self.batched = {}  # (piece, visibility) -> the worker results of a batch job, unused yet
        self.batch_tried = set()  # visibilities whose batch job ran (or failed: then one job per piece)
        self.piece_outcomes = {}  # (piece, visibility) -> [{behaviour: Outcome} per seed], or what stopped it
        self.speed_failure = {}  # speed piece -> how the student's code failed on its fixture
        self.speed_passed = set()  # speed pieces whose verdict passed (the leaderboard ranks these)
        self.confirmed = {}  # speed piece -> its confirmation ratio (rubric.SPEED), once measured
        self.not_measured = set()  # speed pieces whose timing the machine's load prevented
        self.fast_path_failed = set()  # pieces correct in DEBUG and wrong outside it
        self.kernel_cpu = {}  # speed piece -> role -> least CPU seconds of its worker's calls
        self.speed_reference = {}  # speed piece -> its fixture's model with the given code
        # (piece, role) -> the seed of its latest timed worker's prompts, new for each worker
        # (new_call_seed): a worker learns it only after its set-up CPU was read, so no work on
        # them can hide in its set-up
        self.call_seeds = {}
        self.last_cpu_s = self.last_setup_cpu_s = None  # of the last worker, from the kernel
        self.contention = load.contention()  # wall / CPU seconds here: 1 on a quiet machine
        self.flags = []  # for staff review, into results.json (grade() adds them)

    def new_call_seed(self, piece: str, role: str) -> int:
        """A fresh seed for one timed worker's prompts: its own, so what one worker computed
        answers nothing a later one is asked. Kept as the role's latest (call_seeds), from
        which the harness rebuilds the prompts to check that worker's outputs."""
        self.call_seeds[piece, role] = secrets.randbelow(2**31)
        return self.call_seeds[piece, role]

    def run_job(self, test: rubric.Test, role: str | None = None, batch_jobs=None) -> list:
        if self.cannot_run:
            raise HarnessError(self.cannot_run)
        if self.import_error:
            raise Skip(self.import_error)
        if batch_jobs is None:
            self._skip_if_explained(test)
        retries = 0 if batch_jobs else rubric.LOAD_RETRIES  # a batch that times out splits at once
        for attempt in range(retries + 1):
            left = self.deadline - time.monotonic()
            if left < 5:
                if self.contention > rubric.BUSY_CONTENTION:
                    raise NotMeasured(NOT_MEASURED.format(why="the time budget ran out on a busy machine"))
                raise BudgetSpent("not run: the grading time budget ran out (earlier tests were too slow).")
            scale = self.timeout_scale * self.contention * (1.5**attempt)
            timeout = min(test.timeout_s * scale, left)
            try:
                return self._run_job_once(test, role, timeout, batch_jobs)
            except WorkerTimedOut as e:
                # Quiet machine: the code itself is too slow (or hangs, or sleeps). Busy machine:
                # measure again and retry with a longer limit; if it never finishes, not measured.
                self.contention = load.contention()
                if self.contention <= rubric.BUSY_CONTENTION:
                    if test.visibility == rubric.VISIBLE:
                        self.timed_out.add(test.piece)  # its hidden test would only time out too
                    raise TimedOut(str(e)) from None
                print(f"  timed out on a busy machine (contention {self.contention:.2f}): retrying")
        raise NotMeasured(
            NOT_MEASURED.format(
                why=f"it timed out {rubric.LOAD_RETRIES + 1} times while the grader got "
                f"1/{self.contention:.1f} of a CPU"
            )
        )

    def _run_job_once(self, test: rubric.Test, role: str | None, timeout: float, batch_jobs=None) -> list:
        job = sandbox.new_job_dir(self.work, self.user)
        shape = test.shape if isinstance(test.shape, str) else dict(test.shape)
        spec = {
            "kind": test.kind,
            "piece": test.piece,
            "shape": shape,
            "seeds": list(test.seeds),
            "role": role,
        }
        if test.kind == "speed":
            spec["fixture"] = dataclasses.asdict(rubric.SPEED[test.piece].fixture)
        if test.kind == "optional":  # the worker imports the piece's probe by this name
            spec["probe"] = optional.reference(optional.PAIRS[test.piece].probe)
        if batch_jobs is not None:
            spec["jobs"] = batch_jobs
        (job / "job.json").write_text(json.dumps(spec))
        shutil.copy(self.model_path, job / "model.py")
        if self.user:
            for p in (job / "job.json", job / "model.py"):
                os.chown(p, *self.user)
        started = time.monotonic()
        timed = test.kind == "speed" and role is not None
        try:
            handshake = f"{self.new_call_seed(test.piece, role)}\n".encode() if timed else None
            result = sandbox.run_worker(self.code, job, timeout, self.user, handshake=handshake)
        except sandbox.CleanupFailed as e:
            self._cleanup_failed(e)
        except OSError as e:  # could not start the worker at all: the grader's fault
            raise HarnessError(f"could not start the worker: {e}") from e
        setup = f" ({result.setup_cpu_s:.2f} s of it set-up)" if result.setup_cpu_s is not None else ""
        print(
            f"  worker for {test.name!r}{f' ({role})' if role else ''}: exit {result.returncode}, "
            f"{result.cpu_s:.2f} s CPU{setup} in {time.monotonic() - started:.1f} s, "
            f"{result.log_bytes} bytes of output"
        )
        self.last_cpu_s, self.last_setup_cpu_s = result.cpu_s, result.setup_cpu_s
        try:
            out = self._read_output(result, timeout, test)
        finally:
            try:
                sandbox.remove_job_dir(job)
            except sandbox.CleanupFailed as e:
                self._cleanup_failed(e)
        flooded = result.log_bytes >= (sandbox.MAX_FILE_MB - 1) * 1024 * 1024
        if out["status"] == "import_error":
            err = out["error"]
            where = f" ({err['where']})" if err.get("where") else ""
            self.import_error = f"model.py failed to import: {err['type']}: {err['message']}{where}"
            if flooded:
                self.import_error = sandbox.TOO_MUCH_OUTPUT + " " + self.import_error
            raise ImportFailed(self.import_error)
        if flooded:
            raise WorkerCrashed(sandbox.TOO_MUCH_OUTPUT, "output")
        results = out["results"]
        expected = {"check": len(test.seeds), "checks": len(batch_jobs or ())}.get(test.kind, 1)
        if not isinstance(results, list) or len(results) != expected:
            raise checks.CheckFailed("the grader got incomplete outputs from your code.")
        error = (
            results[0].get("error")
            if test.kind not in ("check", "checks") and isinstance(results[0], dict)
            else None
        )
        if timed and result.setup_cpu_s is None and error is None:
            if role == "naive":  # the reference alone ran: the grader's own problem
                raise HarnessError("the reference's timed worker never reported the end of its set-up")
            raise checks.CheckFailed(
                "the grader could not time your code: its worker never reported the end of its set-up "
                "(model.py must not close, replace or write to file descriptors it did not open)."
            )
        return results

    def _cleanup_failed(self, e: Exception):
        """What a job left could not be removed: no further job runs on this machine, the row
        is the grader's failure (never the student's), and the results carry a flag that stops
        `make grade-all` (main's CLEANUP_FAILED_EXIT)."""
        self.cannot_run = f"the clean-up after a job failed, so no further test runs here ({e})"
        self.flags.append(f"{CLEANUP_FLAG}: {e}")
        raise HarnessError(self.cannot_run) from e

    def _read_output(self, result, timeout, test) -> dict:
        tail = result.log_tail.strip()
        shown = f"\nThe last lines your code printed:\n{tail[-800:]}" if tail else ""
        usable = sandbox.is_plain_file(result.out_path) and not result.timed_out and result.returncode == 0
        if not usable:
            if result.timed_out:
                raise WorkerTimedOut(sandbox.explain_crash(result, timeout) + shown)
            raise WorkerCrashed(sandbox.explain_crash(result, timeout) + shown, sandbox.crash_limit(result))
        if result.out_path.stat().st_size > sandbox.MAX_OUT_MB * 1024 * 1024:
            raise checks.CheckFailed("your code produced outputs far larger than the test needs.")
        try:
            out = torch.load(result.out_path, weights_only=True)  # plain tensors and containers only
        except Exception as e:
            raise checks.CheckFailed(
                f"the grader could not read your code's outputs ({type(e).__name__}); return plain "
                "torch tensors as the docstrings say." + shown
            ) from None
        if not isinstance(out, dict) or out.get("status") not in ("ok", "import_error"):
            raise checks.CheckFailed("the grader could not read your code's outputs." + shown)
        return out

    # -----------------------------------------------------------------------------------

    def check(self, test: rubric.Test) -> checks.Outcome:
        """One behaviour of a piece over the test's seeds. One worker probes every behaviour of
        the piece (per visibility); its outcomes, or what stopped it, serve all their rows."""
        key = (test.piece, test.visibility)
        if key not in self.piece_outcomes:
            try:
                self.piece_outcomes[key] = self._judge_piece(test)
            except Exception as e:  # Skip, NotMeasured, TimedOut...: every row of the job says so
                self.piece_outcomes[key] = e
        found = self.piece_outcomes[key]
        if isinstance(found, Exception):
            raise found
        per_seed = [outcomes[test.behaviour] for outcomes in found]
        failed = [(seed, o) for seed, o in zip(test.seeds, per_seed) if not o.passed]
        if not failed:
            seeds = f" ({len(per_seed)} seeds)" if len(per_seed) > 1 else ""
            return dataclasses.replace(per_seed[0], message=per_seed[0].message + seeds)
        seed, first = failed[0]
        if len(test.seeds) > 1:
            first = dataclasses.replace(first, message=f"{first.message} (seed {seed})")
        return first

    def _skip_if_explained(self, test: rubric.Test):
        """A hidden job whose public one timed out or hit a stub would only do the same."""
        if test.piece in self.timed_out:
            raise Skip("not run: the public test of this piece timed out.")
        if test.piece in self.not_implemented:
            raise Skip(f"not run: {checks.LABELS[test.piece]} is not implemented yet (see the public test).")

    def _batch(self, visibility: str):
        """One worker probes every checked piece of this visibility (their set-up paid once);
        its results serve _judge_piece. Where it fails (a hang, a crash, a limit), each piece
        gets its own worker instead, so the failure is charged to the piece that has it."""
        self.batch_tried.add(visibility)
        if os.environ.get("AUTOGRADER_BATCH") == "off":  # one worker per piece (the sandbox's tests)
            return
        tests = [t for t in self.tests if t.kind == "check" and t.visibility == visibility]
        jobs = list({(t.piece): t for t in tests}.values())
        if len(jobs) < 2:
            return
        batch = rubric.Test(
            f"the {visibility} checks", "checks", ",".join(t.piece for t in jobs), 0.0, visibility
        )
        batch_spec = [
            {
                "piece": t.piece,
                "shape": t.shape if isinstance(t.shape, str) else dict(t.shape),
                "seeds": list(t.seeds),
            }
            for t in jobs
        ]
        try:
            results = self.run_job(batch, batch_jobs=batch_spec)
        except (ImportFailed, HarnessError, Skip):
            raise  # true of every piece: the first row says so, the others skip
        except Exception as e:  # a time-out (busy or not), a crash, odd outputs: one worker per piece
            print(f"  the batch of {visibility} checks failed ({type(e).__name__}): one worker per piece")
            return
        for t, result in zip(jobs, results):
            self.batched[t.piece, visibility] = result

    def _judge_piece(self, test: rubric.Test) -> list:
        """[{behaviour: Outcome} per seed] for the piece and visibility of `test`."""
        self._skip_if_explained(test)
        if test.visibility not in self.batch_tried and test in self.tests:
            self._batch(test.visibility)
        found = self.batched.pop((test.piece, test.visibility), None)
        per_seed = []
        for seed, result in zip(test.seeds, found if found is not None else self.run_job(test)):
            rec = result.get("rec") if isinstance(result, dict) else None
            errors = result.get("errors") if isinstance(result, dict) else None
            if not isinstance(rec, dict) or not isinstance(errors, dict):
                raise checks.CheckFailed("the grader got incomplete outputs from your code.")
            outcomes = checks.judge(test.piece, self.ref, rec, errors, shape=test.shape, seed=seed)
            if test.visibility == rubric.VISIBLE and all(
                o.stage == "not_implemented" for o in outcomes.values()
            ):
                self.not_implemented.add(test.piece)
            per_seed.append(outcomes)
        return per_seed

    def optional_piece(self, test: rubric.Test) -> str:
        """An optional piece: its probe's record of the student's code, judged here with the
        given code by the piece's judge (infkit/optional.py). Returns the PASS detail."""
        (result,) = self.run_job(test)
        error = result["error"]
        if error is not None:
            if error.get("not_implemented"):
                raise checks.CheckFailed(f"optional piece not implemented yet ({error['message'][:160]}).")
            raise checks.CheckFailed(f"your code raised {error['type']}: {error['message'][:200]}")
        passed, message = optional.PAIRS[test.piece].judge(self.ref, result["rec"])
        if not passed:
            raise checks.CheckFailed(message)
        return message


# ---------------------------------------------------------------------------------------
# The whole run


def row_record(test: rubric.Test, stage: str) -> dict:
    """The machine-readable half of a row: what was run and which stage decided it."""
    assert stage in STAGES, stage
    if test.kind == "speed":
        fx = rubric.SPEED[test.piece].fixture
        shape, seeds = dict(fx.target), [fx.seed, fx.prompt_seed]
    else:
        shape, seeds = (test.shape if isinstance(test.shape, str) else dict(test.shape)), list(test.seeds)
    decided_by = {
        "check": lambda: checks.judge_source(test.piece, test.behaviour),
        "speed": lambda: "autograder/verdicts.py:speed_test",
        "optional": lambda: optional.source(optional.PAIRS[test.piece].judge),
    }[test.kind]()
    return {
        "piece": test.piece,
        "behaviour": test.behaviour or None,
        "decided_by": decided_by,  # the code to read for why (apply_gates when stage is "gated")
        "kind": test.kind,
        "visibility": test.visibility,
        "seeds": seeds,
        "shape": shape,
        "stage": stage,
    }


def _row(test: rubric.Test, score: float, output: str, stage: str) -> dict:
    return {
        "name": test.name,
        "score": score,
        "max_score": test.points,
        "status": "passed" if stage == "passed" else "failed",
        "output": output,
        "visibility": test.visibility,
        "extra_data": row_record(test, stage),
    }


def grade(submission_dir: Path, tests=None, budget_s: float = BUDGET_S, timeout_scale: float = 1.0) -> dict:
    """Grade a submission folder; returns the results.json content (never raises)."""
    tests = rubric.TESTS if tests is None else tests
    start = time.monotonic()
    rows, leaderboard, notes, flags = [], [], [], []
    work = Path(tempfile.mkdtemp(prefix="autograder-"))
    try:
        model_path, note = find_submission(submission_dir)
        if note:
            notes.append(note)
        # the static screen (screen.py): a file that reaches into the grader is never run
        refusal = screen.screen_upload(model_path) if model_path is not None else None
        if refusal is not None:
            notes.append(refusal.message)
            flags.append(refusal.flag)
            rows = [screen.flagged(_row(t, 0.0, refusal.message, "refused"), refusal.flag) for t in tests]
        elif model_path is None:
            rows = [_row(t, 0.0, note, "not_run") for t in tests]
            flags.append("no_model")
        else:
            grader = Grader(model_path, work, budget_s, timeout_scale)
            grader.tests = tests
            for test in tests:
                print(f"running {test.name}", flush=True)
                rows.append(run_test(grader, test))
            flags.extend(grader.flags)
            verdicts.apply_gates(grader, tests, rows)
            verdicts.name_prerequisites(tests, rows)
            leaderboard = verdicts.leaderboard(grader)
    except BaseException as e:  # a bug in the harness itself: still a valid, visible result
        traceback.print_exc()
        rows.append(error_row(f"The autograder hit an internal error ({type(e).__name__}). {STAFF_HINT}"))
    finally:
        sandbox.stop_fork_server()  # the workers' template of this grading's code folder
        try:
            sandbox.confine.remove_tree(work)
        except sandbox.CleanupFailed as e:
            print(f"HARNESS ERROR: {e}")
            flags.append(f"{CLEANUP_FLAG}: {e}")
    # the upload's words (its errors, prints, class names) made safe for every place shown
    return text.clean_results(_results(rows, leaderboard, notes, time.monotonic() - start, flags))


def run_test(grader: Grader, test: rubric.Test) -> dict:
    """One rubric row: run it and turn what happened into its results.json entry."""
    try:
        if test.kind == "check":
            return _check_row(grader, test, grader.check(test))
        run = {"speed": lambda t: verdicts.speed_test(grader, t), "optional": grader.optional_piece}
        return _row(test, float(test.points), f"PASS: {run[test.kind](test)}", "passed")
    except HarnessError as e:
        print(f"HARNESS ERROR: {e}")
        return _row(
            test, 0.0, f"ERROR: the autograder could not run this test. {STAFF_HINT}", "autograder_error"
        )
    except NotMeasured as e:
        if test.kind == "speed":  # its gated rows are withheld for staff to re-run (verdicts.apply_gates)
            grader.not_measured.add(test.piece)
        return _row(test, 0.0, str(e), "not_measured")
    except BudgetSpent as e:
        row = _row(test, 0.0, str(e), "not_run")
        row["extra_data"]["limit"] = "time budget"
        return row
    except Skip as e:
        return _row(test, 0.0, str(e), "not_run")
    except TimedOut as e:
        return _row(test, 0.0, f"FAIL: {e}", "timed_out")
    except ImportFailed as e:
        return _row(test, 0.0, f"FAIL: {e}", "import_error")
    except WorkerCrashed as e:
        row = _row(test, 0.0, f"FAIL: {e}", "crashed")
        row["extra_data"]["limit"] = e.limit
        return row
    except checks.NotImplementedYet as e:
        return _row(test, 0.0, f"FAIL: {e}", "not_implemented")
    except checks.StudentRaised as e:
        return _row(test, 0.0, f"FAIL: {e}", "raised")
    except checks.CheckFailed as e:
        return _row(test, 0.0, f"FAIL: {e}", "check_failed")
    except Exception as e:  # a malformed record from the worker (or a grader bug)
        traceback.print_exc()
        return _row(
            test,
            0.0,
            f"FAIL: the grader could not use your code's outputs ({type(e).__name__}: "
            f"{str(e)[:200]}). If your code follows the docstrings, contact the course staff.",
            "check_failed",
        )


def _check_row(grader: Grader, test: rubric.Test, outcome: checks.Outcome) -> dict:
    what = checks.BEHAVIOURS[test.piece][test.behaviour]
    if outcome.passed:
        return _row(test, float(test.points), f"PASS: {outcome.message}.", "passed")
    if outcome.fast_path:
        explained_by = rubric.FAST_PATH_EXPLAINED_BY.get(test.piece)
        if explained_by in grader.fast_path_failed:
            return _row(
                test,
                float(test.points),
                f"PASS in DEBUG. Outside DEBUG: {outcome.message} Your {explained_by} has the same problem "
                "outside DEBUG (see its fast_path rows), which explains this: fix it there.",
                "passed",
            )
        grader.fast_path_failed.add(test.piece)
    row = _row(test, 0.0, f"FAIL ({what}): {outcome.message}", outcome.stage)
    if outcome.error:  # the type of what the student's code raised, for the class report's groups
        row["extra_data"]["error"] = outcome.error.get("type")
    return row


def _results(rows, leaderboard, notes, seconds, flags=()) -> dict:
    visible = [r for r in rows if r["visibility"] == "visible"]
    hidden_pts = sum(r["max_score"] for r in rows if r["visibility"] != "visible")
    lines = notes + [
        f"Visible tests: {sum(r['score'] for r in visible):g} / {sum(r['max_score'] for r in visible):g} points.",
        f"{hidden_pts:g} more points come from hidden tests (other seeds and shapes), shown after the due "
        "date: passing every visible test does not guarantee them.",
        "The written part is graded separately.",
    ]
    stages = {r.get("extra_data", {}).get("stage") for r in rows}
    flags = [*flags, *(stage for stage in ("not_measured", "autograder_error") if stage in stages)]
    return {
        "score": sum(r["score"] for r in rows),
        "extra_data": {"flags": flags},  # for staff: a grading to re-run or to look at
        "execution_time": round(seconds, 1),
        "output": "\n".join(lines),
        "output_format": "text",
        "stdout_visibility": "hidden",
        "tests": rows,
        "leaderboard": leaderboard,
    }


def write_results(results: dict, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, path)  # replaces anything else that may have been written there


def summary(results: dict) -> str:
    lines = [f"{'score':>8}  test"]
    for r in results["tests"]:
        tag = "" if r["visibility"] == "visible" else f" [{r['visibility']}]"
        lines.append(f"{r['score']:>4g}/{r['max_score']:<3g}  {r['name']}{tag}")
        lines.append("          " + r["output"].replace("\n", "\n          ")[:600])
    lines.append(f"total {results['score']:g} / {sum(r['max_score'] for r in results['tests']):g}")
    lines += [f"leaderboard: {e['name']} = {e['value']}" for e in results.get("leaderboard", [])]
    lines.append(f"time {results['execution_time']} s")
    return "\n".join(lines)


def main() -> int:
    results_path = ROOT / "results" / "results.json"
    results = None
    text.safe_stdout()  # no text, however odd, ends the run here
    try:
        torch.set_num_threads(1)
        # On Gradescope, the worker's account must not read the grader (hidden seeds) or the upload.
        if sandbox.worker_user() and paths.ROOT.resolve() == (ROOT / "source").resolve():
            for p in (ROOT / "source", ROOT / "submission"):
                if p.exists():
                    p.chmod(0o700)
        tests = rubric.TESTS
        if os.environ.get("AUTOGRADER_TESTS"):  # e.g. "buffers,prefill": those public tests only (self-test)
            chosen = os.environ["AUTOGRADER_TESTS"].split(",")
            tests = [t for t in tests if t.visibility == rubric.VISIBLE and t.piece in chosen]
        if os.environ.get("AUTOGRADER_ROW"):  # staff re-running some rows (make grade ROW=...)
            tests = rubric.select_rows(os.environ["AUTOGRADER_ROW"])
        results = grade(ROOT / "submission", tests)
    finally:
        if results is None:  # grade() never raises, but be sure a result is written
            results = _results([error_row(STAFF_HINT)], [], [], 0.0)
        write_results(results, results_path)
    print(summary(results))
    return CLEANUP_FAILED_EXIT if any(f.startswith(CLEANUP_FLAG) for f in flags_of(results)) else 0


if __name__ == "__main__":
    sys.exit(main())
