"""The model registry: one place that builds every family and loads every saved folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hrm_codegen.model import HRMForCausalLM, TransformerForCausalLM, load_model, registry
from hrm_codegen.model.registry import (
    ModelConfigError,
    build_model,
    matched_depth,
    model_classes,
    model_type_of_dir,
    other_architecture_fields,
    register_model_type,
)

TINY_HRM = {
    "type": "hrm",
    "hidden_size": 16,
    "num_heads": 2,
    "H_layers": 1,
    "L_layers": 2,
    "H_cycles": 2,
    "L_cycles": 3,
    "max_seq_len": 32,
}


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry for this test, so registrations do not leak into others."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


class Echo(nn.Module):
    """A stand-in family that remembers what its builder was given."""

    def __init__(self, model_cfg: dict, vocab_size: int, ids: dict) -> None:
        super().__init__()
        self.model_cfg, self.vocab_size, self.ids = model_cfg, vocab_size, ids
        self.proj = nn.Linear(2, 2)


def register_echo(**extra) -> None:
    def build(model_cfg, vocab_size, *, bos_token_id, eos_token_id, pad_token_id):
        ids = {"bos": bos_token_id, "eos": eos_token_id, "pad": pad_token_id}
        return Echo(model_cfg, vocab_size, ids)

    def load_dir(folder, device=None, dtype=None):
        data = json.loads((Path(folder) / "config.json").read_text())
        return Echo(data, data["vocab_size"], {})

    def is_dir(folder):
        path = Path(folder) / "config.json"
        return path.is_file() and json.loads(path.read_text()).get("model_type") == "echo"

    register_model_type("echo", build=build, load_dir=load_dir, is_dir=is_dir, **extra)


def test_the_builtin_families_are_registered_with_their_classes():
    classes = model_classes()
    assert (
        classes["hrm"][1] is HRMForCausalLM and classes["transformer"][1] is TransformerForCausalLM
    )
    assert {"hrm", "transformer"} <= set(registry.model_types())


def test_a_registered_family_is_built_with_the_tokenizer_ids_and_loaded_from_its_folder(
    scratch_registry, tmp_path
):
    register_echo(fields=["width", "n_layers"])
    model = build_model(
        {"type": "echo", "width": 8, "match": "params", "n_layers": 3},
        vocab_size=50,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    assert isinstance(model, Echo) and model.vocab_size == 50
    assert model.model_cfg == {"width": 8, "n_layers": 3}  # no type/match; no HRM sizes: kept
    assert model.ids == {"bos": 1, "eos": 2, "pad": 0}
    folder = tmp_path / "run" / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "echo", "vocab_size": 7}))
    assert model_type_of_dir(tmp_path / "run") == "echo"  # a run dir resolves to its checkpoint
    assert load_model(tmp_path / "run").vocab_size == 7
    assert load_model(folder).vocab_size == 7


def test_fields_of_another_family_are_set_aside_and_unknown_ones_are_named(scratch_registry):
    register_echo(fields=["width"])
    cfg = {**TINY_HRM, "width": 4}
    assert other_architecture_fields(cfg) == ["width"]
    assert build_model(cfg, 40).config.hidden_size == 16
    with pytest.raises(ModelConfigError, match=r"unknown HRMConfig fields \['depth'\]"):
        build_model({**TINY_HRM, "depth": 4}, 40)


def test_names_are_not_silently_shadowed(scratch_registry):
    register_echo()
    with pytest.raises(ValueError, match="'echo' is already registered; pass replace=True"):
        register_echo()
    register_echo(replace=True)


def test_a_transformer_baseline_takes_its_depth_from_the_hrm_sizes():
    baseline = {**TINY_HRM, "type": "transformer", "n_layers": 8}
    with torch.device("meta"):
        params = build_model({**baseline, "match": "params"}, 40)
        compute = build_model({**baseline, "match": "compute"}, 40)
        fixed = build_model({**baseline, "match": None}, 40)
    assert params.config.n_layers == 1 + 2
    assert compute.config.n_layers == 2 * (3 * 2 + 1)
    assert fixed.config.n_layers == 8
    assert matched_depth({"n_layers": 5}, "compute", 5) == 5  # no HRM sizes: n_layers stands
    with pytest.raises(ModelConfigError, match="model.match='flops'"):
        matched_depth(baseline, "flops", 8)


def test_an_unknown_type_or_folder_is_named(tmp_path):
    with pytest.raises(ModelConfigError, match="model.type='rnn' is not one of"):
        build_model({"type": "rnn"}, 40)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'; this package loads"):
        model_type_of_dir(tmp_path)
