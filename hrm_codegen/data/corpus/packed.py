"""`PackedDataset`: fixed-length windows over a built corpus's token shards, for pretraining."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

META_FILE = "meta.json"


def stack_windows(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Packed windows all have the same length: a batch is a stack, no padding or mask."""
    return {key: torch.stack([item[key] for item in items]) for key in ("input_ids", "labels")}


class PackedDataset(Dataset):
    """Fixed-length windows over a split's shards, for pretraining; every label is real.

    Window i covers tokens [i*seq_len, (i+1)*seq_len + 1) of the split's token stream (shards
    concatenated, documents separated by EOS): `input_ids` are the first `seq_len`, `labels`
    the last `seq_len`, so `labels[t] = input_ids[t+1]`.
    """

    def __init__(self, shard_dir: str | os.PathLike, split: str, seq_len: int) -> None:
        shard_dir = Path(shard_dir).expanduser()
        meta_path = shard_dir / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path} not found; build the shards with `python scripts/build_corpus.py "
                f"--output {shard_dir}`"
            )
        meta = json.loads(meta_path.read_text())
        if split not in meta["splits"]:
            raise ValueError(f"split {split!r} not in {shard_dir}; it has {list(meta['splits'])}")
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len} must be >= 1")
        self.meta = meta
        self.seq_len = seq_len
        dtype = np.dtype(meta["dtype"])
        self.shards = [
            np.memmap(shard_dir / shard["file"], dtype=dtype, mode="r", shape=(shard["tokens"],))
            for shard in meta["splits"][split]["shards"]
            if shard["tokens"] > 0
        ]
        self.offsets = np.cumsum([0] + [len(shard) for shard in self.shards])
        total = int(self.offsets[-1])
        self.num_windows = max(0, (total - 1) // seq_len)
        if self.num_windows == 0:
            raise ValueError(
                f"split {split!r} of {shard_dir} has {total} tokens, fewer than seq_len + 1 = "
                f"{seq_len + 1}; use a shorter seq_len or a bigger corpus"
            )

    def __len__(self) -> int:
        return self.num_windows

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the concatenated stream, across shard boundaries."""
        pieces = []
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while start < stop:
            local = start - int(self.offsets[shard])
            take = min(stop - start, len(self.shards[shard]) - local)
            pieces.append(self.shards[shard][local : local + take])
            start += take
            shard += 1
        return np.concatenate(pieces).astype(np.int64)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.num_windows <= index < self.num_windows:
            raise IndexError(f"window {index} out of range for {self.num_windows} windows")
        index %= self.num_windows
        window = torch.from_numpy(self._read(index * self.seq_len, (index + 1) * self.seq_len + 1))
        return {"input_ids": window[:-1], "labels": window[1:]}
