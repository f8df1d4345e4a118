"""The pretraining corpus: named, pinned sources (sources.py and one module per kind), the build
into fingerprinted token shards (build.py), near-duplicate removal (near_dedup.py) and the packed
training windows (packed.py)."""

from hrm_codegen.data.corpus.build import (
    DROPPED_FILE,
    FORMAT_VERSION,
    SPLITS,
    FingerprintMismatch,
    ShardWriter,
    build_corpus,
    build_named_corpus,
    clean_python_texts,
    corpus_fingerprint,
    python_files,
    read_manifest,
    stdlib_dir,
    stdlib_python_files,
    summary_table,
    tokenizer_fingerprint,
)
from hrm_codegen.data.corpus.packed import META_FILE, PackedDataset, stack_windows
from hrm_codegen.data.corpus.sources import (
    CorpusSource,
    CorpusSourceError,
    DirsSource,
    Document,
    StdlibSource,
    named_source_config,
    source_from_config,
)

__all__ = [
    "DROPPED_FILE",
    "FORMAT_VERSION",
    "META_FILE",
    "SPLITS",
    "CorpusSource",
    "CorpusSourceError",
    "DirsSource",
    "Document",
    "FingerprintMismatch",
    "PackedDataset",
    "ShardWriter",
    "StdlibSource",
    "build_corpus",
    "build_named_corpus",
    "clean_python_texts",
    "corpus_fingerprint",
    "named_source_config",
    "python_files",
    "read_manifest",
    "source_from_config",
    "stack_windows",
    "stdlib_dir",
    "stdlib_python_files",
    "summary_table",
    "tokenizer_fingerprint",
]
