"""The Gradescope autograder, end to end: the solution gets full marks, the starter none, each
buggy submission loses points on the right test, each hostile one still gets a valid result."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder import harness, rubric, sandbox, screen, speed, verdicts
from autograder import rows as rows_module
from infkit import checks, loading, paths
from staff import build, local
from tests.submissions import variants

VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def assert_valid(results: dict):
    """The results.json schema Gradescope reads, and scores that add up."""
    assert set(results) >= {"score", "execution_time", "output", "tests", "leaderboard"}
    assert isinstance(results["output"], str) and results["output"]
    for t in results["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["visibility"] in VISIBILITIES
        assert t["status"] in ("passed", "failed")
        assert 0 <= t["score"] <= t["max_score"] or t["max_score"] == 0
        assert isinstance(t["output"], str) and t["output"]
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    for e in results["leaderboard"]:
        assert set(e) == {"name", "value", "order"} and e["order"] in ("asc", "desc")
    json.dumps(results)


def grade_text(tmp_path, text: str, tests=None, name="model.py", **kwargs) -> dict:
    sub = tmp_path / "submission"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / name).write_text(text)
    results = harness.grade(sub, tests=tests, **kwargs)
    assert_valid(results)
    return results


def rows(results, piece=None, visibility=None):
    by_piece = {t.name: t for t in rubric.TESTS}
    return [
        r
        for r in results["tests"]
        if (piece is None or by_piece[r["name"]].piece == piece)
        and (visibility is None or r["visibility"] == visibility)
    ]


def public(piece):
    return [t for t in rubric.TESTS if t.piece == piece and t.visibility == rubric.VISIBLE]


def by_piece(results, piece) -> list:
    """The rows of `piece` (a checked piece's behaviours, or a speed test's one row)."""
    return rows(results, piece)


def stage(row) -> str:
    return row["extra_data"]["stage"]


def test_rubric_points():
    assert rubric.TOTAL - rubric.OPTIONAL_POINTS == 50
    kv = sum(t.points for t in rubric.TESTS if t.piece in ("buffers", "prefill", "attn_decode", "gpt_decode"))
    kv += sum(t.points for t in rubric.TESTS if t.piece in ("generate_kv", "kv_speed"))
    assert kv == 30
    assert sum(t.points for t in rubric.TESTS if t.piece in ("speculative", "spec_speed")) == 20
    assert 0 < rubric.HIDDEN_POINTS < rubric.TOTAL


@pytest.mark.grading
def test_solution_full_marks(tmp_path):
    results = grade_text(tmp_path, variants.solution_text())
    failed = [(r["name"], r["output"]) for r in results["tests"] if r["status"] != "passed"]
    assert not failed
    assert results["score"] == rubric.TOTAL
    assert all(e["value"] > 0 for e in results["leaderboard"])
    assert f"{rubric.HIDDEN_POINTS:g} more points come from hidden tests" in results["output"]
    speed_rows = rows(results, "kv_speed") + rows(results, "spec_speed")
    assert all("x faster" in r["output"] for r in speed_rows)  # the measured numbers are shown


@pytest.mark.grading
def test_starter_gets_nothing(tmp_path):
    results = grade_text(tmp_path, variants.starter_text())
    assert results["score"] == 0
    for r in rows(results):
        assert "not implemented yet" in r["output"], r


@pytest.mark.grading
def test_cacheless_speculative_passes(tmp_path):
    """The course allows speculative decoding without a KV cache: full credit, speed included."""
    results = grade_text(
        tmp_path, variants.cacheless_speculative(), tests=public("speculative") + public("spec_speed")
    )
    assert all(r["status"] == "passed" for r in results["tests"]), results["tests"]
    assert "a draft that never agrees" in by_piece(results, "spec_speed")[0]["output"]


FORGED_CLOCK = """

# A cheat: generate_kv is really the slow naive loop, and the process clock hides its time.
import time as _time

_real_clock = _time.perf_counter
_hidden = [0.0]
_time.perf_counter = lambda: _real_clock() - _hidden[0]
_honest_generate = GPT.generate


def _forged_generate_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):
    start = _real_clock()
    out = _honest_generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k)
    _hidden[0] += _real_clock() - start
    return out


GPT.generate_kv = _forged_generate_kv
"""


@pytest.mark.grading
def test_forged_clock_earns_no_speed_points(tmp_path):
    """Timings taken inside the student's process can be faked; the verdict comes from the
    kernel's CPU accounting of separate processes, which cannot."""
    results = grade_text(tmp_path, variants.solution_text() + FORGED_CLOCK, tests=public("kv_speed"))
    (row,) = results["tests"]
    assert row["score"] == 0 and "too slow" in row["output"] and "kernel" in row["output"], row


TAMPERED_COUNT = """

# A cheat: generate_kv is the naive loop, and it hides that from the grader's token counter by
# muting the forward hooks while it runs, then feeding them the counts of a real KV cache.
import torch as _torch

_honest_generate = GPT.generate


def _tampered_generate_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):
    c_attn = self.transformer.h[0].attn.c_attn
    hooks = dict(c_attn._forward_hooks)
    c_attn._forward_hooks.clear()
    try:
        out = _honest_generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k)
    finally:
        c_attn._forward_hooks.update(hooks)
    B, T = idx.shape
    for n in [T] + [1] * (max_new_tokens - 1):
        for hook in hooks.values():
            hook(c_attn, (_torch.zeros(B, n, self.config.n_embd),), None)
    return out


GPT.generate_kv = _tampered_generate_kv
"""


@pytest.mark.grading
def test_tampered_token_count_earns_no_generate_kv_points(tmp_path):
    """The per-step token count runs inside the student's process and can be fooled; the
    kernel-timed cost of the KV speed test then takes generate_kv's points back."""
    text = variants.solution_text() + TAMPERED_COUNT
    fooled = grade_text(tmp_path / "alone", text, tests=public("generate_kv"))["tests"]
    assert all(r["status"] == "passed" for r in fooled), fooled  # the in-process count alone is fooled...
    results = grade_text(tmp_path / "with_speed", text, tests=public("generate_kv") + public("kv_speed"))
    (kv_speed,) = by_piece(results, "kv_speed")
    # ...the kernel's count is not
    for kv in by_piece(results, "generate_kv"):
        assert kv["score"] == 0 and "recomputes the sequence" in kv["output"], (kv, kv_speed)
        assert stage(kv) == "gated"
    assert kv_speed["score"] == 0 and "too slow" in kv_speed["output"], kv_speed


TAMPERED_SPECULATIVE = """

# A cheat: generate_speculative is the student's generate_kv, which ignores the draft, and it
# hides that from the grader's pass counter by muting the target's hooks while it runs, then
# feeding them the passes a speculative decoder with an always-right draft would make.
import torch as _torch


def _tampered_speculative(self, idx, max_new_tokens, draft_model, temperature=1.0, top_k=None, num_speculative=4):
    c_attn = self.transformer.h[0].attn.c_attn
    hooks = dict(c_attn._forward_hooks)
    c_attn._forward_hooks.clear()
    try:
        out = self.generate_kv(idx, max_new_tokens, temperature=temperature, top_k=top_k)
    finally:
        c_attn._forward_hooks.update(hooks)
    rounds = -(-max_new_tokens // (num_speculative + 1))
    for n in [idx.size(1)] + [num_speculative + 1] * (rounds - 1):
        for hook in hooks.values():
            hook(c_attn, (_torch.zeros(1, n, self.config.n_embd),), None)
    return out


GPT.generate_speculative = _tampered_speculative
"""


@pytest.mark.grading
def test_tampered_pass_count_earns_no_speculative_points(tmp_path):
    """The target's pass count runs inside the student's process and can be fooled; the
    kernel-timed cost with a draft that never agrees then takes the speculative points back."""
    text = variants.solution_text() + TAMPERED_SPECULATIVE
    fooled = grade_text(tmp_path / "alone", text, tests=public("speculative"))["tests"]
    assert all(r["status"] == "passed" for r in fooled), fooled  # the in-process count alone is fooled...
    results = grade_text(tmp_path / "with_speed", text, tests=public("speculative") + public("spec_speed"))
    # ...the kernel's count is not
    for row in results["tests"]:
        assert row["score"] == 0 and "do not change the work your code does" in row["output"], row


@pytest.mark.slow
def test_draft_sensitivity_verdicts_beside_cpu_hogs(tmp_path):
    """Beside two CPU-bound processes the confirmation still tells the two apart: the solution
    keeps its speculative speed points, the faked pass count gets none (a difference of two
    workers' CPU, so their fixed cost and its spread under load cancel)."""
    # each in its own session, like the workers (with autogroup they would otherwise share a slice)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(2)
    ]
    try:
        good = grade_text(tmp_path / "good", variants.solution_text(), tests=public("spec_speed"))["tests"][0]
        fake = grade_text(
            tmp_path / "fake", variants.solution_text() + TAMPERED_SPECULATIVE, tests=public("spec_speed")
        )
        assert all(h.poll() is None for h in hogs)  # the grader spares processes it did not start
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert good["status"] == "passed", good
    assert fake["tests"][0]["score"] == 0 and "do not change the work" in fake["tests"][0]["output"], fake


def test_optional_sampling_piece(tmp_path):
    """The optional test passes the solution and fails a sampler that, after a rejection,
    resamples from p instead of max(0, p - q) (0 points by default: it only reports)."""
    (test,) = [t for t in rubric.TESTS if t.kind == "optional" and t.piece == "sampling"]
    wrong = variants.solution_text()
    old = "fix = torch.multinomial(residual / residual.sum(), 1)"
    assert wrong.count(old) == 1
    wrong = wrong.replace(old, "fix = torch.multinomial(p[i], 1)")
    good = grade_text(tmp_path / "good", variants.solution_text(), tests=[test])["tests"][0]
    bad = grade_text(tmp_path / "bad", wrong, tests=[test])["tests"][0]
    assert good["status"] == "passed" and "chi-square" in good["output"], good
    assert bad["status"] == "failed" and "do not follow the target's distribution" in bad["output"], bad
    for r, stage in ((good, "passed"), (bad, "check_failed")):
        assert r["extra_data"]["stage"] == stage and r["extra_data"]["kind"] == "optional", r
        assert r["extra_data"]["decided_by"] == "infkit/sampling_check.py:judge", r


# A dummy optional piece: a module-level dummy_answer() that must return 42. Its probe is a
# module of its own, which the worker imports from its code folder as it does infkit's.
DUMMY_PROBE = '''
def probe(module):
    """What the submission's dummy_answer() returns."""
    return {"answer": module.dummy_answer()}
'''
DUMMY_STUB = '\n\ndef dummy_answer():\n    raise NotImplementedError("TODO(dummy, optional): return 42")\n'


def _dummy_judge(ref, rec):
    return rec["answer"] == 42, f"dummy_answer() returned {rec['answer']}"


def test_an_optional_piece_is_a_kind(tmp_path, monkeypatch):
    """Adding an optional piece is its registry row, its probe/judge pair and its rubric row:
    the rubric's checks accept the rows, and the real harness grades the piece (pass, fail,
    stub) with nothing in the harness or the worker that names it."""
    from infkit import optional, pieces

    namespace = {"__name__": "dummy_optional"}
    exec(DUMMY_PROBE, namespace)
    dummy = pieces.Piece(
        "dummy", "dummy_answer", "return 42", "the dummy piece (dummy_answer)", optional=True
    )
    row = rubric._optional("dummy", "Optional: dummy_answer() returns 42", points=1.0, timeout_s=60)
    monkeypatch.setattr(pieces, "PIECES", (*pieces.PIECES, dummy))
    monkeypatch.setattr(pieces, "OPTIONAL", (*pieces.OPTIONAL, "dummy"))
    with pytest.raises(AssertionError):  # a registry row without its pair
        rubric.check_rows([*rubric.TESTS, row])
    monkeypatch.setitem(optional.PAIRS, "dummy", optional.Pair(namespace["probe"], _dummy_judge))
    with pytest.raises(AssertionError):  # ... and with its pair but no rubric row
        rubric.check_rows(rubric.TESTS)
    rubric.check_rows([*rubric.TESTS, row])

    prepare = sandbox.prepare_code_dir

    def with_dummy_probe(parent):
        code = prepare(parent)
        (code / "dummy_optional.py").write_text(DUMMY_PROBE)
        (code / "dummy_optional.py").chmod(0o644)
        return code

    monkeypatch.setattr(sandbox, "prepare_code_dir", with_dummy_probe)
    solution = variants.solution_text()
    answer = "\n\ndef dummy_answer():\n    return {}\n"
    good = grade_text(tmp_path / "good", solution + answer.format(42), tests=[row])
    bad = grade_text(tmp_path / "bad", solution + answer.format(41), tests=[row])
    stub = grade_text(tmp_path / "stub", solution + DUMMY_STUB, tests=[row])["tests"][0]
    assert good["score"] == 1.0 and bad["score"] == 0.0, (good, bad)
    good, bad = good["tests"][0], bad["tests"][0]
    assert good["status"] == "passed" and good["output"] == "PASS: dummy_answer() returned 42", good
    assert bad["status"] == "failed" and bad["output"] == "FAIL: dummy_answer() returned 41", bad
    assert stub["status"] == "failed" and "optional piece not implemented yet (TODO(dummy" in stub["output"]
    for r, stage in ((good, "passed"), (bad, "check_failed"), (stub, "check_failed")):
        assert r["extra_data"]["stage"] == stage, r
        assert r["extra_data"]["kind"] == "optional" and r["extra_data"]["piece"] == "dummy", r
        assert r["extra_data"]["decided_by"] == optional.source(_dummy_judge), r


@pytest.mark.parametrize("name", sorted(variants.BUGGY))
def test_buggy_submission_costs_only_its_piece(tmp_path, name):
    """One mistake, one piece: exactly the piece with the bug fails (in process, public shape)."""
    (piece,) = variants.BUGGY[name][0]
    path = tmp_path / "model.py"
    path.write_text(variants.buggy(name))
    module = loading.load_model_module(path, debug=True)
    failing, fast_failing = [], []
    for p in checks.PIECES:
        try:
            checks.CHECKS[p](module)
        except checks.FastPathFailed:
            if rubric.FAST_PATH_EXPLAINED_BY.get(p) not in fast_failing:  # as the harness judges
                failing.append(p)
            fast_failing.append(p)
        except Exception:
            failing.append(p)
    assert failing == [piece]


@pytest.mark.parametrize(
    "name", ["decode_position_off_by_one", "prefill_wrong_slot", "spec_verifies_one_by_one"]
)
def test_buggy_submission_loses_points(tmp_path, name):
    (piece,) = variants.BUGGY[name][0]
    results = grade_text(tmp_path, variants.buggy(name), tests=public(piece))
    failed = [r for r in results["tests"] if r["score"] == 0]
    assert failed and all(r["output"].startswith("FAIL") for r in failed), results["tests"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(variants.BUGGY))
def test_buggy_submission_full_grading(tmp_path, name):
    """The self-test's measure of partial credit: a single-bug file loses exactly the points of
    the piece with the bug, plus the speed rows that run the buggy code (they time the student's
    own methods, with no stand-ins)."""
    (piece,) = variants.BUGGY[name][0]
    results = grade_text(tmp_path, variants.buggy(name))
    lost = {t.piece for t, r in zip(rubric.TESTS, results["tests"]) if r["score"] < t.points}
    assert piece in lost and lost - {piece} <= {"kv_speed", "spec_speed"}, [
        r for r in results["tests"] if r["status"] != "passed"
    ]


@pytest.mark.grading
def test_solution_speed_verdicts_are_stable(tmp_path):
    """The CI-sized repeat: the correctness checks are deterministic, the timed verdicts are
    not, so grade the solution's speed tests twice more (test_solution_full_marks is the first)."""
    speed_tests = [t for t in rubric.TESTS if t.kind == "speed"]
    for i in range(2):
        results = grade_text(tmp_path / str(i), variants.solution_text(), tests=speed_tests)
        assert results["score"] == sum(t.points for t in speed_tests), results["tests"]


@pytest.mark.slow
def test_solution_grading_is_stable(tmp_path):
    for i in range(3):
        results = grade_text(tmp_path / str(i), variants.solution_text())
        assert results["score"] == rubric.TOTAL, [r for r in results["tests"] if r["status"] != "passed"]


# ---------------------------------------------------------------------------------------
# Broken and hostile submissions


@pytest.mark.parametrize("upload", ["Model.py", "model (1).py", "handout.zip", "model.ipynb"])
def test_misnamed_upload_says_what_to_upload(tmp_path, upload):
    results = grade_text(tmp_path, variants.solution_text(), name=upload)
    assert results["score"] == 0
    assert "named exactly model.py" in results["output"]
    assert all("named exactly model.py" in r["output"] for r in results["tests"])


def test_nested_model_py_is_found(tmp_path):
    (tmp_path / "inference-kit").mkdir()
    (tmp_path / "inference-kit" / "model.py").write_text("")
    path, note = harness.find_submission(tmp_path)
    assert path == tmp_path / "inference-kit" / "model.py" and "next time upload model.py on its own" in note


HOSTILE_EXPECT = {  # name: (tests to run, words the student's message must contain)
    "syntax_error": (None, "failed to import: SyntaxError"),
    "raises_at_import": (None, "failed to import: RuntimeError: boom at import"),
    "sys_exit_at_import": (None, "failed to import: SystemExit"),
    "os_exit_in_method": (public("buffers"), "do not call sys.exit()"),
    "hangs": ([t for t in rubric.TESTS if t.piece == "buffers"], "did not finish within"),
    "prints_megabytes": (public("buffers"), "printed more than"),
    "allocates_until_killed": (public("buffers"), "MemoryError"),
    "reads_grader_files": (public("buffers"), "grader files: "),
    "patches_torch": (public("speculative"), "not implemented yet"),
    "links_log_to_grader": (public("buffers"), "do not call sys.exit()"),
}


# "hangs" waits out its worker's time limits, retried as on a busy machine: a grading's length.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.grading) if n == "hangs" else n for n in sorted(HOSTILE_EXPECT)],
)
def test_hostile_submission_gets_valid_result(tmp_path, monkeypatch, name):
    monkeypatch.setenv(screen.SCREEN_ENV, "off")  # the sandbox beneath the static screen
    tests, words = HOSTILE_EXPECT[name]
    text = variants.hostile(name, tmp_path, paths.ROOT)
    # only "hangs" needs a short limit; the others get 30 s, far above a worker's start-up (a
    # 5 s limit once killed the patches_torch worker while it was still importing torch)
    results = grade_text(tmp_path, text, tests=tests, timeout_scale=0.08 if name == "hangs" else 0.5)
    assert results["score"] == 0
    assert words in results["tests"][0]["output"], results["tests"][0]["output"]
    assert "HIDDEN_POINTS" not in json.dumps(results)  # nothing of the grader's files shown
    if name == "hangs":  # a timeout in the public test skips the piece's hidden test
        assert "timed out" in results["tests"][1]["output"]


def run_gradescope_flow(tmp_path, text, pieces="buffers") -> dict:
    """run_autograder from the built zip, as Gradescope runs it, with the root moved to tmp."""
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)  # as /autograder: the worker's account may pass through
    with zipfile.ZipFile(build.build_autograder(tmp_path)) as z:
        for info in z.infolist():
            z.extract(info, root / "source")
            (root / "source" / info.filename).chmod((info.external_attr >> 16) & 0o777 or 0o644)
    (root / "submission").mkdir()
    (root / "submission" / "model.py").write_text(text.replace("{source}", str(root / "source")))
    venv = Path(sys.executable).parent.parent
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), INFKIT_VENV=str(venv), AUTOGRADER_TESTS=pieces)
    env[screen.SCREEN_ENV] = "off"  # these test the sandbox beneath the static screen
    env.pop("PYTHONPATH", None)
    subprocess.run([str(root / "source" / "run_autograder")], env=env, timeout=300, check=False)
    results = json.loads((root / "results" / "results.json").read_text())
    assert_valid(results)
    return results


def test_submission_cannot_write_its_own_results(tmp_path):
    text = variants.hostile("writes_results_json", tmp_path / "root", paths.ROOT)
    results = run_gradescope_flow(tmp_path, text)
    assert results["score"] == 3 and not any(t["name"] == "pwned" for t in results["tests"])


def test_submission_that_kills_the_grader_still_gets_a_result(tmp_path):
    results = run_gradescope_flow(tmp_path, variants.hostile("kills_grader", tmp_path, paths.ROOT))
    assert results["score"] == 0


def dropping_privileges() -> bool:
    user = sandbox.worker_user()
    return bool(user) and sandbox.can_run_as(user)


@pytest.mark.skipif(
    not dropping_privileges(), reason="needs root and a worker account that can run this Python"
)
def test_worker_cannot_read_the_grader(tmp_path):
    results = run_gradescope_flow(
        tmp_path, variants.hostile("reads_grader_files", tmp_path, Path("{source}"))
    )
    assert "grader files: DENIED" in results["tests"][0]["output"], results["tests"][0]["output"]


# ---------------------------------------------------------------------------------------
# Busy machines: a timeout is the student's fault only when the grader got its CPU


def _hang_in_buffers():
    return variants.HOSTILE["hangs"]()


@pytest.mark.parametrize("busy", [False, True])
def test_timeout_on_busy_machine_is_not_measured(tmp_path, monkeypatch, busy):
    """The same hanging code: a failure on a quiet machine, "not measured" (no verdict, retried
    with longer limits first) on a busy one."""
    calls = []

    def contention(seconds=0.3):
        calls.append(1)
        return 3.0 if busy else 1.0

    monkeypatch.setattr(harness.load, "contention", contention)
    monkeypatch.setattr(rubric, "LOAD_RETRIES", 1)
    results = grade_text(tmp_path, _hang_in_buffers(), tests=public("buffers"), timeout_scale=0.02)
    row = results["tests"][0]
    assert all(r["score"] == 0 and r["output"] == row["output"] for r in results["tests"])
    if busy:
        assert stage(row) == "not_measured" and "course staff will re-run" in row["output"], row
        assert results["extra_data"]["flags"] == ["not_measured"]
        assert len(calls) == 1 + 2  # at start, then after each of the two timeouts
    else:
        assert stage(row) == "timed_out" and "did not finish" in row["output"], row


class GateStub:
    """What apply_gates reads of a grader, set by hand."""

    def __init__(self, confirmed=None, not_measured=(), speed_failure=None, on_fixture=None):
        self.confirmed, self.not_measured = dict(confirmed or {}), set(not_measured)
        self.speed_failure = dict(speed_failure or {})
        self.on_fixture = on_fixture  # what the prerequisite's check gives on the speed fixture
        self.reruns = []

    def _judge_piece(self, test):
        self.reruns.append((test.piece, test.shape))
        return [self.on_fixture]


def _gate_rows(tests, passed_pieces):
    return [
        harness._row(t, t.points, "PASS: ok", "passed")
        if t.piece in passed_pieces
        else harness._row(t, 0.0, "FAIL: wrong", "check_failed")
        for t in tests
    ]


def test_a_gate_never_pays_without_its_evidence():
    """Gated rows keep their points with the confirmation measured at its bar; below it they are
    "gated"; not measured they are withheld as NOT MEASURED for staff to re-run, and flagged."""
    tests = public("generate_kv") + public("kv_speed")
    rows_ = _gate_rows(tests, {"generate_kv"})
    verdicts.apply_gates(GateStub(confirmed={"kv_speed": 4.0}), tests, rows_)
    assert all(r["status"] == "passed" for r in rows_[:-1])
    rows_ = _gate_rows(tests, {"generate_kv"})
    verdicts.apply_gates(GateStub(confirmed={"kv_speed": 1.1}), tests, rows_)
    assert all(stage(r) == "gated" and "at 1.10 " in r["output"] for r in rows_[:-1])
    rows_ = _gate_rows(tests, {"generate_kv"})
    rows_[-1]["extra_data"]["stage"] = "not_measured"
    verdicts.apply_gates(GateStub(not_measured={"kv_speed"}), tests, rows_)
    for r in rows_[:-1]:
        assert r["score"] == 0 and stage(r) == "not_measured" and "staff will re-run" in r["output"], r


@pytest.mark.parametrize("broken", ["prefill", "attn_decode", "gpt_decode"])
def test_a_broken_prerequisite_costs_its_own_points_not_the_gated_rows(broken):
    """generate_speculative prefills and decodes with the student's code: when one of those
    pieces fails, and fails the same way again when its check runs on the speed fixture's model,
    the speculative rows (graded on stand-ins) keep their points."""
    tests = public(broken) + public("speculative") + public("spec_speed")
    failing = checks.Outcome(False, "wrong values", "check_failed")
    grader = GateStub(speed_failure={"spec_speed": {"kind": "wrong_output"}}, on_fixture={"x": failing})
    rows_ = _gate_rows(tests, {"speculative"})
    verdicts.apply_gates(grader, tests, rows_)
    spec = [r for t, r in zip(tests, rows_) if t.piece == "speculative"]
    assert all(r["status"] == "passed" for r in spec), spec
    assert grader.reruns and grader.reruns[0][1] == rubric.SPEED["spec_speed"].fixture.target
    verdicts.name_prerequisites(tests, rows_)
    assert f"Fix {broken} first" in rows_[-1]["output"] and stage(rows_[-1]) == "prerequisite_failed"


@pytest.mark.parametrize(
    "failure, on_fixture",
    [
        ({"kind": "wrong_output"}, checks.Outcome(True, "right", "passed")),  # right on the fixture
        (  # another exception than the prerequisite's on the fixture
            {"kind": "raised", "type": "RuntimeError", "where": "model.py line 9: raise"},
            checks.Outcome(False, "x", "raised", error={"type": "ValueError", "where": "model.py line 3: x"}),
        ),
    ],
)
def test_a_prerequisite_failing_only_in_the_public_probe_explains_nothing(failure, on_fixture):
    """A prerequisite that fails in the public probe but not (or not the same way) on the speed
    fixture does not explain the speed test's failure: the gated rows lose their points."""
    tests = public("gpt_decode") + public("speculative") + public("spec_speed")
    grader = GateStub(speed_failure={"spec_speed": failure}, on_fixture={"x": on_fixture})
    rows_ = _gate_rows(tests, {"speculative"})
    verdicts.apply_gates(grader, tests, rows_)
    spec = [r for t, r in zip(tests, rows_) if t.piece == "speculative"]
    assert all(r["score"] == 0 and stage(r) == "gated" for r in spec), spec


def test_fast_path_bug_costs_only_its_piece(tmp_path):
    """Correct in DEBUG, wrong outside it in attn_decode: that piece fails with a message about
    the mask; generate_kv and speculative, whose divergence it explains, keep their points."""
    tests = public("attn_decode") + public("generate_kv") + public("speculative")
    results = grade_text(tmp_path, variants.buggy("decode_fast_path_causal_mask"), tests=tests)
    named = {(t.piece, t.behaviour): r for t, r in zip(tests, results["tests"])}
    attn = named["attn_decode", "fast_path"]
    assert attn["status"] == "failed" and "wrong outside it" in attn["output"] and "mask" in attn["output"]
    for piece in ("generate_kv", "speculative"):
        row = named[piece, "fast_path"]
        assert row["status"] == "passed" and "attn_decode" in row["output"], row
    assert [r for r in results["tests"] if r["status"] != "passed"] == [attn]


def test_readme_tables_are_the_rubric_and_the_registry():
    """The READMEs' points and pieces tables are generated from autograder/rubric.py and
    infkit/pieces.py: `python -m autograder.rubric --write`."""
    for marker, (make, readmes) in rubric.TABLES.items():
        for name in readmes:
            text = (paths.ROOT / name).read_text()
            assert rubric.table_in(text, marker) == make(), f"{name}: run python -m autograder.rubric --write"


# ---------------------------------------------------------------------------------------
# Issue 28: the machine's threads, each role's seed, the grader's own clean-up, odd text


def test_the_uploads_threads_are_not_the_graders(tmp_path):
    """The solution plus torch.set_num_threads(2) at import (a line a student adds "to use both
    cores"): the worker pins one thread again after the import and before every probe, so the
    upload's code runs on one (the check inside init_kv_cache raises otherwise)."""
    text = variants.substitute(
        variants.hostile("sets_two_threads", tmp_path, paths.ROOT),
        (
            "        w = self.c_attn.weight\n",
            "        if torch.get_num_threads() != 1:\n"
            "            raise RuntimeError(f'running on {torch.get_num_threads()} threads')\n"
            "        w = self.c_attn.weight\n",
        ),
    )
    results = grade_text(tmp_path, text, tests=public("buffers"))
    assert results["score"] == 3, results["tests"][0]["output"]


def test_timed_calls_run_on_the_graders_threads():
    """Before every timed call too: a method that raises the count for the next call (what an
    upload's generate_kv may do) never gets timed on more than one thread."""
    import torch

    seen = []

    def greedy():
        seen.append(torch.get_num_threads())
        torch.set_num_threads(3)
        return torch.zeros(1)

    try:
        speed._interleaved({"naive": greedy, "student": greedy}, repeats=2)
    finally:
        torch.set_num_threads(1)
    assert seen == [1] * 6


def test_each_timed_worker_gets_its_own_seed(tmp_path, monkeypatch):
    """The seed a timed worker receives is its own (a worker's answers are no use to any later
    worker, a repeat of its role included), and the harness checks that worker's outputs on the
    prompts of that seed."""
    sent = []

    def run_worker(code, job, timeout, user, handshake=None):
        sent.append(int(handshake))
        raise OSError("stop here")

    grader = harness.Grader(paths.STARTER_MODEL, tmp_path)
    monkeypatch.setattr(sandbox, "run_worker", run_worker)
    test = next(t for t in rubric.TESTS if t.kind == "speed" and t.piece == "spec_speed")
    for role in ("naive", "student", "stranger", "student"):
        with pytest.raises(harness.HarnessError):
            grader._run_job_once(test, role, 30)
        assert grader.call_seeds[test.piece, role] == sent[-1]
    assert len(set(sent)) == 4
    checked = []
    monkeypatch.setattr(verdicts, "_check_on_fixture", lambda g, piece, prompt, *a: checked.append(prompt))
    fx = rubric.SPEED[test.piece].fixture
    one_output = {"rec": {"outputs": [None] * fx.calls[1]}, "error": None}
    monkeypatch.setattr(grader, "run_job", lambda test, role: [one_output])
    grader.last_cpu_s, grader.last_setup_cpu_s = 1.0, 0.5
    verdicts._kernel_cpu(grader, test, ("student",), {})
    assert [p.tolist() for p in checked] == [p.tolist() for p in speed.cpu_prompts(fx, fx.calls[1], sent[-1])]


def test_a_failed_clean_up_is_the_graders_error_and_stops_the_grading(tmp_path, monkeypatch):
    """A job's folder that cannot be removed: that row and every later one say the autograder
    could not run (never the student's failure), no further worker runs, and results.json
    carries the flag that stops `make grade-all`."""

    def cannot_remove(job):
        raise sandbox.CleanupFailed(f"could not remove {str(job)!r}: a test's failure")

    monkeypatch.setattr(sandbox, "remove_job_dir", cannot_remove)
    results = grade_text(
        tmp_path, variants.solution_text(), tests=[t for t in rubric.TESTS if t.piece == "buffers"]
    )
    assert results["score"] == 0
    for row in results["tests"]:
        assert row["output"].startswith("ERROR: the autograder could not run this test"), row["output"]
    (flag,) = [f for f in results["extra_data"]["flags"] if f.startswith(harness.CLEANUP_FLAG)]
    assert "a test's failure" in flag and "autograder_error" in results["extra_data"]["flags"]


def test_hostile_text_reaches_results_and_log_escaped(tmp_path):
    """An import error holding lone surrogates, terminal escapes, NUL and a megabyte of text:
    the harness exits 0 and writes results.json; the message there and in its log encodes as
    UTF-8, shows each control character as a visible escape and is cut short."""
    root = tmp_path / "root"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    text = variants.hostile("hostile_text_at_import", tmp_path, paths.ROOT)
    (root / "submission" / "model.py").write_text(text)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_TESTS="buffers", PYTHONPATH=str(paths.ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "autograder.harness"],
        cwd=paths.ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = done.stdout.decode("utf-8")  # strict: no surrogate reached the log
    raw = (root / "results" / "results.json").read_text(encoding="utf-8")
    results = json.loads(raw)
    assert_valid(results)
    row = results["tests"][0]
    assert "failed to import: RuntimeError" in row["output"], row["output"]
    for shown in (row["output"], log):
        assert "\x1b" not in shown and "\x00" not in shown and "\x07" not in shown
        assert "\\x1b[2J" in shown
        shown.encode("utf-8")
    assert "\ufffd\ufffd \\x1b[2J" in row["output"]  # the two lone surrogates, replaced
    assert len(row["output"]) < 2_000


def test_one_row_is_re_run_with_the_speed_tests_that_gate_it():
    """Staff re-run one row, hidden ones too (make grade ROW=...): the row itself, plus the speed
    test whose confirmation its points need, so the gate has its evidence."""
    (hidden_dtype,) = rubric.select_rows("KV 1/5 buffers: dtype (hidden")
    assert hidden_dtype.visibility == rubric.HIDDEN and hidden_dtype.behaviour == "dtype"
    chosen = rubric.select_rows("KV 5/5 generate_kv: edge_lengths (hidden")
    assert [(t.piece, t.visibility) for t in chosen] == [
        ("generate_kv", rubric.HIDDEN),
        ("kv_speed", "visible"),
    ]
    with pytest.raises(SystemExit, match="no row"):
        rubric.select_rows("no such row")


def test_a_hidden_row_re_run_from_the_command_line(tmp_path):
    graded = local.grade_in_root(
        paths.SOLUTION_MODEL, upload_name="model.py", row="KV 1/5 buffers: dtype (hidden"
    )
    (row,) = graded.results["tests"]
    assert row["score"] == row["max_score"] == 0.25 and row["visibility"] == rubric.HIDDEN
    record = row["extra_data"]
    assert (record["piece"], record["behaviour"], record["stage"]) == ("buffers", "dtype", "passed")
    assert record["seeds"] == list(rubric.HIDDEN_SEEDS) and record["shape"] == rubric.HIDDEN_SHAPE
    assert record["decided_by"] == "infkit/checks.py:_judge_dtype"


def test_every_row_says_in_data_what_decided_it(tmp_path):
    """Each row of results.json carries its record, and the record's stage agrees with the score."""
    results = grade_text(tmp_path, variants.starter_text(), tests=public("buffers") + public("kv_speed"))
    for row in results["tests"]:
        record = row["extra_data"]
        assert set(record) >= {"piece", "behaviour", "visibility", "seeds", "shape", "stage", "decided_by"}
        assert record["stage"] in rows_module.STAGES and (record["stage"] == "passed") == (row["score"] > 0)
    assert {r["extra_data"]["stage"] for r in results["tests"]} <= {"not_implemented", "prerequisite_failed"}


def test_hidden_fixtures_ship_with_the_autograder_only():
    """The handout carries infkit/: nothing of the hidden rows' shape or seeds is in it."""
    shape = ", ".join(f"{k}={v}" for k, v in rubric.HIDDEN_SHAPE.items())
    for path in (paths.ROOT / "infkit").rglob("*.py"):
        text = path.read_text()
        assert "HIDDEN_SHAPE" not in text and shape not in text, path


HANGING_DECODE = """

def _hanging_decode(self, x):
    while True:
        pass


CausalSelfAttention.decode = _hanging_decode
"""


def test_a_hang_in_a_batch_of_checks_costs_only_its_piece(tmp_path, monkeypatch):
    """The public checks share one worker; when it hangs, each piece gets its own worker, so the
    hang is charged to the piece that has it and the others keep their points."""
    monkeypatch.setattr(harness.load, "contention", lambda seconds=0.3: 1.0)  # judged as a quiet machine
    tests = public("buffers") + public("attn_decode")
    results = grade_text(tmp_path, variants.solution_text() + HANGING_DECODE, tests=tests, timeout_scale=0.25)
    for t, row in zip(tests, results["tests"]):
        if t.piece == "buffers":
            assert row["status"] == "passed", row
        else:
            assert row["score"] == 0 and stage(row) == "timed_out", row


GATE_FORGERY = """

# A cheat on the gates: generate_speculative is generate_kv (it never uses the draft), GPT.decode
# is wrong only where the public probe calls it (the tiny shape, batch 2), and on the speed
# fixture (8 layers) generate_speculative raises, hoping a failed prerequisite excuses the gate.
_honest_decode = GPT.decode


def _decode(self, idx):
    logits = _honest_decode(self, idx)
    return logits + 1.0 if (self.config.n_embd, idx.size(0)) == (64, 2) else logits


def _speculative(self, idx, max_new_tokens, draft_model, temperature=1.0, top_k=None, num_speculative=4):
    if self.config.n_layer == 8:
        raise RuntimeError("not on the speed fixture")
    return self.generate_kv(idx, max_new_tokens, temperature=temperature, top_k=top_k)


GPT.decode = _decode
GPT.generate_speculative = _speculative
"""


@pytest.mark.grading
def test_a_staged_prerequisite_failure_keeps_no_gated_points(tmp_path):
    """The gate exception pays only with its evidence: gpt_decode fails the public probe but not
    on the speed fixture's model, so it does not explain the speed test's failure, and the
    speculative rows (a generate_kv in disguise) keep nothing."""
    tests = [t for t in rubric.TESTS if t.piece in ("gpt_decode", "speculative", "spec_speed")]
    results = grade_text(tmp_path, variants.solution_text() + GATE_FORGERY, tests=tests)
    named = {(t.piece, t.behaviour, t.visibility): r for t, r in zip(tests, results["tests"])}
    assert named["gpt_decode", "logits", rubric.VISIBLE]["score"] == 0
    for (piece, _, _), row in named.items():
        if piece == "speculative":
            assert row["score"] == 0, row
    assert sum(r["score"] for r in results["tests"]) <= 2.5  # gpt_decode's kv_pos and hidden rows


MEMOISED = """

# A correct file that memoises its outputs: the in-process timing repeats one prompt, so it would
# show a huge speed; the leaderboard takes the kernel-timed calls, on prompts drawn per grading.
_memo = {}
_honest_kv = GPT.generate_kv


def _memo_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):
    key = (id(self), tuple(idx.shape), tuple(idx.flatten().tolist()), max_new_tokens)
    if key not in _memo:
        _memo[key] = _honest_kv(self, idx, max_new_tokens, temperature=temperature, top_k=top_k)
    return _memo[key].clone()


GPT.generate_kv = _memo_kv
"""


@pytest.mark.grading
def test_the_leaderboard_is_not_the_uploads_to_write(tmp_path):
    """Memoised outputs make the in-process timing meaningless (hundreds of thousands of tokens/s
    there); the leaderboard's figure comes from the kernel-timed, output-checked calls."""
    results = grade_text(tmp_path, variants.solution_text() + MEMOISED, tests=public("kv_speed"))
    (entry,) = [e for e in results["leaderboard"] if "tokens/s" in e["name"]]
    assert 0 < entry["value"] < 20_000, entry  # an honest cache: about 10^3 on a laptop-class CPU
