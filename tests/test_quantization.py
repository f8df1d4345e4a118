"""torchao quantization of our models: coverage, dtype moves, closeness to fp32, save/load."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from hrm_codegen.generation import generate_ids  # noqa: E402
from hrm_codegen.model import (  # noqa: E402
    HRMConfig,
    HRMForCausalLM,
    TransformerConfig,
    TransformerForCausalLM,
    load_model,
)
from hrm_codegen.quantization import (  # noqa: E402
    QUANTIZE_CHOICES,
    QuantizationError,
    is_quantized,
    make_recipe,
    quantizable_linears,
    quantize_model,
    save_quantized,
)

VOCAB = 256
PROJECTIONS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def tiny_hrm(hidden: int = 64, q_head: bool = True) -> HRMForCausalLM:
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=VOCAB, max_seq_len=64, hidden_size=hidden, num_heads=4, H_layers=1,
        L_layers=1, enable_q_head=q_head,
    )  # fmt: skip
    return HRMForCausalLM(config).eval()


def tiny_transformer() -> TransformerForCausalLM:
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=VOCAB, max_seq_len=64, hidden_size=64, num_heads=4, n_layers=2
    )
    return TransformerForCausalLM(config).eval()


def copy_of(model):
    clone = type(model)(model.config).eval()
    clone.load_state_dict(model.state_dict())
    return clone


@pytest.mark.parametrize("method", QUANTIZE_CHOICES)
@pytest.mark.parametrize("build", [tiny_hrm, tiny_transformer], ids=["hrm", "transformer"])
def test_every_projection_is_quantized_and_stays_so_after_to(build, method: str) -> None:
    model = quantize_model(build(), method)
    names = quantizable_linears(model)
    for projection in PROJECTIONS:
        assert any(name.endswith(projection) for name in names), projection
    assert "lm_head" in names
    modules = dict(model.named_modules())
    assert all(is_quantized(modules[name].weight) for name in names)
    assert not is_quantized(model.embed_tokens.weight)  # a lookup: left in float on purpose
    if getattr(model, "q_head", None) is not None:
        assert "q_head" not in names and not is_quantized(model.q_head.weight)
    # int4 keeps its scales in the dtype it was quantized from: cast before quantizing instead
    moves = ["cpu"] if method == "int4" else ["cpu", torch.bfloat16]
    for move in moves:
        model = model.to(move)
        modules = dict(model.named_modules())
        assert all(is_quantized(modules[name].weight) for name in names)
        with torch.no_grad():
            out = model(torch.randint(VOCAB, (2, 8))).logits
        assert out.shape == (2, 8, VOCAB) and torch.isfinite(out).all()


@pytest.mark.parametrize(("method", "threshold"), [("int8", 0.9), ("int8-dynamic", 0.85)])
def test_int8_top1_agrees_with_fp32(method: str, threshold: float) -> None:
    reference = tiny_hrm(hidden=128, q_head=False)
    quantized = quantize_model(copy_of(reference), method)
    inputs = torch.randint(VOCAB, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(inputs).logits.argmax(-1)
        got = quantized(inputs).logits.argmax(-1)
    assert (got == expected).float().mean().item() >= threshold


def test_quantized_model_generates_greedily_on_the_cache() -> None:
    reference = tiny_hrm(q_head=False)
    quantized = quantize_model(copy_of(reference), "int8")
    prompts = [[1, 5, 9, 12], [1, 7]]
    with_cache = generate_ids(quantized, prompts, max_new_tokens=6, batch_size=2)
    without = generate_ids(quantized, prompts, max_new_tokens=6, batch_size=2, use_cache=False)
    assert with_cache == without
    assert all(len(sample) == 6 for samples in with_cache for sample in samples)


@pytest.mark.parametrize("method", QUANTIZE_CHOICES)
def test_quantized_checkpoint_round_trip(tmp_path, method: str) -> None:
    model = quantize_model(tiny_hrm(), method)
    save_quantized(model, tmp_path / "q")
    loaded = load_model(tmp_path / "q")
    assert loaded.quantization_recipe == model.quantization_recipe
    inputs = torch.randint(VOCAB, (2, 8))
    with torch.no_grad():
        assert torch.equal(model(inputs).logits, loaded(inputs).logits)
    modules = dict(loaded.named_modules())
    assert all(is_quantized(modules[name].weight) for name in quantizable_linears(loaded))
    assert quantize_model(loaded, method) is loaded  # the same recipe again: nothing to do
    other = next(m for m in QUANTIZE_CHOICES if m != method)
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_model(loaded, other)


def test_int4_puts_layers_it_cannot_pack_in_int8(tmp_path) -> None:
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=VOCAB + 1, max_seq_len=64, hidden_size=64, num_heads=4, n_layers=1
    )  # 257 output rows: the CPU int4 layout packs multiples of 16 only
    with pytest.warns(UserWarning, match="quantizing them to int8 instead"):
        model = quantize_model(TransformerForCausalLM(config).eval(), "int4")
    assert model.quantization_recipe.int8_layers == ("lm_head",)
    assert type(model.lm_head.weight).__name__ == "Int8Tensor"
    assert type(model.layers[0].self_attn.qkv_proj.weight).__name__ == "Int4OpaqueTensor"
    loaded = load_model(save_quantized(model, tmp_path / "q"))
    assert loaded.quantization_recipe == model.quantization_recipe


def test_recipe_errors_and_int4_layouts() -> None:
    with pytest.raises(QuantizationError, match="choose one of"):
        make_recipe("int3", "cpu")
    with pytest.raises(QuantizationError, match="group_size"):
        make_recipe("int4", "cpu", group_size=256)
    with pytest.raises(QuantizationError, match="int4 only"):
        make_recipe("int8", "cpu", group_size=32)
    assert make_recipe("int4", "cpu").layout == "cpu"
    assert make_recipe("int4", "cuda").layout == "cuda-tinygemm"


def test_gpt2_conv1d_projections_are_refused() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    with pytest.raises(QuantizationError, match="Conv1D"):
        quantize_model(transformers.GPT2LMHeadModel(config), "int8")
