"""What a speculative verify step costs against a one-token decode step, on the model's own
Linear (W @ x^T for 2-16 rows on CPU) and on plain nn.Linear, in one process.

    python -m staff.verify_cost [--pair bench] [--tokens 1 4 5] [--repeats 7]

The figures behind the "verify step" paragraphs of docs/performance.md. Needs a model.py
whose prefill and decode work (the solution here, the student's file in the handout).
"""

import argparse

import torch
from torch import nn

from infkit import fixtures, loading, paths

from .pairs import step_ms


def plain_linear(model):
    """Swap every Linear subclass of `model` for a plain nn.Linear sharing its parameters."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and type(child) is not nn.Linear:
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.weight, plain.bias = child.weight, child.bias
                setattr(module, name, plain)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default=str(paths.default_model_path()), help="the model.py to measure")
    p.add_argument("--pair", default="bench", choices=sorted(fixtures.PAIRS))
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 4, 5])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    module = loading.load_model_module(args.impl)
    _, target = fixtures.make_pair(module, args.pair, seed=0)
    target.eval()
    print(f"target of pair {args.pair!r}, prompt {args.prompt_len}, {torch.get_num_threads()} threads")
    results = {}
    for label in ("model's Linear", "plain nn.Linear"):
        if label.startswith("plain"):
            plain_linear(target)
        results[label] = {n: step_ms(target, args.prompt_len, n, args.repeats) for n in args.tokens}
        one = results[label].get(1)
        cells = [
            f"{n} tokens {ms:7.1f} ms" + (f" ({ms / one:.2f} steps)" if one and n > 1 else "")
            for n, ms in results[label].items()
        ]
        print(f"{label:16s} " + "   ".join(cells))
    return results


if __name__ == "__main__":
    main()
