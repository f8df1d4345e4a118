"""Several languages: the balanced tokenizer sample, the per-language tokens-per-byte table,
language probabilities, per-language windows and bpb, on a tiny Python + Go tree."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from language_fixtures import write_two_language_tree

from hrm_codegen.data.corpus import DirsSource
from hrm_codegen.data.corpus.languages import (
    allocate,
    balanced_sample,
    language_probabilities,
    texts_by_language,
)
from hrm_codegen.tokenization import load_tokenizer, train_code_bpe
from hrm_codegen.tokenization.train import language_table, tokens_per_byte

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_two_language_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def by_language(tree):
    source = DirsSource([str(tree)], languages=["python", "go"])
    return texts_by_language(source.documents(), val_fraction=0.0)


def test_texts_are_grouped_by_the_language_of_their_extension(by_language):
    assert sorted(by_language) == ["go", "python"]
    assert all("package " in text for text in by_language["go"].texts)
    assert all("def " in text for text in by_language["python"].texts)
    assert len(by_language["go"].texts) == len(by_language["python"].texts) == 8


def test_balance_gives_each_language_the_same_bytes(by_language):
    budget = 1000
    texts, counts = balanced_sample(by_language, budget, seed=3)
    for language in ("go", "python"):
        one = len(by_language[language].texts[0].encode())
        # whole documents until the budget is reached: at least the budget, less than one more
        assert budget <= counts[language]["bytes"] < budget + one + 50
        assert counts[language]["available_bytes"] == by_language[language].num_bytes
    assert len(texts) == counts["go"]["documents"] + counts["python"]["documents"]
    # the default budget is the smallest language's bytes: that language is taken whole
    _, default = balanced_sample(by_language, None)
    smallest = min(default, key=lambda lang: default[lang]["available_bytes"])
    assert default[smallest]["documents"] == 8


def test_validation_documents_are_left_out_of_the_tokenizer_sample(tree):
    source = DirsSource([str(tree)], languages=["python", "go"])
    everything = texts_by_language(source.documents(), val_fraction=0.0)
    held = texts_by_language(source.documents(), val_fraction=0.5)
    kept = sum(len(entry.texts) for entry in held.values())
    left_out = sum(entry.dropped.get("validation", 0) for entry in held.values())
    assert left_out > 0 and kept + left_out == 16 == sum(len(e.texts) for e in everything.values())


def test_language_probabilities_follow_the_temperature_or_the_weights():
    counts = {"python": 900, "go": 100}
    assert language_probabilities(counts, 1.0) == pytest.approx({"go": 0.1, "python": 0.9})
    flat = language_probabilities(counts, 2.0)  # sqrt: 30 vs 10
    assert flat == pytest.approx({"go": 0.25, "python": 0.75})
    assert language_probabilities(counts, weights={"python": 1.0}) == {"go": 0.0, "python": 1.0}
    with pytest.raises(ValueError, match="rust"):
        language_probabilities(counts, weights={"rust": 1.0})
    assert allocate(10, {"a": 0.55, "b": 0.45}) == {"a": 6, "b": 4}
    assert sum(allocate(7, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}).values()) == 7


def test_the_table_has_a_row_per_language(by_language, tmp_path):
    texts = [t for entry in by_language.values() for t in entry.texts]
    folder = train_code_bpe(texts, 400, tmp_path / "bpe", progress=False)
    tokenizer = load_tokenizer(folder)
    table = language_table({"bpe": tokenizer}, {lang: e.texts for lang, e in by_language.items()})
    rows = [line.split() for line in table.splitlines()[3:]]
    assert [row[0] for row in rows] == ["go", "python"]
    go_rate = tokens_per_byte(tokenizer, by_language["go"].texts)
    assert float(rows[0][2]) == pytest.approx(go_rate, abs=1e-4)
    assert 0.0 < go_rate < 1.0


def test_train_tokenizer_script_records_bytes_per_language(tree, tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(f"kind: dirs\ndirs: [{tree}]\nlanguages: [python, go]\nval_fraction: 0.0\n")
    output = tmp_path / "bpe"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_tokenizer.py"),
            *("--corpus", str(config), "--balance", "language"),
            *("--bytes-per-language", "800", "--vocab-size", "400"),
            *("--no-decontaminate", "--output", str(output)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads((output / "training.json").read_text())
    assert info["balance"] == "language" and info["bytes_per_language"] == 800
    assert sorted(info["languages"]) == ["go", "python"]
    for counts in info["languages"].values():
        assert counts["bytes"] >= 800 and counts["documents"] < 8
    assert info["training_texts"] == sum(c["documents"] for c in info["languages"].values())


# ----------------------------------------------------------------------------- built corpora
@pytest.fixture(scope="module")
def bpe_dir(by_language, tmp_path_factory) -> Path:
    texts = [t for entry in by_language.values() for t in entry.texts]
    return train_code_bpe(texts, 400, tmp_path_factory.mktemp("bpe"), progress=False)


def _build(tree: Path, out: Path, bpe_dir: Path, **options) -> dict:
    from hrm_codegen.data.corpus import build_corpus

    source = DirsSource([str(tree)], languages=["python", "go"])
    settings = {"val_fraction": 0.3, "decontaminate": False, "workers": 1, "progress": False}
    return build_corpus(out, bpe_dir, source, **{**settings, **options})


@pytest.fixture(scope="module")
def corpus(tree, bpe_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "two"
    _build(tree, out, bpe_dir)
    return out


def test_every_label_token_is_named_with_its_documents_language(corpus, bpe_dir):
    from hrm_codegen.data.corpus import PackedDataset

    tokenizer = load_tokenizer(bpe_dir)
    for split in ("train", "validation"):
        windows = PackedDataset(corpus, split, 16)
        assert sorted(windows.language_names) == ["go", "python"]
        for index in range(len(windows)):
            labels = windows[index]["labels"].tolist()
            codes = windows.label_language_codes(index)
            for language in windows.language_names:
                code = windows.language_names.index(language)
                text = tokenizer.decode([t for t, c in zip(labels, codes) if c == code])
                if language == "go":  # Go's tab-indented lines never appear in the Python files
                    assert "def " not in text
                else:
                    assert "func " not in text and "\t" not in text


def test_the_language_tag_is_off_by_default_and_recorded_when_on(tree, bpe_dir, corpus, tmp_path):
    from hrm_codegen.data.corpus import read_manifest

    plain = read_manifest(corpus)
    assert "language_tag" not in plain and "language_tag" not in plain["config"]
    again = _build(tree, tmp_path / "again", bpe_dir)
    assert again["fingerprint"] == plain["fingerprint"]
    assert again["config_hash"] == plain["config_hash"]
    tagged = _build(tree, tmp_path / "tagged", bpe_dir, language_tag="<|{language}|>\n")
    assert tagged["language_tag"] == tagged["config"]["language_tag"] == "<|{language}|>\n"
    assert tagged["fingerprint"] != plain["fingerprint"]
    # the same documents in the same splits, each one tag longer
    for split in ("train", "validation"):
        assert tagged["splits"][split]["documents"] == plain["splits"][split]["documents"]
        assert tagged["splits"][split]["tokens"] > plain["splits"][split]["tokens"]
    tokenizer = load_tokenizer(bpe_dir)
    first = np.fromfile(tmp_path / "tagged" / "train_00000.bin", dtype=np.uint16)[:40]
    assert tokenizer.decode(first.tolist()).startswith(("<|go|>\n", "<|python|>\n"))
    with pytest.raises(ValueError, match="language"):
        _build(tree, tmp_path / "bad", bpe_dir, language_tag="<tag>")


def test_a_corpus_built_before_the_index_is_kept_and_asks_for_a_forced_rebuild(
    tree, bpe_dir, tmp_path
):
    from hrm_codegen.data.corpus import PackedDataset

    out = tmp_path / "old"
    first = _build(tree, out, bpe_dir)
    (out / first["splits"]["train"]["document_index"]["file"]).unlink()
    assert _build(tree, out, bpe_dir)["fingerprint"] == first["fingerprint"]  # skipped
    old = PackedDataset(out, "train", 16)
    assert old.language_names == [] and len(old) > 0  # trains as before
    with pytest.raises(ValueError, match="--force"):
        old.label_language_codes(0)
    forced = _build(tree, out, bpe_dir, force=True)
    assert forced["fingerprint"] == first["fingerprint"]
    assert (
        PackedDataset(out, "train", 16).language_names
        == first["splits"]["train"]["document_index"]["languages"]
    )


# ----------------------------------------------------------------------------- mixing and bpb
def test_mixed_windows_hold_one_language_each_in_exact_proportions(corpus):
    from hrm_codegen.data.corpus import PackedDataset
    from hrm_codegen.data.corpus.languages import MixedWindows
    from hrm_codegen.data.corpus.packed import LanguageWindows
    from hrm_codegen.training.data import BatchOrder

    train = PackedDataset(corpus, "train", 8)
    windows = {lang: LanguageWindows([train], lang, 8) for lang in ("go", "python")}
    # each language's windows are its documents' tokens, in order, and nothing else
    for language, part in windows.items():
        begin, end = train.language_spans(language)
        expected = np.concatenate([train._read(int(a), int(b)) for a, b in zip(begin, end)])
        assert part.tokens == len(expected)
        assert torch.equal(part[1]["input_ids"], torch.from_numpy(expected[8:16]))
    mixed = MixedWindows(windows, {"go": 0.25, "python": 0.75})
    assert mixed.counts["go"] == round(0.25 * len(mixed))
    assert sum(mixed.counts.values()) == len(mixed)
    order = BatchOrder(len(mixed), seed=0)
    taken = order.take(len(mixed) + 3)  # one epoch and three more
    seen = mixed.tokens_by_language(order.epoch, order.taken_in_epoch())
    codes = mixed.language_codes[np.asarray(taken)]
    assert seen == {lang: int((codes == i).sum()) * 8 for i, lang in enumerate(mixed.languages)}
    for index in range(len(mixed)):  # every window is read from its language's stream
        language = mixed.languages[int(mixed.language_codes[index])]
        window = mixed[index]["input_ids"]
        assert any(
            torch.equal(window, windows[language][j]["input_ids"])
            for j in range(len(windows[language]))
        )


@pytest.fixture(scope="module")
def mixed_run(corpus, bpe_dir, tmp_path_factory):
    """Two steps of a tiny model on the two-language corpus mixed at temperature 2."""
    import contextlib
    import io

    from hydra import compose, initialize_config_dir

    from hrm_codegen.training import train

    root = tmp_path_factory.mktemp("mixed")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "codegen_base",
            overrides=[
                "experiment=smoke",
                "logger=jsonl",
                f"run_dir={root / 'run'}",
                "data=corpus",
                f"+data.mix.sources=['{corpus}']",
                "+data.mix.temperature=2.0",
                "data.max_seq_len=16",
                f"tokenizer.path={bpe_dir}",
                "train.max_steps=2",
                "eval.interval=2",
                "eval.batch_size=2",
                "eval.max_batches=null",
                "eval.mbpp_bpb=false",
            ],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        return train(cfg)


def test_a_mixed_run_logs_tokens_and_bpb_per_language(mixed_run, corpus, bpe_dir):
    from hrm_codegen.bpb import batched, dataset_bpb, token_byte_lengths
    from hrm_codegen.data.corpus import PackedDataset, stack_windows
    from hrm_codegen.evaluation.likelihood import language_windows
    from hrm_codegen.model import load_model
    from hrm_codegen.training.logging import read_metrics

    rows = read_metrics(mixed_run)
    final = [row for row in rows if "val/bpb" in row][-1]
    assert final["tokens_seen/go"] + final["tokens_seen/python"] == final["tokens_seen"] > 0
    model = load_model(mixed_run / "checkpoint").eval()
    lengths = token_byte_lengths(load_tokenizer(bpe_dir))
    val = PackedDataset(corpus, "validation", 16)
    for language in ("go", "python"):
        items = language_windows(val, language, len(val))
        own = dataset_bpb(model, batched(items, stack_windows, 2), lengths)
        assert final[f"val/bpb/{language}"] == pytest.approx(own.bpb, rel=1e-5)
    overall = dataset_bpb(model, batched(val, stack_windows, 2), lengths)
    assert final["val/bpb"] == pytest.approx(overall.bpb, rel=1e-5)


def test_per_language_bpb_leaves_the_overall_value_unchanged(mixed_run, corpus, bpe_dir):
    from hrm_codegen.bpb import token_byte_lengths
    from hrm_codegen.data.corpus import PackedDataset, stack_windows
    from hrm_codegen.model import load_model
    from hrm_codegen.training.periodic_eval import validation_metrics

    model = load_model(mixed_run / "checkpoint").eval()
    val = PackedDataset(corpus, "validation", 16)
    plain = [val[i] for i in range(len(val))]  # the same windows, languages unnamed

    def scored(dataset):
        return validation_metrics(
            model,
            dataset,
            stack_windows,
            {"val/bpb": (dataset, stack_windows)},
            token_byte_lengths(load_tokenizer(bpe_dir)),
            batch_size=2,
            max_batches=None,
            to_device=lambda batch: batch,
            device=torch.device("cpu"),
            autocast=contextlib.nullcontext,
        )

    named, unnamed = scored(val), scored(plain)
    assert sorted(named) == ["val/bpb", "val/bpb/go", "val/bpb/python", "val/loss", "val/ppl"]
    assert named["val/bpb"] == unnamed["val/bpb"] and named["val/loss"] == unnamed["val/loss"]
    assert min(named["val/bpb/go"], named["val/bpb/python"]) <= named["val/bpb"]
    assert named["val/bpb"] <= max(named["val/bpb/go"], named["val/bpb/python"])


def test_evaluate_language_flag_scores_one_languages_tokens(mixed_run, corpus):
    from hrm_codegen.evaluation.cli import main

    out = mixed_run.parent / "eval-go"
    argv = ["--metric", "bpb", "--model-type", "hrm", "--ckpt", str(mixed_run / "checkpoint")]
    argv += ["--data", "corpus", "--corpus-dir", str(corpus), "--seq-len", "16"]
    assert main([*argv, "--language", "go", "--output", str(out)]) == 0
    result = json.loads((out / "bpb.json").read_text())
    final = [row for row in read_metrics_of(mixed_run) if "val/bpb" in row][-1]
    assert result["language"] == "go"
    assert result["bpb"] == pytest.approx(final["val/bpb/go"], rel=1e-5)
    assert main([*argv, "--language", "rust"]) == 2


def read_metrics_of(run_dir: Path) -> list[dict]:
    from hrm_codegen.training.logging import read_metrics

    return read_metrics(run_dir)


# ----------------------------------------------------------------------------- the study
def test_cpu_polyglot_is_a_valid_protocol_with_equal_python_tokens():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hrm_codegen.study.spec import load_spec

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run_study", overrides=["study=cpu_polyglot"])
    spec = load_spec(OmegaConf.to_container(cfg, resolve=True)["study"])
    assert spec.select_metric == "val/bpb/python" and len(spec.seeds) == 2
    for model in ("hrm", "transformer"):
        python_only = spec.pretrain.budget_overrides(spec.step_scale.get(f"{model}_python", 1))
        mixed = spec.pretrain.budget_overrides(spec.step_scale[f"{model}_polyglot"])
        weights = next(o for o in spec.arms[f"{model}_polyglot"] if "weights" in o)
        assert "python:0.5" in weights  # half the windows Python, twice the steps
        assert python_only[-1] == "train.max_steps=500" and mixed[-1] == "train.max_steps=1000"


def test_a_tiny_polyglot_study_reports_bpb_per_language_at_equal_python_tokens(
    corpus, bpe_dir, tmp_path
):
    import io

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hrm_codegen.study import run_study_from_config

    tiny = [
        "device=cpu",
        "logger=jsonl",
        "log_interval=2",
        "model.max_seq_len=64",
        "model.hidden_size=32",
        "model.num_heads=2",
        "++model.H_layers=1",
        "++model.L_layers=1",
        "++model.H_cycles=1",
        "++model.L_cycles=1",
        "train.micro_batch_size=2",
        "eval.batch_size=2",
        "eval.max_batches=null",
        "eval.points=2",
        "eval.checkpoint_points=1",
        "eval.mbpp_bpb=false",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "run_study",
            overrides=[
                "study=cpu_polyglot",
                f"output_dir={tmp_path / 'out'}",
                "study.jobs=1",
                "study.records_dir=null",
                f"study.prepare.tokenizer_path={bpe_dir}",
                f"+study.prepare.corpus_dir={corpus}",
                "study.pretrain.max_steps=4",
            ],
        )
    node = OmegaConf.to_container(cfg, resolve=True)
    node["study"]["common"] = tiny
    node["study"]["pretrain"]["overrides"] = [
        "data=corpus",
        "data.max_seq_len=16",
        "+data.mix.val_windows_per_language=3",
    ]
    arms = {"hrm_python": ["model=hrm", "+data.mix.weights={python:1.0}"]}
    arms["hrm_polyglot"] = ["model=hrm", "+data.mix.weights={python:0.5,go:0.5}"]
    node["study"].update(arms=arms, step_scale={"hrm_polyglot": 2})
    with contextlib.redirect_stdout(io.StringIO()):
        report = run_study_from_config(OmegaConf.create(node), command="test")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {(r["arm"], r["lr"], r["seed"]): r for r in results["runs"]}
    for (arm, _, _), run in runs.items():
        assert run["steps"] == (8 if arm == "hrm_polyglot" else 4)
        last = run["curve"][-1]
        python = last["tokens_seen/python"]
        assert python == 4 * 2 * 16 if arm == "hrm_python" else 0 < python < 8 * 2 * 16
        assert {"val/bpb/python", "val/bpb/go"} <= set(last)
    block = results["languages"]
    assert block["names"] == ["go", "python"]
    assert set(block["final"]) == {"hrm_python", "hrm_polyglot"}
    assert list(block["equal_tokens"]) == ["python"]  # the Python-only arm never saw Go
    text = report.read_text()
    assert "## Per language: final val/bpb/<language>" in text
    assert "## Equal python tokens" in text
