"""Losses shared by every model: token cross-entropies and the ACT Q-learning losses.

The models call these and the trainer never re-implements a loss, so the definition of "the loss"
lives in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LOSS_TYPES = ("softmax", "stablemax")


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


def softmax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy on float32 logits [..., V] against labels [...]; `ignore_index` is skipped.

    reduction "mean" averages over real label tokens, "none" returns per-token losses (0 where
    ignored) in float32.
    """
    _check_shapes(logits, labels)
    valid = labels != ignore_index
    per_token = F.cross_entropy(
        logits.float().flatten(0, -2),
        labels.masked_fill(~valid, 0).flatten(),
        reduction="none",
    ).view(labels.shape)
    return _reduce(per_token, valid, reduction)


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of stablemax: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, normalised over `dim`.

    Stablemax (Prieto et al., 2025, used by the HRM paper) grows linearly rather than exponentially,
    which avoids softmax collapse when logits get large.
    """
    # clamp so the unused branch never divides by zero (NaN gradients through torch.where)
    s = torch.where(logits < 0, 1.0 / (1.0 - logits.clamp_max(0)), logits + 1.0)
    return s.log() - s.sum(dim=dim, keepdim=True).log()


def stablemax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy under stablemax, computed in float64 as the reference HRM does.

    Returns float32 so both losses look the same to the caller.
    """
    _check_shapes(logits, labels)
    valid = labels != ignore_index
    log_probs = log_stablemax(logits.double(), dim=-1)
    safe_labels = labels.masked_fill(~valid, 0).unsqueeze(-1)
    per_token = -log_probs.gather(-1, safe_labels).squeeze(-1).float()
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
