"""The worker's confinement: nothing the student starts outlives its job or reaches the network,
and student code never runs as root (the grader refuses to grade instead); setup.sh's self-check.

The hostile submissions are graded through `python -m staff.local` (what `make grade`
runs) on one or two cheap public tests; they need root and a worker account that can run the
worker's Python (tests/conftest.py provides one where it can). Those grading two jobs, and the
self-check's full runs, are marked slow."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from autograder import confine, harness, rubric, sandbox, screen, selfcheck
from infkit import paths
from tests.submissions import variants


def dropping_privileges() -> bool:
    user = sandbox.worker_user()
    return bool(user) and sandbox.can_run_as(user)


needs_root = pytest.mark.skipif(
    not dropping_privileges(), reason="needs root and a worker account that can run the worker's Python"
)


def processes_named(name: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and Path(entry.path, "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def first_row(results: dict, piece: str) -> dict:
    """The first row of `piece` (its public rows share one worker, so one message)."""
    return next(t for t in results["tests"] if t["extra_data"]["piece"] == piece)


def grade_file(tmp_path: Path, text: str, tests: str) -> dict:
    """`make grade` on `text`, with only the named public tests."""
    model = tmp_path / "model.py"
    model.write_text(text)
    out = tmp_path / "results.json"
    env = dict(os.environ, AUTOGRADER_TESTS=tests)
    env[screen.SCREEN_ENV] = "off"  # these test the sandbox beneath the static screen
    env["AUTOGRADER_BATCH"] = "off"  # and what crosses from one worker to the next: one per piece
    subprocess.run(
        [sys.executable, "-m", "staff.local", str(model), "--results", str(out)],
        cwd=paths.ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    results = json.loads(out.read_text())
    assert results["tests"] and all(t["output"] for t in results["tests"]), results
    return results


def hostile(name: str, **fill) -> str:
    text = variants.HOSTILE[name]()
    for key, value in fill.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def new_token() -> str:
    return "ag" + uuid.uuid4().hex[:12]  # a process name: at most 15 characters


# ---------------------------------------------------------------------------------------
# The pieces, without torch (fast, any user)


@pytest.mark.skipif(not confine.probe()["seccomp"], reason="this kernel refuses seccomp filters")
def test_socket_filter_allows_unix_sockets_only():
    code = (
        "import socket\n"
        "socket.socketpair(socket.AF_UNIX)\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):\n"
        "    try:\n"
        "        socket.socket(family, socket.SOCK_DGRAM)\n"
        "        print('OPENED', family)\n"
        "    except PermissionError:\n"
        "        print('denied')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=confine.install_socket_filter, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["denied"] * 3, done.stdout


def test_detached_grandchild_is_killed_and_its_cpu_charged():
    """A double-forked, setsid helper comes back to us (subreaper); end_job kills and reaps it and
    returns the CPU it burnt, which the job's CPU time then includes."""
    assert confine.become_subreaper()
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        end = time.process_time() + 0.5\n"
        "        while time.process_time() < end:\n"
        "            pass\n"
        "        print(os.getpid(), flush=True)\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    helper = int(proc.stdout.readline())
    proc.wait()
    os.kill(helper, 0)  # alive after its parents are gone
    cpu = confine.end_job(None)
    with pytest.raises(ProcessLookupError):
        os.kill(helper, 0)
    assert cpu >= 0.4, cpu


def test_the_callers_own_children_survive_a_job():
    """A process the caller started before the job (a load generator beside harness.grade, say)
    is not the job's: end_job kills and reaps only what the job left."""
    assert confine.become_subreaper()
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        spare = confine.our_processes()
        assert mine.pid in spare
        confine.end_job(None, spare=spare)
        assert mine.poll() is None  # still running
        confine.end_job(None)  # without `spare` it is killed and reaped like a job's leftover
        with pytest.raises(ProcessLookupError):
            os.kill(mine.pid, 0)
    finally:
        mine.kill()


TIMED_WORKER = """
import os, sys, time

REPORTS = True


def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


burn(0.6)  # set-up
if REPORTS:
    ready, go = (int(fd) for fd in os.environ["AUTOGRADER_HANDSHAKE"].split(","))
    os.write(ready, b"ready\\n")
    seed = os.read(go, 64)
    open(os.path.join(sys.argv[1], "seed.txt"), "wb").write(seed)
burn(0.3)  # the timed calls
"""


@pytest.mark.parametrize("reports", [True, False])
def test_a_timed_workers_set_up_cpu_is_read_before_it_gets_the_seed(tmp_path, monkeypatch, reports):
    """The speed verdicts subtract each worker's own set-up CPU, read from the kernel when it
    says the set-up is done; the seed of its timed prompts comes only after that reading. A
    worker that never says so gets no reading (the harness then refuses to time it)."""
    code, job = tmp_path / "code", tmp_path / "job"
    code.mkdir()
    job.mkdir()
    (code / "worker.py").write_text(TIMED_WORKER.replace("REPORTS = True", f"REPORTS = {reports}"))
    monkeypatch.setattr(sandbox, "worker_python", lambda: sys.executable)
    result = sandbox.run_worker(code, job, timeout_s=30, handshake=b"777\n")
    assert result.returncode == 0 and not result.timed_out, result.log_tail
    if reports:
        assert (job / "seed.txt").read_bytes() == b"777\n"
        assert 0.55 <= result.setup_cpu_s <= 0.85, result
        assert 0.2 <= result.cpu_s - result.setup_cpu_s <= 0.45, result
    else:
        assert result.setup_cpu_s is None and not (job / "seed.txt").exists()
        assert result.cpu_s >= 0.85


def test_a_worker_that_cannot_start_leaves_no_pipe_open(tmp_path, monkeypatch):
    """A timed job whose worker cannot even start (its Python is missing): the error reaches the
    caller, which reports it, and none of the handshake's four pipe ends stays open."""
    code, job = tmp_path / "code", tmp_path / "job"
    code.mkdir()
    job.mkdir()
    (code / "worker.py").write_text(TIMED_WORKER)
    monkeypatch.setattr(sandbox, "worker_python", lambda: str(tmp_path / "no-such-python"))
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        sandbox.run_worker(code, job, timeout_s=30, handshake=b"777\n")
    assert set(os.listdir("/proc/self/fd")) <= before


def test_no_worker_account_means_no_grading(tmp_path, monkeypatch):
    """As root without a worker account: every row says the autograder could not run, and the
    student's code never ran (it would have left a file)."""
    if os.geteuid() != 0:
        pytest.skip("the refusal only applies to root")
    monkeypatch.setattr(sandbox, "WORKER_USERS", ("no-such-account-xyz",))
    monkeypatch.delenv("AUTOGRADER_WORKER_USER", raising=False)
    (tmp_path / "sub").mkdir()
    marker = tmp_path / "ran"
    (tmp_path / "sub" / "model.py").write_text(variants.starter_text() + f"\nopen({str(marker)!r}, 'w')\n")
    public = [t for t in rubric.TESTS if t.visibility == rubric.VISIBLE and t.kind == "check"]
    results = harness.grade(tmp_path / "sub", tests=public)
    assert results["score"] == 0 and len(results["tests"]) == len(public)
    assert all("the autograder could not run this test" in t["output"] for t in results["tests"])
    assert not marker.exists()


@needs_root
def test_account_that_cannot_run_python_means_no_grading(tmp_path, monkeypatch):
    """The worker's Python out of the account's reach (a folder it cannot enter): no grading."""
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "python").symlink_to(sandbox.worker_python())
    monkeypatch.setenv("AUTOGRADER_WORKER_PYTHON", str(hidden / "python"))
    user, why = sandbox.choose_worker()
    assert user is None and "refusing to run student code as root" in why and "cannot run" in why
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.py").write_text(variants.starter_text())
    results = harness.grade(tmp_path / "sub", tests=[t for t in rubric.TESTS if t.piece == "buffers"])
    assert all("the autograder could not run this test" in t["output"] for t in results["tests"])


# ---------------------------------------------------------------------------------------
# Hostile submissions through `make grade`, as root


@needs_root
def test_detached_helper_cannot_reach_the_next_worker(tmp_path):
    token = new_token()
    results = grade_file(tmp_path, hostile("detached_helper", token=token), "buffers,prefill")
    first, second = (first_row(results, piece)["output"] for piece in ("buffers", "prefill"))
    assert "not implemented yet" in first, first
    assert "not implemented yet" in second and "carried over" not in second, second
    assert not processes_named(token)
    assert not [p for p in ("/tmp", "/var/tmp", "/dev/shm") if (Path(p) / token).exists()]


@needs_root
def test_worker_cannot_connect(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    accepted = []

    def accept():
        end = time.monotonic() + 120
        while time.monotonic() < end and not accepted:
            try:
                accepted.append(listener.accept())
            except (TimeoutError, OSError):
                pass

    watcher = threading.Thread(target=accept, daemon=True)
    watcher.start()
    try:
        port = listener.getsockname()[1]
        results = grade_file(tmp_path, hostile("connects_to_network", port=port), "buffers")
    finally:
        accepted.append(None)  # stops the watcher
        watcher.join()
        listener.close()
    row = first_row(results, "buffers")
    assert "network: " in row["output"] and "CONNECTED" not in row["output"], row["output"]
    assert accepted == [None]


@needs_root
def test_fork_bomb_is_contained(tmp_path):
    token = new_token()
    results = grade_file(tmp_path, hostile("fork_bomb", token=token), "buffers")
    row = first_row(results, "buffers")
    assert "fork bomb: " in row["output"], row["output"]
    started = int(row["output"].split("fork bomb: ")[1].split()[0])
    assert started < confine.MAX_PROCESSES, row["output"]
    assert not processes_named(token)
    assert not confine.processes_of(sandbox.worker_user()[0])


@pytest.mark.slow
@needs_root
def test_job_cannot_read_another_jobs_folder(tmp_path):
    token = new_token()
    results = grade_file(tmp_path, hostile("reads_other_job", token=token), "buffers,prefill")
    for row in results["tests"]:
        assert "not implemented yet" in row["output"] and "read another job" not in row["output"], row
    assert not processes_named(token)


# ---------------------------------------------------------------------------------------
# setup.sh's self-check: passes on this build, fails on each broken one


def run_selfcheck(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder.selfcheck"],
        cwd=paths.ROOT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_selfcheck_passes_here():
    done = run_selfcheck()
    assert done.returncode == 0 and "selfcheck: ok" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_selfcheck_fails_when_the_worker_cannot_import_torch():
    """A worker too small to import torch (as a CUDA build was under the 1 GB cap) also scores 0
    on the starter; the self-check wants the starter's "not implemented yet" records."""
    done = run_selfcheck(AUTOGRADER_WORKER_MEM_MB="150")
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'should give "not implemented yet" for every test' in done.stderr, done.stderr


@needs_root
def test_selfcheck_fails_when_the_account_cannot_run_python(tmp_path):
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "python").symlink_to(sandbox.worker_python())
    done = run_selfcheck(AUTOGRADER_WORKER_PYTHON=str(hidden / "python"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to run student code as root" in done.stderr, done.stderr


def test_selfcheck_rejects_a_cuda_torch(monkeypatch):
    import torch

    assert selfcheck.install_problem() is None  # this kit's torch is a CPU build
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    problem = selfcheck.install_problem()
    assert problem and "is a CUDA build" in problem and "download.pytorch.org/whl/cpu" in problem


def test_worker_and_harness_agree_on_the_broken_worker_signal():
    from autograder import forkserver, worker

    assert (worker.BROKEN, worker.BROKEN_EXIT) == (sandbox.WORKER_BROKEN, sandbox.WORKER_BROKEN_EXIT)
    assert worker.HANDSHAKE_ENV == sandbox.HANDSHAKE_ENV
    assert (forkserver.BROKEN, forkserver.BROKEN_EXIT) == (sandbox.WORKER_BROKEN, sandbox.WORKER_BROKEN_EXIT)
    assert forkserver.HANDSHAKE_ENV == sandbox.HANDSHAKE_ENV


@needs_root
def test_files_of_the_worker_account_are_removed():
    uid, gid = sandbox.worker_user()
    planted = [Path(folder) / new_token() for folder in ("/tmp", "/var/tmp", "/dev/shm")]
    mine = Path("/tmp") / new_token()
    for path in planted + [mine]:
        path.write_text("for the next worker")
    for path in planted:
        os.chown(path, uid, gid)
    (planted[0].parent / (planted[0].name + "-dir")).mkdir()
    os.chown(planted[0].parent / (planted[0].name + "-dir"), uid, gid)
    try:
        removed = confine.remove_files_of(uid)
        assert (
            not [p for p in planted if p.exists()]
            and not (planted[0].parent / (planted[0].name + "-dir")).exists()
        )
        assert str(mine) not in removed and mine.exists()  # others' files stay
    finally:
        mine.unlink()


@needs_root
def test_shared_memory_of_the_worker_account_is_removed():
    """Where the kernel refuses the worker its own IPC namespace, System V objects would outlive
    it: the sweep after each job removes the account's."""
    uid, gid = sandbox.worker_user()

    def as_worker():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    code = "import ctypes; print(ctypes.CDLL(None).shmget(0, 4096, 0o600))"  # 0: IPC_PRIVATE
    done = subprocess.run(
        [sandbox.worker_python(), "-c", code], preexec_fn=as_worker, capture_output=True, text=True
    )
    shmid = int(done.stdout)
    assert shmid >= 0, done.stderr
    assert confine.remove_ipc_of(uid) >= 1
    listed = Path("/proc/sysvipc/shm").read_text().split("\n")[1:]
    assert not [row for row in listed if row.split()[1:2] == [str(shmid)]]


# ---------------------------------------------------------------------------------------
# No channel between jobs, the staff tree out of reach, clean-up of any tree (issue 28)


@pytest.mark.skipif(not confine.probe()["seccomp"], reason="this kernel refuses seccomp filters")
def test_filter_denies_the_keyring_and_other_processes_memory():
    """The kernel keyring outlives the job (the clean-up cannot see it): add_key, request_key
    and keyctl fail under the filter, as do ptrace and process_vm_readv on the parent; the
    same calls succeed without it, so the test sees the filter, not the kernel's defaults."""
    code = (
        "import ctypes, os, platform, sys\n"
        "from autograder.confine import DENIED_SYSCALLS\n"
        "if sys.argv[1] == 'filtered':\n"
        "    from autograder.confine import install_socket_filter\n"
        "    assert install_socket_filter()\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "nr = DENIED_SYSCALLS[platform.machine()]\n"
        "calls = {\n"
        "    'add_key': (nr['add_key'], b'user', b'ag-answers', b'x', 1, -4),\n"
        "    'request_key': (nr['request_key'], b'user', b'ag-answers', None, 0),\n"
        "    'keyctl': (nr['keyctl'], 0, -4, 0),\n"  # KEYCTL_GET_KEYRING_ID of the user keyring
        "    'ptrace': (nr['ptrace'], 0x4206, os.getppid(), 0, 0),\n"  # PTRACE_SEIZE
        "}\n"
        "for name, args in calls.items():\n"
        "    r = libc.syscall(*args)\n"
        "    print(name, 'EPERM' if r == -1 and ctypes.get_errno() == 1 else 'ok')\n"
    )
    run = lambda how: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code, how], cwd=paths.ROOT, capture_output=True, text=True, timeout=60
    )
    filtered, plain = run("filtered"), run("plain")
    assert filtered.returncode == 0 and plain.returncode == 0, filtered.stderr + plain.stderr
    assert filtered.stdout.split() == [
        "add_key",
        "EPERM",
        "request_key",
        "EPERM",
        "keyctl",
        "EPERM",
        "ptrace",
        "EPERM",
    ]
    plain_results = dict(zip(plain.stdout.split()[::2], plain.stdout.split()[1::2]))
    assert plain_results["add_key"] == plain_results["keyctl"] == "ok", plain.stdout


CHANNEL_WORKER = """
import ctypes, json, os, sys

libc = ctypes.CDLL(None, use_errno=True)
PLACES = {places}
KEY = {key}
seen = {{
    "files": [p for p in PLACES if os.path.exists(p)],
    "shm": libc.shmget(KEY, 0, 0) >= 0,
    "msg": libc.msgget(KEY, 0) >= 0,
}}
for p in PLACES:
    try:
        with open(p, "w") as f:
            f.write("answers for the next job")
    except OSError:
        pass
libc.shmget(KEY, 4096, 0o1600)  # IPC_CREAT | 0600
libc.msgget(KEY, 0o1600)
with open(os.path.join(sys.argv[1], "seen.json"), "w") as f:
    json.dump(seen, f)
"""


@needs_root
def test_a_job_finds_nothing_an_earlier_job_left(tmp_path):
    """Files in every shared writable folder, also in a world-writable folder inside one (as
    /tmp/.X11-unix is), System V shared memory and message queues: the first job leaves each,
    the second finds none, and none is left on the machine afterwards."""
    token = new_token()
    nested = Path("/tmp") / f"{token}-shared"
    nested.mkdir(mode=0o1777)
    nested.chmod(0o1777)
    places = [f"{d}/{token}" for d in confine.SHARED_WRITABLE if os.path.isdir(d)] + [f"{nested}/{token}"]
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    work.chmod(0o711)
    code = sandbox.prepare_code_dir(work)
    (code / "worker.py").write_text(CHANNEL_WORKER.format(places=places, key=0x5EED0000 + os.getpid() % 4096))
    user = sandbox.worker_user()
    try:
        seen = []
        for _ in range(2):
            job = sandbox.new_job_dir(work, user)
            result = sandbox.run_worker(code, job, 60, user)
            assert result.returncode == 0, result.log_tail
            seen.append(json.loads((job / "seen.json").read_text()))
            sandbox.remove_job_dir(job)
        assert seen == [{"files": [], "shm": False, "msg": False}] * 2
        assert not [p for p in places if os.path.lexists(p)]
    finally:
        for p in places:
            if os.path.lexists(p):
                os.unlink(p)
        nested.rmdir()


@needs_root
@pytest.mark.skipif(not confine.probe()["mounts"], reason="this kernel refuses mount namespaces")
def test_the_walk_up_upload_finds_no_solution(tmp_path):
    """Issue 28, item 4: an upload that walks up from the worker's Python, code and job (and one
    level down from every folder on the way) and execs the first solution/model.py it finds.
    The worker's view covers the kit's top-level folder: it finds none and grades as the
    starter it is (the static screen, which would refuse it, is off here)."""
    results = grade_file(tmp_path, hostile("walks_up_to_solution"), "buffers")
    row = first_row(results, "buffers")
    assert row["score"] == 0 and "not implemented yet" in row["output"], row["output"]


@needs_root
@pytest.mark.skipif(not confine.probe()["mounts"], reason="this kernel refuses mount namespaces")
def test_the_workers_view_shows_its_python_and_job_only(tmp_path):
    view = sandbox.worker_view(tmp_path / "code", tmp_path / "job")
    top = "/" + str(paths.ROOT.resolve()).strip("/").split("/")[0]
    # covered by an empty tmpfs, or (a checkout under /tmp, say) by the private tmpfs of a shared folder
    assert top in view.covers + view.shared or str(paths.ROOT.resolve()) in view.covers
    assert not [k for k in view.keeps if str(paths.ROOT.resolve()).startswith(k)]  # none shows the kit
    assert "/tmp" in view.shared


def deep_tree(top: Path, depth: int = 1500, outside: Path | None = None) -> None:
    """What the deep_tree upload builds: `depth` levels, names that are not UTF-8, folders
    without permissions, links to `outside`."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for i in range(depth):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        if i % 500 == 0:
            with open(os.open(b"odd\nname\xff", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
                f.write("x")
            if outside is not None:
                os.symlink(outside, b"link-out", dir_fd=fd)
                os.symlink(outside.parent, b"dir-link-out", dir_fd=fd)
            os.mkdir(b"locked", dir_fd=fd)
            os.close(os.open(b"locked/inside", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
            os.chmod(b"locked", 0, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)


def test_remove_tree_survives_what_shutil_rmtree_does_not(tmp_path):
    outside = tmp_path / "keep" / "grader.txt"
    outside.parent.mkdir()
    outside.write_text("the grader's")
    deep_tree(tmp_path / "a", outside=outside)
    with pytest.raises(RecursionError):  # what the harness used, and the failure it had
        import shutil

        shutil.rmtree(tmp_path / "a")
    deep_tree(tmp_path / "b", outside=outside)
    confine.remove_tree(tmp_path / "b")
    confine.remove_tree(tmp_path / "a")  # and what rmtree left half-removed
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert outside.read_text() == "the grader's"  # links were removed, never followed
    confine.remove_tree(tmp_path / "never-existed")  # nothing to do is not an error


@needs_root
def test_the_sweep_removes_a_deep_tree_of_the_worker_account():
    """Where the kernel refuses the worker its own /tmp, the sweep after each job removes what
    the account left there, a 1,500-level tree included (it once raised RecursionError)."""
    uid, gid = sandbox.worker_user()
    top = Path("/tmp") / new_token()
    deep_tree(top)
    os.chown(top, uid, gid)
    try:
        assert str(top) in confine.remove_files_of(uid)
        assert not top.exists()
    finally:
        if top.exists():
            confine.remove_tree(top)


WORKER_IMPORTS = """
import importlib, json, sys
import speed, worker
from infkit import checks, loading
for probe in {probes!r}:
    importlib.import_module(probe.split(":")[0])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "infkit")))
"""


def test_the_workers_code_folder_holds_only_what_it_imports(tmp_path):
    """A job's code folder: worker.py, speed.py, the given code, and the infkit files they
    import, every one of them loaded when the worker's imports run from that folder alone."""
    from infkit import optional

    code = sandbox.prepare_code_dir(tmp_path)
    assert {p.name for p in code.iterdir()} == {"infkit", "worker.py", "speed.py", "reference_model.py"}
    copied = sorted(p.relative_to(code) for p in (code / "infkit").rglob("*.py"))
    assert copied == sorted(p.relative_to(paths.ROOT) for p in sandbox.worker_infkit_files())
    probes = [optional.reference(pair.probe) for pair in optional.PAIRS.values()]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INFKIT_MODEL")}
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-c", WORKER_IMPORTS.format(probes=probes)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout))
    as_modules = {".".join(p.with_suffix("").parts).removesuffix(".__init__") for p in copied}
    assert loaded == as_modules, {
        "loaded, not copied": loaded - as_modules,
        "copied, unused": as_modules - loaded,
    }
    assert not {"infkit.bench", "infkit.notebook", "infkit.corpus"} & as_modules


# A worker.py for the template test: job "poison" changes what it can of its interpreter (torch,
# the kit's modules, builtins, the environment, a new module) and, as root, goes for the template
# itself; job "look" reports what it finds of all that.
TEMPLATE_WORKER = """
import sys

seen = {"torch_preloaded": "torch" in sys.modules}  # imported by the template, not by this job
import builtins, json, os, signal
import torch
from infkit import checks

job = json.load(open(os.path.join(sys.argv[1], "job.json")))
if job["role"] == "poison":
    torch.Tensor.__add__ = lambda self, other: "poisoned"
    checks.judge = None
    builtins.POISON = 1
    os.environ["POISON"] = "1"
    sys.modules["poison"] = object()
    if job["attack"]:
        for name, attack in (
            ("signal", lambda: os.kill(job["template"], signal.SIGSTOP)),
            ("memory", lambda: open("/proc/%d/mem" % job["template"], "r+b")),
        ):
            try:
                attack()
                seen[name] = "done"
            except OSError as e:
                seen[name] = type(e).__name__
else:
    seen.update(
        add=type(torch.ones(1) + torch.ones(1)).__name__,
        judge=checks.judge is not None,
        builtins=hasattr(builtins, "POISON"),
        environ="POISON" in os.environ,
        module="poison" in sys.modules,
    )
json.dump(seen, open(os.path.join(sys.argv[1], "seen.json"), "w"))
"""


def test_the_template_passes_nothing_from_one_job_to_the_next(tmp_path):
    """Every worker is forked from one template (sandbox.ForkServer), which has imported torch
    and the kit and never an upload. A job that rewrites torch, the kit's modules, builtins and
    its environment leaves nothing of it to the next job of the same template; as root it can
    neither stop the template nor open its memory (the worker account is not root's)."""
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    work.chmod(0o711)
    code = sandbox.prepare_code_dir(work)
    (code / "worker.py").write_text(TEMPLATE_WORKER)
    user = sandbox.worker_user() if dropping_privileges() else None
    template = sandbox.fork_server(code).proc.pid
    # Memory every fork would share with the template and with each other: none is writable.
    maps = Path(f"/proc/{template}/maps").read_text().splitlines()
    assert not [m for m in maps if m.split()[1][1] == "w" and m.split()[1][3] == "s"], maps
    seen = []
    for role in ("poison", "look"):
        job = sandbox.new_job_dir(work, user)
        spec = {"role": role, "template": template, "attack": user is not None}
        (job / "job.json").write_text(json.dumps(spec))
        result = sandbox.run_worker(code, job, 120, user)
        assert result.returncode == 0, result.log_tail
        seen.append(json.loads((job / "seen.json").read_text()))
        sandbox.remove_job_dir(job)
    assert sandbox.fork_server(code).proc.pid == template  # the same template served both jobs
    poisoned, looked = seen
    assert poisoned["torch_preloaded"]
    assert looked == {
        "torch_preloaded": True,
        "add": "Tensor",
        "judge": True,
        "builtins": False,
        "environ": False,
        "module": False,
    }
    if user is not None:
        assert poisoned["signal"] == "PermissionError" and poisoned["memory"] == "PermissionError", poisoned
    sandbox.stop_fork_server()
