"""`--backend onnx`: the exported graph decodes what the model decodes (fp32), int8 nearly so."""

from __future__ import annotations

import json

import pytest
import torch
from test_generation import MIXED_PROMPTS, tiny_model

from hrm_codegen.generation import generate_ids
from hrm_codegen.inference import BackendUnavailableError, prepare_backend
from hrm_codegen.model import HRMConfig, HRMForCausalLM

pytest.importorskip("onnxruntime")
from hrm_codegen.inference.onnx_runtime import (  # noqa: E402
    INFO_FILE,
    OnnxCausalLM,
    export_onnx,
    top1_agreement,
)

DECODINGS = [
    dict(max_new_tokens=12, batch_size=4),  # left padding, two prefill groups
    dict(max_new_tokens=9, do_sample=True, num_samples=3, seed=5, top_k=20, batch_size=4),
    dict(max_new_tokens=10, eos_token_id=7),  # rows that end early, cache compaction
]


def forced_act_model() -> HRMForCausalLM:
    model = tiny_model("hrm_act")
    model.set_inference_schedule(segments=2)  # the graph unrolls two segments
    return model


def prefix_lm_model() -> HRMForCausalLM:
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=61, max_seq_len=64, hidden_size=32, num_heads=2, num_key_value_heads=1,
        H_layers=1, L_layers=1, expansion=2.0, prefix_lm=True,
    )  # fmt: skip
    return HRMForCausalLM(config)


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny_model("transformer"),
        lambda: tiny_model("hrm"),
        forced_act_model,
        prefix_lm_model,  # bidirectional prompt, grouped kv heads
    ],
    ids=["transformer", "hrm", "hrm_act_forced", "hrm_prefix_lm_gqa"],
)
def test_fp32_graph_decodes_exactly_what_the_model_decodes(build):
    model = build()
    onnx_model = prepare_backend(model, "onnx")
    for options in DECODINGS:
        expected = generate_ids(model, MIXED_PROMPTS, **options)
        assert generate_ids(onnx_model, MIXED_PROMPTS, **options) == expected, options
    options = dict(max_new_tokens=6, use_cache=False)
    assert generate_ids(onnx_model, MIXED_PROMPTS, **options) == generate_ids(
        model, MIXED_PROMPTS, **options
    )


def test_int8_agrees_with_fp32_on_the_top_token():
    """Measured on these random tiny models: 98.3% (transformer) and 96.7% (HRM, every cycle's
    products in int8) of greedy positions pick the fp32 model's token under teacher forcing;
    random weights give flat logits, so near-ties (and disagreements) are more common than in a
    trained model."""
    for kind, floor in (("transformer", 0.95), ("hrm", 0.95)):
        model = tiny_model(kind)
        int8 = prepare_backend(model, "onnx", quantize="int8-dynamic")
        assert top1_agreement(model, int8, MIXED_PROMPTS, 24) >= floor, kind
        assert top1_agreement(model, prepare_backend(model, "onnx"), MIXED_PROMPTS, 24) == 1.0


@pytest.mark.parametrize("kind", ["hrm", "transformer"])
def test_int8_quantizes_every_weight_product_once(kind, tmp_path):
    """Every application of every weight (the HRM applies each block once per cycle) multiplies
    in int8, and each weight is stored once."""
    import onnx

    model = tiny_model(kind)
    export_onnx(model, tmp_path / "graph", quantize="int8-dynamic")
    graph = onnx.load(str(tmp_path / "graph" / "model.onnx")).graph
    stored = {tensor.name for tensor in graph.initializer}
    float_products = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in stored]
    assert float_products == []
    config = model.config
    per_token = (
        config.n_layers
        if kind == "transformer"
        else (config.H_cycles * (config.L_cycles * config.L_layers + config.H_layers))
    )
    weights_per_block = 4  # fused q/k/v, output, fused gate/up, down
    int8_products = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(int8_products) == per_token * weights_per_block + 1  # + the LM head
    int8_weights = {n.input[1] for n in int8_products}
    blocks = config.n_layers if kind == "transformer" else config.H_layers + config.L_layers
    assert len(int8_weights) == blocks * weights_per_block + 1


def test_export_to_a_folder_loads_without_the_model(tmp_path):
    model = tiny_model("hrm")
    export_onnx(model, tmp_path / "graph", quantize="int8-dynamic")
    info = json.loads((tmp_path / "graph" / INFO_FILE).read_text())
    assert info["family"] == "hrm" and info["quantize"] == "int8-dynamic"
    assert info["num_slots"] == model.allocate_cache(1, 1).num_slots
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    loaded = OnnxCausalLM(tmp_path / "graph", threads=1)
    out = generate_ids(loaded, MIXED_PROMPTS, max_new_tokens=5)
    assert all(len(samples[0]) == 5 for samples in out)


def test_models_the_export_cannot_serve_are_refused():
    with pytest.raises(BackendUnavailableError, match="ACT segments per prompt"):
        prepare_backend(tiny_model("hrm_act"), "onnx")
    with pytest.raises(BackendUnavailableError, match="float32 weights"):
        prepare_backend(tiny_model("hrm").to(torch.bfloat16), "onnx")
    with pytest.raises(BackendUnavailableError, match="int8-dynamic"):
        prepare_backend(tiny_model("hrm"), "onnx", quantize="int4")
