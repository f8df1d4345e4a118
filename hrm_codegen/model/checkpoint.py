"""Saving and loading our models: a folder with `config.json` and `model.safetensors`.

`config.json` is the config dataclass (asdict) plus `"model_type"`, so `hrm_codegen.model.load_model`
can pick the class without the caller knowing which model a run trained (through
`hrm_codegen.model.registry`).

This module is the model base class and the folder format only: it imports no model file and
no run-folder code (that is `hrm_codegen.run_layout`), since Hugging Face exports ship it.
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
                f"model_type={cls.model_type!r}; use hrm_codegen.model.load_model to pick the class"
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
