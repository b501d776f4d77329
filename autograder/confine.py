"""Kernel-level confinement of the worker, through libc (ctypes: Gradescope's Python 3.10 has no
os.unshare), and the clean-up after each job.

- The harness is a child subreaper: whatever the worker forks, detaches (setsid) or double-forks
  is re-parented to the harness when its parent dies, so every process the student starts stays
  a descendant we can find, kill and reap; reaping also gives us its CPU time for the verdicts.
- As root, before dropping to the worker account, the worker gets its own network namespace
  (no interface but a downed loopback) and IPC namespace (no System V objects shared with the
  next worker), where the kernel allows it.
- Always, a seccomp filter lets the worker create Unix sockets only (no TCP/UDP/raw/netlink)
  and no io_uring, which could open sockets behind the filter's back.
- After each job: every process descended from the harness is killed and reaped, and as root
  every process of the worker account (kill(-1) sent as that account, which the kernel applies
  atomically, so a fork bomb cannot outrun it; not for `nobody`, which others use) and its files
  in the shared writable folders (/tmp, /var/tmp, /dev/shm, ...) and its System V IPC objects
  are removed.
"""

import ctypes
import os
import platform
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
AF_UNIX = 1
# Folders every account may write to on Ubuntu: a file left there would reach the next worker.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue")
# Processes the worker account may have at once (threads count too): torch's start-up and a
# test use fewer than 20; a fork bomb stops here instead of exhausting the machine.
MAX_PROCESSES = 64

# (audit arch, socket, io_uring_setup) for the architectures Gradescope may run on.
_SYSCALLS = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}


def _prctl(option: int, arg: int = 0, arg2=0) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), arg2, ctypes.c_ulong(0), ctypes.c_ulong(0))


def become_subreaper() -> bool:
    """Orphans of our descendants come back to this process instead of init."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0


# ---------------------------------------------------------------------------------------
# seccomp: no sockets but Unix ones


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _filter_program() -> bytes | None:
    """A classic BPF program for seccomp, or None on an architecture we have no numbers for."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    arch, nr_socket, nr_io_uring = numbers
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000  # ALLOW, ERRNO(EPERM), KILL_PROCESS
    # (opcode, jump-if-true label, jump-if-false label, k); labels are resolved below
    code = [
        (ld, None, None, 4),  # the syscall's architecture
        (jeq, None, "kill", arch),  # a foreign ABI (i386 through int 0x80) gets no further
        (ld, None, None, 0),  # the syscall number
        (jge, "deny", None, 0x40000000),  # the x32 ABI's numbers
        (jeq, "deny", None, nr_io_uring),
        (jeq, None, "allow", nr_socket),
        (ld, None, None, 16),  # socket()'s first argument, the address family
        (jeq, "allow", "deny", AF_UNIX),
        "allow",
        (ret, None, None, allow),
        "deny",
        (ret, None, None, deny),
        "kill",
        (ret, None, None, kill),
    ]
    labels, pc = {}, 0
    for item in code:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 1
    out, pc = b"", 0
    for item in code:
        if isinstance(item, str):
            continue
        op, jt, jf, k = item
        rel = [0 if label is None else labels[label] - pc - 1 for label in (jt, jf)]
        out += struct.pack("<HBBI", op, rel[0], rel[1], k)
        pc += 1
    return out


_PROGRAM = _filter_program()


def install_socket_filter() -> bool:
    """In the calling process (and everything it starts): socket() only for AF_UNIX, no io_uring.
    Needs no privilege (no_new_privs is set first, as the kernel requires)."""
    if _PROGRAM is None:
        return False
    buf = ctypes.create_string_buffer(_PROGRAM)
    prog = _SockFprog(len(_PROGRAM) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        return False
    return _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog)) == 0


def unshare_network_and_ipc() -> bool:
    """A fresh network and IPC namespace for the calling process; needs root (CAP_SYS_ADMIN)."""
    return _libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0


def probe() -> dict:
    """What the kernel lets us do here, tried in a throw-away child: {"namespaces", "seccomp"}."""
    found = {}
    for name, attempt in (("namespaces", unshare_network_and_ipc), ("seccomp", install_socket_filter)):
        if name == "namespaces" and os.geteuid() != 0:
            found[name] = False
            continue
        done = subprocess.run(["/bin/true"], preexec_fn=lambda a=attempt: _exit_unless(a()), check=False)
        found[name] = done.returncode == 0
    return found


def _exit_unless(ok: bool):
    if not ok:
        os._exit(1)


def warnings(found: dict) -> list[str]:
    """Staff-facing lines for every protection the kernel refused."""
    out = []
    if not found.get("namespaces") and os.geteuid() == 0:
        out.append(
            "WARNING: the kernel refused a network/IPC namespace for the worker (no CAP_SYS_ADMIN in "
            "this container?): the socket filter alone keeps it off the network, and System V shared "
            "memory is not isolated between workers."
        )
    if not found.get("seccomp"):
        out.append(
            "WARNING: the kernel refused the seccomp socket filter: "
            + (
                "the network namespace still keeps the worker off the network."
                if found.get("namespaces")
                else "student code CAN open network connections on this machine."
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# After a job


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, real uid) of every process we can see."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(
                line.split(":", 1)
                for line in Path(entry.path, "status").read_text().splitlines()
                if ":" in line
            )
            table[int(entry.name)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]))
        except (OSError, KeyError, ValueError):
            continue  # it ended while we looked
    return table


def descendants(table: dict, root: int) -> list[int]:
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def processes_of(uid: int) -> list[int]:
    return [pid for pid, (_, owner) in _processes().items() if owner == uid]


def _kill_all_as(user):
    """kill(-1, SIGKILL) sent by a process of the worker account: every process of that account
    dies in one pass of the kernel's task list, however fast it forks."""

    def as_worker():
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
        os.kill(-1, signal.SIGKILL)

    subprocess.run(["/bin/true"], preexec_fn=as_worker, check=False)


def our_processes() -> set[int]:
    """Our descendants now: processes the caller started before a job, which end_job spares."""
    return set(descendants(_processes(), os.getpid()))


def end_job(user, kill_account: bool = False, spare: frozenset = frozenset(), rounds: int = 200) -> float:
    """Kill what the job left running (our descendants but those in `spare`, which ran before the
    job; with `kill_account`, every process of the worker account), reap it, and return the CPU
    seconds of what we reaped: work a detached helper did during the job is charged to the job."""
    cpu, me = 0.0, os.getpid()
    for _ in range(rounds):
        if kill_account:
            _kill_all_as(user)
        table = _processes()
        left = [pid for pid in descendants(table, me) if pid not in spare]
        if kill_account:
            left += [pid for pid, (_, uid) in table.items() if uid == user[0] and pid not in left]
        if not left:
            return cpu
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in left:
            if table[pid][0] == me:  # our child (re-parented orphans included): reap it
                try:
                    _, _, usage = os.wait4(pid, 0)
                    cpu += usage.ru_utime + usage.ru_stime
                except ChildProcessError:
                    pass
        time.sleep(0.005)
    # an OSError: the harness reports it as its own failure to run the test, for staff
    raise OSError(f"processes of the worker are still running after {rounds} rounds of SIGKILL")


def remove_ipc_of(uid: int) -> int:
    """Remove the System V shared memory, message queues and semaphores `uid` owns (where the
    kernel refused the worker its own IPC namespace they would outlive it); returns how many."""
    removed = 0
    for kind, remove in (
        ("shm", lambda i: _libc.shmctl(i, 0, None)),  # 0: IPC_RMID
        ("msg", lambda i: _libc.msgctl(i, 0, None)),
        ("sem", lambda i: _libc.semctl(i, 0, 0)),
    ):
        try:
            header, *rows = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        names = header.split()
        for row in rows:
            fields = dict(zip(names, row.split()))
            ident = fields.get("shmid") or fields.get("msqid") or fields.get("semid")
            if ident is not None and int(fields.get("uid", -1)) == uid and remove(int(ident)) == 0:
                removed += 1
    return removed


def remove_files_of(uid: int) -> list[str]:
    """Remove what `uid` owns at the top of the shared writable folders; returns the paths."""
    removed = []
    for folder in sorted({os.path.realpath(f) for f in SHARED_WRITABLE if os.path.isdir(f)}):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # fd-based on Linux: safe against planted links
                else:
                    os.unlink(entry.path)
                removed.append(entry.path)
            except OSError:
                continue
    return removed
