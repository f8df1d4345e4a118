"""What a study is: arms, seeds, a learning-rate sweep, a FLOP budget per stage, and evaluations.

A study is a protocol fixed before any run (configs/study/*.yaml): every arm gets the same
learning-rate sweep on the first seed, the learning rate is selected on the validation split of
the pretraining corpus (never on MBPP test), and the other seeds run at the selected value. Every
arm of a stage gets the same training-FLOP budget, so each arm's step count follows from its own
FLOPs per token. This module turns the Hydra config into a checked `StudySpec`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class StudyConfigError(ValueError):
    """A study config that cannot run, with the setting to change."""


@dataclass(frozen=True)
class StageSpec:
    """One training stage: its budget and the overrides every arm's run of it gets."""

    name: str  # "pretrain" | "sft"
    flop_budget: float | None  # training FLOPs per run (equal compute) ...
    overrides: tuple[str, ...] = ()
    lr_scale: float = 1.0  # sft: the arm's selected pretraining lr times this
    max_steps: int | None = None  # ... or optimiser steps per run (equal tokens/examples)

    def budget_overrides(self, step_scale: float = 1.0) -> list[str]:
        """What makes every arm's run of this stage the same size (`step_scale`: an arm's
        steps are `max_steps` times it, see `StudySpec.step_scale`)."""
        if self.max_steps is not None:
            steps = (
                self.max_steps if step_scale == 1.0 else max(1, round(self.max_steps * step_scale))
            )
            return ["train.flop_budget=null", f"train.max_steps={steps}"]
        return [f"train.flop_budget={self.flop_budget!r}"]


@dataclass(frozen=True)
class PassAtKSpec:
    num_samples: int
    limit: int | None
    temperature: float
    top_p: float
    ks: tuple[int, ...]
    max_new_tokens: int
    batch_size: int
    timeout: float
    split: str = "validation"


@dataclass(frozen=True)
class ExecEvalSpec:
    """Exact-match accuracy of every selected run on the exec benchmark's test splits, by step
    bucket, at the trained depth and at each test-time multiplier (recurrent arms)."""

    splits: tuple[str, ...] = ("test", "test_hard")
    limit: int | None = None  # tasks per split (None: all)
    max_new_tokens: int = 48
    batch_size: int = 32


@dataclass(frozen=True)
class SFTArmSpec:
    """An arm that differs from a pretraining arm only at the fine-tuning stage: no pretraining
    runs of its own, its fine-tuning starts from `pretrained`'s selected runs (same lr, every seed)
    with that arm's overrides plus `overrides` (e.g. `model.prefix_lm=true`)."""

    pretrained: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudySpec:
    name: str
    arms: dict[str, tuple[str, ...]]  # the pretraining arms
    seeds: tuple[int, ...]
    lr_sweep: tuple[float, ...]
    select_metric: str
    common: tuple[str, ...]
    pretrain: StageSpec
    sft: StageSpec | None
    prepare: dict[str, Any] = field(default_factory=dict)
    mbpp_path: str | None = None
    test_time_multipliers: tuple[int, ...] = (1,)
    pass_at_k: PassAtKSpec | None = None
    description: str = ""
    min_sweep_span: float = 4.0
    min_sweep_points: int = 3
    sft_arms: dict[str, SFTArmSpec] = field(default_factory=dict)
    jobs: int = 1  # runs trained side by side (execution only; the protocol is the same)
    # where finished runs' records (metrics, no weights) go, relative to the repository: a study
    # that spans sessions on fresh machines resumes from them (study/records.py)
    records_dir: str | None = None
    # intra-op threads per run (null: the cores split between the `jobs` workers); tiny models
    # train faster on one thread than on two that must wake each other for every small op
    threads: int | None = None
    exec_eval: ExecEvalSpec | None = None
    # where runs execute: local workers, Slurm jobs (submitit) or Ray tasks (`ExecutorSpec`;
    # study/executors.py runs them)
    executor: Any = None
    # pretraining steps of an arm relative to pretrain.max_steps (default 1): an arm that gives
    # half its windows to other languages trains twice as long, so both see the same tokens of
    # the language compared (study=cpu_polyglot)
    step_scale: dict[str, float] = field(default_factory=dict)

    @property
    def all_arms(self) -> list[str]:
        """Pretraining arms, then the fine-tuning-only arms."""
        return [*self.arms, *self.sft_arms]

    def base_arm(self, arm: str) -> str:
        """The pretraining arm whose runs `arm` starts from (itself for a pretraining arm)."""
        return self.sft_arms[arm].pretrained if arm in self.sft_arms else arm

    def arm_overrides(self, arm: str) -> tuple[str, ...]:
        """Every override of `arm` (a fine-tuning-only arm: its base arm's, then its own)."""
        if arm in self.sft_arms:
            extra = self.sft_arms[arm]
            return (*self.arms[extra.pretrained], *extra.overrides)
        return self.arms[arm]

    @property
    def stages(self) -> list[StageSpec]:
        return [self.pretrain] + ([self.sft] if self.sft is not None else [])


def _stage(name: str, cfg: Any) -> StageSpec:
    given = [k for k in ("flop_budget", "max_steps") if cfg is not None and cfg.get(k) is not None]
    if len(given) != 1:
        raise StudyConfigError(
            f"study.{name} needs exactly one of flop_budget (training FLOPs per run: equal "
            f"compute) or max_steps (equal steps, so equal examples/tokens); got {given or 'none'}"
        )
    budget = steps = None
    if given == ["flop_budget"]:
        budget = float(cfg["flop_budget"])
        if not budget > 0:
            raise StudyConfigError(f"study.{name}.flop_budget={budget} must be positive")
    else:
        steps = int(cfg["max_steps"])
        if steps < 1:
            raise StudyConfigError(f"study.{name}.max_steps={steps} must be >= 1")
    return StageSpec(
        name=name,
        flop_budget=budget,
        overrides=tuple(str(o) for o in cfg.get("overrides") or ()),
        lr_scale=float(cfg.get("lr_scale", 1.0)),
        max_steps=steps,
    )


def _exec_eval(cfg: Any) -> ExecEvalSpec | None:
    if not cfg:
        return None
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - {"splits", "limit", "max_new_tokens", "batch_size"})
    if unknown:
        raise StudyConfigError(
            f"study.exec_eval: unknown key(s) {unknown}; use splits, limit, max_new_tokens, "
            "batch_size"
        )
    splits = tuple(str(s) for s in cfg.get("splits") or ("test", "test_hard"))
    bad = [s for s in splits if s not in ("validation", "test", "test_hard")]
    if bad:
        raise StudyConfigError(
            f"study.exec_eval.splits={list(splits)}: evaluate on validation, test or test_hard"
        )
    return ExecEvalSpec(
        splits=splits,
        limit=int(cfg["limit"]) if cfg.get("limit") else None,
        max_new_tokens=int(cfg.get("max_new_tokens", 48)),
        batch_size=int(cfg.get("batch_size", 32)),
    )


def _step_scale(cfg: Any, arms: dict[str, Any], pretrain: Any) -> dict[str, float]:
    if not cfg:
        return {}
    scales = {str(arm): float(value) for arm, value in dict(cfg).items()}
    unknown = sorted(set(scales) - set(arms))
    if unknown:
        raise StudyConfigError(
            f"study.step_scale names {unknown}, not pretraining arms ({sorted(arms)})"
        )
    if any(not value > 0 for value in scales.values()):
        raise StudyConfigError(f"study.step_scale={scales}: every scale must be positive")
    if not pretrain or pretrain.get("max_steps") is None:
        raise StudyConfigError(
            "study.step_scale scales pretrain.max_steps: give the stage max_steps, not a "
            "flop_budget"
        )
    return scales


def load_spec(cfg: Any) -> StudySpec:
    """A `StudySpec` from the `study` node of the Hydra config (a mapping); clear errors."""
    cfg = dict(cfg)
    name = str(cfg.get("name") or "")
    if not name or not ARM_NAME.match(name):
        raise StudyConfigError(f"study.name={name!r} must be a plain name (letters, digits, _-.)")
    arms_cfg = cfg.get("arms") or {}
    if not arms_cfg:
        raise StudyConfigError("study.arms is empty: name at least one arm (a list of overrides)")
    arms: dict[str, tuple[str, ...]] = {}
    sft_arms: dict[str, SFTArmSpec] = {}
    for arm, overrides in dict(arms_cfg).items():
        if not ARM_NAME.match(str(arm)):
            raise StudyConfigError(f"arm name {arm!r} must be letters, digits, _ - or .")
        if isinstance(overrides, dict) or hasattr(overrides, "keys"):
            sft_arms[str(arm)] = _sft_arm(str(arm), dict(overrides))
        else:
            arms[str(arm)] = tuple(str(o) for o in (overrides or ()))
    if not arms:
        raise StudyConfigError("study.arms: at least one arm must pretrain (a list of overrides)")
    for arm, extra in sft_arms.items():
        if extra.pretrained not in arms:
            raise StudyConfigError(
                f"study.arms.{arm}.pretrained={extra.pretrained!r} is not a pretraining arm of "
                f"this study; pick one of {sorted(arms)}"
            )
    if sft_arms and not cfg.get("sft"):
        raise StudyConfigError(
            f"study.arms {sorted(sft_arms)} differ only at fine-tuning: add a study.sft stage"
        )
    seeds = tuple(int(s) for s in cfg.get("seeds") or ())
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyConfigError(
            f"study.seeds={list(seeds)} must be a non-empty list of distinct ints"
        )
    sweep = tuple(sorted(float(x) for x in cfg.get("lr_sweep") or ()))
    min_points = int(cfg.get("min_sweep_points", 3))
    min_span = float(cfg.get("min_sweep_span", 4.0))
    if len(sweep) < min_points or any(x <= 0 for x in sweep):
        raise StudyConfigError(
            f"study.lr_sweep={list(sweep)}: the protocol sweeps at least {min_points} positive "
            "learning rates per arm"
        )
    if sweep[-1] / sweep[0] < min_span * (1 - 1e-9):
        raise StudyConfigError(
            f"study.lr_sweep={list(sweep)} spans {sweep[-1] / sweep[0]:.2g}x; the protocol needs "
            f"at least {min_span:g}x between the smallest and the largest value"
        )
    pass_cfg = cfg.get("pass_at_k")
    pass_at_k = None
    if pass_cfg:
        pass_cfg = dict(pass_cfg)
        ks = tuple(int(k) for k in pass_cfg.get("ks") or (1,))
        n = int(pass_cfg.get("num_samples", 1))
        if n < 1 or any(k < 1 or k > n for k in ks):
            raise StudyConfigError(f"study.pass_at_k: ks={list(ks)} must lie in 1..num_samples={n}")
        pass_at_k = PassAtKSpec(
            num_samples=n,
            limit=pass_cfg.get("limit"),
            temperature=float(pass_cfg.get("temperature", 0.8)),
            top_p=float(pass_cfg.get("top_p", 1.0)),
            ks=ks,
            max_new_tokens=int(pass_cfg.get("max_new_tokens", 256)),
            batch_size=int(pass_cfg.get("batch_size", 16)),
            timeout=float(pass_cfg.get("timeout", 10.0)),
            split=str(pass_cfg.get("split", "validation")),
        )
    multipliers = tuple(int(m) for m in cfg.get("test_time_multipliers") or (1,))
    if any(m < 1 for m in multipliers) or 1 not in multipliers:
        raise StudyConfigError(
            f"study.test_time_multipliers={list(multipliers)} must be >= 1 and include 1 (as trained)"
        )
    select = str(cfg.get("select_metric") or "val/bpb")
    if "test" in select:
        raise StudyConfigError(f"study.select_metric={select!r}: never select on a test split")
    spec = StudySpec(
        name=name,
        arms=arms,
        seeds=seeds,
        lr_sweep=sweep,
        select_metric=select,
        common=tuple(str(o) for o in cfg.get("common") or ()),
        pretrain=_stage("pretrain", cfg.get("pretrain")),
        sft=_stage("sft", cfg["sft"]) if cfg.get("sft") else None,
        prepare=dict(cfg.get("prepare") or {}),
        mbpp_path=cfg.get("mbpp_path"),
        test_time_multipliers=multipliers,
        pass_at_k=pass_at_k,
        description=str(cfg.get("description") or ""),
        min_sweep_span=min_span,
        min_sweep_points=min_points,
        sft_arms=sft_arms,
        jobs=_jobs(cfg.get("jobs", 1)),
        records_dir=cfg.get("records_dir"),
        threads=int(cfg["threads"]) if cfg.get("threads") else None,
        exec_eval=_exec_eval(cfg.get("exec_eval")),
        executor=_executor(cfg.get("executor")),
        step_scale=_step_scale(cfg.get("step_scale"), arms, cfg.get("pretrain")),
    )
    if spec.exec_eval is not None and not spec.prepare.get("exec"):
        raise StudyConfigError(
            "study.exec_eval scores runs on the exec benchmark: add study.prepare.exec (its "
            "build settings)"
        )
    if pass_at_k is not None and spec.sft is None:
        raise StudyConfigError(
            "study.pass_at_k samples the fine-tuned models: add a study.sft stage"
        )
    return spec


def _executor(value: Any) -> Any:
    return load_executor_spec(value)


def _jobs(value: Any) -> int:
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        raise StudyConfigError(f"study.jobs={value!r} must be an int >= 1 (runs side by side)")
    return jobs


def _sft_arm(arm: str, cfg: dict[str, Any]) -> SFTArmSpec:
    """`{pretrained: <arm>, sft: [overrides]}`: an arm that differs only at fine-tuning."""
    unknown = sorted(set(cfg) - {"pretrained", "sft"})
    if unknown or not cfg.get("pretrained"):
        raise StudyConfigError(
            f"study.arms.{arm}: a fine-tuning-only arm is {{pretrained: <pretraining arm>, sft: "
            f"[overrides]}}, got keys {sorted(cfg)}"
        )
    return SFTArmSpec(str(cfg["pretrained"]), tuple(str(o) for o in cfg.get("sft") or ()))


def lr_tag(lr: float) -> str:
    """A file-name-safe, exact-enough tag for a learning rate (5e-4 -> 'lr5e-04')."""
    mantissa, exponent = f"{lr:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"lr{mantissa}e{int(exponent):+03d}".replace("+", "")


def finite_or_inf(value: Any) -> float:
    """A metric value as a float, with NaN, missing and non-numbers mapped to +inf (worst)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.inf
    return value if math.isfinite(value) else math.inf


# ----------------------------------------------------------------------------- executor


EXECUTORS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class ExecutorSpec:
    """`study.executor` (a name, or a mapping with `kind` and the engine's settings)."""

    kind: str = "local"
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    max_retries: int = 2  # slurm/ray: a failed or preempted run is submitted again this often
    # slurm (submitit)
    cluster: str | None = None  # submitit's: None = slurm when sbatch exists; "local" = here
    partition: str | None = None
    account: str | None = None
    timeout_min: int = 240
    mem_gb: int | None = None
    slurm_extra: dict[str, Any] = field(default_factory=dict)  # more sbatch options
    # ray
    address: str | None = None  # "auto": a running cluster; None: start a local instance


def load_executor_spec(cfg: Any) -> ExecutorSpec:
    """The checked `ExecutorSpec` of `study.executor` (None or "local": local workers)."""
    if cfg is None or isinstance(cfg, str):
        cfg = {"kind": cfg or "local"}
    cfg = dict(cfg)
    kind = str(cfg.pop("kind", "local"))
    if kind not in EXECUTORS:
        raise StudyConfigError(f"study.executor.kind={kind!r}: use one of {', '.join(EXECUTORS)}")
    known = set(ExecutorSpec.__dataclass_fields__) - {"kind"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise StudyConfigError(
            f"study.executor: unknown key(s) {unknown}; the settings are {sorted(known)}"
        )
    spec = ExecutorSpec(kind=kind, **{k: v for k, v in cfg.items() if v is not None})
    for name in ("gpus_per_run", "max_retries"):
        if int(getattr(spec, name)) < 0:
            raise StudyConfigError(f"study.executor.{name}={getattr(spec, name)} must be >= 0")
    if spec.cpus_per_run < 1 or spec.timeout_min < 1:
        raise StudyConfigError("study.executor.cpus_per_run and timeout_min must be >= 1")
    return spec
