"""Measure the draft/target fixture pairs: greedy agreement and per-token cost.

    python -m staff.pairs                      # every pair in fixtures.PAIRS but the GPT-2-XL one
    python -m staff.pairs gpt2-medium small    # just these
    python -m staff.pairs --scale 0.02 0.05 gpt2-medium   # try other scales for a pair

For each pair it prints:
  agreement   how often the draft's greedy next token equals the target's, along the target's
              own greedy continuation of corpus prompts (what speculative decoding accepts)
  draft ms    one cached decode step of the draft (one token, batch 1), median
  target ms   the same for the target
  cost        draft ms / target ms (GPT2 vs GPT2-XL is about 1/5 on a GPU)
  verify ms   one target decode of num_speculative + 1 tokens (the speculative check)
  expected    the speculative speedup over generate_kv these figures predict:
              tokens per round / (k draft steps + one verify), in target steps
The table is what docs/fixtures.md records; copy it there with the date and the command.
"""

import argparse
import dataclasses

import torch

from infkit import bench_models, corpus, fixtures, loading, paths, timing


@torch.no_grad()
def agreement(draft, target, prompts, new_tokens: int) -> float:
    """Fraction of positions where draft and target pick the same greedy token, along the
    target's own greedy continuation (computed with generate_kv, checked by full forwards)."""
    hits = total = 0
    for prompt in prompts:
        seq = target.generate_kv(prompt[None], new_tokens, top_k=1)
        start = prompt.numel() - 1
        t_next = target(seq[:, :-1], all_logits=True)[0][0, start:].argmax(-1)
        d_next = draft(seq[:, :-1], all_logits=True)[0][0, start:].argmax(-1)
        hits += int((t_next == d_next).sum())
        total += t_next.numel()
    return hits / total


@torch.no_grad()
def step_ms(model, prompt_len: int, tokens: int, repeats: int = 7) -> float:
    """Median milliseconds of one decode() of `tokens` tokens after a cached prompt (batch 1)."""
    idx = torch.zeros(1, prompt_len, dtype=torch.long)
    new = torch.zeros(1, tokens, dtype=torch.long)
    model.prefill(idx)

    def step():
        model.set_kv_pos(prompt_len)
        model.decode(new)

    return 1000 * timing.median(timing.time_call(step, "cpu", repeats, warmup=2))


def expected_speedup(alpha: float, k: int, cost: float, verify: float) -> float:
    """Tokens per round over the round's cost, both in units of one target step.

    With a per-token acceptance probability alpha, a round of k drafts yields on average
    (1 - alpha^(k+1)) / (1 - alpha) tokens (Leviathan et al. 2023) and costs k draft steps plus
    one verify pass (`verify` target steps)."""
    tokens = k + 1 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
    return tokens / (k * cost + verify)


def measure(module, name: str, spec, prompts, new_tokens: int, k: int, draft_head: str = "fp32") -> dict:
    draft, target = fixtures.make_pair(module, spec)
    if draft_head == "int8":  # as run.sh does on CPU by default (fp32, with a note, where unavailable)
        bench_models.int8_draft_head(bench_models.Models(target, draft, name, "stand-in"))
    alpha = agreement(draft, target, prompts, new_tokens)
    plen = prompts.size(1)
    d_ms, t_ms = step_ms(draft, plen, 1), step_ms(target, plen, 1)
    v_ms = step_ms(target, plen, k + 1)
    return dict(
        pair=name,
        target=spec.target,
        draft_layers=spec.draft_layers,
        scale=spec.scale,
        agreement=alpha,
        draft_ms=d_ms,
        target_ms=t_ms,
        cost=d_ms / t_ms,
        verify_ms=v_ms,
        expected=expected_speedup(alpha, k, d_ms / t_ms, v_ms / t_ms),
    )


def format_table(rows, k: int) -> str:
    lines = [
        f"| pair | target | draft layers | scale | agreement | draft ms | target ms | cost | "
        f"verify ({k + 1} tok) ms | expected spec / KV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {r['target']} | {r['draft_layers']} | {r['scale']} | {r['agreement']:.2f} | "
            f"{r['draft_ms']:.1f} | {r['target_ms']:.1f} | 1/{1 / r['cost']:.1f} | {r['verify_ms']:.1f} | "
            f"{r['expected']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure the fixture pairs' agreement and cost.")
    parser.add_argument("pairs", nargs="*", help="names in fixtures.PAIRS (default: all but gpt2-xl)")
    parser.add_argument("--impl", default=str(paths.SOLUTION_MODEL), help="model.py to build the pairs with")
    parser.add_argument("--prompts", type=int, default=3, help="corpus prompts for the agreement")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48, help="greedy tokens per prompt")
    parser.add_argument("--num-speculative", type=int, default=4, help="k, for the verify cost")
    parser.add_argument("--scale", type=float, nargs="*", help="try these scales instead of the table's")
    parser.add_argument("--draft-layers", type=int, help="try this draft depth instead of the table's")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--draft-head", default="fp32", choices=["fp32", "int8"], help="the draft's LM head (run.sh: int8)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    module = loading.load_model_module(args.impl, debug=False)
    names = args.pairs or [n for n in fixtures.PAIRS if n != "gpt2-xl"]
    rows = []
    for name in names:
        base = fixtures.PAIRS[name]
        if args.draft_layers:
            base = dataclasses.replace(base, draft_layers=args.draft_layers)
        vocab = fixtures.SHAPES[base.target]["vocab_size"]
        prompts = corpus.sample_prompts(args.prompts, args.prompt_len, seed=1, vocab_size=vocab)
        for scale in args.scale or [base.scale]:
            spec = dataclasses.replace(base, scale=scale)
            rows.append(
                measure(module, name, spec, prompts, args.new_tokens, args.num_speculative, args.draft_head)
            )
            print(format_table(rows[-1:], args.num_speculative).splitlines()[-1], flush=True)
    print()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, batch 1, "
        f"{args.draft_head} draft head"
    )
    print(format_table(rows, args.num_speculative))


if __name__ == "__main__":
    main()
