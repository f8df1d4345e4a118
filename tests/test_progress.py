"""Waits a user can see: progress bars during evaluation and generation, no import noise from
torchao on runs that do not quantize, and a word on what a near-zero pass@1 of a small model
means."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from hrm_codegen import generate_cli, generation
from hrm_codegen.evaluation.code_cli import small_model_note
from hrm_codegen.evaluation.results import EvalSummary
from hrm_codegen.generation import generate_hf, generate_ids, progress_hook
from hrm_codegen.model import HRMConfig, HRMForCausalLM
from hrm_codegen.training import logging as run_logging
from hrm_codegen.training import periodic_eval
from hrm_codegen.training.logging import RunLogger
from hrm_codegen.training.periodic_eval import validation_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB = 61


def tiny_hrm(max_seq_len: int = 64) -> HRMForCausalLM:
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=VOCAB,
        max_seq_len=max_seq_len,
        hidden_size=32,
        num_heads=2,
        H_layers=1,
        L_layers=1,
        expansion=2.0,
    )
    return HRMForCausalLM(config)


class Terminal(io.StringIO):
    """A stdout that says it is a terminal, so that interactive-only bars draw into it."""

    def isatty(self) -> bool:
        return True


def record_nested_bars(monkeypatch, module) -> list:
    """The bars `module` gets from `nested_bar`, kept to read their counts after they close."""
    bars = []
    make = run_logging.nested_bar

    def recording(*args, **kwargs):
        bars.append(make(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(module, "nested_bar", recording)
    return bars


def open_logger(tmp_path: Path, progress_bar: bool, total_steps: int = 10) -> RunLogger:
    return RunLogger(
        tmp_path,
        {"name": "console", "progress_bar": progress_bar},
        config={},
        is_main=True,
        total_steps=total_steps,
        initial_step=0,
        run_name="t",
    )


# --------------------------------------------------------------------------- generation


PROMPTS = [[1, 5, 7, 9], [1, 4], [1, 8, 8, 2, 33]]


def test_generate_ids_reports_progress_per_token_and_ends_at_the_total():
    model = tiny_hrm()
    options = dict(max_new_tokens=12, num_samples=2, do_sample=True, seed=3, batch_size=8)
    plain = generate_ids(model, PROMPTS, eos_token_id=7, **options)
    units: list[int] = []
    with progress_hook(units.append):
        watched = generate_ids(model, PROMPTS, eos_token_id=7, **options)
    assert watched == plain  # reporting progress changes nothing that is generated
    # one report per decoding step (all six rows fit in one batch), not one per batch
    longest = max(len(sample) for samples in plain for sample in samples)
    assert len(units) >= longest >= 2
    # units: every sample is worth max_new_tokens, also the ones EOS ended early
    assert sum(units) == len(PROMPTS) * 2 * 12
    assert any(len(sample) < 12 for samples in plain for sample in samples), "no early stop"
    # outside the block nothing is reported
    generate_ids(model, PROMPTS, **options)
    assert sum(units) == len(PROMPTS) * 2 * 12


def test_generate_ids_bar_moves_per_step_and_counts_tokens_and_samples(monkeypatch, capsys):
    updates: list[int] = []

    class RecordingBar(generation.tqdm):
        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    monkeypatch.setattr(generation, "tqdm", RecordingBar)
    out = generate_ids(tiny_hrm(), PROMPTS, max_new_tokens=10, progress=True, batch_size=8)
    assert all(len(samples[0]) == 10 for samples in out)  # no EOS: every row runs 10 steps
    assert len(updates) == 10 and sum(updates) == 30  # per step, over one batch of three rows
    err = capsys.readouterr().err
    assert "30/30" in err and "tok" in err and "3/3 samples" in err


def test_generate_hf_reports_progress_per_step(gpt2_dir, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from hrm_codegen.tokenization import load_tokenizer

    load_tokenizer(gpt2_dir).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer))
    model = GPT2LMHeadModel(config)
    prompts = ["def add(a, b):", "x ="]
    options = dict(max_new_tokens=6, num_samples=2, do_sample=True, seed=1, batch_size=4)
    plain = generate_hf(model, tokenizer, prompts, **options)
    units: list[int] = []
    with progress_hook(units.append):
        watched = generate_hf(model, tokenizer, prompts, **options)
    assert watched == plain
    assert len(units) >= 3  # per decoding step, not once per generate call
    assert sum(units) == len(prompts) * 2 * 6


def test_generate_cli_shows_a_bar_unless_text_streams_to_the_terminal(monkeypatch):
    seen: list[bool] = []

    def fake_generate(model, tokenizer, prompts, *, progress, on_token, **options):
        seen.append(progress)
        return [["pass"]]

    monkeypatch.setattr(generation, "generate", fake_generate)
    monkeypatch.setattr(sys, "stderr", Terminal())
    args = generate_cli.parse_args(["--model-type", "hrm", "--ckpt", "x", "hello"])
    generate_cli.generate_completions(args, None, None, "hello", [], io.StringIO())  # a file
    generate_cli.generate_completions(args, None, None, "hello", [], Terminal())  # streams
    assert seen == [True, False]


# --------------------------------------------------------------------------- training bars


def test_resume_rate_leaves_evaluation_time_out_of_the_training_rate(tmp_path, capsys):
    pause = 0.5
    elapsed = {}
    for resume in (False, True):
        logger = open_logger(tmp_path / str(resume), progress_bar=True, total_steps=100)
        try:
            for _ in range(5):
                logger.advance()
            time.sleep(pause)  # an evaluation
            if resume:
                logger.resume_rate()
            for _ in range(5):
                logger.advance()
            elapsed[resume] = logger.bar.format_dict["elapsed"]
            assert logger.bar.n == 10
        finally:
            logger.close()
    assert elapsed[False] >= pause  # the wait reads as training time: rate and ETA off
    assert elapsed[True] < pause / 2  # rate = steps / training time, so the ETA holds
    capsys.readouterr()


def test_resume_rate_without_a_bar_does_nothing(tmp_path):
    logger = open_logger(tmp_path, progress_bar=False)
    logger.advance()
    logger.resume_rate()
    logger.close()


def _val_set(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(1, VOCAB, (12,), generator=generator)} for _ in range(count)
    ]


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([item["input_ids"] for item in items])
    return {"input_ids": ids, "labels": ids.clone()}


def _validate(val: list, bpb_sets: dict) -> dict[str, float]:
    return validation_metrics(
        tiny_hrm(),
        val,
        _collate,
        bpb_sets,
        torch.ones(VOCAB, dtype=torch.long),
        batch_size=2,
        max_batches=2,
        to_device=lambda batch: batch,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
    )


def test_evaluation_batches_count_on_a_transient_bar_under_the_training_bar(tmp_path, monkeypatch):
    val, other = _val_set(6), _val_set(5)
    # val: 2 batches (max_batches); val/bpb from the same logits; val/mbpp_bpb: all 3 batches
    bpb_sets = {"val/bpb": (val, _collate), "val/mbpp_bpb": (other, _collate)}
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    bars = record_nested_bars(monkeypatch, periodic_eval)
    logger = open_logger(tmp_path, progress_bar=True)
    try:
        metrics = _validate(val, bpb_sets)
    finally:
        logger.close()
    assert set(metrics) == {"val/loss", "val/ppl", "val/bpb", "val/mbpp_bpb"}
    assert [(bar.n, bar.total, bar.disable) for bar in bars] == [(5, 5, True)]  # closed: disabled
    shown = screen.getvalue()
    assert "eval:" in shown and "/5 [" in shown and "batch" in shown
    assert "\x1b[A" in shown  # drawn on its own line under the training bar, then moved back


@pytest.mark.parametrize("progress_bar, terminal", [(False, True), (True, False)])
def test_no_evaluation_bar_without_a_training_bar_or_a_terminal(
    tmp_path, monkeypatch, progress_bar, terminal
):
    screen = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    logger = open_logger(tmp_path, progress_bar=progress_bar)
    try:
        val = _val_set(4)
        _validate(val, {"val/bpb": (val, _collate)})
    finally:
        logger.close()
    assert "eval" not in screen.getvalue()


def test_pass_at_1_generation_counts_tokens_on_a_nested_bar(tmp_path, monkeypatch):
    from hrm_codegen import train_cli
    from hrm_codegen.evaluation import harness

    model = tiny_hrm()
    calls = []

    def fake_evaluate_model(model, tokenizer, tasks, **options):
        calls.append(options)  # the real one generates through generate_ids like this
        generate_ids(
            model, [[1, 2, 3]] * len(tasks), max_new_tokens=options["sampling"].max_new_tokens
        )
        return SimpleNamespace(pass_at_k={"pass@1": 0.25})

    monkeypatch.setattr(harness, "evaluate_model", fake_evaluate_model)
    cfg = OmegaConf.create(
        {
            "data": {"stage": "sft"},
            "eval": {
                "pass_at_1": True,
                "limit": 4,
                "max_new_tokens": 6,
                "batch_size": 8,
                "timeout": 5.0,
                "workers": 1,
            },
        }
    )
    context = SimpleNamespace(
        cfg=cfg,
        data=SimpleNamespace(eval_tasks=list(range(7))),
        run_dir=None,
        step=3,
        tokenizer=None,
        autocast=contextlib.nullcontext,
    )
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    bars = record_nested_bars(monkeypatch, run_logging)
    logger = open_logger(tmp_path, progress_bar=True)
    try:
        metrics = train_cli.pass_at_1_evaluator(model, context)
    finally:
        logger.close()
    assert metrics == {"val/pass@1": 0.25, "val/pass@1_tasks": 4}
    assert calls[0]["progress"] is False  # no bars of its own: they would stay on screen
    assert [(bar.n, bar.total) for bar in bars] == [(24, 24)]  # 4 tasks x 6 tokens
    shown = screen.getvalue()
    assert "pass@1 generate" in shown and "/24 [" in shown and "tok" in shown


# --------------------------------------------------------------------------- torchao noise

NOISE = ("Failed to load", "Detected no triton", "register_constant() on Enum subclasses")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao not installed")
def test_transformers_models_import_torchao_without_its_warnings():
    code = """
import logging, sys
import hrm_codegen.model
from transformers import LlamaConfig, LlamaForCausalLM
assert "torchao" in sys.modules, "transformers no longer imports torchao: test is moot"
from hrm_codegen.evaluation.sampling import generator_for
from hrm_codegen.generation import generate_hf
config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2)
assert generator_for(LlamaForCausalLM(config)) is generate_hf
logging.getLogger("torchao").warning("Failed to import something else")  # not silenced
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "Failed to import something else" in result.stderr
    for message in NOISE:
        assert message not in result.stderr, result.stderr


def test_evaluating_our_models_does_not_import_torchao():
    code = """
import sys
import transformers
from transformers import PreTrainedTokenizerFast  # what loading our tokenizer imports
from hrm_codegen.evaluation.sampling import generator_for
from hrm_codegen.generation import generate
from hrm_codegen.model import HRMConfig, HRMForCausalLM
model = HRMForCausalLM(HRMConfig(vocab_size=32, max_seq_len=16, hidden_size=16, num_heads=2,
                                 H_layers=1, L_layers=1))
assert generator_for(model) is generate
print(sorted(m for m in ("torchao", "transformers.modeling_utils") if m in sys.modules))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    for message in NOISE:
        assert message not in result.stderr, result.stderr


# --------------------------------------------------------------------------- pass@1 note


def _summary(pass_at_1: float, failures: dict[str, int], tasks: int = 20) -> EvalSummary:
    passed = round(pass_at_1 * tasks)
    return EvalSummary(
        benchmark="mbpp",
        num_tasks=tasks,
        n=1,
        pass_at_k={"pass@1": pass_at_1},
        counts={"passed": passed, "failed": tasks - passed, "timeout": 0, "error": 0},
        per_task={},
        failures={"syntax_error": 0, "name_error": 0, "wrong_answer": 0, **failures},
    )


def test_a_small_model_at_zero_pass_at_1_is_told_what_it_got_and_what_moves():
    summary = _summary(0.0, {"syntax_error": 17, "name_error": 3})
    lines = small_model_note(summary, 2_100_000, model_type="hrm", ckpt="runs/quickstart")
    assert 2 <= len(lines) <= 4
    text = "\n".join(lines)
    assert "pass@1 0.00%" in text and "2.1M-parameter" in text
    assert "20 of 20 samples failed (17 syntax_error, 3 name_error" in text
    assert (
        "python scripts/evaluate.py --model-type hrm --ckpt runs/quickstart --metric bpb "
        "--data mbpp" in text
    )
    assert "docs/results/" in text


@pytest.mark.parametrize(
    "pass_at_1, parameters",
    [(0.05, 2_100_000), (0.0, 350_000_000), (0.01, 2_100_000)],
)
def test_no_note_for_a_pass_at_1_that_moved_or_a_large_model(pass_at_1, parameters):
    summary = _summary(pass_at_1, {"wrong_answer": 19})
    assert small_model_note(summary, parameters, model_type="hrm", ckpt="runs/x") == []


def test_the_note_quotes_a_checkpoint_path_with_spaces():
    lines = small_model_note(_summary(0.0, {}), 1000, model_type="llama", ckpt="my runs/a")
    assert "--model-type llama --ckpt 'my runs/a' --metric bpb" in lines[1]
    assert "20 of 20 samples failed (none classified" in lines[0]


def test_the_note_says_how_the_runs_bits_per_byte_moved_against_a_uniform_guess(tmp_path):
    import json
    import math

    from hrm_codegen.data.tasks import CodeTask
    from hrm_codegen.evaluation.code_cli import _bpb_moves, training_bpb_context

    class ByteTokenizer:  # one token per byte, 256 of them
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(text.encode("utf-8"))}

        def __len__(self):
            return 256

    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    rows = [{"step": 5, "train/loss": 3.0}, {"step": 10, "val/mbpp_bpb": 3.5},
            {"step": 20, "val/mbpp_bpb": 2.75}]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = CodeTask(
        task_id="Mbpp/601", benchmark="mbpp", prompt="Add one.", reference_solution="def f(x):\n"
        "    return x + 1", tests=("assert f(1) == 2",), entry_point=None,
    )  # fmt: skip
    context = training_bpb_context(tmp_path / "runs", ByteTokenizer(), [task])
    assert context["first"] == (10, 3.5) and context["last"] == (20, 2.75)
    assert context["uniform"] == pytest.approx(math.log2(256))  # one byte per token: 8 bits
    text = _bpb_moves(context)
    assert "3.50 at step 10 -> 2.75 at step 20" in text and "uniformly scores 8.00" in text
    assert _bpb_moves({}) == ""
