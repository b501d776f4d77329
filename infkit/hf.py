"""The transformers twin of a model: the external oracle and the library baseline.

GPT2LMHeadModel keeps four weights as Conv1D, stored (in, out); nn.Linear stores (out, in).
"""

import torch

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_config(config, activation_function: str = "gelu_new"):
    """GPT2Config matching a GPTConfig. gelu_new is the tanh GELU the kit's model uses."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        activation_function=activation_function,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        # no end-of-text token: generate() must never stop early on a random model
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )


@torch.no_grad()
def to_hf(model, attn_implementation: str = "eager"):
    """A transformers GPT2LMHeadModel with exactly the weights of a kit GPT."""
    from transformers import GPT2LMHeadModel

    # built on the meta device: every value is copied in below, so transformers' own random
    # init (seconds for a gpt2-medium-sized model) would be thrown away
    with torch.device("meta"):
        hf_model = GPT2LMHeadModel(hf_config(model.config))
    hf_model = hf_model.to_empty(device=model.lm_head.weight.device)
    hf_model.tie_weights()
    hf_model.config._attn_implementation = attn_implementation
    hf_sd = hf_model.state_dict()
    for name, value in model.state_dict().items():
        if name not in hf_sd:
            continue
        hf_sd[name].copy_(value.t() if name.endswith(CONV1D) else value)
    return hf_model.to(model.lm_head.weight.device).eval()


@torch.no_grad()
def hf_generate(hf_model, idx, max_new_tokens, **kwargs):
    """transformers generate() for a (B, T) prompt with no padding; greedy unless told."""
    kwargs.setdefault("do_sample", False)
    return hf_model.generate(
        idx,
        attention_mask=torch.ones_like(idx),
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        use_cache=True,
        **kwargs,
    )


def random_hf_gpt2(n_layer=2, n_head=2, n_embd=32, vocab_size=256, n_positions=64, seed=0):
    """A randomly initialised transformers GPT-2 (no download), for conversion tests."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head
    )
    return GPT2LMHeadModel(config).eval()
