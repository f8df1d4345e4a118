"""Checks on a training config that fail before anything expensive happens, with the fix named.

Every numeric setting is checked here once, up front (`NUMBERS`): a typo such as `train.lr=abc`
or a size that cannot work is one line naming the key, the value and an example of a good value,
instead of a conversion traceback minutes later from deep inside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from hrm_codegen.model.registry import ModelConfigError
from hrm_codegen.training.checkpoint_manager import infer_best_mode
from hrm_codegen.training.distributed import DEVICES
from hrm_codegen.training.optim import COOLDOWN_SHAPES, SCHEDULES

MIXED_PRECISION = ("no", "bf16", "fp16")


class ConfigError(ModelConfigError):
    """A config value that cannot work, named together with what to set instead."""


@dataclass(frozen=True)
class Number:
    """What one numeric setting may hold: a whole number or any real, its range, whether null is
    allowed, and an example value the error message suggests."""

    example: str
    whole: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False  # the range excludes `low` itself
    open_high: bool = False
    nullable: bool = False

    def rule(self) -> str:
        """The range in words, e.g. `>= 1`, `> 0`, `in [0, 1)`, with `or null` when allowed."""
        if self.low is not None and self.high is not None:
            text = (
                f"in {'(' if self.open_low else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.open_high else ']'}"
            )
        elif self.low is not None:
            text = f"{'>' if self.open_low else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{'<' if self.open_high else '<='} {self.high:g}"
        else:
            text = "a finite number"
        return f"{text} or null" if self.nullable else text

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the range."""
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None:
            return value < self.high if self.open_high else value <= self.high
        return True


def _count(example: str, low: int = 1, nullable: bool = False) -> Number:
    return Number(example, whole=True, low=low, nullable=nullable)


def _positive(example: str, nullable: bool = False) -> Number:
    return Number(example, low=0, open_low=True, nullable=nullable)


# Every numeric key of configs/codegen_base.yaml and its groups (a key a config lacks, such as
# model.n_layers for the HRM, is skipped). Ranges the values need on their own; checks that relate
# two values (stop_at_step <= max_steps, head sizes, sequence lengths) follow in validate_config.
NUMBERS: dict[str, Number] = {
    "seed": _count("0", low=0),
    "log_interval": _count("10"),
    "checkpoint_interval": _count("500"),
    "train.max_steps": _count("2000"),
    "train.micro_batch_size": _count("8"),
    "train.grad_accum_steps": _count("1"),
    "train.lr": _positive("3e-4"),
    "train.lr_min_ratio": Number("0.1", low=0, high=1),
    "train.warmup_steps": _count("100", low=0),
    "train.weight_decay": Number("0.1", low=0),
    "train.beta1": Number("0.9", low=0, high=1, open_high=True),
    "train.beta2": Number("0.95", low=0, high=1, open_high=True),
    "train.eps": _positive("1e-8"),
    "train.grad_clip": _positive("1.0", nullable=True),
    "train.ema_decay": Number("0.999", low=0, high=1, open_low=True, open_high=True, nullable=True),
    "train.stop_at_step": _count("1000", nullable=True),
    "train.flop_budget": _positive("1e15", nullable=True),
    "train.warmup_fraction": Number("0.1", low=0, high=1, open_high=True, nullable=True),
    "train.cooldown_fraction": Number("0.2", low=0, high=1),
    "eval.interval": _count("200"),
    "eval.max_batches": _count("20", nullable=True),
    "eval.batch_size": _count("8"),
    "eval.limit": _count("20", low=0, nullable=True),
    "eval.max_new_tokens": _count("256"),
    "eval.timeout": _positive("10"),
    "eval.workers": _count("4", nullable=True),
    "eval.points": _count("20", nullable=True),
    "eval.checkpoint_points": _count("20", nullable=True),
    "tokenizer.vocab_size": _count("4096"),
    "tokenizer.stdlib_mb": Number("4", low=0),
    "data.max_seq_len": _count("512"),
    "data.train_limit": _count("64", low=0, nullable=True),
    "data.val_limit": _count("8", low=0, nullable=True),
    "data.augment": _count("4", low=0, nullable=True),
    "data.pad_to_multiple_of": _count("8", nullable=True),
    "model.max_seq_len": _count("2048"),
    "model.hidden_size": _count("512"),
    "model.num_heads": _count("8"),
    "model.num_key_value_heads": _count("4", nullable=True),
    "model.H_layers": _count("4"),
    "model.L_layers": _count("4"),
    "model.H_cycles": _count("2"),
    "model.L_cycles": _count("2"),
    "model.n_layers": _count("8"),
    "model.bp_steps": _count("2"),
    "model.halt_max_steps": _count("1"),
    "model.expansion": _positive("4.0"),
    "model.halt_exploration_prob": Number("0.1", low=0, high=1),
    "model.halt_margin": Number("0.01", low=0),
    "model.rope_theta": _positive("10000.0"),
    "model.rms_norm_eps": _positive("1e-5"),
}

_ABSENT = object()


def _shown(value: Any) -> str:
    """A value as the user would type it back: null for None, true/false, quotes around text."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def check_number(key: str, value: Any, spec: Number) -> None:
    """Raise a one-line ConfigError unless `value` is a number `spec` allows."""
    fix = f"pass e.g. {key}={spec.example}"
    if value is None:
        if spec.nullable:
            return
        raise ConfigError(f"{key}=null is not allowed; {fix}")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a number; {fix}") from None
        raise ConfigError(f"{key}={value!r} is quoted text, not a number; {fix} (unquoted)")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={_shown(value)} is not a number; {fix}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not a finite number; {fix}")
    if spec.whole and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{key}={value} is not a whole number; {fix}")
        raise ConfigError(
            f"{key}={value} is a float; write it as an integer, e.g. {key}={int(value)}"
        )
    if not spec.contains(float(value)):
        raise ConfigError(f"{key} must be {spec.rule()}, got {value}; {fix}")


def check_numbers(cfg: DictConfig, numbers: dict[str, Number] | None = None) -> None:
    """Check every numeric setting of `cfg` that `numbers` (default `NUMBERS`) describes."""
    for key, spec in (NUMBERS if numbers is None else numbers).items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            check_number(key, value, spec)


def _nearest(candidates: list[int], target: float) -> int | None:
    return min(candidates, key=lambda c: (abs(c - target), c)) if candidates else None


def _head_fix(hidden: int, heads: int) -> str:
    """`model.num_heads=..` and/or `model.hidden_size=..` close to the given ones that give an even
    head_dim, e.g. `pass e.g. model.num_heads=2 or model.hidden_size=102`."""
    fits = [h for h in range(1, hidden + 1) if hidden % h == 0 and (hidden // h) % 2 == 0]
    options = []
    other_heads = _nearest(fits, heads)
    if other_heads is not None:
        options.append(f"model.num_heads={other_heads}")
    step = 2 * heads  # hidden_size must be a multiple of num_heads with an even quotient
    options.append(f"model.hidden_size={max(step, round(hidden / step) * step)}")
    return "pass e.g. " + " or ".join(options)


def check_heads(model: Any) -> None:
    """hidden_size must split into num_heads equal heads, each of even size (rotary embeddings
    rotate pairs of dims); named in that order, so a split that fails says so, not the parity."""
    hidden, heads = model.get("hidden_size"), model.get("num_heads")
    if hidden is None or heads is None:
        return
    hidden, heads = int(hidden), int(heads)
    if hidden % heads:
        raise ConfigError(
            f"model.hidden_size={hidden} is not divisible by model.num_heads={heads} (every head "
            f"gets hidden_size / num_heads dims); {_head_fix(hidden, heads)}"
        )
    head_dim = hidden // heads
    if head_dim % 2:
        raise ConfigError(
            f"model.hidden_size={hidden} / model.num_heads={heads} gives head_dim={head_dim}, but "
            f"rotary position embeddings need an even head_dim; {_head_fix(hidden, heads)}"
        )
    kv_heads = model.get("num_key_value_heads")
    if kv_heads is not None and heads % int(kv_heads):
        divisors = [d for d in range(1, heads + 1) if heads % d == 0]
        raise ConfigError(
            f"model.num_heads={heads} is not a multiple of model.num_key_value_heads={kv_heads}; "
            f"pass e.g. model.num_key_value_heads={_nearest(divisors, int(kv_heads))} or null"
        )


def validate_config(cfg: DictConfig) -> None:
    """Catch settings that cannot work before anything expensive happens."""
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(
            f"mixed_precision={cfg.mixed_precision!r} is not one of {MIXED_PRECISION}"
        )
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r} is not one of {DEVICES}")
    check_numbers(cfg)  # from here on every numeric value converts cleanly
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
    if train.stop_at_step is not None and int(train.stop_at_step) > int(train.max_steps):
        raise ConfigError(
            f"train.stop_at_step={train.stop_at_step} must lie in 1..train.max_steps="
            f"{train.max_steps}; lower it, raise train.max_steps, or pass train.stop_at_step=null"
        )
    if "model" in cfg:
        check_heads(cfg.model)
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
    check_schedule(cfg)
    if cfg.init_from and cfg.init_from_upstream:
        raise ConfigError("set init_from or init_from_upstream, not both")
    if cfg.init_from_upstream and cfg.model.type != "hrm":
        raise ConfigError("init_from_upstream loads a Sapient HRM checkpoint: it needs model=hrm")


def check_schedule(cfg: DictConfig) -> None:
    """The learning-rate schedule, kept checkpoints and `branch_from` settings on their own; what
    needs the branch checkpoint (its step, architecture, data) is checked by the trainer."""
    train = cfg.train
    schedule = train.get("schedule", "cosine")
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"train.schedule={_shown(schedule)} is not one of {SCHEDULES}; pass e.g. "
            "train.schedule=wsd"
        )
    shape = train.get("cooldown_shape", "sqrt")
    if shape not in COOLDOWN_SHAPES:
        raise ConfigError(
            f"train.cooldown_shape={_shown(shape)} is not one of {COOLDOWN_SHAPES}; pass e.g. "
            "train.cooldown_shape=sqrt"
        )
    keep = train.get("keep_checkpoints")
    if keep is not None:
        if not OmegaConf.is_list(keep) and not isinstance(keep, (list, tuple)):
            raise ConfigError(
                f"train.keep_checkpoints={_shown(keep)} is not a list of steps; pass e.g. "
                "train.keep_checkpoints=[1600,3200]"
            )
        for index, step in enumerate(keep):
            check_number(f"train.keep_checkpoints[{index}]", step, _count("1600"))
        late = [int(step) for step in keep if int(step) > int(train.max_steps)]
        if late and train.get("flop_budget") is None:  # a budget sets max_steps later
            raise ConfigError(
                f"train.keep_checkpoints={list(keep)} names steps {late} past train.max_steps="
                f"{train.max_steps}, which this run never reaches; drop them or raise max_steps"
            )
    if not cfg.get("branch_from"):
        return
    for other in ("resume", "init_from", "init_from_upstream"):
        if cfg.get(other):
            raise ConfigError(
                f"set branch_from or {other}, not both (branch_from starts a new run from a "
                "checkpoint's full training state; a preempted branch continues with resume=true "
                "and branch_from=null)"
            )
    if schedule != "wsd":
        raise ConfigError(
            f"branch_from cools a warmup-stable-decay run down early, but train.schedule="
            f"{schedule}; pass train.schedule=wsd (as the run branched from)"
        )


__all__ = [
    "DEVICES",
    "MIXED_PRECISION",
    "NUMBERS",
    "ConfigError",
    "Number",
    "check_heads",
    "check_number",
    "check_numbers",
    "check_schedule",
    "validate_config",
]
