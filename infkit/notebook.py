"""Helpers behind notebooks/inference.ipynb: where it runs, friendly checks, the benchmark.

The notebook's cells call only these and the rest of infkit. The correctness cells run the
same functions as the public tests and the autograder (infkit.checks); the speed cells run
the same program as ./run.sh (python -m infkit.bench, through its command line) and read its
--json output. So the notebook cannot drift from either.
"""

import codecs
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import checks, hints, loading, paths


class Stop(Exception):
    """Ends a notebook cell with a message for the student instead of a traceback.

    IPython prints the lines that _render_traceback_ returns in place of the usual traceback,
    so "Run all" halts at the failing cell with one short explanation.
    """

    def _render_traceback_(self):
        return str(self).splitlines()


# ---------------------------------------------------------------------------------------
# Where are we running?


@dataclass(frozen=True)
class Env:
    in_colab: bool
    device: str  # "cuda" or "cpu"
    online: bool  # GPT-2's released weights can be downloaded

    @property
    def real_weights(self) -> bool:
        """Real GPT-2 on a GPU; otherwise the random-weight stand-ins on the CPU."""
        return self.device == "cuda" and self.online

    def describe(self) -> str:
        where = "Colab" if self.in_colab else "a local kernel"
        if self.real_weights:
            what = "the released GPT-2 weights"
        elif self.device == "cuda":
            what = "random-weight stand-ins of GPT-2's sizes (the hub is not reachable)"
        else:
            what = (
                "tiny random-weight stand-ins (no GPU: its figures show that your code runs, not its speed)"
            )
        lines = [f"running in {where} on {self.device}; the speed test uses {what}"]
        if self.in_colab and self.device == "cpu":
            lines.append(SWITCH_TO_GPU)
        return "\n".join(lines)


# What a student on a CPU runtime should do; the first cell of the notebook says it too.
SWITCH_TO_GPU = (
    "For a GPU: download model.py first (changing the runtime deletes its files), then "
    "Runtime > Change runtime type > T4 GPU, and run the set-up cell again."
)


def detect() -> Env:
    import torch

    in_colab = "google.colab" in sys.modules
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # This kernel's own work on a CPU (checks, demo, the sampling check's 2,000 runs) is on tiny
        # models: one thread, as WORKLOADS["cpu"] gives the benchmark. A tiny matmul split over
        # threads waits for every one of them, so on busy cores two threads are several times slower.
        torch.set_num_threads(1)
    # Only a GPU run wants the real weights, so only then is the network worth probing: with the
    # benchmark's own check, which INFKIT_OFFLINE and HF_HUB_OFFLINE turn off.
    from .bench_models import hub_reachable

    online = device == "cuda" and hub_reachable()
    return Env(in_colab=in_colab, device=device, online=online)


# What the speed cells pass to the benchmark (run.sh's options, as keywords). "run" is the
# run.sh test itself; the sweeps use shorter sequences so that a plot takes minutes, not an hour:
# "batch" sizes the throughput test, "spec" the latency test (the one speculative decoding is for).
# On a GPU, --model gpt2-large loads the released weights (the bench falls back to a random
# stand-in of the same size when the hub cannot be reached). Offline on a CPU everything is tiny
# on purpose: those figures show that the code runs, not how fast a GPU is.
WORKLOADS = {
    "gpu": dict(
        run=dict(model="gpt2-large", device="cuda"),  # run.sh's own defaults for the rest
        batch=dict(
            model="gpt2-large",
            device="cuda",
            batch_size=[1, 2, 4, 8, 16],
            naive_batch_size=[1, 2, 4, 8, 16],
            hf_batch_size=[1, 2, 4, 8, 16],
            prompt_len=128,
            new_tokens=64,
            samples=2,
            skip=["speculative", "hf_assisted"],
        ),
        spec=dict(  # run.sh's latency test alone, shorter
            model="gpt2-large",
            device="cuda",
            latency_prompt_len=32,
            latency_new_tokens=96,
            latency_samples=2,
            skip=["throughput", "hf", "hf_assisted"],
        ),
        num_speculative=[1, 2, 3, 4, 6, 8],
    ),
    # One thread: these tiny models gain nothing from more, and on a shared or busy machine two
    # threads fighting over two cores made the same run 10x slower and far noisier.
    "cpu": dict(
        run=dict(pair="tiny", device="cpu", threads=1, batch_size=[1, 4], prompt_len=64, new_tokens=32),
        batch=dict(
            pair="tiny",
            device="cpu",
            threads=1,
            batch_size=[1, 2, 4, 8, 16],
            naive_batch_size=[1, 2, 4, 8, 16],
            hf_batch_size=[1, 2, 4, 8, 16],
            prompt_len=64,
            new_tokens=32,
            skip=["speculative", "hf_assisted"],
        ),
        spec=dict(
            pair="tiny",
            device="cpu",
            threads=1,
            latency_prompt_len=32,
            latency_new_tokens=64,
            skip=["throughput", "hf", "hf_assisted"],
        ),
        num_speculative=[1, 2, 3, 4, 6],
    ),
}


def workload(env: Env) -> dict:
    return WORKLOADS["gpu" if env.device == "cuda" else "cpu"]


# ---------------------------------------------------------------------------------------
# Correctness: one piece at a time, with the autograder's own checks


def model_path() -> Path:
    """The model.py under test: ./model.py in the handout (INFKIT_MODEL overrides)."""
    return Path(paths.default_model_path()).resolve()


def _where_in(path: Path, err: BaseException) -> str:
    """The lines of the student's file in err's traceback, innermost last."""
    frames = hints.student_frames(err, path=path)
    return "\n".join(f"  {path.name} line {f.lineno}, in {f.name}: {f.line}" for f in frames[-3:])


def load(path=None, debug: bool = True):
    """Import model.py afresh (so edits saved since the last cell count), in DEBUG by default."""
    path = Path(path or model_path()).resolve()
    try:
        return loading.load_model_module(path, debug=debug)
    except FileNotFoundError:
        raise Stop(f"No model.py at {path}. Run the set-up cell first.") from None
    except Exception as e:
        hint = hints.explain(e, path.name)
        if hint:
            raise Stop(f"{path.name} does not import: {hint}") from None
        raise Stop(f"{path.name} does not import: {type(e).__name__}: {e}\n{_where_in(path, e)}") from None


def check(piece: str, path=None) -> None:
    """Run the check for one piece; print PASS, or stop the cell with what to fix.
    (Returns nothing, so the cell shows only the PASS line.)"""
    if piece not in checks.CHECKS:
        raise Stop(f"unknown piece {piece!r}; the pieces are {', '.join(checks.PIECES)}")
    path = Path(path or model_path()).resolve()
    module = load(path)
    try:
        summary = checks.CHECKS[piece](module)
    except checks.CheckFailed as e:
        message = str(e)
        if "not implemented yet" in message:
            raise Stop(
                f"NOT DONE  {message}\n"
                f"Fill in the TODO({piece}) stub in {path.name}, save the file, and run this cell again."
            ) from None
        raise Stop(f"FAIL  {piece}: {message}\nFix {path.name}, save it, and run this cell again.") from None
    except Exception as e:  # the student's code crashed inside the check
        raise Stop(f"FAIL  {piece}: {_crashed(e, path)}") from None
    print(f"PASS  {piece}: {summary}")


def _crashed(e: Exception, path: Path) -> str:
    """One or two lines for an exception from the student's code: what to do when infkit.hints
    knows it, else the exception and where it happened in model.py."""
    hint = hints.explain(e, path.name)
    return hint or f"your code raised {type(e).__name__}: {e}\n{_where_in(path, e)}".rstrip()


class NotDone(Stop):
    """A stub the student has not filled in yet, met outside a check cell."""


@contextmanager
def student_code(what: str, path=None):
    """Run the student's code in a with-block: an exception ends the cell with one or two lines
    (NotDone for a stub not filled in yet) instead of a traceback."""
    path = Path(path or model_path()).resolve()
    try:
        yield
    except Stop:
        raise
    except NotImplementedError as e:
        raise NotDone(f"{what} needs a piece that is not implemented yet ({e}).") from None
    except Exception as e:
        raise Stop(f"{what}: {_crashed(e, path)}") from None


def public_tests(piece: str | None = None) -> None:
    """Run the handout's public tests (tests_public/, as the autograder does), if present."""
    folder = paths.ROOT / "tests_public"
    if not folder.is_dir():
        print("n/a: tests_public/ ships with the student handout; the checks above are the same code.")
        return
    cmd = [sys.executable, "-m", "pytest", "-q", str(folder)] + (["-k", piece] if piece else [])
    if _stream(cmd) != 0:
        raise Stop("Some public tests failed: the lines above say which (the check cells say why).")


# ---------------------------------------------------------------------------------------
# Speed: the run.sh benchmark through its command line


def _stream(cmd, env=None, echo: bool = True) -> int:
    """Run cmd in the kit's folder, echoing its output as it comes (progress bars included);
    returns the exit status. The last lines are kept in _stream.tail for error messages."""
    proc = subprocess.Popen(cmd, cwd=paths.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    for chunk in iter(lambda: proc.stdout.read1(4096), b""):
        text = decoder.decode(chunk)
        if echo:
            print(text, end="", flush=True)
        tail = (tail + text)[-4000:]
    _stream.tail = [line for line in re.split(r"[\r\n]+", tail) if line.strip()][-15:]
    return proc.wait()


def bench_command(**options) -> list[str]:
    """The command line for run.sh's program: prompt_len=32 becomes --prompt-len 32, a list
    batch_size=[1, 2] becomes --batch-size 1 2."""
    cmd = [sys.executable, "-m", "infkit.bench"]
    for key, value in options.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if values:
            cmd += [f"--{key.replace('_', '-')}"] + [str(v) for v in values]
    return cmd


def bench(impl=None, quiet: bool = False, **options) -> dict:
    """Run the benchmark on model.py (as ./run.sh does) and return its JSON figures.
    quiet=True prints only the command line, not the benchmark's own table."""
    impl = Path(impl or model_path()).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = bench_command(impl=impl, **options) + ["--json", str(out)]
        # what ./run.sh runs; in Colab call it this way, as run.sh would build a venv of its own
        shown = " ".join(["python -m infkit.bench"] + cmd[3:-2]).replace(f"{paths.ROOT}{os.sep}", "")
        print(f"$ {shown}", flush=True)
        # The benchmark runs outside DEBUG's deterministic mode; a child process keeps this
        # kernel's settings (DEBUG from the checks) out of its way.
        status = _stream(cmd, env=dict(os.environ, INFKIT_MODEL=str(impl)), echo=not quiet)
        if status != 0 or not out.exists():
            raise Stop(f"the benchmark stopped (exit status {status}). {_last_words(_stream.tail)}")
        return json.loads(out.read_text())


def _last_words(lines: list[str]) -> str:
    """What to show of a failed benchmark's last lines: a Python traceback becomes its final
    line (with a hint when there is one); anything else is shown as it is."""
    if not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return "Its last lines:\n" + "\n".join(lines)
    last = lines[-1]
    kind, _, message = last.partition(": ")
    hint = hints.explain_error(kind.rsplit(".", 1)[-1], message)
    return f"It ended with {last}" + (f"\n{hint}" if hint else "")


def sweep(name: str, values, **options) -> list[tuple]:
    """bench() once per value of one option: [(value, figures), ...]."""
    return [(v, bench(quiet=True, **options, **{name: v})) for v in values]


def figure(result: dict, *keys):
    """result[keys[0]][keys[1]]... as a float, or None when the benchmark did not report it
    (a piece not implemented yet, or an older run.sh)."""
    value = result
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def row(result: dict, method: str, batch: int = 1) -> dict:
    """The benchmark's row for one method at one batch size ({} if it has none)."""
    for r in result.get("rows", []):
        if r.get("method") == method and r.get("batch") == batch:
            return r
    return {}


def ceiling_s(result: dict) -> float | None:
    """Seconds per sample of speculative decoding with a draft that always agrees (run.sh's
    agreeing-draft run, same cost as the real draft): no draft can beat it on this workload."""
    kv = figure(row(result, "kv"), "median_s")
    ratio = figure(result, "spec_speedup_vs_kv_agreeing_draft")
    return kv / ratio if kv and ratio else None


def plottable(values) -> list[float]:
    """None (a figure the benchmark did not report) becomes NaN, which matplotlib skips."""
    return [math.nan if v is None else v for v in values]


def fmt(value, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


# The headline figures of a run.sh result, and the course's T4 figure for the two that have one:
# what the released weights give on a T4, to compare with, not graded (points come from the
# autograder's own speed tests on CPU models). On a CPU with the tiny stand-ins they mean
# nothing, and are not shown.
HEADLINES = [
    ("KV cache vs naive", "kv_speedup_vs_naive", "x", "> 10x"),
    ("speculative vs KV cache", "spec_speedup_vs_kv", "x", "about 2x"),
    ("acceptance rate", "acceptance_rate", "", None),
    ("KV cache vs transformers generate", "kv_vs_transformers", "x", None),
    ("speculative vs transformers assisted", "spec_vs_transformers_assisted", "x", None),
]
T4_NOTE = (
    "(course's T4 figure: what the released weights give on a T4, to compare with; not graded. Points "
    'come from the autograder\'s own speed tests, README "What the autograder does".)'
)
CPU_NOTE = (
    "These figures come from tiny random-weight stand-ins on a CPU: they show that your code runs "
    "and agrees with the naive loop, not how fast it is. The course's T4 figures (KV cache > 10x "
    "naive, speculative about 2x the KV cache) are for a T4 GPU with the released weights, and are "
    "not graded either."
)


def speed_summary(result: dict, env: Env) -> str:
    """The headline lines under the speed test; the course's T4 figures only where they apply."""
    lines = []
    for label, key, unit, t4 in HEADLINES:
        text = f"{label:38s} {fmt(figure(result, key), unit=unit)}"
        if t4 and env.real_weights:
            text += f"   (course's T4 figure {t4})"
        lines.append(text)
    if env.real_weights:
        lines.append(T4_NOTE)
    else:
        lines.append(
            CPU_NOTE if env.device == "cpu" else "(random-weight stand-ins: the T4 figures do not apply)"
        )
    return "\n".join(lines)


def acceptance_vs_temperature(module, temperatures=(0.0, 0.5, 1.0, 1.5), pair="tiny", new_tokens=48, k=4):
    """Acceptance rate (accepted / drafted) of speculative decoding on a fixture pair at each
    temperature (0 = greedy): exact from spec_stats where the implementation keeps them, else
    estimated from the target's forward passes. Returns [(temperature, rate or None)]."""
    import torch

    from . import fixtures
    from .bench.analyse import estimate_from_passes
    from .bench.methods import counted_call

    draft, target = fixtures.make_pair(module, pair, seed=0)
    prompt = fixtures.random_prompt(1, 16, target.config.vocab_size, seed=0)
    rates = []
    for t in temperatures:
        torch.manual_seed(0)
        kwargs = {"top_k": 1} if t == 0 else {"temperature": t}
        with torch.no_grad():
            _, lengths, stats = counted_call(
                target,
                "cpu",
                [],
                target.generate_speculative,
                prompt,
                new_tokens,
                draft,
                num_speculative=k,
                **kwargs,
            )
        if stats and stats.get("drafted"):
            rates.append((t, stats["accepted"] / stats["drafted"]))
        else:
            rates.append((t, estimate_from_passes(lengths, prompt.size(1), new_tokens, k)))
    return rates
