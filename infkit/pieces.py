"""The pieces of model.py you write, in the order to do them: the one list that the checks
(infkit.checks), the public tests, the notebook's check cells, the autograder and the README's
table follow.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    name: str  # the TODO(name) of its stub, and its name everywhere else
    where: str  # what students fill in
    what: str  # the contract in one line (the README's table; the docstring is the authority)
    label: str  # how messages name it ("... is not implemented yet")
    optional: bool = False  # checked by its own probe and judge (infkit.optional), not infkit.checks


PIECES = (
    Piece(
        "buffers",
        "CausalSelfAttention.init_kv_cache",
        "register `kv_cache` (2, B, n_head, positions, head_dim), non-persistent",
        "buffers (CausalSelfAttention.init_kv_cache)",
    ),
    Piece(
        "prefill",
        "CausalSelfAttention.forward",
        "with `enable_kv`, store the prompt's k/v, set `seq_pos`",
        "prefill (the enable_kv branch of CausalSelfAttention.forward)",
    ),
    Piece(
        "attn_decode",
        "CausalSelfAttention.decode",
        "append new k/v, attend over the cache (causal among new tokens)",
        "attn_decode (CausalSelfAttention.decode)",
    ),
    Piece(
        "gpt_decode",
        "GPT.decode",
        "logits for tokens that follow the cache, at positions `kv_pos..`",
        "gpt_decode (GPT.decode, or a piece it calls)",
    ),
    Piece(
        "generate_kv",
        "GPT.generate_kv",
        "prefill once, then one `decode` per token",
        "generate_kv (or a piece it calls)",
    ),
    Piece(
        "speculative",
        "GPT.generate_speculative",
        "draft k, verify in one pass, keep the agreeing run",
        "generate_speculative",
    ),
    Piece(
        "sampling",
        "GPT._accept_sampled",
        "temperature > 0: rejection sampling that keeps the target's distribution",
        "speculative sampling (GPT._accept_sampled)",
        optional=True,
    ),
)

NAMES = tuple(p.name for p in PIECES)
CHECKED = tuple(p.name for p in PIECES if not p.optional)  # what infkit.checks checks
OPTIONAL = tuple(p.name for p in PIECES if p.optional)
LABELS = {p.name: p.label for p in PIECES}


def contract_table() -> str:
    """The README's table of pieces (between its `<!-- pieces-table -->` markers)."""
    lines = ["| piece | where | what |", "|---|---|---|"]
    for p in PIECES:
        name = f"`{p.name}` (optional)" if p.optional else f"`{p.name}`"
        lines.append(f"| {name} | `{p.where}` | {p.what} |")
    return "\n".join(lines)
