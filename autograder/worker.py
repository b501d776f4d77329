"""The sandboxed worker: imports the student's model.py and runs ONE graded job on it.

Started by the harness as `python -E -s worker.py JOB_DIR`, usually as an unprivileged user,
with limits on memory, CPU time and file size. It reads JOB_DIR/job.json, loads
JOB_DIR/model.py in DEBUG mode, records the raw outputs of the student's code (tokens,
logits, cache contents, timings) and saves them to JOB_DIR/out.pt. It judges nothing: the
harness, in its own process, decides pass/fail from these outputs. Nothing this process does
(patching torch, exiting, printing, writing files) can change a score it did not earn.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

# Printed, with this exit code, when the grader's own packages do not import here (before the
# student's file is even read): the harness then blames the build, not the student.
BROKEN = "AUTOGRADER-WORKER-BROKEN"
BROKEN_EXIT = 86
HANDSHAKE_ENV = "AUTOGRADER_HANDSHAKE"  # a timed job's pipes (sandbox.HANDSHAKE_ENV)


def _next_seed() -> int:
    """Tell the harness the set-up is done (it reads this process's CPU time), then wait for
    the seed of the timed calls' prompts (sandbox.run_worker's handshake)."""
    ready, go = (int(fd) for fd in os.environ[HANDSHAKE_ENV].split(","))
    os.write(ready, b"ready\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(go, 64)
        if not chunk:
            raise RuntimeError("the grader did not send the timed calls' seed")
        line += chunk
    return int(line)


def pin_threads() -> None:
    """One intra-op thread, the grader's choice, not the upload's: on a shared machine more
    threads than cores make every call many times slower (two threads on two busy cores: 15x),
    which would run correct code out of its time limits. Set again after the upload's import and
    before every probe and timed call (speed.py), since the upload may set its own. Inter-op
    threads are left alone: eager code does not use them, and setting them first would turn an
    upload's own torch.set_num_interop_threads() call into an import error."""
    import torch

    torch.set_num_threads(1)


def main(job_dir: Path) -> None:
    job = json.loads((job_dir / "job.json").read_text())
    try:
        import torch

        from infkit import checks, loading
    except BaseException as e:  # MemoryError under the address-space cap, a missing library...
        print(f"{BROKEN}: {type(e).__name__}: {e}", flush=True)
        sys.exit(BROKEN_EXIT)

    pin_threads()

    out = {"status": "ok", "results": []}
    fixture = SimpleNamespace(**job["fixture"]) if job["kind"] == "speed" else None  # rubric.SpeedFixture
    if job["kind"] == "speed" and job.get("role") == "naive":
        import speed  # the kernel-timed baseline: the student's file is not even imported

        ref = loading.load_model_module(Path(__file__).parent / "reference_model.py", debug=True)
        out["results"].append({"rec": speed.run_role(fixture, "naive", None, ref, _next_seed), "error": None})
        torch.save(out, job_dir / "out.pt")
        return
    try:
        module = loading.load_model_module(job_dir / "model.py", debug=True)
    except BaseException as e:  # SystemExit too: an import that exits is an import error
        out = {"status": "import_error", "error": checks.describe_error(e)}
        torch.save(out, job_dir / "out.pt")
        return
    pin_threads()  # the upload may have asked for more at import
    if job["kind"] in ("check", "checks"):  # one piece, or a batch of pieces (a list each)
        for one in job["jobs"] if job["kind"] == "checks" else [job]:
            per_seed = []
            for seed in one["seeds"]:
                pin_threads()
                rec, errors = checks.probe(one["piece"], module, shape=one["shape"], seed=seed)
                described = {behaviour: checks.describe_error(e) for behaviour, e in errors.items()}
                per_seed.append({"rec": rec, "errors": described})
            out["results"] += per_seed if job["kind"] == "check" else [per_seed]
    elif job["kind"] == "optional":  # an optional piece's probe (infkit/optional.py), named by the job
        from importlib import import_module

        module_name, _, function = job["probe"].partition(":")
        probe = getattr(import_module(module_name), function)
        try:
            out["results"].append({"rec": probe(module), "error": None})
        except Exception as e:
            out["results"].append({"rec": {}, "error": checks.describe_error(e)})
    else:
        import speed

        ref = loading.load_model_module(Path(__file__).parent / "reference_model.py", debug=True)
        try:
            if job.get("role") in ("student", "stranger"):
                rec = speed.run_role(fixture, job["role"], module, ref, _next_seed)
            else:
                rec = speed.measure(fixture, module, ref)
            out["results"].append({"rec": rec, "error": None})
        except Exception as e:
            out["results"].append({"rec": {}, "error": checks.describe_error(e)})
    torch.save(out, job_dir / "out.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    # Out without the interpreter's teardown (a few tenths of a second of CPU with torch
    # loaded): a timed worker's CPU after its set-up is then its calls', not its exit's.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
