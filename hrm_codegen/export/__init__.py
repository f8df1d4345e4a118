"""Export a checkpoint of ours as a Hugging Face folder that loads without hrm_codegen installed.

`export_hf(ckpt, out)` writes `config.json` (with `auto_map`), `generation_config.json`,
`model.safetensors`, the tokenizer files, `configuration_hrm_codegen.py`,
`modeling_hrm_codegen.py` and our model's source files, so that
`AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)` and
`AutoTokenizer.from_pretrained(out)` work anywhere torch and transformers are.

Why the model code is copied from our sources rather than written again: a second implementation
would drift from the one we train and test. The files in `SOURCE_MODULES` are copied as
`hrm_codegen_<name>.py` with only their `from hrm_codegen...` imports rewritten to relative ones
(transformers' remote-code loader follows relative imports and copies those files too); the
wrapper in `remote/modeling_hrm_codegen.py` adds the HF surface (see its docstring).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import hrm_codegen

PACKAGE_ROOT = Path(hrm_codegen.__file__).resolve().parent
REMOTE_DIR = Path(__file__).resolve().parent / "remote"
# module path -> file name in the exported folder; every hrm_codegen module our models import
SOURCE_MODULES = {
    "hrm_codegen.losses": "hrm_codegen_losses",
    "hrm_codegen.model.act": "hrm_codegen_act",
    "hrm_codegen.model.checkpoint": "hrm_codegen_checkpoint",
    "hrm_codegen.model.hrm": "hrm_codegen_hrm",
    "hrm_codegen.model.kv_cache": "hrm_codegen_kv_cache",
    "hrm_codegen.model.layers": "hrm_codegen_layers",
    "hrm_codegen.model.precision": "hrm_codegen_precision",
    "hrm_codegen.model.transformer": "hrm_codegen_transformer",
}
REMOTE_FILES = ("configuration_hrm_codegen.py", "modeling_hrm_codegen.py")
HF_MODEL_TYPE = "hrm_codegen"
AUTO_MAP = {
    "AutoConfig": "configuration_hrm_codegen.HRMCodegenConfig",
    "AutoModelForCausalLM": "modeling_hrm_codegen.HRMCodegenForCausalLM",
}
_IMPORT = re.compile(r"^([ \t]*)from (hrm_codegen(?:\.\w+)+) import([^\n]*)$", re.MULTILINE)


def rewrite_imports(source: str, origin: str) -> str:
    """Turn `from hrm_codegen.x.y import ...` into `from .hrm_codegen_y import ...`.

    A function-local import of a module not shipped (an optional feature, such as loading a
    quantized checkpoint) becomes a `raise ImportError` in that function: the export never calls
    it, and transformers would otherwise demand that module at load time. A top-level one, or any
    other reference to the package, is refused, since it would fail where hrm_codegen is absent.
    """

    def relative(match: re.Match[str]) -> str:
        indent, module, names = match.groups()
        if module in SOURCE_MODULES:
            return f"{indent}from .{SOURCE_MODULES[module]} import{names}"
        if indent and "(" not in names:
            message = f"{module} is not part of a Hugging Face export of hrm_codegen"
            return f"{indent}raise ImportError({message!r})  # was: from {module} import{names}"
        raise ValueError(
            f"{origin} imports {module} at top level, which the export does not ship; add it "
            "to hrm_codegen.export.SOURCE_MODULES"
        )

    rewritten = _IMPORT.sub(relative, source)
    leftover = re.search(r"^\s*(?:import|from) hrm_codegen\b.*$", rewritten, re.MULTILINE)
    if leftover:
        raise ValueError(f"{origin}: cannot ship `{leftover.group(0).strip()}` in an export")
    return rewritten


def write_model_code(out: Path) -> list[str]:
    """Copy our model sources (imports made relative) and the HF wrapper into `out`."""
    written = []
    for module, name in SOURCE_MODULES.items():
        path = PACKAGE_ROOT.joinpath(*module.split(".")[1:]).with_suffix(".py")
        header = f"# Copied from {module} by hrm_codegen's export_hf; imports made relative.\n"
        (out / f"{name}.py").write_text(header + rewrite_imports(path.read_text(), str(path)))
        written.append(f"{name}.py")
    for name in REMOTE_FILES:
        (out / name).write_text((REMOTE_DIR / name).read_text())
        written.append(name)
    return written


def hf_config(architecture: str, model_config: dict[str, Any], tokenizer) -> dict[str, Any]:
    """config.json of the export: our config under `model_config`, plus the HF names."""
    spec = _remote_config_module()
    return {
        "model_type": HF_MODEL_TYPE,
        "architectures": ["HRMCodegenForCausalLM"],
        "auto_map": AUTO_MAP,
        "architecture": architecture,
        "model_config": model_config,
        "vocab_size": model_config["vocab_size"],
        "hidden_size": model_config["hidden_size"],
        "num_attention_heads": model_config["num_heads"],
        "num_key_value_heads": model_config.get("num_key_value_heads") or model_config["num_heads"],
        "head_dim": model_config["hidden_size"] // model_config["num_heads"],
        "max_position_embeddings": model_config["max_seq_len"],
        "num_hidden_layers": spec.cache_slots(architecture, model_config),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def _remote_config_module():
    """The shipped configuration module, loaded from its file (it is self-contained), so that the
    slot count written here is the one the folder computes."""
    import importlib.util

    path = REMOTE_DIR / "configuration_hrm_codegen.py"
    spec = importlib.util.spec_from_file_location("_hrm_codegen_remote_configuration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_tokenizer(tokenizer, out: Path) -> None:
    """Save the tokenizer so that a plain `tokenizer(text)` gives BOS + text, the way our
    generation and training encode a prompt (external harnesses call it like that)."""
    from tokenizers import processors

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    tokenizer.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # transformers 5 writes a 5-only name
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def export_hf(ckpt: str | Path, out: str | Path, *, tokenizer: str | Path | None = None) -> Path:
    """Write the Hugging Face folder for checkpoint `ckpt` (a model, run, or runs folder) to `out`.

    `tokenizer` defaults to the `tokenizer.json` saved with the checkpoint. Returns `out`.
    """
    from hrm_codegen.model import load_model
    from hrm_codegen.model.loading import model_folder
    from hrm_codegen.tokenization import load_tokenizer

    folder = model_folder(ckpt)
    if json.loads((folder / "config.json").read_text()).get("quantization") is not None:
        raise ValueError(
            f"{folder} holds a quantized model; export the floating-point checkpoint it came from"
        )
    model = load_model(folder)
    tok = load_tokenizer(tokenizer or folder)
    if len(tok) > model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tok)} tokens but the model's vocab_size is {model.config.vocab_size}"
        )
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model_config = dataclasses.asdict(model.config)
    model_config["attn_impl"] = "sdpa"  # flash_attn is a CUDA extra the loading side may lack
    config = hf_config(model.model_type, model_config, tok)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {key: config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    tensors = {
        f"model.{name}": t.detach().to(torch.float32).contiguous().cpu()
        for name, t in model.state_dict().items()
    }
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    write_model_code(out)
    export_tokenizer(tok, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """`scripts/export_hf.py --ckpt RUN --out DIR [--tokenizer PATH]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint, run, or runs folder")
    parser.add_argument("--out", required=True, help="folder to write the HF model into")
    parser.add_argument("--tokenizer", help="tokenizer (default: the checkpoint's tokenizer.json)")
    args = parser.parse_args(argv)
    out = export_hf(args.ckpt, args.out, tokenizer=args.tokenizer)
    print(out)
    return 0
