"""What a scaling study is (`kind: scaling`, configs/study/<name>.yaml): its grid of arms, sizes,
budgets, learning rates and seeds as a checked `ScalingSpec`, and `ScalingKey`, one run of the
grid. How the grid trains is scaling.py; its report, scaling_report.py (both read this)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrm_codegen.study.spec import ARM_NAME, StudyConfigError, _executor, _jobs, lr_tag


def budget_tag(budget: float) -> str:
    """A folder-safe tag for a FLOP budget (1.5e12 -> 'b1.5e12')."""
    mantissa, exponent = f"{budget:.3e}".split("e")
    return f"b{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass(frozen=True)
class ScalingSpec:
    """A scaling study's protocol (configs/study/<name>.yaml with `kind: scaling`)."""

    name: str
    arms: dict[str, tuple[str, ...]]
    sizes: dict[str, tuple[str, ...]]
    budgets: tuple[float, ...]  # ascending; the last is the long runs' budget
    seeds: tuple[int, ...]
    lr_sweep: tuple[float, ...]
    lr_edge_extension: int
    select_metric: str
    common: tuple[str, ...]
    overrides: tuple[str, ...]
    cooldown_fraction: float
    cooldown_shape: str
    prepare: dict[str, Any]
    mbpp_path: str | None = None
    jobs: int = 1
    records_dir: str | None = None  # relative to the repository root (study/records.py)
    # measured training rate of one job: one number, or one per size (narrow models run far
    # below the wide ones' rate: per-op overhead dominates)
    flops_per_second_per_job: float | dict[str, float] | None = None
    description: str = ""
    # the report's fits: bootstrap resamples, the two arms whose frontiers may cross, and how
    # many decades beyond the data the crossover is looked for
    fits: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # per run (null: the cores split between the jobs)
    executor: Any = None  # where runs execute (study/executors.py)

    @property
    def lr_factor(self) -> float:
        """The sweep's step (geometric mean ratio of neighbours): the edge extension's step."""
        sweep = self.lr_sweep
        return (sweep[-1] / sweep[0]) ** (1 / (len(sweep) - 1))

    def estimate(self) -> dict[str, float]:
        """Training FLOPs of the whole grid (before any edge extension), and hours at the
        configured rate: per combination one long run plus each branch's cooldown. Later seeds
        train only the lrs the first seed selects: counted at the worst case, a different lr
        for each budget."""
        per_seed_after = min(len(self.budgets), len(self.lr_sweep)) * (len(self.seeds) - 1)
        longs = len(self.arms) * len(self.sizes) * (len(self.lr_sweep) + per_seed_after)
        per_long = self.budgets[-1] + self.cooldown_fraction * sum(self.budgets[:-1])
        total = longs * per_long
        out = {"runs": longs * len(self.budgets), "flops": total}
        hours = self.hours({size: total / len(self.sizes) for size in self.sizes})
        if hours is not None:
            out["hours"] = hours
        return out

    def hours(self, flops_per_size: dict[str, float]) -> float | None:
        """Wall-clock hours of these training FLOPs per size at the configured rates over
        `jobs` workers; None without a rate."""
        rate = self.flops_per_second_per_job
        if not rate:
            return None
        per_size = rate if isinstance(rate, dict) else dict.fromkeys(self.sizes, rate)
        seconds = sum(flops / per_size[size] for size, flops in flops_per_size.items())
        return seconds / self.jobs / 3600


def best_lr(scored: list[tuple[float, float]]) -> float | None:
    """The lr of the lowest finite score among (score, lr) pairs, ties to the smaller lr; None
    when none is finite. The one selection rule of a scaling study: the report's points and
    the lrs later seeds rerun both use it."""
    finite = [pair for pair in scored if math.isfinite(pair[0])]
    return min(finite)[1] if finite else None


def load_scaling_spec(cfg: Any) -> ScalingSpec:
    """A `ScalingSpec` from the `study` node (a mapping); one clear error per mistake."""
    cfg = dict(cfg)
    name = str(cfg.get("name") or "")
    if not ARM_NAME.match(name):
        raise StudyConfigError(f"study.name={name!r} must be a plain name (letters, digits, _-.)")

    def named_lists(key: str) -> dict[str, tuple[str, ...]]:
        found = {
            str(k): tuple(str(o) for o in (v or ())) for k, v in dict(cfg.get(key) or {}).items()
        }
        bad = [k for k in found if not ARM_NAME.match(k)]
        if not found or bad:
            raise StudyConfigError(
                f"study.{key} must map names (letters, digits, _-.) to override lists; got "
                f"{sorted(found) or 'nothing'}"
            )
        return found

    arms, sizes = named_lists("arms"), named_lists("sizes")
    budgets = tuple(sorted(float(b) for b in cfg.get("budgets") or ()))
    if len(budgets) < 2 or budgets[0] <= 0 or len(set(budgets)) != len(budgets):
        raise StudyConfigError(
            f"study.budgets={list(budgets)} must be at least two distinct positive FLOP budgets"
        )
    sweep = tuple(sorted(float(x) for x in cfg.get("lr_sweep") or ()))
    if len(sweep) < 3 or sweep[0] <= 0:
        raise StudyConfigError(
            f"study.lr_sweep={list(sweep)}: sweep at least 3 positive learning rates per arm and size"
        )
    seeds = tuple(int(s) for s in cfg.get("seeds") or ())
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyConfigError(
            f"study.seeds={list(seeds)} must be a non-empty list of distinct ints"
        )
    schedule = dict(cfg.get("schedule") or {})
    fraction = float(schedule.get("cooldown_fraction", 0.2))
    if not 0.0 < fraction < 1.0:
        raise StudyConfigError(f"study.schedule.cooldown_fraction={fraction} must be in (0, 1)")
    shape = str(schedule.get("cooldown_shape", "sqrt"))
    if shape not in ("sqrt", "linear"):
        raise StudyConfigError(f"study.schedule.cooldown_shape={shape!r}: pick sqrt or linear")
    select = str(cfg.get("select_metric") or "val/bpb")
    if "test" in select:
        raise StudyConfigError(f"study.select_metric={select!r}: never select on a test split")
    extension = int(cfg.get("lr_edge_extension", 1))
    if extension < 0:
        raise StudyConfigError(f"study.lr_edge_extension={extension} must be >= 0")
    estimate = dict(cfg.get("estimate") or {})
    rate = estimate.get("flops_per_second_per_job")
    if isinstance(rate, Mapping):
        rate = {str(k): float(v) for k, v in rate.items()}
        if set(rate) != set(sizes) or min(rate.values()) <= 0:
            raise StudyConfigError(
                f"study.estimate.flops_per_second_per_job={rate} must give a positive rate for "
                f"every size ({', '.join(sizes)}) or be one number"
            )
    elif rate:
        rate = float(rate)
    return ScalingSpec(
        name=name,
        arms=arms,
        sizes=sizes,
        budgets=budgets,
        seeds=seeds,
        lr_sweep=sweep,
        lr_edge_extension=extension,
        select_metric=select,
        common=tuple(str(o) for o in cfg.get("common") or ()),
        overrides=tuple(str(o) for o in cfg.get("overrides") or ()),
        cooldown_fraction=fraction,
        cooldown_shape=shape,
        prepare=dict(cfg.get("prepare") or {}),
        mbpp_path=cfg.get("mbpp_path"),
        jobs=_jobs(cfg.get("jobs", 1)),
        records_dir=cfg.get("records_dir"),
        flops_per_second_per_job=rate or None,
        description=str(cfg.get("description") or ""),
        fits=dict(cfg.get("fits") or {}),
        threads=int(cfg["threads"]) if cfg.get("threads") else None,
        executor=_executor(cfg.get("executor")),
    )


@dataclass(frozen=True)
class ScalingKey:
    """One run of the grid: the long run (`budget` None) or the branch for `budget`.

    `stage` and `arm` (arm/size) name it in the shared progress lines and log paths."""

    arm_name: str
    size: str
    lr: float
    seed: int
    budget: float | None = None

    @property
    def arm(self) -> str:
        return f"{self.arm_name}/{self.size}"

    @property
    def stage(self) -> str:
        return "long" if self.budget is None else budget_tag(self.budget)

    def relative(self) -> Path:
        return Path(self.arm_name) / self.size / f"{lr_tag(self.lr)}-seed{self.seed}" / self.stage

    def path(self, root: Path) -> Path:
        return root / "runs" / self.relative()
