"""Runs that repeat bit for bit: the same command twice logs the same floats, and so does a run
killed between checkpoints and resumed; every run records its data and numeric environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_training_runs import fixture_env, run_quietly, smoke_config  # noqa: F401 (fixture)
from training_fixtures import build_tiny_corpus

from hrm_codegen.data.corpus import read_manifest
from hrm_codegen.tokenization import tokenizer_fingerprint
from hrm_codegen.training.logging import SUPERSEDED_FILE, read_metrics
from hrm_codegen.training.repeat import TIMING_KEYS, compare_runs


def logged_floats(run_dir: Path) -> list[dict]:
    """Every logged value but timings and the provenance records, row by row."""
    rows = []
    for row in read_metrics(run_dir):
        kept = {
            k: v for k, v in row.items() if k not in TIMING_KEYS and not k.startswith("provenance/")
        }
        if set(kept) != {"step"}:
            rows.append(kept)
    return rows


@pytest.fixture(scope="module")
def corpus_setup(fixture_env, tmp_path_factory):  # noqa: F811 (the imported fixture)
    root = tmp_path_factory.mktemp("bitexact")
    tokenizer_run, _ = run_quietly(
        smoke_config(fixture_env, root / "tok", "train.max_steps=1", "eval.interval=1")
    )
    tokenizer_dir = tokenizer_run / "checkpoint"
    corpus = build_tiny_corpus(root, tokenizer_dir)
    overrides = [
        "data=corpus",
        f"data.shard_dir={corpus}",
        "data.max_seq_len=64",
        f"tokenizer.path={tokenizer_dir}",
        "train.max_steps=8",
        "eval.interval=2",
        "checkpoint_interval=4",
        "log_interval=1",
        "threads.intra_op=1",
    ]
    return {"corpus": corpus, "tokenizer": tokenizer_dir, "overrides": overrides}


def test_the_same_command_twice_logs_bitwise_the_same_floats(fixture_env, corpus_setup, tmp_path):  # noqa: F811
    first, _ = run_quietly(smoke_config(fixture_env, tmp_path / "a", *corpus_setup["overrides"]))
    second, _ = run_quietly(smoke_config(fixture_env, tmp_path / "b", *corpus_setup["overrides"]))
    a, b = logged_floats(first), logged_floats(second)
    assert any("val/bpb" in row for row in a) and sum("train/loss" in row for row in a) == 8
    assert a == b  # float equality after a JSON round trip: every bit of every value
    assert compare_runs(first, second).identical


def test_a_run_killed_between_checkpoints_and_resumed_logs_the_same_floats(
    fixture_env,  # noqa: F811
    corpus_setup,
    tmp_path,
):
    overrides = corpus_setup["overrides"]
    straight, _ = run_quietly(smoke_config(fixture_env, tmp_path / "straight", *overrides))
    # The disk state of a process SIGKILLed after logging step 6 but before its step-8
    # checkpoint: the step-4 checkpoint, and metrics rows up to step 6.
    killed = tmp_path / "killed"
    run_quietly(smoke_config(fixture_env, killed, *overrides, "train.stop_at_step=4"))
    at_four = tmp_path / "at_four"
    shutil.copytree(killed, at_four, symlinks=True)
    run_quietly(
        smoke_config(fixture_env, killed, *overrides, "resume=true", "train.stop_at_step=6")
    )
    for folder in ("checkpoints", "checkpoint"):
        target = killed / folder
        if target.is_symlink() or target.is_file():
            target.unlink()
        else:
            shutil.rmtree(target)
    shutil.copytree(at_four / "checkpoints", killed / "checkpoints", symlinks=True)
    (killed / "checkpoint").symlink_to(Path(at_four / "checkpoint").readlink())
    assert max(row["step"] for row in read_metrics(killed)) == 6

    _, stdout = run_quietly(smoke_config(fixture_env, killed, *overrides, "resume=true"))
    assert "at step 4" in stdout and f"moved to {SUPERSEDED_FILE}" in stdout
    assert logged_floats(killed) == logged_floats(straight)
    superseded = [json.loads(line) for line in (killed / SUPERSEDED_FILE).open()]
    assert {row["step"] for row in superseded} == {5, 6}


def test_a_run_records_its_corpus_tokenizer_and_threads(fixture_env, corpus_setup, tmp_path):  # noqa: F811
    from omegaconf import OmegaConf

    from hrm_codegen.tokenization import load_tokenizer

    run_dir, _ = run_quietly(smoke_config(fixture_env, tmp_path / "r", *corpus_setup["overrides"]))
    first = read_metrics(run_dir)[0]
    corpus_fp = read_manifest(corpus_setup["corpus"])["fingerprint"]
    tokenizer_fp = tokenizer_fingerprint(load_tokenizer(corpus_setup["tokenizer"]))
    assert first["step"] == 0
    assert first["provenance/corpus_fingerprint"] == corpus_fp
    assert first["provenance/tokenizer_fingerprint"] == tokenizer_fp
    assert first["provenance/intra_op_threads"] == 1 == torch.get_num_threads()
    assert first["provenance/torch"] == str(torch.__version__)
    for key in ("mkl", "onednn", "OMP_NUM_THREADS", "MKL_CBWR", "inter_op_threads", "cpu"):
        assert f"provenance/{key}" in first
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.provenance.corpus_fingerprint == corpus_fp
    assert config.threads.intra_op == 1


def test_compare_runs_names_the_first_difference_and_the_final_gap(
    fixture_env,  # noqa: F811
    corpus_setup,
    tmp_path,
):
    from hrm_codegen.training.repeat import comparison_text

    overrides = corpus_setup["overrides"]
    base, _ = run_quietly(smoke_config(fixture_env, tmp_path / "a", *overrides))
    other, _ = run_quietly(smoke_config(fixture_env, tmp_path / "b", *overrides, "train.lr=2e-3"))
    result = compare_runs(base, other)
    assert not result.identical and result.differing > 0
    step, metric, _, _ = result.first_difference
    assert step == 1 and metric.startswith("train/")  # the learning rate acts at the first step
    assert result.largest["val/bpb"] > 0
    text = comparison_text(base, other, result)
    assert "first difference: step 1" in text and "final val/bpb" in text


def test_a_metric_only_one_run_logs_is_reported_not_a_mismatch(tmp_path):
    rows_a = [{"step": 1, "train/loss": 2.5}, {"step": 2, "train/loss": 2.25}]
    rows_b = [{**r, "flops_no_embed": 10.0 * r["step"]} for r in rows_a]
    for name, rows in (("a", rows_a), ("b", rows_b), ("c", rows_b[:1])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    same = compare_runs(tmp_path / "a", tmp_path / "b")
    assert same.identical and same.unshared_metrics == ["flops_no_embed"] and same.compared == 2
    shorter = compare_runs(tmp_path / "b", tmp_path / "c")
    assert not shorter.identical and (2, "train/loss") in shorter.only_in_one
