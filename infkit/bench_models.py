"""The models the benchmark compares: a draft/target pair, on a device, plus their
transformers twins (same weights, same precision).

Real GPT-2 weights come through GPT.from_pretrained when the hub answers; offline (or when it
does not answer quickly) the seeded random-weight stand-in of the same size is used instead
(fixtures.PAIRS), with a message saying so.
"""

import os
import socket
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from . import fixtures, hf

REAL = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
HUB = ("huggingface.co", 443)


@dataclass
class Models:
    target: object
    draft: object
    name: str  # what the table calls the pair
    source: str  # "pretrained" or "stand-in"
    hf_target: object = None
    hf_draft: object = None


def hub_reachable(timeout: float = 3.0) -> bool:
    """False offline, with HF_HUB_OFFLINE / INFKIT_OFFLINE set, or when the hub does not answer
    within `timeout` seconds (so the benchmark never hangs on a dead network)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("INFKIT_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(HUB, timeout=timeout):
            return True
    except OSError:
        return False


def load_pretrained(module, name: str):
    """GPT.from_pretrained(name), or None (with the reason printed) when it cannot be had."""
    if not hub_reachable():
        print(f"note: the Hugging Face hub is not reachable; using the random-weight stand-in for {name}")
        return None
    try:
        return module.GPT.from_pretrained(name).eval()
    except Exception as e:  # a download that fails half way is as good as no network
        print(f"note: could not load {name} ({type(e).__name__}: {e}); using the random-weight stand-in")
        return None


def build(module, model: str, draft: str | None, pair: str, seed: int = 0) -> Models:
    """The pair to benchmark. model=None: the stand-in pair `pair`. model=a GPT-2 name: its
    real weights (draft: `draft`, default gpt2), or the stand-in pair of that size offline."""
    if model is not None:
        target = load_pretrained(module, model)
        if target is not None:
            draft_name = draft or "gpt2"  # gpt2 drafting for itself: draft_model is target
            draft_model = target if draft_name == model else load_pretrained(module, draft_name)
            if draft_model is not None:
                return Models(target, draft_model, f"{draft_name} -> {model}", "pretrained")
        pair = model if model in fixtures.PAIRS else pair
    d, t = fixtures.make_pair(module, pair, seed=seed)
    return Models(t, d, f"stand-in pair '{pair}'", "stand-in")


def place(models: Models, device: str, debug: bool, with_hf: bool = True) -> Models:
    """Move to the device; 16-bit on CUDA outside DEBUG (as the course's fast path): bf16 where
    the GPU computes it natively (Ampere and newer), fp16 on older ones such as Colab's T4
    (Turing has no bf16 units). The transformers twins get the same weights and dtype."""
    dtype = torch.float32
    if device.startswith("cuda") and not debug:
        dtype = torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    if with_hf:  # built from the fp32 CPU weights, then moved like ours
        models.hf_target = hf.to_hf(models.target, attn_implementation="sdpa").to(device, dtype)
        models.hf_draft = (
            models.hf_target
            if models.draft is models.target
            else hf.to_hf(models.draft, attn_implementation="sdpa").to(device, dtype)
        )
    models.target = models.target.to(device, dtype).eval()
    models.draft = models.draft.to(device, dtype).eval()
    return models


class Int8Head(nn.Module):
    """A draft's LM head with int8 weights (dynamic quantization, fbgemm; CPU only).

    Speculative decoding pays the draft's head (vocab x width) at every draft step, and on CPU
    that one-row fp32 product is most of a small draft's step. The
    draft's precision never changes what greedy speculative decoding outputs, only how often
    the target accepts, so a cheaper head is a cheaper draft. `weight` stays the fp32 tensor,
    for code that reads it."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

        plain = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        plain.weight, plain.bias = head.weight, head.bias
        plain.qconfig = torch.ao.quantization.default_dynamic_qconfig
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch, not yet gone
            warnings.simplefilter("ignore")
            self.int8 = DynamicInt8Linear.from_float(plain)
        self.weight, self.bias = head.weight, head.bias

    def forward(self, x):
        return self.int8(x)


def int8_draft_head(models: Models) -> str:
    """Give the draft, and the transformers assistant (the same head module), an int8 LM head.
    Returns what the draft's head is now, for the report."""
    if models.draft is models.target:
        return "fp32 (the draft is the target)"
    try:
        head = Int8Head(models.draft.lm_head)
    except Exception as e:  # a torch without quantized kernels: keep fp32 and say so
        print(f"note: no int8 draft head in this torch ({type(e).__name__}: {e}); the draft stays fp32")
        return "fp32 (int8 unavailable)"
    models.draft.lm_head = head
    if models.hf_draft is not None and models.hf_draft is not models.hf_target:
        models.hf_draft.lm_head = head
    return "int8"


def describe(model) -> str:
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    return f"{c.n_layer} layers x {c.n_embd} wide, {params / 1e6:.3g}M params"
