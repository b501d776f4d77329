"""`make grade-all`: a class graded through the Gradescope flow, its grade sheet, report and
regrade diff; bad input named, interruptions resumed. The grading test uses the real harness on
a synthetic Gradescope export with a tiny budget (the public prefill test only)."""

import csv
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from autograder import rubric, sandbox
from infkit import paths
from staff import grade_all, grade_all_inputs, grade_all_report, local
from staff.grade_all_inputs import InputError, find_submissions, parse_metadata
from staff.local import Graded
from tests.submissions import variants

METADATA = """\
submission_1001:
  :submitters:
  - :name: Alice Liddell
    :sid: '101'
    :email: alice@example.edu
  :created_at: 2026-03-01 10:00:00.000000000 -08:00
  :score: !ruby/object:BigDecimal 18:0.3e2
submission_1002:
  :submitters:
  - :name: Bob Starter
    :email: bob@example.edu
submission_1003:
  :submitters:
  - :name: Carol Slot
    :email: carol@example.edu
submission_1004:
  :submitters:
  - :name: Dan Decode
    :email: dan@example.edu
  - :name: Dora Decode
    :email: dora@example.edu
submission_1005:
  :submitters:
  - :name: Eve Exit
    :email: eve@example.edu
submission_1008:
  :submitters:
  - :name: Gone Missing
    :email: gone@example.edu
"""


def export_zip(tmp_path: Path) -> Path:
    """What Gradescope's "Export Submissions" gives: a top folder, the metadata, a folder per
    submission (one not in the metadata, one listed without a folder), and macOS debris."""
    uploads = {
        "submission_1001/model.py": variants.solution_text(),
        "submission_1002/model.py": variants.starter_text(),
        "submission_1003/model.py": variants.buggy("prefill_wrong_slot"),  # fails prefill
        "submission_1004/model.py": variants.buggy("cache_not_advanced"),  # a decode bug: prefill passes
        "submission_1005/model.py": variants.hostile("os_exit_in_method", tmp_path, paths.ROOT),
        "submission_1006/Model.py": variants.solution_text(),  # misnamed, and not in the metadata
    }
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("assignment_42_export/submission_metadata.yml", METADATA)
        z.writestr("__MACOSX/assignment_42_export/._submission_metadata.yml", "junk")
        for name, text in uploads.items():
            z.writestr(f"assignment_42_export/{name}", text)
    return path


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


PIECE_OF = {t.name: t.piece for t in rubric.TESTS}
PREFILL_ROWS = [t.name for t in rubric.TESTS if t.piece == "prefill" and t.visibility == rubric.VISIBLE]
PREFILL = next(n for n in PREFILL_ROWS if "keys_values" in n)  # 2 of the 4 public points


@pytest.fixture(scope="module")
def graded_export(tmp_path_factory):
    """The export graded once, two at a time, through the real harness (prefill only)."""
    tmp = tmp_path_factory.mktemp("export")
    out = tmp / "grades"
    assert grade_all.main([str(export_zip(tmp)), "--out", str(out), "--jobs", "2", "--tests", "prefill"]) == 0
    return tmp, out


@pytest.mark.grading
def test_grade_sheet_from_an_export(graded_export):
    _, out = graded_export
    rows = read_csv(out / "grades.csv")
    assert sorted(rows) == [f"submission_100{i}" for i in range(1, 7)]
    score = {sid: float(row["total"]) for sid, row in rows.items()}
    assert score == {
        "submission_1001": 4,
        "submission_1002": 0,
        "submission_1003": 2,  # keys in the wrong slot: the keys_values rows only
        "submission_1004": 4,
        "submission_1005": 0,
        "submission_1006": 0,
    }
    for row in rows.values():
        assert sum(float(row[n]) for n in PREFILL_ROWS) == float(row["total"]) and row["max"] == "4"
    alice, dan = rows["submission_1001"], rows["submission_1004"]
    assert (alice["student"], alice["email"], alice["sid"]) == ("Alice Liddell", "alice@example.edu", "101")
    assert dan["student"] == "Dan Decode; Dora Decode" and dan["email"] == "dan@example.edu; dora@example.edu"
    frank = rows["submission_1006"]
    assert frank["problems"] == "not in submission_metadata.yml: student unknown; no model.py"
    assert frank["student"] == "submission_1006" and frank["email"] == ""
    assert all(row["status"] == "graded" for row in rows.values())
    # every results.json is the harness's own, as Gradescope would show it
    eve = json.loads((out / "results" / "submission_1005.json").read_text())
    assert "do not call sys.exit()" in eve["tests"][0]["output"]
    misnamed = json.loads((out / "results" / "submission_1006.json").read_text())
    assert "named exactly model.py" in misnamed["output"] and "(it holds: Model.py)" in misnamed["output"]


@pytest.mark.grading
def test_report_names_failures_limits_and_input_problems(graded_export):
    _, out = graded_export
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # histogram, points lost (no speed measured)
    assert "submission_1008 is listed in submission_metadata.yml but has no folder" in page
    assert "prefill output: not_implemented" in page
    records = [
        grade_all.Record(s, json.loads((out / "results" / f"{s.id}.json").read_text()), "graded")
        for s in find_submissions(out / "export", out / "unused")[0]
    ]
    lost = {name: (below, points) for name, _, below, points in grade_all_report.points_lost(records)}
    assert lost[PREFILL] == (4, 8)
    limits = grade_all_report.limit_rows(records)
    assert {(r[0], r[3]) for r in limits} == {("submission_1005", "worker crashed")}
    assert "worker crashed" in page and "Eve Exit" in page
    groups = {message: count for message, count, _, _ in grade_all_report.failure_groups(records)}
    expected = {"prefill keys_values: check_failed": 1}  # keys in the wrong slot
    for behaviour in ("output", "keys_values", "seq_pos"):
        expected[f"prefill {behaviour}: not_implemented (NotImplementedError)"] = 1  # the starter
        expected[f"prefill {behaviour}: crashed (exit)"] = 1  # os._exit in a method
        expected[f"prefill {behaviour}: not_run"] = 1  # no model.py in the upload
    assert groups == expected
    # every submission with a model.py has a leaderboard: no speed test ran, so none measured
    figures = grade_all_report.speed_figures(records)
    assert figures and all(values == [0.0] * 5 for values in figures.values())


@pytest.mark.grading
def test_resume_keeps_results_and_regrade_diff(graded_export, monkeypatch, capsys):
    tmp, out = graded_export
    # last term's grading: Bob had the prefill points, Alice had lost them
    old = tmp / "old"
    shutil.copytree(out, old)
    rows = read_csv(old / "grades.csv")
    rows["submission_1001"].update({"total": "0", PREFILL: "0"})
    rows["submission_1002"].update({"total": "4", PREFILL: "2"})
    with open(old / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows["submission_1001"]))
        w.writeheader()
        w.writerows(rows.values())
    alice_old = json.loads((old / "results" / "submission_1001.json").read_text())
    (old_row,) = [t for t in alice_old["tests"] if t["name"] == PREFILL]
    old_row["output"] = "FAIL: after a prefill of 12 tokens, seq_pos is 13."
    (old / "results" / "submission_1001.json").write_text(json.dumps(alice_old))

    def no_grading(*args, **kwargs):
        raise AssertionError("a submission already graded was graded again")

    monkeypatch.setattr(local, "grade_in_root", no_grading)
    export = tmp / "export.zip"
    assert (
        grade_all.main(
            [str(export), "--out", str(out), "--tests", "prefill", "--against", str(old / "grades.csv")]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "6 submissions already graded" in printed
    assert "1 gained points, 1 lost points" in printed and "4 unchanged" in printed
    with open(out / "regrade_diff.csv", newline="") as f:
        changes = {row["id"]: row for row in csv.DictReader(f)}
    assert sorted(changes) == ["submission_1001", "submission_1002"]
    alice, bob = changes["submission_1001"], changes["submission_1002"]
    assert (alice["test"], alice["old_score"], alice["new_score"], alice["change"]) == (
        PREFILL,
        "0",
        "2",
        "+2",
    )
    assert alice["old_message"] == "FAIL: after a prefill of 12 tokens, seq_pos is 13."
    assert alice["new_message"].startswith("PASS")
    assert bob["change"] == "-2" and "not implemented yet" in bob["new_message"]
    assert (alice["new_stage"], bob["new_stage"]) == ("passed", "not_implemented")  # from the records
    assert (
        "## submission_1001: 0 -> 4 (+4), Alice Liddell <alice@example.edu>"
        in (out / "regrade_diff.md").read_text()
    )
    assert "Regrade diff" in (out / "report.html").read_text()


# ---------------------------------------------------------------------------------------
# Inputs


def test_metadata_read_with_pyyaml():
    meta = parse_metadata(METADATA)
    assert meta["submission_1004"] == [
        {"name": "Dan Decode", "email": "dan@example.edu"},
        {"name": "Dora Decode", "email": "dora@example.edu"},
    ]
    assert meta["submission_1001"] == [{"name": "Alice Liddell", "sid": "101", "email": "alice@example.edu"}]
    with pytest.raises(grade_all_inputs.InputError, match="not valid YAML"):
        parse_metadata("submission_1:\n  :submitters: [unclosed")


def test_folder_layouts_and_two_files_for_one_student(tmp_path):
    (tmp_path / "alice.py").write_text("a")
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "model.py").write_text("b")
    (tmp_path / ".DS_Store").write_text("")
    (tmp_path / "Carol Smith.py").write_text("c")
    subs, notes = find_submissions(tmp_path, tmp_path / "unpacked")
    by_id = {s.id: s for s in subs}
    assert sorted(by_id) == ["Carol_Smith", "alice.ipynb", "alice.py", "bob"] and notes == []
    assert by_id["alice.py"].upload_name == "model.py" and by_id["alice.ipynb"].upload_name == "alice.ipynb"
    assert "2 submissions for alice" in by_id["alice.py"].problems[0]
    assert by_id["bob"].upload_name is None and not by_id["bob"].problems


def test_unpacked_export_flags_one_student_in_two_folders(tmp_path):
    export = tmp_path / "assignment_7_export"
    for folder in ("submission_1", "submission_2", "submission_3"):
        (export / folder).mkdir(parents=True)
        (export / folder / "model.py").write_text(folder)
    (export / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :name: Ann\n    :email: ann@example.edu\n"
        "submission_2:\n  :submitters:\n  - :name: Ann B.\n    :email: ann@example.edu\n"
        "submission_3:\n  :submitters:\n  - :name: Ben\n    :email: ben@example.edu\n"
    )
    subs, notes = find_submissions(tmp_path, tmp_path / "unpacked")
    problems = {s.id: s.problems for s in subs}
    assert (
        problems["submission_1"]
        == problems["submission_2"]
        == ["ann@example.edu has 2 submissions (submission_1, submission_2): each graded"]
    )
    assert problems["submission_3"] == [] and notes == []


def test_bad_inputs_say_what_to_pass(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        find_submissions(tmp_path / "empty", tmp_path / "x")
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as z:
        z.writestr("alice/model.py", "")
    with pytest.raises(InputError, match="not a Gradescope export.*Export Submissions"):
        find_submissions(tmp_path / "class.zip", tmp_path / "x")
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("submission_metadata.yml", "")
        z.writestr("../outside/model.py", "")
    with pytest.raises(InputError, match="unsafe path"):
        find_submissions(tmp_path / "evil.zip", tmp_path / "x")
    assert not (tmp_path / "outside").exists()
    (tmp_path / "model.py").write_text("")
    with pytest.raises(InputError, match="make grade SUBMISSION="):
        find_submissions(tmp_path / "model.py", tmp_path / "x")
    assert grade_all.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "grades.csv").write_text("id,total\n")
    args = [
        str(tmp_path / "class.zip"),
        "--out",
        str(tmp_path / "o"),
        "--against",
        str(tmp_path / "o" / "grades.csv"),
    ]
    assert grade_all.main(args) == 2  # its own sheet would be overwritten while it is compared
    assert "this run's own grades.csv" in capsys.readouterr().err


def test_help():
    with pytest.raises(SystemExit) as e:
        grade_all.main(["--help"])
    assert e.value.code == 0


def test_the_report_reads_records_never_the_wording(graded_export):
    """Every message reworded: the report's groups, limits, points and flags are unchanged,
    because they come from each row's record (extra_data), not from its output."""
    _, out = graded_export
    subs = find_submissions(out / "export", out / "unused")[0]
    results = {s.id: json.loads((out / "results" / f"{s.id}.json").read_text()) for s in subs}

    def report(reword: bool):
        records = []
        for s in subs:
            r = json.loads(json.dumps(results[s.id]))
            if reword:
                r["output"] = "reworded"
                for t in r["tests"]:
                    t["output"] = f"REWORDED {len(t['output'])}"
            records.append(grade_all.Record(s, r, "graded"))
        return (
            grade_all_report.failure_groups(records),
            [row[:4] for row in grade_all_report.limit_rows(records)],
            grade_all_report.points_lost(records),
            [grade_all_report.problems(r) for r in records],
        )

    assert report(reword=True) == report(reword=False)


def fake_results(score: float) -> dict:
    test = {"name": "t", "score": score, "max_score": 1.0, "status": "passed" if score else "failed"}
    test["extra_data"] = {
        "piece": "buffers",
        "behaviour": "layout",
        "stage": "passed" if score else "check_failed",
    }
    return {"score": score, "tests": [dict(test, output="PASS" if score else "FAIL: no")], "leaderboard": []}


def folder_of(tmp_path: Path, n: int) -> list:
    for i in range(n):
        (tmp_path / "class" / f"s{i}").mkdir(parents=True)
        (tmp_path / "class" / f"s{i}" / "model.py").write_text(str(i))
    return find_submissions(tmp_path / "class", tmp_path / "x")[0]


def test_one_bad_submission_never_stops_the_batch(tmp_path):
    subs = folder_of(tmp_path, 4)

    def grade(path, **kwargs):
        name = path.name
        if name == "s1":
            raise OSError("cannot copy")  # our side failed for this one only
        if name == "s2":
            return Graded(None, None, 600.0, timed_out=True)
        if name == "s3":
            return Graded(None, -9, 3.0)  # the harness was killed before writing results
        return Graded(fake_results(1.0), 0, 1.0)

    records, finished = grade_all.run_batch(subs, tmp_path / "out", 2, grade_fn=grade, progress=False)
    assert finished
    status = {r.sub.id: (r.status, r.results["score"]) for r in records}
    assert status == {
        "s0": ("graded", 1.0),
        "s1": ("harness error", 0.0),
        "s2": ("time limit", 0.0),
        "s3": ("harness error", 0.0),
    }
    assert "OSError: cannot copy" in (tmp_path / "out" / "logs" / "s1.log").read_text()
    limits = {row[0]: row[3] for row in grade_all_report.limit_rows(records)}
    assert limits == {"s1": "harness error", "s2": "time limit", "s3": "harness error"}

    regraded = []

    def budget_ran_out_for_s0(path, **kwargs):  # a test out of time, as the harness says it
        regraded.append(path.name)
        results = fake_results(0.0)
        results["tests"][0]["output"] = (
            "not run: the grading time budget ran out (earlier tests were too slow)."
        )
        results["tests"][0]["extra_data"].update(stage="not_run", limit="time budget")
        return Graded(results if path.name == "s0" else fake_results(1.0), 0, 1.0)

    out = tmp_path / "out"
    grade_all.run_batch(subs, out, 2, grade_fn=budget_ran_out_for_s0, progress=False, retry_limits=True)
    assert regraded == ["s2"]  # kept results that hit a time limit, and only those
    records, _ = grade_all.run_batch(subs, out, 2, grade_fn=budget_ran_out_for_s0, progress=False, force=True)
    assert [r.sub.id for r in records if grade_all_report.hit_time_limit(r)] == ["s0"]


def test_interrupted_batch_resumes_and_regrades_changed_uploads(tmp_path):
    subs = folder_of(tmp_path, 5)
    out, calls = tmp_path / "out", []
    lock = threading.Lock()

    def interrupted_at_s3(path, stop, **kwargs):
        if path.name == "s3":
            raise KeyboardInterrupt  # as Ctrl-C reaches the main thread while s3 is graded
        if path.name == "s4":  # what grade_in_root does once `stop` is set: stops, keeps nothing
            assert stop.wait(10)
            return Graded(None, None, 0.1, interrupted=True)
        with lock:
            calls.append(path.name)
        return Graded(fake_results(1.0), 0, 0.1)

    records, finished = grade_all.run_batch(subs, out, 1, grade_fn=interrupted_at_s3, progress=False)
    assert not finished and [r.sub.id for r in records] == ["s0", "s1", "s2"]
    assert sorted(p.stem for p in (out / "results").glob("*.json")) == ["s0", "s1", "s2"]

    (tmp_path / "class" / "s0" / "model.py").write_text("changed")  # a new upload: graded again
    subs = find_submissions(tmp_path / "class", tmp_path / "x")[0]
    calls.clear()

    def grade(path, **kwargs):
        calls.append(path.name)
        return Graded(fake_results(0.0), 0, 0.1)

    records, finished = grade_all.run_batch(subs, out, 2, grade_fn=grade, progress=False)
    assert finished and sorted(calls) == ["s0", "s3", "s4"]
    assert {r.sub.id: r.results["score"] for r in records} == {"s0": 0, "s1": 1, "s2": 1, "s3": 0, "s4": 0}
    records, _ = grade_all.run_batch(subs, out, 2, force=True, grade_fn=grade, progress=False)
    assert len(calls) == 3 + 5


def test_default_jobs_take_the_free_cores_and_fit_memory(monkeypatch):
    """A quiet 4-core machine grades 4 at a time (300 in about 1.1 hours at 50 CPU-s each); other
    programs' cores are left to them; memory caps the count at 1.5 GB a grading."""
    monkeypatch.setattr(grade_all, "physical_cores", lambda: 16)
    monkeypatch.setattr(grade_all, "available_memory_gb", lambda: 100.0)
    assert grade_all.default_jobs() == 16
    assert grade_all.default_jobs(others_cores=2.0) == 14
    assert grade_all.default_jobs(others_cores=None) == 16
    monkeypatch.setattr(grade_all, "available_memory_gb", lambda: 6.0)
    assert grade_all.default_jobs() == 4
    monkeypatch.setattr(grade_all, "physical_cores", lambda: 4)
    monkeypatch.setattr(grade_all, "available_memory_gb", lambda: 16.0)
    assert grade_all.default_jobs() == 4
    assert grade_all.default_jobs(others_cores=1.0) == 3
    monkeypatch.setattr(grade_all, "physical_cores", lambda: 2)
    assert grade_all.default_jobs() == 2
    assert grade_all.default_jobs(others_cores=2.0) == 1


# ---------------------------------------------------------------------------------------
# Slow: a class of 20, two at a time, against one grading on its own


@pytest.mark.slow
def test_parallel_verdicts_match_one_at_a_time(tmp_path):
    alone = local.grade_in_root(paths.SOLUTION_MODEL, upload_name="model.py").results
    folder = tmp_path / "class"
    folder.mkdir()
    texts = {f"solution{i}": variants.solution_text() for i in range(8)}
    texts["starter"] = variants.starter_text()
    texts.update({name: variants.buggy(name) for name in sorted(variants.BUGGY)[:11]})
    assert len(texts) == 20
    for name, text in texts.items():
        (folder / f"{name}.py").write_text(text)
    out = tmp_path / "grades"
    assert grade_all.main([str(folder), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    rows = read_csv(out / "grades.csv")
    verdicts = [(t["name"], t["status"]) for t in alone["tests"]]
    assert alone["score"] == 50
    for i in range(8):
        results = json.loads((out / "results" / f"solution{i}.json").read_text())
        assert [(t["name"], t["status"]) for t in results["tests"]] == verdicts, results
        assert rows[f"solution{i}"]["total"] == "50"
    assert rows["starter"]["total"] == "0"
    for name in sorted(variants.BUGGY)[:11]:
        must_fail = variants.BUGGY[name][0]
        results = json.loads((out / "results" / f"{name}.json").read_text())
        public = [t for t in results["tests"] if t["visibility"] == "visible" and "(public)" in t["name"]]
        failed = {PIECE_OF[t["name"]] for t in public if t["status"] == "failed"}
        assert set(must_fail) <= failed, (name, failed)


# ---------------------------------------------------------------------------------------
# Issue 28: one upload cannot touch another's grade; a failed clean-up stops the batch


def test_a_deep_tree_and_hostile_text_then_the_solution_in_one_batch(tmp_path):
    """A 1,500-level tree (odd names, a locked folder, links out) in the job's folder and the
    shared folders, then an import error of lone surrogates and terminal escapes, then the
    solution, then a forged-probe upload, in one `make grade-all`, one at a time on the same
    worker account: 0, 0, full marks of the tests run and 0, all "graded", the forgery flagged,
    nothing left behind, and a report.html that shows the odd text escaped."""
    token = "ag" + tmp_path.name[-10:]
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "a_deep_tree.py").write_text(variants.hostile("deep_tree", tmp_path, paths.ROOT, token=token))
    (folder / "b_odd_text.py").write_text(variants.hostile("hostile_text_at_import", tmp_path, paths.ROOT))
    (folder / "c_solution.py").write_text(variants.solution_text())
    (folder / "d_forged.py").write_text(variants.hostile("forges_probes", tmp_path, paths.ROOT))
    out = tmp_path / "grades"
    args = [str(folder), "--out", str(out), "--jobs", "1", "--no-progress", "--tests", "buffers,prefill"]
    assert grade_all.main(args) == 0
    rows = read_csv(out / "grades.csv")
    assert {sid: (row["total"], row["status"]) for sid, row in rows.items()} == {
        "a_deep_tree": ("0", "graded"),
        "b_odd_text": ("0", "graded"),
        "c_solution": ("7", "graded"),
        "d_forged": ("0", "graded"),
    }
    assert rows["d_forged"]["problems"].startswith("refused: model.py line ")  # for staff review
    assert rows["a_deep_tree"]["problems"] == rows["c_solution"]["problems"] == ""
    assert not [p for p in ("/tmp", "/var/tmp", "/dev/shm") if (Path(p) / f"deep-{token}").exists()]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "b_odd_text" in page and "\\x1b[" in page and "\x1b" not in page  # numbers show as #


def test_a_failed_clean_up_stops_the_batch_for_staff(tmp_path, monkeypatch, capsys):
    """The grading whose clean-up failed is the last one on this machine: the batch stops with
    an error for staff (exit 1), the report says so, and the next run grades that submission
    again and the rest."""
    folder_of(tmp_path, 3)
    graded = []

    def dirty_s0(path, **kwargs):
        graded.append(path.name)
        if path.name == "s0":
            results = fake_results(0.0)
            results["extra_data"] = {"flags": ["cleanup failed: could not remove '/tmp/x': a test's failure"]}
            return Graded(results, sandbox.CLEANUP_FAILED_EXIT, 1.0)
        return Graded(fake_results(1.0), 0, 1.0)

    monkeypatch.setattr(local, "grade_in_root", dirty_s0)
    out = tmp_path / "out"
    args = [str(tmp_path / "class"), "--out", str(out), "--jobs", "1", "--no-progress"]
    assert grade_all.main(args) == 1
    assert graded == ["s0"]
    err = capsys.readouterr().err
    assert "grade-all: ERROR: grading s0 left files the grader could not remove" in err
    assert "STOPPED: grading s0" in (out / "report.html").read_text()

    monkeypatch.setattr(
        local,
        "grade_in_root",
        lambda path, **kwargs: graded.append(path.name) or Graded(fake_results(1.0), 0, 1.0),
    )
    assert grade_all.main(args) == 0
    assert graded == ["s0", "s0", "s1", "s2"]


def test_the_busy_warning_reads_what_other_programs_use(monkeypatch, capsys):
    """The start-up warning uses the same measure as the default JOBS (what other programs use
    now, not the lagging load average), and the load average only where that is unknown."""
    monkeypatch.setattr(grade_all.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(grade_all.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    grade_all.warn_if_busy(2, others_cores=0.1)
    assert capsys.readouterr().err == ""
    grade_all.warn_if_busy(2, others_cores=1.5)
    assert "other programs use 1.5 of 2 CPUs" in capsys.readouterr().err
    grade_all.warn_if_busy(1, others_cores=None)
    assert "other programs use 9.0 of 2 CPUs" in capsys.readouterr().err
