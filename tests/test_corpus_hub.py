"""The `hf` corpus source, read from a hub cache built in tmp_path (no network: offline mode)."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import os
from pathlib import Path

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hub_constants

from hrm_codegen.data.corpus import hub
from hrm_codegen.data.corpus.hub import HubSource
from hrm_codegen.data.corpus.sources import BUILD_KEYS, CorpusSourceError, named_source_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
DATASET = "acme/tiny-code"
PARQUET_ROWS = [
    {"content": f"def f{i}():\n    return {i}\n", "path": f"pkg/m{i}.py", "license": lic}
    for i, lic in enumerate(["mit", "gpl-3.0", "apache-2.0", "mit", "agpl-3.0"])
]
JSONL_ROWS = [
    {"content": "import os\n", "path": "a.py", "license": "mit", "lang": "Python"},
    {"content": "fn main() {}\n", "path": "b.rs", "license": "gpl-2.0", "lang": "Rust"},
]


def _store(repo: Path, name: str, data: bytes) -> None:
    """Lay a file out as the hub cache does: the bytes in blobs/<sha256>, and a relative link
    snapshots/<commit>/<name> pointing at it."""
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE in the environment (what HubSource reads) and in huggingface_hub's
    constants, which it reads once at import: either way no request leaves this machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def cache(tmp_path: Path, offline: None) -> Path:
    """A hub cache holding acme/tiny-code at COMMIT: a parquet shard (two rows a row group) and
    a JSON Lines file with a blank line, plus refs/main naming the commit."""
    root = tmp_path / "hub"
    repo = root / "datasets--acme--tiny-code"
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), sink, row_group_size=2)
    _store(repo, "data/train-00000.parquet", sink.getvalue().to_pybytes())
    lines = [json.dumps(JSONL_ROWS[0]), "", json.dumps(JSONL_ROWS[1])]
    _store(repo, "data/extra.jsonl", ("\n".join(lines) + "\n").encode())
    _store(repo, "README.md", b"# tiny code\n")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def _source(cache: Path, **settings) -> HubSource:
    config = dict(
        dataset=DATASET,
        revision=COMMIT,
        data_files=["data/*.parquet", "data/*.jsonl"],
        text_field="content",
        cache_dir=str(cache),
    )
    return HubSource(**{**config, **settings})


def test_documents_stream_in_sorted_file_order(cache: Path) -> None:
    source = _source(cache)
    stream = source.documents()
    assert iter(stream) is stream and not isinstance(stream, list)  # a one-pass stream
    assert inspect.isgenerator(source.list_documents())
    docs = list(stream)
    expected_names = [f"data/extra.jsonl#{i}" for i in range(2)]
    expected_names += [f"data/train-00000.parquet#{i}" for i in range(5)]
    assert [doc.name for doc in docs] == expected_names
    assert [doc.text for doc in docs] == [r["content"] for r in JSONL_ROWS + PARQUET_ROWS]
    assert {doc.language for doc in docs} == {"python"}
    assert all(doc.path is None for doc in docs)
    assert len(source) == 7
    assert [doc.name for doc in source.documents()] == expected_names  # a fresh stream each call


def test_documents_are_read_lazily(cache: Path) -> None:
    """The first rows come out before a later file is opened: nothing is read ahead."""
    shard = cache / "datasets--acme--tiny-code" / "snapshots" / COMMIT / "data/train-00000.parquet"
    shard.resolve().write_bytes(b"not parquet at all")
    stream = _source(cache).documents()
    assert [next(stream).name, next(stream).name] == ["data/extra.jsonl#0", "data/extra.jsonl#1"]
    with pytest.raises(CorpusSourceError, match="train-00000.parquet .*unreadable"):
        next(stream)


def test_max_documents_stops_the_stream_and_the_count(cache: Path) -> None:
    source = _source(cache, max_documents=3)
    assert [doc.name for doc in source.documents()] == [
        "data/extra.jsonl#0",
        "data/extra.jsonl#1",
        "data/train-00000.parquet#0",
    ]
    assert len(source) == 3


def test_language_field_and_where_filter(cache: Path) -> None:
    source = _source(
        cache, data_files="data/*.jsonl", language_field="lang", where={"license": ["mit"]}
    )
    docs = list(source.documents())
    assert [(doc.name, doc.language) for doc in docs] == [("data/extra.jsonl#0", "python")]
    everything = _source(cache, data_files="data/*.jsonl", language_field="lang")
    assert [doc.language for doc in everything.documents()] == ["python", "rust"]
    permissive = _source(cache, data_files="data/*.parquet", where={"license": ["mit", "isc"]})
    names = [doc.name for doc in permissive.documents()]
    assert names == ["data/train-00000.parquet#0", "data/train-00000.parquet#3"]  # row numbers kept
    with pytest.raises(TypeError, match="where"):
        len(permissive)


@pytest.mark.parametrize("revision", ["main", "v1.0", COMMIT[:7], COMMIT.upper()])
def test_a_revision_that_is_not_a_commit_hash_is_refused(cache: Path, revision: str) -> None:
    with pytest.raises(CorpusSourceError, match="commit hash") as caught:
        _source(cache, revision=revision)
    message = str(caught.value)
    assert repr(revision) in message and f"datasets/{DATASET}/commits" in message
    assert "\n" not in message


def test_a_revision_read_as_a_number_is_refused(cache: Path) -> None:
    with pytest.raises(CorpusSourceError, match="quote"):
        _source(cache, revision=1234567)


def test_a_missing_text_field_names_the_available_columns(cache: Path) -> None:
    parquet = _source(cache, data_files="data/*.parquet", text_field="code")
    with pytest.raises(CorpusSourceError, match="'code'") as caught:
        list(parquet.documents())
    assert "content, license, path" in str(caught.value) and "text_field" in str(caught.value)
    jsonl = _source(cache, data_files="data/*.jsonl", text_field="code")
    with pytest.raises(CorpusSourceError, match="content, lang, license, path"):
        list(jsonl.documents())


def test_a_revision_missing_from_the_cache_errors_clearly(cache: Path) -> None:
    source = _source(cache, revision=OTHER_COMMIT)
    with pytest.raises(CorpusSourceError) as caught:
        source.pin()
    message = str(caught.value)
    assert OTHER_COMMIT in message and "HF_HUB_OFFLINE" in message and str(cache) in message
    with pytest.raises(CorpusSourceError, match=OTHER_COMMIT):
        list(source.documents())


def test_data_files_matching_nothing_name_the_snapshot_files(cache: Path) -> None:
    with pytest.raises(CorpusSourceError, match="README.md"):
        _source(cache, data_files="data/python/*.parquet").pin()


def test_pin_records_each_file_sha256_without_listing_rows(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(cache)

    def no_listing(self: HubSource) -> None:
        raise AssertionError("pin() must not list the documents")

    monkeypatch.setattr(HubSource, "list_documents", no_listing)
    pin = source.pin()
    snapshot = cache / "datasets--acme--tiny-code" / "snapshots" / COMMIT
    expected = []
    for name in ["data/extra.jsonl", "data/train-00000.parquet"]:
        data = (snapshot / name).read_bytes()
        expected.append(
            {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    assert pin["files"] == expected
    assert pin["kind"] == "hf" and pin["dataset"] == DATASET and pin["revision"] == COMMIT
    assert pin["data_files"] == ["data/*.parquet", "data/*.jsonl"]
    assert pin["text_field"] == "content" and "cache_dir" not in pin  # where, not what
    json.dumps(pin)  # the manifest stores it as JSON


def test_offline_mode_is_read_when_resolving(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set after huggingface_hub was imported still keeps the source local, and
    without it the source asks the hub (it downloads what the cache lacks)."""
    calls = []
    real = huggingface_hub.snapshot_download

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**{**kwargs, "local_files_only": True})

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    _source(cache).pin()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _source(cache).pin()
    assert [call["local_files_only"] for call in calls] == [True, False]
    assert calls[0]["repo_type"] == "dataset" and calls[0]["revision"] == COMMIT
    assert calls[0]["allow_patterns"] == ["data/*.parquet", "data/*.jsonl"]


def test_gzip_json_lines_stream_but_have_no_cheap_count(tmp_path: Path, offline: None) -> None:
    repo = tmp_path / "hub" / "datasets--acme--tiny-code"
    rows = [{"content": "x = 1\n"}, {"content": None}, {"content": "y = 2\n"}]
    data = gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode())
    _store(repo, "file-000000000001.json.gz", data)
    source = _source(tmp_path / "hub", data_files="file-*.json.gz")
    assert [doc.text for doc in source.documents()] == ["x = 1\n", "", "y = 2\n"]
    with pytest.raises(TypeError, match="compressed"):
        len(source)
    assert source  # truth must not go through __len__


def test_the_shipped_config_pins_a_commit() -> None:
    config = named_source_config("hf_python")
    assert config["kind"] == "hf"
    assert config["val_fraction"] == 0.005
    assert config["decontaminate"] == [
        "mbpp",
        "mbpp_sanitized",
        "humaneval",
        "polyglot",
        "livecodebench",
    ]
    assert config["near_dedup"] == {"threshold": 0.85, "num_perm": 128, "shingle": 5}
    settings = {k: v for k, v in config.items() if k not in BUILD_KEYS and k != "kind"}
    source = HubSource(**settings)  # the revision is a quoted 40-hex commit
    assert hub.COMMIT_HASH.fullmatch(source.revision)
    assert source.describe()["where"]["license"]
