"""One registry of model families: `model.type` -> how to build one, load a saved folder, count its
FLOPs, and what the command lines call it.

The trainer builds every model through `build_model`; `hrm_codegen.model.load_model` loads every
saved folder through the entry's `load_dir`; `hrm_codegen.training.flops.flops_count` counts
FLOPs with the entry's `flops`; the command lines offer the entries' `cli_name`s
(`--model-type`). So adding a model family is its model file plus one entry at the bottom of
this module (docs/DESIGN.md, "How to add a model family"):

    register_model_type("llama", build=..., load_dir=..., is_dir=..., flops=llama_flops)

with

- `build(model_cfg, vocab_size, *, bos_token_id, eos_token_id, pad_token_id) -> nn.Module`:
  `model_cfg` is the `model` config group without `type` and `match` (and without the fields that only
  another family declares, see `other_architecture_fields`); the ids come from the run's tokenizer.
- `load_dir(folder, device=None, dtype=None) -> nn.Module`: a model folder (never a run dir:
  `load_model` resolves those first).
- `is_dir(folder) -> bool`: whether the folder holds a model of this family (cheap: read config.json).
- `flops(model, progress) -> FlopsCount`: the family's FLOPs per token (hrm_codegen/model/flops.py).
- `cli_name`: the `--model-type` of scripts/evaluate.py and scripts/generate.py (default: the name).

This module imports the model files and the FLOP formulas; none of them imports it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrm_codegen.model.checkpoint import CONFIG_NAME, config_from_dict, read_config_json
from hrm_codegen.model.flops import (
    FlopsCount,
    hrm_flops,
    hrm_text_flops,
    llama_flops,
    transformer_flops,
)
from hrm_codegen.model.hf_models import (
    HF_MODEL_TYPES,
    MODEL_FIELDS,
    builder_of,
    is_dir_of,
    load_hf_model_dir,
)
from hrm_codegen.model.hrm import HRMConfig, HRMForCausalLM
from hrm_codegen.model.sizing import ModelConfigError, matched_depth
from hrm_codegen.model.transformer import TransformerConfig, TransformerForCausalLM
from hrm_codegen.run_layout import resolve_checkpoint_dir

Builder = Callable[..., nn.Module]
DirLoader = Callable[..., nn.Module]
FlopsFormula = Callable[[nn.Module, "float | None"], FlopsCount]


@dataclass(frozen=True)
class ModelType:
    """One registered family. `fields` are the `model.*` keys it accepts (None: it takes any key),
    used to set aside what only another family knows; `flops` its FLOP formula (None: FLOPs
    unknown); `cli_name` its `--model-type`; our dataclass families also keep their
    `config_class`/`model_class`."""

    name: str
    build: Builder
    load_dir: DirLoader
    is_dir: Callable[[Path], bool]
    cli_name: str
    flops: FlopsFormula | None = None
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
    flops: FlopsFormula | None = None,
    cli_name: str | None = None,
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
        cli_name=cli_name or name,
        flops=flops,
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


def cli_names() -> list[str]:
    """The `--model-type` names of every registered family, in registration order (the order the
    command lines list them in)."""
    return [entry.cli_name for entry in _REGISTRY.values()]


def get_model_type_by_cli_name(cli_name: str) -> ModelType:
    """The family whose `--model-type` is `cli_name`, or a ValueError listing them."""
    for entry in _REGISTRY.values():
        if entry.cli_name == cli_name:
            return entry
    raise ValueError(f"--model-type {cli_name!r} unknown; use one of {cli_names()}")


def model_type_of(model: nn.Module) -> ModelType:
    """The registered family of a built or loaded model (its `model_type`)."""
    name = getattr(model, "model_type", None)
    if name not in _REGISTRY:
        raise ValueError(
            f"{type(model).__name__} has model_type={name!r}, not a registered family "
            f"({model_types()})"
        )
    return _REGISTRY[name]


def model_flops(model: nn.Module, progress: float | None = None) -> FlopsCount:
    """FLOPs per token of `model` by its family's formula (`progress`: where in training, for a
    gradient schedule that warms up)."""
    entry = model_type_of(model)
    if entry.flops is None:
        raise ValueError(f"model family {entry.name!r} was registered without a FLOP formula")
    return entry.flops(model, progress)


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


# ----------------------------------------------------------------------------- the families we ship


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
    """The families this package ships: our HRM and transformer, transformers' HRM-Text and
    Llama."""
    for config_class, model_class, flops in (
        (HRMConfig, HRMForCausalLM, hrm_flops),
        (TransformerConfig, TransformerForCausalLM, transformer_flops),
    ):
        name = model_class.model_type
        register_model_type(
            name,
            **_dataclass_family(config_class, model_class, name),
            flops=flops,
            config_class=config_class,
            model_class=model_class,
            replace=True,
        )
    hf_flops = {"hrm_text": hrm_text_flops, "llama": llama_flops}
    for name in HF_MODEL_TYPES:
        register_model_type(
            name,
            build=builder_of(name),
            load_dir=load_hf_model_dir,
            is_dir=is_dir_of(name),
            flops=hf_flops[name],
            fields=MODEL_FIELDS[name],
            replace=True,
        )


_register_builtin_families()

__all__ = [
    "ModelConfigError",
    "ModelType",
    "build_model",
    "cli_names",
    "get_model_type",
    "get_model_type_by_cli_name",
    "matched_depth",
    "model_classes",
    "model_flops",
    "model_type_of",
    "model_type_of_dir",
    "model_types",
    "other_architecture_fields",
    "register_model_type",
]
