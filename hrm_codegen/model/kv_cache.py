"""Preallocated key/value cache for incremental decoding.

One slot per block *application*: the transformer has one per layer; the HRM one per layer per module
application per segment, because each application sees different hidden states and so produces
different keys and values at the same position.
"""

from __future__ import annotations

from typing import Any

import torch

from hrm_codegen.model.precision import compute_dtype


class KVCache:
    """Keys and values of all slots in two tensors [slots, B, kv_heads, max_len, head_dim].

    The model writes the new positions of every slot during a forward, then calls `advance(S)`;
    `seq_len` counts the positions already cached (shared by all rows; padding is the attention
    mask's business).

    After `make_static()` the cache serves fixed-shape decoding (for `torch.compile` / CUDA graphs):
    the write position lives in a device tensor (`position`), `update` writes one position with
    `index_copy_` and returns all `max_len` positions, and the attention mask passed to the model
    covers all `max_len` columns. Nothing inside the model then reads a Python int that changes
    per step, so one compiled graph serves every step. The host-side `seq_len` is the caller's
    to keep (`advance` only moves `position`), so that the compiled step never guards on it.
    """

    def __init__(
        self,
        num_slots: int,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        for name, value in [
            ("num_slots", num_slots),
            ("batch_size", batch_size),
            ("max_len", max_len),
        ]:
            if value < 1:
                raise ValueError(f"KVCache {name} must be >= 1, got {value}")
        shape = (num_slots, batch_size, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        self.values = torch.zeros_like(self.keys)
        self.seq_len = 0
        self.position: torch.Tensor | None = None  # set by make_static()

    @classmethod
    def for_model(
        cls,
        num_slots: int,
        attention: torch.nn.Module,
        like: torch.Tensor,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """A cache shaped for `attention`'s heads, on `like`'s device, in the compute dtype unless
        given: the autocast dtype under autocast (so keys and values are not cast every step),
        else `like`'s dtype."""
        return cls(
            num_slots,
            batch_size,
            attention.num_kv_heads,
            max_len,
            attention.head_dim,
            device=device or like.device,
            dtype=dtype or compute_dtype(like),
        )

    @property
    def is_static(self) -> bool:
        return self.position is not None

    def make_static(self) -> None:
        """Switch to fixed-shape decoding from the current `seq_len` (see the class docstring)."""
        self.position = torch.full((1,), self.seq_len, dtype=torch.long, device=self.keys.device)
        self._slot_index = torch.arange(self.num_slots, device=self.keys.device)

    @property
    def num_slots(self) -> int:
        return self.keys.shape[0]

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        """Raise a clear error before a forward that would not fit this cache."""
        check_cache_fits(self, batch_size, new_tokens)

    def update(
        self, slot: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [B, kv_heads, S, D] at positions seq_len..seq_len+S-1 of `slot`.

        Returns the slot's keys and values for positions 0..seq_len+S-1; a static cache writes at
        `position` and returns all max_len positions (the mask hides those not written yet).
        """
        if self.position is not None:
            # index_put_ on the whole tensor, not index_copy_ on the view keys[slot]: compiled, a
            # write into a view of a graph input becomes a copy of the entire cache every step
            index = self.position + torch.arange(keys.shape[2], device=self.position.device)
            at = [self._slot_index[slot], None, None, index]  # -> values laid out [S, B, kv, D]
            put = torch.ops.aten.index_put_  # the aten op takes None for "every index"
            put(self.keys, at, keys.permute(2, 0, 1, 3).to(self.keys.dtype))
            put(self.values, at, values.permute(2, 0, 1, 3).to(self.values.dtype))
            return self.keys[slot], self.values[slot]
        end = self.seq_len + keys.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: writing up to position {end} in a cache of max_len={self.max_len}"
            )
        self.keys[slot, :, :, self.seq_len : end] = keys
        self.values[slot, :, :, self.seq_len : end] = values
        return self.keys[slot, :, :, :end], self.values[slot, :, :, :end]

    def advance(self, new_tokens: int) -> None:
        """Mark `new_tokens` more positions as cached (called once per forward, after all slots).

        A static cache moves its device-side `position` only; the caller advances `seq_len`.
        """
        if self.position is not None:
            self.position.add_(new_tokens)
            return
        self.seq_len += new_tokens

    def index_select(self, batch_index: torch.Tensor) -> KVCache:
        """A new cache whose row i is this cache's row batch_index[i].

        Share a prefill between n samples with `index_select(torch.arange(B).repeat_interleave(n))`,
        or drop finished rows by selecting the ones still running.
        """
        batch_index = checked_batch_index(batch_index, self.batch_size, self.keys.device)
        selected = KVCache.__new__(KVCache)
        selected.keys = self.keys.index_select(1, batch_index)
        selected.values = self.values.index_select(1, batch_index)
        selected.seq_len = self.seq_len
        selected.position = None if self.position is None else self.position.clone()
        selected._slot_index = getattr(self, "_slot_index", None)
        return selected

    def __repr__(self) -> str:
        slots, batch, heads, max_len, head_dim = self.keys.shape
        return (
            f"KVCache(slots={slots}, batch={batch}, kv_heads={heads}, max_len={max_len}, "
            f"head_dim={head_dim}, seq_len={self.seq_len}, dtype={self.keys.dtype})"
        )


# ----------------------------------------------------------------------------- shared checks
# Every cache behind the model contract (this one, `hf_models.HFCache`) fails the same way.


def check_cache_fits(cache: Any, batch_size: int, new_tokens: int) -> None:
    """Raise a clear error before a forward of `batch_size` rows and `new_tokens` positions that
    would not fit `cache` (anything with `batch_size`, `seq_len` and `max_len`)."""
    if batch_size != cache.batch_size:
        raise ValueError(
            f"input batch size {batch_size} does not match the cache's {cache.batch_size}; "
            "use cache.index_select(...) to reorder or expand the cache"
        )
    if cache.seq_len + new_tokens > cache.max_len:
        raise ValueError(
            f"KV cache overflow: {cache.seq_len} cached + {new_tokens} new positions exceed "
            f"max_len={cache.max_len}; allocate a larger cache (model.allocate_cache(..., max_len=...))"
        )


def checked_batch_index(
    batch_index: torch.Tensor, batch_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """`batch_index` as a 1-D long tensor of rows in [0, batch_size), for `index_select`."""
    batch_index = torch.as_tensor(batch_index, device=device)
    if batch_index.dtype == torch.bool:  # .long() would turn a keep-mask into rows 0 and 1
        raise TypeError(
            "batch_index must hold row numbers, got a boolean mask; "
            "pass mask.nonzero().squeeze(1) instead"
        )
    batch_index = batch_index.long()
    if batch_index.dim() != 1:
        raise ValueError(f"batch_index must be 1-D, got shape {tuple(batch_index.shape)}")
    if batch_index.numel() and (batch_index.min() < 0 or batch_index.max() >= batch_size):
        raise IndexError(
            f"batch_index values must lie in [0, {batch_size}), got "
            f"[{int(batch_index.min())}, {int(batch_index.max())}]"
        )
    return batch_index
