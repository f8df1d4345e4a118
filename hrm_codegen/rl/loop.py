"""The GSPO loop: sample on the KV cache, reward in the sandbox, update with the sequence ratio.

One step (`GSPOLoop.step`):

1. `gspo.tasks_per_step` tasks from a seeded permutation of the benchmark split (the same on every
   rank); data-parallel rank r takes tasks r, r + W, ... of them.
2. `gspo.group_size` samples per task from the current policy (`generate_ids`, temperature
   `gspo.temperature`, no top-p/top-k, so the sampling distribution is the policy whose ratio is
   taken), cut at the benchmark's stop strings; a row that ended on EOS keeps EOS as its last action.
   An HRM with ACT halting samples each prompt's group at the number of segments its Q head asks
   for (generation's rule, `prepare_for_decoding`, applied to that prompt alone), and every
   log-probability of its rows (policy, old policy, reference) is taken at that same number.
3. Rewards from the sandbox (`rewards.compute_rewards`), group-normalised advantages.
4. `gspo.steps_per_generation` AdamW updates of the GSPO objective on the batch (micro-batched,
   gradients summed over ranks by `Distributed.sum_gradients`, not DDP: ranks update on different
   numbers of active rows), against log-probs of the policy that sampled it.
   Rows with zero advantage are skipped when `beta` is 0: they carry no gradient.

The loop is built from the LM loop's components (docs/DESIGN.md, "Training components"): the
processes (`training/distributed.py`), the run dir and config snapshot (`run_dir.py`), the
checkpoint manager (`checkpoint/`, and `best/` by `train.best_metric`, val/pass@1 in
experiment=gspo) and the SIGTERM/SIGINT stop (`preemption.py`). So the run dir has what the LM
trainer writes (`config.yaml`, `metrics.jsonl` with `step` and `tokens_seen` per row,
`checkpoint/`), `scripts/plot_runs.py` plots it, `scripts/evaluate.py --ckpt` and `init_from=` load
it, and `resume=true` continues it (weights, AdamW state, RNG, task position) to the weights an
uninterrupted run ends on. Starting weights come from `init_from` (a fine-tuned run).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from hrm_codegen.data import CodeTask, load_benchmark
from hrm_codegen.data.prompts import extract_completion, format_prompt, stop_sequences
from hrm_codegen.generation import encode_prompt, generate_ids, truncate_at_stop
from hrm_codegen.rl.gspo import (
    group_advantages,
    groups_with_signal,
    gspo_objective,
    k3_kl,
    token_log_probs,
)
from hrm_codegen.rl.rewards import RewardConfig, compute_rewards
from hrm_codegen.run_layout import (
    CHECKPOINT_DIR,
    TRAINER_STATE,
    CheckpointError,
    resolve_checkpoint_dir,
)
from hrm_codegen.runtime import apply_threads, runtime_record
from hrm_codegen.tokenization import tokenizer_fingerprint
from hrm_codegen.training.checkpoint_manager import CheckpointManager
from hrm_codegen.training.checkpointing import (
    rng_state,
    set_rng_state,
)
from hrm_codegen.training.config_checks import check_numbers
from hrm_codegen.training.distributed import Distributed, DistributedConfigError
from hrm_codegen.training.logging import RunLogger
from hrm_codegen.training.optim import lr_at_step, optimizer_from_config, set_lr
from hrm_codegen.training.periodic_eval import EvalSchedule
from hrm_codegen.training.preemption import StopSignal, TrainingInterrupted
from hrm_codegen.training.run_dir import (
    RunDirError,
    display_path,
    find_resume_checkpoint,
    run_dir_from_config,
    run_dir_of,
    write_config_snapshot,
)

# How generated ids become text, as in `generation.generate` (special tokens such as EOS dropped).
DECODE_KWARGS = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


class GSPOConfigError(ValueError):
    """A `gspo.*` (or related) setting that cannot work, with what to set instead."""


# Errors a user fixes from the command line; launchers print them without a traceback.
USER_ERRORS = (
    GSPOConfigError,
    DistributedConfigError,
    RunDirError,
    CheckpointError,
    FileNotFoundError,
)


@dataclass(frozen=True)
class GSPOSettings:
    """The `gspo` block of the config (configs/experiment/gspo.yaml documents each field)."""

    benchmark: str
    split: str | None
    limit: int | None
    tasks_per_step: int
    group_size: int
    steps_per_generation: int
    eps_low: float
    eps_high: float
    beta: float
    temperature: float
    max_new_tokens: int
    generation_batch_size: int
    micro_batch_size: int
    reward: RewardConfig
    eval_split: str | None
    eval_limit: int | None
    eval_interval: int

    @classmethod
    def from_config(cls, block: Any) -> GSPOSettings:
        if block is None:
            raise GSPOConfigError("the config has no `gspo` block: pick experiment=gspo")
        block = (
            OmegaConf.to_container(block, resolve=True) if not isinstance(block, dict) else block
        )
        reward = dict(block.get("reward") or {})
        evaluation = dict(block.get("eval") or {})
        settings = cls(
            benchmark=str(block.get("benchmark", "mbpp")),
            split=block.get("split", "train"),
            limit=block.get("limit"),
            tasks_per_step=int(block.get("tasks_per_step", 8)),
            group_size=int(block.get("group_size", 8)),
            steps_per_generation=int(block.get("steps_per_generation", 1)),
            eps_low=float(block.get("eps_low", 3e-4)),
            eps_high=float(block.get("eps_high", 4e-4)),
            beta=float(block.get("beta", 0.0)),
            temperature=float(block.get("temperature", 1.0)),
            max_new_tokens=int(block.get("max_new_tokens", 192)),
            generation_batch_size=int(block.get("generation_batch_size", 64)),
            micro_batch_size=int(block.get("micro_batch_size", 16)),
            reward=RewardConfig(
                partial_credit=bool(reward.get("partial_credit", False)),
                format_penalty=float(reward.get("format_penalty", 0.0)),
                timeout=float(reward.get("timeout", 5.0)),
                memory_mb=int(reward.get("memory_mb") or RewardConfig.memory_mb),
                workers=reward.get("workers"),
                sandbox=str(reward.get("sandbox", "auto")),
            ),
            eval_split=evaluation.get("split"),
            eval_limit=evaluation.get("limit"),
            eval_interval=int(evaluation.get("interval") or 0),
        )
        settings.check()
        return settings

    def check(self) -> None:
        positive = {
            "tasks_per_step": self.tasks_per_step,
            "steps_per_generation": self.steps_per_generation,
            "max_new_tokens": self.max_new_tokens,
            "generation_batch_size": self.generation_batch_size,
            "micro_batch_size": self.micro_batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise GSPOConfigError(f"gspo.{name}={value} must be >= 1")
        if self.group_size < 2:
            raise GSPOConfigError(
                f"gspo.group_size={self.group_size}: advantages compare samples within a group, "
                "so it needs at least 2 (8 or more is usual)"
            )
        if not (0 <= self.eps_low < 1 and self.eps_high >= 0):
            raise GSPOConfigError(
                f"gspo.eps_low={self.eps_low}, eps_high={self.eps_high}: the clip range is "
                "[1 - eps_low, 1 + eps_high] with 0 <= eps_low < 1 (paper: 3e-4 / 4e-4)"
            )
        if self.beta < 0:
            raise GSPOConfigError(f"gspo.beta={self.beta} must be >= 0 (0 = no KL term)")
        if not self.temperature > 0:
            raise GSPOConfigError(
                f"gspo.temperature={self.temperature}: GSPO samples its groups, so it must be > 0"
            )


@dataclass
class SampledBatch:
    """This rank's completions of one step, padded for the policy forward."""

    tasks: list[CodeTask]  # one per row
    input_ids: torch.Tensor  # [N, S] prompt + completion[:-1], right-padded
    targets: torch.Tensor  # [N, S] the next token at each position
    mask: torch.Tensor  # [N, S] 1 where the target is a completion token
    completions: list[str]
    truncated: list[bool]
    prompt_tokens: int
    completion_tokens: int
    # [N] the ACT segments each row was sampled with (its prompt's decision); None without ACT
    segments: torch.Tensor | None = None


def uses_act_halting(model: torch.nn.Module) -> bool:
    """Whether `model` decides its number of segments per prompt (an HRM with a Q head and
    halt_max_steps > 1): its training-mode forward is then ACT with random exploration, not the
    policy generation samples from, so GSPO scores it at the sampled segment count instead."""
    config = getattr(model, "config", None)
    return (
        hasattr(model, "prepare_for_decoding")
        and getattr(model, "q_head", None) is not None
        and int(getattr(config, "halt_max_steps", 1)) > 1
    )


@contextlib.contextmanager
def forced_segments(model: torch.nn.Module, segments: int) -> Iterator[None]:
    """Run `model` at `segments` ACT segments, as generation ran it: evaluation mode (the
    forward generation samples from; the HRM has no dropout, so gradients are the training
    mode's), with `set_inference_schedule(segments=...)`; mode and schedule are put back after."""
    was_training = model.training
    h_cycles, l_cycles = model.inference_h_cycles, model.inference_l_cycles
    previous = model.inference_segments
    model.eval()
    model.set_inference_schedule(h_cycles, l_cycles, segments)
    try:
        yield
    finally:
        model.set_inference_schedule(h_cycles, l_cycles, previous)
        model.train(was_training)


class GSPOLoop:
    """GSPO from a checkpoint; `run()` trains `train.max_steps` steps and returns the run dir."""

    def __init__(self, cfg: DictConfig) -> None:
        check_numbers(cfg)  # every numeric value, one line per mistake (as the LM loop)
        if str(cfg.train.get("schedule", "cosine")) != "cosine":
            raise GSPOConfigError(
                f"train.schedule={cfg.train.schedule}: loop=gspo decays its learning rate by "
                "cosine only; pass train.schedule=cosine"
            )
        self.cfg = cfg
        threads = cfg.get("threads") or {}
        apply_threads(threads.get("intra_op"), threads.get("inter_op"))
        self.settings = GSPOSettings.from_config(cfg.get("gspo"))
        self._build_distributed()
        self._build_run_dir()
        self._build_policy()
        self.optimizer = optimizer_from_config(self.model, cfg.train)
        self.max_steps = int(cfg.train.max_steps)
        self.stop_at = int(cfg.train.get("stop_at_step") or self.max_steps)
        if self.stop_at > self.max_steps:
            raise GSPOConfigError(
                f"train.stop_at_step={self.stop_at} exceeds train.max_steps={self.max_steps}"
            )
        self.tasks = self._load_tasks(self.settings.split, self.settings.limit)
        self.eval_tasks = (
            self._load_tasks(self.settings.eval_split, self.settings.eval_limit)
            if self.settings.eval_split and self.settings.eval_interval > 0
            else []
        )
        self.stop = stop_sequences(self.tasks[0])
        self.step = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self.seen_task_ids: list[list[str]] = []  # this rank's tasks per step (tests read it)
        self._order: list[int] = []
        self.checkpoints = self._build_checkpoint_manager()
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)

    def _build_distributed(self) -> None:
        """The processes (one per launcher process) and this one's device; GSPO runs in float32."""
        self.dist = Distributed(str(self.cfg.get("device", "auto")))
        self.rank, self.world = self.dist.rank, self.dist.world
        self.is_main = self.dist.is_main
        self.device = self.dist.device
        if self.settings.tasks_per_step % self.world:
            raise GSPOConfigError(
                f"gspo.tasks_per_step={self.settings.tasks_per_step} does not split over "
                f"{self.world} processes; make it a multiple of {self.world}"
            )

    def _build_run_dir(self) -> None:
        """The run dir and, with `resume`, the checkpoint to continue (the main process decides;
        ranks could resolve Hydra's `${now:}` a second apart), and the starting weights'
        folder: `init_from`, or on resume the one the checkpoint started from."""
        cfg = self.cfg
        if not cfg.get("init_from") and not cfg.get("resume"):
            raise GSPOConfigError(
                "GSPO starts from a fine-tuned model: pass init_from=<run dir or checkpoint dir> "
                "(e.g. a run of experiment=quickstart)"
            )
        run_dir = resume_ckpt = None
        if self.is_main:
            run_dir = run_dir_from_config(cfg)
            if cfg.get("resume"):
                explicit = bool(cfg.get("run_dir"))
                resume_ckpt = find_resume_checkpoint(cfg.resume, run_dir, explicit=explicit)
                run_dir = run_dir_of(resume_ckpt)
        self.run_dir, self.resume_ckpt = self.dist.broadcast([run_dir, resume_ckpt])
        init_from = cfg.get("init_from")
        if self.resume_ckpt is not None:
            state = json.loads((self.resume_ckpt / TRAINER_STATE).read_text())
            if state.get("loop") != "gspo":
                raise CheckpointError(
                    f"{self.resume_ckpt} was not saved by loop=gspo; resume continues a GSPO "
                    "run (start one from this checkpoint with init_from=)"
                )
            init_from = init_from or state["init_from"]
        self.init_dir = resolve_checkpoint_dir(str(init_from))

    def _build_policy(self) -> None:
        """The policy (from `init_from`), its tokenizer, and the frozen reference when beta > 0
        (the starting weights also on resume, which restores the policy's later)."""
        from hrm_codegen.model import load_model
        from hrm_codegen.tokenization import load_tokenizer

        torch.manual_seed(int(self.cfg.seed))
        self.model = load_model(self.init_dir, device=self.device)
        self.act = uses_act_halting(self.model)
        if not (self.init_dir / "tokenizer.json").is_file():
            raise CheckpointError(f"{self.init_dir} has no tokenizer.json to sample with")
        self.tokenizer = load_tokenizer(self.init_dir)
        self.reference = None
        if self.settings.beta > 0:
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)

    def _build_checkpoint_manager(self) -> CheckpointManager:
        """`checkpoint/` and `best/` by `train.best_metric` (experiment=gspo: val/pass@1)."""
        train = self.cfg.train
        try:
            return CheckpointManager(
                self.run_dir,
                best_metric=train.get("best_metric"),
                best_mode=train.get("best_mode"),
                is_main=self.is_main,
            )
        except ValueError as error:  # a best_metric whose direction cannot be inferred
            raise GSPOConfigError(str(error)) from error

    # ------------------------------------------------------------------ data

    def _load_tasks(self, split: str | None, limit: int | None) -> list[CodeTask]:
        tasks = load_benchmark(self.settings.benchmark, split=split)
        room = int(self.model.config.max_seq_len) - self.settings.max_new_tokens
        fitting = [t for t in tasks if len(encode_prompt(self.tokenizer, format_prompt(t))) < room]
        if limit:
            fitting = fitting[: int(limit)]
        if not fitting:
            raise GSPOConfigError(
                f"no {self.settings.benchmark} {split!r} task has a prompt shorter than "
                f"max_seq_len - gspo.max_new_tokens = {room} tokens; lower gspo.max_new_tokens"
            )
        return fitting

    def step_tasks(self, step: int) -> list[CodeTask]:
        """This rank's share of step `step`'s tasks: a seeded permutation per epoch, read in order."""
        count, num = self.settings.tasks_per_step, len(self.tasks)
        start = step * count
        while len(self._order) < start + count:
            epoch = len(self._order) // num
            generator = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + epoch)
            self._order += torch.randperm(num, generator=generator).tolist()
        chosen = [self.tasks[i] for i in self._order[start : start + count]]
        return chosen[self.rank :: self.world]

    # ------------------------------------------------------------------ sampling

    def decide_segments(self, prompts: list[list[int]]) -> list[int] | None:
        """Each prompt's ACT segment count under the current policy; None without ACT halting.

        Generation's rule (`prepare_for_decoding`: the first segment whose Q head, at the prompt's
        last token, prefers halting, else halt_max_steps), called as `generate_ids` calls it on a
        prefill group, but on each prompt alone: generation gives a group the max over its
        prompts, which would make a prompt's count depend on the prompts batched with it; alone,
        it is the count `generate_ids` decides for that prompt, and scoring can replay it.
        """
        if not self.act:
            return None
        was_training = self.model.training
        self.model.eval()
        counts = []
        try:
            for prompt in prompts:
                ids = torch.tensor([prompt], dtype=torch.long, device=self.device)
                counts.append(int(self.model.prepare_for_decoding(ids, torch.ones_like(ids))))
        finally:
            self.model.end_decoding()
            self.model.train(was_training)
        return counts

    def sample(self, tasks: list[CodeTask], seed: int) -> SampledBatch:
        """`group_size` completions per task from the current policy, padded for scoring."""
        s, tok = self.settings, self.tokenizer
        prompts = [encode_prompt(tok, format_prompt(task)) for task in tasks]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        options = {
            "max_new_tokens": s.max_new_tokens,
            "num_samples": s.group_size,
            "do_sample": True,
            "temperature": s.temperature,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": pad,
            "stop": self.stop,
            "tokenizer": tok,
            "seed": seed,
            "batch_size": s.generation_batch_size,
        }
        counts = self.decide_segments(prompts)
        if counts is None:
            ids = generate_ids(self.model, prompts, **options)
        else:  # one call per segment count; rows are seeded by (seed, prompt, sample), not batch
            ids = [[] for _ in prompts]
            for count in sorted(set(counts)):
                chosen = [i for i, c in enumerate(counts) if c == count]
                with forced_segments(self.model, count):
                    part = generate_ids(self.model, [prompts[i] for i in chosen], **options)
                for i, samples in zip(chosen, part):
                    ids[i] = samples
        rows, row_tasks, completions, truncated = [], [], [], []
        max_len = int(self.model.config.max_seq_len)
        for task, prompt, samples in zip(tasks, prompts, ids):
            budget = min(s.max_new_tokens, max_len - len(prompt))
            for tokens in samples:
                text = tok.decode(tokens, **DECODE_KWARGS)
                cut = truncate_at_stop(text, self.stop)
                stopped = len(cut) < len(text)
                hit_limit = not stopped and len(tokens) >= budget
                actions = list(tokens)
                if not stopped and not hit_limit:  # it ended by sampling EOS: that is an action
                    actions.append(tok.eos_token_id)
                rows.append((prompt, actions))
                row_tasks.append(task)
                completions.append(extract_completion(task, cut))
                truncated.append(hit_limit)
        width = max(len(p) + len(a) for p, a in rows) - 1
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        targets = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.float32)
        for r, (prompt, actions) in enumerate(rows):
            full = torch.tensor(prompt + actions, dtype=torch.long)
            n = len(full) - 1
            input_ids[r, :n], targets[r, :n] = full[:-1], full[1:]
            mask[r, len(prompt) - 1 : n] = 1.0
        return SampledBatch(
            tasks=row_tasks,
            input_ids=input_ids,
            targets=targets,
            mask=mask,
            completions=completions,
            truncated=truncated,
            prompt_tokens=sum(len(p) for p, _ in rows),
            completion_tokens=sum(len(a) for _, a in rows),
            segments=(
                None
                if counts is None
                else torch.tensor(counts, dtype=torch.long).repeat_interleave(s.group_size)
            ),
        )

    def log_probs(
        self, model: torch.nn.Module, rows: torch.Tensor, batch: SampledBatch
    ) -> tuple[torch.Tensor, int]:
        """Per-token log-probs [len(rows), S] of the sampled tokens under `model` (tempered).

        With ACT, each row at the segment count it was sampled with (`forced_segments`), rows of
        one count in one forward: the policy, the old policy and the reference are all scored so,
        on the same rows in the same batches, so the first update's ratios are exactly 1.
        """
        width = int(batch.mask[rows].sum(0).nonzero().max()) + 1 if len(rows) else 1
        input_ids = batch.input_ids[rows, :width].to(self.device)
        targets = batch.targets[rows, :width].to(self.device)
        temperature = self.settings.temperature
        if batch.segments is None:
            logits = model(input_ids).logits  # right padding: causal attention never sees it
            return token_log_probs(logits, targets, temperature), width
        counts = batch.segments[rows]
        parts, order = [], []
        for count in sorted(set(counts.tolist())):
            pick = (counts == count).nonzero().flatten()
            index = pick.to(self.device)
            with forced_segments(model, count):
                logits = model(input_ids[index]).logits
            parts.append(token_log_probs(logits, targets[index], temperature))
            order.append(pick)
        inverse = torch.argsort(torch.cat(order)).to(self.device)
        return torch.cat(parts)[inverse], width

    # ------------------------------------------------------------------ one step

    def step_once(self) -> dict[str, float]:
        """Sample, reward and update once; returns the step's metrics (global over ranks)."""
        s = self.settings
        tasks = self.step_tasks(self.step)
        self.seen_task_ids.append([t.task_id for t in tasks])
        started = time.perf_counter()
        batch = self.sample(tasks, seed=int(self.cfg.seed) * 7919 + self.step)
        generated = time.perf_counter()
        rewards = compute_rewards(
            batch.tasks, batch.completions, s.reward, truncated=batch.truncated
        )
        executed = time.perf_counter()
        values = torch.tensor([r.value for r in rewards]).view(len(tasks), s.group_size)
        advantages = group_advantages(values).flatten()
        signal = groups_with_signal(values)
        active = torch.arange(len(rewards)) if s.beta > 0 else advantages.nonzero().flatten()
        sums = self.dist.sum(
            [
                len(rewards),
                values.sum(),
                (values**2).sum(),
                sum(r.passed for r in rewards),
                len(tasks),
                signal.sum(),
                batch.completion_tokens,
                batch.prompt_tokens,
                len(active),
                sum(r.malformed for r in rewards),
                int(batch.segments.sum()) if batch.segments is not None else 0,
            ]
        )
        n, reward_sum, reward_sq, passed, groups, with_signal = sums[:6]
        completion_tokens, prompt_tokens, active_global, malformed, segments = sums[6:]
        update = self._update(batch, advantages, active, int(active_global))
        done = time.perf_counter()
        self.tokens_seen += int(prompt_tokens + completion_tokens)
        self.train_seconds += done - started
        mean = reward_sum / n
        metrics = {
            "train/reward_mean": mean,
            "train/reward_std": math.sqrt(max(0.0, reward_sq / n - mean**2)),
            "train/pass_rate": passed / n,
            "train/groups_with_signal": with_signal / groups,
            "train/malformed": malformed / n,
            "train/completion_len": completion_tokens / n,
            "train/gen_samples_per_s": n / max(generated - started, 1e-9),
            "train/exec_samples_per_s": n / max(executed - generated, 1e-9),
            "train/update_samples_per_s": n / max(done - executed, 1e-9),
            "train/lr": self.optimizer.param_groups[0]["lr"],
            **update,
        }
        if self.act:  # the mean ACT segments the samples were drawn (and scored) with
            metrics["train/act_segments"] = segments / n
        return metrics

    def _update(
        self,
        batch: SampledBatch,
        advantages: torch.Tensor,
        active: torch.Tensor,
        active_global: int,
    ) -> dict[str, float]:
        """`steps_per_generation` optimiser steps of the GSPO objective on the active rows."""
        s = self.settings
        if active_global == 0:  # no group has signal anywhere: an update would only decay weights
            return {
                "train/loss": 0.0,  # every advantage is 0: so is the objective
                "train/clip_fraction": 0.0,
                "train/kl_old": 0.0,
                "train/kl": 0.0,
                "train/grad_norm": 0.0,
                "train/active_samples": 0.0,
                "train/updates_skipped": 1.0,
            }
        chunks = [
            active[i : i + s.micro_batch_size] for i in range(0, len(active), s.micro_batch_size)
        ]
        self.model.train()
        with torch.no_grad():
            old = [self.log_probs(self.model, rows, batch)[0] for rows in chunks]
            ref = (
                [self.log_probs(self.reference, rows, batch)[0] for rows in chunks]
                if self.reference is not None
                else [None] * len(chunks)
            )
        params = [p for p in self.model.parameters() if p.requires_grad]
        clipped = kl_ref = kl_old = loss_sum = grad_norm = 0.0
        for update in range(s.steps_per_generation):
            self._set_update_lr(self.step * s.steps_per_generation + update)
            self.optimizer.zero_grad(set_to_none=True)
            for sums in self._backward(chunks, old, ref, batch, advantages, active_global):
                loss_sum += sums[0]
                clipped += sums[1]
                kl_ref += sums[2]
                kl_old += sums[3]
            grad_norm += self._clip_and_step(params)
        clipped, kl_ref, kl_old, loss_sum = self.dist.sum([clipped, kl_ref, kl_old, loss_sum])
        updates = active_global * s.steps_per_generation
        metrics = {
            "train/loss": loss_sum / s.steps_per_generation,
            "train/clip_fraction": clipped / updates,
            "train/kl_old": kl_old / updates,  # k3 to the sampling policy (0 on the first update)
            "train/grad_norm": grad_norm / s.steps_per_generation,
            "train/active_samples": float(active_global),
            "train/updates_skipped": 0.0,
        }
        metrics["train/kl"] = (
            kl_ref / updates if self.reference is not None else metrics["train/kl_old"]
        )
        return metrics

    def _set_update_lr(self, index: int) -> None:
        """The cosine learning rate of policy update `index` (`steps_per_generation` per step)."""
        per_step = self.settings.steps_per_generation
        set_lr(
            self.optimizer,
            lr_at_step(
                index,
                base_lr=float(self.cfg.train.lr),
                warmup_steps=int(self.cfg.train.warmup_steps),
                max_steps=self.max_steps * per_step,
                min_ratio=float(self.cfg.train.lr_min_ratio),
            ),
        )

    def _backward(
        self,
        chunks: list[torch.Tensor],
        old: list[torch.Tensor],
        ref: list[torch.Tensor | None],
        batch: SampledBatch,
        advantages: torch.Tensor,
        active_global: int,
    ) -> Iterator[tuple[float, float, float, float]]:
        """Back-propagate the GSPO objective of each micro-batch of rows; yields each one's
        (loss, clipped rows, KL to the reference, k3 KL to the sampling policy) after its
        backward."""
        s = self.settings
        for rows, logp_old, logp_ref in zip(chunks, old, ref):
            logp_new, width = self.log_probs(self.model, rows, batch)
            mask = batch.mask[rows, :width].to(self.device)
            out = gspo_objective(
                logp_new,
                logp_old,
                advantages[rows].to(self.device),
                mask,
                eps_low=s.eps_low,
                eps_high=s.eps_high,
                logp_ref=logp_ref,
                beta=s.beta,
                normalizer=active_global,
            )
            out.loss.backward()
            yield (
                float(out.loss.detach()),
                float(out.clipped.sum()),
                float(out.kl.sum()),
                float(k3_kl(logp_new.detach(), logp_old, mask).sum()),
            )

    def _clip_and_step(self, params: list[torch.nn.Parameter]) -> float:
        """Sum the gradients over ranks, clip them (`train.grad_clip`), step AdamW; returns the
        gradient norm before clipping."""
        self.dist.sum_gradients(params)
        grad_clip = self.cfg.train.get("grad_clip")
        norm = torch.nn.utils.clip_grad_norm_(
            params, float(grad_clip) if grad_clip else float("inf")
        )
        if not torch.isfinite(norm):
            raise FloatingPointError(
                f"GSPO step {self.step}: non-finite gradient norm {float(norm)}; lower train.lr"
            )
        self.optimizer.step()
        return float(norm)

    # ------------------------------------------------------------------ evaluation and saving

    def evaluate(self) -> dict[str, float]:
        """Greedy pass@1 on the eval tasks (main rank; the others wait)."""
        from hrm_codegen.evaluation.harness import evaluate_model
        from hrm_codegen.evaluation.sampling import SamplingSettings

        result: dict[str, float] = {}
        if self.is_main and self.eval_tasks:
            r = self.settings.reward
            summary = evaluate_model(
                self.model,
                self.tokenizer,
                self.eval_tasks,
                num_samples=1,
                ks=(1,),
                sampling=SamplingSettings(
                    temperature=0.0,
                    max_new_tokens=self.settings.max_new_tokens,
                    batch_size=self.settings.generation_batch_size,
                ),
                timeout=r.timeout,
                workers=r.workers,
                memory_mb=r.memory_mb,
                sandbox=r.sandbox,
                progress=False,
            )
            result = {"val/pass@1": summary.pass_at_k["pass@1"]}
        self.dist.barrier()
        return result

    def run_config(self) -> DictConfig:
        """The run config, with `model` replaced by the architecture actually loaded (the run
        dir's config.yaml and each checkpoint's)."""
        saved = json.loads((self.init_dir / "config.json").read_text())
        model = {
            "type": saved.get("model_type"),
            **{k: v for k, v in saved.items() if k != "model_type"},
        }
        cfg = OmegaConf.to_container(self.cfg, resolve=True)
        cfg["model"] = model
        cfg["init_from"] = str(self.init_dir)
        return OmegaConf.create(cfg)

    def config_yaml(self) -> str:
        """`run_config()` as the YAML text a checkpoint keeps."""
        return OmegaConf.to_yaml(self.run_config())

    def data_position(self) -> dict[str, int]:
        """Where the task stream stands: `step_tasks` is a pure function of the step, the seed
        and the task list, so this is what a resumed run must find unchanged."""
        return {
            "num_tasks": len(self.tasks),
            "tasks_per_step": self.settings.tasks_per_step,
            "tasks_seen": self.step * self.settings.tasks_per_step,
        }

    def save(self, metrics: dict[str, float] | None = None, *, latest: bool = True) -> Path:
        """Checkpoint this step (every process's RNG gathered): the latest when `latest`, and
        `best/` too when `metrics` improve on it. Every process calls it; the main one writes."""
        rngs = self.dist.gather(rng_state())
        state = {
            "loop": "gspo",
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "init_from": str(self.init_dir),
            "num_processes": self.world,
            "data": self.data_position(),
            "rng": rngs,
        }
        self.checkpoints.save(
            self.step,
            self.model,
            self.optimizer,
            state,
            tokenizer=self.tokenizer,
            config_yaml=self.config_yaml() if self.is_main else None,
            metrics=metrics,
            latest=latest,
        )
        self.dist.barrier()
        return self.run_dir / CHECKPOINT_DIR

    def _restore(self, ckpt: Path) -> None:
        """Continue `ckpt`: weights, AdamW state, counters and every process's RNG state; the
        task stream continues from the step (`data_position`)."""
        state = self.checkpoints.restore(self.model, self.optimizer, ckpt=ckpt)
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        saved, ours = state["data"], self.data_position()
        if saved != ours:
            raise CheckpointError(
                f"{ckpt} was trained on another task stream ({saved}, this config gives "
                f"{ours}); resume with the same gspo.* settings"
            )
        rngs = state["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank])
        elif self.is_main:
            print(
                f"warning: {ckpt} was saved by {len(rngs)} processes, this run has "
                f"{self.world}; random streams restart from the seed",
                flush=True,
            )
        if self.is_main:
            print(f"resumed {ckpt} at step {self.step}", flush=True)

    def _improves_best(self, metrics: dict[str, float]) -> bool:
        """Whether `metrics` beat the best so far, as the main process judges it (evaluation
        runs there only), agreed by every process."""
        improved = [self.checkpoints.improves(metrics) if self.is_main else False]
        return bool(self.dist.broadcast(improved)[0])

    def run(self) -> Path:
        """Train to `train.max_steps` (or `train.stop_at_step`) GSPO steps; checkpoint at
        `checkpoint_interval` and the end, and `best/` whenever `train.best_metric` improves.

        On SIGTERM/SIGINT the current step finishes, a checkpoint is saved at it, and
        `TrainingInterrupted` is raised; `resume=true` continues from it."""
        if self.is_main:
            write_config_snapshot(self.run_dir, self.run_config())
        logger = RunLogger(
            self.run_dir,
            OmegaConf.to_container(self.cfg.logger, resolve=True),
            config=OmegaConf.to_container(self.cfg, resolve=True),
            is_main=self.is_main,
            total_steps=self.max_steps,
            initial_step=self.step,
            run_name=self.run_dir.name,
        )
        self._announce(logger)
        interrupted: int | None = None
        try:
            with StopSignal() as stop:
                interrupted = self._train(logger, stop)
        finally:
            logger.close()
        checkpoints = self.checkpoints
        if checkpoints.best_metric and not checkpoints.best_seen and self.is_main:
            print(
                f"note: no evaluation reported train.best_metric={checkpoints.best_metric}, "
                "so no best/ was written",
                flush=True,
            )
        self.dist.end()
        if interrupted is not None:
            raise TrainingInterrupted(
                interrupted, self.step, display_path(self.run_dir / CHECKPOINT_DIR)
            )
        if self.is_main:
            print(self.run_dir / CHECKPOINT_DIR, flush=True)
        return self.run_dir

    def _announce(self, logger: RunLogger) -> None:
        """The run's one-line summary and its provenance record."""
        s = self.settings
        logger.print(
            f"GSPO from {self.init_dir}: {len(self.tasks)} {s.benchmark} tasks, "
            f"{s.tasks_per_step} tasks x {s.group_size} samples per step over {self.world} "
            f"process(es), {s.steps_per_generation} update(s) per generation, clip "
            f"[1-{s.eps_low}, 1+{s.eps_high}], beta {s.beta}"
        )
        record = {
            "tokenizer_fingerprint": tokenizer_fingerprint(self.tokenizer),
            **runtime_record(),
        }
        logger.log({f"provenance/{k}": v for k, v in record.items()}, self.step)

    def _train(self, logger: RunLogger, stop: StopSignal) -> int | None:
        """The steps from `self.step` to `stop_at`; returns the stop signal if one ended them."""
        cfg = self.cfg
        log_interval = int(cfg.get("log_interval") or 1)
        schedule = EvalSchedule(
            max(1, self.settings.eval_interval),
            int(cfg.get("checkpoint_interval") or self.max_steps),
            self.stop_at,
        )
        progress = {"tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds}
        if self.eval_tasks and self.step == 0:
            logger.log({**self.evaluate(), **progress}, step=0)
        window: list[dict[str, float]] = []
        interrupted: int | None = None
        while self.step < self.stop_at:
            metrics = self.step_once()
            window.append(metrics)
            self.step += 1
            logger.advance()
            progress = {"tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds}
            interrupted = self.dist.agreed_signal(stop.requested)
            at_end = self.step == self.stop_at or interrupted is not None
            if self.step % log_interval == 0 or at_end:
                mean = {k: sum(m.get(k, 0.0) for m in window) / len(window) for k in window[-1]}
                logger.log({**mean, **progress}, step=self.step)
                window = []
            evaluation: dict[str, float] = {}
            if self.eval_tasks and schedule.evaluates(self.step) and interrupted is None:
                evaluation = self.evaluate()
                logger.log({**evaluation, **progress}, step=self.step)
            candidates = {**metrics, **evaluation}  # best/ may follow a train/ or val/ metric
            if schedule.checkpoints(self.step) or at_end:
                self.save(candidates)
            elif self._improves_best(candidates):
                self.save(candidates, latest=False)  # best/ only
            if interrupted is not None:
                break
        return interrupted


def train_gspo(cfg: DictConfig) -> Path:
    """Run GSPO as configured (`experiment=gspo`, `init_from=<run>`); returns the run dir."""
    return GSPOLoop(cfg).run()
