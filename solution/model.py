"""
GPT-2 in one file, in the style of nanoGPT, made fast for inference.

Three ways to generate text, all with the same arguments:
  generate              the given baseline: re-runs the whole sequence for every new token
  generate_kv           prefill once, then decode one token at a time from a KV cache
  generate_speculative  a small draft model proposes tokens, this model checks them in one pass

Module and parameter names follow nanoGPT (and so GPT-2's released checkpoints).
Set DEBUG = True (or call set_debug(True)) while developing: fp32, deterministic kernels and
an explicit attention, so cached and uncached runs can be compared token for token.
"""

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

# True: fp32, deterministic algorithms, no TF32, explicit attention (slow, reproducible).
# False: the fast path: scaled_dot_product_attention, and 16-bit autocast on CUDA.
DEBUG = False


def set_debug(enabled: bool = True):
    """Switch DEBUG and the global torch settings that go with it."""
    global DEBUG
    DEBUG = enabled
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cuda.matmul.allow_tf32 = not enabled
    torch.backends.cudnn.allow_tf32 = not enabled
    # On CUDA, deterministic cuBLAS also needs: export CUBLAS_WORKSPACE_CONFIG=:4096:8


def autocast_for(device_type: str):
    """16-bit autocast on CUDA outside DEBUG; plain fp32 everywhere else.
    bf16 where the GPU computes it natively (Ampere and newer); fp16 on older GPUs such as
    Colab's T4 (Turing has no bf16 units, so bf16 there is emulated and slow)."""
    if DEBUG or device_type != "cuda":
        return nullcontext()
    major, _ = torch.cuda.get_device_capability()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if major >= 8 else torch.float16)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False switch)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class Linear(nn.Linear):
    """nn.Linear with a CPU fast path for a few rows at once (a speculative verify step, a
    small batch of decode steps). For 2-16 rows, MKL's fp32 GEMM copies the whole weight
    into a packed layout on every call, so a 5-token step cost ~3x a 1-token step although
    it reads the same weights. Multiplying in the weight's own orientation, W @ x^T, streams
    the weight once. Same result up to rounding; DEBUG keeps the plain path."""

    def forward(self, x):
        rows = x.numel() // self.in_features
        if DEBUG or x.device.type != "cpu" or not 1 < rows <= 16:
            return super().forward(x)
        # both in row-major (rows, features) layout: W @ x^T on an x already stored transposed
        # is again the slow path, and a transposed output would hand the next layer such an x
        x2d = x.reshape(rows, self.in_features).contiguous()
        y = (self.weight @ x2d.T).T.contiguous()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def attend(q, k, v, q_start: int):
    """Causal attention of queries at absolute positions q_start.. over keys at 0..

    q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs) with Tk = q_start + Tq.
    Query i may look at keys 0 .. q_start + i, which is the causal mask shifted right.
    """
    Tq, Tk = q.size(-2), k.size(-2)
    if DEBUG:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, Tq, Tk)
        if Tq > 1:
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=q_start)
            att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        return att @ v  # (B, nh, Tq, hs)
    if Tq == 1:  # one new token sees everything cached: no mask needed
        return F.scaled_dot_product_attention(q, k, v)
    if q_start == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=q_start)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, in one matrix
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # KV cache scaffold (given). The cache itself is allocated by init_kv_cache().
        self.enable_kv = False  # when True, forward() also fills the cache (prefill)
        self.seq_pos = 0  # how many positions of the cache hold valid keys/values
        self.register_buffer("kv_cache", None, persistent=False)

    def init_kv_cache(self, batch_size: int, max_seq_len: int):
        """Allocate the KV cache as a registered, non-persistent buffer named `kv_cache`.

        Shape: (2, batch_size, n_head, max_seq_len, head_dim), on the device and in the dtype
        of this module's weights (self.c_attn.weight), never a hard-coded 'cuda' or bfloat16:
        attention multiplies the cache with queries on the weights' device, in their dtype
        outside autocast (decode() says what changes under it). Index 0
        holds keys, index 1 values. Initial values do not matter (torch.zeros or torch.empty):
        no position is read before it is written. Non-persistent, so state_dict() and
        checkpoint loading are unchanged. Afterwards: self.seq_pos == 0 (the cache is empty).
        """
        # BEGIN SOLUTION buffers
        # STUB raise NotImplementedError(
        # STUB     "TODO(buffers): register_buffer('kv_cache', zeros of shape "
        # STUB     "(2, batch_size, n_head, max_seq_len, head_dim), persistent=False), "
        # STUB     "then set self.seq_pos = 0"
        # STUB )
        w = self.c_attn.weight
        head_dim = self.n_embd // self.n_head
        shape = (2, batch_size, self.n_head, max_seq_len, head_dim)
        self.register_buffer("kv_cache", torch.zeros(shape, device=w.device, dtype=w.dtype), persistent=False)
        self.seq_pos = 0
        # END SOLUTION

    def forward(self, x):
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

        if self.enable_kv:
            # Prefill: this forward sees the whole prompt; keep its keys and values so that
            # decode() can continue from it. Afterwards the cache holds positions 0..T-1.
            # BEGIN SOLUTION prefill
            # STUB raise NotImplementedError(
            # STUB     "TODO(prefill): copy k and v (B, nh, T, hs) into positions 0..T-1 of "
            # STUB     "the cache for the first B rows, then set self.seq_pos = T"
            # STUB )
            if T > self.kv_cache.size(3):
                raise ValueError(f"prompt of {T} tokens does not fit the KV cache ({self.kv_cache.size(3)})")
            self.kv_cache[0, :B, :, :T] = k
            self.kv_cache[1, :B, :, :T] = v
            self.seq_pos = T
            # END SOLUTION

        y = attend(q, k, v, q_start=0)  # (B, nh, T, hs)
        y = self.attn_dropout(y)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs
        return self.resid_dropout(self.c_proj(y))

    def decode(self, x):
        """Attention for new tokens that follow what the cache holds.

        Args:
            x: (B, T_new, C) hidden states of T_new >= 1 new tokens, at absolute positions
               seq_pos .. seq_pos + T_new - 1.
        Returns:
            (B, T_new, C), equal to the last T_new rows of forward() on the full sequence.
        Afterwards: the cache also holds the new keys/values, seq_pos grew by T_new.
        New token i attends to every cached position and to new tokens 0..i (causal).
        Batch row b of x uses row b of the cache (a cache with more rows than B keeps the rest).
        Under 16-bit autocast (CUDA, DEBUG off) q, k and v come out of c_attn in 16 bits while
        the cache keeps the weights' dtype: cast the keys and values read back to q.dtype.
        Raises ValueError when the cache has no room for T_new more positions (no check grades
        the error's type or message).
        """
        # BEGIN SOLUTION attn_decode
        # STUB raise NotImplementedError(
        # STUB     "TODO(attn_decode): project x to q, k, v; write k, v at positions "
        # STUB     "seq_pos..seq_pos+T_new-1; attend q over cache positions "
        # STUB     "0..seq_pos+T_new-1 (causal among the new tokens); advance seq_pos"
        # STUB )
        B, T, C = x.size()
        start, end = self.seq_pos, self.seq_pos + T
        if end > self.kv_cache.size(3):
            raise ValueError(f"KV cache is full: {start} cached + {T} new > capacity {self.kv_cache.size(3)}")
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        self.kv_cache[0, :B, :, start:end] = k
        self.kv_cache[1, :B, :, start:end] = v
        self.seq_pos = end
        keys = self.kv_cache[0, :B, :, :end]  # (B, nh, end, hs)
        values = self.kv_cache[1, :B, :, :end]
        y = attend(q, keys.to(q.dtype), values.to(q.dtype), q_start=start)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
        # END SOLUTION


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # tanh GELU, as GPT-2 was trained and as transformers computes it (nanoGPT uses the
        # exact erf form; the two differ by ~1e-4, enough to flip near-tied greedy tokens)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x

    def decode(self, x):
        """Same as forward(), but attention reads and extends the KV cache."""
        x = x + self.attn.decode(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class GPTConfig:
    block_size: int = 1024  # context length, and the KV cache's capacity in positions
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2


def sample_next(logits, temperature=1.0, top_k=None):
    """Pick the next token from logits (B, V). Returns (B,) token ids.

    top_k == 1 or temperature == 0 means greedy: argmax, and no random numbers are drawn.
    """
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(token_probs(logits, temperature, top_k), num_samples=1)[:, 0]


def token_probs(logits, temperature=1.0, top_k=None):
    """The distribution that sample_next draws from: softmax(logits / T) over the top k."""
    logits = logits.float() / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[..., [-1]], float("-inf"))
    return F.softmax(logits, dim=-1)


def propose(logits, temperature=1.0, top_k=None):
    """One draft token from the draft's logits (1, V), and the distribution q it was drawn from.

    Returns (token (1,), q (1, V)); greedy (top_k == 1 or temperature == 0) gives the argmax and
    q = None, drawing no random numbers. Speculative sampling needs the q of every drafted token
    of a round (GPT._accept_sampled's draft_probs).
    """
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1), None
    q = token_probs(logits, temperature, top_k)
    return torch.multinomial(q, num_samples=1)[:, 0], q


def sampling_written(model) -> bool:
    """Whether model._accept_sampled, the optional piece, is written (not the stub). It is called
    once for a round with nothing drafted, with the random state saved and restored, so the
    call changes nothing that follows."""
    p = torch.full((1, 2), 0.5)
    try:
        with torch.random.fork_rng(devices=[]):
            model._accept_sampled(torch.zeros(0, dtype=torch.long), [], p)
    except NotImplementedError:
        return False
    except Exception:  # written, perhaps wrong in this corner: the sampling test judges it
        return True
    return True


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config

        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the output head reuses the token embedding
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # scaled init of the residual projections, per the GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding=True):
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, all_logits=False):
        """Full forward pass over idx (B, T).

        Returns (logits, loss). Without targets, logits are (B, 1, V) for the last position
        only, unless all_logits=True gives (B, T, V). With the cache enabled this also fills it.
        """
        device = idx.device
        b, t = idx.size()
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(0, t, dtype=torch.long, device=device)  # (t,)

        tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)

        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        elif all_logits:
            logits, loss = self.lm_head(x), None
        else:
            # inference: only the last position's logits are needed (a list index keeps the T dim)
            logits, loss = self.lm_head(x[:, [-1], :]), None
        return logits, loss

    # ----------------------------------------------------------------------------------
    # KV cache scaffold (given): allocation, reset, and moving the position.

    @property
    def kv_pos(self) -> int:
        """How many positions the KV cache holds (the same in every layer)."""
        return self.transformer.h[0].attn.seq_pos

    def setup_kv_cache(self, batch_size: int, max_seq_len: int = None):
        """Make sure every layer has a cache for batch_size rows, and empty it."""
        max_seq_len = max_seq_len or self.config.block_size
        for block in self.transformer.h:
            cache = block.attn.kv_cache
            if cache is None or cache.size(1) < batch_size or cache.size(3) < max_seq_len:
                block.attn.init_kv_cache(batch_size, max_seq_len)
        self.set_kv_pos(0)

    def set_kv_pos(self, pos: int):
        """Rewind (or reset, with 0) the cache: positions >= pos are treated as empty.

        Rolling back after rejected draft tokens is just this: nothing is copied.
        """
        for block in self.transformer.h:
            block.attn.seq_pos = pos

    def set_kv_enabled(self, enabled: bool):
        for block in self.transformer.h:
            block.attn.enable_kv = enabled

    def reset_kv_cache(self):
        self.set_kv_pos(0)

    @torch.no_grad()
    def prefill(self, idx, all_logits=False):
        """Run the prompt idx (B, T) through the model once, filling the cache.

        Returns the logits of the last position (B, 1, V), or of all (B, T, V).
        Afterwards kv_pos == T.
        """
        self.setup_kv_cache(idx.size(0))
        self.set_kv_enabled(True)
        try:
            logits, _ = self(idx, all_logits=all_logits)
        finally:
            self.set_kv_enabled(False)
        return logits

    @torch.no_grad()
    def decode(self, idx):
        """Logits for tokens that follow what the cache holds.

        Args:
            idx: (B, T_new) token ids at positions kv_pos .. kv_pos + T_new - 1.
        Returns:
            logits (B, T_new, V) for every new position: row i predicts the token after idx[:, i].
        Afterwards kv_pos grew by T_new. Raises ValueError when kv_pos + T_new would pass
        block_size (the positions the model has embeddings for, and what setup_kv_cache
        allocates); T_new >= 1. No check grades the error's type or message.
        """
        # BEGIN SOLUTION gpt_decode
        # STUB raise NotImplementedError(
        # STUB     "TODO(gpt_decode): embed idx with token + position embeddings for positions "
        # STUB     "kv_pos..kv_pos+T_new-1, run every block's decode(), ln_f, lm_head"
        # STUB )
        t = idx.size(1)
        start = self.kv_pos
        if start + t > self.config.block_size:
            raise ValueError(
                f"cannot decode past block_size {self.config.block_size}: {start} cached + {t} new tokens"
            )
        pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block.decode(x)
        return self.lm_head(self.transformer.ln_f(x))
        # END SOLUTION

    # ----------------------------------------------------------------------------------
    # Loading released GPT-2 weights

    @classmethod
    def from_pretrained(cls, model_type, override_args=None):
        """Load 'gpt2', 'gpt2-medium', 'gpt2-large' or 'gpt2-xl' through transformers."""
        assert model_type in {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}
        override_args = override_args or {}
        assert all(k == "dropout" for k in override_args)
        from transformers import GPT2LMHeadModel

        print(f"loading weights from pretrained gpt: {model_type}")
        hf_model = GPT2LMHeadModel.from_pretrained(model_type)
        return cls.from_hf(hf_model, **override_args)

    @classmethod
    def from_hf(cls, hf_model, dropout=0.0):
        """Build a GPT from an in-memory transformers GPT2LMHeadModel (same weights)."""
        hf = hf_model.config
        config = GPTConfig(
            block_size=hf.n_positions,
            vocab_size=hf.vocab_size,
            n_layer=hf.n_layer,
            n_head=hf.n_head,
            n_embd=hf.n_embd,
            dropout=dropout,
            bias=True,
        )
        model = cls(config)
        sd = model.state_dict()
        sd_hf = {k: v for k, v in hf_model.state_dict().items() if not k.endswith(".attn.bias")}
        sd_hf = {k: v for k, v in sd_hf.items() if not k.endswith(".attn.masked_bias")}
        missing = set(sd) - set(sd_hf)
        assert not missing, f"weights missing from the transformers model: {sorted(missing)[:5]}"
        # transformers stores these four as Conv1D, (in, out): transpose into nn.Linear's (out, in)
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for k in sd:
                src = sd_hf[k]
                if k.endswith(transposed):
                    src = src.t()
                assert src.shape == sd[k].shape, f"shape mismatch for {k}: {src.shape} vs {sd[k].shape}"
                sd[k].copy_(src)
        return model

    # ----------------------------------------------------------------------------------
    # Generation

    def _check_lengths(self, idx, max_new_tokens):
        total = idx.size(1) + max_new_tokens
        if idx.size(1) < 1:
            raise ValueError("the prompt must hold at least one token")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if total > self.config.block_size:
            raise ValueError(
                f"prompt ({idx.size(1)}) + max_new_tokens ({max_new_tokens}) = {total} tokens "
                f"exceeds block_size {self.config.block_size}"
            )

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """The baseline: append max_new_tokens tokens to idx (B, T), re-running the whole
        sequence for every one of them. Returns (B, T + max_new_tokens)."""
        self._check_lengths(idx, max_new_tokens)
        with autocast_for(idx.device.type):
            for _ in range(max_new_tokens):
                logits, _ = self(idx)
                idx_next = sample_next(logits[:, -1, :], temperature, top_k)
                idx = torch.cat((idx, idx_next[:, None]), dim=1)
        return idx

    @torch.no_grad()
    def generate_kv(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Same contract as generate(), with a KV cache: one prefill of the prompt, whose last
        logits give the first new token, then one decode() of each new token but the last (its
        logits would be unused; decoding it too is allowed). Each call starts from an empty
        cache.

        Args:
            idx: (B, T) prompt token ids, T >= 1, on the device of the weights.
            max_new_tokens: >= 0; T + max_new_tokens may reach block_size exactly (0 returns idx).
        Returns:
            (B, T + max_new_tokens) on idx's device; greedy (top_k=1) output equals generate()'s,
            with DEBUG on and off.
        Run the loop inside `with autocast_for(idx.device.type):`, as generate() does, so that
        both take the same (16-bit on CUDA) fast path.
        """
        self._check_lengths(idx, max_new_tokens)
        # BEGIN SOLUTION generate_kv
        # STUB raise NotImplementedError(
        # STUB     "TODO(generate_kv): prefill the prompt once, then loop: sample the next token "
        # STUB     "from the last logits, append it, and decode() just that one token"
        # STUB )
        if max_new_tokens == 0:
            return idx
        B, T = idx.shape
        out = torch.empty(B, T + max_new_tokens, dtype=idx.dtype, device=idx.device)
        out[:, :T] = idx
        with autocast_for(idx.device.type):
            logits = self.prefill(idx)  # (B, 1, V)
            for i in range(max_new_tokens):
                idx_next = sample_next(logits[:, -1, :], temperature, top_k)  # (B,)
                out[:, T + i] = idx_next
                if i + 1 < max_new_tokens:  # the last token needs no forward pass
                    logits = self.decode(out[:, T + i : T + i + 1])
        return out
        # END SOLUTION

    @torch.no_grad()
    def generate_speculative(
        self, idx, max_new_tokens, draft_model, temperature=1.0, top_k=None, num_speculative=4
    ):
        """Speculative decoding: draft_model proposes num_speculative tokens, this model checks
        all of them in one pass and keeps the longest agreeing run plus one token of its own.

        Args:
            idx: (1, T) prompt token ids (batch size 1 only), T >= 1.
            max_new_tokens: >= 0; T + max_new_tokens may reach block_size exactly.
            draft_model: a smaller GPT with the same vocabulary and block_size, on the same
                device and dtype (the checks use this model's first layers, or a 1-layer GPT of
                other weights), or this model itself. When `draft_model is self`, both roles
                share one set of kv_cache buffers and one kv_pos: a loop that keeps a cache for
                each model would overwrite one with the other. Give the draft its own copy (copy.deepcopy(self)), or run the draft
                without a cache. Use the draft only through forward(), prefill(), decode() and
                the cache scaffold (setup_kv_cache, set_kv_pos, kv_pos): ./run.sh wraps those
                to time the same loop with a draft that always agrees.
            temperature, top_k: top_k == 1 or temperature == 0 is greedy, the graded case. Any
                other setting samples (the defaults, temperature=1.0 and top_k=None, do): then
                the drafts come from propose(...) and each round's acceptance is
                self._accept_sampled(...), the optional piece. While that is not written it
                raises NotImplementedError, and so does this method, before any work and
                naming the optional piece: a sampled request never gets greedy tokens back.
            num_speculative: k, the tokens drafted per round; it may exceed what is left.
        Returns:
            (1, T + max_new_tokens). Greedy: exactly what generate() of this model returns,
            whatever the draft proposes, with DEBUG on and off (outside DEBUG the checks excuse
            a token that differs where the naive run's top two logits are within 1e-3, a tie
            that rounding can flip; any other difference is a bug). Sampled: the output follows this
            model's own distribution (rejection sampling of the drafts).
        Afterwards: self.spec_stats = {"rounds": r, "drafted": d, "accepted": a} for this call
            (rounds, draft tokens proposed, drafted tokens kept). Not graded; ./run.sh and the
            notebook read it for the draft's acceptance rate, and estimate the rate from this
            model's forward passes when it is missing.

        One round, with n tokens of the sequence settled (the prompt and every token kept so
        far) and k = the tokens drafted this round:
          1. the draft proposes d_1..d_k after those n tokens (k draft steps);
          2. ONE pass of this model over the drafts scores k + 1 positions, n - 1 .. n + k - 1
             of seq[:n] + d_1..d_k: row i (i = 0..k) predicts the token after position
             n - 1 + i, so row 0 checks d_1, row i - 1 checks d_i, and row k predicts the token
             after d_k. Without a cache: forward(seq[:n] + drafts, all_logits=True), its last
             k + 1 rows. With a cache holding positions 0..kv_pos - 1: decode(seq[kv_pos:n] +
             drafts), its last k + 1 rows; row 0 is the prediction after the last settled token,
             so that token must be in this pass: keep kv_pos <= n - 1 (after each round roll
             back with set_kv_pos(n - 1) and feed the last settled token again).
          3. greedy: keep drafted tokens while they equal this model's argmax at their row; at
             the first difference keep this model's token instead. Sampled: new, a =
             self._accept_sampled(drafts, their q's, token_probs(rows, temperature, top_k)).
             The next round starts after the kept tokens.
        Optional: when all k agree, row k already predicted the token after them; keeping it
        (the "bonus" token) gives k + 1 tokens per round for free. Both versions earn full
        credit; the bonus shows in the speed figures.
        Never draft past the context: near block_size (or max_new_tokens) draft at most the
        tokens still missing less one, the room for this model's own token (with one token
        missing, k = 0 and the pass only predicts it), so no model ever sees a position
        >= block_size and no round adds more tokens than are missing.
        A KV cache inside the loop is optional: a version that re-runs whole sequences
        through both models (forward(..., all_logits=True)) earns full credit. Run the rounds
        inside `with autocast_for(idx.device.type):`, as generate() does.
        """
        self._check_lengths(idx, max_new_tokens)
        if idx.size(0) != 1:
            raise ValueError(f"generate_speculative supports batch size 1, got {idx.size(0)}")
        greedy = top_k == 1 or temperature == 0
        if not greedy and not sampling_written(self):
            raise NotImplementedError(
                "sampling (temperature > 0, the default) needs the optional piece GPT._accept_sampled, "
                "still the stub; pass top_k=1 for greedy speculative decoding"
            )
        # BEGIN SOLUTION speculative
        # STUB # One round (the docstring's steps), until max_new_tokens tokens are added:
        # STUB #   k = min(num_speculative, tokens still missing - 1): room for self's own token
        # STUB #   1. draft:  k times tok, q = propose(draft_logits, temperature, top_k)
        # STUB #   2. verify: the k + 1 rows of ONE pass of self (forward or decode)
        # STUB #   3. accept: greedy: the agreeing run, then self's token at the first difference;
        # STUB #      sampled: new, a = self._accept_sampled(drafted, qs, token_probs(rows, temperature, top_k))
        # STUB #   then roll back any cache past the kept tokens (set_kv_pos) and count the round
        # STUB #   in self.spec_stats
        # STUB raise NotImplementedError(
        # STUB     "TODO(speculative): loop in rounds: draft k tokens with draft_model (never past "
        # STUB     "block_size or max_new_tokens), score all k prefixes with this model in one pass, "
        # STUB     "keep the agreeing prefix plus this model's token at the first disagreement"
        # STUB )
        if max_new_tokens == 0:
            return idx
        if draft_model is self:  # both need their own cache; a copy is the simple way
            draft_model = copy.deepcopy(self)
        T = idx.size(1)
        n_total = T + max_new_tokens
        seq = torch.empty(1, n_total, dtype=idx.dtype, device=idx.device)
        seq[:, :T] = idx
        n = T  # tokens accepted so far
        stats = {"rounds": 0, "drafted": 0, "accepted": 0}

        # Invariant: each model's cache holds positions 0..kv_pos-1 of seq, and kv_pos < n, so
        # every round feeds seq[kv_pos:n] (one or two tokens) before the new ones.
        with autocast_for(idx.device.type):
            for model in (self, draft_model):
                if T > 1:
                    model.prefill(idx[:, :-1])
                else:
                    model.setup_kv_cache(1)
            while n < n_total:
                # never draft past the end: a round adds at most k + 1 tokens
                k = min(num_speculative, n_total - n - 1)
                # 1. draft k tokens, one decode each (the first call also catches up on seq)
                drafted, draft_probs = [], []
                logits = draft_model.decode(seq[:, draft_model.kv_pos : n])[:, -1]  # (1, V)
                for i in range(k):
                    tok, q = propose(logits, temperature, top_k)  # (1,), (1, V) or None
                    drafted.append(tok)
                    draft_probs.append(q)
                    if i + 1 < k:
                        logits = draft_model.decode(tok[:, None])[:, -1]
                drafted = torch.stack(drafted, dim=1) if k else seq[:, :0]  # (1, k)

                # 2-3. score every prefix with the target in one multi-token decode
                verify = torch.cat((seq[:, self.kv_pos : n], drafted), dim=1)
                logits = self.decode(verify)[0, -(k + 1) :]  # (k + 1, V)

                # 4. accept the agreeing run, then one token of the target's own
                if greedy:
                    target_tokens = logits.argmax(dim=-1)  # (k + 1,)
                    agree = (drafted[0] == target_tokens[:k]).int().cumprod(dim=0)
                    a = int(agree.sum())
                    new = torch.cat((drafted[0, :a], target_tokens[a : a + 1]))
                else:
                    p = token_probs(logits, temperature, top_k)  # (k + 1, V)
                    new, a = self._accept_sampled(drafted[0], draft_probs, p)
                seq[0, n : n + a + 1] = new
                n += a + 1
                stats["rounds"] += 1
                stats["drafted"] += k
                stats["accepted"] += a
                # roll back: entries for rejected drafts (and the last kept token) are dropped
                self.set_kv_pos(n - 1)
                draft_model.set_kv_pos(min(draft_model.kv_pos, n - 1))
        self.spec_stats = stats
        return seq
        # END SOLUTION

    @staticmethod
    def _accept_sampled(drafted, draft_probs, p):
        """OPTIONAL piece (extra credit if your staff say so): speculative SAMPLING, used by
        generate_speculative when temperature > 0 and top_k != 1. Greedy is what is required.

        Rejection sampling (Leviathan et al. 2023; Chen et al. 2023): accept drafted token x
        with probability min(1, p(x) / q(x)); at the first rejection draw the replacement from
        max(0, p - q), normalised; if all k are accepted draw one more token from p[k].
        The kept tokens are then distributed exactly as sampling from p alone.

        Args:
            drafted: (k,) the draft's tokens.
            draft_probs: list of k tensors (1, V), the draft's distribution q at each step.
            p: (k + 1, V) the target's distributions at the same positions, plus one more.
        Returns:
            (new tokens (a + 1,), a) where a is the number of drafted tokens accepted.
        """
        # BEGIN SOLUTION sampling
        # STUB # for i in range(k): x = drafted[i], q = draft_probs[i][0]; accept x when
        # STUB #     torch.rand(()) < p[i, x] / q[x]; else return (drafted[:i] + one token drawn
        # STUB #     from max(0, p[i] - q) normalised, i)
        # STUB # all k accepted: return (drafted + one token drawn from p[k], k)
        # STUB raise NotImplementedError(
        # STUB     "TODO(sampling, optional): accept each drafted token with probability "
        # STUB     "min(1, p/q); at the first rejection sample from max(0, p - q) normalised; "
        # STUB     "if all are accepted sample one more from p"
        # STUB )
        k = drafted.numel()
        for i in range(k):
            x = drafted[i]
            q = draft_probs[i][0]
            ratio = p[i, x] / q[x]
            if torch.rand((), device=p.device) >= ratio:
                residual = (p[i] - q).clamp_min(0)
                fix = torch.multinomial(residual / residual.sum(), 1)
                return torch.cat((drafted[:i], fix)), i
        extra = torch.multinomial(p[k], 1)
        return torch.cat((drafted, extra)), k
        # END SOLUTION
