"""Checkpoint I/O: one folder a run can be evaluated from, resumed from, or fine-tuned from.

Layout of `<run dir>/checkpoint/` (always the latest; written to a temporary folder and renamed into
place, so a crash mid-save never leaves a half checkpoint):

- `config.json`, `model.safetensors`: the model (`save_pretrained`; the EMA weights when EMA is on),
  loadable with `hrm_codegen.model.load_pretrained`.
- `tokenizer.json` (+ `tokenizer_config.json`): loadable with `hrm_codegen.tokenization.load_tokenizer`.
- `config.yaml`: the run's resolved training config.
- `optimizer.pt`: AdamW state and, with fp16, the loss scaler.
- `train_weights.safetensors`: the raw (non-EMA) weights, only when EMA is on.
- `trainer_state.json`: step, tokens seen, data position and every process's RNG states.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = "checkpoint"
TRAIN_WEIGHTS = "train_weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
CONFIG_YAML = "config.yaml"
# Config fields that may differ between a checkpoint and the model it is loaded into: they change how
# the same weights run or train, not which weights exist.
RUNTIME_MODEL_FIELDS = frozenset(
    {
        "attn_impl",
        "loss",
        "halt_exploration_prob",
        "bp_steps",
        "max_seq_len",
        "halt_max_steps",
        "halt_target",
        "halt_margin",
    }
)


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or does not fit the model being trained."""


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a checkpoint dir, a run dir (with `checkpoint/` inside), or a folder of runs such as
    `runs/quickstart`, whose most recently saved run is taken: the command a user types after a run
    stays the same from one run to the next."""
    path = Path(path).expanduser()
    if (path / "config.json").is_file():
        return path
    if (path / CHECKPOINT_DIR / "config.json").is_file():
        return path / CHECKPOINT_DIR
    latest = find_latest_run(path) if path.is_dir() else None
    if latest is not None and (latest / CHECKPOINT_DIR / "config.json").is_file():
        return latest / CHECKPOINT_DIR
    raise CheckpointError(
        f"{path} holds no checkpoint: expected {path}/{CHECKPOINT_DIR}/config.json (a run dir), "
        f"{path}/config.json (a checkpoint dir) or {path}/<run>/{CHECKPOINT_DIR}/config.json "
        "(a folder of runs) written by scripts/train_codegen.py"
    )


def save_checkpoint(
    ckpt_dir: Path,
    *,
    model: torch.nn.Module,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    config_yaml: str,
    ema: Any = None,
    scaler: Any = None,
) -> Path:
    """Write a complete checkpoint of `model` (the unwrapped module) atomically at `ckpt_dir`."""
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if ema is not None:
        with ema.applied_to(model):
            model.save_pretrained(tmp)
        raw = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
        save_file(raw, str(tmp / TRAIN_WEIGHTS))
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(str(tmp))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        tmp / OPTIMIZER_FILE,
    )
    (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1) + "\n")
    (tmp / CONFIG_YAML).write_text(config_yaml)
    old = ckpt_dir.with_name(ckpt_dir.name + ".old")
    if ckpt_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        ckpt_dir.rename(old)
    tmp.rename(ckpt_dir)
    if old.exists():
        shutil.rmtree(old)
    return ckpt_dir


def check_architecture(ckpt_dir: Path, model: torch.nn.Module) -> None:
    """Raise a CheckpointError naming every field where the checkpoint's model differs from `model`."""
    saved = json.loads((ckpt_dir / "config.json").read_text())
    ours = {"model_type": model.model_type, **_config_dict(model)}
    if saved.get("model_type") != ours["model_type"]:
        raise CheckpointError(
            f"{ckpt_dir} holds a {saved.get('model_type')!r} model but this run builds a "
            f"{ours['model_type']!r} model; choose model={saved.get('model_type')} (and its sizes) "
            "or start from another checkpoint"
        )
    differing = [
        f"{key}: checkpoint {saved.get(key)!r}, config {value!r}"
        for key, value in ours.items()
        if key not in RUNTIME_MODEL_FIELDS and key in saved and saved[key] != value
    ]
    if differing:
        raise CheckpointError(
            f"{ckpt_dir} was trained with another architecture than this run's model config: "
            + "; ".join(differing)
            + ". Override the model.* values to match (or pick another checkpoint)."
        )


def _config_dict(model: torch.nn.Module) -> dict[str, Any]:
    return dataclasses.asdict(model.config)


def load_model_weights(ckpt_dir: Path, model: torch.nn.Module, *, raw: bool) -> None:
    """Load the checkpoint's weights into `model` after checking the architecture.

    `raw=True` (resuming) prefers the non-EMA training weights when the checkpoint has them;
    `raw=False` (starting a new stage) takes the weights the checkpoint would be evaluated with.
    """
    check_architecture(ckpt_dir, model)
    path = ckpt_dir / TRAIN_WEIGHTS
    if not (raw and path.is_file()):
        path = ckpt_dir / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {ckpt_dir} is an incomplete checkpoint")
    tensors = load_file(str(path))
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit this model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def load_ema_weights(ckpt_dir: Path) -> dict[str, torch.Tensor] | None:
    """The EMA shadow of a checkpoint saved with EMA on (its model.safetensors), else None."""
    if not (ckpt_dir / TRAIN_WEIGHTS).is_file():
        return None
    return load_file(str(ckpt_dir / "model.safetensors"))


def load_training_state(ckpt_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer_state.json, optimizer.pt contents) of a checkpoint, with a clear error when absent."""
    state_path, opt_path = ckpt_dir / STATE_FILE, ckpt_dir / OPTIMIZER_FILE
    for path in (state_path, opt_path):
        if not path.is_file():
            raise CheckpointError(
                f"cannot resume from {ckpt_dir}: {path.name} is missing (a model-only folder can "
                "start a new stage with init_from=..., not be resumed)"
            )
    state = json.loads(state_path.read_text())
    optim = torch.load(opt_path, map_location="cpu", weights_only=False)
    return state, optim


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch, CUDA) as JSON-friendly strings."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, _b64(np.array(py_state, dtype=np.uint32)), py_gauss],
        "numpy": [np_name, _b64(np_keys), int(np_pos), int(np_has_gauss), float(np_cached)],
        "torch": _b64(torch.get_rng_state().numpy()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s.numpy()) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in _unb64(values, np.uint32)), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, _unb64(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(_unb64(state["torch"], np.uint8)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(_unb64(s, np.uint8)) for s in state["cuda"]])


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _unb64(text: str, dtype: type) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()


def find_latest_run(runs_root: Path) -> Path | None:
    """The most recently saved checkpoint among `runs_root/*/` (by its trainer_state.json mtime)."""
    states = sorted(
        runs_root.glob(f"*/{CHECKPOINT_DIR}/{STATE_FILE}"), key=lambda p: p.stat().st_mtime
    )
    return states[-1].parent.parent if states else None
