"""Run the worker on untrusted code: its own process group, an unprivileged account where we
are root (never root itself: the harness refuses to grade instead), rlimits on memory / CPU time /
file size / processes, no network (confine.py), a wall-clock timeout, output to a capped log,
and after the job nothing of it left running or on disk (confine.end_job, remove_files_of).

Only the harness (the parent) reads what comes back, and it trusts none of it: see harness.py.
"""

import atexit
import dataclasses
import json
import os
import pwd
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from infkit import paths

from . import confine, imports

# The unprivileged account that setup.sh creates, else `nobody`; AUTOGRADER_WORKER_USER names
# another, or gives a bare uid (no account needed: the tests take one per session).
WORKER_USERS = ("autograder-student", "nobody")
MEMORY_MB = int(os.environ.get("AUTOGRADER_WORKER_MEM_MB", "1024"))  # address space (RLIMIT_AS)
MAX_FILE_MB = 64  # any one file the worker writes: its printed output, its out.pt
MAX_OUT_MB = 32  # the largest out.pt the harness agrees to read
TOO_MUCH_OUTPUT = f"your code printed more than {MAX_FILE_MB} MB (prints in a loop?) and was stopped."
# worker.py's signal that the grader's own packages did not import (kept in step with it)
WORKER_BROKEN, WORKER_BROKEN_EXIT = "AUTOGRADER-WORKER-BROKEN", 86
LOG_TAIL = 1500  # characters of the worker's output shown with a failure


CleanupFailed = confine.CleanupFailed  # what a job left could not be removed (the grader's failure)
# How the harness says so: a flag in results.json and its exit status (grade-all then stops).
CLEANUP_FLAG = "cleanup failed"
CLEANUP_FAILED_EXIT = 3


def remove_job_dir(job: Path) -> None:
    """Remove a job's folder, whatever the worker built in it (confine.remove_tree); raises
    CleanupFailed when something stays."""
    confine.remove_tree(job)


@dataclass
class WorkerResult:
    returncode: int | None
    timed_out: bool
    log_bytes: int
    log_tail: str
    out_path: Path
    cpu_s: float = 0.0  # user + system CPU seconds of the worker, from the kernel (wait4)
    setup_cpu_s: float | None = None  # the same when it reported its set-up done (see run_worker)


# The handshake of a timed worker: it writes a line to the fd named first in HANDSHAKE_ENV when
# its set-up is done, then reads the calls' seed from the second.
HANDSHAKE_ENV = "AUTOGRADER_HANDSHAKE"


# The environment every worker starts from; run_worker adds the job's folders.
WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "INFKIT_OFFLINE": "1",
}


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads, and the children it
    reaped), as the kernel counts them (/proc/PID/stat); None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])  # fields 14-17 of proc(5)
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def worker_user():
    """(uid, gid) to drop to, or None when not root (then the worker runs as ourselves)."""
    if os.geteuid() != 0:
        return None
    chosen = os.environ.get("AUTOGRADER_WORKER_USER", "")
    if chosen.isdigit() and int(chosen) != 0:
        return int(chosen), int(chosen)
    for name in (chosen,) * bool(chosen) + WORKER_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry.pw_uid, entry.pw_gid
    return None


def worker_python() -> str:
    """The interpreter the worker runs: ours, or AUTOGRADER_WORKER_PYTHON (the same environment
    installed where the worker account can read it, e.g. when ours lives in root's home)."""
    return os.environ.get("AUTOGRADER_WORKER_PYTHON") or sys.executable


def provide_worker_python(user) -> str | None:
    """For a development machine run as root whose interpreter the worker account cannot reach
    (pyenv in root's home, say): a venv of the system's Python of the same version that sees our
    packages, in a folder the account can read, set as AUTOGRADER_WORKER_PYTHON for this process
    and its children. Nothing to do when the account can run ours (Gradescope's venv is made
    readable by setup.sh). Returns the interpreter the workers will run, or None."""
    if user is None or os.environ.get("AUTOGRADER_WORKER_PYTHON") or can_run_as(user):
        return os.environ.get("AUTOGRADER_WORKER_PYTHON") or (sys.executable if user else None)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if base is None:
        return None
    venv = tempfile.mkdtemp(prefix="worker-python-")
    os.chmod(venv, 0o755)
    atexit.register(shutil.rmtree, venv, ignore_errors=True)
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(venv, "lib", version, "site-packages")
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site / "infkit-shared.pth").write_text("\n".join(ours) + "\n")
    os.environ["AUTOGRADER_WORKER_PYTHON"] = f"{venv}/bin/python"
    return os.environ["AUTOGRADER_WORKER_PYTHON"]


def cannot_run_as(user) -> str | None:
    """Why `user` cannot start the worker's Python under the worker's confinement, or None."""
    try:
        done = subprocess.run(
            [worker_python(), "-E", "-s", "-c", "pass"],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            preexec_fn=_confine(user, 60, MEMORY_MB),
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"{type(e).__name__}: {e}"
    if done.returncode != 0:
        return f"exit code {done.returncode}: {done.stderr.decode('utf-8', 'replace')[-300:]}"
    return None


def can_run_as(user) -> bool:
    return cannot_run_as(user) is None


def choose_worker():
    """(account to run student code as, None) or (None, why we must not grade). Not root: the
    worker runs as ourselves. Root: as the worker account, or not at all (fail closed)."""
    if os.geteuid() != 0:
        return None, None
    user = worker_user()
    if user is None:
        why = f"none of the accounts {', '.join(WORKER_USERS)} exists (setup.sh creates {WORKER_USERS[0]})"
    else:
        why = cannot_run_as(user)
        if why:
            why = (
                f"uid {user[0]} cannot run {worker_python()} ({why}); install the environment where "
                "that account can read it, or set AUTOGRADER_WORKER_PYTHON to such a copy"
            )
    if why:
        return None, f"refusing to run student code as root: {why}."
    return user, None


# What the worker runs: its two files, and the module that names the optional pieces' probes
# (the worker imports a probe by the name a job gives it).
WORKER_FILES = ("worker.py", "speed.py")
WORKER_ENTRIES = (
    *(Path(__file__).parent / name for name in WORKER_FILES),
    paths.ROOT / "infkit" / "optional.py",
)


def worker_infkit_files() -> list[Path]:
    """The infkit files the worker imports (imports.infkit_files of WORKER_ENTRIES)."""
    return imports.infkit_files(WORKER_ENTRIES, paths.ROOT)


def prepare_code_dir(parent: Path) -> Path:
    """A world-readable copy of exactly what the worker imports: worker.py, speed.py, the infkit
    files they reach, and the reference (given) model code. No rubric, no harness, no hidden
    seeds, no infkit module the worker never imports."""
    code = parent / "code"
    code.mkdir()
    here = Path(__file__).parent
    for src in worker_infkit_files():
        target = code / src.relative_to(paths.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
    for name in WORKER_FILES:
        shutil.copy(here / name, code / name)
    shutil.copy(paths.STARTER_MODEL, code / "reference_model.py")
    for p in [code, *code.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return code


def new_job_dir(parent: Path, user) -> Path:
    job = Path(tempfile.mkdtemp(prefix="job-", dir=parent))
    if user:
        os.chown(job, *user)
    job.chmod(0o700)
    return job


_interpreter_paths = {}


def worker_view(code_dir: Path, job_dir: Path) -> confine.View | None:
    """The worker's own view of the file system (confine.View), or None where the kernel
    refuses mount namespaces (reported to staff by confine.warnings): the kit's tree and its
    siblings covered, the worker's interpreter and packages, its code and its job mounted back,
    fresh shared writable folders. The interpreter's folders are asked of it once."""
    if os.geteuid() != 0 or not confine.probe().get("mounts"):
        return None
    python = worker_python()
    if python not in _interpreter_paths:
        ask = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
        done = subprocess.run([python, "-E", "-s", "-c", ask], capture_output=True, text=True, check=True)
        real = os.path.dirname(os.path.realpath(python))
        _interpreter_paths[python] = [*json.loads(done.stdout), os.path.dirname(python), real]
    return confine.plan_view(paths.ROOT, [*_interpreter_paths[python], str(code_dir), str(job_dir)])


def _confine(user, cpu_s: int, memory_mb: int, view: confine.View | None = None):
    """confine.confine_worker as a preexec_fn (the probe of cannot_run_as starts a fresh Python)."""
    return lambda: confine.confine_worker(user, cpu_s, memory_mb, MAX_FILE_MB, view)


class ForkServer:
    """The workers' template process (forkserver.py): started once per code folder, it has
    imported torch and the kit and forks a confined worker per job, re-parented to us. What it
    is, and why no state crosses from one job to the next: forkserver.py's docstring and
    docs/grading.md."""

    START_TIMEOUT_S = 180  # torch's import on a busy machine

    def __init__(self, code_dir: Path):
        self.key = (worker_python(), str(code_dir))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [worker_python(), "-E", "-s", str(FORK_SERVER), str(theirs.fileno()), str(code_dir)],
                cwd="/",
                env=WORKER_ENV,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.errors,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C at the terminal is the harness's to handle
            )
        except BaseException:
            ours.close()
            self.errors.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        if self._receive(self.START_TIMEOUT_S) != b"ready":
            raise OSError(f"the workers' template did not start: {self._why()}")

    def _receive(self, timeout_s: float) -> bytes:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1 << 16)
        except OSError:  # a time-out, or it died
            return b""

    def _why(self) -> str:
        self.close()
        self.errors.seek(0)
        return self.errors.read()[-800:].decode("utf-8", "replace").strip() or "no message"

    def spawn(self, job_dir: Path, env: dict, user, cpu_s: int, memory_mb: int, view, fds: list) -> int:
        """Fork a confined worker of the job; returns its pid (our child once this returns)."""
        request = {
            "worker": str(Path(self.key[1]) / "worker.py"),
            "job_dir": str(job_dir),
            "env": env,
            "user": list(user) if user else None,
            "cpu_s": cpu_s,
            "memory_mb": memory_mb,
            "max_file_mb": MAX_FILE_MB,
            "view": dataclasses.asdict(view) if view is not None else None,
        }
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
        except OSError as e:
            raise OSError(f"the workers' template is gone ({e}): {self._why()}") from e
        reply = self._receive(60)
        if not reply:
            raise OSError(f"the workers' template did not answer: {self._why()}")
        answer = json.loads(reply)
        if "pid" not in answer:
            raise OSError(f"the workers' template could not fork a worker: {answer.get('error')}")
        return int(answer["pid"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()  # it exits when its end closes; a stuck one is killed
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc.pid)
            self.proc.wait()


FORK_SERVER = Path(__file__).parent / "forkserver.py"
_fork_server: ForkServer | None = None


def fork_server(code_dir: Path) -> ForkServer:
    """The running template for this code folder and worker Python, started (or restarted, if
    it died) as needed; one at a time: another code folder's is stopped first."""
    global _fork_server
    key = (worker_python(), str(code_dir))
    if _fork_server is not None and (_fork_server.key != key or not _fork_server.alive()):
        stop_fork_server()
    if _fork_server is None:
        _fork_server = ForkServer(code_dir)
    return _fork_server


def stop_fork_server() -> None:
    global _fork_server
    if _fork_server is not None:
        server, _fork_server = _fork_server, None
        server.close()


atexit.register(stop_fork_server)


def _kill_group(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_worker(
    code_dir: Path,
    job_dir: Path,
    timeout_s: float,
    user=None,
    memory_mb: int = MEMORY_MB,
    handshake: bytes | None = None,
):
    """Run worker.py on job_dir in a worker of its own, forked confined by the template of
    code_dir (ForkServer); always returns (never raises for anything the worker does; raises
    OSError where the grader cannot start or confine a worker).

    With `handshake`, a timed job: when the worker says its set-up is done, its CPU time is
    read from the kernel (`setup_cpu_s`), and only then is it sent `handshake` (the seed of the
    prompts it is timed on). Work that depends on the prompts can therefore only happen after
    that reading, so (cpu_s - setup_cpu_s) is the cost of the timed calls alone: no other
    process's set-up, with its own spread under load, is subtracted from it."""
    log_path = job_dir / "log.txt"
    env = dict(WORKER_ENV, HOME=str(job_dir), TMPDIR=str(job_dir), INFKIT_CACHE=str(job_dir / "cache"))
    try:
        view = worker_view(code_dir, job_dir) if user else None
    except (OSError, subprocess.SubprocessError, ValueError) as e:  # the grader's, not the student's
        raise OSError(f"could not ask the worker's Python for its folders: {e}") from e
    confine.become_subreaper()  # the worker comes back to us, and what it detaches: see end_job
    server = fork_server(code_dir)  # before `ours`: the template outlives every job
    ours = confine.our_processes()  # the caller's own children (a load generator, say) are spared
    timed_out = False
    ready_r, ready_w = os.pipe() if handshake is not None else (None, None)
    go_r, go_w = os.pipe() if handshake is not None else (None, None)
    status_r, status_w = os.pipe()
    setup_cpu_s = None
    # The log is read back through this same descriptor: the worker may rename or replace the
    # file (say, by a link to a grader file), but not the inode we opened.
    with open(log_path, "w+b") as log:
        if user:
            os.fchown(log.fileno(), *user)
        passed = [log.fileno(), status_w] + ([ready_w, go_r] if handshake is not None else [])
        try:
            pid = server.spawn(job_dir, env, user, int(timeout_s) + 1, memory_mb, view, passed)
        except BaseException:  # no worker: no pipe outlives the call
            _close(ready_r, go_w, status_r)
            raise
        finally:
            _close(ready_w, go_r, status_w)  # the worker's ends: it holds its own copies
        returncode, cpu_s, deadline = None, 0.0, time.monotonic() + timeout_s
        try:
            # its confinement holds, or it says why, before anything of the job runs
            confined = _read_to_end(status_r, 60)
            status_r = None
            if confined != b"ok":
                why = confined.decode("utf-8", "replace") or "no answer"
                raise OSError(f"the worker's confinement failed: {why}")
            # wait4: it also returns the worker's CPU time as the kernel counted it, which the
            # speed tests use because the worker's own clocks can be faked.
            while True:
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    returncode = os.waitstatus_to_exitcode(status)
                    cpu_s = usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if ready_r is None:
                    time.sleep(0.02)
                elif select.select([ready_r], [], [], 0.02)[0]:
                    if os.read(ready_r, 64):  # set-up done: read its CPU, then send the seed
                        setup_cpu_s = process_cpu_s(pid)
                        try:
                            os.write(go_w, handshake)
                        except OSError:  # it closed its end: it will fail without the seed
                            pass
                    os.close(ready_r)  # one reading only (and no spinning on an end it closed)
                    ready_r = None
        finally:
            _close(ready_r, go_w, status_r)
            _kill_group(pid)
            if returncode is None:  # killed above: reaped here, its CPU charged to the job
                _, status, usage = os.wait4(pid, 0)
                returncode = os.waitstatus_to_exitcode(status)
                cpu_s = usage.ru_utime + usage.ru_stime
            # Helpers it detached (setsid, double fork) are killed and reaped here, and the CPU
            # they used is charged to the job: work moved out of the worker still counts.
            cpu_s += end_job(user, spare=ours)
        size = os.fstat(log.fileno()).st_size
        log.seek(max(0, size - LOG_TAIL))
        tail = log.read(LOG_TAIL).decode("utf-8", "replace")
    return WorkerResult(returncode, timed_out, size, tail, job_dir / "out.pt", cpu_s, setup_cpu_s)


def _read_to_end(fd: int, timeout_s: float) -> bytes:
    """What is written to `fd` until every writer closes it (at most `timeout_s`); closes it."""
    data, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(fd)
    return data


def _close(*fds) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def is_shared_account(user) -> bool:
    """`nobody` may run system daemons and other gradings: never kill all of its processes."""
    try:
        return user[0] == pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return False


def end_job(user, spare: frozenset = frozenset()) -> float:
    """Nothing of a job outlives it: its processes (CPU seconds returned; `spare`: processes
    that ran before it) and, for a separate account, its files in the shared writable folders,
    which the next worker could read."""
    cpu_s = confine.end_job(user, kill_account=bool(user) and not is_shared_account(user), spare=spare)
    if user:
        confine.remove_files_of(user[0])
        confine.remove_ipc_of(user[0])
    return cpu_s


def is_plain_file(path: Path) -> bool:
    """A regular file with one link: not a symlink or hard link the worker planted."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def crash_limit(r: WorkerResult) -> str:
    """What stopped a worker that left no usable output: broken (the grader's own packages did
    not import), output, cpu, signal, memory or exit (results.json records it)."""
    rc = r.returncode
    if rc == WORKER_BROKEN_EXIT and WORKER_BROKEN in r.log_tail:
        return "broken"
    if rc is not None and rc < 0:
        return {signal.SIGXFSZ: "output", signal.SIGXCPU: "cpu"}.get(-rc, "signal")
    if r.log_bytes >= (MAX_FILE_MB - 1) * 1024 * 1024:
        return "output"
    return "memory" if "MemoryError" in r.log_tail else "exit"


def explain_crash(r: WorkerResult, timeout_s: float, memory_mb: int = MEMORY_MB) -> str:
    """One sentence for the student about a worker that produced no usable output."""
    if r.timed_out:
        return f"your code did not finish within {timeout_s:.0f} s (an infinite loop, or far too slow?)."
    limit, rc = crash_limit(r), r.returncode
    if limit == "broken":
        return (
            "the grader's worker could not import its own packages (torch, the kit) before reading "
            "your file: a problem with the autograder, not your code; please contact the course staff."
        )
    if limit == "output":
        if rc is not None and rc < 0:
            return (
                f"your code wrote more than {MAX_FILE_MB} MB of output (prints in a loop?) and was stopped."
            )
        return TOO_MUCH_OUTPUT
    if limit == "cpu":
        return "your code used up its CPU time limit and was stopped."
    if limit == "signal":
        sig = signal.Signals(-rc)
        if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
            return (
                f"your code was killed by signal {sig.name}: most often it ran out of "
                f"memory (the limit is {memory_mb} MB) or crashed the interpreter."
            )
        return f"your code was killed by signal {sig.name}."
    if limit == "memory":
        return f"your code ran out of memory (the limit is {memory_mb} MB)."
    return (
        f"the grader's process ended (exit code {rc}) before your code finished: do not call "
        "sys.exit(), os._exit() or exit() in model.py."
    )
