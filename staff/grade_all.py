"""`make grade-all`: grade a whole class locally, each submission exactly as Gradescope does.

    python -m staff.grade_all SUBMISSIONS [--out build/grades] [--jobs N] [--against OLD.csv]

SUBMISSIONS: a folder of files (alice.py, ...), a folder of folders (alice/model.py, ...), or
Gradescope's "Export Submissions" zip. Each one goes through staff.local.grade_in_root (the
harness in a temporary Gradescope root, its sandbox, its results.json), JOBS at a time.
Out, under --out: grades.csv, results/<id>.json, logs/<id>.log, report.html and, with
--against, regrade_diff.csv and regrade_diff.md. Interrupted (Ctrl-C) and run again, it keeps
the results already written and grades the rest; --force grades everything again.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from autograder import sandbox, text
from autograder.rows import error_row, flags_of
from infkit.bench import plan

from . import grade_all_diff, grade_all_report, local
from .grade_all_inputs import InputError, Submission, find_submissions

# One grading keeps one core busy: the harness waits while its single-threaded worker runs. Its
# wall-clock limits (per test, and the 8-minute budget) are what an oversubscribed machine would
# break, and the speed verdicts' CPU-time counts grow when SMT siblings share a core; so at most
# one grading per physical core, one core left for the rest of the machine, and 1.5 GB of memory
# each (Gradescope's tier for this autograder; measured peak ~660 MB, the worker capped at 1 GB).
MEMORY_PER_JOB_GB = 1.5
# Per submission, as Gradescope's default limit: the harness's own budget is 480 s of tests.
TIMEOUT_S = 600.0


@dataclass
class Record:
    """One submission and what its grading left (results.json as the harness wrote it)."""

    sub: Submission
    results: dict
    status: str  # "graded", or why there is no harness result: "time limit", "harness error"
    seconds: float = 0.0
    load: float | None = None  # the machine's load average when it finished: a busy machine
    # makes wall-clock limits fail correct code (docs/grading-all.md)


def physical_cores() -> int:
    """Cores this process may use, counting SMT siblings once (Linux topology when readable)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def available_memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def default_jobs(others_cores: float | None = 0.0) -> int:
    """One grading per physical core that other programs leave free (run.sh's rule for its
    threads, infkit.bench.plan.choose_threads), at most what the memory holds at 1.5 GB each.
    others_cores: the cores' worth of CPU other programs use now (None: unknown, all free)."""
    jobs, _ = plan.choose_threads(physical_cores(), others_cores)
    memory = available_memory_gb()
    if memory is not None:
        jobs = min(jobs, int(memory // MEMORY_PER_JOB_GB))
    return max(1, jobs)


# ---------------------------------------------------------------------------------------
# Grading, resumable


def _write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)  # a grading interrupted half-way leaves no half-written file


def fallback_results(why: str) -> dict:
    """results.json for a submission the harness gave none for (as run_autograder's fallback)."""
    return {
        "score": 0.0,
        "execution_time": 0,
        "output": why,
        "tests": [error_row(why)],
        "leaderboard": [],
        "extra_data": {"flags": ["autograder_error"]},
    }


def kept_record(sub: Submission, out: Path, tests: str | None) -> Record | None:
    """The earlier grading of this same upload with the same tests, if one was written."""
    meta_path, results_path = out / "meta" / f"{sub.id}.json", out / "results" / f"{sub.id}.json"
    try:
        meta = json.loads(meta_path.read_text())
        results = json.loads(results_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != sub.fingerprint() or meta.get("tests") != tests:
        return None
    if meta.get("status") == CLEANUP_FAILED:  # stopped on our side: graded again
        return None
    return Record(sub, results, meta.get("status", "graded"), meta.get("seconds", 0.0), meta.get("load"))


def grade_one(sub: Submission, out: Path, tests, timeout_s, stop: threading.Event, grade_fn) -> Record | None:
    """Grade one submission and write its results and meta; None when interrupted (nothing kept)."""
    if stop.is_set():
        return None
    log_path = out / "logs" / f"{sub.id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = sub.fingerprint()
    try:
        with open(log_path, "wb") as log:
            graded = grade_fn(
                sub.path, upload_name=sub.upload_name, tests=tests, log=log, timeout_s=timeout_s, stop=stop
            )
    except Exception:  # a bug on our side (say, an unreadable file): this submission only
        with open(log_path, "a") as log:
            traceback.print_exc(file=log)
        graded = None
    if graded is not None and graded.interrupted:
        return None
    if graded is None:
        status, results = (
            "harness error",
            fallback_results(f"grade-all could not run the harness: see logs/{sub.id}.log"),
        )
    elif graded.timed_out:
        status = "time limit"
        results = fallback_results(
            f"the grading took longer than {timeout_s:.0f} s and was stopped (logs/{sub.id}.log)"
        )
    elif graded.results is None:
        status = "harness error"
        results = fallback_results(
            f"the harness ended (exit {graded.returncode}) without writing results.json (logs/{sub.id}.log)"
        )
    elif graded.returncode == sandbox.CLEANUP_FAILED_EXIT or _cleanup_flags(graded.results):
        status, results = CLEANUP_FAILED, graded.results
        stop.set()  # here, before this thread takes the next submission (run_batch says why)
    else:
        status, results = "graded", graded.results
    seconds = graded.seconds if graded is not None else 0.0
    _write_json(out / "results" / f"{sub.id}.json", results)
    meta = {"id": sub.id, "source": str(sub.path), "fingerprint": fingerprint, "tests": tests}
    load = round(os.getloadavg()[0], 2)
    meta.update(
        status=status, seconds=round(seconds, 1), load=load, finished=time.strftime("%Y-%m-%d %H:%M:%S")
    )
    _write_json(out / "meta" / f"{sub.id}.json", meta)
    return Record(sub, results, status, seconds, load)


CLEANUP_FAILED = "cleanup failed"  # a Record's status: what a job left could not be removed


class GradingStopped(Exception):
    """A grading's clean-up failed: the machine is not clean, so no further submission is
    graded on it (the next one would be graded beside the leftovers). For staff to fix."""

    def __init__(self, records: list, why: str):
        super().__init__(why)
        self.records = records


def _cleanup_flags(results: dict) -> list[str]:
    return [f for f in flags_of(results) if f.startswith(sandbox.CLEANUP_FLAG)]


def run_batch(
    subs,
    out: Path,
    jobs: int,
    tests=None,
    force=False,
    timeout_s=TIMEOUT_S,
    grade_fn=None,
    progress=True,
    retry_limits=False,
) -> tuple[list[Record], bool]:
    """Grade every submission not already graded (and, with retry_limits, those whose grading
    hit a time limit); (records of those graded so far, finished)."""
    grade_fn = grade_fn or _own_account_per_job(local.grade_in_root, jobs)
    records, todo = {}, []
    for sub in subs:
        kept = None if force else kept_record(sub, out, tests)
        if kept and retry_limits and grade_all_report.hit_time_limit(kept):
            kept = None
        if kept:
            records[sub.id] = kept
        else:
            todo.append(sub)
    if records:
        print(
            f"{len(records)} submissions already graded in {out} are kept (--force grades them again)",
            flush=True,
        )
    stop, finished, stopped = threading.Event(), True, None
    bar = _progress(len(todo), jobs) if progress and todo else None
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(grade_one, s, out, tests, timeout_s, stop, grade_fn) for s in todo]
        for future in as_completed(futures):
            record = future.result()
            if record is not None and record.status == CLEANUP_FAILED and stopped is None:
                stopped = record  # grade nothing more here: the gradings under way stop too
                stop.set()
            if record is not None:
                records[record.sub.id] = record
                if bar is not None:
                    bar.set_postfix_str(f"{record.sub.id}: {record.results.get('score', 0):g}", refresh=False)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        finished = False
        stop.set()
        print(
            "\ninterrupted: stopping the gradings under way (their results are not kept)...", file=sys.stderr
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    graded = [records[s.id] for s in subs if s.id in records]
    if stopped is not None:
        why = (
            "; ".join(_cleanup_flags(stopped.results)) or f"the harness exited {sandbox.CLEANUP_FAILED_EXIT}"
        )
        raise GradingStopped(
            graded,
            f"grading {stopped.sub.id} left files the grader could not remove ({why}); nothing more was "
            "graded on this machine. Remove them (or use a fresh machine) and run the same command "
            f"again: the submissions graded so far are kept, {stopped.sub.id} is graded again "
            f"(logs/{stopped.sub.id}.log).",
        )
    return graded, finished


def _own_account_per_job(grade_fn, jobs: int):
    """As root, the sandbox kills every process of the worker account after each job, so
    gradings that run side by side each get an account (a numeric uid) of their own."""
    if jobs <= 1 or os.geteuid() != 0:
        return grade_fn
    slots = queue.Queue()
    for slot in range(jobs):
        slots.put(2_100_000_000 + (os.getpid() % 100_000) * 16 + slot)

    def graded(*args, **kwargs):
        uid = slots.get()
        try:
            return grade_fn(*args, worker_user=str(uid), **kwargs)
        finally:
            slots.put(uid)

    return graded


def _progress(total: int, jobs: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    # smoothing=0: the time left from the average rate so far, steadier with several jobs
    return tqdm(total=total, desc=f"grading ({jobs} at a time)", unit="submission", smoothing=0)


def warn_if_busy(jobs: int, others_cores: float | None):
    """The harness's limits are wall-clock: on a machine already busy a correct submission can
    run out of them (measured: the solution lost 20 of 50 points at a third of a core).
    others_cores: what other programs use now (plan.others_cores_now); None: the load average."""
    cpus = os.cpu_count() or 1
    others = others_cores if others_cores is not None else os.getloadavg()[0]
    if others + jobs > cpus + 0.5:
        print(
            f"warning: this machine is busy (other programs use {others:.1f} of {cpus} CPUs): with {jobs} "
            "gradings more, tests may run out of their wall-clock limits and fail correct code. "
            "Grade on a quiet machine or with fewer JOBS; the report lists every grading that hit "
            "a time limit, and --retry-limits grades those again.",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------------------
# The command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m staff.grade_all",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("submissions", type=Path, help="a folder of submissions, or Gradescope's export zip")
    parser.add_argument(
        "--out", type=Path, default=Path("build/grades"), help="output folder (default: build/grades)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="gradings at a time (default: one per physical core that other programs leave free, "
        "1.5 GB each)",
    )
    parser.add_argument(
        "--against", type=Path, help="an earlier grades.csv: write the regrade diff against it"
    )
    parser.add_argument(
        "--force", action="store_true", help="grade again submissions already graded in --out"
    )
    parser.add_argument(
        "--tests",
        help="only the public tests of these pieces, e.g. buffers,prefill (a quick look; as AUTOGRADER_TESTS)",
    )
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help=f"seconds per submission (default {TIMEOUT_S:g})"
    )
    parser.add_argument(
        "--retry-limits",
        action="store_true",
        help="grade again the submissions kept from an earlier run whose grading hit a time limit",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    text.safe_stdout()  # the uploads' words never end the run
    if args.against is not None and not args.against.is_file():
        print(
            f"grade-all: --against {args.against}: no such file (give an earlier run's grades.csv)",
            file=sys.stderr,
        )
        return 2
    if args.against is not None and args.against.resolve().parent == args.out.resolve():
        print(
            f"grade-all: --against {args.against} is this run's own grades.csv: grade into another "
            "--out (OUT=...) so that the earlier grades and messages stay as they were",
            file=sys.stderr,
        )
        return 2
    try:
        subs, notes = find_submissions(args.submissions, args.out / "export")
    except InputError as e:
        print(f"grade-all: {e}", file=sys.stderr)
        return 2
    others = plan.others_cores_now()  # half a second, before any grading starts
    jobs = args.jobs if args.jobs > 0 else default_jobs(others)
    print(
        f"{len(subs)} submissions in {args.submissions}; grading {jobs} at a time into {args.out}", flush=True
    )
    warn_if_busy(jobs, others)
    try:
        records, finished = run_batch(
            subs,
            args.out,
            jobs,
            args.tests,
            args.force,
            args.timeout,
            progress=not args.no_progress,
            retry_limits=args.retry_limits,
        )
    except GradingStopped as e:  # the report of what was graded, then the error for staff
        finish(e.records, subs, notes + [f"STOPPED: {e}"], args.out, args.against, args.tests, False)
        print(f"grade-all: ERROR: {e}", file=sys.stderr)
        return 1
    return finish(records, subs, notes, args.out, args.against, args.tests, finished)


def finish(records, subs, notes, out: Path, against: Path | None, tests, finished: bool) -> int:
    """Write grades.csv, the regrade diff and report.html from the records graded so far."""
    if not finished:
        notes = notes + [
            f"interrupted: {len(subs) - len(records)} of {len(subs)} submissions not graded yet; run again to resume"
        ]
    grade_all_report.write_csv(records, out / "grades.csv")
    diff = None
    if against is not None:
        try:
            diff = grade_all_diff.regrade_diff(records, against)
        except (OSError, ValueError, KeyError) as e:  # the grades are written: say why no diff
            print(f"grade-all: no regrade diff: {e}", file=sys.stderr)
        else:
            grade_all_diff.write(diff, out)
            print(grade_all_diff.as_text(diff))
    report = grade_all_report.write_report(records, notes, out, diff=diff, tests=tests)
    print(grade_all_report.summary_text(records, notes))
    print(f"wrote {out / 'grades.csv'}, {report}, results in {out / 'results'}")
    return 0 if finished else 130


if __name__ == "__main__":
    sys.exit(main())
