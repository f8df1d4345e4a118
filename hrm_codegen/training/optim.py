"""AdamW with decoupled weight decay, and the learning-rate schedule: linear warm-up, then cosine."""

from __future__ import annotations

import math
from typing import Any

import torch


def build_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW that decays matrices (linear weights, embeddings) but not vectors (biases, gains).

    Decay pulls weights towards zero; on a bias or a norm gain that is a bias towards a dead unit,
    so the usual practice (GPT-2, nanoGPT, the HRM reference) exempts them.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    on_cuda = all(p.is_cuda for p in decay + no_decay) and bool(decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=on_cuda or None)


def optimizer_from_config(model: torch.nn.Module, train_cfg: Any) -> torch.optim.AdamW:
    """`build_optimizer` with the `train` config group's lr, weight_decay, beta1, beta2 and eps:
    one reading of those fields for every loop that trains (SFT/pretraining, GSPO)."""
    return build_optimizer(
        model,
        lr=float(train_cfg.lr),
        weight_decay=float(train_cfg.weight_decay),
        betas=(float(train_cfg.beta1), float(train_cfg.beta2)),
        eps=float(train_cfg.eps),
    )


def lr_at_step(
    step: int, *, base_lr: float, warmup_steps: int, max_steps: int, min_ratio: float
) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warm-up, then cosine to min_ratio.

    A pure function of the step, so resuming needs no scheduler state and the schedule cannot drift.
    Warm-up reaches `base_lr` on its last step; the cosine then falls to `base_lr * min_ratio` at
    `max_steps` and stays there if training runs longer.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (min_ratio + (1.0 - min_ratio) * cosine)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
