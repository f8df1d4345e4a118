"""What `scripts/train_codegen.py` runs: picks the training loop and wires evaluation into it.

`hrm_codegen.training` and `hrm_codegen.evaluation` never import each other; this module imports
both. For `loop: lm` it runs `hrm_codegen.training.train` with MBPP greedy pass@1 injected as an
extra evaluator (`eval.pass_at_1`, fine-tuning only); for `loop: gspo` it hands the config to
`hrm_codegen.rl.train_gspo`.

Hydra creates its output folder (`hydra.run.dir`, e.g. `runs/<experiment>/<time>`) before the job
starts. A run that stops on a config error, or that writes elsewhere (`run_dir=...`, a resume),
would leave that folder holding nothing but Hydra's own files; `main` removes it then, and
`run_dir_overrides` points Hydra at `run_dir` in the first place.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

LOOPS = ("lm", "gspo")


class LoopConfigError(ValueError):
    """`loop` names no loop, or a loop whose package is not installed."""


def pass_at_1_evaluator(model: torch.nn.Module, context: Any) -> dict[str, float]:
    """Greedy pass@1 on the stage's MBPP validation tasks (the first `eval.limit`), run in the
    sandbox; {} unless `eval.pass_at_1` is on and the stage fine-tunes on tasks.

    Generation, the long part (minutes on a busy CPU), advances a transient bar under the
    training bar per token (`training.logging.nested_bar`, fed by `generation.progress_hook`).
    """
    cfg = context.cfg
    e = cfg.eval
    tasks = list(getattr(context.data, "eval_tasks", None) or [])
    if not (bool(e.pass_at_1) and cfg.data.stage == "sft" and tasks):
        return {}
    if cfg.data.get("benchmark") == "exec":
        return exec_accuracy_evaluator(model, context, tasks[: int(e.limit)] if e.limit else tasks)
    from hrm_codegen.evaluation.harness import evaluate_model
    from hrm_codegen.evaluation.sampling import SamplingSettings
    from hrm_codegen.generation import progress_hook
    from hrm_codegen.training.logging import nested_bar

    tasks = tasks[: int(e.limit)] if e.limit else tasks
    output_dir = (
        Path(context.run_dir) / "eval" / f"step{context.step:07d}"
        if context.run_dir is not None
        else None
    )
    # one greedy sample per task, each worth max_new_tokens units (generation.ProgressCallback)
    bar = nested_bar(len(tasks) * int(e.max_new_tokens), desc="pass@1 generate", unit="tok")
    with bar, progress_hook(bar.update), context.autocast():
        summary = evaluate_model(
            model,
            context.tokenizer,
            tasks,
            num_samples=1,
            ks=(1,),
            sampling=SamplingSettings(
                temperature=0.0, max_new_tokens=int(e.max_new_tokens), batch_size=int(e.batch_size)
            ),
            timeout=float(e.timeout),
            workers=e.workers,
            output_dir=output_dir,
            progress=False,
        )
    return {"val/pass@1": float(summary.pass_at_k["pass@1"]), "val/pass@1_tasks": len(tasks)}


def exec_accuracy_evaluator(model: torch.nn.Module, context: Any, tasks: list) -> dict[str, float]:
    """Greedy exact-match accuracy on exec validation tasks, graded as LCB's code execution
    (`ast` literals, nothing run)."""
    from hrm_codegen.evaluation.exec_score import score_exec_model

    e = context.cfg.eval
    with context.autocast():
        score = score_exec_model(
            model,
            context.tokenizer,
            tasks,
            edges=(1,),
            max_new_tokens=int(e.get("exec_max_new_tokens") or 48),
            batch_size=int(e.batch_size),
        )
    return {"val/exec_acc": score["accuracy"], "val/exec_acc_tasks": len(tasks)}


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


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` is `root` or lies below it (both resolved)."""
    return path == root or root in path.parents


@dataclass(frozen=True)
class HydraOutput:
    """Hydra's output folder of this job, seen when it held only what Hydra itself had just
    written there (its `.hydra/` subfolder and the job's log file), so that it can be removed
    again when the run leaves nothing of its own in it."""

    folder: Path
    own: frozenset[str]  # names directly in `folder` that Hydra wrote
    parents: tuple[Path, ...] = ()  # folders above it, under the working dir, holding only it

    @classmethod
    def of_this_job(cls) -> HydraOutput | None:
        """This job's output folder, or None outside Hydra or when it already holds anything else
        (an earlier run's files: never ours to remove)."""
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        hydra = HydraConfig.get()
        own = {f"{hydra.job.name}.log"}
        if hydra.output_subdir:
            own.add(Path(str(hydra.output_subdir)).parts[0])
        return cls.seen_now(Path(hydra.runtime.output_dir), frozenset(own))

    @classmethod
    def seen_now(cls, folder: Path, own: frozenset[str]) -> HydraOutput | None:
        """`folder` as it is now, if it holds only `own` names; with the folders above it, inside
        the working dir, that hold nothing but the way down to it (Hydra made them for it)."""
        folder = Path(os.path.abspath(folder))
        cwd = Path.cwd().resolve()
        if not folder.is_dir() or _inside(cwd, folder.resolve()):
            return None  # e.g. hydra.run.dir=. (dry runs): the working dir itself
        if not {entry.name for entry in folder.iterdir()} <= own:
            return None
        parents: list[Path] = []
        child = folder
        for parent in folder.parents:
            resolved = parent.resolve()
            if not _inside(resolved, cwd) or resolved == cwd:
                break
            if [entry.name for entry in parent.iterdir()] != [child.name]:
                break
            parents.append(parent)
            child = parent
        return cls(folder, own, tuple(parents))

    def untouched(self) -> bool:
        """Whether the folder still holds nothing but Hydra's own files."""
        return self.folder.is_dir() and {e.name for e in self.folder.iterdir()} <= self.own

    def remove(self) -> bool:
        """Delete the folder (and the empty folders above it that Hydra made) if nothing but
        Hydra's files is in it; a folder a run wrote into (a checkpoint, metrics) stays."""
        if not self.untouched():
            return False
        try:
            for name in self.own:
                path = self.folder / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            self.folder.rmdir()  # fails, and keeps it, if anything arrived meanwhile
            for parent in self.parents:
                parent.rmdir()
        except OSError:
            return False
        return True


def run_dir_overrides(args: Sequence[str]) -> list[str]:
    """`hydra.run.dir=<run_dir>` when the command line sets `run_dir` (and not `hydra.run.dir`):
    Hydra then writes its `.hydra/` files into the run's own folder instead of creating a
    timestamped folder under runs/ that the run would never use."""
    value = None
    for arg in args:
        key, sep, text = arg.partition("=")
        key = key.lstrip("+~")
        if key == "hydra.run.dir" and sep:
            return []  # the user's own choice
        if key == "run_dir" and sep:
            value = text.strip()
    if not value or value in ("null", "None"):
        return []
    if value.startswith("~"):  # the trainer expands it; Hydra would make a folder named "~"
        return [f"hydra.run.dir={os.path.expanduser(value)}"]
    return ["hydra.run.dir=${run_dir}"]


def main(cfg: DictConfig) -> None:
    """Train as configured; a user error prints one line and exits 2, a SIGTERM/SIGINT stop
    (checkpoint saved) exits 128 + the signal number. Hydra's output folder is removed again
    when it ends up holding nothing but Hydra's own files (see `HydraOutput`)."""
    from hrm_codegen.training.preemption import TrainingInterrupted

    hydra_output = HydraOutput.of_this_job()  # before the run writes anything

    def tidy() -> None:
        # only when nothing but Hydra's files is there: a config error, or a run that wrote
        # elsewhere (resume=true continues an earlier run's folder)
        if hydra_output is not None:
            hydra_output.remove()

    try:
        run_training(cfg)
    except TrainingInterrupted as stop:
        tidy()
        print(f"stopped: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except user_errors() as error:
        tidy()
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    tidy()


__all__ = [
    "LOOPS",
    "HydraOutput",
    "LoopConfigError",
    "lm_evaluators",
    "main",
    "pass_at_1_evaluator",
    "run_dir_overrides",
    "run_training",
]
