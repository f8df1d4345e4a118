"""scripts/export_hf.py: the exported folder loads through transformers' Auto classes, generates
what our generation does token for token, evaluates the same, and needs no hrm_codegen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hrm_codegen.export import SOURCE_MODULES, export_hf, rewrite_imports
from hrm_codegen.generation import generate_ids
from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM
from hrm_codegen.tokenization import load_tokenizer
from hrm_codegen.tokenization.train import train_code_bpe

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["def add(a, b):", "Write a function that returns 11.\n"]
MBPP = [
    {
        "task_id": number,
        "text": f"Write a function that returns {number}.",
        "code": f"def const_{number}():\r\n    return {number}",
        "test_setup_code": "",
        "test_list": [f"assert const_{number}() == {number}"],
        "challenge_test_list": [],
    }
    for number in (11, 12)  # the test split
]


def tiny_models(vocab_size: int) -> dict[str, torch.nn.Module]:
    """An ACT HRM (Q head, 2 segments: 12 cache slots) and a 2-layer transformer, random weights."""
    torch.manual_seed(0)
    hrm = HRMForCausalLM(
        HRMConfig(vocab_size=vocab_size, max_seq_len=256, hidden_size=32, num_heads=2,
                  expansion=2, H_layers=1, L_layers=2, enable_q_head=True, halt_max_steps=2)
    )  # fmt: skip
    transformer = TransformerForCausalLM(
        TransformerConfig(vocab_size=vocab_size, max_seq_len=256, hidden_size=32, num_heads=4,
                          num_key_value_heads=2, expansion=2, n_layers=2)
    )  # fmt: skip
    return {"hrm": hrm.eval(), "transformer": transformer.eval()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{architecture: (our checkpoint folder, its export)}."""
    root = tmp_path_factory.mktemp("export")
    texts = [*PROMPTS, *(r["text"] + "\n" + r["code"] for r in MBPP), "for i in range(3):\n"]
    tokenizer_dir = train_code_bpe(
        texts * 4, vocab_size=300, output_dir=root / "tok", progress=False
    )
    vocab_size = len(load_tokenizer(tokenizer_dir))
    folders = {}
    for name, model in tiny_models(vocab_size).items():
        ckpt = model.save_pretrained(root / name / "checkpoint")
        shutil.copy(tokenizer_dir / "tokenizer.json", ckpt / "tokenizer.json")
        folders[name] = (ckpt, export_hf(root / name, root / f"{name}-hf"))
    return folders


def our_greedy(ckpt: Path, new_tokens: int = 12) -> list[list[int]]:
    """Greedy new ids per prompt from our own generation (EOS not special, so lengths are fixed)."""
    from hrm_codegen.model import load_model

    model = load_model(ckpt).eval()
    tokenizer = load_tokenizer(ckpt)
    prompts = [
        [tokenizer.bos_token_id, *tokenizer.encode(p, add_special_tokens=False)] for p in PROMPTS
    ]
    out = generate_ids(model, prompts, max_new_tokens=new_tokens, eos_token_id=None, batch_size=1)
    return [samples[0] for samples in out]


def test_rewrite_imports_makes_package_imports_relative() -> None:
    source = (
        "from hrm_codegen.model.layers import Block\n"
        "def f():\n    from hrm_codegen.quantization import thing\n    return thing\n"
    )
    rewritten = rewrite_imports(source, "x.py")
    assert f"from .{SOURCE_MODULES['hrm_codegen.model.layers']} import Block" in rewritten
    assert "    raise ImportError(" in rewritten  # an optional feature the export does not carry
    with pytest.raises(ValueError, match="top level"):
        rewrite_imports("from hrm_codegen.training import train\n", "x.py")
    with pytest.raises(ValueError, match="cannot ship"):
        rewrite_imports("import hrm_codegen.model\n", "x.py")


def test_folder_layout(exported: dict[str, tuple[Path, Path]]) -> None:
    _, folder = exported["hrm"]
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["auto_map"]["AutoModelForCausalLM"] == "modeling_hrm_codegen.HRMCodegenForCausalLM"
    )
    assert config["num_hidden_layers"] == 2 * 2 * (
        2 * 2 + 1
    )  # segments x H x (L x L_layers + H_layers)
    for name in ["model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "configuration_hrm_codegen.py", "modeling_hrm_codegen.py"]:  # fmt: skip
        assert (folder / name).is_file(), name
    for path in folder.glob("*.py"):
        code = [line.strip() for line in path.read_text().splitlines()]
        assert not [
            line for line in code if line.startswith(("from hrm_codegen", "import hrm_codegen"))
        ]


@pytest.mark.parametrize("architecture", ["hrm", "transformer"])
def test_hf_generate_equals_ours(exported: dict[str, tuple[Path, Path]], architecture: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt, folder = exported[architecture]
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    expected = our_greedy(ckpt)
    for prompt, want in zip(PROMPTS, expected):
        encoded = tokenizer(prompt, return_tensors="pt")  # BOS + prompt, as we encode it
        assert encoded["input_ids"][0, 0].item() == tokenizer.bos_token_id
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=len(want), do_sample=False,
                                 eos_token_id=None, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        assert out[0, encoded["input_ids"].shape[1] :].tolist() == want
    # the cache holds one layer per block application, as our KVCache holds one slot per one
    with torch.no_grad():
        result = model(**tokenizer(PROMPTS[0], return_tensors="pt"), use_cache=True)
    cache = result.cache if "cache" in result else result.past_key_values
    assert len(cache.layers) == model.config.num_hidden_layers


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: ~20 s on 2 busy cores
def test_loads_without_hrm_codegen(exported: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """A fresh `python -I` from an unrelated cwd, with hrm_codegen made unimportable, loads the
    folder through the Auto classes (the tokenizer without trust_remote_code) and generates."""
    ckpt, folder = exported["hrm"]
    script = textwrap.dedent(
        """
        import importlib.abc, json, sys

        class NoHrmCodegen(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "hrm_codegen" or name.startswith("hrm_codegen."):
                    raise ImportError("hrm_codegen is not installed here")

        sys.meta_path.insert(0, NoHrmCodegen())
        try:
            import hrm_codegen  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("hrm_codegen is importable")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, prompt, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
        encoded = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**encoded, max_new_tokens=count, do_sample=False, eos_token_id=None,
                             pad_token_id=tokenizer.pad_token_id)
        leaked = sorted(m for m in sys.modules if m.startswith("hrm_codegen"))
        print("\\nRESULT", json.dumps({"new": out[0, encoded["input_ids"].shape[1]:].tolist(), "leaked": leaked}))
        """
    )
    expected = our_greedy(ckpt)[0]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(folder), PROMPTS[0], str(len(expected))],
        capture_output=True, text=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # (AutoTokenizer asks about the folder's code on stdout, gets EOF, and goes on without it)
    result = json.loads(done.stdout.split("\nRESULT ")[-1])
    assert result == {"new": expected, "leaked": []}


@pytest.mark.slow  # two evaluate.py runs in subprocesses
def test_evaluate_hf_gives_our_samples(
    exported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """`scripts/evaluate.py --model-type hf` on the export = `--model-type hrm` on the original."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MBPP))
    env = dict(os.environ, HRM_CODEGEN_DATA_DIR=str(data), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_MODULES_CACHE=str(tmp_path / "modules"))  # fmt: skip
    ckpt, folder = exported["hrm"]
    samples = {}
    for model_type, path in (("hrm", ckpt), ("hf", folder)):
        out = tmp_path / model_type
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--no-progress",
             "--model-type", model_type, "--ckpt", str(path), "--benchmark", "mbpp", "--k", "1",
             "--max-new-tokens", "16", "--device", "cpu", "--timeout", "5", "--memory-mb", "256",
             "--output", str(out)],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        lines = (out / "samples.jsonl").read_text().splitlines()
        samples[model_type] = [(s["task_id"], s["completion"]) for s in map(json.loads, lines)]
    assert [task for task, _ in samples["hrm"]] == ["Mbpp/11", "Mbpp/12"]
    assert any(completion for _, completion in samples["hrm"])  # not trivially equal
    assert samples["hf"] == samples["hrm"]
