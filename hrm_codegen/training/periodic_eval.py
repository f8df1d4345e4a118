"""Evaluation during training: when it runs, what it scores, and hooks for more.

- `EvalSchedule`: which steps evaluate and which checkpoint (`eval.interval`, `checkpoint_interval`,
  or `eval.points`/`eval.checkpoint_points` evenly spaced steps; always the last step).
- `build_bpb_sets` / `validation_metrics`: validation loss, perplexity and bits per byte, the
  metrics every LM run logs.
- `Evaluator`: `evaluator(model, context) -> {metric: value}`, extra metrics a caller injects (the
  composition layer `hrm_codegen.train_cli` adds MBPP pass@1 this way, so training never imports
  evaluation). `context` is an `EvalContext`; an evaluator returns {} when it does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hrm_codegen.bpb import (
    BpbTotals,
    batch_bpb_totals,
    batch_bpb_totals_by_language,
    batched,
    dataset_bpb,
    language_codes_of,
)
from hrm_codegen.training.data import count_label_tokens
from hrm_codegen.training.logging import nested_bar


@dataclass(frozen=True)
class EvalContext:
    """What an injected evaluator may use besides the model (already in eval mode, EMA applied)."""

    step: int
    run_dir: Path | None
    cfg: Any  # the run's config (DictConfig)
    tokenizer: Any
    data: Any  # training.data.StageData: eval_tasks, val, ...
    device: torch.device
    autocast: Callable[[], Any]


Evaluator = Callable[[torch.nn.Module, EvalContext], dict[str, float]]


def interval_for_points(max_steps: int, points: int) -> int:
    """The interval that gives `points` evenly spaced steps over `max_steps`."""
    return max(1, math.ceil(max_steps / int(points)))


@dataclass(frozen=True)
class EvalSchedule:
    """Which steps evaluate and which save; the last step (`stop_at`) always does both."""

    eval_interval: int
    checkpoint_interval: int
    stop_at: int

    def evaluates(self, step: int) -> bool:
        return step % self.eval_interval == 0 or step == self.stop_at

    def checkpoints(self, step: int) -> bool:
        return step % self.checkpoint_interval == 0 or step == self.stop_at


def build_bpb_sets(
    cfg: Any, data: Any, tokenizer: Any, emit: Callable[[str], None]
) -> dict[str, tuple[Any, Any]]:
    """Held-out text scored in bits per byte at every evaluation, by metric name.

    `val/bpb`: the corpus validation split (the stage's own when pretraining, `eval.bpb_corpus`
    otherwise); `val/mbpp_bpb`: MBPP validation reference solutions given their prompts (the
    stage's validation set when fine-tuning on MBPP, else loaded when `eval.mbpp_bpb`). A set
    that cannot be built is said once (through `emit`), not silently skipped.
    """
    from hrm_codegen.data.corpus import stack_windows
    from hrm_codegen.data.sft import SFTCollator, SFTDataset
    from hrm_codegen.training.data import load_tasks

    e, data_cfg = cfg.eval, cfg.data
    sets: dict[str, tuple[Any, Any]] = {}
    if data_cfg.stage == "pretrain":
        if data.val is not None:
            sets["val/bpb"] = (data.val, stack_windows)
    elif e.get("bpb_corpus"):
        from hrm_codegen.data.corpus import PackedDataset

        try:
            windows = PackedDataset(
                Path(str(e.bpb_corpus)).expanduser(), "validation", data.max_seq_len
            )
            sets["val/bpb"] = (windows, stack_windows)
        except (FileNotFoundError, ValueError) as error:
            emit(f"note: val/bpb is off: eval.bpb_corpus={e.bpb_corpus}: {error}")
    if data_cfg.stage == "sft":
        if data.val is not None and len(data.val):
            # the fine-tuning data's own bpb: val/mbpp_bpb for either MBPP, val/exec_bpb, ...
            benchmark = str(data_cfg.get("benchmark") or "mbpp")
            name = "mbpp" if benchmark.startswith("mbpp") else benchmark
            sets[f"val/{name}_bpb"] = (data.val, data.collate)
    elif e.get("mbpp_bpb", True):
        mbpp_cfg = {"benchmark": e.get("mbpp_benchmark") or "mbpp", "path": e.get("mbpp_path")}
        try:
            tasks = load_tasks(mbpp_cfg, "validation", None)
            examples = SFTDataset(tasks, tokenizer, int(cfg.model.max_seq_len))
            prefix_lm = bool(cfg.model.get("prefix_lm", False))
            collate = SFTCollator(tokenizer.pad_token_id, pad_to_multiple_of=8, prefix_lm=prefix_lm)
            sets["val/mbpp_bpb"] = (examples, collate)
            if len(examples) < len(tasks):
                emit(
                    f"note: val/mbpp_bpb scores {len(examples)} of {len(tasks)} MBPP "
                    "validation tasks (the others exceed model.max_seq_len)"
                )
        except Exception as error:  # no benchmark files and no hub: say so, train on
            emit(
                f"note: val/mbpp_bpb is off ({type(error).__name__}: {error}); set "
                "HRM_CODEGEN_DATA_DIR or eval.mbpp_path, or eval.mbpp_bpb=false"
            )
    return sets


def lm_loss_of(out: Any) -> torch.Tensor:
    """The language-modelling part of a model output's loss (without the Q head's)."""
    return out.lm_loss if getattr(out, "lm_loss", None) is not None else out.loss


@torch.no_grad()
def validation_metrics(
    model: torch.nn.Module,
    val: Any,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    bpb_sets: dict[str, tuple[Any, Any]],
    byte_lengths: torch.Tensor,
    *,
    batch_size: int,
    max_batches: int | None,
    to_device: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    device: torch.device,
    autocast: Callable[[], Any],
) -> dict[str, float]:
    """`val/loss`, `val/ppl` on up to `max_batches` batches of `val`, and bits per byte of each
    set in `bpb_sets` (the validation split's own bpb comes from the same logits).

    Every batch counts on one transient bar under the training bar (`nested_bar`): on a busy CPU
    an evaluation takes minutes, which a frozen training bar does not explain.
    """
    if val is None or len(val) == 0:
        return {}
    # The sets not scored from the logits of `val`, with their batch limits (val/bpb: as val's;
    # MBPP: every task, always).
    apart = {
        name: (dataset, set_collate, max_batches if name == "val/bpb" else None)
        for name, (dataset, set_collate) in bpb_sets.items()
        if not (dataset is val and (name == "val/bpb" or max_batches is None))
    }
    # val/bpb/<language> beside val/bpb when the validation split holds several languages
    languages = list(getattr(val, "language_names", []))
    if len(languages) < 2 or "val/bpb" not in bpb_sets or "val/bpb" in apart:
        languages = []
    by_language = {name: BpbTotals() for name in languages}
    batches = _batch_count(len(val), batch_size, max_batches)
    batches += sum(_batch_count(len(d), batch_size, limit) for d, _, limit in apart.values())
    bar = nested_bar(batches, desc="eval", unit="batch")
    try:
        total, count = 0.0, 0
        own = BpbTotals()
        for number, cpu_batch in enumerate(
            _counted(batched(val, collate, batch_size, max_batches), bar)
        ):
            batch = to_device(cpu_batch)
            with autocast():
                out = model(**batch)
            n = count_label_tokens(batch)
            total += float(lm_loss_of(out)) * n
            count += n
            loss_kind = getattr(model.config, "loss", "softmax")
            own = own + batch_bpb_totals(out.logits, batch["labels"], byte_lengths, loss_kind)
            if languages:
                first = number * batch_size
                codes = language_codes_of(val, first, first + len(cpu_batch["labels"]))
                parts = batch_bpb_totals_by_language(
                    out.logits, batch["labels"], codes, languages, byte_lengths, loss_kind
                )
                for name, part in parts.items():
                    by_language[name] = by_language[name] + part
        loss = total / max(count, 1)
        metrics = {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0))}
        for name in bpb_sets:
            if name not in apart:
                metrics[name] = own.bpb  # the same examples, already scored
                continue
            dataset, set_collate, limit = apart[name]
            totals = dataset_bpb(
                model,
                _counted(batched(dataset, set_collate, batch_size, limit), bar),
                byte_lengths,
                device=device,
                autocast=autocast,
            )
            metrics[name] = totals.bpb
        for name, totals in by_language.items():
            if totals.tokens:
                metrics[f"val/bpb/{name}"] = totals.bpb
    finally:
        bar.close()
    return metrics


def _batch_count(items: int, batch_size: int, max_batches: int | None) -> int:
    """How many batches `batched` yields for `items` examples."""
    count = -(-items // batch_size)
    return count if max_batches is None else min(count, int(max_batches))


def _counted(batches: Iterable[Any], bar: Any) -> Iterator[Any]:
    """`batches`, each counted on `bar` once the consumer is done with it."""
    for batch in batches:
        yield batch
        bar.update()


def run_evaluators(
    evaluators: Iterable[Evaluator], model: torch.nn.Module, context: EvalContext
) -> dict[str, float]:
    """Every injected evaluator's metrics, merged in order (a later one wins a shared name)."""
    metrics: dict[str, float] = {}
    for evaluator in evaluators:
        metrics.update(evaluator(model, context) or {})
    return metrics


__all__ = [
    "EvalContext",
    "EvalSchedule",
    "Evaluator",
    "build_bpb_sets",
    "interval_for_points",
    "lm_loss_of",
    "run_evaluators",
    "validation_metrics",
]
