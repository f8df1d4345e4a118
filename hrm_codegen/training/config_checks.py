"""Checks on a training config that fail before anything expensive happens, with the fix named."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from hrm_codegen.model.registry import ModelConfigError
from hrm_codegen.training.checkpoint_manager import infer_best_mode

MIXED_PRECISION = ("no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ModelConfigError):
    """A config value that cannot work, named together with what to set instead."""


def validate_config(cfg: DictConfig) -> None:
    """Catch settings that cannot work before anything expensive happens."""
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(
            f"mixed_precision={cfg.mixed_precision!r} is not one of {MIXED_PRECISION}"
        )
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r} is not one of {DEVICES}")
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.mixed_precision == "fp16" and on_cpu:
        raise ConfigError(
            "mixed_precision=fp16 needs a CUDA device (on CPU accelerate would quietly train in "
            "float32); use mixed_precision=bf16 or no on CPU"
        )
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device=cuda but no CUDA device is visible; use device=cpu or device=auto"
        )
    train = cfg.train
    for key in ("max_steps", "micro_batch_size", "grad_accum_steps"):
        if int(train[key]) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {train[key]}")
    if float(train.lr) <= 0 or not 0.0 <= float(train.lr_min_ratio) <= 1.0:
        raise ConfigError(
            f"need train.lr > 0 and 0 <= train.lr_min_ratio <= 1, got {train.lr}, {train.lr_min_ratio}"
        )
    if train.stop_at_step is not None and not 0 < int(train.stop_at_step) <= int(train.max_steps):
        raise ConfigError(f"train.stop_at_step={train.stop_at_step} must lie in 1..train.max_steps")
    for key in ("log_interval", "checkpoint_interval"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if int(cfg.eval.interval) < 1:
        raise ConfigError(f"eval.interval must be >= 1, got {cfg.eval.interval}")
    budget = train.get("flop_budget")
    if budget is not None and not float(budget) > 0:
        raise ConfigError(f"train.flop_budget={budget} must be a positive number of FLOPs or null")
    fraction = train.get("warmup_fraction")
    if fraction is not None and not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"train.warmup_fraction={fraction} must lie in [0, 1) or be null")
    for key in ("points", "checkpoint_points"):
        value = cfg.eval.get(key)
        if value is not None and int(value) < 1:
            raise ConfigError(f"eval.{key}={value} must be >= 1 or null")
    if int(cfg.data.max_seq_len) > int(cfg.model.max_seq_len):
        raise ConfigError(
            f"data.max_seq_len={cfg.data.max_seq_len} exceeds model.max_seq_len="
            f"{cfg.model.max_seq_len}; raise model.max_seq_len or lower data.max_seq_len"
        )
    if train.get("best_metric"):
        try:
            infer_best_mode(str(train.best_metric), train.get("best_mode"))
        except ValueError as error:
            raise ConfigError(str(error)) from error
    if cfg.init_from and cfg.init_from_upstream:
        raise ConfigError("set init_from or init_from_upstream, not both")
    if cfg.init_from_upstream and cfg.model.type != "hrm":
        raise ConfigError("init_from_upstream loads a Sapient HRM checkpoint: it needs model=hrm")


__all__ = ["DEVICES", "MIXED_PRECISION", "ConfigError", "validate_config"]
