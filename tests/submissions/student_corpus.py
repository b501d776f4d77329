"""A self-test corpus of realistic student submissions, each with the verdict it deserves.

Every entry replaces one or more marked regions of solution/model.py (`# BEGIN SOLUTION
<piece>`) with code written the way students write it: their own names, loops, torch.cat
and torch.empty, comments and small inefficiencies. Each body is exactly greedy-correct
except for the one mistake the entry is named after (or none, for the entries that follow
the handout in a way the grader once failed). Regions an entry does not replace keep the
solution's code.

EXPECTED says which behaviours (autograder/rubric.py POINTS, public and hidden rows alike) a
careful TA takes points for: one mistake costs the rows of the behaviour it breaks (plus the
speed row where the mistake makes it slow or wrong), and nothing else. `expected_points(name)`
turns that into the points of every row of the rubric.

    python -m tests.submissions.student_corpus NAME > model.py     # write one entry out
"""

import sys
from dataclasses import dataclass

from autograder import rubric

from . import variants


@dataclass(frozen=True)
class Variant:
    mistake: str  # what the student did, in words
    regions: dict  # piece -> the code that replaces that marked region of the solution


# ---------------------------------------------------------------------------------------
# KV cache bodies (indented as the regions they replace: 8 spaces, prefill 12)

BUFFERS_TORCH_EMPTY = """\
        # allocate once; every slot is written by prefill/decode before anything reads it,
        # so there is no point in zeroing it
        nh = self.n_head
        hs = self.n_embd // nh
        weight = self.c_attn.weight
        cache = torch.empty(2, batch_size, nh, max_seq_len, hs, dtype=weight.dtype, device=weight.device)
        self.register_buffer("kv_cache", cache, persistent=False)
        self.seq_pos = 0
"""

PREFILL_VIEWS = """\
            # remember the prompt's keys/values so decode() can continue from here
            cache_k, cache_v = self.kv_cache[0], self.kv_cache[1]
            cache_k[:B, :, 0:T, :] = k
            cache_v[:B, :, 0:T, :] = v
            self.seq_pos = T
"""

ATTN_DECODE_WITH_ATTEND = """\
        B, T, C = x.shape
        hs = C // self.n_head
        qkv = self.c_attn(x)
        q, k, v = qkv.split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        old = self.seq_pos
        new_len = old + T
        if new_len > self.kv_cache.shape[3]:
            raise ValueError(f"kv cache full ({self.kv_cache.shape[3]} positions)")
        # new keys/values go right after the cached ones
        self.kv_cache[0, :B, :, old:new_len, :] = k
        self.kv_cache[1, :B, :, old:new_len, :] = v
        self.seq_pos = new_len
        all_k = self.kv_cache[0, :B, :, :new_len, :]
        all_v = self.kv_cache[1, :B, :, :new_len, :]
        # the queries sit at positions old..new_len-1, attend() shifts the causal mask for that
        y = attend(q, all_k, all_v, q_start=old)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
"""

GENERATE_KV_CAT = """\
        out = idx
        logits = self.prefill(idx)
        for step in range(max_new_tokens):
            nxt = sample_next(logits[:, -1, :], temperature, top_k)
            out = torch.cat([out, nxt.unsqueeze(1)], dim=1)
            if step < max_new_tokens - 1:  # no need to run the model for the last token
                logits = self.decode(nxt.unsqueeze(1))
        return out
"""

BUFFERS_BFLOAT16 = """\
        # bf16 halves the memory of the cache (the course scaffold had this line)
        head_size = self.n_embd // self.n_head
        kv = torch.zeros(
            2,
            batch_size,
            self.n_head,
            max_seq_len,
            head_size,
            dtype=torch.bfloat16,
            device=self.c_attn.weight.device,
        )
        self.register_buffer("kv_cache", kv, persistent=False)
        self.seq_pos = 0
"""

PREFILL_INDEXED = """\
            self.kv_cache[0][:B, :, :T] = k
            self.kv_cache[1][:B, :, :T] = v
            self.seq_pos = T
"""

# Explicit attention with its own mask; it never casts, so it needs a cache in q's dtype.
ATTN_DECODE_EXPLICIT = """\
        B, T, C = x.size()
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        p = self.seq_pos
        self.kv_cache[0, :B, :, p : p + T] = k
        self.kv_cache[1, :B, :, p : p + T] = v
        self.seq_pos = p + T
        keys = self.kv_cache[0, :B, :, : p + T]
        vals = self.kv_cache[1, :B, :, : p + T]
        scores = q @ keys.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, p + T)
        # new token i is at position p + i: it may not look at the new tokens after it
        causal = torch.tril(torch.ones(T, p + T, dtype=torch.bool, device=x.device), diagonal=p)
        scores = scores.masked_fill(~causal, float("-inf"))
        y = F.softmax(scores, dim=-1) @ vals
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
"""

ATTN_DECODE_ONE_TOKEN = """\
        # decode the next token: x is (B, 1, C)
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        pos = self.seq_pos
        self.kv_cache[0, :B, :, pos : pos + T] = k
        self.kv_cache[1, :B, :, pos : pos + T] = v
        self.seq_pos += T
        K = self.kv_cache[0, :B, :, : self.seq_pos]
        V = self.kv_cache[1, :B, :, : self.seq_pos]
        # the newest token may look at everything in the cache, so no mask is needed
        att = (q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = F.softmax(att, dim=-1)
        y = att @ V
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
"""

ATTN_DECODE_IS_CAUSAL_SDPA = """\
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)
        k = k.view(B, T, self.n_head, -1).transpose(1, 2)
        v = v.view(B, T, self.n_head, -1).transpose(1, 2)
        start = self.seq_pos
        end = start + T
        self.kv_cache[0, :B, :, start:end] = k
        self.kv_cache[1, :B, :, start:end] = v
        self.seq_pos = end
        keys = self.kv_cache[0, :B, :, :end]
        values = self.kv_cache[1, :B, :, :end]
        if DEBUG:
            # slow exact path for checking against forward()
            y = attend(q, keys, values, q_start=start)
        else:
            # fast path: fused attention kernel, causal like in forward()
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
"""

BUFFERS_CUDA = """\
        hd = self.n_embd // self.n_head
        # keep the cache on the GPU where the model runs
        self.register_buffer(
            "kv_cache",
            torch.zeros((2, batch_size, self.n_head, max_seq_len, hd), device="cuda"),
            persistent=False,
        )
        self.seq_pos = 0
"""

# ---------------------------------------------------------------------------------------
# Speculative decoding bodies (the region after the length and batch checks)

# Handout steps 1-4 literally: no bonus token. Both models keep every token but the newest in
# their cache, so a round feeds the newest token and the guesses.
# The prefill's token first, then one decode per further token: generate_kv(idx, 0) returns
# one token too many; every other length is right.
GENERATE_KV_ONE_SHORT = """\
        logits = self.prefill(idx)
        tok = sample_next(logits[:, -1, :], temperature, top_k).unsqueeze(1)
        out = torch.cat((idx, tok), dim=1)
        for _ in range(max_new_tokens - 1):
            logits = self.decode(tok)
            tok = sample_next(logits[:, -1, :], temperature, top_k).unsqueeze(1)
            out = torch.cat((out, tok), dim=1)
        return out
"""

# float32 always: right for every float32 model, wrong for any other dtype
BUFFERS_FLOAT32 = """\
        hs = self.n_embd // self.n_head
        shape = (2, batch_size, self.n_head, max_seq_len, hs)
        self.register_buffer(
            "kv_cache", torch.zeros(shape, dtype=torch.float32, device=self.c_attn.weight.device), persistent=False
        )
        self.seq_pos = 0
"""

SPECULATIVE_NO_BONUS = """\
        if draft_model is self:
            draft_model = copy.deepcopy(self)
        total_len = idx.size(1) + max_new_tokens
        tokens = idx
        # both caches hold every token except the newest one, which the next round feeds
        for m in (self, draft_model):
            m.prefill(tokens)
            m.set_kv_pos(tokens.size(1) - 1)
        while tokens.size(1) < total_len:
            n = tokens.size(1)
            k = min(num_speculative, total_len - n)
            # 1. the draft guesses k tokens, one decode step each
            guesses = []
            cur = tokens[:, -1:]
            for _ in range(k):
                logits = draft_model.decode(cur)
                cur = logits[:, -1, :].argmax(dim=-1, keepdim=True)
                guesses.append(cur)
            guesses = torch.cat(guesses, dim=1)  # (1, k)
            # 2-3. the target checks all k guesses in one pass: it reads the newest token and
            # the first k-1 guesses, so its row i is its own choice for guess i
            target_in = torch.cat([tokens[:, -1:], guesses[:, :-1]], dim=1)
            target_choice = self.decode(target_in).argmax(dim=-1)  # (1, k)
            # 4. keep guesses while they agree; at the first disagreement take the target's token
            n_match = 0
            while n_match < k and guesses[0, n_match].item() == target_choice[0, n_match].item():
                n_match += 1
            if n_match == k:
                accepted = guesses
            else:
                accepted = torch.cat([guesses[:, :n_match], target_choice[:, n_match : n_match + 1]], dim=1)
            tokens = torch.cat([tokens, accepted], dim=1)
            # forget what the caches saw of rejected guesses
            self.set_kv_pos(tokens.size(1) - 1)
            draft_model.set_kv_pos(tokens.size(1) - 1)
        return tokens
"""

# Drafts with the draft's own generate_kv (a fresh prefill every round), verifies with the
# target's cache, takes the bonus token.
SPECULATIVE_DRAFT_GENERATE_KV = """\
        if draft_model is self:
            draft_model = copy.deepcopy(self)
        goal = idx.size(1) + max_new_tokens
        out = idx.clone()
        # the target's cache holds all of `out` but its last token
        self.prefill(out)
        self.set_kv_pos(out.size(1) - 1)
        while out.shape[1] < goal:
            L = out.shape[1]
            k = min(num_speculative, goal - L - 1)  # leave room for the target's own token
            if k > 0:
                proposal = draft_model.generate_kv(out, k, top_k=1)[:, L:]  # (1, k)
            else:
                proposal = out[:, :0]
            logits = self.decode(torch.cat((out[:, -1:], proposal), dim=1))  # (1, k + 1, V)
            best = logits.argmax(-1)[0]  # best[i]: the target's token after out + proposal[:i]
            good = 0
            for i in range(k):
                if proposal[0, i] != best[i]:
                    break
                good += 1
            out = torch.cat((out, proposal[:, :good], best[good : good + 1].view(1, 1)), dim=1)
            self.set_kv_pos(out.shape[1] - 1)
        return out
"""

# No cache at all, handout steps without the bonus token.
SPECULATIVE_CACHELESS = """\
        seq = idx
        target_len = idx.size(1) + max_new_tokens
        while seq.size(1) < target_len:
            n_draft = min(num_speculative, target_len - seq.size(1))
            # draft: plain greedy loop on the small model, no cache (it is cheap anyway)
            draft_seq = seq
            for _ in range(n_draft):
                draft_logits, _ = draft_model(draft_seq)
                next_tok = torch.argmax(draft_logits[:, -1, :], dim=-1, keepdim=True)
                draft_seq = torch.cat((draft_seq, next_tok), dim=1)
            # verify: one target pass over everything; position j predicts token j + 1
            all_logits, _ = self(draft_seq[:, :-1], all_logits=True)
            start = seq.size(1)
            target_picks = torch.argmax(all_logits[0, start - 1 :, :], dim=-1)  # (n_draft,)
            drafted = draft_seq[0, start:]
            keep = []
            for j in range(n_draft):
                if drafted[j] == target_picks[j]:
                    keep.append(drafted[j])
                else:
                    keep.append(target_picks[j])  # the target's correction ends the round
                    break
            seq = torch.cat((seq, torch.stack(keep).view(1, -1)), dim=1)
        return seq
"""

# Always drafts num_speculative tokens and cuts the output at the end: fine in the middle of
# the context, past block_size near its end.
SPECULATIVE_UNCLIPPED = """\
        if draft_model is self:
            draft_model = copy.deepcopy(self)
        T0 = idx.size(1)
        seq = idx
        for m in (self, draft_model):
            m.prefill(seq)
            m.set_kv_pos(T0 - 1)  # the newest token is fed again by the first round
        while seq.size(1) < T0 + max_new_tokens:
            # draft num_speculative tokens with the small model (catching up first)
            logits = draft_model.decode(seq[:, draft_model.kv_pos :])[:, -1]
            drafts = []
            for i in range(num_speculative):
                cand = logits.argmax(-1, keepdim=True)  # (1, 1)
                drafts.append(cand)
                if i < num_speculative - 1:
                    logits = draft_model.decode(cand)[:, -1]
            drafts = torch.cat(drafts, dim=1)
            # verify all of them (and get the bonus token) with one target call
            preds = self.decode(torch.cat([seq[:, -1:], drafts], dim=1)).argmax(-1)  # (1, k + 1)
            ok = int((drafts == preds[:, :-1]).long().cumprod(dim=1).sum())
            seq = torch.cat([seq, drafts[:, :ok], preds[:, ok : ok + 1]], dim=1)
            self.set_kv_pos(seq.size(1) - 1)
            draft_model.set_kv_pos(min(draft_model.kv_pos, seq.size(1) - 1))
        # the last round may overshoot; cut back to the requested length
        return seq[:, : T0 + max_new_tokens]
"""

# ---------------------------------------------------------------------------------------

CORPUS = {
    "cache_torch_empty": Variant(
        "allocates the cache with torch.empty (right shape, dtype, device)",
        {
            "buffers": BUFFERS_TORCH_EMPTY,
            "prefill": PREFILL_VIEWS,
            "attn_decode": ATTN_DECODE_WITH_ATTEND,
            "generate_kv": GENERATE_KV_CAT,
        },
    ),
    "cache_bfloat16": Variant(
        "allocates the cache in bfloat16 (the original scaffold's line); decode never casts",
        {"buffers": BUFFERS_BFLOAT16, "prefill": PREFILL_INDEXED, "attn_decode": ATTN_DECODE_EXPLICIT},
    ),
    "decode_one_token_only": Variant(
        "attention decode written for one new token: no causal mask among several new tokens",
        {"attn_decode": ATTN_DECODE_ONE_TOKEN},
    ),
    "speculative_no_bonus": Variant(
        "greedy speculative decoding as the handout's steps say, without the bonus token",
        {"speculative": SPECULATIVE_NO_BONUS},
    ),
    "speculative_draft_generate_kv": Variant(
        "drafts with draft_model.generate_kv every round (re-prefilling the draft)",
        {"speculative": SPECULATIVE_DRAFT_GENERATE_KV},
    ),
    "speculative_cacheless": Variant(
        "speculative decoding with no KV cache: whole-sequence forwards of both models",
        {"speculative": SPECULATIVE_CACHELESS},
    ),
    "decode_is_causal_sdpa": Variant(
        "exact attention in DEBUG, scaled_dot_product_attention(is_causal=True) over the cache outside it",
        {"attn_decode": ATTN_DECODE_IS_CAUSAL_SDPA},
    ),
    "hardcoded_cuda": Variant(
        "allocates the cache on device='cuda' (hard-coded)",
        {"buffers": BUFFERS_CUDA, "prefill": PREFILL_INDEXED, "attn_decode": ATTN_DECODE_WITH_ATTEND},
    ),
    "draft_past_block_size": Variant(
        "always drafts num_speculative tokens, so near the end of the context it runs past block_size",
        {"speculative": SPECULATIVE_UNCLIPPED},
    ),
    "generate_kv_one_short": Variant(
        "emits the prefill's token, then loops max_new_tokens - 1 times (0 new tokens gives one)",
        {"generate_kv": GENERATE_KV_ONE_SHORT},
    ),
    "cache_hardcoded_float32": Variant(
        "allocates the cache in torch.float32 whatever the weights' dtype",
        {"buffers": BUFFERS_FLOAT32},
    ),
}

# What can fail: a piece's behaviour (piece, behaviour), or a whole piece's rows (a speed test,
# an optional piece, or every behaviour of a piece).
ROWS = tuple(dict.fromkeys(t.piece for t in rubric.TESTS))
CORRECTNESS = tuple(dict.fromkeys(t.piece for t in rubric.TESTS if t.kind == "check"))
# a speculative decoder written for greedy only ignores temperature: the optional sampling row
# (0 points unless staff change it) cannot pass
GREEDY_ONLY = ("sampling",)

EXPECTED = {
    "cache_torch_empty": (),
    # the optional sampling row runs the solution's speculative code, which allocates through
    # init_kv_cache, on the student's cache: it fails (0 points either way)
    "cache_bfloat16": (("buffers", "dtype"), "sampling"),
    # the missing mask shows in chunks only, in DEBUG and outside it alike (charged once, to the
    # chunk rows); speculative is graded on the grader's stand-in decode, and spec_speed times the
    # student's own decode, whose mask bug breaks the output there (the same attn_decode failure
    # is seen again on the speed fixture, so the gated speculative rows keep their points)
    "decode_one_token_only": (("attn_decode", "chunk"), "spec_speed", "sampling"),
    "speculative_no_bonus": GREEDY_ONLY,
    "speculative_draft_generate_kv": GREEDY_ONLY,
    "speculative_cacheless": GREEDY_ONLY,
    "decode_is_causal_sdpa": (("attn_decode", "fast_path"),),
    # init_kv_cache raises on a machine without CUDA: no behaviour of buffers can be seen
    "hardcoded_cuda": ("buffers", "sampling"),
    "draft_past_block_size": (("speculative", "block_size"), *GREEDY_ONLY),
    "generate_kv_one_short": (("generate_kv", "edge_lengths"),),
    "cache_hardcoded_float32": (("buffers", "dtype"),),
}

assert set(EXPECTED) == set(CORPUS)


def fails(name: str, test: rubric.Test) -> bool:
    """Whether a careful TA takes the points of `test` from the corpus entry `name`."""
    return any(f == test.piece or f == (test.piece, test.behaviour) for f in EXPECTED[name])


def build(name: str) -> str:
    """The full model.py text of a corpus entry."""
    text = variants.solution_text()
    for piece, body in CORPUS[name].regions.items():
        text = variants.replace_region(text, piece, body)
    return text


def expected_points(name: str) -> dict:
    """{rubric test name: points the entry must get}, from rubric.TESTS and EXPECTED."""
    return {t.name: (0.0 if fails(name, t) else t.points) for t in rubric.TESTS}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CORPUS:
        sys.exit(f"usage: python -m tests.submissions.student_corpus NAME   (one of: {', '.join(CORPUS)})")
    sys.stdout.write(build(sys.argv[1]))
