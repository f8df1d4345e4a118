"""Overfitting 8 real MBPP training tasks: the loop, the SFT masking and greedy decoding agree.

If the prompt masking, label alignment, checkpoint or tokenizer round trip were wrong, the model could
reach a low loss and still not reproduce the reference solutions token for token.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.generation import generate
from hrm_codegen.model import load_model
from hrm_codegen.tokenization import load_tokenizer
from hrm_codegen.training import train
from hrm_codegen.training.logging import read_metrics

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

pytestmark = pytest.mark.needs_data


def test_overfitting_eight_mbpp_tasks_then_greedy_decoding_reproduces_them(
    data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("HRM_CODEGEN_HOME", str(tmp_path / "home"))
    mbpp = data_dir / "mbpp.jsonl"
    overrides = [
        "experiment=smoke",
        f"data.path={mbpp}",
        "data.train_limit=8",
        "data.max_seq_len=512",
        "tokenizer.vocab_size=1024",
        "model.hidden_size=128",
        "model.num_heads=4",
        "train.max_steps=50",
        "train.lr=3e-3",
        "train.warmup_steps=10",
        "eval.interval=1000",
        "log_interval=10",
        "logger=jsonl",
        f"run_dir={tmp_path / 'run'}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("codegen_base", overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = train(cfg)
    losses = [row["train/loss"] for row in read_metrics(run_dir) if "train/loss" in row]
    assert losses[-1] < 0.05, losses

    ckpt = run_dir / "checkpoint"
    model, tokenizer = load_model(ckpt).eval(), load_tokenizer(ckpt)
    tasks = load_benchmark("mbpp", split="train", path=mbpp)[:8]
    outputs = generate(model, tokenizer, [format_prompt(t) for t in tasks], max_new_tokens=300)
    for task, (text,) in zip(tasks, outputs):
        assert text == format_target(task), task.task_id
