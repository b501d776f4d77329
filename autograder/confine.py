"""Kernel-level confinement of the worker, through libc (ctypes: Gradescope's Python 3.10 has no
os.unshare), and the clean-up after each job.

- The harness is a child subreaper: whatever the worker forks, detaches (setsid) or double-forks
  is re-parented to the harness when its parent dies, so every process the student starts stays
  a descendant we can find, kill and reap; reaping also gives us its CPU time for the verdicts.
- As root, before dropping to the worker account, the worker gets its own network namespace
  (no interface but a downed loopback) and IPC namespace (no System V objects shared with the
  next worker), where the kernel allows it.
- Always, a seccomp filter lets the worker create Unix sockets only (no TCP/UDP/raw/netlink),
  and denies io_uring (it could open sockets behind the filter's back), the kernel keyring
  (a store that outlives the job) and the calls that reach another process's memory.
- After each job: every process descended from the harness is killed and reaped, and as root
  every process of the worker account (kill(-1) sent as that account, which the kernel applies
  atomically, so a fork bomb cannot outrun it; not for `nobody`, which others use) and its files
  in the shared writable folders (/tmp, /var/tmp, /dev/shm, ...) and its System V IPC objects
  are removed.
"""

import ctypes
import os
import platform
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
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
# Denied outright (EPERM). The kernel keyring (add_key, request_key, keyctl) outlives every
# job of the account: a store the clean-up cannot see, through which one job could hand its
# answers to the next. ptrace, process_vm_readv/writev and pidfd_getfd would let a process the
# upload starts read or rewrite the worker's memory (the grader's probes and records) or take
# its descriptors. Nothing the worker, torch or the reference needs calls any of them.
DENIED_SYSCALLS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "ptrace": 101}
    | {"process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "ptrace": 117}
    | {"process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438},
}


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
        *((jeq, "deny", None, nr) for nr in sorted(DENIED_SYSCALLS[platform.machine()].values())),
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
    """In the calling process (and everything it starts): socket() only for AF_UNIX, no io_uring,
    none of DENIED_SYSCALLS.
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


def confine_worker(user, cpu_s: int, memory_mb: int, max_file_mb: int, view=None) -> None:
    """What a worker's process does before it runs anything of the job (between fork and exec,
    or in a worker forked by the fork server): as root, its own network, IPC and (with `view`)
    mount namespaces, then the drop to `user` (uid, gid); the limits; the socket filter last (it
    sets no_new_privs, which would not matter to root but keeps the account from regaining any).
    Raises where a protection that was probed to work is refused (the caller fails closed)."""
    import resource

    if user:
        unshare_network_and_ipc()  # refused in some containers: probed and reported
        if view is not None:  # probed to work here: a failure now stops the job (fail closed)
            enter_view(view)
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
        # The drop leaves the process undumpable: its /proc files root's, which an exec resets
        # but a forked worker keeps. Dumpable again, as a freshly started worker is (core files
        # stay off: RLIMIT_CORE below).
        _prctl(PR_SET_DUMPABLE, 1)
        # per account, threads included (a worker uses fewer than 20); only once dropped,
        # since root ignores it and our own account runs more than the worker
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * mb, memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_mb * mb, max_file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    install_socket_filter()


# ---------------------------------------------------------------------------------------
# The worker's own view of the file system (a mount namespace, as root)

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
# Top-level folders the system itself lives in: never covered whole (a kit inside one of them
# is covered on its own). Any other top-level folder that holds the kit or the worker's Python
# (/work, /home, /root, /opt, /autograder ...) is covered, siblings and all: a walk up from the
# worker's Python finds none of the staff's checkouts.
SYSTEM_TOPS = frozenset(
    ("/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys")
    + ("/dev", "/run", "/var", "/boot", "/snap", "/srv", "/mnt", "/media")
)
# Each shared writable folder, fresh and empty for every worker. A tmpfs is memory that the
# worker's address-space limit does not count, so small: the worker writes its files in its
# job folder (TMPDIR), and four of these cost at most 64 MB on Gradescope's 1.5 GB tier.
PRIVATE_TMP_MB = 16


@dataclass(frozen=True)
class View:
    """The worker's mount namespace: `covers` get an empty tmpfs (`shared` ones writable by all,
    as /tmp is), then each path of `keeps` (its Python, packages, code and job folder) is mounted
    back at the same place. Nothing else under a cover exists for the worker."""

    covers: tuple[str, ...]
    shared: tuple[str, ...]
    keeps: tuple[str, ...]


def plan_view(kit_root, keeps) -> View:
    """The View that hides the kit's tree (`kit_root`, and every sibling under the same
    top-level folder) and gives the worker fresh shared writable folders, keeping `keeps`."""
    kit = os.path.abspath(kit_root)
    shared = sorted({os.path.realpath(f) for f in SHARED_WRITABLE if os.path.isdir(f)} - {"/dev/mqueue"})
    kept = set()
    for path in keeps:
        path = os.path.abspath(path) if path else ""
        if not path or not os.path.isdir(path) or _within(kit, path) or path in SYSTEM_TOPS:
            continue  # "" (the current folder), a missing entry, or one that would show the kit
        kept.add(path)
    kept = {k for k in kept if not any(k != o and _within(k, o) for o in kept)}  # outermost only
    covers = set()
    for path in [kit, *kept]:
        top = "/" + path.strip("/").split("/")[0]
        covers.add(kit if top in SYSTEM_TOPS and path == kit else top)
    covers = {c for c in covers if c not in SYSTEM_TOPS and c not in shared and c not in kept}
    kept = {k for k in kept if any(_within(k, c) for c in covers | set(shared))}  # the others stay visible
    return View(tuple(sorted(covers)), tuple(shared), tuple(sorted(kept)))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = [None if x is None else os.fsencode(x) for x in (source, target, fstype, data)]
    if _libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def enter_view(view: View) -> None:
    """In the calling process (root, between fork and exec): a mount namespace of its own
    arranged as `view` says. Raises OSError if any step is refused (the caller then fails
    closed rather than run the worker with the staff tree in sight)."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # none of this reaches the harness's namespace
    # opened before anything is covered: the mounts back come from these descriptors
    fds = {keep: os.open(keep, os.O_PATH | os.O_DIRECTORY) for keep in view.keeps}
    try:
        for folder in view.covers:
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for folder in view.shared:
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={PRIVATE_TMP_MB}m")
        for keep, fd in fds.items():
            os.makedirs(keep, mode=0o755, exist_ok=True)  # inside a cover: its path, nothing else
            _mount(f"/proc/self/fd/{fd}", keep, None, MS_BIND | MS_REC)
        try:  # the working folder was entered before the mounts: enter it again through them
            os.chdir(os.getcwd())
        except OSError:
            pass
    finally:
        for fd in fds.values():
            os.close(fd)


def _try_view() -> bool:
    try:  # a private /tmp, in the throw-away child's own namespace only
        enter_view(View((), ("/tmp",), ()))
        return True
    except OSError:
        return False


_probed = None


def probe() -> dict:
    """What the kernel lets us do here, tried in a throw-away child: {"namespaces", "seccomp",
    "mounts"} (the last two namespaces need root). Probed once per process."""
    global _probed
    if _probed is not None:
        return dict(_probed)
    found = {}
    attempts = (
        ("namespaces", unshare_network_and_ipc),
        ("seccomp", install_socket_filter),
        ("mounts", _try_view),
    )
    for name, attempt in attempts:
        if name != "seccomp" and os.geteuid() != 0:
            found[name] = False
            continue
        done = subprocess.run(["/bin/true"], preexec_fn=lambda a=attempt: _exit_unless(a()), check=False)
        found[name] = done.returncode == 0
    _probed = found
    return dict(found)


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
    if not found.get("mounts") and os.geteuid() == 0:
        out.append(
            "WARNING: the kernel refused a mount namespace for the worker: it can read whatever the "
            "worker account may read, the checkout (the solution) included where its folders allow, "
            "and shared folders are only swept after each job."
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
    """Remove what `uid` owns at the top of the shared writable folders; returns the paths.
    Raises CleanupFailed when something of it stays (the next job must not see it)."""
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
                remove_tree(entry.path)  # any depth and names; links removed, never followed
                removed.append(entry.path)
            except FileNotFoundError:
                continue
            except CleanupFailed:
                raise
            except OSError as e:
                raise CleanupFailed(f"could not remove {entry.path!r}: {e}") from e
    return removed


# ---------------------------------------------------------------------------------------
# Removing what a job built, whatever it built


class CleanupFailed(OSError):
    """What a job left could not be removed: the machine is not clean for the next job. The
    grader's failure, never the student's: the harness stops grading and says so for staff."""


def remove_tree(path) -> None:
    """Remove `path` (a folder with everything in it, or a file) however the job built it:
    any depth (no recursion, and only one folder open at a time, so 1,500 levels cost neither
    Python's stack nor the descriptor limit), any names (bytes that are not UTF-8, newlines),
    folders without permissions (made ours to empty), and links, which are removed, never
    followed. Raises CleanupFailed when something stays. A missing `path` is not an error."""
    path = os.fsencode(path)
    parent, name = os.path.split(os.path.abspath(path))
    try:
        top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        _remove_below(top, name)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CleanupFailed(f"could not remove {os.fsdecode(path)!r}: {e}") from e
    finally:
        os.close(top)


def _open_dir(parent_fd: int, name: bytes) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except PermissionError:  # a folder the job made unreadable (root is not refused this)
        os.chmod(name, 0o700, dir_fd=parent_fd, follow_symlinks=True)  # O_NOFOLLOW: not a link
        return os.open(name, flags, dir_fd=parent_fd)


def _remove_below(top_fd: int, name: bytes) -> None:
    st = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
    if not stat_is_dir(st.st_mode):
        os.unlink(name, dir_fd=top_fd)
        return
    fd = _open_dir(top_fd, name)
    # the folders from `name` down to the one open now: (name in its parent, device, inode)
    chain = [(name, *_identity(fd))]
    try:
        while True:
            if os.geteuid() != 0:
                os.fchmod(fd, 0o700)  # write and search rights to empty it
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    raw = os.fsencode(entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        sub = raw
                        break
                    os.unlink(raw, dir_fd=fd)
            if sub is not None:  # down one level
                child = _open_dir(fd, sub)
                os.close(fd)
                fd = child
                chain.append((sub, *_identity(fd)))
                continue
            done, *_ = chain.pop()  # `fd` is empty: up one level, then remove it
            if not chain:
                os.close(fd)
                fd = None
                os.rmdir(done, dir_fd=top_fd)
                return
            up = os.open(b"..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = up
            if _identity(fd) != tuple(chain[-1][1:]):  # moved while we worked: stop, for staff
                raise OSError(f"{os.fsdecode(done)!r} was moved during its removal")
            os.rmdir(done, dir_fd=fd)
    finally:
        if fd is not None:
            os.close(fd)


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def stat_is_dir(mode: int) -> bool:
    return (mode & 0o170000) == 0o040000
