"""Named sources through the build: fingerprints, manifests, near-duplicates, pinned Python,
verified bytes, and builds that leave nothing behind when they fail."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from test_corpus import GOOD, benchmark_dir, tokenizer_dir  # noqa: F401 (fixtures)
from test_corpus_debian import CPP, GO, system  # noqa: F401 (fixture)
from test_corpus_debian import source as debian_source
from test_corpus_hub import COMMIT, DATASET, cache, offline  # noqa: F401 (fixtures)

from hrm_codegen.data.corpus import (
    DROPPED_FILE,
    CorpusSourceError,
    FingerprintMismatch,
    StdlibSource,
    build_corpus,
    corpus_fingerprint,
    named_source_config,
    read_manifest,
    source_from_config,
)
from hrm_codegen.data.corpus.near_dedup import NearDedupConfig, NearDuplicateIndex, signature

REPO = Path(__file__).resolve().parents[1]


def _build(output: Path, tokenizer: Path, **kwargs):
    options = {"decontaminate": False, "workers": 1, "progress": False}
    return build_corpus(output, tokenizer=tokenizer, **{**options, **kwargs})


def _python_tree(root: Path, count: int = 6) -> Path:
    """`count` different small modules."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        body = GOOD.replace("mean", f"mean_{i}").replace("Counter", f"Counter{i}")
        (root / f"mod_{i}.py").write_text(body + f"\n\nLIMIT_{i} = {i * 7}\n" + "# note\n" * i)
    return root


def test_the_fingerprint_names_the_tokens_whatever_the_workers(tmp_path, tokenizer_dir):  # noqa: F811
    tree = _python_tree(tmp_path / "src")
    one = _build(tmp_path / "one", tokenizer_dir, source_dirs=[tree], val_fraction=0.3)
    two = _build(tmp_path / "two", tokenizer_dir, source_dirs=[tree], val_fraction=0.3, workers=2)
    assert one["fingerprint"] == two["fingerprint"] == corpus_fingerprint(tmp_path / "one")
    assert len(one["fingerprint"]) == 64
    assert one["tokenizer"]["fingerprint"] == one["tokenizer_hash"]
    assert one["splits"]["train"]["languages"]["python"]["documents"] >= 1
    assert one["splits"]["train"]["bytes"] > 0
    # a one-character edit changes it
    (tree / "mod_0.py").write_text(
        (tree / "mod_0.py").read_text().replace("total = 0", "total = 1")
    )
    edited = _build(tmp_path / "three", tokenizer_dir, source_dirs=[tree], val_fraction=0.3)
    assert edited["fingerprint"] != one["fingerprint"]


def test_an_unexpected_fingerprint_is_refused_and_kept_aside(tmp_path, tokenizer_dir):  # noqa: F811
    tree = _python_tree(tmp_path / "src")
    with pytest.raises(FingerprintMismatch, match="differs from the expected 0{64}") as caught:
        _build(tmp_path / "out", tokenizer_dir, source_dirs=[tree], expect_fingerprint="0" * 64)
    assert not (tmp_path / "out").exists()  # never looks like the expected corpus
    rejected = list(tmp_path.glob("out.rejected-*"))
    assert len(rejected) == 1 and str(rejected[0]) in str(caught.value)
    meta = json.loads((rejected[0] / "meta.json").read_text())
    again = _build(
        tmp_path / "out", tokenizer_dir, source_dirs=[tree], expect_fingerprint=meta["fingerprint"]
    )
    assert (
        again["fingerprint"] == meta["fingerprint"] and (tmp_path / "out" / "meta.json").is_file()
    )


def test_a_failed_build_leaves_no_folder_that_looks_complete(tmp_path, system, tokenizer_dir):  # noqa: F811
    admindir, root = system
    (root / "usr/share/go/src/sort/sort.go").write_bytes(b"package sort // changed after install\n")
    with pytest.raises(CorpusSourceError, match="md5 .* differs .* reinstall"):
        _build(tmp_path / "out", tokenizer_dir, source=debian_source(system, GO))
    assert not list(tmp_path.glob("out*"))


def test_debian_languages_are_counted_per_split_and_language(tmp_path, system, tokenizer_dir):  # noqa: F811
    from hrm_codegen.data.corpus_filters import FilterConfig

    meta = _build(
        tmp_path / "out",
        tokenizer_dir,
        source=debian_source(system, GO, CPP),
        filters=FilterConfig(min_bytes=1, min_alnum_fraction=0.0),
        val_fraction=0.0,
    )
    languages = meta["splits"]["train"]["languages"]
    assert set(languages) == {"go", "cpp"}
    assert languages["go"]["documents"] + languages["cpp"]["documents"] == meta["files"]["kept"]
    assert meta["source"]["kind"] == "debian"
    assert meta["source"]["packages"][0]["version"] == "1.19.8-2"


def test_hub_rows_at_a_pinned_commit_build_offline(tmp_path, cache, tokenizer_dir):  # noqa: F811
    from hrm_codegen.data.corpus_filters import FilterConfig

    config = {
        "kind": "hf",
        "dataset": DATASET,
        "revision": COMMIT,
        "data_files": ["data/*.parquet"],
        "text_field": "content",
        "cache_dir": str(cache),
    }
    meta = _build(
        tmp_path / "out",
        tokenizer_dir,
        source=config,
        filters=FilterConfig(min_bytes=1, min_alnum_fraction=0.0),
    )
    assert meta["source"]["revision"] == COMMIT and meta["files"]["seen"] >= 2
    with pytest.raises(CorpusSourceError, match="commit"):
        _build(tmp_path / "branch", tokenizer_dir, source={**config, "revision": "main"})


def test_near_duplicates_are_dropped_naming_the_copy_they_repeat(tmp_path, tokenizer_dir):  # noqa: F811
    tree = _python_tree(tmp_path / "src", count=3)
    original = "\n".join(
        f"def step_{i}(value):\n    return value * {i} + offset_{i}\n" for i in range(40)
    )
    (tree / "a_original.py").write_text(original)
    # the same file with one function renamed: not an exact duplicate, Jaccard ~0.95
    (tree / "b_fork.py").write_text(original.replace("step_3(", "stage_3("))
    meta = _build(tmp_path / "out", tokenizer_dir, source_dirs=[tree], near_dedup={})
    assert meta["files"]["dropped"] == {"near_duplicate": 1}
    dropped = [json.loads(line) for line in (tmp_path / "out" / DROPPED_FILE).open()]
    assert dropped == [
        {"name": "0/b_fork.py", "reason": "near_duplicate", "detail": "0/a_original.py"}
    ]
    exact_only = _build(tmp_path / "exact", tokenizer_dir, source_dirs=[tree])
    assert exact_only["files"]["kept"] == meta["files"]["kept"] + 1


def test_near_duplicate_index_prefers_benchmark_references():
    config = NearDedupConfig(threshold=0.8)
    text = " ".join(f"alpha{i} beta{i} gamma{i}" for i in range(60))
    index = NearDuplicateIndex(config)
    index.add_reference("polyglot/7", signature(text, config))
    assert index.check_and_add("doc", signature(text + " extra", config)) == "benchmark:polyglot/7"
    unrelated = " ".join(f"other{i} words{i}" for i in range(60))
    assert index.check_and_add("doc2", signature(unrelated, config)) is None
    assert signature(text, config).shape == (config.num_perm,)
    with pytest.raises(ValueError, match="threshold"):
        NearDedupConfig(threshold=1.5)


def test_stdlib_never_enters_installed_packages_and_pins_the_python(tmp_path):
    root = tmp_path / "lib"
    for rel in ("os.py", "json/__init__.py", "site-packages/numpy/core.py", "x/dist-packages/y.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x = 1\n")
    source = StdlibSource(root=str(root))
    assert [d.name for d in source.documents()] == ["json/__init__.py", "os.py"]
    assert source.pin()["python"] == platform.python_version()
    with pytest.raises(CorpusSourceError, match=r"pinned to Python 2\.7\.18 but this is Python"):
        StdlibSource(python="2.7.18", root=str(root)).documents()
    real = StdlibSource(python=platform.python_version(), max_documents=5)
    assert len(real.documents()) == 5
    assert not any("site-packages" in d.name for d in StdlibSource().documents())


def test_named_sources_load_and_unknown_ones_are_listed():
    config = named_source_config("stdlib", {"max_documents": 3})
    assert config["kind"] == "stdlib" and config["max_documents"] == 3
    assert config["near_dedup"] and "polyglot" in config["decontaminate"]
    with pytest.raises(FileNotFoundError, match="pick one of .*installed.*stdlib"):
        named_source_config("nonesuch")
    with pytest.raises(ValueError, match="kind 'nonesuch' unknown"):
        source_from_config({"kind": "nonesuch"})
    with pytest.raises(ValueError, match="bad settings"):
        source_from_config({"kind": "stdlib", "colour": "blue"})


def test_build_corpus_cli_takes_a_source_config_and_overrides(tmp_path, tokenizer_dir):  # noqa: F811
    tree = _python_tree(tmp_path / "src")
    config = tmp_path / "mine.yaml"
    config.write_text(f"kind: dirs\ndirs: [{tree}]\nval_fraction: 0.0\ndecontaminate: false\n")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_corpus.py"),
            "--source",
            str(config),
            "--set",
            "max_documents=2",
            "--tokenizer",
            str(tokenizer_dir),
            "--output",
            str(tmp_path / "out"),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    meta = read_manifest(tmp_path / "out")
    assert meta["source"]["documents"] == 2 and meta["files"]["seen"] == 2
    assert meta["fingerprint"] in result.stdout


def test_training_names_the_source_to_build_when_its_corpus_is_missing(tmp_path, monkeypatch):
    from hrm_codegen.training.data import DataConfigError, build_stage_data

    monkeypatch.setenv("HRM_CODEGEN_HOME", str(tmp_path))
    config = {"stage": "pretrain", "source": "installed", "max_seq_len": 8, "shard_dir": None}
    with pytest.raises(
        DataConfigError, match="build_corpus.py --source installed --output .*installed"
    ):
        build_stage_data({**config, "train_split": "train", "val_split": "validation"}, None)
