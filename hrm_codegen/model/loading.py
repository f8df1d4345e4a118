"""`load_model(path)`: the one way to load a model from disk.

`path` may be a saved model folder (`save_pretrained`: ours, or transformers' HRM-Text / Llama in
our adapter), a training run folder (its latest checkpoint; `<run>/best` given explicitly), a folder
of runs (its latest run), or a Hugging Face folder (our `scripts/export_hf.py` export, or any
transformers causal LM), so evaluation, export, generation, studies and the GPU check load models
the same way. Run folders are read through `hrm_codegen.run_layout`; the family comes from the
folder's config.json through `hrm_codegen.model.registry`.

Training's resume and `init_from` load weights *into a model it built* (with EMA and architecture
checks): that is `hrm_codegen.training.checkpointing.load_model_weights`, not this.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hrm_codegen.model.checkpoint import CONFIG_NAME
from hrm_codegen.model.precision import resolve_dtype
from hrm_codegen.model.registry import get_model_type, model_types
from hrm_codegen.run_layout import BEST_DIR, CHECKPOINT_DIR, CheckpointError, resolve_checkpoint_dir

# `family=HF_FAMILY`: load the folder with transformers as it is (no adapter), as
# `--model-type hf` does.
HF_FAMILY = "hf"
# The model_type of our Hugging Face export (hrm_codegen/export): its modeling code ships in the
# folder, and only that remote code is trusted.
EXPORT_MODEL_TYPE = "hrm_codegen"


def model_folder(path: str | Path) -> Path:
    """The model folder `path` names: itself when it has config.json, else the checkpoint of a run
    folder or of the latest run in a folder of runs; a one-line error for anything else."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return resolve_checkpoint_dir(path)
    except CheckpointError:
        raise ValueError(
            f"{path} is not a model: expected {path}/{CONFIG_NAME} (a saved model or Hugging Face "
            f"folder, e.g. <run>/{BEST_DIR}), {path}/{CHECKPOINT_DIR}/{CONFIG_NAME} (a training run "
            f"folder) or {path}/<run>/{CHECKPOINT_DIR}/{CONFIG_NAME} (a folder of runs)"
        ) from None


def saved_model_type(folder: Path) -> str | None:
    """The `model_type` a model folder's config.json names (None when it names none)."""
    data = json.loads((folder / CONFIG_NAME).read_text())
    return data.get("model_type") if isinstance(data, dict) else None


def family_of_folder(folder: Path) -> str:
    """The registered family that claims `folder`, else `HF_FAMILY` (a transformers folder)."""
    for name in model_types():
        if get_model_type(name).is_dir(folder):
            return name
    return HF_FAMILY


def load_model(
    path: str | Path,
    *,
    family: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    quantize: str | None = None,
) -> nn.Module:
    """Load the model at `path` (a model, run, runs or Hugging Face folder; see the module docstring).

    `family`: a registered family the folder must hold (an error names the one it holds), or
    `"hf"` to load it with transformers as it is; None: the folder's own. `device`: where the
    weights go (None: CPU). `dtype` (a torch dtype or `auto|bf16|fp16|fp32`, see
    `precision.resolve_dtype`) casts the weights after loading, so the stream, the KV cache and
    decoding run in it; None keeps the saved dtype, and a folder saved quantized keeps its own.
    `quantize` (`int8|int8-dynamic|int4`, see `hrm_codegen.quantization`) quantizes the cast
    model's projections.
    """
    folder = model_folder(path)
    torch_dtype = resolve_dtype(dtype, device or "cpu") if dtype is not None else None
    asked, family = family, family or family_of_folder(folder)
    if family == HF_FAMILY:
        try:
            model = _load_transformers_folder(folder)
        except ValueError as error:
            if asked is not None:
                raise
            raise ValueError(
                f"{folder / CONFIG_NAME} has model_type={saved_model_type(folder)!r}, which is "
                f"neither a family of this package ({model_types()}) nor a causal LM transformers "
                f"can load: {error.__cause__ or error}"
            ) from error
        model = model.to(device=device, dtype=torch_dtype)
    else:
        entry = get_model_type(family)
        if not entry.is_dir(folder):
            raise ValueError(
                f"{folder} does not hold a {family!r} model: its {CONFIG_NAME} says "
                f"model_type={saved_model_type(folder)!r}"
            )
        model = entry.load_dir(folder, device=device)
        quantized = json.loads((folder / CONFIG_NAME).read_text()).get("quantization")
        if torch_dtype is not None and quantized is None:  # quantized weights keep their dtype
            model = model.to(torch_dtype)
    if quantize is not None:
        from hrm_codegen.quantization import quantize_model

        model = quantize_model(model, quantize)
    return model


def _load_transformers_folder(folder: Path) -> nn.Module:
    """A Hugging Face causal LM folder through transformers, trusting the remote code of our own
    export only."""
    from transformers import AutoModelForCausalLM

    exported = saved_model_type(folder) == EXPORT_MODEL_TYPE
    try:
        return AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, trust_remote_code=exported or None
        )
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{folder} is not a Hugging Face causal LM folder transformers can load ({error}); "
            "for checkpoints of this repository pass --model-type hrm or transformer"
        ) from error


__all__ = ["EXPORT_MODEL_TYPE", "HF_FAMILY", "family_of_folder", "load_model", "model_folder"]
