"""Checkpoint I/O: complete folders a run can be evaluated from, resumed from, or fine-tuned from.

Layout of a run dir (the names live in `hrm_codegen.run_layout`, which every reader uses):

- `checkpoints/<step folder>/`: complete checkpoints (below); a new one is written under a hidden
  name, fsynced, renamed into place, and only then pointed at.
- `checkpoint` -> `checkpoints/<step folder>`: the latest, a relative symlink replaced atomically
  (`os.replace`), so at every instant, a SIGKILL or power cut included, it names a complete
  checkpoint (`resume=true` loads it; `latest_checkpoint` also finds the newest complete folder when
  an old-style `checkpoint/` directory was being replaced).
- `best` -> `checkpoints/<step folder>`: the best by `train.best_metric` (see `CheckpointManager`).

Folders no pointer names are removed after each swap, except kept ones: a folder holding a `keep`
file (written by `train.keep_checkpoints`, before the folder is renamed into place) is never pruned,
so a long run's checkpoints at chosen steps stay to be branched from (`branch_from`). One checkpoint
folder holds:

- `config.json`, `model.safetensors`: the model (`save_pretrained`; the EMA weights when EMA is on),
  loadable with `hrm_codegen.model.load_model`.
- `tokenizer.json` (+ `tokenizer_config.json`): loadable with `hrm_codegen.tokenization.load_tokenizer`.
- `config.yaml`: the run's resolved training config.
- `optimizer.pt`: AdamW state and, with fp16, the loss scaler.
- `train_weights.safetensors`: the raw (non-EMA) weights, only when EMA is on.
- `trainer_state.json`: step, tokens seen, data position and every process's RNG states; written
  last, so its presence marks the folder complete.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import random
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hrm_codegen.model.checkpoint import WEIGHTS_NAME
from hrm_codegen.run_layout import (
    BEST_DIR,
    CHECKPOINT_DIR,
    CHECKPOINTS_DIR,
    CONFIG_SNAPSHOT,
    LEGACY_OLD_DIR,
    TRAINER_STATE,
    CheckpointError,
)

TRAIN_WEIGHTS = "train_weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
PARTIAL_PREFIX = ".partial-"
TRASH_PREFIX = ".trash-"
# In a step folder: exempt it from pruning (`train.keep_checkpoints`). Inside the folder rather than
# in a list beside it, so it is written with the folder, moves with it, and outlives config changes.
KEEP_FILE = "keep"
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
        # transformers-backed families (model/hf_models.py): masks and schedules, not weights
        "prefix_lm",
        "L_bp_cycles",
        "L_bp_warmup_to",
        "L_bp_warmup_fraction",
    }
)
# Our own description of the model when config.json is another library's (transformers' folders
# written by model/hf_models.py); compared field by field with the model being trained.
MODEL_SPEC_FILE = "hrm_codegen.json"


def write_checkpoint_files(
    folder: Path,
    *,
    model: torch.nn.Module,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    config_yaml: str | None,
    ema: Any = None,
    scaler: Any = None,
) -> Path:
    """Write every file of one checkpoint into the empty folder `folder`, fsynced, with
    trainer_state.json last (written under a temporary name and renamed), so a folder holding it
    is complete. `tokenizer`, `optimizer` and `config_yaml` may be None (not saved)."""
    folder.mkdir(parents=True, exist_ok=True)
    if ema is not None:
        with ema.applied_to(model):
            model.save_pretrained(folder)
        raw = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
        save_file(raw, str(folder / TRAIN_WEIGHTS))
    else:
        model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    if optimizer is not None:
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
            },
            folder / OPTIMIZER_FILE,
        )
    if config_yaml is not None:
        (folder / CONFIG_SNAPSHOT).write_text(config_yaml)
    for path in folder.iterdir():
        if path.is_file():
            _fsync_file(path)
    tmp_state = folder / (TRAINER_STATE + ".tmp")
    tmp_state.write_text(json.dumps(trainer_state, indent=1) + "\n")
    _fsync_file(tmp_state)
    os.replace(tmp_state, folder / TRAINER_STATE)
    _fsync_dir(folder)
    return folder


def publish_checkpoint(
    run_dir: Path,
    write: Callable[[Path], Any],
    *,
    step: int,
    pointers: Iterable[str] = (CHECKPOINT_DIR,),
    keep: bool = False,
) -> Path:
    """Write a new checkpoint with `write(folder)` and point each name in `pointers` at it.

    The order makes every instant safe: the folder is written under a hidden partial name,
    renamed to `checkpoints/step_<step>` (a fresh name, never one a pointer uses), and each
    pointer (`<run>/checkpoint`, `<run>/best`) is then replaced atomically by a relative symlink.
    An old-style `checkpoint/` directory is first moved into `checkpoints/` (where
    `latest_checkpoint` still finds it). Folders no pointer names are removed last, except kept
    ones: `keep=True` marks this one so (its `keep` file is written before the rename, so no
    instant sees it complete but prunable). Returns the step folder."""
    run_dir = Path(run_dir)
    store = run_dir / CHECKPOINTS_DIR
    store.mkdir(parents=True, exist_ok=True)
    partial = store / f"{PARTIAL_PREFIX}step_{step:07d}-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    write(partial)
    if keep:
        marker = partial / KEEP_FILE
        marker.write_text(f"step {step}: kept by train.keep_checkpoints, never pruned\n")
        _fsync_file(marker)
        _fsync_dir(partial)
    final = _fresh_name(store, f"step_{step:07d}")
    os.rename(partial, final)
    _fsync_dir(store)
    for name in pointers:
        point_at(run_dir / name, final)
    _fsync_dir(run_dir)
    prune_checkpoints(run_dir, keep=[final])
    return final


def point_at(pointer: Path, target: Path) -> None:
    """Make `pointer` a relative symlink to `target`, atomically (readers see the old target or
    the new one, never nothing). A real directory at `pointer` (written by an earlier version, or a
    model saved there by hand) is first moved into `checkpoints/`."""
    if pointer.is_dir() and not pointer.is_symlink():
        store = pointer.parent / CHECKPOINTS_DIR
        os.rename(pointer, _fresh_name(store, f"legacy-{pointer.name}"))
        _fsync_dir(pointer.parent)
    link = pointer.with_name(f".{pointer.name}.link-{os.getpid()}")
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(target, pointer.parent), link)
    os.replace(link, pointer)


def is_kept(folder: Path) -> bool:
    """Whether `folder` is a step folder marked to outlive pruning (`train.keep_checkpoints`); a
    hidden partial or trash folder never is, even when its writer already wrote the mark."""
    return not folder.name.startswith(".") and (folder / KEEP_FILE).is_file()


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The kept step folders of a run (`train.keep_checkpoints`), by step."""
    store = Path(run_dir) / CHECKPOINTS_DIR
    if not store.is_dir():
        return []
    return sorted((p for p in store.iterdir() if p.is_dir() and is_kept(p)), key=lambda p: p.name)


def prune_checkpoints(run_dir: Path, keep: Iterable[Path] = ()) -> None:
    """Remove checkpoint folders that neither `<run>/checkpoint` nor `<run>/best` (nor `keep`)
    names and that are not kept (`is_kept`), leftovers of killed writers, and an earlier version's
    `checkpoint.old`/`.tmp`. Each is renamed to a hidden trash name before deletion, so a
    half-deleted folder never looks complete."""
    run_dir = Path(run_dir)
    store = run_dir / CHECKPOINTS_DIR
    named = {p.resolve() for p in keep}
    for name in (CHECKPOINT_DIR, BEST_DIR):
        pointer = run_dir / name
        if pointer.exists():
            named.add(pointer.resolve())
    for link in run_dir.glob(".*.link-*"):  # a killed `point_at` left its new link unswapped
        if link.is_symlink() and not link.name.endswith(f"-{os.getpid()}"):
            link.unlink()
    doomed = [run_dir / LEGACY_OLD_DIR, run_dir / f"{CHECKPOINT_DIR}.tmp"]
    if store.is_dir():
        doomed += [p for p in store.iterdir() if p.resolve() not in named and not is_kept(p)]
    for path in doomed:
        if not path.exists() or path.is_symlink():
            continue
        if path.name.startswith(PARTIAL_PREFIX) and path.name.endswith(f"-{os.getpid()}"):
            continue  # this process is writing it
        trash = path
        if not path.name.startswith(TRASH_PREFIX):
            trash = store / f"{TRASH_PREFIX}{path.name}-{os.getpid()}"
            if trash.exists():
                shutil.rmtree(trash, ignore_errors=True)
            store.mkdir(exist_ok=True)
            os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


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
    also_point: Iterable[str] = (),
) -> Path:
    """Write a complete checkpoint of `model` (the unwrapped module) and point `ckpt_dir` (e.g.
    `<run>/checkpoint`, plus the names in `also_point`, e.g. `best`) at it, crash-safely (see
    `publish_checkpoint`). Returns `ckpt_dir`."""
    ckpt_dir = Path(ckpt_dir)
    publish_checkpoint_files(
        ckpt_dir.parent,
        step=int(trainer_state.get("step", 0)),
        pointers=[ckpt_dir.name, *also_point],
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        trainer_state=trainer_state,
        config_yaml=config_yaml,
        ema=ema,
        scaler=scaler,
    )
    return ckpt_dir


def publish_checkpoint_files(
    run_dir: Path, *, step: int, pointers: Iterable[str], keep: bool = False, **files: Any
) -> Path:
    """`publish_checkpoint` of a folder written by `write_checkpoint_files(folder, **files)`: the
    one way a training checkpoint is saved (`save_checkpoint`, `CheckpointManager.save`); `keep`
    exempts it from pruning. Returns the step folder."""
    return publish_checkpoint(
        run_dir,
        lambda folder: write_checkpoint_files(folder, **files),
        step=step,
        pointers=pointers,
        keep=keep,
    )


def _fresh_name(store: Path, stem: str) -> Path:
    """`store/stem`, or `store/stem-2`, `-3`, ... when taken."""
    candidate, n = store / stem, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = store / f"{stem}-{n}"
    return candidate


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist a directory's entries (renames, new files) across a power cut, where supported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_architecture(ckpt_dir: Path, model: torch.nn.Module) -> None:
    """Raise a CheckpointError naming every field where the checkpoint's model differs from `model`."""
    spec = ckpt_dir / MODEL_SPEC_FILE
    saved = json.loads((spec if spec.is_file() else ckpt_dir / "config.json").read_text())
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
        path = ckpt_dir / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {ckpt_dir} is an incomplete checkpoint")
    if path.name != TRAIN_WEIGHTS and hasattr(model, "load_weights"):
        # a family whose model.safetensors is another library's layout reads it itself
        model.load_weights(ckpt_dir)
        return
    tensors = load_file(str(path))  # ours, and train_weights.safetensors: the model's own names
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit this model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def load_ema_weights(
    ckpt_dir: Path, model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor] | None:
    """The EMA shadow of a checkpoint saved with EMA on (its model.safetensors), else None.

    Given `model`, a family that reads its own weights (`load_weights`) reads them into a copy,
    so the shadow carries the model's parameter names."""
    if not (ckpt_dir / TRAIN_WEIGHTS).is_file():
        return None
    if model is not None and hasattr(model, "load_weights"):
        clone = copy.deepcopy(model)
        clone.load_weights(ckpt_dir)
        return {name: t.detach().clone() for name, t in clone.state_dict().items()}
    return load_file(str(ckpt_dir / WEIGHTS_NAME))


def load_training_state(ckpt_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer_state.json, optimizer.pt contents) of a checkpoint, with a clear error when absent."""
    state_path, opt_path = ckpt_dir / TRAINER_STATE, ckpt_dir / OPTIMIZER_FILE
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


__all__ = [
    "KEEP_FILE",
    "MODEL_SPEC_FILE",
    "OPTIMIZER_FILE",
    "TRAIN_WEIGHTS",
    "check_architecture",
    "is_kept",
    "kept_checkpoints",
    "load_ema_weights",
    "load_model_weights",
    "load_training_state",
    "point_at",
    "prune_checkpoints",
    "publish_checkpoint",
    "publish_checkpoint_files",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "write_checkpoint_files",
]
