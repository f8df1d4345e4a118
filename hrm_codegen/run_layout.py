"""The layout of a training run folder: the names of what a run writes, and how to find its checkpoints.

A run keeps complete checkpoints in `<run>/checkpoints/<step folder>/` and names them by two
relative symlinks swapped atomically: `<run>/checkpoint` (the latest) and `<run>/best` (the best by
the run's validation metric). Beside them: the config snapshot `config.yaml` and the metrics log
`metrics.jsonl`. The writer is `hrm_codegen.training.checkpointing`; the readers are training
(resume, `init_from`), the model loader (`hrm_codegen.model.load_model` takes a run folder),
evaluation (`--ckpt`), the RL loop and studies. Every one of them spells these names through the
constants here.

Why a module of its own, at the top of the package and importing nothing of it: training,
evaluation, study, rl and model all read run folders, and none of them may own the layout for
the others (training and evaluation never import each other; `model/` files are shipped in
Hugging Face exports, which must not carry run-folder code). Importing only the standard library,
it can close no import cycle and costs nothing to import (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_DIR = "checkpoint"  # the symlink to the latest complete checkpoint
BEST_DIR = "best"  # the symlink to the best checkpoint by the validation metric
CHECKPOINTS_DIR = "checkpoints"  # the step folders both symlinks point into
TRAINER_STATE = "trainer_state.json"  # written last: a folder holding it is complete
LEGACY_OLD_DIR = "checkpoint.old"  # left by the rename-based writer of earlier versions
CONFIG_SNAPSHOT = "config.yaml"  # the run's resolved config, written when it starts
METRICS_FILE = "metrics.jsonl"  # one JSON row per logged step
# A checkpoint folder is a model folder: its config.json (`hrm_codegen.model.checkpoint.CONFIG_NAME`,
# spelled again here so that this module imports no torch) says which model it holds.
MODEL_CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or does not fit the model being trained."""


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a complete training checkpoint (its trainer_state.json, which the
    writer renames into place last, and the model config)."""
    return (folder / TRAINER_STATE).is_file() and (folder / MODEL_CONFIG).is_file()


def checkpoint_step(folder: Path) -> int:
    """The step recorded in a complete checkpoint's trainer_state.json (-1 when unreadable)."""
    try:
        return int(json.loads((folder / TRAINER_STATE).read_text()).get("step", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `resume=true` continues from in `run_dir`, or None.

    `<run>/checkpoint` when it is complete; otherwise the highest-step complete folder under
    `<run>/checkpoints/` (or a `checkpoint.old` an earlier version's writer left when killed), which
    only happens when a writer died while replacing an old-style `checkpoint/` folder."""
    run_dir = Path(run_dir).expanduser()
    pointer = run_dir / CHECKPOINT_DIR
    if is_complete_checkpoint(pointer):
        return pointer
    candidates = [run_dir / LEGACY_OLD_DIR]
    store = run_dir / CHECKPOINTS_DIR
    if store.is_dir():
        candidates += [p for p in store.iterdir() if not p.name.startswith(".")]
    complete = [p for p in candidates if p.is_dir() and is_complete_checkpoint(p)]
    if not complete:
        return None
    return max(complete, key=lambda p: (checkpoint_step(p), (p / TRAINER_STATE).stat().st_mtime))


def run_dir_of(ckpt_dir: str | Path) -> Path:
    """The run dir a checkpoint folder belongs to (`<run>/checkpoint`, `<run>/best` or
    `<run>/checkpoints/<step folder>`)."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.parent.name == CHECKPOINTS_DIR:
        return ckpt_dir.parent.parent
    return ckpt_dir.parent


def find_latest_run(runs_root: str | Path) -> Path | None:
    """The run under `runs_root/*/` whose latest checkpoint was saved last (trainer_state.json
    mtime), or None."""
    runs_root = Path(runs_root).expanduser()
    if not runs_root.is_dir():
        return None
    saved = []
    for run in runs_root.iterdir():
        ckpt = latest_checkpoint(run) if run.is_dir() else None
        if ckpt is not None:
            saved.append(((ckpt / TRAINER_STATE).stat().st_mtime, run))
    return max(saved)[1] if saved else None


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a model folder (e.g. `<run>/best`), a run dir (its latest checkpoint), or a folder of
    runs such as `runs/quickstart`, whose most recently saved run is taken: the command a user types
    after a run stays the same from one run to the next."""
    path = Path(path).expanduser()
    if (path / MODEL_CONFIG).is_file():
        return path
    if (path / CHECKPOINT_DIR / MODEL_CONFIG).is_file():
        return path / CHECKPOINT_DIR
    if path.is_dir():
        own = latest_checkpoint(path)
        if own is not None:
            return own
        latest = find_latest_run(path)
        if latest is not None:
            ckpt = latest_checkpoint(latest)
            if ckpt is not None:
                return ckpt
    raise CheckpointError(
        f"{path} holds no checkpoint: expected {path}/{CHECKPOINT_DIR}/{MODEL_CONFIG} (a run dir), "
        f"{path}/{MODEL_CONFIG} (a checkpoint dir such as <run>/{BEST_DIR}) or "
        f"{path}/<run>/{CHECKPOINT_DIR}/{MODEL_CONFIG} (a folder of runs) written by "
        "scripts/train_codegen.py"
    )


__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "CHECKPOINT_DIR",
    "CONFIG_SNAPSHOT",
    "LEGACY_OLD_DIR",
    "METRICS_FILE",
    "MODEL_CONFIG",
    "TRAINER_STATE",
    "CheckpointError",
    "checkpoint_step",
    "find_latest_run",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "resolve_checkpoint_dir",
    "run_dir_of",
]
