"""The latest and the best checkpoint of a run, saved crash-safely; shared by the LM and RL loops.

    manager = CheckpointManager(run_dir, best_metric="val/loss")   # mode inferred: min
    manager.save(step, model, optimizer, {"tokens_seen": n}, tokenizer=tok, metrics=eval_metrics)
    state = manager.restore(model, optimizer)                      # after a restart: resume=true

`save` writes one complete folder under `<run>/checkpoints/` and points `<run>/checkpoint` at it
and, when `metrics` improve on the best so far, `<run>/best` too (see `checkpointing.publish_checkpoint`
for why every instant is safe). The best value is kept in each folder's trainer_state.json, so a
resumed run keeps comparing against the real best, also when `best/` was written after the latest.

    manager = CheckpointManager(run_dir, keep_steps=[2000, 4000])  # train.keep_checkpoints
    if manager.keeps(step): manager.save(step, ...)                 # checkpoints/step_0002000/

A save at a kept step marks its folder (a `keep` file) so pruning never removes it: one long
warmup-stable-decay run then leaves checkpoints that shorter budgets branch their cooldowns from
(`branch_from`, see the trainer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from hrm_codegen.run_layout import (
    BEST_DIR,
    CHECKPOINT_DIR,
    TRAINER_STATE,
    CheckpointError,
    latest_checkpoint,
)
from hrm_codegen.training.checkpointing import (
    kept_checkpoints,
    load_ema_weights,
    load_model_weights,
    load_training_state,
    publish_checkpoint_files,
)

BEST_MODES = ("min", "max")
# Metrics where higher is better; anything else named here is a loss-like metric (lower is better).
HIGHER_IS_BETTER = ("pass@", "accuracy", "reward")
LOWER_IS_BETTER = ("loss", "bpb", "ppl")


def infer_best_mode(metric: str, mode: str | None = None) -> str:
    """`mode` when given, else `max` for pass@k/accuracy/reward metrics and `min` for losses, bpb and
    perplexity; any other metric needs `mode` spelled out."""
    if mode is not None:
        if mode not in BEST_MODES:
            raise ValueError(f"train.best_mode={mode!r} must be one of {BEST_MODES} or null")
        return mode
    if any(word in metric for word in HIGHER_IS_BETTER):
        return "max"
    if any(word in metric for word in LOWER_IS_BETTER):
        return "min"
    raise ValueError(
        f"train.best_metric={metric!r}: cannot tell whether higher or lower is better; set "
        "train.best_mode=min or train.best_mode=max"
    )


class CheckpointManager:
    """Saves and restores one run's checkpoints; only the main process writes (`is_main`).

    `best_metric=None` keeps no `best/`. `keep_steps`: steps whose checkpoints are never pruned
    (the caller saves at them: `keeps(step)`). The manager does not gather RNG states or
    synchronise processes: a multi-process caller gathers what it wants in `extra_state` and waits
    itself."""

    def __init__(
        self,
        run_dir: Path,
        *,
        best_metric: str | None = "val/loss",
        best_mode: str | None = None,
        is_main: bool = True,
        keep_steps: Iterable[int] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.keep_steps = frozenset(int(step) for step in keep_steps)
        self.best_metric = best_metric
        self.best_mode = infer_best_mode(best_metric, best_mode) if best_metric else None
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_seen = False  # whether any evaluation reported best_metric
        self._read_best()

    # ------------------------------------------------------------------ where things are

    @property
    def latest(self) -> Path | None:
        """The checkpoint `resume=true` continues from, or None before the first save."""
        return latest_checkpoint(self.run_dir)

    @property
    def best(self) -> Path | None:
        """`<run>/best` when it exists."""
        path = self.run_dir / BEST_DIR
        return path if (path / TRAINER_STATE).is_file() else None

    @property
    def kept(self) -> list[Path]:
        """The run's kept step folders (`checkpoints/step_<7 digits>/` holding a `keep` file)."""
        return kept_checkpoints(self.run_dir)

    def keeps(self, step: int) -> bool:
        """Whether `step` is one of `keep_steps`: the loop must save there, and the save is kept."""
        return int(step) in self.keep_steps

    # ------------------------------------------------------------------ best tracking

    def improves(self, metrics: dict[str, Any] | None) -> bool:
        """Whether `metrics[best_metric]` beats the best so far (a NaN never does)."""
        if not self.best_metric or not metrics or self.best_metric not in metrics:
            return False
        value = float(metrics[self.best_metric])
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        if self.best_mode == "min":
            return value < self.best_value
        return value > self.best_value

    def _read_best(self) -> None:
        best = self.best
        if best is None or not self.best_metric:
            return
        record = json.loads((best / TRAINER_STATE).read_text()).get("best") or {}
        if record.get("metric") == self.best_metric and record.get("mode") == self.best_mode:
            self.best_value = float(record["value"])
            self.best_step = int(record["step"])

    def best_record(self) -> dict[str, Any] | None:
        """What trainer_state.json says about the best checkpoint (None without best tracking)."""
        if not self.best_metric:
            return None
        return {
            "metric": self.best_metric,
            "mode": self.best_mode,
            "value": self.best_value,
            "step": self.best_step,
        }

    # ------------------------------------------------------------------ save and restore

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        extra_state: dict[str, Any] | None = None,
        *,
        tokenizer: Any = None,
        config_yaml: str | None = None,
        ema: Any = None,
        scaler: Any = None,
        metrics: dict[str, Any] | None = None,
        latest: bool = True,
    ) -> Path | None:
        """Save a checkpoint at `step` as the latest (`latest=True`) and/or as the best (when
        `metrics` improve on it), kept from pruning when `keeps(step)`; returns the step folder, or
        None when none of these applies (and on non-main processes, which write nothing).
        `extra_state` lands in trainer_state.json beside `step` and `best`."""
        improved = self.improves(metrics)
        keep = self.keeps(step)
        if metrics and self.best_metric in (metrics or {}):
            self.best_seen = True
        if not (latest or improved or keep):
            return None
        if improved:
            self.best_value, self.best_step = float(metrics[self.best_metric]), int(step)
        if not self.is_main:
            return None
        state = {**(extra_state or {}), "step": int(step), "best": self.best_record()}
        pointers = ([CHECKPOINT_DIR] if latest else []) + ([BEST_DIR] if improved else [])
        return publish_checkpoint_files(
            self.run_dir,
            step=int(step),
            pointers=pointers,
            model=model,
            tokenizer=tokenizer,
            optimizer=optimizer,
            trainer_state=state,
            config_yaml=config_yaml,
            ema=ema,
            scaler=scaler,
            keep=keep,
        )

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        ckpt: Path | None = None,
        ema: Any = None,
        scaler: Any = None,
    ) -> dict[str, Any]:
        """Load the raw training weights, optimizer (and scaler, EMA) state of `ckpt` (default:
        the latest) into the given objects; returns its trainer_state.json."""
        ckpt = ckpt if ckpt is not None else self.latest
        if ckpt is None:
            raise CheckpointError(
                f"{self.run_dir} has no checkpoint to restore ({CHECKPOINT_DIR}/{TRAINER_STATE})"
            )
        load_model_weights(ckpt, model, raw=True)
        state, optim = load_training_state(ckpt)
        if optimizer is not None:
            optimizer.load_state_dict(optim["optimizer"])
        if scaler is not None and optim.get("scaler") is not None:
            scaler.load_state_dict(optim["scaler"])
        if ema is not None:
            shadow = load_ema_weights(ckpt, model)
            if shadow is None:
                raise CheckpointError(
                    f"{ckpt} was saved without EMA but train.ema_decay is set; resume with "
                    "train.ema_decay=null or start a new stage with init_from="
                )
            ema.load_state_dict(shadow, int(state.get("ema_updates", 0)))
        return state


__all__ = ["BEST_MODES", "CheckpointManager", "infer_best_mode"]
