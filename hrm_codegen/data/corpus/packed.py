"""`PackedDataset`: fixed-length windows over a built corpus's token shards, for pretraining;
`LanguageWindows`: windows over one language's documents only (from one corpus or several);
`ConcatWindows`: several corpora's splits read one after another, labels' languages named."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
        self._load_document_index(shard_dir, meta["splits"][split], total)
        if self.num_windows == 0:
            raise ValueError(
                f"split {split!r} of {shard_dir} has {total} tokens, fewer than seq_len + 1 = "
                f"{seq_len + 1}; use a shorter seq_len or a bigger corpus"
            )

    def _load_document_index(self, shard_dir: Path, split_meta: dict, total: int) -> None:
        """Each document's end in the stream and language (`{split}_documents.npy`); a corpus
        built before the index has one only when its split holds a single language."""
        index = split_meta.get("document_index")
        self.document_ends: np.ndarray | None = None
        self.language_names: list[str] = []
        if index is not None and (shard_dir / index["file"]).is_file():
            table = np.load(shard_dir / index["file"])
            self.document_ends, self.document_codes = table[:, 0], table[:, 1]
            self.language_names = list(index["languages"])
        elif len(split_meta.get("languages", {})) == 1:
            self.document_ends = np.asarray([total], dtype=np.int64)
            self.document_codes = np.zeros(1, dtype=np.int64)
            self.language_names = list(split_meta["languages"])

    def _require_index(self) -> None:
        if self.document_ends is None:
            raise ValueError(
                "this corpus has no document index (built before it, with several languages): "
                "rebuild it with `scripts/build_corpus.py ... --force` (the shards and the "
                "fingerprint come out the same)"
            )

    def label_language_codes(self, index: int) -> np.ndarray:
        """For window `index`: the code (into `language_names`) of each label token's language."""
        self._require_index()
        assert self.document_ends is not None
        index %= self.num_windows
        start = index * self.seq_len + 1
        positions = np.arange(start, start + self.seq_len)
        documents = np.searchsorted(self.document_ends, positions, side="right")
        return self.document_codes[np.minimum(documents, len(self.document_codes) - 1)]

    def language_spans(self, language: str) -> tuple[np.ndarray, np.ndarray]:
        """Start and end offsets (in the split's stream) of the documents in `language`."""
        self._require_index()
        assert self.document_ends is not None
        if language not in self.language_names:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], self.document_ends[:-1]])
        chosen = self.document_codes == self.language_names.index(language)
        return starts[chosen], self.document_ends[chosen]

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


class LanguageWindows(Dataset):
    """Fixed-length windows over the documents of one language, read in corpus order from one
    or more `PackedDataset`s of the same tokenizer (their split streams; each document keeps
    its EOS), as if those documents alone had been written to the shards."""

    def __init__(
        self,
        parts: list[PackedDataset],
        language: str,
        seq_len: int,
        max_windows: int | None = None,
    ) -> None:
        self.language, self.seq_len = language, seq_len
        self.language_names = [language]
        self.parts = parts
        owners, starts, lengths = [], [], []
        for number, part in enumerate(parts):
            begin, end = part.language_spans(language)
            owners.append(np.full(len(begin), number, dtype=np.int64))
            starts.append(begin)
            lengths.append(end - begin)
        self.owners = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        sizes = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.tokens = int(self.offsets[-1])
        self.num_windows = max(0, (self.tokens - 1) // seq_len)
        if max_windows is not None:  # the first windows only (a validation sample)
            self.num_windows = min(self.num_windows, int(max_windows))

    def __len__(self) -> int:
        return self.num_windows

    def label_language_codes(self, index: int) -> np.ndarray:
        """Every label is this language's (code 0 of `language_names`)."""
        return np.zeros(self.seq_len, dtype=np.int64)

    def _read(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        span = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while start < stop:
            local = start - int(self.offsets[span])
            take = min(stop - start, int(self.offsets[span + 1]) - start)
            begin = int(self.starts[span]) + local
            pieces.append(self.parts[int(self.owners[span])]._read(begin, begin + take))
            start += take
            span += 1
        return np.concatenate(pieces)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.num_windows <= index < self.num_windows:
            raise IndexError(f"window {index} out of range for {self.num_windows} windows")
        index %= self.num_windows
        window = torch.from_numpy(self._read(index * self.seq_len, (index + 1) * self.seq_len + 1))
        return {"input_ids": window[:-1], "labels": window[1:]}


class ConcatWindows(Dataset):
    """The windows of several `PackedDataset`s one after another (e.g. the validation splits of
    every corpus a mixed run reads), with each label token's language under one shared naming."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = [part for part in parts if len(part)]
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])
        self.language_names: list[str] = []
        self._codes: list[np.ndarray] = []
        for part in self.parts:
            for name in part.language_names:
                if name not in self.language_names:
                    self.language_names.append(name)
            self._codes.append(
                np.asarray([self.language_names.index(n) for n in part.language_names] or [0])
            )

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return part, index - int(self.offsets[part])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        part, local = self._locate(index)
        return self.parts[part][local]

    def label_language_codes(self, index: int) -> np.ndarray:
        part, local = self._locate(index)
        return self._codes[part][self.parts[part].label_language_codes(local)]
