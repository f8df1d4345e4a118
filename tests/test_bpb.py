"""Bits per byte: the byte table, and the trainer's logged val/bpb and val/mbpp_bpb recomputed by hand."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from training_fixtures import build_tiny_corpus, write_tiny_mbpp

from hrm_codegen.bpb import BpbTotals, token_byte_lengths
from hrm_codegen.data import load_benchmark
from hrm_codegen.data.corpus import PackedDataset
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.model import load_model
from hrm_codegen.tokenization import load_tokenizer, train_code_bpe
from hrm_codegen.training import train
from hrm_codegen.training.logging import read_metrics

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TEXTS = [
    "def f(x):\n    return x  # \u00e9 \u4e2d\u6587 \U0001f642\n",
    "na\u00efve \u2014 \u201cquotes\u201d\tand\ttabs\r\n",
    "    " * 5 + "x = [1, 2, 3]\n",
]


def test_byte_table_of_a_code_bpe_sums_to_the_utf8_bytes_of_any_text(tmp_path):
    tokenizer = load_tokenizer(
        train_code_bpe(
            ["def f(x):\n    return x\n", "class A:\n    pass\n"] * 20,
            300,
            tmp_path / "bpe",
            progress=False,
        )
    )
    lengths = token_byte_lengths(tokenizer)
    assert lengths.shape == (len(tokenizer),)
    for special in tokenizer.all_special_ids:
        assert lengths[special] == 0
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert int(lengths[ids].sum()) == len(text.encode("utf-8")), text
    # a multi-byte character split over tokens still counts its bytes exactly once
    ids = tokenizer("\U0001f642")["input_ids"]
    assert int(lengths[ids].sum()) == 4


def test_byte_table_of_gpt2(gpt2_dir):
    tokenizer = load_tokenizer(gpt2_dir)
    lengths = token_byte_lengths(tokenizer)
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert int(lengths[ids].sum()) == len(text.encode("utf-8"))
    assert lengths[tokenizer.eos_token_id] == 0


def test_totals_combine_and_convert_nats_to_bits_per_byte():
    total = BpbTotals(nats=3.0, bytes=4, tokens=2) + BpbTotals(nats=1.0, bytes=4, tokens=2)
    assert total.bpb == pytest.approx(4.0 / math.log(2) / 8)
    assert total.loss == pytest.approx(1.0)
    assert math.isnan(BpbTotals().bpb)


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A tiny HRM pretrained for a few steps on a stdlib corpus, evaluated at the end."""
    root = tmp_path_factory.mktemp("bpb")
    saved = os.environ.get("HRM_CODEGEN_HOME")
    os.environ["HRM_CODEGEN_HOME"] = str(root / "home")
    mbpp = write_tiny_mbpp(root / "mbpp.jsonl")
    overrides = ["experiment=smoke", "logger=jsonl"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        tok_run = compose(
            "codegen_base",
            overrides=[*overrides, f"data.path={mbpp}", f"run_dir={root / 'tok'}", "dry_run=true"],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        train(tok_run)  # trains (and caches) the smoke tokenizer; writes no run
    tokenizer_dir = next((root / "home" / "tokenizers").glob("auto-*"))
    corpus = build_tiny_corpus(root, tokenizer_dir)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "codegen_base",
            overrides=[
                *overrides,
                f"run_dir={root / 'pt'}",
                "data=corpus",
                f"data.shard_dir={corpus}",
                "data.max_seq_len=64",
                f"tokenizer.path={tokenizer_dir}",
                "train.max_steps=4",
                "eval.interval=4",
                "eval.max_batches=2",
                "eval.batch_size=4",
                f"eval.mbpp_path={mbpp}",
            ],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = train(cfg)
    yield run_dir, corpus, mbpp
    if saved is None:
        os.environ.pop("HRM_CODEGEN_HOME", None)
    else:
        os.environ["HRM_CODEGEN_HOME"] = saved


def _nll_by_hand(model, input_ids: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids).logits.double(), dim=-1)
    valid = labels != -100
    picked = log_probs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return float(-(picked * valid).sum())


def test_logged_val_bpb_equals_nats_over_bytes_of_the_decoded_validation_text(pretrain_run):
    run_dir, corpus, _ = pretrain_run
    final = [row for row in read_metrics(run_dir) if "val/bpb" in row][-1]
    assert final["step"] == 4 and final["flops"] > 0 and final["tokens_seen"] == 4 * 8 * 64
    model = load_model(run_dir / "checkpoint").eval()
    tokenizer = load_tokenizer(run_dir / "checkpoint")
    windows = PackedDataset(corpus, "validation", 64)
    nats, nbytes = 0.0, 0
    for index in range(min(8, len(windows))):  # eval.max_batches=2 x eval.batch_size=4
        item = windows[index]
        nats += _nll_by_hand(model, item["input_ids"][None], item["labels"][None])
        text = tokenizer.decode(item["labels"].tolist(), skip_special_tokens=True)
        nbytes += len(text.encode("utf-8"))  # the stdlib modules are ASCII: no split characters
    assert final["val/bpb"] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-5)


def test_logged_mbpp_bpb_scores_the_reference_solutions_given_their_prompts(pretrain_run):
    run_dir, _, mbpp = pretrain_run
    final = [row for row in read_metrics(run_dir) if "val/mbpp_bpb" in row][-1]
    model = load_model(run_dir / "checkpoint").eval()
    tokenizer = load_tokenizer(run_dir / "checkpoint")
    nats, nbytes = 0.0, 0
    for task in load_benchmark("mbpp", split="validation", path=mbpp):
        prompt = tokenizer(format_prompt(task), add_special_tokens=False)["input_ids"]
        target = tokenizer(format_target(task), add_special_tokens=False)["input_ids"]
        target = [*target, tokenizer.eos_token_id]
        ids = torch.tensor([[tokenizer.bos_token_id, *prompt, *target]])
        labels = torch.tensor([[-100] * len(prompt) + target + [-100]])
        nats += _nll_by_hand(model, ids, labels)
        nbytes += len(format_target(task).encode("utf-8"))
    assert final["val/mbpp_bpb"] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-5)
