"""The GSPO objective as pure tensor functions (Zheng et al. 2025, arXiv:2507.18071).

Group Sequence Policy Optimization samples G completions per prompt, scores each with a reward,
and normalises rewards within the group: A_i = (r_i - mean(r)) / std(r). Unlike GRPO, which clips a
ratio per token, GSPO clips one ratio per *sequence*, the length-normalised likelihood ratio

    s_i = exp( mean_t [ log pi_theta(y_i,t | x, y_i,<t) - log pi_old(y_i,t | x, y_i,<t) ] ),

and maximises mean_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i). Its gradient is
s_i A_i mean_t grad log pi_theta(y_i,t), so every token of a sequence gets the same weight; the
paper's clipping range is tiny (3e-4 / 4e-4) because s_i is a geometric mean over tokens.

Everything here works on padded [N, L] tensors of per-token log-probabilities with a 0/1 mask over
completion tokens, so it is tested on hand-made numbers and shared by the loop and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(r - group mean) / group std for rewards [num_groups, group_size]; 0 where the std is 0.

    The std is the population std (over the G samples themselves). A group whose samples all got
    the same reward carries no information about which is better, so its advantages are exactly
    0 (not 0/eps noise) and it contributes no gradient.
    """
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}"
        )
    rewards = rewards.double()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, correction=0)
    flat = std <= eps
    advantages = torch.where(flat, torch.zeros_like(centred), centred / std.clamp_min(eps))
    return advantages.float()


def groups_with_signal(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Bool [num_groups]: groups whose rewards differ (the only ones that teach anything)."""
    return rewards.double().std(dim=1, correction=0) > eps


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean of `values` where `mask` is 1, along `dim` (a row with no mask is 0)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def sequence_log_ratio(
    logp_new: torch.Tensor, logp_old: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log s_i = mean over completion tokens of (log pi_new - log pi_old), shape [N]."""
    return masked_mean(logp_new - logp_old, mask)


def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence KL(pi || pi_ref) estimate [N] (Schulman's k3: exp(d) - d - 1, d = ref - new).

    Unbiased and always >= 0 on samples from pi; the token mean per sequence, as the ratio.
    """
    delta = logp_ref - logp
    return masked_mean(torch.exp(delta) - delta - 1.0, mask)


@dataclass
class ObjectiveOutput:
    """The loss to minimise, and per-sequence diagnostics (detached) to log."""

    loss: torch.Tensor  # scalar, mean over sequences
    ratio: torch.Tensor  # [N] s_i (GSPO) or token-mean ratio (GRPO), detached
    clipped: (
        torch.Tensor
    )  # [N] bool (GSPO) / float token fraction (GRPO): clipping removed the gradient
    kl: torch.Tensor  # [N] k3 KL to the reference (zeros without one), detached


def gspo_objective(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    logp_ref: torch.Tensor | None = None,
    beta: float = 0.0,
    normalizer: float | None = None,
) -> ObjectiveOutput:
    """GSPO loss: -sum_i min(s_i A_i, clip(s_i) A_i) / normalizer, + beta * KL to the reference.

    `logp_*` [N, L] per-token log-probs of the sampled completions (`logp_old`, `logp_ref` without
    gradient), `advantages` [N], `mask` [N, L] 1 on completion tokens. `normalizer` is the number
    of sequences the mean runs over (default N); data-parallel callers pass the global count so
    that summing gradients over ranks gives the global mean. `clipped` marks sequences whose
    clipped term is the smaller one, i.e. whose gradient the clip removed: A > 0 and s > 1 +
    eps_high, or A < 0 and s < 1 - eps_low.
    """
    _check_shapes(logp_new, logp_old, advantages, mask)
    log_ratio = sequence_log_ratio(logp_new, logp_old.detach(), mask)
    ratio = torch.exp(log_ratio)
    advantages = advantages.to(ratio.dtype).detach()
    unclipped = ratio * advantages
    clipped_term = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    per_sequence = torch.minimum(unclipped, clipped_term)
    clipped = ((advantages > 0) & (ratio > 1.0 + eps_high)) | (
        (advantages < 0) & (ratio < 1.0 - eps_low)
    )
    count = float(normalizer if normalizer is not None else logp_new.shape[0])
    loss = -per_sequence.sum() / count
    kl = torch.zeros_like(ratio)
    if logp_ref is not None and beta > 0:
        kl = k3_kl(logp_new, logp_ref.detach(), mask)
        loss = loss + beta * kl.sum() / count
    return ObjectiveOutput(loss, ratio.detach(), clipped.detach(), kl.detach())


def grpo_objective(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps: float = 0.2,
    normalizer: float | None = None,
) -> ObjectiveOutput:
    """GRPO with the sequence-mean loss: per-token ratios clipped to [1 - eps, 1 + eps], averaged
    over each sequence's tokens, then over sequences. The reference GSPO is compared with: on
    policy (pi_old = pi_theta) both gradients are mean_i A_i mean_t grad log pi_theta."""
    _check_shapes(logp_new, logp_old, advantages, mask)
    ratio = torch.exp(logp_new - logp_old.detach())
    adv = advantages.to(ratio.dtype).detach().unsqueeze(-1)
    per_token = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv)
    count = float(normalizer if normalizer is not None else logp_new.shape[0])
    loss = -masked_mean(per_token, mask).sum() / count
    token_clipped = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    return ObjectiveOutput(
        loss,
        masked_mean(ratio, mask).detach(),
        masked_mean(token_clipped.float(), mask).detach(),
        torch.zeros(logp_new.shape[0]),
    )


def _check_shapes(logp_new, logp_old, advantages, mask) -> None:
    if logp_new.ndim != 2 or logp_new.shape != logp_old.shape or logp_new.shape != mask.shape:
        raise ValueError(
            "logp_new, logp_old and mask must all be [N, L]; got "
            f"{tuple(logp_new.shape)}, {tuple(logp_old.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != (logp_new.shape[0],):
        raise ValueError(
            f"advantages must be [N]={logp_new.shape[0]}, got {tuple(advantages.shape)}"
        )


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0):
    """log softmax(logits / temperature) at `targets`: [B, S, V] x [B, S] -> [B, S] (float32).

    The temperature the completions were sampled at defines the policy whose ratio GSPO takes.
    """
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
