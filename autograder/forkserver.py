"""The workers' template: a Python that has imported torch and the kit, and never a student's
file, forks one confined worker per job (sandbox.ForkServer asks, over a Unix socket).

Started by the harness as `python -E -s forkserver.py FD CODE` (FD: its end of the socket;
CODE: the jobs' code folder, sandbox.prepare_code_dir, which replaces this file's folder on
sys.path before anything is imported from it, as it is first on a fresh worker's). A fresh
worker spent about 2 s of CPU importing torch and `torch._inductor` (which
torch.use_deterministic_algorithms, DEBUG's switch, imports) before reading its job; here that
is paid once per grading. For each request (the job's folder, its environment, the
account and limits, and the worker's log and handshake descriptors, passed with SCM_RIGHTS) it
forks twice: the middle process exits at once, so the worker is re-parented to the harness
(a child subreaper) and the harness waits for it, reads its CPU time and kills its group as it
would a process it started. The worker then does what a fresh one did between fork and exec:
its own session, its log on stdout and stderr, no other descriptor, the job's folder and
environment, the confinement (confine.confine_worker), and only then runs worker.py as
__main__.

Why nothing crosses from one job to the next: every worker is a fresh fork of this template,
which never loads an upload, never reads a job's folder, and is never written to by a job: a
worker's memory is its own copy-on-write copy, and as the worker account (root runs the
template) it may not signal, trace or read the memory of a root process; the seccomp filter
also denies ptrace and process_vm_writev. What the template holds is what every worker imports
anyway: torch and the kit's code folder, no seed, no expected output, no reference solution.
"""

import importlib
import json
import os
import runpy
import socket
import sys
import tempfile
import traceback

HANDSHAKE_ENV = "AUTOGRADER_HANDSHAKE"  # sandbox.HANDSHAKE_ENV
BROKEN, BROKEN_EXIT = "AUTOGRADER-WORKER-BROKEN", 86  # worker.py's signal: the grader's fault
HEADROOM_MB = 64  # the least address space a worker needs beyond what it inherits
CONFINEMENT_FAILED_EXIT = 70
confine = None  # autograder/confine.py, imported by main() from this file's folder


# What every worker imports, in this order: torch, what DEBUG's use_deterministic_algorithms
# imports (1.2 s of CPU alone), then the code folder's modules.
PRELOADED = ("torch", "torch._inductor.config", "speed", "infkit.checks", "infkit.loading", "infkit.optional")


def warm_up() -> None:
    """Import what every worker imports, so that no worker pays for it. Best effort: where one
    does not import here (a test's code folder may hold only its worker), the worker's own
    import fails and says so (worker.BROKEN)."""
    names = list(PRELOADED)
    while names:
        name = names.pop(0)
        try:
            module = importlib.import_module(name)
        except Exception as e:
            print(f"forkserver: {name} not preloaded: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        if name == "torch":
            module.set_num_threads(1)  # the grader's choice (worker.pin_threads); starts no pool
        if name == "infkit.optional":  # the optional pieces' probes, which jobs name
            names += [pair.probe.__module__ for pair in module.PAIRS.values()]


def serve(sock: socket.socket) -> None:
    sock.sendall(b"ready")
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
        if not message:  # the harness closed its end: the grading is over
            return
        try:
            reply = {"pid": spawn(json.loads(message), fds, sock)}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.sendall(json.dumps(reply).encode())


def spawn(request: dict, fds: list, sock: socket.socket) -> int:
    """Fork the job's worker through a middle process that exits at once; returns its pid once
    it is the harness's child."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_end)
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                become_worker(request, fds, sock)  # never returns
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = b""
    while chunk := os.read(read_end, 64):
        answer += chunk
    os.close(read_end)
    os.waitpid(middle, 0)  # gone: its child now belongs to the nearest subreaper, the harness
    if not answer:
        raise OSError("the worker could not be forked")
    return int(answer)


def address_space_mb() -> int:
    """This process's address space (VmSize), in MB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    return 0


def become_worker(request: dict, fds: list, sock: socket.socket) -> None:
    """In the forked worker: what a fresh process got from sandbox.run_worker, then worker.py."""
    log, status, *handshake = fds
    try:
        sock.close()
        os.setsid()  # its own session and process group: the harness kills all it starts
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        keep = {0, 1, 2, status, *handshake}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        os.chdir(request["job_dir"])
        os.environ.clear()
        os.environ.update(request["env"])
        if handshake:
            os.environ[HANDSHAKE_ENV] = ",".join(map(str, handshake))
        tempfile.tempdir = None  # found again from TMPDIR, the job's folder
        view = request["view"] and confine.View(**{k: tuple(v) for k, v in request["view"].items()})
        user = tuple(request["user"]) if request["user"] else None
        confine.confine_worker(user, request["cpu_s"], request["memory_mb"], request["max_file_mb"], view)
    except BaseException as e:
        try:
            os.write(status, f"{type(e).__name__}: {e}".encode()[:2000])
        finally:
            os._exit(CONFINEMENT_FAILED_EXIT)
    os.write(status, b"ok")
    os.close(status)
    inherited = address_space_mb()
    if inherited + HEADROOM_MB > request["memory_mb"]:  # what a fresh worker's import of torch would hit
        print(
            f"{BROKEN}: MemoryError: the template's {inherited} MB of address space leave no room "
            f"under the worker's {request['memory_mb']} MB cap",
            flush=True,
        )
        os._exit(BROKEN_EXIT)
    code = 0
    try:
        sys.argv = [request["worker"], request["job_dir"]]
        runpy.run_path(request["worker"], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def main() -> None:
    global confine
    import confine as here  # from this file's folder, before it leaves the path

    confine = here
    sys.path[0] = sys.argv[2]  # the code folder, where a fresh worker's imports were found
    warm_up()
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
