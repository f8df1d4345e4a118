"""Saving and loading our models: a folder with `config.json` and `model.safetensors`.

`config.json` is the config dataclass (asdict) plus `"model_type"`, so `load_pretrained` can pick the
class without the caller knowing which model a run trained (through `hrm_codegen.model.registry`).

It also names the layout of a training run's checkpoints (`checkpoint/`, `best/`, `checkpoints/`) and
finds them (`resolve_checkpoint_dir`, `latest_checkpoint`), so every loader reads run folders without
importing `hrm_codegen.training`. This module imports no model file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or does not fit the model being trained."""


def config_from_dict(config_class: type, data: dict[str, Any], source: str = "config") -> Any:
    """Build a config dataclass from a dict, naming any unknown or missing field and its source."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(
            f"{source}: unknown {config_class.__name__} fields {unknown}; known fields: {sorted(fields)}"
        )
    try:
        return config_class(**data)
    except (TypeError, ValueError) as error:  # a missing field, or a value __post_init__ rejects
        raise ValueError(f"{source}: cannot build {config_class.__name__}: {error}") from error


class PretrainedModel(nn.Module):
    """What both our models share: parameter counts and the save/load format."""

    model_type: ClassVar[str]
    config_class: ClassVar[type]
    #: names of parameters that count as "embeddings" for num_parameters(exclude_embeddings=True)
    embedding_parameter_names: ClassVar[tuple[str, ...]] = ("embed_tokens.weight", "lm_head.weight")

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters; with `exclude_embeddings`, the token embedding and LM head are left out
        (the paper's 27M counts only the reasoning layers)."""
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if not (exclude_embeddings and name in self.embedding_parameter_names)
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.model_type, **dataclasses.asdict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"model_type": self.model_type})
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> PretrainedModel:
        """Load a folder written by `save_pretrained`; the folder's model_type must match `cls`."""
        directory = Path(directory)
        config_data = read_config_json(directory)
        model_type = config_data.pop("model_type", None)
        if model_type != cls.model_type:
            raise ValueError(
                f"{directory / CONFIG_NAME} has model_type={model_type!r}, but {cls.__name__} loads "
                f"model_type={cls.model_type!r}; use hrm_codegen.model.load_pretrained to pick the class"
            )
        quantization = config_data.pop("quantization", None)
        config = config_from_dict(cls.config_class, config_data, str(directory / CONFIG_NAME))
        if quantization is not None:  # written by hrm_codegen.quantization.save_quantized
            from hrm_codegen.quantization import load_quantized

            # its dtype was fixed before quantizing (int4 scales keep it): never cast afterwards
            return load_quantized(cls, config, quantization, directory, device)
        model = cls(config)
        weights_path = directory / WEIGHTS_NAME
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"{weights_path} not found: the folder has a config but no weights"
            )
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError) as error:
            raise ValueError(
                f"{weights_path} is not a readable safetensors file: {error}"
            ) from error
        expected = model.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong_shape = [
            f"{name}: file {tuple(tensors[name].shape)} vs model {tuple(t.shape)}"
            for name, t in expected.items()
            if name in tensors and tensors[name].shape != t.shape
        ]
        if missing or unexpected or wrong_shape:
            raise ValueError(
                f"{weights_path} does not fit the {cls.__name__} described by its config.json: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, shape mismatches {wrong_shape[:5]}"
            )
        model.load_state_dict(tensors, strict=True)
        return model.to(device=device, dtype=dtype)


def read_config_json(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; expected a saved model folder")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {directory} is not a model saved with save_pretrained "
            f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_pretrained(
    directory: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Load any registered model from a folder, picking the family from config.json's model_type.

    A thin door to `hrm_codegen.model.registry.load_model_dir` (imported on call: the registry
    imports the model files, which import this module)."""
    from hrm_codegen.model.registry import load_model_dir

    return load_model_dir(directory, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- run folder layout
#
# A training run keeps complete checkpoints in `<run>/checkpoints/<step folder>/` and names them by
# two relative symlinks swapped atomically: `<run>/checkpoint` (the latest) and `<run>/best` (the
# best by the run's validation metric). The writer is `hrm_codegen.training.checkpointing`; the
# readers below only need the names, so evaluation finds checkpoints without importing training.

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"  # written last: a folder holding it is complete
LEGACY_OLD_DIR = "checkpoint.old"  # left by the rename-based writer of earlier versions


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a complete training checkpoint (its trainer_state.json, which the
    writer renames into place last, and the model config)."""
    return (folder / STATE_FILE).is_file() and (folder / CONFIG_NAME).is_file()


def checkpoint_step(folder: Path) -> int:
    """The step recorded in a complete checkpoint's trainer_state.json (-1 when unreadable)."""
    try:
        return int(json.loads((folder / STATE_FILE).read_text()).get("step", -1))
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
    return max(complete, key=lambda p: (checkpoint_step(p), (p / STATE_FILE).stat().st_mtime))


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
            saved.append(((ckpt / STATE_FILE).stat().st_mtime, run))
    return max(saved)[1] if saved else None


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a model folder (e.g. `<run>/best`), a run dir (its latest checkpoint), or a folder of
    runs such as `runs/quickstart`, whose most recently saved run is taken: the command a user types
    after a run stays the same from one run to the next."""
    path = Path(path).expanduser()
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / CHECKPOINT_DIR / CONFIG_NAME).is_file():
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
        f"{path} holds no checkpoint: expected {path}/{CHECKPOINT_DIR}/config.json (a run dir), "
        f"{path}/config.json (a checkpoint dir such as <run>/{BEST_DIR}) or "
        f"{path}/<run>/{CHECKPOINT_DIR}/config.json (a folder of runs) written by "
        "scripts/train_codegen.py"
    )
