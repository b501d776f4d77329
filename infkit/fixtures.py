"""Seeded random-weight models that stand in for GPT-2 offline.

Weights are drawn per parameter name from a generator seeded by (seed, name), so a fixture
is the same whatever model.py it is loaded into (yours, the starter, any other) and
whatever order that file creates its parameters in.

Why not GPT-2's own init (std 0.02)? With it, a random model's greedy output repeats one token
forever (the tied embedding dominates the residual stream), and tests on it cannot see position
or cache bugs. Matrices here are drawn with std 0.2, which makes outputs depend on the context;
the kit's own tests assert they stay that way.

The draft/target pair (make_pair) stands in for GPT2 drafting for GPT2-XL: the draft is the
target's first `draft_layers` blocks plus the shared embeddings, final LayerNorm and head; in
the target, every deeper block's output projections are scaled by `scale` (biases zeroed), so
the deeper blocks nudge, rather than overwrite, what the shallow ones computed. The smaller
`scale`, the more often the two agree.
"""

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass

import torch

VOCAB = 50257
STD = 0.2  # matrices and embeddings

# (n_layer, n_head, n_embd, vocab_size, block_size)
SHAPES = {
    "tiny": dict(n_layer=3, n_head=4, n_embd=64, vocab_size=512, block_size=128),
    "small": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=VOCAB, block_size=512),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=VOCAB, block_size=1024),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=VOCAB, block_size=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=VOCAB, block_size=1024),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, vocab_size=VOCAB, block_size=1024),
    # run.sh's offline target: GPT-2-medium's depth at GPT-2's width (209M parameters), so that
    # the whole default runs in a few minutes on two CPU cores
    "bench": dict(n_layer=24, n_head=12, n_embd=768, vocab_size=VOCAB, block_size=1024),
}


@dataclass(frozen=True)
class PairSpec:
    target: str  # a SHAPES name
    draft_layers: int
    scale: float  # output-projection scale of the target's blocks past draft_layers


# Each pair's `scale` was chosen by measuring how often its draft and target agree.
PAIRS = {
    "tiny": PairSpec(target="tiny", draft_layers=1, scale=0.05),
    "small": PairSpec(target="small", draft_layers=1, scale=0.05),
    "gpt2": PairSpec(target="gpt2", draft_layers=1, scale=0.02),
    "gpt2-medium": PairSpec(target="gpt2-medium", draft_layers=2, scale=0.02),
    "gpt2-large": PairSpec(target="gpt2-large", draft_layers=3, scale=0.02),
    "gpt2-xl": PairSpec(target="gpt2-xl", draft_layers=4, scale=0.02),
    # run.sh's offline default: a 1-layer draft (its int8 head included) costs ~1/14 of the
    # 24-layer target per token and agrees with it on 0.85 of greedy tokens
    "bench": PairSpec(target="bench", draft_layers=1, scale=0.01),
}


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _draw(name: str, shape, seed: int) -> torch.Tensor:
    g = _generator(seed, name)
    if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if name.endswith(".bias"):
        return 0.02 * torch.randn(shape, generator=g)
    return STD * torch.randn(shape, generator=g)


def config_kwargs(shape: str | dict) -> dict:
    """GPTConfig keyword arguments for a SHAPES name (or a dict of them)."""
    kw = dict(SHAPES[shape]) if isinstance(shape, str) else dict(shape)
    kw.setdefault("bias", True)
    kw.setdefault("dropout", 0.0)
    return kw


@torch.no_grad()
def fill_weights(model, seed: int = 0):
    """Overwrite every parameter of a GPT in place with the seeded fixture values."""
    for name, p in model.named_parameters():
        p.copy_(_draw(name, p.shape, seed))
    return model


_INITS = ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_", "ones_")


@contextmanager
def _no_random_init():
    """fill_weights overwrites every parameter, so the model's own random init (seconds for a
    gpt2-medium-sized model on CPU) is wasted: torch.nn.init's functions skip parameters
    meanwhile. Anything else (a buffer, say) is initialised as usual."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITS}

    def skipping(init):
        def maybe_init(tensor, *args, **kwargs):
            if isinstance(tensor, torch.nn.Parameter):
                return tensor
            return init(tensor, *args, **kwargs)

        return maybe_init

    try:
        for name, init in saved.items():
            setattr(torch.nn.init, name, skipping(init))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def make_model(module, shape: str | dict = "tiny", seed: int = 0, device="cpu"):
    """A GPT from `module` (a loaded model.py) with fixture weights, in eval mode."""
    with _no_random_init():
        model = module.GPT(module.GPTConfig(**config_kwargs(shape)))
    return fill_weights(model, seed).to(device).eval()


@torch.no_grad()
def make_pair(module, pair: str | PairSpec = "tiny", seed: int = 0, device="cpu"):
    """(draft, target) built as the module docstring describes. Returns models in eval mode."""
    spec = PAIRS[pair] if isinstance(pair, str) else pair
    target = make_model(module, spec.target, seed)
    for i, block in enumerate(target.transformer.h):
        if i >= spec.draft_layers:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.mul_(spec.scale)
                if proj.bias is not None:
                    proj.bias.zero_()
    draft_kw = dict(config_kwargs(spec.target), n_layer=spec.draft_layers)
    with _no_random_init():  # every value is loaded from the target below
        draft = module.GPT(module.GPTConfig(**draft_kw))
    target_sd = target.state_dict()
    draft.load_state_dict({k: target_sd[k] for k in draft.state_dict()})
    return draft.to(device).eval(), target.to(device).eval()


def random_prompt(batch: int, length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """Uniform random token ids (B, T), for tests that need no real text."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=g)


@torch.no_grad()
def greedy_agreement(draft, target, prompt, new_tokens: int) -> float:
    """How often the draft's greedy next token equals the target's, along the target's own
    greedy continuation of prompt (1, T)."""
    seq = target.generate(prompt, new_tokens, top_k=1)
    t_logits, _ = target(seq[:, :-1], all_logits=True)
    d_logits, _ = draft(seq[:, :-1], all_logits=True)
    start = prompt.size(1) - 1
    t_next = t_logits[0, start:].argmax(-1)
    d_next = d_logits[0, start:].argmax(-1)
    return (t_next == d_next).float().mean().item()
