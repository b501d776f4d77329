"""run.sh's command line: options -> one frozen Config. Nothing here measures anything."""

import argparse
import importlib.util
import sys

from .. import bench_models, fixtures, paths
from .config import LATENCY_NEW_TOKENS, METHODS, TEST_METHODS, TEST_NEEDS, TESTS, Config, Workload

DEFAULT_PAIR = "bench"  # fixtures.PAIRS entry for the offline default: a GPT-2-sized stand-in

DESCRIPTION = (
    "The throughput test and the latency test: naive generate vs generate_kv vs generate_speculative, "
    "side by side with transformers on identical weights and prompts, every output checked in the same run."
)
EPILOG = """\
Two tests run one after the other, each on its own workload:

  throughput  batch sizes --batch-size, prompts of --prompt-len tokens, --new-tokens new tokens.
              Long prompts, because naive generate re-reads the whole context for every token
              (the KV cache's gain grows with it) and batching shares each weight read. Figures:
              KV cache vs naive, generate_kv vs transformers generate (at the largest batch, the
              only one it runs at unless --hf-batch-size says otherwise), and speculative vs KV at
              batch 1 with the long prompt's prefill included.
  latency     batch 1, prompts of --latency-prompt-len tokens, --latency-new-tokens new tokens:
              one request whose generation is several times its prompt, the requests speculative
              decoding is for (it shortens the generation, never the prompt's prefill). Figures:
              speculative vs KV, speculative vs transformers assisted generation, seconds per
              request and per generated token, the draft's acceptance rate, and the same loop with
              a draft that always agrees (the most any draft could gain on this workload).

A test runs when it has something to compare generate_kv with (naive or transformers generate
for throughput; a speculative method for latency); --skip throughput / latency leaves one out.
Every timed row shows min-max over its samples and every ratio its range over the same samples;
a row's samples repeat the same call on the same prompts, so their spread is the machine's noise.
The run records how busy the machine was (load average per core; on Linux, the CPU time other
programs took during each test) and marks a figure unstable, with a warning, when its range is
wide or its test ran on a busy machine.
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.sh", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter
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
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="cuda: 16-bit outside --debug (fp16 on a T4, bf16 on Ampere and newer)",
    )
    _throughput_options(p)
    _latency_options(p)
    p.add_argument(
        "--num-speculative",
        type=int,
        default=argparse.SUPPRESS,  # chosen by device in parse()
        help="tokens drafted per round (default: 3 on CPU, where MKL verifies 4 tokens for about the "
        "cost of one and 5 for 1.23; 4 on CUDA)",
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=METHODS + ("agreeing",) + TESTS,
        help="methods to leave out; 'agreeing': the run with a draft that always agrees; "
        "'throughput' / 'latency': a whole test",
    )
    p.add_argument(
        "--draft-head",
        default="int8",
        choices=["int8", "fp32"],
        help="the draft's LM head on CPU (outside --debug); the transformers assistant gets the same "
        "head. Greedy outputs do not depend on it, only the acceptance rate",
    )
    p.add_argument("--compile", action="store_true", help="opt-in fast path: torch.compile the decode step")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: one per core that other programs leave free, measured "
        "before the run; 1 on a busy machine)",
    )
    p.add_argument(
        "--full-workload",
        action="store_true",
        help="keep the default workload on a busy machine (by default, when run.sh picks the threads "
        "and other programs hold the CPU, the throughput test generates fewer tokens)",
    )
    p.add_argument("--debug", action="store_true", help="run the model in DEBUG mode (fp32, slow)")
    p.add_argument("--json", metavar="PATH", help="write the figures here")
    p.add_argument("--seed", type=int, default=0, help="prompt sampling and fixture seed")
    p.add_argument(
        "--temperature",
        type=float,
        help="latency test: also time generate_kv and generate_speculative sampling at this "
        "temperature, with the acceptance rate (speculative sampling keeps the target's distribution)",
    )
    return p


def _throughput_options(p):
    g = p.add_argument_group("throughput test (long prompts, batch sizes >= 1)")
    g.add_argument("--batch-size", type=int, nargs="+", default=[1, 4], help="batch sizes")
    g.add_argument(
        "--naive-batch-size",
        type=int,
        nargs="*",
        default=argparse.SUPPRESS,  # the smallest batch size, below
        help="batch sizes at which the naive baseline runs (default: the smallest of --batch-size; "
        "its cost grows with batch x length^2)",
    )
    g.add_argument(
        "--hf-batch-size",
        type=int,
        nargs="*",
        default=argparse.SUPPRESS,  # the largest batch size, below
        help="batch sizes at which transformers generate runs (default: the largest of --batch-size, "
        "where its figure is taken; the latency test compares it at batch 1)",
    )
    g.add_argument("--prompt-len", type=int, default=384, help="prompt tokens (corpus windows)")
    g.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt")
    g.add_argument("--samples", type=int, default=2, help="timed samples per method at batch 1")
    g.add_argument("--naive-samples", type=int, default=1, help="timed samples of the slow naive baseline")
    g.add_argument(
        "--batch-samples",
        type=int,
        default=1,
        help="timed samples per method at batch sizes above 1 (at most --samples; each covers B prompts)",
    )


def _latency_options(p):
    g = p.add_argument_group("latency test (batch 1, short prompt, long generation)")
    g.add_argument("--latency-prompt-len", type=int, default=32, help="prompt tokens (corpus windows)")
    g.add_argument(
        "--latency-new-tokens",
        type=int,
        default=argparse.SUPPRESS,  # fitted to the model in setup.fit_to_model
        help=f"tokens generated per request (default: {LATENCY_NEW_TOKENS}, or what the model's "
        "block_size leaves after the prompt)",
    )
    g.add_argument("--latency-samples", type=int, default=2, help="timed requests per method")


def _workloads(args, skip: set) -> tuple[Workload, ...]:
    batch_sizes = tuple(args.batch_size)
    throughput = Workload(
        test="throughput",
        methods=tuple(m for m in TEST_METHODS["throughput"] if m not in skip),
        batch_sizes=batch_sizes,
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens,
        samples=args.samples,
        batch_samples=args.batch_samples,
        naive_samples=args.naive_samples,
        naive_batch_sizes=tuple(getattr(args, "naive_batch_size", None) or [min(batch_sizes)]),
        hf_batch_sizes=tuple(getattr(args, "hf_batch_size", None) or [max(batch_sizes)]),
    )
    sampled = () if args.temperature else ("kv_sampled", "speculative_sampled")
    latency = Workload(
        test="latency",
        methods=tuple(m for m in TEST_METHODS["latency"] if m not in skip and m not in sampled),
        batch_sizes=(1,),
        prompt_len=args.latency_prompt_len,
        new_tokens=getattr(args, "latency_new_tokens", LATENCY_NEW_TOKENS),
        samples=args.latency_samples,
        batch_samples=1,
        naive_samples=0,
        naive_batch_sizes=(),
        hf_batch_sizes=(1,),
    )
    wanted = [w for w in (throughput, latency) if w.test not in skip]
    return tuple(w for w in wanted if set(TEST_NEEDS[w.test]) & set(w.methods))


def parse(argv=None) -> Config:
    args = _parser().parse_args(argv)
    skip = set(args.skip)
    if importlib.util.find_spec("transformers") is None:
        skip |= {"hf", "hf_assisted"}
    for name in ("samples", "latency_samples", "prompt_len", "latency_prompt_len", "new_tokens"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be at least 1")
    workloads = _workloads(args, skip)
    if not workloads:
        sys.exit("nothing to measure: --skip left neither test anything to compare generate_kv with")
    command = " ".join(["./run.sh"] + (sys.argv[1:] if argv is None else [str(a) for a in argv]))
    return Config(
        impl=args.impl,
        model=args.model,
        draft=args.draft,
        pair=args.pair,
        device=args.device,
        num_speculative=getattr(args, "num_speculative", 4 if args.device.startswith("cuda") else 3),
        draft_head=args.draft_head,
        compile=args.compile,
        threads=args.threads,
        debug=args.debug,
        json=args.json,
        seed=args.seed,
        temperature=args.temperature,
        agreeing="agreeing" not in skip,
        with_hf=not {"hf", "hf_assisted"} <= skip,
        workloads=workloads,
        command=command,
        fit_latency=not hasattr(args, "latency_new_tokens"),
        full_workload=args.full_workload,
    )
