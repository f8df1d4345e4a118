"""Build a corpus: documents of a named source -> filtered, de-duplicated, decontaminated token
shards with a manifest and a content fingerprint.

A source (sources.py: `stdlib`, `installed`, `debian`, `hf`, `dirs`) yields documents in a fixed
order; worker processes verify each file's checksum, apply the quality filters and the benchmark
n-gram decontamination, tokenize, and compute a MinHash signature; the main process drops exact
and near-duplicates (first copy kept, in source order) and appends the rest, each followed by EOS,
to `{split}_{k:05d}.bin` shards (uint16 when the vocabulary fits, else uint32). Results come back
in source order, so the shards do not depend on the number of workers.

Each split also gets `{split}_documents.npy` (`DOCUMENT_INDEX_SUFFIX`): for every document, where
its tokens end in the split's stream and its language, so training can mix languages and score
each one apart. An optional `language_tag` (a format string such as "<|{language}|>\n") is put
before every document's text; off by default, and part of the settings (hence of the config
hash and the fingerprint's shards) only when on.

The manifest (`meta.json`) records the source's pin, the settings, the counts (files, bytes,
tokens per split and per language), what was dropped and why (`dropped.jsonl` names every
dropped document), and the fingerprint: sha256 over the tokenizer and the ordered shard bytes.
Two builds with the same fingerprint trained on the same tokens. A build writes to a temporary
folder renamed at the end, so a killed build never leaves a folder that looks complete; a build
whose inputs and settings are unchanged is skipped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hrm_codegen.data.corpus.near_dedup import NearDedupConfig, NearDuplicateIndex, signature
from hrm_codegen.data.corpus.packed import META_FILE
from hrm_codegen.data.corpus.sources import (
    CorpusSource,
    DirsSource,
    Document,
    StdlibSource,
    read_document,
    source_from_config,
)
from hrm_codegen.data.corpus_filters import (
    Decontaminator,
    FilterConfig,
    content_hash,
    decode_source,
    is_validation,
    quality_drop_reason,
)

FORMAT_VERSION = 2
SPLITS = ("train", "validation")
DROPPED_FILE = "dropped.jsonl"
DEFAULT_DECONTAMINATE = ("mbpp", "mbpp_sanitized", "humaneval")
DOCUMENT_INDEX_SUFFIX = "_documents.npy"


class FingerprintMismatch(RuntimeError):
    """A build's fingerprint differs from the one its config expects."""


def stdlib_dir() -> Path:
    """The running interpreter's standard library folder."""
    return StdlibSource().root


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
    """The standard library's own `.py` files, without any installed packages, in the order of
    the `stdlib` corpus source."""
    return [doc.path for doc in StdlibSource().documents() if doc.path is not None]


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
    from hrm_codegen.tokenization import tokenizer_fingerprint as fingerprint

    return fingerprint(tokenizer_json)


# ----------------------------------------------------------------------------- worker side
# Each worker process holds the tokenizer, the decontaminator and the settings, set once.
_WORKER: dict = {}


def _init_worker(
    tokenizer_json: str,
    decontaminator: Decontaminator | None,
    filters: FilterConfig,
    near_dedup: NearDedupConfig | None,
    language_tag: str | None = None,
) -> None:
    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # parallelism comes from the process pool
    tokenizer = Tokenizer.from_str(tokenizer_json)
    # Source that mentions "<|endoftext|>" must not inject a fake document boundary.
    tokenizer.encode_special_tokens = True
    _WORKER.update(
        tokenizer=tokenizer,
        decontaminator=decontaminator,
        filters=filters,
        near_dedup=near_dedup,
        language_tag=language_tag,
    )


@dataclass
class Processed:
    """What a worker found out about one document."""

    name: str
    language: str
    reason: str | None = None  # why it is dropped, None when kept
    detail: str | None = None  # the benchmark it overlaps, the file it duplicates
    content_hash: str | None = None
    ids: np.ndarray | None = None
    num_bytes: int = 0
    signature: np.ndarray | None = None


def _process(document: Document) -> Processed:
    """Read (checksum verified), filter, decontaminate, tokenize and sign one document."""
    out = Processed(document.name, document.language)
    try:
        content = read_document(document)
    except OSError as error:
        out.reason, out.detail = "unreadable", f"{type(error).__name__}: {error}"
        return out
    text = decode_source(content) if isinstance(content, bytes) else content
    if text is None:
        out.reason = "non_utf8"
        return out
    out.num_bytes = len(text.encode("utf-8", "surrogatepass"))
    out.reason = quality_drop_reason(text, _WORKER["filters"])
    if out.reason is not None:
        return out
    decontaminator = _WORKER["decontaminator"]
    found = None if decontaminator is None else decontaminator.match(text)
    if found is not None:
        out.reason, out.detail = "contaminated", f"{found[0]}: {found[1]!r}"
        return out
    out.content_hash = content_hash(text)
    signed = text
    if _WORKER.get("language_tag"):
        text = _WORKER["language_tag"].format(language=document.language) + text
        out.num_bytes = len(text.encode("utf-8", "surrogatepass"))  # the tag is text too
    ids = _WORKER["tokenizer"].encode(text, add_special_tokens=False).ids
    out.ids = np.asarray(ids, dtype=np.uint32)
    if _WORKER["near_dedup"] is not None:
        out.signature = signature(signed, _WORKER["near_dedup"])
    return out


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
    num_bytes: int = 0
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    # per document: where its tokens end in the split's stream, and its language's code
    document_ends: list[int] = field(default_factory=list)
    document_codes: list[int] = field(default_factory=list)
    language_codes: dict[str, int] = field(default_factory=dict)
    _handle: object = None

    def add(self, ids: np.ndarray, language: str = "python", num_bytes: int = 0) -> None:
        if self._handle is None or self.shards[-1]["tokens"] >= self.shard_tokens:
            self._open_next()
        data = np.empty(len(ids) + 1, dtype=self.dtype)
        data[:-1] = ids
        data[-1] = self.eos_id
        data.tofile(self._handle)
        self.shards[-1]["tokens"] += len(data)
        self.documents += 1
        self.num_bytes += num_bytes
        counts = self.languages.setdefault(language, {"documents": 0, "tokens": 0, "bytes": 0})
        counts["documents"] += 1
        counts["tokens"] += len(data)
        counts["bytes"] += num_bytes
        self.document_ends.append(self.tokens)
        self.document_codes.append(
            self.language_codes.setdefault(language, len(self.language_codes))
        )

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._handle = open(self.directory / name, "wb")  # noqa: SIM115 (closed in close())
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write_document_index(self) -> dict[str, Any]:
        """Save `{split}_documents.npy` ([documents, 2] int64: end offset, language code) and
        return what the manifest says about it."""
        name = f"{self.split}{DOCUMENT_INDEX_SUFFIX}"
        index = np.stack(
            [
                np.asarray(self.document_ends, dtype=np.int64),
                np.asarray(self.document_codes, dtype=np.int64),
            ],
            axis=1,
        ).reshape(-1, 2)
        np.save(self.directory / name, index)
        return {"file": name, "languages": list(self.language_codes)}

    @property
    def tokens(self) -> int:
        return sum(shard["tokens"] for shard in self.shards)

    def summary(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "bytes": self.num_bytes,
            "languages": dict(sorted(self.languages.items())),
            "shards": self.shards,
        }


def corpus_fingerprint(corpus_dir: str | os.PathLike, meta: dict | None = None) -> str:
    """sha256 over the tokenizer's fingerprint and every shard's bytes, splits and shards in
    manifest order: equal fingerprints mean equal token streams under the same tokenizer."""
    corpus_dir = Path(corpus_dir)
    meta = meta if meta is not None else json.loads((corpus_dir / META_FILE).read_text())
    digest = hashlib.sha256(f"tokenizer\0{meta['tokenizer_hash']}\n".encode())
    for split in SPLITS:
        for shard in meta["splits"].get(split, {}).get("shards", []):
            digest.update(f"{split}\0{shard['file']}\0{shard['tokens']}\n".encode())
            with open(corpus_dir / shard["file"], "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()


def read_manifest(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    """A corpus's manifest, with its fingerprint (computed for corpora built before format 2)."""
    corpus_dir = Path(corpus_dir).expanduser()
    meta = json.loads((corpus_dir / META_FILE).read_text())
    if "fingerprint" not in meta:
        meta["fingerprint"] = corpus_fingerprint(corpus_dir, meta)
    return meta


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


def summary_table(meta: dict) -> str:
    """A plain-text table of files seen/kept/dropped per reason, tokens per split and language,
    and the fingerprint."""
    rows = [("files seen", meta["files"]["seen"]), ("files kept", meta["files"]["kept"])]
    rows += [(f"dropped: {reason}", n) for reason, n in sorted(meta["files"]["dropped"].items())]
    for split, info in meta["splits"].items():
        rows.append((f"{split} documents", info["documents"]))
        rows.append((f"{split} tokens", info["tokens"]))
        languages = info.get("languages", {})
        if len(languages) > 1:
            rows += [(f"  {lang} tokens", c["tokens"]) for lang, c in languages.items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':-<{width + 16}}", *(f"{name:<{width}}  {value:>14,}" for name, value in rows)]
    return "\n".join([*lines, lines[0], f"fingerprint {meta.get('fingerprint', '?')}"])


@dataclass
class _Outcome:
    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    contaminated_by: Counter = field(default_factory=Counter)


def _documents_total(source: CorpusSource) -> int | None:
    try:
        return len(source)
    except TypeError:  # a streamed source of unknown length
        return None


def _write_shards(
    documents: Iterable[Document],
    writers: dict[str, ShardWriter],
    total: int | None,
    worker_args: tuple,
    val_fraction: float,
    near_index: NearDuplicateIndex | None,
    dropped_log: Any,
    workers: int,
    progress: bool,
) -> _Outcome:
    """Process `documents` in a pool (results in input order) and route each to a split or to the
    dropped log; de-duplication keeps the first copy in source order."""
    outcome = _Outcome()
    seen_hashes: dict[str, str] = {}
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=worker_args) as pool:
        results: Iterator[Processed] = pool.imap(_process, documents, chunksize=8)
        bar = tqdm(results, total=total, desc="corpus", unit="doc", disable=not progress)
        for item in bar:
            outcome.seen += 1
            if item.reason is None and item.content_hash in seen_hashes:
                item.reason, item.detail = "duplicate", seen_hashes[item.content_hash]
            if item.reason is None and near_index is not None:
                assert item.signature is not None
                twin = near_index.check_and_add(item.name, item.signature)
                if twin is not None:
                    item.reason, item.detail = "near_duplicate", twin
            if item.reason is not None:
                outcome.dropped[item.reason] += 1
                if item.reason == "contaminated" and item.detail:
                    outcome.contaminated_by[item.detail.split(":", 1)[0]] += 1
                record = {"name": item.name, "reason": item.reason, "detail": item.detail}
                dropped_log.write(json.dumps(record) + "\n")
                continue
            assert item.content_hash is not None and item.ids is not None
            seen_hashes[item.content_hash] = item.name
            outcome.kept += 1
            split = "validation" if is_validation(item.content_hash, val_fraction) else "train"
            writers[split].add(item.ids, item.language, item.num_bytes)
    for writer in writers.values():
        writer.close()
    return outcome


def _decontamination(
    benchmarks: Sequence[str],
    benchmark_path: str | None,
    polyglot_dir: str | None,
    lcb_path: str | None,
) -> dict[str, list[str]]:
    from hrm_codegen.data.decontamination import benchmark_texts_by_name

    return benchmark_texts_by_name(
        list(benchmarks), data_path=benchmark_path, polyglot_dir=polyglot_dir, lcb_path=lcb_path
    )


def _environment() -> dict[str, str]:
    """Versions of what turns text into tokens: recorded, not part of the fingerprint."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("tokenizers", "datasketch", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def resolve_source(
    source: CorpusSource | dict | str | None,
    source_dirs: list[str | os.PathLike] | None = None,
    max_documents: int | None = None,
) -> CorpusSource:
    """A source object from a source, a config dict, a config name, or folders (`dirs`)."""
    if source is None and source_dirs is None:
        raise ValueError(
            "no corpus source: pass source='stdlib' (or another configs/corpus name) or source_dirs"
        )
    if source is None:
        return DirsSource([str(d) for d in source_dirs or []], max_documents=max_documents)
    if isinstance(source, str):
        from hrm_codegen.data.corpus.sources import named_source_config

        source = named_source_config(source)
    if isinstance(source, dict):
        overrides = {"max_documents": max_documents} if max_documents is not None else {}
        return source_from_config({**source, **overrides})
    return source


def build_corpus(
    output_dir: str | os.PathLike,
    tokenizer: str | os.PathLike = "code-bpe",
    source: CorpusSource | dict | str | None = None,
    *,
    source_dirs: list[str | os.PathLike] | None = None,
    max_documents: int | None = None,
    val_fraction: float = 0.01,
    filters: FilterConfig | None = None,
    decontaminate: bool | Sequence[str] = True,
    benchmark_path: str | None = None,
    polyglot_dir: str | None = None,
    lcb_path: str | None = None,
    ngram: int = 10,
    near_dedup: NearDedupConfig | dict | None = None,
    expect_fingerprint: str | None = None,
    shard_tokens: int = 50_000_000,
    language_tag: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or confirm up to date) the token shards in `output_dir`; returns the manifest.

    `source`: a `CorpusSource`, a source config, or the name of one in `configs/corpus/`;
    `source_dirs` is shorthand for a `dirs` source. `decontaminate`: benchmark names (True: MBPP,
    sanitized MBPP and HumanEval; False: none, recorded). `near_dedup`: MinHash settings, None
    for exact de-duplication only. `expect_fingerprint`: refuse (FingerprintMismatch) a build
    whose fingerprint differs, leaving it beside the output for inspection. `language_tag`:
    text put before every document, `{language}` replaced by its language (None: no tag).
    """
    from hrm_codegen.data.decontamination import benchmark_fingerprint
    from hrm_codegen.tokenization import load_tokenizer

    filters = filters or FilterConfig()
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    if isinstance(near_dedup, dict):
        near_dedup = NearDedupConfig(**near_dedup)
    benchmarks = (
        list(DEFAULT_DECONTAMINATE)
        if decontaminate is True
        else []
        if decontaminate is False
        else list(decontaminate)
    )
    corpus_source = resolve_source(source, source_dirs, max_documents)
    output_dir = Path(output_dir).expanduser()
    hf_tokenizer = load_tokenizer(tokenizer)
    tokenizer_json = hf_tokenizer.backend_tokenizer.to_str()
    vocab_size = len(hf_tokenizer)
    dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)

    decon_texts = (
        _decontamination(benchmarks, benchmark_path, polyglot_dir, lcb_path) if benchmarks else {}
    )
    if progress:
        print(f"corpus source {corpus_source.kind}: listing documents")
    config = {
        "format": FORMAT_VERSION,
        "tokenizer_hash": tokenizer_fingerprint(tokenizer_json),
        "source": corpus_source.pin(),
        "val_fraction": val_fraction,
        "filters": filters.to_dict(),
        "decontamination": (
            {"ngram": ngram, "benchmarks": benchmark_fingerprint(decon_texts)}
            if benchmarks
            else None
        ),
        "near_dedup": near_dedup.to_dict() if near_dedup is not None else None,
        "shard_tokens": shard_tokens,
    }
    if language_tag:  # only when on: every corpus built without one keeps its config hash
        if "{language}" not in language_tag:
            raise ValueError(f"language_tag={language_tag!r} must contain {{language}}")
        config["language_tag"] = language_tag
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    if not force:
        meta = _is_up_to_date(output_dir, config_hash)
        if meta is not None and expect_fingerprint in (None, meta.get("fingerprint")):
            if progress:
                print(f"{output_dir} is up to date (same inputs and settings); nothing to do")
            return meta

    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / META_FILE).is_file():
        raise FileExistsError(
            f"{output_dir} exists and is not a corpus folder (no {META_FILE}); refusing to "
            "replace it. Pass an empty or new --output folder."
        )
    decontaminator = Decontaminator(decon_texts, n=ngram) if benchmarks else None
    near_index = None
    if near_dedup is not None:
        near_index = NearDuplicateIndex(near_dedup)
        for name, texts in decon_texts.items():
            for index, text in enumerate(texts):
                near_index.add_reference(f"{name}/{index}", signature(text, near_dedup))
    staging = output_dir.with_name(output_dir.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    eos_id = hf_tokenizer.eos_token_id
    writers = {split: ShardWriter(staging, split, dtype, eos_id, shard_tokens) for split in SPLITS}
    try:
        with open(staging / DROPPED_FILE, "w") as dropped_log:
            outcome = _write_shards(
                corpus_source.documents(),
                writers,
                _documents_total(corpus_source),
                (tokenizer_json, decontaminator, filters, near_dedup, language_tag or None),
                val_fraction,
                near_index,
                dropped_log,
                workers or os.cpu_count() or 1,
                progress,
            )
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise

    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "fingerprint": "",
        "tokenizer_hash": config["tokenizer_hash"],
        "source": config["source"],
        "val_fraction": val_fraction,
        "config_hash": config_hash,
        "config": config,
        "tokenizer": {
            "name": str(tokenizer),
            "vocab_size": vocab_size,
            "eos_id": eos_id,
            "fingerprint": config["tokenizer_hash"],
        },
        "dtype": dtype.name,
        "files": {
            "seen": outcome.seen,
            "kept": outcome.kept,
            "dropped": dict(sorted(outcome.dropped.items())),
            "contaminated_by": dict(sorted(outcome.contaminated_by.items())),
            "dropped_list": DROPPED_FILE,
        },
        "splits": {split: writer.summary() for split, writer in writers.items()},
        "environment": _environment(),
    }
    for split, writer in writers.items():
        meta["splits"][split]["document_index"] = writer.write_document_index()
    if language_tag:
        meta["language_tag"] = language_tag
    meta["fingerprint"] = corpus_fingerprint(staging, meta)
    (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if expect_fingerprint is not None and meta["fingerprint"] != expect_fingerprint:
        rejected = output_dir.with_name(output_dir.name + f".rejected-{meta['fingerprint'][:12]}")
        shutil.rmtree(rejected, ignore_errors=True)
        staging.rename(rejected)
        raise FingerprintMismatch(
            f"corpus fingerprint {meta['fingerprint']} differs from the expected "
            f"{expect_fingerprint}; the build is kept in {rejected} (compare its meta.json "
            "source pin and counts with the expected corpus's)"
        )
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    if progress:
        print(summary_table(meta))
    return meta


def build_named_corpus(
    name: str,
    output_dir: str | os.PathLike,
    tokenizer: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    **options: Any,
) -> dict:
    """Build the corpus `configs/corpus/<name>.yaml` describes (source and build settings)."""
    from hrm_codegen.data.corpus.sources import named_source_config

    config = named_source_config(name, overrides)
    return build_corpus(
        output_dir,
        tokenizer=tokenizer,
        source=config,
        val_fraction=float(config.get("val_fraction", 0.01)),
        filters=FilterConfig(**(config.get("filters") or {})),
        decontaminate=config.get("decontaminate", True),
        near_dedup=config.get("near_dedup"),
        expect_fingerprint=config.get("expect_fingerprint"),
        shard_tokens=int(config.get("shard_tokens", 50_000_000)),
        language_tag=config.get("language_tag"),
        **options,
    )
