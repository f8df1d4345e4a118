"""Fixed-shape (compilable) decoding, finished-row handling and the static KV cache."""

from __future__ import annotations

import pytest
import torch
from test_generation import MIXED_PROMPTS, tiny_model

from hrm_codegen import generation
from hrm_codegen.generation import generate_ids
from hrm_codegen.model.kv_cache import KVCache


@pytest.fixture
def eager_static_step(monkeypatch):
    """compile=True with torch.compile replaced by the plain step: the fixed-shape path, eager."""
    monkeypatch.setattr(
        generation, "compiled_decode_step", lambda device_type: generation._static_decode_step
    )


@pytest.mark.parametrize("kind", ["transformer", "hrm", "hrm_act"])
def test_fixed_shape_decode_step_equals_the_usual_decode_path(kind, eager_static_step):
    model = tiny_model(kind)
    for options in [
        dict(max_new_tokens=12, batch_size=4),  # greedy; the last chunk is padded to 4 rows
        dict(max_new_tokens=9, do_sample=True, num_samples=3, seed=5, top_k=20, batch_size=4),
        dict(max_new_tokens=10, eos_token_id=7),  # rows that end early stay in the batch
    ]:
        expected = generate_ids(model, MIXED_PROMPTS, **options)
        assert generate_ids(model, MIXED_PROMPTS, compile=True, **options) == expected, options


def test_compile_needs_the_cache():
    with pytest.raises(ValueError, match="use_cache=True"):
        generate_ids(
            tiny_model("transformer"), [[1, 2]], max_new_tokens=2, compile=True, use_cache=False
        )


def test_static_cache_writes_at_its_device_position_and_returns_every_column():
    cache = KVCache(num_slots=1, batch_size=2, num_kv_heads=1, max_len=4, head_dim=2)
    cache.update(0, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2))
    cache.advance(2)
    cache.make_static()
    assert cache.is_static and cache.position.tolist() == [2]
    keys, _ = cache.update(0, torch.full((2, 1, 1, 2), 5.0), torch.full((2, 1, 1, 2), 6.0))
    assert keys.shape == (2, 1, 4, 2)  # all max_len columns, whatever was written
    cache.advance(1)
    assert cache.position.tolist() == [3] and cache.seq_len == 2  # the host count is the caller's
    assert cache.keys[0, :, 0, :, 0].tolist() == [[1, 1, 5, 0], [1, 1, 5, 0]]
    assert cache.index_select(torch.tensor([1])).position.tolist() == [3]


class CountingModel(torch.nn.Module):
    """Predicts token + 1 until 11, then EOS (0): the prompt [k] yields k+1..11, so every row of a
    batch finishes at a different step. Uses a real KVCache (one slot, nothing stored)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"vocab_size": 16, "max_seq_len": 64})()

    def allocate_cache(self, batch_size, max_len, device=None, dtype=None):
        return KVCache(1, batch_size, 1, max_len, 2, device=device)

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep=0
    ):
        following = input_ids + 1
        following[following >= 12] = 0
        if cache is not None:
            cache.advance(input_ids.shape[1])
        logits = torch.nn.functional.one_hot(following, 16).float()
        return type("Out", (), {"logits": logits[:, -logits_to_keep:]})()


def test_finished_rows_are_not_compacted_every_step(monkeypatch):
    selects = []
    original = KVCache.index_select

    def counting(self, index):
        selects.append(len(index))
        return original(self, index)

    monkeypatch.setattr(KVCache, "index_select", counting)
    prompts = [[k] for k in range(1, 9)]  # 8 rows ending after 10, 9, ..., 3 new tokens
    out = generate_ids(CountingModel(), prompts, max_new_tokens=20, eos_token_id=0, batch_size=8)
    assert [o[0] for o in out] == [list(range(k + 1, 12)) for k in range(1, 9)]
    # the old loop copied the cache each time a row finished (7 copies); now only when more than
    # half the batch is done: 8 -> 3 rows, then 3 -> 1
    assert selects == [3, 1]
    uncached = generate_ids(
        CountingModel(), prompts, max_new_tokens=20, eos_token_id=0, use_cache=False
    )
    assert uncached == out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "hrm"])
def test_compiled_greedy_decoding_equals_eager_without_recompiles(kind):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    generation._COMPILED_STEPS.clear()
    model = tiny_model(kind)
    expected = generate_ids(model, MIXED_PROMPTS, max_new_tokens=12, batch_size=4)
    counters.clear()
    assert (
        generate_ids(model, MIXED_PROMPTS, max_new_tokens=12, batch_size=4, compile=True)
        == expected
    )
    assert counters["stats"]["unique_graphs"] == 1  # one graph for every step and every chunk
    assert (
        generate_ids(model, MIXED_PROMPTS, max_new_tokens=12, batch_size=4, compile=True)
        == expected
    )
    assert counters["stats"]["unique_graphs"] == 1 and not counters["recompiles"]
