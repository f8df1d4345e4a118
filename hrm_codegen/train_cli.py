"""What `scripts/train_codegen.py` runs: picks the training loop and wires evaluation into it.

`hrm_codegen.training` and `hrm_codegen.evaluation` never import each other; this module imports
both. For `loop: lm` it runs `hrm_codegen.training.train` with MBPP greedy pass@1 injected as an
extra evaluator (`eval.pass_at_1`, fine-tuning only); for `loop: gspo` it hands the config to
`hrm_codegen.rl.train_gspo`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

LOOPS = ("lm", "gspo")


class LoopConfigError(ValueError):
    """`loop` names no loop, or a loop whose package is not installed."""


def pass_at_1_evaluator(model: torch.nn.Module, context: Any) -> dict[str, float]:
    """Greedy pass@1 on the stage's MBPP validation tasks (the first `eval.limit`), run in the
    sandbox; {} unless `eval.pass_at_1` is on and the stage fine-tunes on tasks."""
    cfg = context.cfg
    e = cfg.eval
    tasks = list(getattr(context.data, "eval_tasks", None) or [])
    if not (bool(e.pass_at_1) and cfg.data.stage == "sft" and tasks):
        return {}
    from hrm_codegen.evaluation.harness import evaluate_model

    tasks = tasks[: int(e.limit)] if e.limit else tasks
    output_dir = (
        Path(context.run_dir) / "eval" / f"step{context.step:07d}"
        if context.run_dir is not None
        else None
    )
    with context.autocast():
        summary = evaluate_model(
            model,
            context.tokenizer,
            tasks,
            num_samples=1,
            ks=(1,),
            temperature=0.0,
            max_new_tokens=int(e.max_new_tokens),
            batch_size=int(e.batch_size),
            timeout=float(e.timeout),
            workers=e.workers,
            output_dir=output_dir,
            progress=False,
        )
    return {"val/pass@1": float(summary.pass_at_k["pass@1"]), "val/pass@1_tasks": len(tasks)}


def lm_evaluators(cfg: DictConfig) -> tuple[Any, ...]:
    """The evaluators the LM loop gets on top of its validation loss and bpb."""
    del cfg  # pass@1 decides per evaluation (it needs the stage's tasks)
    return (pass_at_1_evaluator,)


def run_training(cfg: DictConfig) -> Path | None:
    """Run the loop `cfg.loop` names (default `lm`); returns the run dir (None for a dry run)."""
    loop = cfg.get("loop") or "lm"
    if loop == "lm":
        from hrm_codegen.training import train

        return train(cfg, evaluators=lm_evaluators(cfg))
    if loop == "gspo":
        try:
            rl = importlib.import_module("hrm_codegen.rl")
            train_gspo = rl.train_gspo
        except (ImportError, AttributeError) as error:
            raise LoopConfigError(
                f"loop=gspo needs hrm_codegen.rl.train_gspo, which cannot be imported ({error}); "
                "install the package with its RL module or use loop=lm"
            ) from error
        return train_gspo(cfg)
    raise LoopConfigError(f"loop={loop!r} is not one of {LOOPS}")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors the launcher prints without a traceback: the training ones, the loop's, GSPO's."""
    from hrm_codegen.training import USER_ERRORS

    errors: tuple[type[BaseException], ...] = (*USER_ERRORS, LoopConfigError)
    rl_loop = sys.modules.get("hrm_codegen.rl.loop")  # only when loop=gspo imported it
    rl_errors = tuple(getattr(rl_loop, "USER_ERRORS", ()))
    if hasattr(rl_loop, "GSPOConfigError"):
        rl_errors += (rl_loop.GSPOConfigError,)
    return errors + rl_errors


def main(cfg: DictConfig) -> None:
    """Train as configured; a user error prints one line and exits 2, a SIGTERM/SIGINT stop
    (checkpoint saved) exits 128 + the signal number."""
    from hrm_codegen.training.preemption import TrainingInterrupted

    try:
        run_training(cfg)
    except TrainingInterrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


__all__ = [
    "LOOPS",
    "LoopConfigError",
    "lm_evaluators",
    "main",
    "pass_at_1_evaluator",
    "run_training",
]
