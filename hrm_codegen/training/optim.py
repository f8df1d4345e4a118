"""AdamW with decoupled weight decay, and the learning-rate schedule: linear warm-up, then cosine
or warmup-stable-decay (WSD).

WSD (`train.schedule=wsd`) holds the peak learning rate after the warm-up and cools down only over
the last `train.cooldown_fraction` of the steps (Hägele et al. 2024, "Scaling Laws and
Compute-Optimal Training Beyond Fixed Training Durations"). Until its cooldown starts a WSD run does
not depend on its length, so one long run's checkpoints can be branched (`branch_from`) into
cooldowns for every shorter budget instead of training each budget from scratch.
"""

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


SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("linear", "sqrt")
# Defaults of the WSD keys, also for a config written before they existed (a parent run's).
DEFAULT_SCHEDULE = "cosine"
DEFAULT_COOLDOWN_FRACTION = 0.2
DEFAULT_COOLDOWN_SHAPE = "sqrt"


def cooldown_start(max_steps: int, cooldown_fraction: float) -> int:
    """The first step of a WSD cooldown: the last `round(cooldown_fraction * max_steps)` steps cool
    down. A branch (`branch_from`) may start at or before it, never after (its steps so far would
    have run at the peak rate, which a from-scratch run of this length would not have)."""
    return int(max_steps) - round(float(cooldown_fraction) * int(max_steps))


def lr_at_step(
    step: int,
    *,
    base_lr: float,
    warmup_steps: int,
    max_steps: int,
    min_ratio: float,
    schedule: str = DEFAULT_SCHEDULE,
    cooldown_fraction: float = DEFAULT_COOLDOWN_FRACTION,
    cooldown_shape: str = DEFAULT_COOLDOWN_SHAPE,
) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warm-up, then `schedule`.

    A pure function of the step, so resuming (or branching) needs no scheduler state and the
    schedule cannot drift. Warm-up reaches `base_lr` on its last step. `cosine`: the cosine then
    falls to `base_lr * min_ratio` at `max_steps` and stays there if training runs longer. `wsd`:
    `base_lr` until `cooldown_start(max_steps, cooldown_fraction)`, then down to `base_lr *
    min_ratio` at `max_steps` (and after), linearly or as 1 - sqrt(progress) (`cooldown_shape`).
    Like the cosine, the cooldown reaches its floor at `max_steps`: the first cooldown step still
    runs at `base_lr`, so the schedule has no jump. A warm-up longer than the stable phase wins
    over the overlapping start of the cooldown.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "wsd":
        return base_lr * _wsd_factor(step, max_steps, min_ratio, cooldown_fraction, cooldown_shape)
    if schedule != "cosine":
        raise ValueError(f"train.schedule={schedule!r} is not one of {SCHEDULES}")
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (min_ratio + (1.0 - min_ratio) * cosine)


def _wsd_factor(
    step: int, max_steps: int, min_ratio: float, cooldown_fraction: float, shape: str
) -> float:
    """The WSD multiplier of the peak rate after the warm-up: exactly 1.0 in the stable phase (a
    branch and a from-scratch run then multiply by the same number), `min_ratio` from `max_steps`
    on."""
    if shape not in COOLDOWN_SHAPES:
        raise ValueError(f"train.cooldown_shape={shape!r} is not one of {COOLDOWN_SHAPES}")
    start = cooldown_start(max_steps, cooldown_fraction)
    if step < start:
        return 1.0
    if step >= max_steps:
        return min_ratio
    progress = (step - start) / (max_steps - start)
    decay = progress if shape == "linear" else math.sqrt(progress)
    return 1.0 - (1.0 - min_ratio) * decay


def schedule_from_config(train_cfg: Any) -> dict[str, Any]:
    """The keyword arguments of `lr_at_step` from a `train` config group: one reading of the
    schedule keys for the loop and for comparing a branch's schedule with its parent's. A config
    written before WSD existed (no `schedule` key) reads as the cosine it ran."""

    def get(key: str, default: Any) -> Any:
        value = train_cfg.get(key, default)
        return default if value is None else value

    return {
        "base_lr": float(train_cfg.lr),
        "warmup_steps": int(train_cfg.warmup_steps),
        "max_steps": int(train_cfg.max_steps),
        "min_ratio": float(train_cfg.lr_min_ratio),
        "schedule": str(get("schedule", DEFAULT_SCHEDULE)),
        "cooldown_fraction": float(get("cooldown_fraction", DEFAULT_COOLDOWN_FRACTION)),
        "cooldown_shape": str(get("cooldown_shape", DEFAULT_COOLDOWN_SHAPE)),
    }


def lr_from_config(step: int, train_cfg: Any) -> float:
    """`lr_at_step(step, ...)` with the schedule of the `train` config group `train_cfg`."""
    return lr_at_step(step, **schedule_from_config(train_cfg))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is applied before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
