"""`--backend` and `--draft` on the command lines: refusals in one line, and the output each
backend gives through generate.py and evaluate.py's model loading."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from hrm_codegen.evaluation.sampling import SamplingSettings
from hrm_codegen.evaluation.source import backend_of, load_draft_from_args, load_model_from_args
from hrm_codegen.generate_cli import main
from hrm_codegen.inference import BackendUnavailableError, check_backend


@pytest.mark.parametrize(
    ("backend", "model_type", "options", "message"),
    [
        ("llamacpp", "transformer", {}, "normalizes after the residual add"),
        ("compiled", "hf", {}, "transformers' own generate"),
        ("onnx", "llama", {}, "hrm and transformer models only"),
        ("onnx", "hrm", {"device": "cuda"}, "CPU provider"),
        ("onnx", "hrm", {"quantize": "int4"}, "--quantize int8-dynamic"),
        ("onnx", "hrm", {"draft": True}, "--draft cannot be combined with --backend onnx"),
        ("torch", "hf", {"draft": True}, "rolls back our KV cache"),
        ("tensorrt", "hrm", {}, "is not one of"),
    ],
)
def test_backends_refuse_what_they_cannot_serve(backend, model_type, options, message):
    with pytest.raises(BackendUnavailableError, match=message) as error:
        check_backend(backend, model_type, **options)
    assert "\n" not in str(error.value)


def test_compile_flag_is_the_compiled_backend():
    args = argparse.Namespace(backend="torch", compile=True)
    assert backend_of(args) == "compiled"
    assert SamplingSettings.from_args(argparse.Namespace(backend="compiled")).compile
    with pytest.raises(ValueError, match="--compile is --backend compiled"):
        backend_of(argparse.Namespace(backend="onnx", compile=True))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, gpt2_dir: Path) -> Path:
    """A random 1-layer HRM with the GPT-2 tokenizer."""
    import torch

    from hrm_codegen.model import HRMConfig, HRMForCausalLM
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=len(tokenizer), max_seq_len=128, hidden_size=32, num_heads=2,
        H_layers=1, L_layers=1, expansion=2.0,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("run") / "checkpoint"
    HRMForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


def generate(checkpoint: Path, *flags: str) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["--model-type", "hrm", "--ckpt", str(checkpoint), "--device", "cpu",
            "--max-new-tokens", "10", *flags, "def add(a, b):"]  # fmt: skip
    return main(argv, out=out), out.getvalue()


def test_generate_backends_print_the_eager_text(checkpoint: Path, capsys):
    pytest.importorskip("onnxruntime")
    code, eager = generate(checkpoint)
    assert code == 0 and eager.strip()
    assert generate(checkpoint, "--backend", "onnx") == (0, eager)
    capsys.readouterr()
    code, speculative = generate(checkpoint, "--draft", str(checkpoint), "--draft-tokens", "3")
    assert (code, speculative) == (0, eager)
    err = capsys.readouterr().err  # the model as its own draft: every proposal accepted
    assert "speculative decoding: " in err and "(100%)" in err


def test_generate_refuses_in_one_line(checkpoint: Path, capsys):
    code, _ = generate(checkpoint, "--backend", "llamacpp")
    assert code == 2 and "llama only, not hrm" in capsys.readouterr().err
    code, _ = generate(checkpoint, "--draft", str(checkpoint), "--temperature", "0.8")
    assert code == 2 and "--draft decodes greedily" in capsys.readouterr().err


def test_evaluate_loading_applies_the_backend_and_the_draft(checkpoint: Path):
    pytest.importorskip("onnxruntime")
    from hrm_codegen.inference.onnx_runtime import OnnxCausalLM
    from hrm_codegen.inference.speculative import SpeculativeDraft

    args = argparse.Namespace(
        model_type="hrm", ckpt=str(checkpoint), backend="onnx", quantize="int8-dynamic",
        draft=None, compile=False,
    )  # fmt: skip
    model, tokenizer, _ = load_model_from_args(args)
    assert isinstance(model, OnnxCausalLM) and model.info.quantize == "int8-dynamic"
    args = argparse.Namespace(ckpt=str(checkpoint), draft=str(checkpoint), draft_tokens=2)
    draft = load_draft_from_args(args, tokenizer)
    assert isinstance(draft, SpeculativeDraft) and draft.tokens == 2
    settings = SamplingSettings(draft=draft)
    assert settings.keywords()["draft"] is draft  # handed on, never copied


def test_generate_compiled_backend_decodes_on_the_fixed_shape_step(checkpoint: Path, monkeypatch):
    """`--backend compiled` reaches `compile=True`; torch.compile itself is replaced by the
    plain step here (compiling takes half a minute: the real compile's equality to eager is
    test_compiled_decode.py's slow test)."""
    from hrm_codegen import generation

    asked = []

    def plain_step(device_type: str):
        asked.append(device_type)
        return generation._static_decode_step

    expected = generate(checkpoint)
    monkeypatch.setattr(generation, "compiled_decode_step", plain_step)
    assert generate(checkpoint, "--backend", "compiled") == expected
    assert asked == ["cpu"]


def test_evaluate_with_each_backend_writes_the_eager_completions(checkpoint: Path, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    from hrm_codegen.evaluation.cli import main as evaluate

    common = ["--benchmark", "toy", "--split", "train", "--limit", "2", "--model-type", "hrm",
              "--ckpt", str(checkpoint), "--max-new-tokens", "8", "--no-progress"]  # fmt: skip
    completions = {}
    for name, flags in {
        "torch": [],
        "onnx": ["--backend", "onnx"],
        "draft": ["--draft", str(checkpoint), "--draft-tokens", "2"],
    }.items():
        assert evaluate([*common, *flags, "--output", str(tmp_path / name)]) == 0
        lines = (tmp_path / name / "samples.jsonl").read_text().splitlines()
        completions[name] = [json.loads(line)["completion"] for line in lines]
    assert len(completions["torch"]) == 2
    assert completions["onnx"] == completions["torch"] == completions["draft"]
    config = json.loads((tmp_path / "onnx" / "run_config.json").read_text())
    assert "onnx" in json.dumps(config)  # the backend is recorded with the run
