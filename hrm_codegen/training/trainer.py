"""The training loop: one loop for pretraining (packed corpus windows) and MBPP fine-tuning.

`train(cfg)` builds the tokenizer, data, model, AdamW and (optionally) an EMA from a Hydra config, then
runs `train.max_steps` optimiser steps under `accelerate` (one process on CPU/GPU, or DDP over many
with `accelerate launch`), with mixed precision, gradient accumulation and clipping. It evaluates every
`eval.interval` steps, checkpoints every `checkpoint_interval` steps and at the end, and returns the
run dir. See configs/codegen_base.yaml for every setting.

Batches are weighted by label tokens: each micro-batch's mean loss is scaled by its share of the
global batch's label tokens (summed over micro-batches and processes), so the update is the mean over
every label token of the global batch however it is split into micro-batches and processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from hrm_codegen.bpb import BpbTotals, batch_bpb_totals, batched, dataset_bpb, token_byte_lengths
from hrm_codegen.training.checkpointing import (
    CHECKPOINT_DIR,
    CheckpointError,
    find_latest_run,
    load_ema_weights,
    load_model_weights,
    load_training_state,
    resolve_checkpoint_dir,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hrm_codegen.training.data import (
    BatchOrder,
    DataConfigError,
    StageData,
    build_stage_data,
    build_tokenizer,
    count_label_tokens,
)
from hrm_codegen.training.ema import EMA
from hrm_codegen.training.flops import flops_count, peak_flops
from hrm_codegen.training.logging import RunLogger
from hrm_codegen.training.optim import build_optimizer, lr_at_step, set_lr

MODEL_TYPES = ("hrm", "transformer")
MIXED_PRECISION = ("no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A config value that cannot work, named together with what to set instead."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the run stops instead of corrupting weights."""


# Errors a user can fix from the command line; the launcher prints them without a traceback.
USER_ERRORS = (ConfigError, DataConfigError, CheckpointError, NonFiniteLossError, FileNotFoundError)


# ----------------------------------------------------------------------------- building blocks


def model_classes() -> dict[str, tuple[type, type]]:
    from hrm_codegen.model import (
        HRMConfig,
        HRMForCausalLM,
        TransformerConfig,
        TransformerForCausalLM,
    )

    return {
        "hrm": (HRMConfig, HRMForCausalLM),
        "transformer": (TransformerConfig, TransformerForCausalLM),
    }


def other_architecture_fields(model_cfg: dict[str, Any]) -> list[str]:
    """Settings in `model_cfg` that only the *other* model type has.

    Experiments size the HRM (H_layers, ...); `experiment=quickstart model=transformer` should still
    build the baseline at the experiment's width, so those fields are set aside (and reported), while
    a field neither model knows stays an error.
    """
    classes = model_classes()
    model_type = model_cfg.get("type")
    if model_type not in classes:
        return []
    own = {f.name for f in dataclasses.fields(classes[model_type][0])}
    others = {
        f.name
        for name, (config_class, _) in classes.items()
        if name != model_type
        for f in dataclasses.fields(config_class)
    }
    return sorted(key for key in model_cfg if key in others - own)


def matched_depth(model_cfg: dict[str, Any], match: str, default: int | None) -> int | None:
    """Depth of a transformer baseline matched to the HRM sized in the same config.

    An experiment sizes the HRM (H_layers, L_layers, cycles); a baseline run of that experiment
    (`model=transformer` / `model=transformer_deep`) takes its depth from those sizes, so the
    comparison stays fair at any scale: `params` stacks the HRM's distinct blocks
    (H_layers + L_layers), `compute` as many blocks as the HRM applies per forward,
    H_cycles * (L_cycles * L_layers + H_layers). Without HRM sizes, `n_layers` stands.
    """
    if match not in ("params", "compute"):
        raise ConfigError(f"model.match={match!r} must be 'params', 'compute' or null")
    sizes = {k: model_cfg.get(k) for k in ("H_layers", "L_layers", "H_cycles", "L_cycles")}
    if match == "params" and sizes["H_layers"] and sizes["L_layers"]:
        return sizes["H_layers"] + sizes["L_layers"]
    if match == "compute" and all(sizes.values()):
        return sizes["H_cycles"] * (sizes["L_cycles"] * sizes["L_layers"] + sizes["H_layers"])
    return default


def build_model(model_cfg: dict[str, Any], vocab_size: int) -> torch.nn.Module:
    """Our HRM or transformer from the `model` config group; vocab_size comes from the tokenizer.

    Fields only the other architecture has are left out (see `other_architecture_fields`)."""
    from hrm_codegen.model.checkpoint import config_from_dict

    ignored = other_architecture_fields(model_cfg)
    fields = {k: v for k, v in model_cfg.items() if k not in ignored}
    model_type = fields.pop("type", None)
    match = fields.pop("match", None)
    if model_type == "transformer" and match is not None:
        fields["n_layers"] = matched_depth(model_cfg, match, fields.get("n_layers"))
    classes = model_classes()
    if model_type not in classes:
        raise ConfigError(
            f"model.type={model_type!r} is not one of {sorted(classes)} "
            "(pick model=hrm, model=transformer or model=transformer_deep)"
        )
    config_class, model_class = classes[model_type]
    try:
        config = config_from_dict(
            config_class, {**fields, "vocab_size": vocab_size}, source=f"model={model_type} config"
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return model_class(config)


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
    if cfg.init_from and cfg.init_from_upstream:
        raise ConfigError("set init_from or init_from_upstream, not both")
    if cfg.init_from_upstream and cfg.model.type != "hrm":
        raise ConfigError("init_from_upstream loads a Sapient HRM checkpoint: it needs model=hrm")


def run_dir_from_config(cfg: DictConfig) -> Path:
    """`run_dir` when set, else the Hydra run dir of this job."""
    if cfg.run_dir:
        return Path(str(cfg.run_dir)).expanduser()
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise ConfigError(
        "no run dir: set run_dir=... (train() was called outside scripts/train_codegen.py)"
    )


def find_resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path:
    """The checkpoint `resume` points at (see configs/codegen_base.yaml)."""
    if cfg.resume is not True:
        return resolve_checkpoint_dir(str(cfg.resume))
    if (run_dir / CHECKPOINT_DIR / "trainer_state.json").is_file():
        return run_dir / CHECKPOINT_DIR
    if cfg.run_dir:
        # An explicit run dir names the run to continue; its siblings may be unrelated runs.
        raise CheckpointError(
            f"resume=true but run_dir={run_dir} has no checkpoint ({CHECKPOINT_DIR}/"
            "trainer_state.json); pass resume=<run dir> to continue another run"
        )
    latest = find_latest_run(run_dir.parent)
    if latest is None:
        raise CheckpointError(
            f"resume=true but no run under {run_dir.parent} has a checkpoint; pass resume=<run dir>"
        )
    return latest / CHECKPOINT_DIR


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """State of one training run; `run()` is the loop. Build it with `Trainer(cfg)`."""

    def __init__(self, cfg: DictConfig) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import broadcast_object_list, set_seed

        validate_config(cfg)
        self.cfg = cfg
        # accelerate keeps one process-wide state; reset its per-run part (precision, device
        # placement) so train() can run again in the same process with other settings.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.dry_run = bool(cfg.dry_run)

        # Every process agrees on one run dir (ranks can resolve ${now:} a second apart).
        run_dir = resume_ckpt = None
        if self.is_main and not self.dry_run:
            run_dir = run_dir_from_config(cfg)
            if cfg.resume:
                resume_ckpt = find_resume_checkpoint(cfg, run_dir)
                run_dir = resume_ckpt.parent
        shared = [run_dir, resume_ckpt]
        if acc.num_processes > 1:
            broadcast_object_list(shared)
        self.run_dir, self.resume_ckpt = shared
        if cfg.resume and self.dry_run:
            raise ConfigError("dry_run=true cannot resume (it writes nothing); drop one of them")
        init_ckpt = resolve_checkpoint_dir(str(cfg.init_from)) if cfg.init_from else None
        source_ckpt = self.resume_ckpt or init_ckpt

        set_seed(int(cfg.seed))  # the same initial weights on every process
        cache_root = _cache_root()
        with acc.main_process_first():
            if source_ckpt is not None:
                from hrm_codegen.tokenization import load_tokenizer

                self.tokenizer = load_tokenizer(source_ckpt)
            else:
                self.tokenizer = build_tokenizer(
                    OmegaConf.to_container(cfg.tokenizer, resolve=True),
                    OmegaConf.to_container(cfg.data, resolve=True),
                    cache_root,
                )
            self.data: StageData = build_stage_data(
                OmegaConf.to_container(cfg.data, resolve=True), self.tokenizer
            )
        if acc.num_processes > 1:
            # Every process indexes the same global batch order into its own copy of the data;
            # copies of different sizes (e.g. an augmented variant timing out on one rank) would
            # make ranks read mismatched samples.
            from accelerate.utils import gather_object

            sizes = gather_object([len(self.data.train)])
            if len(set(sizes)) > 1:
                raise DataConfigError(
                    f"the processes built training sets of different sizes {sizes}; "
                    "the data must be deterministic (check data.augment)"
                )
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        ignored = other_architecture_fields(model_cfg)
        self.model = build_model(model_cfg, len(self.tokenizer))
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
        self.model.to(acc.device)
        # The mask is only needed by the Q head: right-padded batches under causal attention never
        # let a real token see a pad, so dropping the mask keeps SDPA on its fast causal path.
        self.needs_mask = getattr(self.model, "q_head", None) is not None

        t = cfg.train
        self.optimizer = build_optimizer(
            self.model,
            lr=float(t.lr),
            weight_decay=float(t.weight_decay),
            betas=(float(t.beta1), float(t.beta2)),
            eps=float(t.eps),
        )
        self.ema = EMA(self.model, float(t.ema_decay)) if t.ema_decay else None
        self.global_batch = int(t.micro_batch_size) * int(t.grad_accum_steps) * acc.num_processes
        self.order = BatchOrder(len(self.data.train), seed=int(cfg.seed))
        self.step = 0
        self.tokens_seen = 0
        self.flops_seen = 0.0  # cumulative training FLOPs (forward + backward as executed)
        self.train_seconds = 0.0  # cumulative wall time of training steps (not eval/checkpoints)
        self.last_good_checkpoint: Path | None = None
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        else:
            set_seed(int(cfg.seed) + acc.process_index)  # per-process randomness (ACT exploration)

        self.ddp_model, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.train_model = torch.compile(self.ddp_model) if cfg.compile else self.ddp_model
        self.flops = flops_count(self.model)
        self.peak = peak_flops(acc.device)
        self._resolve_schedule()
        self.byte_lengths = token_byte_lengths(self.tokenizer)
        self.bpb_sets = self._bpb_sets() if self.is_main else {}

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
            steps = max(1, round(float(t.flop_budget) / per_step))
            t.max_steps = steps
            self._print(
                f"train.flop_budget={float(t.flop_budget):.3g}: {steps} steps of "
                f"~{per_step:.3g} FLOPs ({self.flops.training_flops_per_token(self._mean_len()):.3g} "
                "per token)"
            )
        max_steps = int(t.max_steps)
        if t.get("warmup_fraction") is not None:
            t.warmup_steps = round(float(t.warmup_fraction) * max_steps)
        if cfg.eval.get("points") is not None:
            cfg.eval.interval = max(1, math.ceil(max_steps / int(cfg.eval.points)))
        if cfg.eval.get("checkpoint_points") is not None:
            cfg.checkpoint_interval = max(1, math.ceil(max_steps / int(cfg.eval.checkpoint_points)))
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

    def flops_per_step_estimate(self) -> float:
        """Training FLOPs of one optimiser step: global batch x (mean length x FLOPs per token at
        that length), from a sample of up to 256 training examples (exact for packed windows)."""
        lengths = self._sample_lengths()
        per_example = [n * self.flops.training_flops_per_token(n) for n in lengths]
        return self.global_batch * sum(per_example) / len(per_example)

    def _bpb_sets(self) -> dict[str, tuple[Any, Any]]:
        """Held-out text scored in bits per byte at every evaluation, by metric name.

        `val/bpb`: the corpus validation split (the stage's own when pretraining, `eval.bpb_corpus`
        otherwise); `val/mbpp_bpb`: MBPP validation reference solutions given their prompts (the
        stage's validation set when fine-tuning on MBPP, else loaded when `eval.mbpp_bpb`). A set
        that cannot be built is said once, not silently skipped.
        """
        from hrm_codegen.data.sft import SFTCollator, SFTDataset
        from hrm_codegen.training.data import load_tasks, stack_windows

        e, data_cfg = self.cfg.eval, self.cfg.data
        sets: dict[str, tuple[Any, Any]] = {}
        if data_cfg.stage == "pretrain":
            if self.data.val is not None:
                sets["val/bpb"] = (self.data.val, stack_windows)
        elif e.get("bpb_corpus"):
            from hrm_codegen.data.corpus import PackedDataset

            try:
                windows = PackedDataset(
                    Path(str(e.bpb_corpus)).expanduser(), "validation", self.data.max_seq_len
                )
                sets["val/bpb"] = (windows, stack_windows)
            except (FileNotFoundError, ValueError) as error:
                self._print(f"note: val/bpb is off: eval.bpb_corpus={e.bpb_corpus}: {error}")
        if data_cfg.stage == "sft":
            if self.data.val is not None and len(self.data.val):
                sets["val/mbpp_bpb"] = (self.data.val, self.data.collate)
        elif e.get("mbpp_bpb", True):
            mbpp_cfg = {"benchmark": e.get("mbpp_benchmark") or "mbpp", "path": e.get("mbpp_path")}
            try:
                tasks = load_tasks(mbpp_cfg, "validation", None)
                examples = SFTDataset(tasks, self.tokenizer, int(self.cfg.model.max_seq_len))
                collate = SFTCollator(self.tokenizer.pad_token_id, pad_to_multiple_of=8)
                sets["val/mbpp_bpb"] = (examples, collate)
                if len(examples) < len(tasks):
                    self._print(
                        f"note: val/mbpp_bpb scores {len(examples)} of {len(tasks)} MBPP "
                        "validation tasks (the others exceed model.max_seq_len)"
                    )
            except Exception as error:  # no benchmark files and no hub: say so, train on
                self._print(
                    f"note: val/mbpp_bpb is off ({type(error).__name__}: {error}); set "
                    "HRM_CODEGEN_DATA_DIR or eval.mbpp_path, or eval.mbpp_bpb=false"
                )
        return sets

    # ------------------------------------------------------------------ checkpoint state

    def _restore(self, ckpt: Path) -> None:
        load_model_weights(ckpt, self.model, raw=True)
        state, optim = load_training_state(ckpt)
        self.optimizer.load_state_dict(optim["optimizer"])
        scaler = self.accelerator.scaler
        if scaler is not None and optim.get("scaler") is not None:
            scaler.load_state_dict(optim["scaler"])
        if self.ema is not None:
            shadow = load_ema_weights(ckpt)
            if shadow is None:
                raise CheckpointError(
                    f"{ckpt} was saved without EMA but train.ema_decay is set; resume with "
                    "train.ema_decay=null or start a new stage with init_from="
                )
            self.ema.load_state_dict(shadow, int(state.get("ema_updates", 0)))
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.flops_seen = float(state.get("flops_seen", 0.0))
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
        self._print(f"resumed {ckpt} at step {self.step}")

    def save(self) -> Path:
        """Write the checkpoint (main process) after gathering every process's RNG state."""
        from accelerate.utils import gather_object

        rngs = gather_object([rng_state()])
        ckpt = self.run_dir / CHECKPOINT_DIR
        if self.is_main:
            state = {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "flops_seen": self.flops_seen,
                "train_seconds": self.train_seconds,
                "data": self.order.state_dict(),
                "global_batch_size": self.global_batch,
                "num_processes": self.accelerator.num_processes,
                "ema_updates": self.ema.num_updates if self.ema is not None else 0,
                "rng": rngs,
            }
            save_checkpoint(
                ckpt,
                model=self.model,
                tokenizer=self.tokenizer,
                optimizer=self.optimizer,
                trainer_state=state,
                config_yaml=OmegaConf.to_yaml(self.cfg, resolve=True),
                ema=self.ema,
                scaler=self.accelerator.scaler,
            )
        self.accelerator.wait_for_everyone()
        self.last_good_checkpoint = ckpt
        return ckpt

    # ------------------------------------------------------------------ one step

    def _micro_batches(self) -> list[MicroBatch]:
        """This process's micro-batches of the next global batch, on the device, each with its
        real-token and label-token counts read off the CPU batch (no device sync).

        Models with a Q head get `lengths` (real tokens per right-padded row) instead of the
        attention mask, so attention keeps the fused causal path."""
        t = self.cfg.train
        micro, accum = int(t.micro_batch_size), int(t.grad_accum_steps)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        indices = self.order.take(self.global_batch)
        has_q_head = getattr(self.model, "q_head", None) is not None
        batches = []
        for j in range(accum):
            start = (j * world + rank) * micro
            batch = self.data.collate([self.data.train[i] for i in indices[start : start + micro]])
            tokens, labels = _real_tokens(batch), count_label_tokens(batch)
            if has_q_head:
                batch = _with_lengths(batch)
            batches.append(MicroBatch(self._to_device(batch), tokens, labels))
        return batches

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.needs_mask:
            batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        return {k: v.to(self.accelerator.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, micro_batches: list[MicroBatch]) -> dict[str, float]:
        """Forward/backward over the micro-batches, clip, one AdamW step; returns step metrics.

        Counts come from the CPU batches; losses and metrics stay device tensors and are read
        back once, after clipping (one host sync per step, which the non-finite check needs
        anyway). Training-mode ACT back-propagates segment by segment (`_act_backward`)."""
        acc = self.accelerator
        world = acc.num_processes
        lr = lr_at_step(
            self.step,
            base_lr=float(self.cfg.train.lr),
            warmup_steps=int(self.cfg.train.warmup_steps),
            max_steps=int(self.cfg.train.max_steps),
            min_ratio=float(self.cfg.train.lr_min_ratio),
        )
        set_lr(self.optimizer, lr)
        local = [sum(mb.labels for mb in micro_batches), sum(mb.tokens for mb in micro_batches)]
        if world > 1:  # one all-reduce of the CPU counts; the weights stay on the device
            counts = acc.reduce(torch.tensor(local, dtype=torch.float64, device=acc.device))
            global_labels = counts[0]
        else:
            counts = torch.tensor(local, dtype=torch.float64)
            global_labels = float(local[0])
            if global_labels == 0:
                raise DataConfigError(f"step {self.step}: the global batch has no label tokens")
        if _uses_act(self.model):
            sums, extra, flops = self._act_backward(micro_batches, global_labels)
        else:
            sums, extra, flops = self._plain_backward(micro_batches, global_labels)
        clip = self.cfg.train.grad_clip
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), clip or math.inf)
        keys = sorted(extra)
        values = [sums[0], sums[1], torch.as_tensor(grad_norm, device=acc.device).double()]
        values += [flops.to(acc.device)] + [extra[k].to(acc.device) for k in keys]
        host = torch.stack(values).tolist() + counts.tolist()  # the step's one host sync
        loss, lm_loss, grad_norm, global_flops = host[:4]
        extra_host = dict(zip(keys, host[4 : 4 + len(keys)]))
        global_labels, global_tokens = host[-2:]
        if global_labels == 0:
            raise DataConfigError(f"step {self.step}: the global batch has no label tokens")
        if not (math.isfinite(loss) and (math.isfinite(grad_norm) or acc.scaler is not None)):
            self._raise_non_finite(loss, grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and not self.optimizer.step_was_skipped:
            self.ema.update(self.model)
        self.step += 1
        self.tokens_seen += int(global_tokens)
        return {
            "loss": loss,
            "lm_loss": lm_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": global_tokens,
            "flops": global_flops,
            **extra_host,
        }

    def _plain_backward(
        self, micro_batches: list[MicroBatch], global_labels: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One forward/backward per micro-batch through DDP (synced on the last); each mean loss
        weighted by its share of the global label tokens. Returns the global (loss, lm loss)
        means, the model's extra metrics (mean over micro-batches and processes) and the FLOPs,
        all device tensors."""
        acc = self.accelerator
        world = acc.num_processes
        sums = torch.zeros(2, dtype=torch.float64, device=acc.device)
        extra: dict[str, torch.Tensor] = {}
        flops = 0.0
        for j, mb in enumerate(micro_batches):
            last = j == len(micro_batches) - 1
            flops += mb.tokens * self.flops.training_flops_per_token(mb.batch["input_ids"].shape[1])
            with nullcontext() if last else acc.no_sync(self.ddp_model):
                out = self.train_model(**mb.batch)
                weight = mb.labels * world / global_labels
                if isinstance(weight, torch.Tensor):
                    weight = weight.float()
                acc.backward(out.loss * weight)
            sums[0] += out.loss.detach().double() * mb.labels
            sums[1] += _lm_loss(out).detach().double() * mb.labels
            for key, value in out.metrics.items():
                mean = value.detach().double() / len(micro_batches)
                extra[key] = extra[key] + mean if key in extra else mean
        flops = torch.tensor(flops, dtype=torch.float64, device=acc.device)
        if world > 1:
            keys = sorted(extra)
            packed = acc.reduce(torch.stack([*sums, flops, *(extra[k] for k in keys)]))
            sums, flops = packed[:2], packed[2]
            extra = {k: v / world for k, v in zip(keys, packed[3:])}
        return sums / global_labels, extra, flops

    def _act_backward(
        self, micro_batches: list[MicroBatch], global_labels: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Training-mode ACT: one backward per segment from the detached carry (model/act.py).

        Each segment's summed loss is back-propagated over the step's label tokens as soon as its
        Q targets are known, so at most two segments' activations are alive and halted rows drop
        out of the batch. The denominator of the mean over (sequence, segment) pairs is only known
        at the end, so the accumulated gradient is rescaled once. Ranks run different numbers of
        segments, so this bypasses DDP's hooks (which pair one synced backward per forward) and
        all-reduces the gradients itself, once per step.
        """
        from hrm_codegen.model.act import ACTStats, act_segments

        acc = self.accelerator
        config = self.model.config
        segment_fn = self._act_segment_fn()
        stats = ACTStats(config.halt_max_steps, acc.device)
        flops = torch.zeros((), dtype=torch.float64, device=acc.device)
        inverse_labels = 1.0 / global_labels
        if isinstance(inverse_labels, torch.Tensor):
            inverse_labels = inverse_labels.float()
        for mb in micro_batches:
            batch = mb.batch
            seq_len = batch["input_ids"].shape[1]
            per_segment = self.flops.segment_flops_per_token(seq_len)
            flops += mb.tokens * self.flops.lookahead_flops_per_token(seq_len)
            lengths = batch["lengths"]
            for segment in act_segments(
                config, segment_fn, batch["input_ids"], batch["labels"], lengths
            ):
                acc.backward(segment.loss_sum * inverse_labels)
                stats.add(segment)
                flops += lengths[segment.rows].sum().double() * per_segment
        vector = stats.vector
        if acc.num_processes > 1:
            _all_reduce_gradients(self.model)
            packed = acc.reduce(torch.cat([vector, flops[None]]))
            vector, flops = packed[:-1], packed[-1]
        scale = (global_labels / vector[3].clamp_min(1)).float()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, scale)
        metrics = stats.metrics(vector)
        sums = torch.stack([metrics.pop("loss"), metrics.pop("lm_loss")])
        return sums, metrics, flops

    def _act_segment_fn(self):
        """`model.act_segment` under autocast (and torch.compile when `compile` is set)."""
        if getattr(self, "_act_segment", None) is None:
            fn = self.model.act_segment
            if self.cfg.compile:
                fn = torch.compile(fn)

            def segment(*args, **kwargs):
                with self.accelerator.autocast():
                    return fn(*args, **kwargs)

            self._act_segment = segment
        return self._act_segment

    def _raise_non_finite(self, loss: float, grad_norm: float) -> None:
        where = (
            f"last good checkpoint: {_display(self.last_good_checkpoint)} (resume=true continues "
            "from it; lower train.lr or use mixed_precision=no)"
            if self.last_good_checkpoint is not None
            else "no checkpoint was saved yet"
        )
        raise NonFiniteLossError(
            f"non-finite training loss at step {self.step + 1} (loss={loss}, "
            f"grad_norm={grad_norm}); stopping before the weights are corrupted; {where}"
        )

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss/perplexity and (MBPP) greedy pass@1 on the main process.

        Runs on the unwrapped model with the EMA weights when EMA is on, and restores every RNG
        afterwards so evaluating never changes the training that follows.
        """
        metrics: dict[str, float] = {}
        if self.is_main:
            saved_rng = rng_state()
            model = self.model
            model.eval()
            with self.ema.applied_to(model) if self.ema is not None else nullcontext():
                metrics.update(self._validation_loss(model))
                if self._wants_pass_at_1():
                    metrics.update(self._pass_at_1(model))
            model.train()
            set_rng_state(saved_rng)
        self.accelerator.wait_for_everyone()
        return metrics

    def _validation_loss(self, model: torch.nn.Module) -> dict[str, float]:
        val = self.data.val
        if val is None or len(val) == 0:
            return {}
        size = int(self.cfg.eval.batch_size)
        max_batches = self.cfg.eval.max_batches
        total, count = 0.0, 0
        own = BpbTotals()  # bpb of the validation split itself, from the same logits
        for cpu_batch in batched(val, self.data.collate, size, max_batches):
            batch = self._to_device(cpu_batch)
            with self.accelerator.autocast():
                out = model(**batch)
            n = count_label_tokens(batch)
            total += float(_lm_loss(out)) * n
            count += n
            loss_kind = getattr(model.config, "loss", "softmax")
            own = own + batch_bpb_totals(out.logits, batch["labels"], self.byte_lengths, loss_kind)
        loss = total / max(count, 1)
        metrics = {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0))}
        for name, (dataset, collate) in self.bpb_sets.items():
            if dataset is val and (name == "val/bpb" or max_batches is None):
                totals = own  # the same examples, already scored
            else:
                limit = max_batches if name == "val/bpb" else None  # MBPP: every task, always
                totals = dataset_bpb(
                    model,
                    batched(dataset, collate, size, limit),
                    self.byte_lengths,
                    device=self.accelerator.device,
                    autocast=self.accelerator.autocast,
                )
            metrics[name] = totals.bpb
        return metrics

    def _wants_pass_at_1(self) -> bool:
        return (
            bool(self.cfg.eval.pass_at_1)
            and self.cfg.data.stage == "sft"
            and bool(self.data.eval_tasks)
        )

    def _pass_at_1(self, model: torch.nn.Module) -> dict[str, float]:
        from hrm_codegen.evaluation.harness import evaluate_model

        e = self.cfg.eval
        tasks = self.data.eval_tasks[: int(e.limit)] if e.limit else self.data.eval_tasks
        with self.accelerator.autocast():
            summary = evaluate_model(
                model,
                self.tokenizer,
                tasks,
                num_samples=1,
                ks=(1,),
                temperature=0.0,
                max_new_tokens=int(e.max_new_tokens),
                batch_size=int(e.batch_size),
                timeout=float(e.timeout),
                workers=e.workers,
                output_dir=self.run_dir / "eval" / f"step{self.step:07d}",
                progress=False,
            )
        return {"val/pass@1": float(summary.pass_at_k["pass@1"]), "val/pass@1_tasks": len(tasks)}

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path | None:
        """Train to `train.max_steps` (or `train.stop_at_step`); returns the run dir."""
        cfg, acc = self.cfg, self.accelerator
        if self.dry_run:
            return self._dry_run()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        max_steps = int(cfg.train.max_steps)
        stop_at = int(cfg.train.stop_at_step or max_steps)
        self._print_summary(self._print)
        logger = RunLogger(
            self.run_dir,
            OmegaConf.to_container(cfg.logger, resolve=True),
            config=OmegaConf.to_container(cfg, resolve=True),
            is_main=self.is_main,
            total_steps=max_steps,
            initial_step=self.step,
            run_name=f"{cfg.experiment_name}/{self.run_dir.name}",
        )
        window: dict[str, float] = {}
        window_steps, window_start = 0, time.perf_counter()
        self.model.train()
        try:
            while self.step < stop_at:
                step_start = time.perf_counter()
                metrics = self.train_step(self._micro_batches())
                self.train_seconds += time.perf_counter() - step_start
                self.flops_seen += float(metrics["flops"])
                logger.advance()
                for key, value in metrics.items():
                    window[key] = window.get(key, 0.0) + value
                window_steps += 1
                at_end = self.step == stop_at
                if self.step % int(cfg.log_interval) == 0 or at_end:
                    elapsed = time.perf_counter() - window_start
                    logger.log(self._window_metrics(window, window_steps, elapsed), self.step)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if self.step % int(cfg.eval.interval) == 0 or at_end:
                    eval_metrics = self.evaluate()
                    if eval_metrics:
                        logger.log({**eval_metrics, **self._progress()}, self.step)
                        logger.print(
                            f"step {self.step} eval: "
                            + " ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items())
                        )
                    window_start = time.perf_counter()  # evaluation time is not training time
                if self.step % int(cfg.checkpoint_interval) == 0 or at_end:
                    self.save()
                    window_start = time.perf_counter()
        finally:
            logger.close()
        if acc.num_processes > 1:
            print(
                f"parameters sha256 rank {acc.process_index}/{acc.num_processes}: "
                f"{parameter_digest(self.model)}",
                flush=True,
            )
        acc.wait_for_everyone()
        self._print(f"run dir: {_display(self.run_dir)}")
        self._print(f"checkpoint: {_display(self.run_dir / CHECKPOINT_DIR)}")
        acc.end_training()
        return self.run_dir

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

    def _progress(self) -> dict[str, float]:
        """Where the run stands, carried by every logged record so curves can be drawn against
        tokens, training FLOPs or training wall time alike."""
        return {
            "tokens_seen": self.tokens_seen,
            "flops": self.flops_seen,
            "train_seconds": self.train_seconds,
        }

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
            f"process(es) x {self.cfg.train.micro_batch_size} x {self.cfg.train.grad_accum_steps} "
            f"accumulation), ~{self.tokens_per_step_estimate():,.0f} tokens per step; "
            f"device {self.accelerator.device}, mixed precision {self.cfg.mixed_precision}"
        )
        if self.run_dir is not None:
            emit(f"run dir: {_display(self.run_dir)}")

    def tokens_per_step_estimate(self) -> float:
        """Global batch x mean example length (a sample of up to 256 training examples)."""
        return self.global_batch * self._mean_len()

    def _dry_run(self) -> None:
        """Print the resolved config and a summary, take one optimiser step, write nothing."""
        self._print(OmegaConf.to_yaml(self.cfg, resolve=True))
        self._print_summary(self._print)
        self.model.train()
        metrics = self.train_step(self._micro_batches())
        self._print(
            f"dry run: one optimiser step OK (loss {metrics['loss']:.4f}, grad norm "
            f"{metrics['grad_norm']:.3g}); nothing was written"
        )
        return None

    def _print(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)


def _lm_loss(out: Any) -> torch.Tensor:
    return out.lm_loss if getattr(out, "lm_loss", None) is not None else out.loss


class MicroBatch(NamedTuple):
    """One micro-batch on the device with counts taken from its CPU copy."""

    batch: dict[str, torch.Tensor]
    tokens: int  # real (non-padding) tokens
    labels: int  # label tokens (labels != -100)


def _uses_act(model: torch.nn.Module) -> bool:
    return getattr(model, "q_head", None) is not None and model.config.halt_max_steps > 1


def _with_lengths(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CPU batch with `lengths` (real tokens per right-padded row) and no attention mask."""
    batch = dict(batch)
    mask = batch.pop("attention_mask", None)
    input_ids = batch["input_ids"]
    if mask is None:
        batch["lengths"] = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long)
        return batch
    lengths = mask.long().sum(-1)
    if not torch.equal(torch.arange(mask.shape[1]) < lengths[:, None], mask.bool()):
        raise DataConfigError("training batches must be right-padded (the Q head reads lengths)")
    batch["lengths"] = lengths
    return batch


def _all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the processes, one flat buffer per dtype."""
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        parts = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [part.view_as(g) for part, g in zip(parts, grads)])


def _real_tokens(batch: dict[str, torch.Tensor]) -> int:
    mask = batch.get("attention_mask")
    if mask is not None:
        return int(mask.sum())
    return int(batch["input_ids"].numel())


def _cache_root() -> Path:
    from hrm_codegen.tokenization import hrm_codegen_home

    return hrm_codegen_home()


def train(cfg: DictConfig) -> Path | None:
    """Run one training stage as configured; returns the run dir (None for dry_run)."""
    return Trainer(cfg).run()


__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "Trainer",
    "USER_ERRORS",
    "build_model",
    "train",
]
