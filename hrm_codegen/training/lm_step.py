"""One optimiser step of the LM loop: micro-batches, forward/backward (plain or ACT), clip, AdamW.

`LMStep` is built by the trainer from what one step needs and nothing else: the model (and its
DDP-wrapped and compiled forms), the optimizer, the EMA, the processes (`Distributed`, whose
accelerator carries the precision and the loss scaler) and the resolved `TrainSettings` (batch
split, clipping, learning-rate schedule). The trainer keeps the counters: `step(...)` is told the
step number and the FLOP model of that step, and returns its metrics. Batches are weighted by
label tokens (see trainer.py).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch

from hrm_codegen.training.data import DataConfigError, StageData, count_label_tokens
from hrm_codegen.training.distributed import Distributed
from hrm_codegen.training.optim import set_lr
from hrm_codegen.training.periodic_eval import lm_loss_of
from hrm_codegen.training.settings import TrainSettings


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the run stops instead of corrupting weights."""


class LMStep:
    """Forward/backward/update of one global batch (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        dist: Distributed,
        settings: TrainSettings,
        *,
        ddp_model: torch.nn.Module,
        train_model: torch.nn.Module,
        ema: Any = None,
        compile: bool = False,
        needs_mask: bool = True,
    ) -> None:
        self.model = model  # the unwrapped module (parameters, config, ACT segments)
        self.ddp_model = ddp_model  # what `no_sync` applies to
        self.train_model = train_model  # what the plain forward calls (compiled when asked)
        self.optimizer = optimizer
        self.dist = dist
        self.accelerator = dist.accelerator
        self.settings = settings
        self.ema = ema
        self.compile = compile
        # The mask is only needed by the Q head: right-padded batches under causal attention never
        # let a real token see a pad, so dropping the mask keeps SDPA on its fast causal path.
        self.needs_mask = needs_mask
        self._act_segment = None

    def micro_batches(self, data: StageData, indices: list[int]) -> list[MicroBatch]:
        """This process's micro-batches of the global batch `indices` (into `data.train`), on
        the device, each with its real-token and label-token counts read off the CPU batch (no
        device sync).

        Models with a Q head get `lengths` (real tokens per right-padded row) instead of the
        attention mask, so attention keeps the fused causal path."""
        micro, accum = self.settings.micro_batch_size, self.settings.grad_accum_steps
        rank, world = self.dist.rank, self.dist.world
        has_q_head = getattr(self.model, "q_head", None) is not None
        batches = []
        for j in range(accum):
            start = (j * world + rank) * micro
            batch = data.collate([data.train[i] for i in indices[start : start + micro]])
            tokens, labels = real_tokens(batch), count_label_tokens(batch)
            if has_q_head:
                batch = with_lengths(batch)
            batches.append(MicroBatch(self.to_device(batch), tokens, labels))
        return batches

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch` on this process's device, without the attention mask unless it is needed."""
        if not self.needs_mask:
            batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        return {k: v.to(self.accelerator.device, non_blocking=True) for k, v in batch.items()}

    def step(self, micro_batches: list[MicroBatch], step: int, flops: Any) -> dict[str, float]:
        """Forward/backward over the micro-batches, clip, one AdamW step; returns step metrics
        (`tokens`: the global batch's real tokens; `flops`: as run, from the FLOP model `flops`
        of this step's depth).

        Counts come from the CPU batches; losses and metrics stay device tensors and are read
        back once, after clipping (one host sync per step, which the non-finite check needs
        anyway). Training-mode ACT back-propagates segment by segment (`_act_backward`)."""
        acc = self.accelerator
        world = acc.num_processes
        lr = self.settings.lr(step)  # cosine or WSD (train.schedule)
        set_lr(self.optimizer, lr)
        progress = getattr(self.model, "set_training_progress", None)
        if progress is not None:  # a schedule inside the model, e.g. HRM-Text's L_bp warm-up
            progress(step / max(1, self.settings.max_steps))
        local = [sum(mb.labels for mb in micro_batches), sum(mb.tokens for mb in micro_batches)]
        if world > 1:  # one all-reduce of the CPU counts; the weights stay on the device
            counts = acc.reduce(torch.tensor(local, dtype=torch.float64, device=acc.device))
            global_labels = counts[0]
        else:
            counts = torch.tensor(local, dtype=torch.float64)
            global_labels = float(local[0])
            if global_labels == 0:
                raise DataConfigError(f"step {step}: the global batch has no label tokens")
        if uses_act(self.model):
            sums, extra, step_flops = self._act_backward(micro_batches, global_labels, flops)
        else:
            sums, extra, step_flops = self._plain_backward(micro_batches, global_labels, flops)
        clip = self.settings.grad_clip
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), clip or math.inf)
        keys = sorted(extra)
        values = [sums[0], sums[1], torch.as_tensor(grad_norm, device=acc.device).double()]
        values += [step_flops.to(acc.device)] + [extra[k].to(acc.device) for k in keys]
        host = torch.stack(values).tolist() + counts.tolist()  # the step's one host sync
        loss, lm_loss, grad_norm, global_flops = host[:4]
        extra_host = dict(zip(keys, host[4 : 4 + len(keys)]))
        global_labels, global_tokens = host[-2:]
        if global_labels == 0:
            raise DataConfigError(f"step {step}: the global batch has no label tokens")
        if not (math.isfinite(loss) and (math.isfinite(grad_norm) or acc.scaler is not None)):
            raise NonFiniteLossError(
                f"non-finite training loss at step {step + 1} (loss={loss}, "
                f"grad_norm={grad_norm}); stopping before the weights are corrupted"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and not self.optimizer.step_was_skipped:
            self.ema.update(self.model)
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
        self, micro_batches: list[MicroBatch], global_labels: float | torch.Tensor, count: Any
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
            flops += mb.tokens * count.training_flops_per_token(mb.batch["input_ids"].shape[1])
            with nullcontext() if last else acc.no_sync(self.ddp_model):
                out = self.train_model(**mb.batch)
                weight = mb.labels * world / global_labels
                if isinstance(weight, torch.Tensor):
                    weight = weight.float()
                acc.backward(out.loss * weight)
            sums[0] += out.loss.detach().double() * mb.labels
            sums[1] += lm_loss_of(out).detach().double() * mb.labels
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
        self, micro_batches: list[MicroBatch], global_labels: float | torch.Tensor, count: Any
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
            per_segment = count.segment_flops_per_token(seq_len)
            flops += mb.tokens * count.lookahead_flops_per_token(seq_len)
            lengths = batch["lengths"]
            for segment in act_segments(
                config, segment_fn, batch["input_ids"], batch["labels"], lengths
            ):
                acc.backward(segment.loss_sum * inverse_labels)
                stats.add(segment)
                flops += lengths[segment.rows].sum().double() * per_segment
        vector = stats.vector
        if acc.num_processes > 1:
            self.dist.sum_gradients(self.model.parameters())
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
        if self._act_segment is None:
            fn = self.model.act_segment
            if self.compile:
                fn = torch.compile(fn)

            def segment(*args, **kwargs):
                with self.accelerator.autocast():
                    return fn(*args, **kwargs)

            self._act_segment = segment
        return self._act_segment


class MicroBatch(NamedTuple):
    """One micro-batch on the device with counts taken from its CPU copy."""

    batch: dict[str, torch.Tensor]
    tokens: int  # real (non-padding) tokens
    labels: int  # label tokens (labels != -100)


def uses_act(model: torch.nn.Module) -> bool:
    return getattr(model, "q_head", None) is not None and model.config.halt_max_steps > 1


def with_lengths(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    mask = batch.get("attention_mask")
    if mask is not None:
        return int(mask.sum())
    return int(batch["input_ids"].numel())


__all__ = ["LMStep", "MicroBatch", "NonFiniteLossError", "real_tokens", "uses_act", "with_lengths"]
