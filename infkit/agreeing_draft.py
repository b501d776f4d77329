"""A draft that always agrees with the target, at the real draft's cost: the ceiling of
speculative decoding on a workload.

Speculative decoding cannot shorten the prompt's prefill, and a round still costs one verify
pass plus k draft steps however good the draft is. Running the tested generate_speculative with
this draft measures what is left once agreement is perfect, so you can tell "my draft
disagrees too often" from "this workload leaves no room".
"""

import torch


class AgreeingDraft:
    """Wraps a draft model: every call runs the real draft (same work, same cache), then its
    logits are replaced by ones whose argmax is the target's own next token, read from
    `tokens` (1, L), the target's greedy output for this prompt.

    Logits at position p predict the token at p + 1; positions come from the draft's cache
    position (decode) or from 0 (prefill, forward). Everything else is the real draft's."""

    def __init__(self, draft, tokens: torch.Tensor):
        self._draft = draft
        self._tokens = tokens.reshape(-1)
        self.calls = 0  # 0 after a run: the implementation reached past this wrapper

    def __getattr__(self, name):  # only reached for what this class does not define
        if name.startswith("_"):  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._draft, name)

    def _steer(self, logits, first_pos: int):
        """One-hot logits (B, T, V) for positions first_pos .. first_pos + T - 1."""
        self.calls += 1
        T = logits.size(1)
        pos = torch.arange(first_pos + 1, first_pos + T + 1, device=self._tokens.device)
        nxt = self._tokens[pos.clamp(max=self._tokens.numel() - 1)].to(logits.device)
        steered = torch.zeros_like(logits)
        steered[:, torch.arange(T, device=logits.device), nxt] = 1.0
        return steered

    def decode(self, idx):
        start = self._draft.kv_pos
        return self._steer(self._draft.decode(idx), start)

    def prefill(self, idx, all_logits=False):
        logits = self._draft.prefill(idx, all_logits=all_logits)
        return self._steer(logits, idx.size(1) - logits.size(1))

    def forward(self, idx, targets=None, all_logits=False):
        logits, loss = self._draft(idx, targets, all_logits=all_logits)
        return self._steer(logits, idx.size(1) - logits.size(1)), loss

    __call__ = forward
