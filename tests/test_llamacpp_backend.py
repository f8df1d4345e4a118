"""`--backend llamacpp`: our Llama arm written as GGUF, decoded by llama.cpp with the greedy tokens
of our own decoding (f32, f16), llama.cpp's quantized files loading and agreeing with it, and the
refusals of what llama.cpp cannot serve."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_codegen.inference import BackendUnavailableError, check_backend
from hrm_codegen.inference.llamacpp_runtime import interleave_rotary_rows


def _rotate_half(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """transformers' rotary: dimension i turns with i + d/2 at frequency i."""
    half = x.shape[-1] // 2
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def _rotate_pairs(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """llama.cpp's `llama` rotary: dimensions 2i and 2i + 1 turn together at frequency i."""
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = np.cos(angles), np.sin(angles)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, odd * cos + even * sin
    return out


def test_interleaved_rows_give_llama_cpp_the_same_attention_scores():
    rng = np.random.default_rng(0)
    heads, head_dim, width = 3, 8, 12
    wq = rng.standard_normal((heads * head_dim, width))
    wk = rng.standard_normal((heads * head_dim, width))
    x_q, x_k = rng.standard_normal(width), rng.standard_normal(width)
    freqs = 10000.0 ** (-np.arange(head_dim // 2) * 2 / head_dim)
    scores = {}
    for name, (rotate, q_rows, k_rows) in {
        "hf": (_rotate_half, wq, wk),
        "gguf": (_rotate_pairs, interleave_rotary_rows(wq, heads), interleave_rotary_rows(wk, heads)),
    }.items():  # fmt: skip
        q = (q_rows @ x_q).reshape(heads, head_dim)
        k = (k_rows @ x_k).reshape(heads, head_dim)
        q, k = rotate(q, 7 * freqs), rotate(k, 3 * freqs)  # query at position 7, key at 3
        scores[name] = (q * k).sum(-1)
    np.testing.assert_allclose(scores["gguf"], scores["hf"], rtol=1e-10)
    # without the reordering llama.cpp would score other pairs together
    q = _rotate_pairs((wq @ x_q).reshape(heads, head_dim), 7 * freqs)
    k = _rotate_pairs((wk @ x_k).reshape(heads, head_dim), 3 * freqs)
    assert not np.allclose((q * k).sum(-1), scores["hf"])


@pytest.mark.parametrize(
    ("model_type", "options", "message"),
    [
        ("hrm", {}, "llama only, not hrm"),
        ("transformer", {}, "normalizes after the residual add"),
        ("llama", {"device": "cuda"}, "CPU build"),
        ("llama", {"quantize": "int8"}, "--gguf-type q8_0 | q4_K"),
        ("llama", {"gguf_type": "q2_K"}, "is not one of"),
        ("llama", {"draft": True}, "--draft cannot be combined"),
    ],
)
def test_llamacpp_refuses_what_it_cannot_serve(model_type, options, message):
    with pytest.raises(BackendUnavailableError, match=message) as error:
        check_backend("llamacpp", model_type, **options)
    assert "\n" not in str(error.value)


def test_gguf_type_belongs_to_llamacpp():
    with pytest.raises(BackendUnavailableError, match="not --backend onnx"):
        check_backend("onnx", "hrm", gguf_type="f16")


@pytest.fixture(scope="module")
def llama_checkpoint(tmp_path_factory, gpt2_dir: Path) -> Path:
    """A random 2-layer Llama (2 heads of 16, grouped keys) with the GPT-2 tokenizer."""
    from hrm_codegen.model.hf_models import HFCausalLM, HFModelConfig
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = HFModelConfig(
        model_type="llama", vocab_size=len(tokenizer) + 15, max_seq_len=96, hidden_size=32,
        num_heads=2, num_key_value_heads=1, n_layers=2, expansion=2.0,
    )  # fmt: skip
    model = HFCausalLM(config)
    with torch.no_grad():  # norms away from 1, so a norm written to the wrong place shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("llama") / "checkpoint"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


def _load(folder: Path):
    from hrm_codegen.evaluation.harness import load_model_and_tokenizer

    return load_model_and_tokenizer("llama", folder, device="cpu")


def test_gguf_file_holds_the_llama_and_its_vocabulary(llama_checkpoint: Path, tmp_path: Path):
    gguf = pytest.importorskip("gguf")
    from hrm_codegen.inference.llamacpp_runtime import export_gguf

    model, tokenizer = _load(llama_checkpoint)
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", gguf_type="f16")
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 9 + 3
    assert tensors["blk.1.attn_k.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.1.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    embed = model.hf.model.embed_tokens.weight.detach().numpy().astype(np.float16)
    np.testing.assert_array_equal(np.asarray(tensors["token_embd.weight"].data), embed)
    fields = reader.fields
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == model.config.vocab_size  # padded past the tokenizer's 50257
    last = bytes(tokens.parts[tokens.data[-1]]).decode()
    assert last == f"[PAD{model.config.vocab_size - 1}]"
    assert int(fields["llama.attention.head_count_kv"].parts[-1][0]) == 1
    with pytest.raises(BackendUnavailableError, match="not hrm"):
        from hrm_codegen.model import HRMConfig, HRMForCausalLM

        hrm = HRMForCausalLM(HRMConfig(vocab_size=64, hidden_size=16, num_heads=2))
        export_gguf(hrm, tokenizer, tmp_path / "hrm.gguf")


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llamacpp]')"
    )


def _prompts(tokenizer) -> list[list[int]]:
    texts = ["def add(a, b):", "import os\nfor name in", "class Stack:\n    def push(self,"]
    return [[tokenizer.bos_token_id, *tokenizer.encode(t)] for t in texts]


@pytest.mark.parametrize(("gguf_type", "equal_tokens"), [("f32", 24), ("f16", 8)])
def test_llamacpp_decodes_our_greedy_tokens(
    llama_cpp, llama_checkpoint: Path, gguf_type: str, equal_tokens: int
):
    from hrm_codegen.generation import generate_ids
    from hrm_codegen.inference.llamacpp_runtime import LlamaCppCausalLM

    model, tokenizer = _load(llama_checkpoint)
    engine = LlamaCppCausalLM.from_model(model, tokenizer, gguf_type=gguf_type, threads=1)
    prompts = _prompts(tokenizer)
    ours = generate_ids(model, prompts, max_new_tokens=equal_tokens)
    theirs = generate_ids(engine, prompts, max_new_tokens=equal_tokens)
    assert theirs == ours


def test_llamacpp_quantized_files_load_and_mostly_agree(llama_cpp, llama_checkpoint: Path):
    from hrm_codegen.inference.llamacpp_runtime import LlamaCppCausalLM
    from hrm_codegen.inference.onnx_runtime import top1_agreement

    model, tokenizer = _load(llama_checkpoint)
    prompts = _prompts(tokenizer)
    for gguf_type, floor in (("q8_0", 0.8), ("q4_K", 0.3)):
        engine = LlamaCppCausalLM.from_model(model, tokenizer, gguf_type=gguf_type, threads=1)
        assert top1_agreement(model, engine, prompts, max_new_tokens=12) >= floor


def test_llamacpp_samples_share_one_prefill(llama_cpp, llama_checkpoint: Path):
    """Sampled rows of one prompt restart from the prompt's snapshot: the same seed gives the
    same samples as a fresh engine, and samples differ from each other."""
    from hrm_codegen.generation import generate_ids
    from hrm_codegen.inference.llamacpp_runtime import LlamaCppCausalLM

    model, tokenizer = _load(llama_checkpoint)
    engine = LlamaCppCausalLM.from_model(model, tokenizer, gguf_type="f32", threads=1)
    prompts = _prompts(tokenizer)[:2]
    options = dict(max_new_tokens=6, num_samples=3, do_sample=True, temperature=1.0, seed=5)
    ours = generate_ids(model, prompts, **options, batch_size=1)
    theirs = generate_ids(engine, prompts, **options, batch_size=4)
    assert theirs == ours
    assert len({tuple(s) for s in theirs[0]}) > 1


def test_generate_cli_with_llamacpp_prints_the_eager_text(llama_cpp, llama_checkpoint: Path):
    from hrm_codegen.generate_cli import main

    def run(*flags: str) -> tuple[int, str]:
        out = io.StringIO()
        argv = ["--model-type", "llama", "--ckpt", str(llama_checkpoint), "--device", "cpu",
                "--max-new-tokens", "10", *flags, "def add(a, b):"]  # fmt: skip
        return main(argv, out=out), out.getvalue()

    code, eager = run()
    assert code == 0 and eager.strip()
    assert run("--backend", "llamacpp", "--gguf-type", "f32") == (0, eager)


def test_evaluate_with_llamacpp_writes_the_eager_completions(
    llama_cpp, llama_checkpoint: Path, tmp_path: Path
):
    import json

    from hrm_codegen.evaluation.cli import main as evaluate

    common = ["--benchmark", "toy", "--split", "train", "--limit", "2", "--model-type", "llama",
              "--ckpt", str(llama_checkpoint), "--max-new-tokens", "8", "--no-progress"]  # fmt: skip
    completions = {}
    for name, flags in {"torch": [], "llamacpp": ["--backend", "llamacpp", "--gguf-type", "f32"]}.items():  # fmt: skip
        assert evaluate([*common, *flags, "--output", str(tmp_path / name)]) == 0
        lines = (tmp_path / name / "samples.jsonl").read_text().splitlines()
        completions[name] = [json.loads(line)["completion"] for line in lines]
    assert len(completions["torch"]) == 2 and completions["llamacpp"] == completions["torch"]
