"""A decontaminated pretraining corpus of Python source as token shards, and `PackedDataset`.

`build_corpus` reads `.py` files from local folders (default: this interpreter's standard
library and site-packages) or a streamed Hugging Face dataset, drops files that fail the quality
filters, exact duplicates and files overlapping MBPP/HumanEval, tokenizes the rest in parallel
and writes `{split}_{k:05d}.bin` shards (uint16 when the vocabulary fits, else uint32) with EOS
after every document, plus a `meta.json` describing exactly what went in. The output depends
only on the inputs and settings: building twice gives identical bytes, and a build whose inputs
are unchanged is skipped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from hrm_codegen.data.corpus_filters import (
    Decontaminator,
    FilterConfig,
    content_hash,
    decode_source,
    is_validation,
    quality_drop_reason,
)

META_FILE = "meta.json"
FORMAT_VERSION = 1
SPLITS = ("train", "validation")


def default_source_dirs() -> list[Path]:
    """The running interpreter's standard library and site-packages: a real, offline corpus."""
    paths = sysconfig.get_paths()
    found: list[Path] = []
    for key in ("stdlib", "purelib", "platlib"):
        path = Path(paths[key]).resolve()
        if path.is_dir() and path not in found:
            found.append(path)
    return found


def stdlib_dir() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def python_files(
    directories: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()
) -> list[Path]:
    """All `.py` files under the folders (minus those under `exclude`), sorted, each once.

    Site-packages lives inside the stdlib folder on most installs, so overlapping roots and
    symlinks are resolved and de-duplicated by real path.
    """
    excluded = [Path(e).resolve() for e in exclude]
    seen: set[Path] = set()
    for directory in directories:
        root = Path(directory).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"source folder {root} does not exist or is not a folder")
        for path in root.rglob("*.py"):
            real = path.resolve()
            if real in seen or not real.is_file():
                continue
            if any(real.is_relative_to(e) for e in excluded):
                continue
            seen.add(real)
    return sorted(seen)


def stdlib_python_files() -> list[Path]:
    """The standard library's own `.py` files, without any installed packages."""
    root = stdlib_dir()
    installed = [p for p in root.iterdir() if p.name in ("site-packages", "dist-packages")]
    return python_files([root], exclude=installed)


def clean_python_texts(
    files: list[Path],
    decontaminate: bool = True,
    benchmark_path: str | None = None,
    filters: FilterConfig | None = None,
    progress: bool = True,
) -> tuple[list[str], Counter]:
    """The files that pass the quality filters, de-duplication and decontamination, as texts.

    The same rules as `build_corpus`, run in one process: for the tokenizer's smaller corpus.
    Returns the texts and the count of files dropped per reason.
    """
    from hrm_codegen.data.corpus_filters import benchmark_texts

    filters = filters or FilterConfig()
    decontaminator = Decontaminator(benchmark_texts(benchmark_path)) if decontaminate else None
    texts, dropped, hashes = [], Counter(), set()
    for path in tqdm(files, desc="filter", unit="file", disable=not progress):
        text = decode_source(path.read_bytes())
        reason = "non_utf8" if text is None else quality_drop_reason(text, filters)
        if reason is None and decontaminator is not None and decontaminator.is_contaminated(text):
            reason = "contaminated"
        if reason is None and content_hash(text) in hashes:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        hashes.add(content_hash(text))
        texts.append(text)
    return texts, dropped


def tokenizer_fingerprint(tokenizer_json: str) -> str:
    """sha256 of the tokenizer's serialised form: shards are only valid for this exact tokenizer."""
    return hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- worker side
# Each worker process holds the tokenizer and the decontaminator, set once by `_init_worker`.
_WORKER: dict = {}


def _init_worker(
    tokenizer_json: str, decontaminator: Decontaminator | None, filters: FilterConfig
) -> None:
    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # parallelism comes from the process pool
    tokenizer = Tokenizer.from_str(tokenizer_json)
    # Source that mentions "<|endoftext|>" must not inject a fake document boundary.
    tokenizer.encode_special_tokens = True
    _WORKER.update(tokenizer=tokenizer, decontaminator=decontaminator, filters=filters)


def _process(item: str | Path) -> tuple[str | None, str | None, np.ndarray | None]:
    """(drop reason, content hash, token ids) for one file path or one text."""
    if isinstance(item, Path):
        try:
            raw = item.read_bytes()
        except OSError:
            return "unreadable", None, None
        text = decode_source(raw)
        if text is None:
            return "non_utf8", None, None
    else:
        text = item
    reason = quality_drop_reason(text, _WORKER["filters"])
    if reason is not None:
        return reason, None, None
    decontaminator = _WORKER["decontaminator"]
    if decontaminator is not None and decontaminator.is_contaminated(text):
        return "contaminated", None, None
    ids = _WORKER["tokenizer"].encode(text, add_special_tokens=False).ids
    return None, content_hash(text), np.asarray(ids, dtype=np.uint32)


# ----------------------------------------------------------------------------- main side
@dataclass
class ShardWriter:
    """Appends documents (each followed by EOS) to `{split}_{k:05d}.bin` files of a fixed dtype."""

    directory: Path
    split: str
    dtype: np.dtype
    eos_id: int
    shard_tokens: int
    shards: list[dict] = field(default_factory=list)
    documents: int = 0
    _handle: object = None

    def add(self, ids: np.ndarray) -> None:
        if self._handle is None or self.shards[-1]["tokens"] >= self.shard_tokens:
            self._open_next()
        data = np.empty(len(ids) + 1, dtype=self.dtype)
        data[:-1] = ids
        data[-1] = self.eos_id
        data.tofile(self._handle)
        self.shards[-1]["tokens"] += len(data)
        self.documents += 1

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._handle = open(self.directory / name, "wb")  # noqa: SIM115 (closed in close())
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def tokens(self) -> int:
        return sum(shard["tokens"] for shard in self.shards)


def _sources_fingerprint(files: list[Path]) -> str:
    """Paths, sizes and modification times: a pip install changes it, a rebuild does not."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _is_up_to_date(output_dir: Path, config_hash: str) -> dict | None:
    meta_path = output_dir / META_FILE
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("config_hash") != config_hash:
        return None
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in meta["splits"].values():
        for shard in split["shards"]:
            path = output_dir / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["tokens"] * itemsize:
                return None
    return meta


def _hub_texts(dataset: str, text_column: str, split: str, limit: int | None) -> Iterator[str]:
    import datasets

    stream = datasets.load_dataset(dataset, split=split, streaming=True)
    for index, row in enumerate(stream):
        if limit is not None and index >= limit:
            return
        if text_column not in row:
            raise KeyError(
                f"{dataset} has no column {text_column!r} (columns: {sorted(row)}); "
                "pass --text-column"
            )
        yield row[text_column]


def summary_table(meta: dict) -> str:
    """A plain-text table of files seen/kept/dropped per reason and tokens per split."""
    rows = [("files seen", meta["files"]["seen"]), ("files kept", meta["files"]["kept"])]
    rows += [(f"dropped: {reason}", n) for reason, n in sorted(meta["files"]["dropped"].items())]
    for split, info in meta["splits"].items():
        rows.append((f"{split} documents", info["documents"]))
        rows.append((f"{split} tokens", info["tokens"]))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':-<{width + 16}}", *(f"{name:<{width}}  {value:>14,}" for name, value in rows)]
    return "\n".join([*lines, lines[0]])


def _write_shards(
    items: Iterable[str | Path],
    writers: dict[str, ShardWriter],
    total: int | None,
    worker_args: tuple,
    val_fraction: float,
    workers: int,
    progress: bool,
) -> tuple[int, int, Counter]:
    """Filter and tokenize `items` in a process pool; returns (seen, kept, dropped per reason).

    Results come back in input order, and de-duplication keeps the first copy in that order,
    so the shards do not depend on the number of workers.
    """
    dropped: Counter[str] = Counter()
    seen_hashes: set[str] = set()
    seen = 0
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=worker_args) as pool:
        results = pool.imap(_process, items, chunksize=8)
        bar = tqdm(results, total=total, desc="corpus", unit="file", disable=not progress)
        for reason, file_hash, ids in bar:
            seen += 1
            if reason is None and file_hash in seen_hashes:
                reason = "duplicate"
            if reason is not None:
                dropped[reason] += 1
                continue
            seen_hashes.add(file_hash)
            split = "validation" if is_validation(file_hash, val_fraction) else "train"
            writers[split].add(ids)
    for writer in writers.values():
        writer.close()
    return seen, len(seen_hashes), dropped


def build_corpus(
    output_dir: str | os.PathLike,
    tokenizer: str | os.PathLike = "code-bpe",
    source_dirs: list[str | os.PathLike] | None = None,
    hf_dataset: str | None = None,
    hf_text_column: str = "content",
    hf_split: str = "train",
    max_documents: int | None = None,
    val_fraction: float = 0.01,
    filters: FilterConfig | None = None,
    decontaminate: bool = True,
    benchmark_path: str | None = None,
    ngram: int = 10,
    shard_tokens: int = 50_000_000,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or confirm up to date) the token shards in `output_dir`; returns the meta dict.

    Sources: `hf_dataset` (streamed, `hf_text_column`) when given, else `source_dirs`
    (default: `default_source_dirs()`). Decontamination needs the benchmarks (from
    `benchmark_path`, `$HRM_CODEGEN_DATA_DIR` or the hub); turning it off is recorded in meta.
    """
    from hrm_codegen.data.corpus_filters import benchmark_texts
    from hrm_codegen.tokenization import load_tokenizer

    filters = filters or FilterConfig()
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    output_dir = Path(output_dir).expanduser()
    hf_tokenizer = load_tokenizer(tokenizer)
    tokenizer_json = hf_tokenizer.backend_tokenizer.to_str()
    vocab_size = len(hf_tokenizer)
    dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)

    files: list[Path] = []
    if hf_dataset is None:
        files = python_files(source_dirs or default_source_dirs())
        if max_documents is not None:
            files = files[:max_documents]
        sources = {"dirs": [str(Path(d).resolve()) for d in source_dirs or default_source_dirs()]}
        sources["fingerprint"] = _sources_fingerprint(files)
    else:
        sources = {"hf_dataset": hf_dataset, "column": hf_text_column, "split": hf_split}
    decon_texts = benchmark_texts(benchmark_path) if decontaminate else []
    config = {
        "format": FORMAT_VERSION,
        "tokenizer_hash": tokenizer_fingerprint(tokenizer_json),
        "sources": sources,
        "max_documents": max_documents,
        "val_fraction": val_fraction,
        "filters": filters.to_dict(),
        "decontamination": (
            {
                "ngram": ngram,
                "benchmark_hash": hashlib.sha256("\0".join(decon_texts).encode()).hexdigest(),
            }
            if decontaminate
            else None
        ),
        "shard_tokens": shard_tokens,
    }
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    if not force:
        meta = _is_up_to_date(output_dir, config_hash)
        if meta is not None:
            if progress:
                print(f"{output_dir} is up to date (same inputs and settings); nothing to do")
            return meta

    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / META_FILE).is_file():
        raise FileExistsError(
            f"{output_dir} exists and is not a corpus folder (no {META_FILE}); refusing to "
            "replace it. Pass an empty or new --output folder."
        )
    decontaminator = Decontaminator(decon_texts, n=ngram) if decontaminate else None
    staging = output_dir.with_name(output_dir.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    eos_id = hf_tokenizer.eos_token_id
    writers = {split: ShardWriter(staging, split, dtype, eos_id, shard_tokens) for split in SPLITS}
    items: Iterable[str | Path] = (
        files
        if hf_dataset is None
        else _hub_texts(hf_dataset, hf_text_column, hf_split, max_documents)
    )
    try:
        seen, kept, dropped = _write_shards(
            items,
            writers,
            len(files) or None,
            (tokenizer_json, decontaminator, filters),
            val_fraction,
            workers or os.cpu_count() or 1,
            progress,
        )
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise

    meta = {
        **{key: config[key] for key in ("format", "tokenizer_hash", "sources", "val_fraction")},
        "config_hash": config_hash,
        "config": config,
        "tokenizer": {"name": str(tokenizer), "vocab_size": vocab_size, "eos_id": eos_id},
        "dtype": dtype.name,
        "files": {"seen": seen, "kept": kept, "dropped": dict(sorted(dropped.items()))},
        "splits": {
            split: {"documents": w.documents, "tokens": w.tokens, "shards": w.shards}
            for split, w in writers.items()
        },
    }
    (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    if progress:
        print(summary_table(meta))
    return meta


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
