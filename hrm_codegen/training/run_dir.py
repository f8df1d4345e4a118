"""Where a run writes: its run dir, the config snapshot in it, and the checkpoint `resume` names.

run_dir = run_dir_from_config(cfg)                 # run_dir=..., else Hydra's output dir
ckpt = find_resume_checkpoint(cfg.resume, run_dir, explicit=bool(cfg.run_dir))
run_dir = run_dir_of(ckpt)                         # a resumed run keeps writing where it was
write_config_snapshot(run_dir, cfg)                # <run>/config.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hrm_codegen.run_layout import (
    CHECKPOINT_DIR,
    CONFIG_SNAPSHOT,
    TRAINER_STATE,
    CheckpointError,
    find_latest_run,
    latest_checkpoint,
    resolve_checkpoint_dir,
    run_dir_of,
)


class RunDirError(ValueError):
    """No run dir can be chosen (train() outside the launcher without `run_dir`)."""


def run_dir_from_config(cfg: DictConfig) -> Path:
    """`run_dir` when set, else the Hydra run dir of this job."""
    if cfg.get("run_dir"):
        return Path(str(cfg.run_dir)).expanduser()
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise RunDirError(
        "no run dir: set run_dir=... (train() was called outside scripts/train_codegen.py)"
    )


def find_resume_checkpoint(resume: Any, run_dir: Path, *, explicit: bool) -> Path:
    """The checkpoint `resume` points at (see configs/codegen_base.yaml).

    `resume=true`: the latest checkpoint of `run_dir`; when `run_dir` was not given explicitly
    (`explicit=False`, a fresh Hydra dir), that of the latest run beside it. A path: that run dir,
    checkpoint dir (e.g. `<run>/best`) or folder of runs."""
    if resume is not True:
        return resolve_checkpoint_dir(str(resume))
    own = latest_checkpoint(run_dir)
    if own is not None:
        return own
    if explicit:
        # An explicit run dir names the run to continue; its siblings may be unrelated runs.
        raise CheckpointError(
            f"resume=true but run_dir={run_dir} has no checkpoint ({CHECKPOINT_DIR}/"
            f"{TRAINER_STATE}); pass resume=<run dir> to continue another run"
        )
    latest = find_latest_run(run_dir.parent)
    ckpt = latest_checkpoint(latest) if latest is not None else None
    if ckpt is None:
        raise CheckpointError(
            f"resume=true but no run under {run_dir.parent} has a checkpoint; pass resume=<run dir>"
        )
    return ckpt


def write_config_snapshot(run_dir: Path, cfg: DictConfig) -> Path:
    """Create the run dir and write the resolved config to `<run>/config.yaml`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_SNAPSHOT
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def display_path(path: Path) -> str:
    """`path` relative to the working directory when inside it (shorter lines), else as is."""
    try:  # abspath, not resolve: `<run>/checkpoint` stays the name a user passes on
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


__all__ = [
    "CONFIG_SNAPSHOT",
    "RunDirError",
    "display_path",
    "find_resume_checkpoint",
    "run_dir_from_config",
    "run_dir_of",
    "write_config_snapshot",
]
