"""Speculative decoding: a small draft model proposes tokens, the target verifies them at once.

Greedy only, one prompt at a time. Each round the draft decodes `k` tokens one by one on its own
KV cache; the target then runs the last accepted token and the `k` proposals in one cached
forward and reads its own greedy choice at each of the `k + 1` positions. The proposals are
accepted up to the first one that differs from the target's choice, and the target's choice at
that position (or after the last proposal, when all agree) is emitted too. Every emitted token is
therefore the target's argmax given the tokens before it, so the output is the target's greedy
decoding token for token (up to floating-point differences between a one-token and a
`k + 1`-token forward); the draft only changes how many target forwards it takes.

Rejected positions are rolled back by moving the cache's `seq_len` back: `KVCache` writes the
next forward at `seq_len` and reads only the positions before it, so what a rejected token
left behind is never read and is overwritten later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hrm_codegen.model.kv_cache import KVCache


@dataclass
class SpeculativeDraft:
    """The draft model, how many tokens it proposes per round (`tokens`), and what happened
    over every prompt decoded with it (the counters add up across calls)."""

    model: Any
    tokens: int = 4
    proposed: int = 0  # draft tokens offered to the target
    accepted: int = 0  # of those, the ones the target agreed with
    target_forwards: int = 0  # verification forwards (prefills not counted)
    generated: int = 0  # tokens emitted after the prefill's first one

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"the draft proposes at least 1 token per round, got {self.tokens}")

    @property
    def acceptance_rate(self) -> float:
        """Accepted / proposed draft tokens (0 before any proposal)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        """Tokens emitted per verification forward: 1 is plain decoding, k + 1 the most."""
        return self.generated / self.target_forwards if self.target_forwards else 0.0

    def summary(self) -> str:
        """One line for a log: acceptance and tokens per target forward."""
        return (
            f"speculative decoding: {self.accepted}/{self.proposed} draft tokens accepted "
            f"({self.acceptance_rate:.0%}), {self.tokens_per_target_forward:.2f} tokens per "
            f"target forward (k={self.tokens})"
        )


def check_draft(target: Any, draft: Any) -> None:
    """Refuse a draft that cannot propose for `target`: another vocabulary (the same tokenizer is
    needed: token ids are compared), or a model without our KV cache (rollback needs it)."""
    target_vocab = getattr(target.config, "vocab_size", None)
    draft_vocab = getattr(draft.config, "vocab_size", None)
    if target_vocab != draft_vocab:
        raise ValueError(
            f"the draft model's vocabulary ({draft_vocab} tokens) differs from the target's "
            f"({target_vocab}); a draft needs the target's tokenizer"
        )
    for role, model in (("target", target), ("draft", draft)):
        if not hasattr(model, "allocate_cache"):
            raise ValueError(f"speculative decoding needs a KV cache; the {role} model has none")


def _cached_logits(model: Any, tokens: list[int], cache: KVCache, keep: int) -> torch.Tensor:
    """Float32 logits [keep, V] of the last `keep` of `tokens`, fed after what `cache` holds."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokens], dtype=torch.long, device=device)
    logits = model(ids, cache=cache, logits_to_keep=keep).logits[0, -keep:].float()
    if torch.isnan(logits).any():
        raise RuntimeError("the model returned NaN logits during speculative decoding")
    return logits


def _allocate(model: Any, prompt: list[int], max_len: int, role: str) -> KVCache:
    """A one-row cache for `prompt` plus the new tokens, after the model's ACT decision."""
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_seq_len", None)
    if limit is not None and max_len > limit:
        raise ValueError(
            f"the {role} model's max_seq_len={limit} is shorter than the prompt plus new tokens "
            f"({max_len}); use a {role} model with a longer context or fewer new tokens"
        )
    if hasattr(model, "prepare_for_decoding"):
        model.prepare_for_decoding(torch.tensor([prompt], device=device))
    cache = model.allocate_cache(1, max_len, device=device)
    if not isinstance(cache, KVCache):
        raise ValueError(
            f"speculative decoding rolls rejected tokens back in our KVCache; the {role} model's "
            f"cache is a {type(cache).__name__}"
        )
    return cache


@torch.inference_mode()
def speculative_decode(
    target: Any,
    draft: SpeculativeDraft,
    prompt: list[int],
    *,
    max_new_tokens: int,
    eos_token_id: int | None = None,
    should_stop: Callable[[list[int]], bool] | None = None,
    on_token: Callable[[int], None] | None = None,
) -> list[int]:
    """The target's greedy continuation of `prompt` (EOS excluded), proposed by `draft`.

    Ends at EOS, after `max_new_tokens`, or when `should_stop(tokens so far)` says so (stop
    strings); `on_token(token)` sees every token kept, as it is chosen. `draft`'s counters are
    updated. Both models are put in eval mode for the call and restored after.
    """
    check_draft(target, draft.model)
    models = (target, draft.model)
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    sequence = list(prompt)
    out: list[int] = []

    def emit(token: int) -> bool:
        """Keep `token`; True when decoding is over."""
        if token == eos_token_id:
            return True
        out.append(token)
        sequence.append(token)
        if on_token is not None:
            on_token(token)
        return len(out) >= max_new_tokens or (should_stop is not None and should_stop(out))

    try:
        max_len = len(prompt) + max_new_tokens
        target_cache = _allocate(target, prompt, max_len, "target")
        draft_cache = _allocate(draft.model, prompt, max_len, "draft")
        first = int(_cached_logits(target, prompt, target_cache, 1)[-1].argmax())
        done = emit(first)
        while not done:
            # the target's cache holds sequence[:-1]; the draft's a prefix of sequence
            k = min(draft.tokens, max_new_tokens - len(out) - 1)
            proposals: list[int] = []
            if k > 0:
                unseen = sequence[draft_cache.seq_len :]
                logits = _cached_logits(draft.model, unseen, draft_cache, 1)
                proposals.append(int(logits[-1].argmax()))
                while len(proposals) < k:
                    logits = _cached_logits(draft.model, proposals[-1:], draft_cache, 1)
                    proposals.append(int(logits[-1].argmax()))
            choices = (
                _cached_logits(target, [sequence[-1], *proposals], target_cache, k + 1)
                .argmax(-1)
                .tolist()
            )
            agreed = 0
            while agreed < k and proposals[agreed] == choices[agreed]:
                agreed += 1
            valid = len(sequence) + agreed  # positions both caches may keep
            target_cache.seq_len = valid
            draft_cache.seq_len = min(draft_cache.seq_len, valid)
            draft.proposed += k
            draft.accepted += agreed
            draft.target_forwards += 1
            for token in [*proposals[:agreed], choices[agreed]]:
                draft.generated += 1
                done = emit(token)
                if done:
                    break
    finally:
        for model, mode in zip(models, modes):
            if hasattr(model, "end_decoding"):
                model.end_decoding()
            model.train(mode)
    return out


__all__ = ["SpeculativeDraft", "check_draft", "speculative_decode"]
