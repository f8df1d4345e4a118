"""Losses shared by every model: token cross-entropies and the ACT Q-learning losses.

The models call these and the trainer never re-implements a loss, so the definition of "the loss"
lives in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LOSS_TYPES = ("softmax", "stablemax")
# Rows per chunk are chosen so that one chunk of widened logits takes about this many bytes: 64 MiB
# is 1024 rows of a 16384-token vocabulary in float32 (softmax), 512 in float64 (stablemax).
CHUNK_BYTES = 2**26


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: labels must be "
            "aligned with the logits, shape logits.shape[:-1] (logits[:, t] predicts labels[:, t])"
        )


def _reduce(per_token: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    per_token = torch.where(valid, per_token, torch.zeros_like(per_token))
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "mean":  # over real label tokens; 0 (not NaN) when there are none
        return per_token.sum() / valid.sum().clamp_min(1)
    raise ValueError(f"reduction={reduction!r} is not one of 'mean', 'sum', 'none'")


def _chunk_rows(vocab: int, chunk_rows: int | None, itemsize: int) -> int:
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        return chunk_rows
    return max(1, CHUNK_BYTES // (max(vocab, 1) * itemsize))


class _ChunkedTokenLoss(torch.autograd.Function):
    """Per-token cross-entropy [N] of logits [N, V], a chunk of rows at a time, forward and backward.

    The logits stay in their own dtype (bf16 under autocast); only one chunk at a time is widened to
    float32 (softmax) or float64 (stablemax). The backward recomputes each chunk's probabilities from
    the saved logits and a per-row normaliser and writes the gradient straight into a tensor of the
    logits' dtype, so neither pass keeps a wide copy of all logits (what autograd through
    `logits.float()` would save: 2-4x the logits for softmax, 8x and more for stablemax).
    """

    @staticmethod
    def forward(ctx, logits, labels, valid, kind: str, chunk_rows: int):
        rows = logits.shape[0]
        per_token = torch.zeros(rows, dtype=torch.float32, device=logits.device)
        wide = torch.float64 if kind == "stablemax" else torch.float32
        # per row: logsumexp (softmax) or the stablemax sum, all the backward needs besides logits
        normaliser = torch.empty(rows, dtype=wide, device=logits.device)
        for start in range(0, rows, chunk_rows):
            x = logits[start : start + chunk_rows].to(wide)
            y = labels[start : start + chunk_rows].unsqueeze(-1)
            if kind == "softmax":
                norm = torch.logsumexp(x, dim=-1)
                loss = norm - x.gather(-1, y).squeeze(-1)
            else:  # the stablemax sum; the loss is log(sum) - log s(x_label)
                s = _stablemax_s(x)
                norm = s.sum(-1)
                loss = norm.log() - s.gather(-1, y).squeeze(-1).log()
            normaliser[start : start + chunk_rows] = norm
            per_token[start : start + chunk_rows] = loss.float()
        per_token = per_token.masked_fill(~valid, 0.0)
        ctx.save_for_backward(logits, labels, valid, normaliser)
        ctx.kind, ctx.chunk_rows = kind, chunk_rows
        return per_token

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_token):
        logits, labels, valid, normaliser = ctx.saved_tensors
        kind, chunk_rows = ctx.kind, ctx.chunk_rows
        grad = torch.empty_like(logits)
        wide = normaliser.dtype
        scale_all = grad_per_token.to(wide) * valid
        for start in range(0, logits.shape[0], chunk_rows):
            stop = start + chunk_rows
            x = logits[start:stop].to(wide)
            y = labels[start:stop].unsqueeze(-1)
            scale = scale_all[start:stop].unsqueeze(-1)
            if kind == "softmax":  # softmax - onehot
                g = (x - normaliser[start:stop].unsqueeze(-1)).exp_()
                g.scatter_add_(-1, y, torch.full_like(y, -1, dtype=wide))
            else:  # s'(x_j) / sum(s) - [j == label] s'(x_label) / s(x_label)
                s = _stablemax_s(x)
                ds = torch.where(x < 0, s * s, torch.ones_like(s))  # d/dx of 1/(1-x) is s^2
                g = ds / normaliser[start:stop].unsqueeze(-1)
                g.scatter_add_(-1, y, -(ds.gather(-1, y) / s.gather(-1, y)))
            grad[start:stop] = (g * scale).to(grad.dtype)
        return grad, None, None, None, None


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0 (clamped so no branch divides by zero)."""
    return torch.where(x < 0, 1.0 / (1.0 - x.clamp_max(0)), x + 1.0)


def _chunked_per_token(
    kind: str, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, chunk_rows
) -> torch.Tensor:
    vocab = logits.shape[-1]
    flat = _ChunkedTokenLoss.apply(
        logits.reshape(-1, vocab),
        labels.masked_fill(~valid, 0).reshape(-1),
        valid.reshape(-1),
        kind,
        _chunk_rows(vocab, chunk_rows, 8 if kind == "stablemax" else 4),
    )
    return flat.view(labels.shape)


def softmax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    *,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of logits [..., V] (any float dtype) against labels [...], in float32.

    reduction "mean" averages over real label tokens, "none" returns per-token losses (0 where
    ignored) in float32. Computed `chunk_rows` rows at a time (default: `CHUNK_BYTES` of float32
    per chunk) so that no float32 copy of all the logits exists, forward or backward.
    """
    _check_shapes(logits, labels)
    valid = labels != ignore_index
    per_token = _chunked_per_token("softmax", logits, labels, valid, chunk_rows)
    return _reduce(per_token, valid, reduction)


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of stablemax: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, normalised over `dim`.

    Stablemax (Prieto et al., 2025, used by the HRM paper) grows linearly rather than exponentially,
    which avoids softmax collapse when logits get large.
    """
    s = _stablemax_s(logits)
    return s.log() - s.sum(dim=dim, keepdim=True).log()


def stablemax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    *,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Cross-entropy under stablemax, computed in float64 as the reference HRM does.

    Returns float32 so both losses look the same to the caller. Chunked like
    `softmax_cross_entropy`: only one chunk of rows is ever held in float64.
    """
    _check_shapes(logits, labels)
    valid = labels != ignore_index
    per_token = _chunked_per_token("stablemax", logits, labels, valid, chunk_rows)
    return _reduce(per_token, valid, reduction)


def token_cross_entropy(
    kind: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Dispatch on a config's `loss` field ("softmax" or "stablemax")."""
    if kind == "softmax":
        return softmax_cross_entropy(logits, labels, ignore_index, reduction)
    if kind == "stablemax":
        return stablemax_cross_entropy(logits, labels, ignore_index, reduction)
    raise ValueError(f"loss={kind!r} is not one of {LOSS_TYPES}")


def sequence_is_correct(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Bool [B]: the argmax prediction of every label token of the sequence is right.

    This is the Q-halt target: halting is "right" when the answer so far is exactly right.
    A sequence without label tokens counts as correct (there is nothing left to get wrong).
    """
    _check_shapes(logits, labels)
    valid = labels != ignore_index
    wrong = valid & (logits.argmax(-1) != labels)
    return ~wrong.flatten(1).any(-1)


def act_q_losses(
    q_halt_logits: torch.Tensor,
    q_continue_logits: torch.Tensor | None,
    seq_is_correct: torch.Tensor,
    target_q_continue: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The ACT Q-learning losses (binary cross-entropy with logits), averaged over weighted rows.

    - q_halt: target is whether the segment's prediction of the whole sequence is right.
    - q_continue: target is sigmoid of the next step's Q value (bootstrapped, as in the paper);
      only when `target_q_continue` is given.
    All inputs are [N] (rows = sequences, or sequence x segment pairs); `weight` (0/1 or a float
    mask, [N]) says which rows count. Returns {"q_halt_loss", "q_continue_loss"?}.
    """
    q_halt = q_halt_logits.float()
    weight = torch.ones_like(q_halt) if weight is None else weight.float()
    denominator = weight.sum().clamp_min(1)
    halt = F.binary_cross_entropy_with_logits(q_halt, seq_is_correct.float(), reduction="none")
    losses = {"q_halt_loss": (halt * weight).sum() / denominator}
    if target_q_continue is not None:
        if q_continue_logits is None:
            raise ValueError("target_q_continue was given without q_continue_logits")
        cont = F.binary_cross_entropy_with_logits(
            q_continue_logits.float(), target_q_continue.float().detach(), reduction="none"
        )
        losses["q_continue_loss"] = (cont * weight).sum() / denominator
    return losses


def q_continue_target(
    next_q_halt_logits: torch.Tensor,
    next_q_continue_logits: torch.Tensor,
    is_last_step: torch.Tensor,
) -> torch.Tensor:
    """Bootstrapped target for Q-continue: sigmoid(next q_halt) at the last step, else
    sigmoid(max(next q_halt, next q_continue)). No gradient flows into the target."""
    next_value = torch.where(
        is_last_step, next_q_halt_logits, torch.maximum(next_q_halt_logits, next_q_continue_logits)
    )
    return torch.sigmoid(next_value.float()).detach()
