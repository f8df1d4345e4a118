"""Speculative decoding: the target's greedy output, whatever the draft proposes."""

from __future__ import annotations

import copy

import pytest
import torch
from test_generation import MIXED_PROMPTS, tiny_model

from hrm_codegen.generation import generate_ids
from hrm_codegen.inference.speculative import SpeculativeDraft, speculative_decode


class ContraryDraft(torch.nn.Module):
    """The target itself with its favourite token forbidden: every proposal is rejected."""

    def __init__(self, target: torch.nn.Module):
        super().__init__()
        self.target, self.config = target, target.config

    def allocate_cache(self, *args, **kwargs):
        return self.target.allocate_cache(*args, **kwargs)

    def forward(self, input_ids, **kwargs):
        out = self.target(input_ids, **kwargs)
        last = out.logits[:, -1]
        last.scatter_(-1, last.argmax(-1, keepdim=True), float("-inf"))
        return out


def noisy_copy(model: torch.nn.Module, scale: float, seed: int = 3) -> torch.nn.Module:
    """The target with Gaussian noise on its weights: agrees with it on some tokens only."""
    generator = torch.Generator().manual_seed(seed)
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for param in noisy.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale * param.std())
    return noisy


@pytest.mark.parametrize("target_kind", ["hrm", "hrm_act", "transformer"])
@pytest.mark.parametrize("tokens", [1, 3, 6])
def test_output_is_the_targets_greedy_decoding(target_kind, tokens):
    target = tiny_model(target_kind)
    expected = generate_ids(target, MIXED_PROMPTS, max_new_tokens=16)
    for draft_model in (tiny_model("transformer", seed=1), tiny_model("hrm", seed=2)):
        draft = SpeculativeDraft(draft_model, tokens)
        assert generate_ids(target, MIXED_PROMPTS, max_new_tokens=16, draft=draft) == expected
        assert draft.proposed > 0


def test_full_acceptance_and_full_rejection():
    target = tiny_model("hrm")
    expected = generate_ids(target, MIXED_PROMPTS, max_new_tokens=16)
    same = SpeculativeDraft(target, 4)  # the target as its own draft: every proposal agrees
    assert generate_ids(target, MIXED_PROMPTS, max_new_tokens=16, draft=same) == expected
    assert same.acceptance_rate == 1.0 and same.tokens_per_target_forward > 4
    contrary = SpeculativeDraft(ContraryDraft(target), 4)
    assert generate_ids(target, MIXED_PROMPTS, max_new_tokens=16, draft=contrary) == expected
    assert contrary.proposed > 0 and contrary.accepted == 0
    assert contrary.tokens_per_target_forward == 1.0


def test_partial_acceptance_rolls_back_the_caches():
    target = tiny_model("hrm")
    draft = SpeculativeDraft(noisy_copy(target, 0.3), 3)
    expected = generate_ids(target, MIXED_PROMPTS, max_new_tokens=20)
    assert generate_ids(target, MIXED_PROMPTS, max_new_tokens=20, draft=draft) == expected
    assert 0 < draft.accepted < draft.proposed  # rounds that stop inside the proposals


def test_eos_stop_and_streaming_match_plain_decoding():
    target = tiny_model("transformer")
    options = dict(max_new_tokens=12, eos_token_id=7)
    expected = generate_ids(target, MIXED_PROMPTS, **options)
    streamed = []
    got = generate_ids(
        target,
        MIXED_PROMPTS,
        **options,
        draft=SpeculativeDraft(target, 5),
        on_token=lambda p, s, t: streamed.append((p, t)),
    )
    assert got == expected
    assert [t for _, t in streamed] == [t for samples in expected for t in samples[0]]
    tokens = speculative_decode(
        target,
        SpeculativeDraft(target, 5),
        MIXED_PROMPTS[0],
        max_new_tokens=12,
        should_stop=lambda out: len(out) >= 3,
    )
    assert tokens == expected[0][0][:3]


def test_refusals():
    target = tiny_model("hrm")
    draft = SpeculativeDraft(tiny_model("transformer", vocab_size=50), 2)
    with pytest.raises(ValueError, match="vocabulary"):
        generate_ids(target, [[1, 2]], max_new_tokens=4, draft=draft)
    with pytest.raises(ValueError, match="greedy"):
        generate_ids(target, [[1, 2]], max_new_tokens=4, do_sample=True, draft=draft)
    short = SpeculativeDraft(tiny_model("transformer", max_seq_len=8), 2)
    with pytest.raises(ValueError, match="draft model's max_seq_len"):
        generate_ids(target, [[1, 2, 3]], max_new_tokens=10, draft=short)
    with pytest.raises(ValueError, match="at least 1"):
        SpeculativeDraft(target, 0)
