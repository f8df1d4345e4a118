"""The training loop: one loop for pretraining (packed corpus windows) and MBPP fine-tuning.

`train(cfg)` builds the tokenizer, data, model, AdamW and (optionally) an EMA from a Hydra config, then
runs `train.max_steps` optimiser steps under `accelerate` (one process on CPU/GPU, or DDP over many
with `accelerate launch`), with mixed precision, gradient accumulation and clipping. It evaluates every
`eval.interval` steps, checkpoints every `checkpoint_interval` steps and at the end, and returns the
run dir. See configs/codegen_base.yaml for every setting.

The loop is built from components the RL loop shares (docs/DESIGN.md, "Training components"): the
processes (`distributed.py`), the run dir and config snapshot (`run_dir.py`), the checkpoint manager
with `checkpoint/` and `best/` (`checkpoint_manager.py`), metrics logging (`logging.py`), the
evaluation schedule and validation metrics (`periodic_eval.py`) and the SIGTERM/SIGINT stop
(`preemption.py`); `cfg.train` is read once into `TrainSettings` (`settings.py`), and one optimiser
step is an `LMStep` (`lm_step.py`) the trainer builds and calls. Extra evaluators
(`Trainer(cfg, evaluators=...)`) add metrics such as MBPP pass@1 without this package importing
`hrm_codegen.evaluation`; `hrm_codegen.train_cli` composes them.

Batches are weighted by label tokens: each micro-batch's mean loss is scaled by its share of the
global batch's label tokens (summed over micro-batches and processes), so the update is the mean over
every label token of the global batch however it is split into micro-batches and processes.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from hrm_codegen.bpb import token_byte_lengths
from hrm_codegen.model import registry
from hrm_codegen.model.registry import (  # re-exported: older code imports them from here
    ModelConfigError,
    matched_depth,
    model_classes,
    other_architecture_fields,
)
from hrm_codegen.run_layout import (
    BEST_DIR,
    CHECKPOINT_DIR,
    CONFIG_SNAPSHOT,
    METRICS_FILE,
    TRAINER_STATE,
    CheckpointError,
    latest_checkpoint,
    resolve_checkpoint_dir,
)
from hrm_codegen.runtime import apply_threads, runtime_record
from hrm_codegen.training.checkpoint_manager import CheckpointManager
from hrm_codegen.training.checkpointing import (
    check_architecture,
    load_model_weights,
    rng_state,
    set_rng_state,
)
from hrm_codegen.training.config_checks import ConfigError, validate_config
from hrm_codegen.training.data import (
    BatchOrder,
    DataConfigError,
    StageData,
    build_stage_data,
    build_tokenizer,
)
from hrm_codegen.training.depth import depth_sampler
from hrm_codegen.training.distributed import Distributed
from hrm_codegen.training.ema import EMA
from hrm_codegen.training.flops import flops_count, peak_flops
from hrm_codegen.training.lm_step import LMStep, MicroBatch, NonFiniteLossError
from hrm_codegen.training.lm_step import with_lengths as _with_lengths  # noqa: F401 - old name
from hrm_codegen.training.logging import RunLogger
from hrm_codegen.training.optim import (
    cooldown_start,
    lr_at_step,
    optimizer_from_config,
    schedule_from_config,
)
from hrm_codegen.training.periodic_eval import (
    EvalContext,
    EvalSchedule,
    Evaluator,
    build_bpb_sets,
    interval_for_points,
    run_evaluators,
    validation_metrics,
)
from hrm_codegen.training.preemption import StopSignal, TrainingInterrupted
from hrm_codegen.training.run_dir import (  # run_dir_from_config is re-exported for old imports
    RunDirError,
    display_path,
    find_resume_checkpoint,
    run_dir_from_config,
    run_dir_of,
    write_config_snapshot,
)
from hrm_codegen.training.settings import TrainSettings

# Errors a user can fix from the command line; the launcher prints them without a traceback.
USER_ERRORS = (
    ModelConfigError,
    DataConfigError,
    CheckpointError,
    NonFiniteLossError,
    RunDirError,
    FileNotFoundError,
)


# ----------------------------------------------------------------------------- building blocks


def build_model(
    model_cfg: dict[str, Any],
    vocab_size: int,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> torch.nn.Module:
    """`hrm_codegen.model.registry.build_model`, its config errors raised as `ConfigError`."""
    try:
        return registry.build_model(
            model_cfg,
            vocab_size,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
    except ModelConfigError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(str(error)) from error


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """State of one training run; `run()` is the loop. Build it with `Trainer(cfg)`.

    `evaluators` add metrics to every evaluation (see `periodic_eval.Evaluator`). The builders run
    in this order, which is also the order random numbers are drawn in (so it is part of what
    makes reruns and resumes bitwise equal): processes, run dir, data, model, optimizer,
    checkpoints (restore or per-process seed), wrapping, budget, step."""

    def __init__(self, cfg: DictConfig, evaluators: tuple[Evaluator, ...] = ()) -> None:
        from accelerate.utils import set_seed

        if cfg.get("loop", "lm") != "lm":
            raise ConfigError(
                f"loop={cfg.loop!r}: this trainer runs loop=lm; other loops start from "
                "hrm_codegen.train_cli.run_training (scripts/train_codegen.py)"
            )
        validate_config(cfg)
        self.cfg = cfg
        self.dry_run = bool(cfg.dry_run)
        self.evaluators = tuple(evaluators)
        self.settings = TrainSettings.from_config(cfg.train)
        self._build_distributed()
        init_ckpt = self._build_run_dir()
        set_seed(int(cfg.seed))  # the same initial weights on every process
        self._build_data(self.resume_ckpt or self.branch_ckpt or init_ckpt)
        self._build_model(init_ckpt)
        self._build_optimizer()
        self.checkpoints = self._build_checkpoint_manager()
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        elif self.branch_ckpt is not None:
            self._check_branch_source(self.branch_ckpt)
            self._restore(self.branch_ckpt)
        else:
            set_seed(int(cfg.seed) + self.dist.rank)  # per-process randomness (ACT exploration)
        self._build_wrapped_model()
        self._resolve_schedule()
        self.settings = TrainSettings.from_config(cfg.train)  # with the budget resolved
        if self.branch_ckpt is not None:
            self._check_branch_schedule(self.branch_ckpt)
            self._copy_parent_metrics(self.branch_ckpt)
        self.byte_lengths = token_byte_lengths(self.tokenizer)
        self.bpb_sets = (
            build_bpb_sets(cfg, self.data, self.tokenizer, self._print) if self.is_main else {}
        )
        self.lm_step = LMStep(
            self.model,
            self.optimizer,
            self.dist,
            self.settings,
            ddp_model=self.ddp_model,
            train_model=self.train_model,
            ema=self.ema,
            compile=bool(cfg.compile),
            needs_mask=getattr(self.model, "q_head", None) is not None,
        )

    # ------------------------------------------------------------------ builders

    def _build_distributed(self) -> None:
        """Threads, then the processes: device, rank, world size, precision (`Distributed`)."""
        threads = self.cfg.get("threads") or {}
        try:
            apply_threads(threads.get("intra_op"), threads.get("inter_op"))
        except ValueError as error:
            raise ConfigError(str(error)) from error
        self.dist = Distributed(str(self.cfg.device), str(self.cfg.mixed_precision))
        self.accelerator = self.dist.accelerator
        self.is_main = self.dist.is_main

    def _build_run_dir(self) -> Path | None:
        """The run dir and the checkpoint to resume or branch from (every process agrees on
        them: ranks can resolve `${now:}` a second apart); returns the `init_from` checkpoint."""
        cfg = self.cfg
        run_dir = resume_ckpt = None
        if self.is_main and not self.dry_run:
            run_dir = run_dir_from_config(cfg)
            if cfg.resume:
                resume_ckpt = find_resume_checkpoint(
                    cfg.resume, run_dir, explicit=bool(cfg.run_dir)
                )
                run_dir = run_dir_of(resume_ckpt)
        self.run_dir, self.resume_ckpt = self.dist.broadcast([run_dir, resume_ckpt])
        if cfg.resume and self.dry_run:
            raise ConfigError("dry_run=true cannot resume (it writes nothing); drop one of them")
        init_ckpt = resolve_checkpoint_dir(str(cfg.init_from)) if cfg.init_from else None
        # branch_from: this new run starts from another run's full training state (as resume)
        self.branch_ckpt = (
            resolve_checkpoint_dir(str(cfg.branch_from)) if cfg.get("branch_from") else None
        )
        if self.branch_ckpt is not None:
            self._check_branch_run_dir()
        return init_ckpt

    def _build_data(self, source_ckpt: Path | None) -> None:
        """The tokenizer (the source checkpoint's, else built) and the stage's data."""
        cfg = self.cfg
        with self.dist.main_first():
            if source_ckpt is not None:
                from hrm_codegen.tokenization import load_tokenizer

                self.tokenizer = load_tokenizer(source_ckpt)
            else:
                self.tokenizer = build_tokenizer(
                    OmegaConf.to_container(cfg.tokenizer, resolve=True),
                    OmegaConf.to_container(cfg.data, resolve=True),
                    _cache_root(),
                )
            self.data: StageData = build_stage_data(
                OmegaConf.to_container(cfg.data, resolve=True),
                self.tokenizer,
                prefix_lm=bool(cfg.model.get("prefix_lm", False)),
            )
        if self.dist.world > 1:
            # Every process indexes the same global batch order into its own copy of the data;
            # copies of different sizes (e.g. an augmented variant timing out on one rank) would
            # make ranks read mismatched samples.
            sizes = self.dist.gather(len(self.data.train))
            if len(set(sizes)) > 1:
                raise DataConfigError(
                    f"the processes built training sets of different sizes {sizes}; "
                    "the data must be deterministic (check data.augment)"
                )

    def _build_model(self, init_ckpt: Path | None) -> None:
        """The model from `cfg.model`, with `init_from`/`init_from_upstream` weights, on the
        device."""
        cfg = self.cfg
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        ignored = other_architecture_fields(model_cfg)
        self.model = build_model(
            model_cfg,
            len(self.tokenizer),
            bos_token_id=getattr(self.tokenizer, "bos_token_id", None),
            eos_token_id=getattr(self.tokenizer, "eos_token_id", None),
            pad_token_id=getattr(self.tokenizer, "pad_token_id", None),
        )
        if ignored:
            unused = ", ".join(ignored)
            note = f"note: model={cfg.model.type} has no {unused}"
            if model_cfg.get("match"):
                depth = self.model.config.n_layers
                note += f"; matched to that HRM by {model_cfg['match']}: n_layers={depth}"
            self._print(note)
        if init_ckpt is not None and self.resume_ckpt is None:
            load_model_weights(init_ckpt, self.model, raw=False)
        if cfg.init_from_upstream:
            from hrm_codegen.model import load_upstream_checkpoint

            report = load_upstream_checkpoint(self.model, str(cfg.init_from_upstream))
            self._print(f"warm start from {cfg.init_from_upstream}:\n{report}")
        self.model.to(self.dist.device)

    def _build_optimizer(self) -> None:
        """AdamW, the EMA, the global batch order and the run's counters (all at step 0)."""
        s = self.settings
        self.optimizer = optimizer_from_config(self.model, self.cfg.train)
        self.ema = EMA(self.model, s.ema_decay) if s.ema_decay else None
        self.global_batch = s.micro_batch_size * s.grad_accum_steps * self.dist.world
        self.order = BatchOrder(len(self.data.train), seed=int(self.cfg.seed))
        self.step = 0
        self.tokens_seen = 0
        self.flops_seen = 0.0  # cumulative training FLOPs (forward + backward as executed)
        self.flops_no_embed_seen = 0.0  # the same without the LM head's (flops.py)
        self.train_seconds = 0.0  # cumulative wall time of training steps (not eval/checkpoints)
        self.last_good_checkpoint: Path | None = None

    def _build_checkpoint_manager(self) -> CheckpointManager | None:
        """`checkpoint/`, `best/` by `train.best_metric` and kept steps (None for a dry run)."""
        if self.run_dir is None:
            return None
        s = self.settings
        return CheckpointManager(
            self.run_dir,
            best_metric=s.best_metric,
            best_mode=s.best_mode,
            is_main=self.is_main,
            keep_steps=s.keep_checkpoints,
        )

    def _build_wrapped_model(self) -> None:
        """DDP (accelerate), torch.compile, randomized depth and the FLOP model."""
        self.ddp_model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.train_model = torch.compile(self.ddp_model) if self.cfg.compile else self.ddp_model
        self.depth = depth_sampler(self.cfg.train, self.model, int(self.cfg.seed))
        self._flops_by_depth: dict[int, Any] = {}
        self.flops = flops_count(self.model)
        self.peak = peak_flops(self.dist.device)

    # ------------------------------------------------------------------ one step

    def micro_batches(self) -> list[MicroBatch]:
        """This process's micro-batches of the next global batch (`LMStep.micro_batches`)."""
        return self.lm_step.micro_batches(self.data, self.order.take(self.global_batch))

    def train_step(self, micro_batches: list[MicroBatch]) -> dict[str, float]:
        """One optimiser step (`LMStep.step`) at this step's FLOP model; advances `step` and
        `tokens_seen`. A non-finite loss names the last good checkpoint to resume from."""
        try:
            metrics = self.lm_step.step(micro_batches, self.step, self.flops)
        except NonFiniteLossError as error:
            where = (
                f"last good checkpoint: {display_path(self.last_good_checkpoint)} (resume=true "
                "continues from it; lower train.lr or use mixed_precision=no)"
                if self.last_good_checkpoint is not None
                else "no checkpoint was saved yet"
            )
            raise NonFiniteLossError(f"{error}; {where}") from None
        self.step += 1
        self.tokens_seen += int(metrics["tokens"])
        return metrics

    # ------------------------------------------------------------------ budget and eval sets

    def _resolve_schedule(self) -> None:
        """Turn the budget-relative settings into steps: `train.flop_budget` -> `train.max_steps`,
        `train.warmup_fraction` -> `train.warmup_steps`, `eval.points` -> `eval.interval`,
        `eval.checkpoint_points` -> `checkpoint_interval`. The resolved values are written into the
        config (and so into config.yaml), and a resumed run resolves them to the same numbers."""
        cfg, t = self.cfg, self.cfg.train
        if t.get("flop_budget") is not None:
            if (
                getattr(self.model, "q_head", None) is not None
                and int(cfg.model.halt_max_steps) > 1
            ):
                raise ConfigError(
                    "train.flop_budget with adaptive computation (halt_max_steps > 1): the step "
                    "count would assume every sequence runs every segment, so the run would spend "
                    "only part of its budget; set train.max_steps instead"
                )
            per_step = self.flops_per_step_estimate()
            steps = self.steps_for_budget(float(t.flop_budget))
            t.max_steps = steps
            self._print(
                f"train.flop_budget={float(t.flop_budget):.3g}: {steps} steps of "
                f"~{per_step:.3g} FLOPs ({self.flops.training_flops_per_token(self._mean_len()):.3g} "
                "per token)"
            )
        max_steps = int(t.max_steps)
        if t.get("keep_for_budgets"):
            # the cooldown starts of shorter FLOP budgets under this run's FLOPs per step, in
            # budget order: a scaling study branches each budget's cooldown from them
            if t.get("keep_checkpoints"):
                raise ConfigError(
                    "train.keep_for_budgets resolves train.keep_checkpoints: give one of them"
                )
            fraction = float(t.get("cooldown_fraction", 0.2))
            t.keep_checkpoints = [
                cooldown_start(self.steps_for_budget(float(b)), fraction)
                for b in t.keep_for_budgets
            ]
            if self.checkpoints is not None:
                self.checkpoints.keep_steps = frozenset(int(k) for k in t.keep_checkpoints)
        if t.get("warmup_fraction") is not None:
            t.warmup_steps = round(float(t.warmup_fraction) * max_steps)
        if cfg.eval.get("points") is not None:
            cfg.eval.interval = interval_for_points(max_steps, cfg.eval.points)
        if cfg.eval.get("checkpoint_points") is not None:
            cfg.checkpoint_interval = interval_for_points(max_steps, cfg.eval.checkpoint_points)
        if t.stop_at_step is not None and int(t.stop_at_step) > max_steps:
            raise ConfigError(
                f"train.stop_at_step={t.stop_at_step} exceeds the {max_steps} steps of the budget"
            )

    def _sample_lengths(self) -> list[int]:
        """Lengths of up to 256 training examples spread over the set (cached: read once)."""
        if not hasattr(self, "_lengths"):
            train = self.data.train
            step = max(1, len(train) // 256)
            self._lengths = [int(train[i]["input_ids"].numel()) for i in range(0, len(train), step)]
        return self._lengths

    def _mean_len(self) -> float:
        lengths = self._sample_lengths()
        return sum(lengths) / len(lengths)

    def flops_per_step_estimate(self, depth: int | None = None) -> float:
        """Training FLOPs of one optimiser step: global batch x (mean length x FLOPs per token at
        that length), from a sample of up to 256 training examples (exact for packed windows);
        `depth`: at that randomized depth (else the configured one)."""
        count = self.flops if depth is None else self.flops_at_depth(depth)
        lengths = self._sample_lengths()
        per_example = [n * count.training_flops_per_token(n) for n in lengths]
        return self.global_batch * sum(per_example) / len(per_example)

    def flops_at_depth(self, depth: int) -> Any:
        """The FLOP model of one randomized depth (cached)."""
        if depth not in self._flops_by_depth:
            assert self.depth is not None
            self.depth.set_depth(self.model, depth)
            self._flops_by_depth[depth] = flops_count(self.model)
            self.depth.set_depth(self.model, None)
        return self._flops_by_depth[depth]

    def steps_for_budget(self, budget: float) -> int:
        """Optimiser steps that spend `budget` FLOPs: budget / FLOPs per step, rounded; with
        randomized depth, the first step count whose summed FLOPs (each step at the depth it
        will draw) reach the budget, rounded the same way (the draws are known in advance)."""
        if self.depth is None:
            return max(1, round(budget / self.flops_per_step_estimate()))
        spent, step = 0.0, 0
        while True:
            cost = self.flops_per_step_estimate(self.depth.draw(step))
            if spent + cost / 2 >= budget and step > 0:
                return step
            spent, step = spent + cost, step + 1

    # ------------------------------------------------------------------ branching a cooldown

    # `branch_from` serves several budgets with one long warmup-stable-decay run: a shorter budget's
    # run is the long run's steps up to its own cooldown start, then its cooldown. So instead of
    # training it from scratch, it starts from the long run's checkpoint at (or before) that step,
    # restored exactly as `resume` restores (`_restore`), into a new run dir. Everything that would
    # make it differ from the from-scratch run is refused up front, as one-line ConfigErrors.

    def _check_branch_run_dir(self) -> None:
        """A branch writes a new run: not into the run it branches from, nor over another run
        (its metrics.jsonl is seeded with the parent's rows, which must not mix with others)."""
        if self.run_dir is None:  # dry_run: writes nothing
            return
        parent = run_dir_of(self.branch_ckpt)
        if Path(self.run_dir).resolve() == parent.resolve():
            raise ConfigError(
                f"branch_from={self.branch_ckpt} lies in this run dir {self.run_dir}; a branch "
                "writes a new run: pass another run_dir (or leave it to Hydra)"
            )
        if latest_checkpoint(self.run_dir) is not None or (self.run_dir / METRICS_FILE).exists():
            raise ConfigError(
                f"run_dir={self.run_dir} already holds a run; a branch starts a new one (to "
                "continue a preempted branch pass resume=true and branch_from=null)"
            )

    def _branch_parent_config(self, ckpt: Path) -> DictConfig | None:
        """The resolved config the parent saved with the checkpoint (None if it has none)."""
        path = ckpt / CONFIG_SNAPSHOT
        return OmegaConf.load(path) if path.is_file() else None  # type: ignore[return-value]

    def _check_branch_source(self, ckpt: Path) -> None:
        """Refuse a branch checkpoint of another architecture or another data stream (examples,
        corpus, order, global batch): continuing it would not be this run's own history."""
        try:
            check_architecture(ckpt, self.model)
        except CheckpointError as error:
            raise ConfigError(f"branch_from: {error}") from error
        state = json.loads((ckpt / TRAINER_STATE).read_text())
        samples = int(state["data"]["num_samples"])
        if samples != len(self.data.train):
            raise ConfigError(
                f"branch_from={ckpt} was trained on {samples} examples, this config builds "
                f"{len(self.data.train)}; a branch continues the same data (match the data.* "
                "settings of its run)"
            )
        batch = state.get("global_batch_size")
        if batch is not None and int(batch) != self.global_batch:
            raise ConfigError(
                f"branch_from={ckpt} was trained with global batches of {batch} sequences, this "
                f"config gives {self.global_batch}; match train.micro_batch_size x "
                "train.grad_accum_steps x processes"
            )
        parent = self._branch_parent_config(ckpt)
        if parent is None:
            return
        if int(parent.seed) != int(self.cfg.seed):
            raise ConfigError(
                f"branch_from={ckpt} ran with seed={parent.seed} (its data order), this config "
                f"has seed={self.cfg.seed}; pass seed={parent.seed}"
            )
        provenance = parent.get("provenance") or {}
        for name, ours in self.data.fingerprints.items():
            theirs = provenance.get(f"{name}_fingerprint")
            if theirs is not None and theirs != ours:
                raise ConfigError(
                    f"branch_from={ckpt} was trained on a {name} with fingerprint {theirs}, "
                    f"this config reads {ours}; a branch continues the same data"
                )
        theirs_data = OmegaConf.to_container(parent.data, resolve=True)
        ours_data = OmegaConf.to_container(self.cfg.data, resolve=True)
        for key in sorted(set(theirs_data) & set(ours_data) - {"path", "shard_dir"}):
            if theirs_data[key] != ours_data[key]:
                raise ConfigError(
                    f"branch_from={ckpt} was trained with data.{key}={theirs_data[key]!r}, this "
                    f"config sets {ours_data[key]!r}; a branch continues the same data"
                )

    def _check_branch_schedule(self, ckpt: Path) -> None:
        """Refuse a branch that a from-scratch run of this config would not have passed through:
        restored past this run's cooldown start (its last steps ran at a rate this run would
        already have lowered), or with learning rates up to the branch step that differ from this
        config's (another peak, warm-up or schedule, or the parent's own cooldown had begun)."""
        ours_kw = schedule_from_config(self.cfg.train)
        max_steps, fraction = ours_kw["max_steps"], ours_kw["cooldown_fraction"]
        start = cooldown_start(max_steps, fraction)
        if self.step > start:
            raise ConfigError(
                f"branch_from={ckpt} is at step {self.step}, past this run's cooldown start "
                f"{start} (train.max_steps={max_steps}, train.cooldown_fraction={fraction}); "
                f"branch from a checkpoint at or before step {start}"
            )
        parent = self._branch_parent_config(ckpt)
        if parent is None:
            return
        theirs_kw = schedule_from_config(parent.train)  # read once: a long run has many steps
        for step in range(self.step):
            theirs, ours = lr_at_step(step, **theirs_kw), lr_at_step(step, **ours_kw)
            if theirs != ours:
                raise ConfigError(
                    f"branch_from={ckpt}: its run trained step {step} at lr={theirs:.6g}, this "
                    f"config's schedule gives {ours:.6g}; a branch must share train.lr, "
                    "warmup_steps and the stable phase with its run up to the branch step"
                )

    def _copy_parent_metrics(self, ckpt: Path) -> None:
        """Seed this run's metrics.jsonl with the parent's rows up to the branch step."""
        # Why: those steps are this run's history too (a from-scratch run of this budget logs the
        # same rows bit for bit, tests/test_wsd.py), and plots and compare_runs read one
        # metrics.jsonl per run, so without them the branch's curve would start at the branch.
        if not self.is_main or self.run_dir is None:
            return
        source = run_dir_of(ckpt) / METRICS_FILE
        rows: list[str] = []
        if source.is_file():
            for line in source.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a torn last line of a parent still running
                    continue
                if isinstance(row, dict) and int(row.get("step", 0)) <= self.step:
                    rows.append(line + "\n")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / METRICS_FILE).write_text("".join(rows))
        self._print(
            f"branch: {len(rows)} metrics rows of {display_path(run_dir_of(ckpt))} up to step "
            f"{self.step} copied into {display_path(self.run_dir / METRICS_FILE)}"
        )
        if self.step % int(self.cfg.log_interval):
            self._print(
                f"note: the branch step {self.step} is not a multiple of log_interval="
                f"{self.cfg.log_interval}: the first training window after it averages fewer "
                "steps than a from-scratch run's"
            )

    # ------------------------------------------------------------------ checkpoint state

    def _restore(self, ckpt: Path) -> None:
        manager = self.checkpoints or CheckpointManager(run_dir_of(ckpt), best_metric=None)
        state = manager.restore(
            self.model, self.optimizer, ckpt=ckpt, ema=self.ema, scaler=self.accelerator.scaler
        )
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.flops_seen = float(state.get("flops_seen", 0.0))
        no_embed = state.get("flops_no_embed_seen")
        if no_embed is None:  # saved before the counter existed: take the LM head's share off
            # (exact without ACT; with ACT it assumes one segment per token)
            no_embed = flops_count(self.model).non_embedding_flops(
                self.flops_seen, self.tokens_seen
            )
        self.flops_no_embed_seen = float(no_embed)
        self.train_seconds = float(state.get("train_seconds", 0.0))
        position = state["data"]
        if position["num_samples"] != len(self.data.train):
            raise CheckpointError(
                f"{ckpt} was trained on {position['num_samples']} examples, this config builds "
                f"{len(self.data.train)}; resume with the same data settings"
            )
        self.order = BatchOrder(
            len(self.data.train), int(self.cfg.seed), position["epoch"], position["offset"]
        )
        rngs = state["rng"]
        index = self.accelerator.process_index
        if len(rngs) == self.accelerator.num_processes:
            set_rng_state(rngs[index])
        else:
            self._print(
                f"warning: {ckpt} was saved by {len(rngs)} processes, this run has "
                f"{self.accelerator.num_processes}; random streams restart from the seed"
            )
            from accelerate.utils import set_seed

            set_seed(int(self.cfg.seed) + self.step + index)
        self.last_good_checkpoint = ckpt
        verb = "branched from" if ckpt == self.branch_ckpt else "resumed"
        self._print(f"{verb} {ckpt} at step {self.step}")

    def save(self, metrics: dict[str, float] | None = None, *, latest: bool = True) -> Path:
        """Write a checkpoint at this step (main process) after gathering every process's RNG
        state: the latest when `latest`, and `best/` too when `metrics` improve on it."""
        rngs = self.dist.gather(rng_state())
        state = {
            "tokens_seen": self.tokens_seen,
            "flops_seen": self.flops_seen,
            "flops_no_embed_seen": self.flops_no_embed_seen,
            "train_seconds": self.train_seconds,
            "data": self.order.state_dict(),
            "global_batch_size": self.global_batch,
            "num_processes": self.accelerator.num_processes,
            "ema_updates": self.ema.num_updates if self.ema is not None else 0,
            "rng": rngs,
        }
        self.checkpoints.save(
            self.step,
            self.model,
            self.optimizer,
            state,
            tokenizer=self.tokenizer,
            config_yaml=OmegaConf.to_yaml(self.cfg, resolve=True),
            ema=self.ema,
            scaler=self.accelerator.scaler,
            metrics=metrics,
            latest=latest,
        )
        self.accelerator.wait_for_everyone()
        ckpt = self.run_dir / CHECKPOINT_DIR
        if latest:
            self.last_good_checkpoint = ckpt
        return ckpt

    def _improves_best(self, metrics: dict[str, float]) -> bool:
        """Whether these (main-process) metrics beat the best so far, agreed by every process."""
        improved = [self.checkpoints.improves(metrics) if self.is_main else False]
        return bool(self.dist.broadcast(improved)[0])

    def _stop_requested(self, stop: StopSignal) -> int | None:
        """The signal any process received (every process stops at the same step), else None."""
        return self.dist.agreed_signal(stop.requested)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss/perplexity/bpb and the injected evaluators' metrics (e.g. MBPP pass@1)
        on the main process.

        Runs on the unwrapped model with the EMA weights when EMA is on, and restores every RNG
        afterwards so evaluating never changes the training that follows.
        """
        metrics: dict[str, float] = {}
        if self.is_main:
            saved_rng = rng_state()
            model = self.model
            model.eval()
            with self.ema.applied_to(model) if self.ema is not None else nullcontext():
                metrics.update(
                    validation_metrics(
                        model,
                        self.data.val,
                        self.data.collate,
                        self.bpb_sets,
                        self.byte_lengths,
                        batch_size=int(self.cfg.eval.batch_size),
                        max_batches=self.cfg.eval.max_batches,
                        to_device=self.lm_step.to_device,
                        device=self.accelerator.device,
                        autocast=self.accelerator.autocast,
                    )
                )
                if self.evaluators:
                    context = EvalContext(
                        step=self.step,
                        run_dir=self.run_dir,
                        cfg=self.cfg,
                        tokenizer=self.tokenizer,
                        data=self.data,
                        device=self.accelerator.device,
                        autocast=self.accelerator.autocast,
                    )
                    metrics.update(run_evaluators(self.evaluators, model, context))
            model.train()
            set_rng_state(saved_rng)
        self.accelerator.wait_for_everyone()
        return metrics

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path | None:
        """Train to `train.max_steps` (or `train.stop_at_step`); returns the run dir.

        On SIGTERM/SIGINT the current step finishes, a checkpoint is saved at it, and
        `TrainingInterrupted` is raised (the launcher exits with 128 + the signal number)."""
        cfg = self.cfg
        if self.dry_run:
            return self._dry_run()
        provenance = self.provenance()
        with open_dict(cfg):
            cfg.provenance = provenance
        if self.is_main:
            write_config_snapshot(self.run_dir, cfg)
        self._print_summary(self._print)
        logger = RunLogger(
            self.run_dir,
            OmegaConf.to_container(cfg.logger, resolve=True),
            config=OmegaConf.to_container(cfg, resolve=True),
            is_main=self.is_main,
            total_steps=self.settings.max_steps,
            initial_step=self.step,
            run_name=f"{cfg.experiment_name}/{self.run_dir.name}",
        )
        logger.log({f"provenance/{k}": v for k, v in provenance.items()}, self.step)
        interrupted: int | None = None
        self.model.train()
        try:
            with StopSignal() as stop:
                interrupted = self._train(logger, stop)
        finally:
            logger.close()
        self._report_end()
        self.dist.end()
        if interrupted is not None:
            raise TrainingInterrupted(
                interrupted, self.step, display_path(self.run_dir / CHECKPOINT_DIR)
            )
        return self.run_dir

    def _train(self, logger: RunLogger, stop: StopSignal) -> int | None:
        """The steps from `self.step` to `stop_at`, with their logging, evaluations and saves;
        returns the stop signal if one ended them."""
        stop_at = self.settings.stop_at
        schedule = EvalSchedule(
            int(self.cfg.eval.interval), int(self.cfg.checkpoint_interval), stop_at
        )
        log_interval = int(self.cfg.log_interval)
        window: dict[str, float] = {}
        window_steps, window_start = 0, time.perf_counter()
        interrupted: int | None = None
        while self.step < stop_at:
            metrics = self._timed_step()
            logger.advance()
            for key, value in metrics.items():
                window[key] = window.get(key, 0.0) + value
            window_steps += 1
            interrupted = self._stop_requested(stop)
            at_end = self.step == stop_at or interrupted is not None
            if self.step % log_interval == 0 or at_end:
                elapsed = time.perf_counter() - window_start
                logger.log(self._window_metrics(window, window_steps, elapsed), self.step)
                window, window_steps, window_start = {}, 0, time.perf_counter()
            eval_metrics: dict[str, float] = {}
            if schedule.evaluates(self.step) and interrupted is None:
                eval_metrics = self.evaluate()
                if eval_metrics:
                    logger.log({**eval_metrics, **self._progress()}, self.step)
                    logger.print(
                        f"step {self.step} eval: "
                        + " ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items())
                    )
                window_start = time.perf_counter()  # evaluation time is not training time
            kept = self.checkpoints.keeps(self.step)  # train.keep_checkpoints
            if schedule.checkpoints(self.step) or kept or interrupted is not None:
                self.save(eval_metrics)
                window_start = time.perf_counter()
            elif eval_metrics and self._improves_best(eval_metrics):
                self.save(eval_metrics, latest=False)  # best/ only
                window_start = time.perf_counter()
            logger.resume_rate()  # nor is it in the bar's rate and ETA
            if interrupted is not None:
                break
        return interrupted

    def _timed_step(self) -> dict[str, float]:
        """One training step at this step's drawn depth, counted into `train_seconds`,
        `flops_seen` and `flops_no_embed_seen`; returns its metrics."""
        step_start = time.perf_counter()
        if self.depth is not None:  # this step's drawn depth, and its FLOP model
            depth = self.depth.draw(self.step)
            self.flops = self.flops_at_depth(depth)
            self.depth.set_depth(self.model, depth)
        metrics = self.train_step(self.micro_batches())
        if self.depth is not None:
            metrics["depth"] = float(depth)
        self.train_seconds += time.perf_counter() - step_start
        step_flops = float(metrics["flops"])
        self.flops_seen += step_flops
        # The LM head costs the same per token at any padded length, so its share comes off the
        # step's FLOPs as run; with ACT per segment run (act_steps on average).
        act_steps = float(metrics.get("act_steps", 1.0))
        segments = act_steps if self.flops.segments > 1 else 1.0
        self.flops_no_embed_seen += self.flops.non_embedding_flops(
            step_flops, float(metrics["tokens"]), segments
        )
        return metrics

    def _report_end(self) -> None:
        """The closing lines: a missing best metric, each rank's parameter digest under DDP, the
        run dir, best/ and (the last line) the checkpoint."""
        checkpoints = self.checkpoints
        if checkpoints.best_metric and not checkpoints.best_seen and self.is_main:
            self._print(
                f"note: no evaluation reported train.best_metric={checkpoints.best_metric}, "
                "so no best/ was written"
            )
        if self.dist.world > 1:
            print(
                f"parameters sha256 rank {self.dist.rank}/{self.dist.world}: "
                f"{parameter_digest(self.model)}",
                flush=True,
            )
        self.dist.barrier()
        self._print(f"run dir: {display_path(self.run_dir)}")
        if self.is_main and checkpoints.best_step is not None and checkpoints.best:
            self._print(
                f"best: {display_path(self.run_dir / BEST_DIR)} (step {checkpoints.best_step}, "
                f"{checkpoints.best_metric}={checkpoints.best_value:.4g})"
            )
        self._print(f"checkpoint: {display_path(self.run_dir / CHECKPOINT_DIR)}")  # the last line

    def _window_metrics(
        self, window: dict[str, float], steps: int, elapsed: float
    ) -> dict[str, Any]:
        tokens, flops = window.pop("tokens"), window.pop("flops")
        out: dict[str, Any] = {f"train/{k}": v / steps for k, v in window.items()}
        out["train/tok_s"] = tokens / max(elapsed, 1e-9)
        if self.peak:
            out["train/mfu"] = (
                flops / max(elapsed, 1e-9) / (self.peak * self.accelerator.num_processes)
            )
        out.update(self._progress())
        out["epoch"] = self.order.epoch + self.order.offset / self.order.num_samples
        return out

    def provenance(self) -> dict[str, Any]:
        """The data and numeric environment this run (or this resumed part of it) ran on: the
        corpus and tokenizer fingerprints, threads and library versions."""
        from hrm_codegen.tokenization import tokenizer_fingerprint

        out: dict[str, Any] = {
            f"{name}_fingerprint": value for name, value in self.data.fingerprints.items()
        }
        out["tokenizer_fingerprint"] = tokenizer_fingerprint(self.tokenizer)
        out.update(runtime_record())
        out["processes"] = self.accelerator.num_processes
        return out

    def _progress(self) -> dict[str, float]:
        """Where the run stands, carried by every logged record so curves can be drawn against
        tokens, training FLOPs or training wall time alike."""
        out = {
            "tokens_seen": self.tokens_seen,
            "flops": self.flops_seen,
            "flops_no_embed": self.flops_no_embed_seen,
            "train_seconds": self.train_seconds,
        }
        by_language = getattr(self.data.train, "tokens_by_language", None)
        if by_language is not None:  # a language mix (data.mix): what each language gave
            seen = by_language(self.order.epoch, self.order.taken_in_epoch())
            out.update({f"tokens_seen/{lang}": n for lang, n in seen.items()})
        return out

    def _print_summary(self, emit: Any) -> None:
        n_total = self.model.num_parameters()
        n_body = self.model.num_parameters(exclude_embeddings=True)
        emit(f"data: {self.data.description}")
        emit(
            f"model: {self.model.model_type}, {n_total / 1e6:.2f}M parameters "
            f"({n_body / 1e6:.2f}M without embedding and LM head), vocab {len(self.tokenizer)}"
        )
        emit(
            f"batch: {self.global_batch} sequences per step ({self.accelerator.num_processes} "
            f"process(es) x {self.settings.micro_batch_size} x {self.settings.grad_accum_steps} "
            f"accumulation), ~{self.tokens_per_step_estimate():,.0f} tokens per step; "
            f"device {self.accelerator.device}, mixed precision {self.cfg.mixed_precision}"
        )
        if self.run_dir is not None:
            emit(f"run dir: {display_path(self.run_dir)}")

    def tokens_per_step_estimate(self) -> float:
        """Global batch x mean example length (a sample of up to 256 training examples)."""
        return self.global_batch * self._mean_len()

    def _dry_run(self) -> None:
        """Print the resolved config and a summary, take one optimiser step, write nothing."""
        self._print(OmegaConf.to_yaml(self.cfg, resolve=True))
        self._print_summary(self._print)
        self.model.train()
        metrics = self.train_step(self.micro_batches())
        self._print(
            f"dry run: one optimiser step OK (loss {metrics['loss']:.4f}, grad norm "
            f"{metrics['grad_norm']:.3g}); nothing was written"
        )
        return None

    def _print(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)


def _cache_root() -> Path:
    from hrm_codegen.tokenization import hrm_codegen_home

    return hrm_codegen_home()


def train(cfg: DictConfig, evaluators: tuple[Evaluator, ...] = ()) -> Path | None:
    """Run one training stage as configured; returns the run dir (None for dry_run).

    `evaluators` add metrics at every evaluation (`hrm_codegen.train_cli` passes MBPP pass@1)."""
    return Trainer(cfg, evaluators).run()


__all__ = [
    "ConfigError",
    "MicroBatch",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "USER_ERRORS",
    "build_model",
    "matched_depth",
    "model_classes",
    "other_architecture_fields",
    "run_dir_from_config",
    "train",
    "validate_config",
]
