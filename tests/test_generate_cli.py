"""scripts/generate.py's logic (hrm_codegen/generate_cli.py), in process, on a tiny model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hrm_codegen import generate_cli
from hrm_codegen.generate_cli import TextStreamer, main

MBPP = [
    {
        "task_id": 11,
        "text": "Write a function that returns 11.",
        "code": "def const_11():\r\n    return 11",
        "test_setup_code": "",
        "test_list": ["assert const_11() == 11"],
        "challenge_test_list": [],
    }
]


class CharTokenizer:
    """One token per character: enough to drive the streamer."""

    def decode(self, ids, **_) -> str:
        return "".join(chr(i) for i in ids)


def stream(text: str, stop: list[str]) -> tuple[str, list[str]]:
    out = io.StringIO()
    streamer = TextStreamer(CharTokenizer(), stop, out, samples=1)
    shown = []
    for token in text:
        streamer(0, 0, ord(token))
        shown.append(out.getvalue())
    streamer.finish()
    return out.getvalue(), shown


def test_streamer_writes_the_final_text_and_never_a_stop_string() -> None:
    final, shown = stream("x = 1\nassert x", ["\nassert ", "\nprint("])
    assert final == "x = 1\n"  # the text, cut at the stop string, then a newline
    assert all("assert" not in prefix for prefix in shown)
    assert shown[5] == "" and shown[11] == "x = 1"  # what may start a stop string is held back
    assert stream("no stop at all", [])[0] == "no stop at all\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, gpt2_dir: Path) -> Path:
    """A random 1-layer transformer with the GPT-2 tokenizer (hidden 64: int4 groups fit)."""
    import torch

    from hrm_codegen.model import TransformerConfig, TransformerForCausalLM
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=len(tokenizer), max_seq_len=256, hidden_size=64, num_heads=2, n_layers=1
    )
    folder = tmp_path_factory.mktemp("run") / "checkpoint"
    TransformerForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_prompt_streams_what_generate_returns(checkpoint: Path) -> None:
    from hrm_codegen.evaluation import load_model_and_tokenizer
    from hrm_codegen.generation import generate

    code, out = run("--model-type", "transformer", "--ckpt", str(checkpoint), "--device", "cpu",
                    "--max-new-tokens", "8", "def add(a, b):")  # fmt: skip
    assert code == 0
    model, tokenizer = load_model_and_tokenizer("transformer", checkpoint)
    expected = generate(model, tokenizer, ["def add(a, b):"], max_new_tokens=8)[0][0]
    assert out == expected + "\n"


@pytest.mark.filterwarnings("ignore:int4 cannot pack")  # GPT-2's 50257-row head goes to int8
@pytest.mark.parametrize("method", ["int8", "int4"])
def test_quantized_model_saves_loads_and_generates(checkpoint: Path, tmp_path, method) -> None:
    folder = tmp_path / method
    code, _ = run("--model-type", "transformer", "--ckpt", str(checkpoint), "--device", "cpu",
                  "--quantize", method, "--save-quantized", str(folder))  # fmt: skip
    assert code == 0
    assert json.loads((folder / "config.json").read_text())["quantization"]["method"] == method
    code, out = run("--model-type", "transformer", "--ckpt", str(folder), "--device", "cpu",
                    "--max-new-tokens", "4", "--prompt", "x = ")  # fmt: skip
    assert code == 0 and out.endswith("\n")


def test_task_run_prints_the_sandbox_verdict(checkpoint: Path, tmp_path, monkeypatch) -> None:
    (tmp_path / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MBPP))
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(tmp_path))
    seen = {}

    def right_answer(args, model, tokenizer, prompt, stop, out):
        seen["prompt"], seen["stop"] = prompt, stop
        return ["def const_11():\n    return 11\n", "def const_11():\n    return 12\n"]

    monkeypatch.setattr(generate_cli, "generate_completions", right_answer)
    code, out = run("--model-type", "transformer", "--ckpt", str(checkpoint), "--device", "cpu",
                    "--task", "mbpp/11", "--run", "--timeout", "10", "--memory-mb", "256")  # fmt: skip
    assert code == 0
    assert "Write a function that returns 11." in seen["prompt"] and "\nassert " in seen["stop"]
    assert "Mbpp/11 sample 1: PASSED" in out
    assert "Mbpp/11 sample 2: FAILED" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["text", "--prompt", "also"], "one prompt source"),
        (["--prompt", "x", "--run"], "--run needs --task"),
        ([], "no prompt"),
        (["--prompt", "   "], "the prompt is empty"),
        (["--file", "/nonexistent/prompt.py"], "does not exist"),
        (["--task", "11"], "give BENCHMARK/ID"),
        (["--task", "nope/11"], "unknown benchmark"),
        (["--prompt", "x", "--save-quantized", "out"], "needs --quantize"),
        (["--prompt", "x", "--num-samples", "0"], "at least 1"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys) -> None:
    code, _ = run("--model-type", "hrm", "--ckpt", "/nonexistent", *argv)
    assert code == 2
    assert message in capsys.readouterr().err
