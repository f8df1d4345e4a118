"""Importing Sapient HRM checkpoints, checked against an independent functional reference forward."""

import math

import pytest
import torch
import torch.nn.functional as F

from hrm_codegen.model import (
    HRMConfig,
    HRMForCausalLM,
    TransformerConfig,
    TransformerForCausalLM,
    load_upstream_checkpoint,
)

PREFIX = "_orig_mod.model.inner."
VOCAB, HIDDEN, HEADS, EXPANSION = 37, 32, 4, 4.0
H_LAYERS, L_LAYERS, H_CYCLES, L_CYCLES = 2, 1, 2, 3


def intermediate_size() -> int:
    size = round(EXPANSION * HIDDEN * 2 / 3)
    return math.ceil(size / 256) * 256


def upstream_state_dict(vocab: int = VOCAB, prefix: str = PREFIX, seed: int = 0) -> dict:
    """A random checkpoint laid out like the Sapient HRM's (names, shapes, bf16 initial states)."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std):
        return torch.randn(*shape, generator=generator) * std

    inter = intermediate_size()
    state = {
        "embed_tokens.embedding_weight": normal(vocab, HIDDEN, std=HIDDEN**-0.5),
        "lm_head.weight": normal(vocab, HIDDEN, std=HIDDEN**-0.5),
        "q_head.weight": normal(2, HIDDEN, std=0.1),
        "q_head.bias": torch.tensor([-1.0, 0.5]),
        "puzzle_emb.weights": normal(11, HIDDEN, std=0.0),
        "H_init": normal(HIDDEN, std=1.0).bfloat16(),
        "L_init": normal(HIDDEN, std=1.0).bfloat16(),
    }
    for level, count in [("H_level", H_LAYERS), ("L_level", L_LAYERS)]:
        for i in range(count):
            layer = f"{level}.layers.{i}."
            state[layer + "self_attn.qkv_proj.weight"] = normal(
                3 * HIDDEN, HIDDEN, std=HIDDEN**-0.5
            )
            state[layer + "self_attn.o_proj.weight"] = normal(HIDDEN, HIDDEN, std=HIDDEN**-0.5)
            state[layer + "mlp.gate_up_proj.weight"] = normal(2 * inter, HIDDEN, std=HIDDEN**-0.5)
            state[layer + "mlp.down_proj.weight"] = normal(HIDDEN, inter, std=inter**-0.5)
    return {prefix + name: tensor for name, tensor in state.items()}


def reference_forward(state: dict, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference HRM inner forward, written out with plain tensor ops from the paper's design:
    bidirectional attention, rotary on positions 0..S-1, post-norm blocks, weightless RMSNorm."""

    def weight(name):
        return state[PREFIX + name].float()

    batch, seq = ids.shape
    head_dim = HIDDEN // HEADS
    x = weight("embed_tokens.embedding_weight")[ids] * math.sqrt(HIDDEN)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.arange(seq).float()[:, None] * inv_freq[None, :]
    cos = torch.cat([angles, angles], -1).cos()[None, :, None, :]
    sin = torch.cat([angles, angles], -1).sin()[None, :, None, :]

    def rope(t):
        half = head_dim // 2
        return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

    def norm(t):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5)

    def block(h, name):
        qkv = (h @ weight(name + "self_attn.qkv_proj.weight").T).view(
            batch, seq, 3 * HEADS, head_dim
        )
        q, k, v = (
            rope(qkv[:, :, :HEADS]),
            rope(qkv[:, :, HEADS : 2 * HEADS]),
            qkv[:, :, 2 * HEADS :],
        )
        probs = torch.einsum("bqhd,bkhd->bhqk", q, k).div(math.sqrt(head_dim)).softmax(-1)
        attended = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, seq, HIDDEN)
        h = norm(h + attended @ weight(name + "self_attn.o_proj.weight").T)
        gate, up = (h @ weight(name + "mlp.gate_up_proj.weight").T).chunk(2, -1)
        return norm(h + (F.silu(gate) * up) @ weight(name + "mlp.down_proj.weight").T)

    def module(level, layers, z, injection):
        h = z + injection
        for i in range(layers):
            h = block(h, f"{level}.layers.{i}.")
        return h

    z_H = weight("H_init").expand(batch, seq, HIDDEN)
    z_L = weight("L_init").expand(batch, seq, HIDDEN)
    for _ in range(H_CYCLES):
        for _ in range(L_CYCLES):
            z_L = module("L_level", L_LAYERS, z_L, z_H + x)
        z_H = module("H_level", H_LAYERS, z_H, z_L)
    logits = z_H @ weight("lm_head.weight").T
    q = z_H[:, 0] @ weight("q_head.weight").T + weight("q_head.bias")
    return logits, q


def our_model(vocab: int = VOCAB, **overrides) -> HRMForCausalLM:
    torch.manual_seed(1)
    settings = dict(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        num_heads=HEADS,
        expansion=EXPANSION,
        H_layers=H_LAYERS,
        L_layers=L_LAYERS,
        H_cycles=H_CYCLES,
        L_cycles=L_CYCLES,
        causal=False,
        enable_q_head=True,
    )
    return HRMForCausalLM(HRMConfig(**{**settings, **overrides})).eval()


def test_bidirectional_model_computes_the_reference_function():
    state = upstream_state_dict()
    model = our_model()
    report = load_upstream_checkpoint(model, state)
    assert set(report.skipped) == {"puzzle_emb.weights"}
    assert report.reinitialized == {}
    assert len(report.loaded) == 4 * (H_LAYERS + L_LAYERS) + 6

    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(3))
    expected_logits, expected_q = reference_forward(state, ids)
    with torch.no_grad():
        out = model(ids)
    assert (out.logits - expected_logits).abs().max().item() <= 1e-4
    assert torch.allclose(out.q_halt_logits, expected_q[:, 0], atol=1e-4)
    assert torch.allclose(out.q_continue_logits, expected_q[:, 1], atol=1e-4)


def test_loads_from_a_file_without_prefix_and_skips_a_disabled_q_head(tmp_path):
    path = tmp_path / "step_1000"
    torch.save(upstream_state_dict(prefix=""), path)
    model = our_model(enable_q_head=False)
    report = load_upstream_checkpoint(model, path)
    assert set(report.skipped) == {"puzzle_emb.weights", "q_head.weight", "q_head.bias"}
    assert "disabled" in report.skipped["q_head.weight"]
    assert torch.equal(model.H_init, upstream_state_dict()[PREFIX + "H_init"].float())
    assert "loaded" in str(report)


def test_different_vocabulary_reinitialises_embedding_and_head():
    model = our_model(vocab=50)
    fresh_embedding = model.embed_tokens.weight.clone()
    report = load_upstream_checkpoint(model, upstream_state_dict())
    assert set(report.reinitialized) == {"embed_tokens.weight", "lm_head.weight"}
    assert "vocabulary" in report.reinitialized["lm_head.weight"]
    assert torch.equal(model.embed_tokens.weight, fresh_embedding)
    layer = "H_level.layers.1.mlp.down_proj.weight"
    assert torch.equal(model.state_dict()[layer], upstream_state_dict()[PREFIX + layer])


def test_reasoning_layer_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match="num_heads and expansion"):
        load_upstream_checkpoint(our_model(expansion=16.0), upstream_state_dict())
    with pytest.raises(ValueError, match="H_layers"):
        load_upstream_checkpoint(our_model(H_layers=1), upstream_state_dict())
    with pytest.raises(ValueError, match="fewer L_level layers"):
        load_upstream_checkpoint(our_model(L_layers=2), upstream_state_dict())
    with pytest.raises(TypeError, match="HRMForCausalLM"):
        load_upstream_checkpoint(
            TransformerForCausalLM(TransformerConfig(vocab_size=VOCAB, hidden_size=HIDDEN)),
            upstream_state_dict(),
        )


def test_not_a_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "weird.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a state dict"):
        load_upstream_checkpoint(our_model(), path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_upstream_checkpoint(our_model(), tmp_path / "absent.pt")
