"""transformers' HRM-Text and Llama behind our model contract: sizing from our fields, cached
decoding, save_pretrained folders that AutoModelForCausalLM loads without remote code, and a
training step on our losses."""

from __future__ import annotations

import json

import pytest
import torch

from hrm_codegen.generation import generate_ids
from hrm_codegen.model.hf_models import (
    HF_MODEL_TYPES,
    bp_cycles_at,
    build_hf_model,
    hf_model_config,
    is_hf_model_dir,
    load_hf_model_dir,
    state_dict_from_dir,
)

VOCAB = 67
IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
HRM_SIZES = dict(hidden_size=32, num_heads=2, expansion=2.0, max_seq_len=48)
HRM_SIZES.update(H_layers=1, L_layers=1, H_cycles=2, L_cycles=2)


def _build(model_type: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_hf_model({"type": model_type, **HRM_SIZES, **fields}, VOCAB, **IDS)


@pytest.fixture(params=HF_MODEL_TYPES, scope="module")
def model(request):
    return _build(request.param).eval()


def test_llama_is_sized_like_our_baselines_against_the_hrm_of_the_config():
    cfg = {"type": "llama", **HRM_SIZES, "H_layers": 2, "L_layers": 3, "n_layers": 7}
    sized = {
        m: hf_model_config({**cfg, "match": m}, VOCAB, **IDS).n_layers
        for m in ("params", "compute")
    }
    assert sized == {"params": 5, "compute": 2 * (2 * 3 + 2)}
    assert hf_model_config({**cfg, "match": None}, VOCAB, **IDS).n_layers == 7
    llama = _build("llama", match="params")
    assert llama.hf.config.num_hidden_layers == 2 and llama.hf.config.model_type == "llama"
    assert llama.hf.config.intermediate_size == 256  # our SwiGLU rule: round(2/3 * 2 * 32) -> 256
    # a param-matched Llama has our post-norm HRM's blocks (plus two norm weights each)
    from hrm_codegen.model import HRMConfig, HRMForCausalLM

    ours = HRMForCausalLM(HRMConfig(vocab_size=VOCAB, **HRM_SIZES))
    norms = 2 * 2 * 32 + 32  # per-layer input/post-attention norms and the final norm
    assert llama.num_parameters(exclude_embeddings=True) == ours.num_parameters(True) + norms


def test_hrm_text_takes_our_fields():
    model = _build("hrm_text", L_bp_cycles=2, prefix_lm=True)
    hf = model.hf.config
    assert (hf.model_type, hf.num_layers_per_stack) == ("hrm_text", 1)
    assert (hf.H_cycles, hf.L_cycles) == (2, 2)
    assert hf.num_hidden_layers == 1 * 2 * (2 + 1)  # one cache slot per stack invocation
    assert (hf.hidden_size, hf.num_attention_heads, hf.head_dim) == (32, 2, 16)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.vocab_size) == (1, 2, 0, VOCAB)
    assert hf.prefix_lm and hf.L_bp_cycles == [2] and model.config.max_seq_len == 48
    # an experiment's HRM-only fields are set aside; anything else is an error that names the field
    hf_model_config({"type": "hrm_text", "bp_steps": 4, "enable_q_head": False}, VOCAB, **IDS)
    with pytest.raises(ValueError, match="bogus"):
        hf_model_config({"type": "hrm_text", "bogus": 1}, VOCAB, **IDS)
    with pytest.raises(ValueError, match="num_layers_per_stack"):
        hf_model_config({"type": "hrm_text", "H_layers": 2, "L_layers": 1}, VOCAB, **IDS)
    with pytest.raises(ValueError, match="PrefixLM"):
        hf_model_config({"type": "llama", "prefix_lm": True}, VOCAB, **IDS)
    with pytest.raises(ValueError, match="L_cycles=2"):
        hf_model_config({"type": "hrm_text", "L_cycles": 2, "L_bp_cycles": 3}, VOCAB, **IDS)


def test_bp_cycles_warm_up_from_start_to_end():
    config = hf_model_config(
        {"type": "hrm_text", "L_cycles": 5, "L_bp_cycles": 2, "L_bp_warmup_to": 5,
         "L_bp_warmup_fraction": 0.5},
        VOCAB, **IDS,
    )  # fmt: skip
    schedule = [bp_cycles_at(config, p / 100) for p in range(0, 101, 5)]
    assert schedule[0] == 2 and schedule[-1] == 5 and schedule == sorted(schedule)
    fractions = (0.0, 0.124, 0.126, 0.374, 0.376, 0.5)
    assert [bp_cycles_at(config, f) for f in fractions] == [2, 2, 3, 4, 5, 5]
    model = build_hf_model(
        {"type": "hrm_text", **HRM_SIZES, "L_cycles": 5, "L_bp_cycles": 2, "L_bp_warmup_to": 5},
        VOCAB, **IDS,
    )  # fmt: skip
    assert model.hf.model.L_bp_cycles_padded == [1, 2]
    assert model.set_training_progress(1.0) == 5 and model.hf.model.L_bp_cycles_padded == [1, 5]


def test_cached_decoding_equals_the_full_forward(model):
    ids = torch.randint(3, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.allocate_cache(3, 12)
        steps = [model(ids[:, :7], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(7, 12)]
        assert cache.seq_len == 12
        with pytest.raises(ValueError, match="overflow"):
            model(ids[:, :1], cache=cache)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)


def test_cached_greedy_output_equals_uncached(model):
    prompts = [[1, 5, 9, 11, 4], [1, 30], [1, 8, 8, 21]]  # different lengths: left padding
    kwargs = dict(max_new_tokens=8, pad_token_id=0, batch_size=3)
    cached = generate_ids(model, prompts, use_cache=True, **kwargs)
    uncached = generate_ids(model, prompts, use_cache=False, **kwargs)
    assert cached == uncached
    assert all(len(rows[0]) == 8 for rows in cached)  # no EOS given: every row runs to the end
    # samples share one prefill through cache.index_select, and a seed makes them reproducible
    sampled = generate_ids(model, prompts, do_sample=True, num_samples=2, seed=3, **kwargs)
    again = generate_ids(model, prompts[:1], do_sample=True, num_samples=2, seed=3, **kwargs)
    assert sampled[0] == again[0]


def test_save_pretrained_loads_in_transformers_without_remote_code(model, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == model.config.model_type and "auto_map" not in config
    assert (folder / "model.safetensors").is_file() and is_hf_model_dir(folder)
    assert not is_hf_model_dir(tmp_path)
    ids = torch.randint(3, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    plain = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False).eval()
    reloaded = load_hf_model_dir(folder)
    assert reloaded.config == model.config
    with torch.no_grad():
        expected = model(ids).logits
        torch.testing.assert_close(plain(ids).logits, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(reloaded(ids).logits, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="not a transformers"):
        load_hf_model_dir(tmp_path)
    # a warm start into a config that differs only in what has no weights
    no_weights = (
        {"prefix_lm": True} if model.config.model_type == "hrm_text" else {"loss": "stablemax"}
    )
    fresh = _build(model.config.model_type, **no_weights)
    fresh.load_weights(folder)
    assert set(state_dict_from_dir(folder)) == set(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", HF_MODEL_TYPES)
def test_one_training_step_through_our_losses_lowers_the_loss(model_type):
    model = _build(model_type).train()
    ids = torch.randint(3, VOCAB, (4, 16), generator=torch.Generator().manual_seed(2))
    labels = torch.cat([ids[:, 1:], torch.full((4, 1), -100)], 1)  # aligned, as our batches are
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    out = model(ids, labels=labels)
    assert out.loss is out.lm_loss and out.logits.shape == (4, 16, VOCAB)
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, VOCAB), labels.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert model(ids, labels=labels).loss < out.loss.detach() - 1e-3


def _first_error(call) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        call()
    return caught.type, str(caught.value)


def test_bad_inputs_fail_exactly_as_in_our_transformer(model):
    """HFCausalLM and HFCache reuse our models' input and cache checks: each bad input below
    raises the same error, word for word, from both."""
    from hrm_codegen.model.registry import build_model

    ours = build_model(
        {"type": "transformer", "hidden_size": 32, "num_heads": 2, "expansion": 2.0,
         "max_seq_len": 48, "n_layers": 1},
        VOCAB,
    ).eval()  # fmt: skip
    ids = torch.ones(2, 3, dtype=torch.long)

    def cases(m):
        cache = m.allocate_cache(2, 8)
        with torch.no_grad():
            m(ids, cache=cache)  # 3 of 8 positions cached
        return [
            lambda: m(torch.ones(3, dtype=torch.long)),
            lambda: m(ids, labels=ids, logits_to_keep=1),
            lambda: m(ids, labels=ids[:, :2]),
            lambda: m(torch.ones(2, 49, dtype=torch.long)),
            lambda: m(ids, attention_mask=torch.ones(2, 4, dtype=torch.long)),
            lambda: m(ids, token_type_ids=torch.ones_like(ids)),
            lambda: m(torch.ones(3, 1, dtype=torch.long), cache=cache),
            lambda: m(torch.ones(2, 6, dtype=torch.long), cache=cache),
            lambda: cache.index_select(torch.tensor([True, False])),
            lambda: cache.index_select(torch.tensor([[0, 1]])),
            lambda: cache.index_select(torch.tensor([0, 2])),
        ]

    with torch.no_grad():
        theirs_errors = [_first_error(call) for call in cases(model)]
        ours_errors = [_first_error(call) for call in cases(ours)]
    assert theirs_errors == ours_errors
    assert [kind for kind, _ in ours_errors] == [ValueError] * 8 + [
        TypeError,
        ValueError,
        IndexError,
    ]
