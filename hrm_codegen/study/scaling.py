"""Scaling studies (`kind: scaling`): every arm at several sizes and training budgets, for fits.

A scaling study asks how the gap between arms moves with compute (Chinchilla's approach 3 over
sizes x budgets, `fits.py`; the report in `scaling_report.py`). Its grid:

- arms (training overrides) x sizes (overrides applied to every arm; the baselines stay matched
  to their HRM at each size through `model.match`) x learning rates x seeds;
- per (arm, size, lr, seed) ONE long warmup-stable-decay run at the largest budget, which keeps a
  checkpoint at the cooldown start of every smaller budget (`train.keep_for_budgets`), and one
  short branch per smaller budget that continues from there through its own cooldown
  (`branch_from`): a branch trains exactly what a standalone run of that budget would (Hägele et
  al. 2024), for a fraction of the compute;
- the learning rate is selected per (arm, size, budget); when the best value at the largest
  budget is at an edge of the sweep, the sweep extends one step that way (`lr_edge_extension`
  times at most; the rule is fixed in the config before any run and printed in the report).

A study may span sessions on fresh machines: each finished run's record (config, metrics,
trainer state, model facts; no weights) is written to `records_dir` (committed with the report),
and a recorded run counts as done. A branch whose long run is only a record retrains the long run
first and checks that it logs the recorded floats again (`training.repeat.compare_runs`).

Why by hand: the grid, the branching and the records are our own protocol on our own `train()`;
no sweep library knows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrm_codegen.run_layout import CHECKPOINTS_DIR, CONFIG_SNAPSHOT, METRICS_FILE
from hrm_codegen.study.records import is_recorded, record_status, write_record
from hrm_codegen.study.runner import StudyRunner, run_status
from hrm_codegen.study.spec import ARM_NAME, StudyConfigError, lr_tag

PREFIX_FILE = "restored_prefix.json"  # a long run trained again only as far as its branches need


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
        configured rate: per combination one long run plus each branch's cooldown."""
        longs = len(self.arms) * len(self.sizes) * len(self.lr_sweep) * len(self.seeds)
        per_long = self.budgets[-1] + self.cooldown_fraction * sum(self.budgets[:-1])
        total = longs * per_long
        out = {"runs": longs * len(self.budgets), "flops": total}
        rate = self.flops_per_second_per_job
        if rate:
            per_size = rate if isinstance(rate, dict) else dict.fromkeys(self.sizes, rate)
            seconds = sum(total / len(self.sizes) / per_size[size] for size in self.sizes)
            out["hours"] = seconds / self.jobs / 3600
        return out


def load_scaling_spec(cfg: Any) -> ScalingSpec:
    """A `ScalingSpec` from the `study` node (a mapping); one clear error per mistake."""
    from hrm_codegen.study.spec import _executor, _jobs

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


class ScalingRunner(StudyRunner):
    """One scaling study in one folder; `run()` trains what is not done (or recorded)."""

    spec: ScalingSpec  # type: ignore[assignment]

    # ------------------------------------------------------------------ the grid

    def lrs(self, arm: str, size: str) -> list[float]:
        """The swept values plus the edge extensions the results so far call for (ascending):
        once every value so far has trained at the largest budget on the first seed, a best
        value at an edge adds the next value beyond it (the sweep's own ratio)."""
        values = list(self.spec.lr_sweep)
        seed = self.spec.seeds[0]
        for _ in range(self.spec.lr_edge_extension):
            keys = {lr: ScalingKey(arm, size, lr, seed) for lr in values}
            if any(self.status(k) not in ("done", "diverged") for k in keys.values()):
                break  # decided once the values so far are trained
            scores = {lr: self.final(k) for lr, k in keys.items()}
            best = min(values, key=lambda lr: (scores[lr], lr))
            if best == values[0]:
                values.insert(0, values[0] / self.spec.lr_factor)
            elif best == values[-1]:
                values.append(values[-1] * self.spec.lr_factor)
            else:
                break
        return values

    def long_keys(self) -> list[ScalingKey]:
        return [
            ScalingKey(arm, size, lr, seed)
            for arm in self.spec.arms
            for size in self.spec.sizes
            for lr in self.lrs(arm, size)
            for seed in self.spec.seeds
        ]

    def branch_keys(self) -> list[ScalingKey]:
        return [
            ScalingKey(k.arm_name, k.size, k.lr, k.seed, budget)
            for k in self.long_keys()
            for budget in self.spec.budgets[:-1]
        ]

    def overrides(self, key: ScalingKey) -> list[str]:  # type: ignore[override]
        spec = self.spec
        budgets = ",".join(repr(b) for b in spec.budgets[:-1])
        out = [
            *spec.common,
            *spec.overrides,
            *spec.arms[key.arm_name],
            *spec.sizes[key.size],
            f"experiment_name=study-{spec.name}",
            f"seed={key.seed}",
            f"train.lr={key.lr!r}",
            f"train.flop_budget={key.budget or spec.budgets[-1]!r}",
            "train.schedule=wsd",
            f"train.cooldown_fraction={spec.cooldown_fraction!r}",
            f"train.cooldown_shape={spec.cooldown_shape}",
            f"tokenizer.path={self.tokenizer_dir}",
            f"data.shard_dir={self.corpus_dir}",
            f"run_dir={key.path(self.out)}",
        ]
        if key.budget is None:
            out.append(f"train.keep_for_budgets=[{budgets}]")
        else:
            long = ScalingKey(key.arm_name, key.size, key.lr, key.seed)
            out.append(f"branch_from={self.kept_checkpoint(long, key.budget)}")
        return out

    # ------------------------------------------------------------------ status and records

    def record_dir(self, key: ScalingKey) -> Path | None:  # type: ignore[override]
        root = self.records_root()
        return None if root is None else root / key.relative()

    def status(self, key: ScalingKey) -> str:  # type: ignore[override]
        local = run_status(key.path(self.out))
        if local == "partial" and (key.path(self.out) / PREFIX_FILE).is_file():
            # a long run restored only as far as its pending branches start: its record is
            # the finished run
            return record_status(self.record_dir(key))
        return local if local != "new" else record_status(self.record_dir(key))

    def restore(self, key: ScalingKey) -> str:  # type: ignore[override]
        """A recorded long run's weights for its pending branches: trained again only up to the
        latest cooldown start they branch from (`train.stop_at_step`; at most a third of the
        long run for this grid's budgets), its logged floats compared with the record's up to
        there (`reproduced.json`)."""
        import json

        from omegaconf import OmegaConf

        from hrm_codegen.study.records import REPRODUCED_FILE
        from hrm_codegen.training.repeat import compare_runs

        run_dir, record = key.path(self.out), self.record_dir(key)
        if key.budget is not None or run_status(run_dir) in ("done", "diverged"):
            return super().restore(key)  # type: ignore[arg-type]
        if record is None or not is_recorded(record):
            return super().restore(key)  # type: ignore[arg-type]
        config = OmegaConf.load(record / CONFIG_SNAPSHOT)
        kept = dict(zip((float(b) for b in config.train.keep_for_budgets),
                        (int(s) for s in config.train.keep_checkpoints)))  # fmt: skip
        needed = [
            kept[float(b)]
            for b in self.spec.budgets[:-1]
            if self.status(ScalingKey(key.arm_name, key.size, key.lr, key.seed, b))
            not in ("done", "diverged")
        ]
        if not needed:
            return "here"
        stop = max(needed)
        prefix = run_dir / PREFIX_FILE
        if prefix.is_file() and json.loads(prefix.read_text())["stop_at_step"] >= stop:
            return "here"
        self.log(f"restore long {key.arm} lr={key.lr:g} seed={key.seed} up to step {stop}")
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        self._train_here(key, extra=(f"train.stop_at_step={stop}",))  # type: ignore[arg-type]
        result = compare_runs(record, run_dir)
        # every value both logged is the same; before the stop both logged the same keys (the
        # stop itself may add an evaluation the full run did not make at that step)
        ok = result.differing == 0 and all(step >= stop for step, _ in result.only_in_one)
        if ok:  # the branches copy this history: the record's rows, without the stop's eval
            # (this machine's own provenance row at step 0 stays)
            def rows(folder: Path) -> list[str]:
                return [r for r in (folder / METRICS_FILE).read_text().splitlines() if r.strip()]

            ours = [r for r in rows(run_dir) if json.loads(r).get("step", 0) == 0]
            theirs = [r for r in rows(record) if 0 < json.loads(r).get("step", 0) <= stop]
            (run_dir / METRICS_FILE).write_text("\n".join(ours + theirs) + "\n")
        verdict = {"identical": ok, "differing": result.differing, "up_to_step": stop}
        prefix.write_text(json.dumps({"stop_at_step": stop}) + "\n")
        (run_dir / REPRODUCED_FILE).write_text(json.dumps(verdict) + "\n")
        self.log(f"  logged the record's floats again bit for bit up to step {stop}: {ok}")
        return "restored"

    def source(self, key: ScalingKey) -> Path:  # type: ignore[override]
        run_dir = key.path(self.out)
        if run_status(run_dir) in ("done", "diverged"):
            return run_dir
        record = self.record_dir(key)
        return record if record is not None and is_recorded(record) else run_dir

    def final(self, key: ScalingKey) -> float:
        """The run's last `select_metric` (+inf when diverged, unfinished or never logged)."""
        from hrm_codegen.study.runner import final_metric

        if self.status(key) != "done":
            return math.inf
        return final_metric(self.source(key), self.spec.select_metric)

    def write_record(self, key: ScalingKey) -> None:  # type: ignore[override]
        from hrm_codegen.study.report import model_facts

        record, run_dir = self.record_dir(key), key.path(self.out)
        if record is not None and run_status(run_dir) in ("done", "diverged"):
            write_record(run_dir, record, model_facts)

    def write_records(self) -> int:  # type: ignore[override]
        written = 0
        for key in self.long_keys() + self.branch_keys():
            if run_status(key.path(self.out)) in ("done", "diverged"):
                self.write_record(key)
                written += 1
        return written

    def kept_checkpoint(self, long: ScalingKey, budget: float) -> Path:
        """The long run's checkpoint at the cooldown start of `budget` (its resolved
        `train.keep_checkpoints`, in the order of `train.keep_for_budgets`)."""
        from omegaconf import OmegaConf

        run_dir = long.path(self.out)
        config = OmegaConf.load(run_dir / CONFIG_SNAPSHOT)
        budgets = [float(b) for b in config.train.keep_for_budgets]
        steps = [int(s) for s in config.train.keep_checkpoints]
        step = steps[budgets.index(float(budget))]
        found = sorted((run_dir / CHECKPOINTS_DIR).glob(f"step_{step:07d}*"))
        if not found:
            raise StudyConfigError(
                f"{run_dir} kept no checkpoint at step {step} (the cooldown start of budget "
                f"{budget:g}); delete the run folder so that it trains again"
            )
        return found[0]

    # ------------------------------------------------------------------ training

    def train(self, key: ScalingKey) -> str:  # type: ignore[override]
        """Train one run unless it is done here or recorded (`StudyRunner.train`); a branch's
        long run has been trained or restored here before (`run`)."""
        if key.budget is not None:
            long = ScalingKey(key.arm_name, key.size, key.lr, key.seed)
            if self.status(long) == "diverged":
                return "diverged"
        return super().train(key)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the whole study

    def run(self, publish_dir: str | Path | None = None, command: str = "") -> Path:
        """Every run not done or recorded (long runs, then branches, then the edge extensions
        the results call for), then the report; returns the path of report.md."""
        import time

        from hrm_codegen.study.scaling_report import write_scaling_report

        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        estimate = self.spec.estimate()
        hours = (
            f", about {estimate['hours']:.1f} h at {self.spec.jobs} job(s)"
            if "hours" in estimate
            else ""
        )
        self.log(
            f"{self.spec.name}: {estimate['runs']} runs before any lr extension, "
            f"{estimate['flops']:.3g} training FLOPs{hours}"
        )
        self.prepare()
        while True:
            longs = [k for k in self.long_keys() if self.status(k) not in ("done", "diverged")]
            self.for_each("train", longs)
            branches = [
                k
                for k in self.branch_keys()
                if self.status(k) not in ("done", "diverged")
                and self.status(ScalingKey(k.arm_name, k.size, k.lr, k.seed)) == "done"
            ]  # a long run added by an edge extension trains in the next round first
            # a branch starts from its long run's kept checkpoint: long runs that are only
            # records here train again first (once each, before the workers branch from them)
            starts = {ScalingKey(k.arm_name, k.size, k.lr, k.seed) for k in branches}
            restore = [k for k in self.long_keys() if k in starts and self.status(k) == "done"]
            self.for_each("restore", [k for k in restore if run_status(k.path(self.out)) != "done"])
            self.for_each("train", branches)
            if not longs and not branches:
                break
        self._record_session(time.perf_counter() - start, command)
        return write_scaling_report(self, publish_dir=publish_dir, command=command)
