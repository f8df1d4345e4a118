"""PrefixLM for all three families (our HRM, our transformer, transformers' HRM-Text): the prompt
(token_type_ids == 1) attends bidirectionally, the response causally, in training and in cached
generation (a prefill into an empty cache treats its real tokens as the prompt)."""

from __future__ import annotations

import pytest
import torch

from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM
from hrm_codegen.model.hf_models import build_hf_model

VOCAB, PROMPT, TOTAL = 61, 6, 11


def _our_hrm(prefix_lm: bool = True) -> torch.nn.Module:
    config = HRMConfig(
        vocab_size=VOCAB, max_seq_len=32, hidden_size=32, num_heads=2, expansion=2.0,
        H_layers=1, L_layers=1, H_cycles=2, L_cycles=2, prefix_lm=prefix_lm,
    )  # fmt: skip
    return HRMForCausalLM(config)


def _our_transformer(prefix_lm: bool = True) -> torch.nn.Module:
    config = TransformerConfig(
        vocab_size=VOCAB, max_seq_len=32, hidden_size=32, num_heads=2, expansion=2.0,
        n_layers=2, prefix_lm=prefix_lm,
    )  # fmt: skip
    return TransformerForCausalLM(config)


def _hrm_text(prefix_lm: bool = True) -> torch.nn.Module:
    cfg = {"type": "hrm_text", "max_seq_len": 32, "hidden_size": 32, "num_heads": 2}
    cfg.update(H_layers=1, L_layers=1, H_cycles=2, L_cycles=2, prefix_lm=prefix_lm)
    return build_hf_model(cfg, VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)


FAMILIES = {"hrm": _our_hrm, "transformer": _our_transformer, "hrm_text": _hrm_text}


@pytest.fixture(params=sorted(FAMILIES), scope="module")
def model(request):
    torch.manual_seed(0)
    return FAMILIES[request.param]().eval()


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, TOTAL), generator=generator)
    types = torch.zeros_like(ids)
    types[:, :PROMPT] = 1
    return ids, types


def _logits(model, ids, types) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, token_type_ids=types).logits


def _perturbed(ids: torch.Tensor, position: int) -> torch.Tensor:
    changed = ids.clone()
    changed[:, position] = (changed[:, position] - 3 + 7) % (VOCAB - 3) + 3
    assert not torch.equal(changed, ids)
    return changed


def test_a_response_token_never_sees_a_later_token(model):
    ids, types = _batch()
    base = _logits(model, ids, types)
    for position in (PROMPT, TOTAL - 2):  # the first response token, a later one
        changed = _logits(model, _perturbed(ids, position), types)
        torch.testing.assert_close(changed[:, :position], base[:, :position], atol=1e-6, rtol=0)
        assert (changed[:, position:] - base[:, position:]).abs().max() > 1e-4


def test_prompt_positions_see_the_whole_prompt(model):
    ids, types = _batch()
    base = _logits(model, ids, types)
    changed = _logits(model, _perturbed(ids, PROMPT - 1), types)  # the last prompt token
    for position in range(PROMPT - 1):  # every earlier prompt position sees it
        assert (changed[:, position] - base[:, position]).abs().max() > 1e-4
    # the same model without token types is causal: earlier positions do not move
    with torch.no_grad():
        causal = model(ids).logits
        causal_changed = model(_perturbed(ids, PROMPT - 1)).logits
    torch.testing.assert_close(causal_changed[:, : PROMPT - 1], causal[:, : PROMPT - 1])


def test_cached_decoding_equals_the_full_prefix_lm_forward(model):
    ids, types = _batch(seed=1)
    full = _logits(model, ids, types)
    cache = model.allocate_cache(2, TOTAL)
    with torch.no_grad():  # the prefill gets no token types: its real tokens are the prompt
        steps = [model(ids[:, :PROMPT], cache=cache).logits]
        for t in range(PROMPT, TOTAL):
            steps.append(model(ids[:, t : t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)


def test_left_padded_prefill_matches_each_prompt_alone(model):
    """Generation left-pads a group of prompts: padding is neither prompt nor visible."""
    ids, _ = _batch(seed=2)
    short = PROMPT - 2
    padded = ids[:, :PROMPT].clone()
    padded[1, : PROMPT - short] = 0
    mask = torch.ones_like(padded)
    mask[1, : PROMPT - short] = 0
    cache = model.allocate_cache(2, PROMPT + 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        batched = model(padded, attention_mask=mask, position_ids=positions, cache=cache).logits
        alone = model(
            ids[1:, PROMPT - short : PROMPT], token_type_ids=torch.ones(1, short, dtype=torch.long)
        ).logits
    torch.testing.assert_close(batched[1, -short:], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["hrm", "transformer", "hrm_text"])
def test_token_types_need_prefix_lm(family):
    model = FAMILIES[family](prefix_lm=False).eval()
    ids, types = _batch()
    with pytest.raises(ValueError, match="prefix_lm"):
        model(ids, token_type_ids=types)


def test_prefix_lm_needs_a_causal_model():
    with pytest.raises(ValueError, match="needs causal=True"):
        TransformerConfig(vocab_size=VOCAB, causal=False, prefix_lm=True)


def test_act_hrm_prefix_lm_decodes_as_the_full_forward_at_the_decided_segments():
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=VOCAB, max_seq_len=32, hidden_size=32, num_heads=2, expansion=2.0,
        H_layers=1, L_layers=1, H_cycles=1, L_cycles=1, enable_q_head=True, halt_max_steps=3,
        prefix_lm=True,
    )  # fmt: skip
    model = HRMForCausalLM(config).eval()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([0.0, 0.0]))
        model.q_head.weight.normal_()
    ids, types = _batch(seed=3)
    segments = model.prepare_for_decoding(ids[:, :PROMPT])
    assert 1 <= segments <= 3
    cache = model.allocate_cache(2, TOTAL)
    with torch.no_grad():
        full = model(ids, token_type_ids=types).logits  # at the prefill's number of segments
        steps = [model(ids[:, :PROMPT], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(PROMPT, TOTAL)]
    model.end_decoding()
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="token_type_ids"):
        model.train()(ids, labels=ids, token_type_ids=types)
