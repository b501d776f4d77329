"""The throughput / latency test: naive generate vs generate_kv vs generate_speculative, side by
side with transformers on identical weights and prompts. `./run.sh --help` lists the options.

Method: every method generates greedily from the same corpus prompts; each is warmed up once,
then the methods take turns sample by sample (so a slow drift of the machine hits all of them
alike), timed with a device synchronisation (CUDA events on GPU); figures are medians. In the
same run, generate_kv's and generate_speculative's outputs are checked against naive generate's:
a method that is fast but wrong gets no speedup figure.
"""

import argparse
import json
import platform
import sys
import traceback

import torch

from . import bench_models, corpus, fixtures, loading, paths, timing
from .agreeing_draft import AgreeingDraft

DEFAULT_PAIR = "bench"  # fixtures.PAIRS entry for the offline default; docs/performance.md says why
METHODS = ("naive", "kv", "speculative", "hf", "hf_assisted", "kv_sampled", "speculative_sampled")
LABELS = {
    "naive": "generate (naive)",
    "kv": "generate_kv",
    "speculative": "generate_speculative",
    "hf": "transformers generate",
    "hf_assisted": "transformers assisted",
    "kv_sampled": "generate_kv, T>0",
    "speculative_sampled": "speculative, T>0",
}
# speculative decoding is a batch-1 latency method; --temperature rows are measured at batch 1
BATCH1_ONLY = ("speculative", "hf_assisted", "kv_sampled", "speculative_sampled")
SAMPLED = ("kv_sampled", "speculative_sampled")  # random outputs: not compared with naive
OURS = ("naive", "kv", "speculative")
WARMUP_PROMPT = 32  # tokens of prompt in each method's warm-up call
# Whose greedy output each method must equal, in order of preference: naive generate where it
# ran (by default only at the smallest batch), else an independent implementation on the same
# weights (transformers for generate_kv, generate_kv for the rest). Sampled methods: none.
REFERENCES = {
    "kv": ("naive", "hf"),
    "speculative": ("naive", "kv"),
    "hf": ("naive", "kv"),
    "hf_assisted": ("naive", "kv"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="run.sh",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--impl", default=str(paths.default_model_path()), help="the model.py to test")
    p.add_argument(
        "--model",
        choices=bench_models.REAL,
        help="real GPT-2 weights (needs the hub; otherwise the random stand-in of that size)",
        default=None,
    )
    p.add_argument("--draft", choices=bench_models.REAL, help="draft model with --model (gpt2 if not given)")
    p.add_argument("--pair", default=DEFAULT_PAIR, choices=sorted(fixtures.PAIRS), help="stand-in pair")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: bf16 outside --debug")
    p.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[1, 4],
        help="batch sizes (speculative decoding and assisted generation: batch 1 only)",
    )
    p.add_argument(
        "--naive-batch-size",
        type=int,
        nargs="*",
        help="batch sizes at which the naive baseline runs (default: the smallest of --batch-size; "
        "its cost grows with batch x length^2)",
    )
    p.add_argument("--prompt-len", type=int, default=256, help="prompt tokens (corpus windows)")
    p.add_argument("--new-tokens", type=int, default=48, help="tokens generated per prompt")
    p.add_argument(
        "--num-speculative",
        type=int,
        default=argparse.SUPPRESS,  # chosen by device below
        help="tokens drafted per round (default: 3 on CPU, where MKL verifies 4 tokens for about the "
        "cost of one and 5 for 1.23; 4 on CUDA)",
    )
    p.add_argument("--samples", type=int, default=3, help="timed samples per method (median)")
    p.add_argument("--naive-samples", type=int, default=1, help="timed samples of the slow naive baseline")
    p.add_argument(
        "--batch-samples",
        type=int,
        default=1,
        help="timed samples per method at batch sizes above 1 (at most --samples; each covers B prompts)",
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=METHODS + ("agreeing",),
        help="methods to leave out; 'agreeing': the run with a draft that always agrees",
    )
    p.add_argument(
        "--draft-head",
        default="int8",
        choices=["int8", "fp32"],
        help="the draft's LM head on CPU (outside --debug); the transformers assistant gets the same "
        "head. Greedy outputs do not depend on it, only the acceptance rate",
    )
    p.add_argument("--compile", action="store_true", help="opt-in fast path: torch.compile the decode step")
    p.add_argument("--threads", type=int, help="torch CPU threads (torch's choice if not given)")
    p.add_argument("--debug", action="store_true", help="run the model in DEBUG mode (fp32, slow)")
    p.add_argument("--json", metavar="PATH", help="write the figures here")
    p.add_argument("--seed", type=int, default=0, help="prompt sampling and fixture seed")
    p.add_argument(
        "--temperature",
        type=float,
        help="also time generate_kv and generate_speculative sampling at this temperature (batch 1), "
        "with the acceptance rate: speculative sampling keeps the target's distribution",
    )
    args = p.parse_args(argv)
    if "num_speculative" not in vars(args):
        args.num_speculative = 4 if args.device.startswith("cuda") else 3
    return args


# ---------------------------------------------------------------------------------------------
# The methods, each a function of a prompt batch (B, T) returning (B, T + new_tokens)


class PassCounter:
    """Counts a model's forward passes (calls of its token embedding) and their lengths, so
    the acceptance rate can be derived for any speculative implementation."""

    def __init__(self, model):
        self.lengths = []
        self.handle = model.transformer.wte.register_forward_hook(
            lambda mod, inp, out: self.lengths.append(inp[0].size(1))
        )

    def close(self):
        self.handle.remove()


def make_methods(models, args):
    n, k = args.new_tokens, args.num_speculative
    target, draft = models.target, models.draft
    methods = {
        "naive": lambda p, n=n: target.generate(p, n, top_k=1),
        "kv": lambda p, n=n: target.generate_kv(p, n, top_k=1),
        "speculative": lambda p, n=n: target.generate_speculative(p, n, draft, top_k=1, num_speculative=k),
    }
    if args.temperature:
        T = args.temperature
        methods["kv_sampled"] = lambda p, n=n: target.generate_kv(p, n, temperature=T)
        methods["speculative_sampled"] = lambda p, n=n: target.generate_speculative(
            p, n, draft, temperature=T, num_speculative=k
        )
    if models.hf_target is not None:
        from . import hf

        methods["hf"] = lambda p, n=n: hf.hf_generate(models.hf_target, p, n)
        # assisted generation with the same draft and the same k, drafted every round
        for cfg in (models.hf_target.generation_config, models.hf_draft.generation_config):
            cfg.num_assistant_tokens = k
            cfg.num_assistant_tokens_schedule = "constant"
        methods["hf_assisted"] = lambda p, n=n: hf.hf_generate(
            models.hf_target, p, n, assistant_model=models.hf_draft
        )
    return {m: f for m, f in methods.items() if m not in args.skip}


def failure(err: BaseException) -> str:
    if isinstance(err, NotImplementedError):
        return f"not implemented yet ({str(err).split(':')[0] or 'NotImplementedError'})"
    return f"error: {type(err).__name__}: {err}"[:120]


# ---------------------------------------------------------------------------------------------
# Measuring


def runs_at(m, B, args) -> bool:
    """Whether method m is measured at batch size B."""
    if m == "naive":
        return B in (args.naive_batch_size or [min(args.batch_size)])
    return B == 1 or m not in BATCH1_ONLY


def runs_of(m, B, args) -> int:
    """Timed samples of a method at batch B: the naive baseline is by far the slowest, so it gets
    fewer, and so do batches above 1, whose every sample already covers B prompts."""
    n = min(args.samples, args.batch_samples) if B > 1 else args.samples
    return min(n, args.naive_samples) if m == "naive" else n


def counted_call(target, device, seconds, fn, *args, **kwargs):
    """Time fn(*args, **kwargs) into `seconds` while counting the target's forward passes.
    Returns (output, pass lengths, this call's spec_stats or None if it keeps none)."""
    if hasattr(target, "spec_stats"):
        del target.spec_stats  # only this call's counts, if it keeps any
    counter = PassCounter(target)
    try:
        with timing.timed(device, seconds):
            out = fn(*args, **kwargs)
    finally:
        counter.close()
    stats = getattr(target, "spec_stats", None)
    return out, list(counter.lengths), dict(stats) if isinstance(stats, dict) else None


def measure(models, args, prompts, progress):
    """Returns {(method, batch): row} with the seconds of each timed run, outputs, status."""
    methods = make_methods(models, args)
    rows = {}
    for B in args.batch_size:
        names = [m for m in methods if runs_at(m, B, args)]
        batches = [prompts[s * B : (s + 1) * B].to(args.device) for s in range(args.samples)]
        for m in names:
            rows[m, B] = dict(method=m, batch=B, status="ok", seconds=[], outputs={})
            # warm-up (allocations, kernel choice; a stub fails here): a prefill and a decode
            # step, and for the speculative methods a few rounds, after the end of the first
            # prompt only (a full-length prefill would teach the warm-up nothing more)
            warm = 2 * args.num_speculative + 2 if m in BATCH1_ONLY else 2
            try:
                methods[m](batches[0][:, -WARMUP_PROMPT:], min(args.new_tokens, warm))
            except Exception as e:
                rows[m, B]["status"] = failure(e)
                if not isinstance(e, NotImplementedError) and args.debug:
                    traceback.print_exc()
            progress.update(1)
        for s, batch in enumerate(batches):
            for m in names:  # the methods take turns, sample by sample
                row = rows[m, B]
                if row["status"] != "ok" or s >= runs_of(m, B, args):
                    continue
                try:
                    if m.startswith("speculative"):
                        out, passes, stats = counted_call(
                            models.target, args.device, row["seconds"], methods[m], batch
                        )
                        row.setdefault("passes", []).append(passes)
                        if stats is not None:
                            row.setdefault("spec_stats", []).append(stats)
                    else:
                        with timing.timed(args.device, row["seconds"]):
                            out = methods[m](batch)
                    row["outputs"][s] = out.cpu()
                except Exception as e:
                    row["status"] = failure(e)
                progress.update(1)
    return rows


def same_outputs(row, ref) -> bool | None:
    """Equal greedy outputs on every sample both rows ran; None if they share none."""
    common = sorted(set(row["outputs"]) & set(ref["outputs"]))
    if not common:
        return None
    return all(torch.equal(row["outputs"][s], ref["outputs"][s]) for s in common)


def acceptance(row, args):
    """Fraction of drafted tokens accepted. The solution keeps exact counts in spec_stats;
    for any other implementation they are estimated from the target's forward passes: every
    round is one target pass that keeps its accepted drafts plus one token of its own, so
    accepted = new tokens - rounds, out of k drafted per round."""
    stats = row.get("spec_stats") or []
    drafted = sum(st.get("drafted", 0) for st in stats)
    if drafted:
        return sum(st.get("accepted", 0) for st in stats) / drafted, "spec_stats"
    if not row.get("passes"):
        return None, "unavailable"
    rates = []
    for lengths in row["passes"]:
        # a first pass no longer than the prompt is a prefill, not a round
        rounds = len(lengths) - (1 if lengths and lengths[0] <= args.prompt_len else 0)
        if rounds <= 0:
            return None, "unavailable"
        # a short last round may draft fewer than k, so this slightly underestimates
        accepted = args.new_tokens - rounds
        rates.append(min(1.0, accepted / (rounds * args.num_speculative)))
    return sum(rates) / len(rates), "estimated from target passes"


def summarise(rows, models, args):
    """Medians, tokens/s, correctness against naive, and the headline ratios."""
    for row in rows.values():
        row["median_s"] = timing.median(row["seconds"]) if row["seconds"] else None
        row["tokens_per_s"] = row["batch"] * args.new_tokens / row["median_s"] if row["median_s"] else None
    for (m, B), row in rows.items():
        row["matches_naive"] = None  # the check against the first reference that ran
        for ref_name in REFERENCES.get(m, ()):
            ref = rows.get((ref_name, B))
            if ref and ref["status"] == "ok" and row["outputs"]:
                row["matches_naive"] = same_outputs(row, ref)
                row["checked_against"] = ref_name
                if row["matches_naive"] is not None:
                    break

    def tps(m, B):
        row = rows.get((m, B))
        if not row or not row["tokens_per_s"] or row.get("matches_naive") is False:
            return None  # missing, failed, or wrong: no speedup figure
        return row["tokens_per_s"]

    def ratio(a, b):
        return a / b if a and b else None

    kv_by_batch = {B: ratio(tps("kv", B), tps("naive", B)) for B in args.batch_size}
    hf_by_batch = {B: ratio(tps("kv", B), tps("hf", B)) for B in args.batch_size}

    def at_largest(by_batch):  # (batch, ratio) at the largest batch with a figure
        measured = [B for B in args.batch_size if by_batch[B] is not None]
        B = max(measured) if measured else max(args.batch_size)
        return B, by_batch[B]

    kv_batch, kv_speedup = at_largest(kv_by_batch)
    hf_batch, kv_vs_hf = at_largest(hf_by_batch)
    rate, rate_source = acceptance(rows.get(("speculative", 1), {}), args)
    sampled = {}
    if args.temperature:
        sampled = {
            "temperature": args.temperature,
            "spec_speedup_vs_kv_sampled": ratio(tps("speculative_sampled", 1), tps("kv_sampled", 1)),
            "acceptance_rate_sampled": acceptance(rows.get(("speculative_sampled", 1), {}), args)[0],
        }
    return sampled | {
        "kv_speedup_vs_naive": kv_speedup,
        "spec_speedup_vs_kv": ratio(tps("speculative", 1), tps("kv", 1)),
        "kv_vs_transformers": kv_vs_hf,
        "spec_vs_transformers_assisted": ratio(tps("speculative", 1), tps("hf_assisted", 1)),
        "acceptance_rate": rate,
        "acceptance_rate_source": rate_source,
        "kv_speedup_vs_naive_batch": kv_batch,
        "kv_vs_transformers_batch": hf_batch,
        "kv_speedup_vs_naive_by_batch": kv_by_batch,
        "kv_vs_transformers_by_batch": hf_by_batch,
    }


# ---------------------------------------------------------------------------------------------
# Reporting


def fmt(x, spec=".2f", unit=""):
    return "-" if x is None else f"{x:{spec}}{unit}"


def table(rows, summary, args) -> str:
    head = f"{'method':24s} {'batch':>5s} {'tokens/s':>9s} {'s/call':>8s} {'vs naive':>9s}  output"
    lines = [head, "-" * len(head)]
    for (m, B), row in rows.items():
        if row["status"] != "ok":
            lines.append(f"{LABELS[m]:24s} {B:5d} {row['status']}")
            continue
        naive = rows.get(("naive", B), {}).get("tokens_per_s")
        speed = row["tokens_per_s"] / naive if naive and m != "naive" else None
        ref = LABELS.get(row.get("checked_against"), "")
        check = {None: "", True: f"= {ref}", False: f"DIFFERS from {ref} (no speedup credited)"}
        lines.append(
            f"{LABELS[m]:24s} {B:5d} {fmt(row['tokens_per_s'], '9.1f')} {fmt(row['median_s'], '8.3f')} "
            f"{fmt(speed, '8.1f', 'x'):>9s}  {check[row.get('matches_naive')]}"
        )
    s = summary
    after_prompt = []
    if s.get("spec_speedup_vs_kv_decode_phase"):
        after_prompt.append(
            f"  after the prompt's prefill ({s['prefill_s']:.2f} s in both, which speculative decoding "
            f"cannot shorten):  {s['spec_speedup_vs_kv_decode_phase']:.2f}x"
        )
    if s.get("spec_speedup_vs_kv_agreeing_draft"):
        after_prompt.append(
            f"  with a draft that always agreed, at the same cost (the most this workload allows): "
            f"{s['spec_speedup_vs_kv_agreeing_draft']:.2f}x"
        )
    lines += [
        "",
        f"KV cache vs naive (throughput, batch {s['kv_speedup_vs_naive_batch']}):        "
        f"{fmt(s['kv_speedup_vs_naive'], '.1f', 'x')}"
        "   goal >= 10x",
        f"speculative vs KV (latency, batch 1):               {fmt(s['spec_speedup_vs_kv'], '.2f', 'x')}"
        "   goal >= 2x",
        *after_prompt,
        f"generate_kv vs transformers generate (batch {s['kv_vs_transformers_batch']}):  "
        f"{fmt(s['kv_vs_transformers'], '.2f', 'x')}"
        "   goal >= 1.5x",
        f"speculative vs transformers assisted (batch 1):     "
        f"{fmt(s['spec_vs_transformers_assisted'], '.2f', 'x')}   goal >= 1.2x",
        f"draft acceptance rate:                              {fmt(s['acceptance_rate'], '.2f')}"
        f"   ({s['acceptance_rate_source']})",
    ]
    if s.get("temperature"):
        lines += [
            f"at temperature {s['temperature']}: speculative vs KV (latency, batch 1) "
            f"{fmt(s['spec_speedup_vs_kv_sampled'], '.2f', 'x')}, acceptance rate "
            f"{fmt(s['acceptance_rate_sampled'], '.2f')} (greedy: {fmt(s['acceptance_rate'], '.2f')})",
        ]
    if s.get("decode_ms_per_token"):
        lines.append(
            f"batch-1 decode step: {s['decode_ms_per_token']:.2f} ms/token; memory-bandwidth limit "
            f"{s['bandwidth_limit_ms_per_token']:.2f} ms (weights {s['weight_bytes'] / 1e9:.2f} GB at "
            f"{s['copy_bandwidth_gbs']:.1f} GB/s copy): {100 * s['fraction_of_bandwidth_limit']:.0f}% of the limit"
        )
    return "\n".join(lines)


@torch.no_grad()
def decode_phase(model, rows, args) -> dict:
    """Speculative vs KV after the prompt. Both batch-1 calls start with the same prefill of the
    prompt through the target, which speculative decoding cannot speed up and which, on a CPU,
    is a large share of a short generation. Timing that prefill alone (median of 3) and taking
    it off both medians gives the ratio of the part speculative decoding does change (what a
    GPU's end-to-end figure mostly shows). The headline spec_speedup_vs_kv stays end to end."""
    kv, spec = rows.get(("kv", 1), {}), rows.get(("speculative", 1), {})
    if not (kv.get("tokens_per_s") and spec.get("tokens_per_s") and spec.get("matches_naive")):
        return {}
    idx = torch.zeros(1, args.prompt_len, dtype=torch.long, device=args.device)
    try:
        prefill_s = timing.median(timing.time_call(lambda: model.prefill(idx), args.device, 3, warmup=0))
    except Exception:  # prefill not implemented (or broken): no figure
        return {}
    if min(kv["median_s"], spec["median_s"]) <= prefill_s:
        return {}
    return {
        "prefill_s": prefill_s,
        "spec_speedup_vs_kv_decode_phase": (kv["median_s"] - prefill_s) / (spec["median_s"] - prefill_s),
    }


@torch.no_grad()
def agreeing_ceiling(models, rows, args, prompts, calls: int = 2) -> dict:
    """Speculative vs KV with a draft that always agrees, at the real draft's cost (median of
    `calls` timed calls on the first prompts, against generate_kv's median): the most
    speculative decoding can gain on this workload. No figure when the implementation never
    calls the draft through the wrapper (it reached past it) or its output is not generate_kv's."""
    kv, spec = rows.get(("kv", 1), {}), rows.get(("speculative", 1), {})
    if "agreeing" in args.skip or not (kv.get("median_s") and spec.get("matches_naive")):
        return {}
    target, seconds, passes, stats = models.target, [], [], []
    for s in sorted(kv["outputs"])[:calls]:
        reference = kv["outputs"][s].to(args.device)
        draft = AgreeingDraft(models.draft, reference)
        prompt = prompts[s : s + 1].to(args.device)
        try:
            out, lengths, call_stats = counted_call(
                target,
                args.device,
                seconds,
                target.generate_speculative,
                prompt,
                args.new_tokens,
                draft,
                top_k=1,
                num_speculative=args.num_speculative,
            )
        except Exception:
            return {}
        if draft.calls == 0 or not torch.equal(out.cpu(), reference.cpu()):
            return {}
        passes.append(lengths)
        if call_stats is not None:
            stats.append(call_stats)
    if not seconds:
        return {}
    return {
        "spec_speedup_vs_kv_agreeing_draft": kv["median_s"] / timing.median(seconds),
        "agreeing_draft_acceptance": acceptance({"passes": passes, "spec_stats": stats}, args)[0],
    }


@torch.no_grad()
def bandwidth_limit(model, args, steps: int = 10) -> dict:
    """A batch-1 decode step must read every weight once, so weight bytes / memory bandwidth
    is its lower bound. Bandwidth is measured as a large copy (bytes read + written / time);
    the step is one-token decode() calls after a prefill of the benchmark's prompt length."""
    device = args.device
    n_bytes = 1 << 28
    buf = torch.empty(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(buf)
    copy = timing.time_call(lambda: dst.copy_(buf), device=device, repeats=5, warmup=2)
    bandwidth = 2 * n_bytes / timing.median(copy)  # bytes per second, read + write
    weights = {id(p): p for p in model.parameters()}.values()  # the tied head counts once
    weight_bytes = sum(p.numel() * p.element_size() for p in weights)
    idx = torch.zeros(1, args.prompt_len, dtype=torch.long, device=device)
    tok = torch.zeros(1, 1, dtype=torch.long, device=device)
    try:
        model.prefill(idx)
        model.decode(tok)  # warm-up

        def step():
            model.set_kv_pos(args.prompt_len)
            model.decode(tok)

        step_s = timing.median(timing.time_call(step, device=device, repeats=steps, warmup=1))
    except Exception:  # decode not implemented (or broken): no figure
        return {}
    limit = weight_bytes / bandwidth
    return {
        "decode_ms_per_token": 1000 * step_s,
        "bandwidth_limit_ms_per_token": 1000 * limit,
        "fraction_of_bandwidth_limit": limit / step_s,
        "weight_bytes": weight_bytes,
        "copy_bandwidth_gbs": bandwidth / 1e9,
    }


def versions() -> dict:
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def device_info(device: str) -> dict:
    if device.startswith("cuda"):
        return {"device": device, "name": torch.cuda.get_device_name(device)}
    return {
        "device": "cpu",
        "name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        args.skip += ["hf", "hf_assisted"]
    torch.manual_seed(args.seed)
    module = loading.load_model_module(args.impl, debug=args.debug)
    models = bench_models.build(module, args.model, args.draft, args.pair, seed=args.seed)
    with_hf = not {"hf", "hf_assisted"} <= set(args.skip)
    debug = bool(getattr(module, "DEBUG", False))  # --debug, or the file's own DEBUG = True
    models = bench_models.place(models, args.device, debug, with_hf=with_hf)
    draft_head = str(next(models.draft.parameters()).dtype).replace("torch.", "")
    if args.draft_head == "int8" and args.device == "cpu" and not debug:
        draft_head = bench_models.int8_draft_head(models)
    if args.compile:
        compile_decode(module, models, args)
    total = args.prompt_len + args.new_tokens
    if total > models.target.config.block_size:
        sys.exit(
            f"--prompt-len + --new-tokens = {total} exceeds block_size {models.target.config.block_size}"
        )

    n_prompts = args.samples * max(args.batch_size)
    prompts = corpus.sample_prompts(
        n_prompts, args.prompt_len, seed=args.seed, vocab_size=models.target.config.vocab_size
    )
    _, source = corpus.corpus_tokens()
    workload = dict(
        impl=str(args.impl),
        pair=models.name,
        weights=models.source,
        target=bench_models.describe(models.target),
        draft=bench_models.describe(models.draft),
        draft_head=draft_head,
        dtype=str(next(models.target.parameters()).dtype).replace("torch.", ""),
        batch_sizes=args.batch_size,
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens,
        num_speculative=args.num_speculative,
        samples=args.samples,
        naive_samples=min(args.samples, args.naive_samples),
        batch_samples=min(args.samples, args.batch_samples),
        naive_batch_sizes=[B for B in args.batch_size if runs_at("naive", B, args)],
        corpus=source,
        compile=args.compile,
        greedy=True,
        temperature=args.temperature,
    )
    print(f"model.py: {args.impl}")
    print(
        f"pair: {models.name} ({models.source}); target {workload['target']}; draft {workload['draft']}, "
        f"{draft_head} head"
    )
    print(
        f"device {args.device} ({workload['dtype']}, {torch.get_num_threads()} threads); prompts: {n_prompts} x "
        f"{args.prompt_len} tokens of {source}; {args.new_tokens} new tokens, greedy; {args.samples} samples"
    )

    from tqdm import tqdm

    methods = make_methods(models, args)
    steps = sum(1 + runs_of(m, B, args) for B in args.batch_size for m in methods if runs_at(m, B, args))
    with tqdm(total=steps, desc="benchmark", unit="run", file=sys.stderr) as progress:
        rows = measure(models, args, prompts, progress)
    summary = summarise(rows, models, args)
    summary.update(decode_phase(models.target, rows, args))
    summary.update(agreeing_ceiling(models, rows, args, prompts))
    summary.update(bandwidth_limit(models.target, args))
    print()
    print(table(rows, summary, args))

    if args.json:
        report = dict(summary)
        report.update(
            device=device_info(args.device),
            workload=workload,
            versions=versions(),
            command=" ".join(["./run.sh"] + (sys.argv[1:] if argv is None else list(argv))),
            rows=[
                {k: v for k, v in row.items() if k not in ("outputs", "passes", "spec_stats")}
                for row in rows.values()
            ],
        )
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
        print(f"\nwrote {args.json}")
    return 0


def compile_decode(module, models, args):
    """Opt-in fast path: torch.compile each model's decode step. Shapes change with the cache
    position, so compile with dynamic shapes; on CPU, freezing lets inductor pre-pack the
    weights for oneDNN (the multi-token verify step is what gains). Compiling takes minutes."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    sys.modules.setdefault(module.__name__, module)  # dynamo re-imports the model's module by name
    # the cache position is a plain int on each attention module: let it stay symbolic,
    # or every new position would compile the step again
    dynamo_config.allow_unspec_int_on_nn_module = True
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)
    if not args.device.startswith("cuda"):
        inductor_config.freezing = True
    for model in {id(models.target): models.target, id(models.draft): models.draft}.values():
        model.decode = torch.compile(model.decode, dynamic=True)


if __name__ == "__main__":
    sys.exit(main())
