"""One registry of model families: `model.type` -> how to build one and how to load a saved folder.

The trainer builds every model through `build_model`, and every loader (evaluation, export, studies,
`hrm_codegen.model.load_pretrained`) reads a saved folder through `load_model_dir`, so adding a model
family is one call, usually at the bottom of the module that defines it:

    register_model_type("llama", build=build_llama, load_dir=load_llama_dir, is_dir=is_llama_dir)

with

- `build(model_cfg, vocab_size, *, bos_token_id, eos_token_id, pad_token_id) -> nn.Module`:
  `model_cfg` is the `model` config group without `type` and `match` (and without the fields that only
  another family declares, see `other_architecture_fields`); the ids come from the run's tokenizer.
- `load_dir(folder, device=None, dtype=None) -> nn.Module`: a model folder (never a run dir: the
  registry resolves those first).
- `is_dir(folder) -> bool`: whether the folder holds a model of this family (cheap: read config.json).

This module imports the model files; `model/checkpoint.py` (which they import) does not import them.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrm_codegen.model.checkpoint import (
    CONFIG_NAME,
    config_from_dict,
    read_config_json,
    resolve_checkpoint_dir,
)

Builder = Callable[..., nn.Module]
DirLoader = Callable[..., nn.Module]


class ModelConfigError(ValueError):
    """A `model` config that cannot build a model, named together with what to set instead."""


@dataclass(frozen=True)
class ModelType:
    """One registered family. `fields` are the `model.*` keys it accepts (None: it takes any key),
    used to set aside what only another family knows; our dataclass families also keep their
    `config_class`/`model_class`."""

    name: str
    build: Builder
    load_dir: DirLoader
    is_dir: Callable[[Path], bool]
    fields: frozenset[str] | None = None
    config_class: type | None = None
    model_class: type | None = None


_REGISTRY: dict[str, ModelType] = {}


def register_model_type(
    name: str,
    *,
    build: Builder,
    load_dir: DirLoader,
    is_dir: Callable[[Path], bool],
    fields: Collection[str] | None = None,
    config_class: type | None = None,
    model_class: type | None = None,
    replace: bool = False,
) -> ModelType:
    """Make `model.type=<name>` buildable and its saved folders loadable (see the module docstring).

    Registering a taken name is an error unless `replace=True`, so two families never silently
    shadow each other."""
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"model type {name!r} is already registered; pass replace=True to override it"
        )
    if fields is None and config_class is not None and dataclasses.is_dataclass(config_class):
        fields = [f.name for f in dataclasses.fields(config_class)]
    entry = ModelType(
        name=name,
        build=build,
        load_dir=load_dir,
        is_dir=is_dir,
        fields=frozenset(fields) if fields is not None else None,
        config_class=config_class,
        model_class=model_class,
    )
    _REGISTRY[name] = entry
    return entry


def model_types() -> list[str]:
    """Names of every registered family, sorted."""
    return sorted(_REGISTRY)


def get_model_type(name: str) -> ModelType:
    """The registered family `name`, or a ModelConfigError listing the known ones."""
    if name not in _REGISTRY:
        raise ModelConfigError(
            f"model.type={name!r} is not one of {model_types()} "
            "(pick model=hrm, model=transformer or model=transformer_deep)"
        )
    return _REGISTRY[name]


def model_classes() -> dict[str, tuple[type, type]]:
    """(config class, model class) of every family that has them (our dataclass models)."""
    return {
        name: (entry.config_class, entry.model_class)
        for name, entry in sorted(_REGISTRY.items())
        if entry.config_class is not None and entry.model_class is not None
    }


def other_architecture_fields(model_cfg: dict[str, Any]) -> list[str]:
    """Settings in `model_cfg` that only *other* model families declare.

    Experiments size the HRM (H_layers, ...); `experiment=quickstart model=transformer` should still
    build the baseline at the experiment's width, so those fields are set aside (and reported), while
    a field no family knows stays an error (the builder names it).
    """
    entry = _REGISTRY.get(model_cfg.get("type"))
    if entry is None or entry.fields is None:
        return []
    others = {
        field
        for name, other in _REGISTRY.items()
        if name != entry.name and other.fields is not None
        for field in other.fields
    }
    return sorted(key for key in model_cfg if key in others - entry.fields)


def matched_depth(model_cfg: dict[str, Any], match: str, default: int | None) -> int | None:
    """Depth of a transformer baseline matched to the HRM sized in the same config.

    An experiment sizes the HRM (H_layers, L_layers, cycles); a baseline run of that experiment
    (`model=transformer` / `model=transformer_deep`) takes its depth from those sizes, so the
    comparison stays fair at any scale: `params` stacks the HRM's distinct blocks
    (H_layers + L_layers), `compute` as many blocks as the HRM applies per forward,
    H_cycles * (L_cycles * L_layers + H_layers). Without HRM sizes, `n_layers` stands.
    """
    if match not in ("params", "compute"):
        raise ModelConfigError(f"model.match={match!r} must be 'params', 'compute' or null")
    sizes = {k: model_cfg.get(k) for k in ("H_layers", "L_layers", "H_cycles", "L_cycles")}
    if match == "params" and sizes["H_layers"] and sizes["L_layers"]:
        return sizes["H_layers"] + sizes["L_layers"]
    if match == "compute" and all(sizes.values()):
        return sizes["H_cycles"] * (sizes["L_cycles"] * sizes["L_layers"] + sizes["H_layers"])
    return default


def build_model(
    model_cfg: dict[str, Any],
    vocab_size: int,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> nn.Module:
    """A fresh model from the `model` config group; vocab_size (and the ids) come from the tokenizer.

    Fields only another family has are left out (see `other_architecture_fields`); `match`
    (params|compute) sets `n_layers` from the HRM sizes of the same config for a family that has
    `n_layers` (see `matched_depth`)."""
    entry = get_model_type(model_cfg.get("type"))
    ignored = set(other_architecture_fields(model_cfg))
    fields = {k: v for k, v in model_cfg.items() if k not in ignored and k not in ("type", "match")}
    match = model_cfg.get("match")
    if match is not None and (entry.fields is None or "n_layers" in entry.fields):
        fields["n_layers"] = matched_depth(model_cfg, match, fields.get("n_layers"))
    return entry.build(
        fields,
        vocab_size,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def model_type_of_dir(folder: str | Path) -> str:
    """The registered family whose `is_dir` claims `folder` (a model folder, run dir or folder of
    runs), or a ValueError naming config.json's model_type and the known families."""
    folder = _model_folder(folder)
    for name, entry in sorted(_REGISTRY.items()):
        if entry.is_dir(folder):
            return name
    saved = read_config_json(folder).get("model_type")
    raise ValueError(
        f"{folder / CONFIG_NAME} has model_type={saved!r}; this package loads {model_types()} "
        "(is this a Hugging Face or upstream HRM checkpoint? For the Sapient HRM use "
        "load_upstream_checkpoint)"
    )


def load_model_dir(
    folder: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Load any registered model from a model folder, a run dir (its `checkpoint/`, or `<run>/best`
    given explicitly) or a folder of runs (its latest run)."""
    folder = _model_folder(folder)
    return _REGISTRY[model_type_of_dir(folder)].load_dir(folder, device=device, dtype=dtype)


def _model_folder(folder: str | Path) -> Path:
    """`folder` itself when it has config.json (or is no folder: the loaders name that), else the
    checkpoint a run dir or a folder of runs points at."""
    folder = Path(folder).expanduser()
    if (folder / CONFIG_NAME).is_file() or not folder.is_dir():
        return folder
    try:
        return resolve_checkpoint_dir(folder)
    except ValueError:
        return folder  # read_config_json names the missing config.json


# ----------------------------------------------------------------------------- our two families


def _dataclass_family(config_class: type, model_class: type, name: str) -> dict[str, Any]:
    """build/load_dir/is_dir of a `PretrainedModel` family (config dataclass + model class)."""

    def build(
        model_cfg: dict[str, Any],
        vocab_size: int,
        *,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
    ) -> nn.Module:
        del bos_token_id, eos_token_id, pad_token_id  # our models do not store special ids
        try:
            config = config_from_dict(
                config_class, {**model_cfg, "vocab_size": vocab_size}, source=f"model={name} config"
            )
        except ValueError as error:
            raise ModelConfigError(str(error)) from error
        return model_class(config)

    def load_dir(
        folder: Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> nn.Module:
        return model_class.from_pretrained(folder, device=device, dtype=dtype)

    def is_dir(folder: Path) -> bool:
        try:
            return json.loads((Path(folder) / CONFIG_NAME).read_text()).get("model_type") == name
        except (OSError, ValueError, AttributeError):
            return False

    return {"build": build, "load_dir": load_dir, "is_dir": is_dir}


def _register_builtin_families() -> None:
    from hrm_codegen.model.hrm import HRMConfig, HRMForCausalLM
    from hrm_codegen.model.transformer import TransformerConfig, TransformerForCausalLM

    for config_class, model_class in (
        (HRMConfig, HRMForCausalLM),
        (TransformerConfig, TransformerForCausalLM),
    ):
        name = model_class.model_type
        register_model_type(
            name,
            **_dataclass_family(config_class, model_class, name),
            config_class=config_class,
            model_class=model_class,
            replace=True,
        )


# Families defined in other modules register themselves (register_model_type) when imported; the
# registry imports them here so every family is known wherever models are built or loaded. A module
# listed here may import this one back: its functions are defined by then.
FAMILY_MODULES = ("hrm_codegen.model.hf_models",)


def _import_family_modules() -> None:
    for name in FAMILY_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


_register_builtin_families()
_import_family_modules()

__all__ = [
    "ModelConfigError",
    "ModelType",
    "build_model",
    "get_model_type",
    "load_model_dir",
    "matched_depth",
    "model_classes",
    "model_type_of_dir",
    "model_types",
    "other_architecture_fields",
    "register_model_type",
]
