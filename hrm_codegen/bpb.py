"""Bits per byte: how well a model predicts text, in a unit that does not depend on the tokenizer.

    bpb = (sum of the label tokens' negative log-likelihoods, in nats) / ln 2 / (UTF-8 bytes those
          label tokens spell)

Token counts differ between tokenizers, bytes do not, so a code-bpe run and a gpt2 run compare on
bpb where per-token losses do not. The bytes of each label token come from a per-vocabulary table:
a byte-level BPE token (GPT-2's and our code BPE) spells a fixed byte string, so summing the lengths
gives exactly the bytes of the decoded text, also at the edge of a packed window, where decoding a
split multi-byte character would print a replacement character instead. Special tokens (BOS, EOS,
PAD) spell no bytes, but their NLL still counts: predicting where a program ends is part of the job.
The NLL is the model's own loss (`config.loss`: softmax or stablemax), i.e. the code length of the
text under the distribution that model defines.

Both the trainer (`val/bpb`, `val/mbpp_bpb`) and the evaluator (`evaluate.py --metric bpb`) use this
module, which is why it sits beside `losses.py` rather than inside either of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from hrm_codegen.losses import IGNORE_INDEX, token_cross_entropy


def _byte_level_alphabet() -> dict[str, int]:
    """The byte -> printable character map of byte-level BPE (GPT-2), inverted: char -> byte.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted to code points 256
    and up, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = {b: b for b in printable}
    shift = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + shift
            shift += 1
    return {chr(code): b for b, code in chars.items()}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    parts = (backend.pre_tokenizer, backend.decoder)
    return any(part is not None and "ByteLevel" in repr(part) for part in parts)


def token_byte_lengths(tokenizer: Any) -> torch.Tensor:
    """Int64 [len(tokenizer)]: UTF-8 bytes each token id spells (0 for special tokens)."""
    size = len(tokenizer)
    lengths = torch.zeros(size, dtype=torch.int64)
    special = set(tokenizer.all_special_ids)
    added = {
        index: token.content
        for index, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
    }
    alphabet = _byte_level_alphabet() if _is_byte_level(tokenizer) else None
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    for index, token in enumerate(tokens):
        if index in special or token is None:
            continue
        if index in added:  # added tokens are stored as plain text, not byte-level characters
            lengths[index] = len(added[index].encode("utf-8"))
        elif alphabet is not None and all(char in alphabet for char in token):
            lengths[index] = len(token)
        else:
            lengths[index] = len(tokenizer.decode([index]).encode("utf-8"))
    return lengths


@dataclass
class BpbTotals:
    """Summed NLL (nats), bytes and label tokens of a text set; add totals of parts to combine."""

    nats: float = 0.0
    bytes: int = 0
    tokens: int = 0

    def __add__(self, other: BpbTotals) -> BpbTotals:
        return BpbTotals(
            self.nats + other.nats, self.bytes + other.bytes, self.tokens + other.tokens
        )

    @property
    def bpb(self) -> float:
        """Bits per byte (nan when no byte was scored)."""
        return self.nats / math.log(2) / self.bytes if self.bytes else math.nan

    @property
    def loss(self) -> float:
        """Mean NLL per label token, in nats."""
        return self.nats / self.tokens if self.tokens else math.nan


def batch_bpb_totals(
    logits: torch.Tensor, labels: torch.Tensor, byte_lengths: torch.Tensor, loss: str = "softmax"
) -> BpbTotals:
    """Totals for one batch of logits [B, S, V] against aligned labels [B, S] (-100 ignored)."""
    per_token = token_cross_entropy(loss, logits, labels, reduction="none")
    valid = labels != IGNORE_INDEX
    ids = labels[valid].to(byte_lengths.device)
    return BpbTotals(
        nats=float(per_token[valid].double().sum()),
        bytes=int(byte_lengths[ids].sum()),
        tokens=int(valid.sum()),
    )


def batch_bpb_totals_by_language(
    logits: torch.Tensor,
    labels: torch.Tensor,
    codes: torch.Tensor,
    names: Sequence[str],
    byte_lengths: torch.Tensor,
    loss: str = "softmax",
) -> dict[str, BpbTotals]:
    """Totals of each language's label tokens (`codes` [B, S]: each label's index in `names`)
    for one batch, from one cross-entropy pass: the parts sum to `batch_bpb_totals`'s."""
    per_token = token_cross_entropy(loss, logits, labels, reduction="none")
    valid = labels != IGNORE_INDEX
    codes = codes.to(labels.device)
    found = {}
    for code, name in enumerate(names):
        mask = valid & (codes == code)
        ids = labels[mask].to(byte_lengths.device)
        found[name] = BpbTotals(
            nats=float(per_token[mask].double().sum()),
            bytes=int(byte_lengths[ids].sum()),
            tokens=int(mask.sum()),
        )
    return found


def language_codes_of(dataset: Any, start: int, stop: int) -> torch.Tensor:
    """Int64 [stop - start, S]: the language code of every label of items [start, stop)."""
    return torch.stack(
        [torch.as_tensor(dataset.label_language_codes(i)) for i in range(start, stop)]
    ).long()


@torch.no_grad()
def dataset_bpb(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    byte_lengths: torch.Tensor,
    *,
    device: torch.device | str | None = None,
    autocast: Callable[[], AbstractContextManager] | None = None,
    keep_mask: bool | None = None,
) -> BpbTotals:
    """Totals of `model` over collated batches ({"input_ids", "labels", "attention_mask"?}).

    Right-padded batches under causal attention need no mask for the logits of real tokens, so the
    mask is dropped (fused attention) unless the model reads it (the HRM's Q head) or `keep_mask`.
    """
    device = device or next(model.parameters()).device
    if keep_mask is None:
        keep_mask = getattr(model, "q_head", None) is not None
    loss = getattr(model.config, "loss", "softmax")
    totals = BpbTotals()
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            inputs = {"input_ids": batch["input_ids"].to(device)}
            if keep_mask and "attention_mask" in batch:
                inputs["attention_mask"] = batch["attention_mask"].to(device)
            if "token_type_ids" in batch:  # PrefixLM batches: the prompt is read bidirectionally
                inputs["token_type_ids"] = batch["token_type_ids"].to(device)
            with autocast() if autocast is not None else nullcontext():
                logits = model(**inputs).logits
            totals = totals + batch_bpb_totals(
                logits, batch["labels"].to(device), byte_lengths, loss
            )
    finally:
        model.train(was_training)
    return totals


def batched(
    dataset: Sequence[dict[str, torch.Tensor]],
    collate: Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]],
    batch_size: int,
    max_batches: int | None = None,
) -> Iterable[dict[str, torch.Tensor]]:
    """The first `max_batches` batches of `dataset` in order (all when None): the same items every
    time, so every model and every evaluation of a run is scored on the same text."""
    starts = list(range(0, len(dataset), batch_size))
    if max_batches is not None:
        starts = starts[: int(max_batches)]
    for start in starts:
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


__all__ = [
    "BpbTotals",
    "batch_bpb_totals",
    "batch_bpb_totals_by_language",
    "batched",
    "dataset_bpb",
    "language_codes_of",
    "token_byte_lengths",
]
