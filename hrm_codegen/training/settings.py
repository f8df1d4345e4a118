"""`cfg.train` read once into typed values: what the LM loop and its step read every step.

    settings = TrainSettings.from_config(cfg.train)
    settings.lr(step), settings.stop_at, settings.micro_batch_size, ...

Read after the budget-relative settings are resolved (`train.flop_budget` -> `max_steps`,
`warmup_fraction` -> `warmup_steps`, `keep_for_budgets` -> `keep_checkpoints`: the trainer writes
them into the config so config.yaml shows them), so the loop never looks a `cfg.train.x` up again
and a misspelt key fails here, not a thousand steps in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hrm_codegen.training.optim import lr_at_step, schedule_from_config


@dataclass(frozen=True)
class TrainSettings:
    """The `train` block of the config (configs/codegen_base.yaml documents each field)."""

    max_steps: int
    stop_at_step: int | None
    micro_batch_size: int
    grad_accum_steps: int
    grad_clip: float | None  # None: no clipping
    ema_decay: float | None  # None: no EMA
    best_metric: str | None
    best_mode: str | None
    keep_checkpoints: tuple[int, ...]
    # the keyword arguments of `optim.lr_at_step` (base lr, warm-up, schedule, cooldown)
    schedule: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, train_cfg: Any) -> TrainSettings:
        """Read a `train` config block (a DictConfig or a dict)."""
        stop_at = train_cfg.get("stop_at_step")
        clip = train_cfg.get("grad_clip")
        ema = train_cfg.get("ema_decay")
        return cls(
            max_steps=int(train_cfg["max_steps"]),
            stop_at_step=int(stop_at) if stop_at is not None else None,
            micro_batch_size=int(train_cfg["micro_batch_size"]),
            grad_accum_steps=int(train_cfg["grad_accum_steps"]),
            grad_clip=float(clip) if clip else None,
            ema_decay=float(ema) if ema else None,
            best_metric=train_cfg.get("best_metric"),
            best_mode=train_cfg.get("best_mode"),
            keep_checkpoints=tuple(int(s) for s in (train_cfg.get("keep_checkpoints") or ())),
            schedule=schedule_from_config(train_cfg),
        )

    @property
    def stop_at(self) -> int:
        """The step this run stops at: `stop_at_step` when set, else `max_steps`."""
        return self.stop_at_step or self.max_steps

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step `step` (`optim.lr_at_step`)."""
        return lr_at_step(step, **self.schedule)


__all__ = ["TrainSettings"]
