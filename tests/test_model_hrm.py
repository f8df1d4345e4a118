"""HRMForCausalLM: size, initialisation, causality, padding, KV-cached decoding, gradients, ACT."""

import math

import pytest
import torch

from hrm_codegen.losses import sequence_is_correct, stablemax_cross_entropy
from hrm_codegen.model import HRMConfig, HRMForCausalLM
from hrm_codegen.model.layers import (
    AttentionInputs,
    Block,
    RotaryEmbedding,
    prepare_attention_inputs,
    trunc_normal_,
)

VOCAB = 61


def tiny_config(**overrides) -> HRMConfig:
    settings = dict(
        vocab_size=VOCAB,
        max_seq_len=128,
        hidden_size=32,
        num_heads=4,
        expansion=2.0,
        H_layers=1,
        L_layers=2,
        H_cycles=2,
        L_cycles=2,
    )
    return HRMConfig(**{**settings, **overrides})


def tiny_model(seed: int = 0, **overrides) -> HRMForCausalLM:
    torch.manual_seed(seed)
    return HRMForCausalLM(tiny_config(**overrides)).eval()


# ----------------------------------------------------------------------------- size and init


@pytest.fixture(scope="module")
def reference_model() -> HRMForCausalLM:
    torch.manual_seed(0)
    return HRMForCausalLM(HRMConfig.reference(vocab_size=1000))


def test_reference_size_has_27_3m_reasoning_parameters(reference_model):
    assert reference_model.num_parameters(exclude_embeddings=True) == 27_262_976
    assert reference_model.num_parameters() == 27_262_976 + 2 * 1000 * 512
    block = reference_model.H_level.layers[0]
    assert block.mlp.down_proj.in_features == 1536  # round(4 * 512 * 2/3) = 1365 -> 1536
    assert block.self_attn.qkv_proj.weight.shape == (3 * 512, 512)
    assert reference_model.H_init.shape == (512,) and reference_model.L_init.shape == (512,)


def test_initialisation_follows_the_reference(reference_model):
    names = [name for name, _ in reference_model.named_parameters()]
    assert not [n for n in names if n.endswith(".bias")]  # no biases (the Q head is off)
    assert reference_model.q_head is None

    weight = reference_model.H_level.layers[0].mlp.gate_up_proj.weight  # fan_in 512
    assert weight.std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    bound = 2 / 0.87962566 / math.sqrt(512)  # +-2 sigma of the uncorrected normal
    assert weight.abs().max().item() <= bound * (1 + 1e-5)
    assert weight.abs().max().item() > 0.95 * bound
    embedding = reference_model.embed_tokens.weight
    assert embedding.std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    assert reference_model.embed_tokens.scale == pytest.approx(math.sqrt(512))
    assert reference_model.H_init.std().item() == pytest.approx(1.0, rel=0.15)


def test_trunc_normal_has_the_requested_std_after_truncation():
    torch.manual_seed(0)
    samples = trunc_normal_(torch.empty(200_000), std=0.5)
    assert samples.std().item() == pytest.approx(0.5, rel=0.01)
    assert samples.abs().max().item() <= 2 * 0.5 / 0.87962566 + 1e-6


def test_q_head_exists_only_when_enabled_and_starts_at_minus_five():
    model = tiny_model(enable_q_head=True)
    assert torch.equal(model.q_head.weight, torch.zeros(2, 32))
    assert torch.equal(model.q_head.bias, torch.full((2,), -5.0))
    assert [n for n, _ in model.named_parameters() if n.endswith(".bias")] == ["q_head.bias"]


def test_block_is_post_norm():
    torch.manual_seed(0)
    block = Block(hidden_size=32, num_heads=4, expansion=2.0)
    h = torch.randn(2, 5, 32) * 3
    cos, sin = RotaryEmbedding(8)(torch.arange(5).expand(2, 5))
    out = block(h, AttentionInputs(cos, sin, mask=None, is_causal=True))
    rms = out.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)  # ends in a weightless RMSNorm


def test_rotary_angles_stay_float32_when_the_model_is_cast_to_bf16():
    model = tiny_model().to(torch.bfloat16)
    positions = torch.tensor([[0, 1, 1000, 2047]])
    cos, sin = model.rotary_emb(positions)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    angles = positions[..., None].double() * torch.cat([inv_freq, inv_freq])
    assert cos.dtype == torch.float32
    assert torch.allclose(cos.double(), angles.cos(), atol=1e-3)
    assert torch.allclose(sin.double(), angles.sin(), atol=1e-3)


def test_bad_configs_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="bp_steps"):
        tiny_config(bp_steps=7)  # 2 * (2 + 1) = 6 applications
    with pytest.raises(ValueError, match="enable_q_head"):
        tiny_config(halt_max_steps=4)
    with pytest.raises(ValueError, match="stablemax"):
        tiny_config(loss="mse")


# ----------------------------------------------------------------------------- forward contract


def test_forward_shapes_and_loss():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (3, 12))
    labels = ids.roll(-1, dims=1)
    labels[:, -1] = -100
    out = model(ids, labels=labels)
    assert out.logits.shape == (3, 12, VOCAB)
    expected = torch.nn.functional.cross_entropy(
        out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.lm_loss is out.loss and out.metrics == {}
    assert model(ids).loss is None
    assert torch.allclose(model(ids, logits_to_keep=1).logits, out.logits[:, -1:], atol=1e-6)


def test_stablemax_option_changes_the_loss():
    model = tiny_model(loss="stablemax")
    ids = torch.randint(0, VOCAB, (2, 8))
    out = model(ids, labels=ids)
    assert out.loss.item() == pytest.approx(stablemax_cross_entropy(out.logits, ids).item())


def test_future_tokens_never_change_earlier_logits():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 20))
    changed = ids.clone()
    changed[:, 12:] = (changed[:, 12:] + 7) % VOCAB
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    assert torch.equal(before[:, :12], after[:, :12])
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_bidirectional_mode_sees_the_future():
    model = tiny_model(causal=False)
    ids = torch.randint(0, VOCAB, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % VOCAB
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits[:, 0], model(changed).logits[:, 0])
    with pytest.raises(ValueError, match="causal"):
        model(ids, cache=model.allocate_cache(1, 16))


@pytest.mark.parametrize("causal", [True, False])
def test_left_padded_rows_match_the_unpadded_row(causal):
    model = tiny_model(causal=causal)
    long_row = torch.randint(1, VOCAB, (10,))
    short_row = torch.randint(1, VOCAB, (6,))
    ids = torch.stack([long_row, torch.cat([torch.zeros(4, dtype=torch.long), short_row])])
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :4] = 0
    with torch.no_grad():
        batch = model(ids, attention_mask=mask).logits
        alone = model(short_row[None]).logits
        long_alone = model(long_row[None]).logits
    assert torch.isfinite(batch).all()  # pad queries see only themselves: no NaN
    assert torch.allclose(batch[1, 4:], alone[0], atol=1e-5)
    assert torch.allclose(batch[0], long_alone[0], atol=1e-5)


# ----------------------------------------------------------------------------- KV cache


def decode_incrementally(model, ids, prompt_len, attention_mask=None):
    cache = model.allocate_cache(ids.shape[0], ids.shape[1])
    mask = None if attention_mask is None else attention_mask[:, :prompt_len]
    chunks = [model(ids[:, :prompt_len], attention_mask=mask, cache=cache).logits]
    for t in range(prompt_len, ids.shape[1]):
        mask = None if attention_mask is None else attention_mask[:, : t + 1]
        chunks.append(model(ids[:, t : t + 1], attention_mask=mask, cache=cache).logits)
    assert cache.seq_len == ids.shape[1]
    return torch.cat(chunks, dim=1)


@pytest.mark.parametrize("q_head", [False, True])
def test_prefill_plus_64_decode_steps_equals_the_full_forward(q_head):
    overrides = dict(enable_q_head=True, halt_max_steps=2) if q_head else {}
    model = tiny_model(**overrides)
    ids = torch.randint(0, VOCAB, (2, 16 + 64))
    with torch.no_grad():
        full = model(ids).logits
        incremental = decode_incrementally(model, ids, prompt_len=16)
    assert (full - incremental).abs().max().item() <= 1e-4


def test_cache_has_one_slot_per_layer_per_module_application_per_segment():
    model = tiny_model()
    assert model.allocate_cache(1, 8).num_slots == 2 * (2 * 2 + 1)
    act = tiny_model(enable_q_head=True, halt_max_steps=3)
    assert act.allocate_cache(1, 8).num_slots == 3 * 2 * (2 * 2 + 1)


def test_left_padded_prompt_decodes_like_the_unpadded_one():
    model = tiny_model()
    row = torch.randint(1, VOCAB, (12,))
    other = torch.randint(1, VOCAB, (15,))
    ids = torch.stack([torch.cat([torch.zeros(3, dtype=torch.long), row]), other])
    mask = torch.ones(2, 15, dtype=torch.long)
    mask[0, :3] = 0
    with torch.no_grad():
        padded = decode_incrementally(model, ids, prompt_len=7, attention_mask=mask)
        alone = model(row[None]).logits
    assert (padded[0, 3:] - alone[0]).abs().max().item() <= 1e-4


def test_shared_prefill_via_index_select_matches_separate_decoding():
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (1, 9))
    continuations = torch.randint(0, VOCAB, (3, 4))
    with torch.no_grad():
        cache = model.allocate_cache(1, 13)
        model(prompt, cache=cache)
        cache = cache.index_select(torch.zeros(3, dtype=torch.long))
        shared = torch.cat(
            [model(continuations[:, t : t + 1], cache=cache).logits for t in range(4)], dim=1
        )
        full = model(torch.cat([prompt.expand(3, 9), continuations], dim=1)).logits
    assert (shared - full[:, 9:]).abs().max().item() <= 1e-4


def test_cache_errors_name_the_fix():
    model = tiny_model()
    cache = model.allocate_cache(2, 4)
    with torch.no_grad():
        model(torch.zeros(2, 4, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="max_len=4"):
            model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="max_seq_len=128"):
        model(torch.zeros(1, 129, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 4))


def test_bf16_autocast_runs_with_and_without_cache():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(ids).logits
        incremental = decode_incrementally(model, ids, prompt_len=6)
    assert full.dtype == torch.bfloat16 and torch.isfinite(full).all()
    assert (full.float() - incremental.float()).abs().max().item() < 0.25
    with torch.no_grad():
        assert (full.float() - model(ids).logits).abs().max().item() < 0.25


# ----------------------------------------------------------------------------- gradients


def grad_flags_per_application(model, ids):
    """Whether each L/H module application's output is part of the autograd graph, in order."""
    flags = []
    hooks = [
        module.register_forward_hook(
            lambda m, i, out, tag=tag: flags.append((tag, out.requires_grad))
        )
        for tag, module in [("L", model.L_level), ("H", model.H_level)]
    ]
    model.train()
    model(ids, labels=ids).loss.backward()
    for hook in hooks:
        hook.remove()
    return flags


def test_one_step_gradient_by_default_and_bp_steps_extends_it():
    ids = torch.randint(0, VOCAB, (2, 6))
    default = grad_flags_per_application(tiny_model(), ids)
    assert [tag for tag, _ in default] == ["L", "L", "H", "L", "L", "H"]
    assert [flag for _, flag in default] == [False, False, False, False, True, True]
    three = grad_flags_per_application(tiny_model(bp_steps=3), ids)
    assert [flag for _, flag in three] == [False, False, False, True, True, True]
    full = grad_flags_per_application(tiny_model(bp_steps=6), ids)
    assert all(flag for _, flag in full)


def test_one_step_gradient_reaches_every_parameter():
    model = tiny_model().train()
    ids = torch.randint(0, VOCAB, (2, 6))
    model(ids, labels=ids).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


# ----------------------------------------------------------------------------- Q head and ACT


def test_q_head_reads_the_last_real_position():
    model = tiny_model(enable_q_head=True)
    torch.nn.init.normal_(model.q_head.weight)
    row = torch.randint(1, VOCAB, (7,))
    ids = torch.stack([torch.cat([row, torch.zeros(3, dtype=torch.long)]), torch.arange(10) + 1])
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 7:] = 0
    with torch.no_grad():
        batch = model(ids, attention_mask=mask)
        alone = model(row[None])
    assert batch.q_halt_logits.shape == (2,)
    assert batch.q_halt_logits[0].item() == pytest.approx(alone.q_halt_logits[0].item(), abs=1e-5)
    assert batch.q_continue_logits[0].item() == pytest.approx(
        alone.q_continue_logits[0].item(), abs=1e-5
    )


def act_model(halt_bias, exploration=0.0, max_steps=3):
    model = tiny_model(
        enable_q_head=True, halt_max_steps=max_steps, halt_exploration_prob=exploration
    )
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor(halt_bias))
    return model.train()


def test_act_runs_all_segments_while_q_prefers_continue():
    model = act_model([-5.0, 5.0])
    ids = torch.randint(0, VOCAB, (4, 8))
    out = model(ids, labels=ids)
    assert out.metrics["act_steps"].item() == 3
    total = out.lm_loss + 0.5 * (out.metrics["q_halt_loss"] + out.metrics["q_continue_loss"])
    assert out.loss.item() == pytest.approx(total.item())
    out.loss.backward()
    assert model.q_head.weight.grad.abs().sum() > 0


def test_act_losses_follow_the_paper_segment_by_segment():
    """Two segments that never halt: the Q-continue target of segment 1 bootstraps from segment 2's
    max Q, that of the last segment from an extra segment's Q-halt; every loss averages over both,
    each (sequence, segment) pair weighted by its label tokens (one denominator for all losses)."""
    model = act_model([-5.0, 5.0], max_steps=2)
    model.config.halt_target = "exact"
    torch.nn.init.normal_(model.q_head.weight, std=0.05)
    ids = torch.randint(0, VOCAB, (3, 8))
    labels = ids.clone()
    labels[0, :3] = -100
    out = model(ids, labels=labels)
    assert out.metrics["act_steps"].item() == 2

    with torch.no_grad():
        x = model.embed_tokens(ids)
        attn = prepare_attention_inputs(model.rotary_emb, ids, None, None, None, True, 128)
        z_H, z_L = model.initial_state(x)
        logits, q = [], []
        for _ in range(3):
            z_H, z_L = model.segment(x, z_H, z_L, attn)
            logits.append(model.lm_head(z_H))
            q.append(model.q_logits(z_H, None))

    def bce(logit, target):  # label-token weighted mean over the three rows
        weight = (labels != -100).sum(-1).float()  # 5, 8, 8
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            logit, target, reduction="none"
        )
        return (per_row * weight).sum() / weight.sum()

    targets = [torch.sigmoid(torch.maximum(*q[1])), torch.sigmoid(q[2][0])]
    q_continue = sum(bce(q[m][1], targets[m]) for m in range(2)) / 2
    correct = [sequence_is_correct(logits[m], labels).float() for m in range(2)]
    q_halt = sum(bce(q[m][0], correct[m]) for m in range(2)) / 2
    lm = torch.nn.functional.cross_entropy(
        torch.cat(logits[:2]).flatten(0, 1), torch.cat([labels, labels]).flatten()
    )
    assert out.metrics["q_continue_loss"].item() == pytest.approx(q_continue.item(), rel=1e-5)
    assert out.metrics["q_halt_loss"].item() == pytest.approx(q_halt.item(), rel=1e-5)
    assert out.lm_loss.item() == pytest.approx(lm.item(), rel=1e-5)
    assert torch.allclose(out.logits, logits[1], atol=1e-5)  # the halting segment's logits


def test_act_halts_after_one_segment_when_q_prefers_halt_and_explores_at_least_two():
    ids = torch.randint(0, VOCAB, (4, 8))
    assert act_model([5.0, -5.0])(ids, labels=ids).metrics["act_steps"].item() == 1
    assert act_model([5.0, -5.0])(ids, logits_to_keep=1).logits.shape == (4, 1, VOCAB)
    torch.manual_seed(1)
    steps = act_model([5.0, -5.0], exploration=1.0)(ids).metrics["act_steps"].item()
    assert 2 <= steps <= 3


def test_act_evaluation_always_runs_every_segment():
    model = act_model([5.0, -5.0]).eval()
    ids = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        out = model(ids, labels=ids)
        x = model.embed_tokens(ids)
        z_H, z_L = model.initial_state(x)
        attn = prepare_attention_inputs(model.rotary_emb, ids, None, None, None, True, 128)
        for _ in range(3):  # three segments by hand, carrying the state
            z_H, z_L = model.segment(x, z_H, z_L, attn)
    assert torch.allclose(out.logits, model.lm_head(z_H), atol=1e-6)
    assert out.loss is out.lm_loss and "q_halt_loss" in out.metrics


# ----------------------------------------------------------------------------- reference size (slow)


@pytest.mark.slow
def test_reference_size_decodes_like_the_full_forward(reference_model):
    model = reference_model.eval()
    ids = torch.randint(0, 1000, (2, 40))
    with torch.no_grad():
        full = model(ids).logits
        incremental = decode_incrementally(model, ids, prompt_len=24)
    assert (full - incremental).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_training_forward_compiles_without_graph_breaks():
    model = tiny_model().train()
    ids = torch.randint(0, VOCAB, (2, 16))
    eager = model(ids, labels=ids)
    compiled = torch.compile(model, fullgraph=True)(ids, labels=ids)
    compiled.loss.backward()
    assert (compiled.logits - eager.logits).abs().max().item() <= 1e-5
