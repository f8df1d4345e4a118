"""The precision policy: under bf16 the stream, the cache and decoding run in bf16; losses in float32."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from hrm_codegen.generation import generate_ids
from hrm_codegen.model import (
    HRMConfig,
    HRMForCausalLM,
    TransformerConfig,
    TransformerForCausalLM,
    layers,
)
from hrm_codegen.model.layers import Attention, AttentionInputs, Block, RotaryEmbedding, sdpa
from hrm_codegen.model.precision import compute_dtype, resolve_dtype

BF16 = torch.bfloat16


def tiny(kind: str, **overrides):
    torch.manual_seed(0)
    common = dict(vocab_size=53, max_seq_len=64, hidden_size=32, num_heads=4, expansion=2.0)
    common.update(overrides)
    if kind == "transformer":
        return TransformerForCausalLM(TransformerConfig(**common, n_layers=2)).eval()
    return HRMForCausalLM(HRMConfig(**common, H_layers=1, L_layers=1)).eval()


def autocast_bf16():
    return torch.autocast("cpu", dtype=BF16)


def cast_bf16(model):
    return model.to(BF16)


MODES = {
    "autocast": (lambda model: model, autocast_bf16),
    "cast": (cast_bf16, lambda: torch.autocast("cpu", enabled=False)),
}


@pytest.mark.parametrize("kind", ["transformer", "hrm"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_under_bf16_stream_and_cache_are_bf16_and_the_loss_float32(kind, mode):
    prepare, context = MODES[mode]
    model = prepare(tiny(kind))
    ids = torch.randint(53, (2, 9), generator=torch.Generator().manual_seed(1))
    stream = []
    for module in model.modules():
        if isinstance(module, Block):
            module.register_forward_hook(
                lambda m, args, out: stream.append((args[0].dtype, out.dtype))
            )
    with context():
        out = model(ids, labels=ids)
        cache = model.allocate_cache(2, 16)
    assert stream and set(stream) == {(BF16, BF16)}  # into and out of every block
    assert cache.keys.dtype == BF16 and cache.values.dtype == BF16
    assert out.logits.dtype == BF16  # the compute dtype: full logits are the biggest activation
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_outside_autocast_a_float32_model_keeps_a_float32_cache():
    model = tiny("transformer")
    assert model.allocate_cache(1, 4).keys.dtype == torch.float32
    with autocast_bf16():
        assert model.allocate_cache(1, 4).keys.dtype == BF16
        assert model.allocate_cache(1, 4, dtype=torch.float32).keys.dtype == torch.float32


@pytest.mark.parametrize("kind", ["transformer", "hrm"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_bf16_cached_decoding_matches_the_full_forward(kind, mode):
    prepare, context = MODES[mode]
    model = prepare(tiny(kind))
    ids = torch.randint(53, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), context():
        full = model(ids).logits.float()
        cache = model.allocate_cache(2, 12)
        steps = [model(ids[:, :6], cache=cache).logits.float()]
        steps += [model(ids[:, t : t + 1], cache=cache).logits.float() for t in range(6, 12)]
    cached = torch.cat(steps, dim=1)
    # bf16 keeps ~3 significant digits; the two paths differ only in rounding
    torch.testing.assert_close(cached, full, atol=0.1, rtol=0.05)
    assert (cached.argmax(-1) == full.argmax(-1)).float().mean() > 0.9


def test_generation_under_autocast_decodes_on_a_bf16_cache():
    model = tiny("hrm")
    dtypes = []
    allocate = model.allocate_cache

    def recording(*args, **kwargs):
        cache = allocate(*args, **kwargs)
        dtypes.append(cache.keys.dtype)
        return cache

    model.allocate_cache = recording
    with autocast_bf16():
        out = generate_ids(model, [[1, 2, 3], [4, 5]], max_new_tokens=5)
    assert dtypes == [BF16] and [len(o[0]) for o in out] == [5, 5]


def test_compute_dtype_and_resolve_dtype():
    weight = torch.zeros(2)
    assert compute_dtype(weight) == torch.float32
    with autocast_bf16():
        assert compute_dtype(weight) == BF16
        assert compute_dtype(torch.zeros(2, dtype=torch.long)) == torch.long
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == BF16
    assert resolve_dtype("bf16", "cpu") == BF16 and resolve_dtype("fp32", "cuda") == torch.float32
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="not one of"):
        resolve_dtype("int8", "cpu")


# --------------------------------------------------------------------------- attention kernels


def test_grouped_query_attention_equals_the_repeat_interleave_reference():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 5, 16, generator=generator)
    k = torch.randn(2, 2, 7, 16, generator=generator)
    v = torch.randn(2, 2, 7, 16, generator=generator)
    mask = torch.rand(2, 1, 5, 7, generator=generator) > 0.3
    mask[..., 0] = True
    for keys, values, m, causal in [
        (k, v, None, False),
        (k, v, mask, False),
        (k[:, :, :5], v[:, :, :5], None, True),
    ]:
        expected = F.scaled_dot_product_attention(
            q,
            keys.repeat_interleave(4, dim=1),
            values.repeat_interleave(4, dim=1),
            attn_mask=m,
            is_causal=causal,
        )
        torch.testing.assert_close(sdpa(q, keys, values, m, causal), expected, atol=1e-5, rtol=1e-5)


def test_gqa_model_cached_decoding_matches_the_full_forward():
    model = tiny("transformer", num_key_value_heads=2)
    ids = torch.randint(53, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.allocate_cache(2, 10)
        steps = [model(ids[:, :4], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def test_flash_attn_that_cannot_run_warns_once_per_reason(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "flash_attn_func", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(layers, "_FLASH_FALLBACKS_WARNED", set())
    torch.manual_seed(0)
    attention = Attention(32, 4, attn_impl="flash_attn")
    x = torch.randn(1, 3, 32)
    cos, sin = RotaryEmbedding(8)(torch.arange(3).unsqueeze(0))
    causal = AttentionInputs(cos=cos, sin=sin, mask=None, is_causal=True)
    masked = AttentionInputs(
        cos=cos, sin=sin, mask=torch.ones(1, 1, 3, 3, dtype=torch.bool).tril(), is_causal=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = attention(x, causal)
        attention(x, causal)  # the same reasons again: no second warning
        attention(x, masked)  # a new reason (the mask): one more
        attention(x, masked)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2, messages
    assert "cpu" in messages[0] and "float32" in messages[0] and "mask" not in messages[0]
    assert "explicit attention mask" in messages[1]
    assert not calls  # the stub was never called: SDPA ran
    reference = Attention(32, 4)
    reference.load_state_dict(attention.state_dict())
    torch.testing.assert_close(first, reference(x, causal))


def test_evaluate_model_generates_a_float32_model_under_the_asked_autocast():
    from hrm_codegen.evaluation.sampling import with_precision

    seen = []

    def generate(model, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), kwargs))

    model = tiny("transformer")
    with_precision(generate, model, "bf16", compile=True)(model)
    with_precision(generate, model, None, compile=False)(model)
    with_precision(generate, cast_bf16(tiny("transformer")), "bf16", compile=False)(model)
    assert seen[0] == (True, BF16, {"compile": True})
    assert seen[1][0] is False and seen[1][2] == {}
    assert seen[2][0] is False  # already bf16 weights: nothing to autocast


def test_load_model_casts_to_the_asked_dtype(tmp_path, monkeypatch):
    from hrm_codegen.evaluation import harness

    model = tiny("hrm")
    model.save_pretrained(tmp_path)
    monkeypatch.setattr("hrm_codegen.tokenization.load_tokenizer", lambda source: "tokenizer")
    (tmp_path / "tokenizer.json").write_text("{}")
    loaded, _ = harness.load_model_and_tokenizer("hrm", tmp_path, dtype="bf16")
    assert {p.dtype for p in loaded.parameters()} == {BF16}
    loaded, _ = harness.load_model_and_tokenizer("hrm", tmp_path, dtype="auto")  # CPU: float32
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
