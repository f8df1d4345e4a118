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
from pathlib import Path

from hrm_codegen.run_layout import CHECKPOINTS_DIR, CONFIG_SNAPSHOT, METRICS_FILE
from hrm_codegen.study.records import is_recorded, record_status, write_record
from hrm_codegen.study.runner import StudyRunner
from hrm_codegen.study.runs import final_metric, model_facts, run_status
from hrm_codegen.study.scaling_spec import ScalingKey, ScalingSpec, best_lr
from hrm_codegen.study.spec import StudyConfigError

PREFIX_FILE = "restored_prefix.json"  # a long run trained again only as far as its branches need


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

    def selected_lrs(self, arm: str, size: str) -> list[float]:
        """The lrs that some budget selects on the first seed (`best_lr` of the final
        `select_metric`, the rule of the report's `select_points`), once every first-seed run
        of (arm, size) is done; [] before. Later seeds train only these: a second seed
        measures the spread of the points the fits use, not of the whole sweep."""
        first = self.spec.seeds[0]
        lrs = self.lrs(arm, size)
        last = len(self.spec.budgets) - 1
        keys = {
            (lr, budget): ScalingKey(arm, size, lr, first, None if i == last else budget)
            for lr in lrs
            for i, budget in enumerate(self.spec.budgets)
        }
        if any(self.status(k) not in ("done", "diverged") for k in keys.values()):
            return []
        chosen = (
            best_lr([(self.final(keys[lr, budget]), lr) for lr in lrs])
            for budget in self.spec.budgets
        )
        return sorted({lr for lr in chosen if lr is not None})

    def long_keys(self) -> list[ScalingKey]:
        first = self.spec.seeds[0]
        keys = []
        for arm in self.spec.arms:
            for size in self.spec.sizes:
                later = self.selected_lrs(arm, size) if len(self.spec.seeds) > 1 else []
                for lr in self.lrs(arm, size):
                    for seed in self.spec.seeds:
                        if seed == first or lr in later:
                            keys.append(ScalingKey(arm, size, lr, seed))
        return keys

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
        if self.status(key) != "done":
            return math.inf
        return final_metric(self.source(key), self.spec.select_metric)

    def write_record(self, key: ScalingKey) -> None:  # type: ignore[override]
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

    def remaining(self) -> str:
        """What is left to train as known now (edge extensions and later seeds' lrs still
        undecided are not counted): runs, FLOPs and hours at the configured rates."""
        spec = self.spec
        per_size = dict.fromkeys(spec.sizes, 0.0)
        runs = 0
        for key in self.long_keys() + self.branch_keys():
            if self.status(key) in ("done", "diverged"):
                continue
            runs += 1
            long = key.budget is None
            per_size[key.size] += spec.budgets[-1] if long else spec.cooldown_fraction * key.budget
        hours = spec.hours(per_size)
        flops = sum(per_size.values())
        at = f", about {hours:.1f} h at {spec.jobs} job(s)" if hours is not None else ""
        return f"left to train now: {runs} runs, {flops:.3g} training FLOPs{at}"

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
        self.log(self.remaining())
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
