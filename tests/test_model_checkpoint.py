"""save_pretrained / from_pretrained / load_model round trips and their errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hrm_codegen.model import (
    HRMConfig,
    HRMForCausalLM,
    TransformerConfig,
    TransformerForCausalLM,
    load_model,
)


def small_hrm() -> HRMForCausalLM:
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=40,
        hidden_size=16,
        num_heads=2,
        H_layers=1,
        L_layers=1,
        H_cycles=1,
        L_cycles=2,
        enable_q_head=True,
        halt_max_steps=2,
        loss="stablemax",
    )
    return HRMForCausalLM(config).eval()


def small_transformer() -> TransformerForCausalLM:
    torch.manual_seed(0)
    return TransformerForCausalLM(
        TransformerConfig(vocab_size=40, hidden_size=16, num_heads=2, n_layers=2)
    ).eval()


@pytest.mark.parametrize("build", [small_hrm, small_transformer])
def test_round_trip_keeps_config_weights_and_outputs(tmp_path, build):
    model = build()
    model.save_pretrained(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model_type"] == model.model_type
    assert saved["vocab_size"] == 40

    loaded = load_model(tmp_path / "run")
    assert type(loaded) is type(model) and loaded.config == model.config
    ids = torch.randint(0, 40, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    same_class = type(model).from_pretrained(tmp_path / "run", dtype=torch.bfloat16)
    assert same_class.lm_head.weight.dtype == torch.bfloat16


def test_hrm_buffers_are_saved(tmp_path):
    model = small_hrm()
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(tensors["H_init"], model.H_init)
    assert "rotary_emb.inv_freq" not in tensors  # recomputed, not state


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"is not a model: expected .*config\.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")


def test_unknown_model_type_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    with pytest.raises(ValueError, match="model_type='gpt2'") as error:
        load_model(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_wrong_class_and_unknown_fields_are_rejected(tmp_path):
    small_transformer().save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError, match="load_model"):
        HRMForCausalLM.from_pretrained(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["n_layer"] = 3
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="n_layer"):
        load_model(tmp_path / "t")
    del config["n_layer"]
    config["n_layers"] = 0
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="n_layers must be >= 1") as error:
        load_model(tmp_path / "t")
    assert str(tmp_path / "t" / "config.json") in str(error.value)


def test_tensors_that_do_not_fit_are_rejected(tmp_path):
    model = small_transformer()
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["lm_head.weight"] = torch.zeros(41, 16)
    del tensors["layers.1.mlp.down_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit") as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "lm_head.weight" in message and "layers.1.mlp.down_proj.weight" in message


def test_missing_or_corrupt_weights_are_rejected(tmp_path):
    small_transformer().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_model(tmp_path)
