"""KVCache on its own: writes, bounds, reordering."""

import pytest
import torch

from hrm_codegen.model import KVCache


def make_cache(batch: int = 3, max_len: int = 8) -> KVCache:
    return KVCache(num_slots=2, batch_size=batch, num_kv_heads=2, max_len=max_len, head_dim=4)


def test_update_returns_everything_cached_so_far():
    cache = make_cache()
    first_k = torch.randn(3, 2, 5, 4)
    first_v = torch.randn(3, 2, 5, 4)
    keys, values = cache.update(1, first_k, first_v)
    assert torch.equal(keys, first_k) and torch.equal(values, first_v)
    assert cache.seq_len == 0  # the model advances once after all slots are written
    cache.advance(5)

    step_k, step_v = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    keys, values = cache.update(1, step_k, step_v)
    assert keys.shape == (3, 2, 6, 4)
    assert torch.equal(keys[:, :, :5], first_k) and torch.equal(keys[:, :, 5:], step_k)
    assert torch.equal(values[:, :, 5:], step_v)
    assert torch.count_nonzero(cache.keys[0]) == 0  # the other slot is untouched


def test_overflow_is_a_clear_error():
    cache = make_cache(max_len=4)
    cache.update(0, torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4))
    cache.advance(4)
    with pytest.raises(ValueError, match="max_len=4"):
        cache.update(0, torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))
    with pytest.raises(ValueError, match="overflow"):
        cache.check_fits(3, 1)


def test_batch_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="index_select"):
        make_cache(batch=3).check_fits(2, 1)


def test_index_select_expands_and_drops_rows():
    cache = make_cache(batch=2)
    keys = torch.randn(2, 2, 3, 4)
    cache.update(0, keys, keys + 1)
    cache.advance(3)

    expanded = cache.index_select(torch.arange(2).repeat_interleave(3))
    assert expanded.batch_size == 6 and expanded.seq_len == 3
    assert torch.equal(expanded.keys[0, 4, :, :3], keys[1])
    assert torch.equal(expanded.values[0, 2, :, :3], keys[0] + 1)

    expanded.update(0, torch.ones(6, 2, 1, 4), torch.ones(6, 2, 1, 4))
    assert torch.equal(expanded.keys[0, :, :, 3], torch.ones(6, 2, 4))
    assert cache.keys[0, :, :, 3].abs().sum() == 0  # a copy: the original is not written through

    kept = expanded.index_select(torch.tensor([5]))
    assert kept.batch_size == 1 and torch.equal(kept.keys[0, 0, :, :3], keys[1])

    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        cache.index_select(torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="nonzero"):
        cache.index_select(torch.tensor([False, True]))


def test_rejects_empty_sizes():
    with pytest.raises(ValueError, match="max_len"):
        KVCache(num_slots=1, batch_size=1, num_kv_heads=1, max_len=0, head_dim=4)
