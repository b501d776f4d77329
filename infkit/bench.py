"""Throughput / latency test: naive generate vs generate_kv vs generate_speculative.

Minimal first version (the full benchmark is tracked in its own issue).
"""

import argparse

import torch

from . import corpus, fixtures, loading, paths, timing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default=str(paths.default_model_path()), help="model.py to test")
    parser.add_argument("--pair", default="small", choices=sorted(fixtures.PAIRS), help="fixture pair")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    module = loading.load_model_module(args.impl)
    draft, target = fixtures.make_pair(module, args.pair)
    prompts = corpus.sample_prompts(args.samples, args.prompt_len, vocab_size=target.config.vocab_size)
    rows = {}
    for name, fn in {
        "naive": lambda p: target.generate(p, args.new_tokens, top_k=1),
        "kv": lambda p: target.generate_kv(p, args.new_tokens, top_k=1),
        "speculative": lambda p: target.generate_speculative(p, args.new_tokens, draft, top_k=1),
    }.items():
        try:
            seconds = [timing.time_call(lambda p=p, fn=fn: fn(p[None]), repeats=1)[0] for p in prompts]
        except NotImplementedError as e:
            print(f"{name:12s} not implemented yet: {e}")
            continue
        rows[name] = timing.median(seconds)
        print(f"{name:12s} {args.new_tokens / rows[name]:8.1f} tok/s  {rows[name]:.3f} s/sample")
    if "naive" in rows and "kv" in rows:
        print(f"KV speedup over naive: {rows['naive'] / rows['kv']:.2f}x")


if __name__ == "__main__":
    main()
