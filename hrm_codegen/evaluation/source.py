"""What a command-line run evaluates: a samples file (`--samples`) or a model (`--model-type`,
`--ckpt`, `--tokenizer`, `--device`, `--dtype`, `--quantize`, the HRM schedule flags
`--h-cycles`, `--l-cycles`, `--segments`, and the engine: `--backend`, `--draft`). One check
and one load for every benchmark, so they refuse the same mistakes with the same words."""

from __future__ import annotations

import argparse
from typing import Any

from hrm_codegen.evaluation.harness import load_model_and_tokenizer, resolve_model_dir
from hrm_codegen.inference.backends import check_backend
from hrm_codegen.inference.serving import prepare_backend


def check_source(args: argparse.Namespace) -> None:
    """Exactly one of `--samples` and `--model-type/--ckpt`; a checkpoint path is checked
    before anything loads."""
    samples, ckpt = getattr(args, "samples", None), getattr(args, "ckpt", None)
    if (samples is None) == (ckpt is None):
        raise ValueError("give either --samples FILE or --model-type/--ckpt, not both or neither")
    if ckpt is not None:
        if getattr(args, "model_type", None) is None:
            from hrm_codegen.model.registry import cli_names

            names = ", ".join(cli_names())
            raise ValueError(f"--ckpt needs --model-type {names} or hf")
        resolve_model_dir(ckpt)


def load_model_from_args(
    args: argparse.Namespace, device: str | None = None
) -> tuple[Any, Any, dict[str, int]]:
    """(model, tokenizer, schedule) of the flags: the weights cast to `--dtype` (and quantized
    by `--quantize`), the HRM's inference schedule set from `--h-cycles/--l-cycles/--segments`
    (`schedule`: the one in force, {} for a model without recurrence). `device` overrides
    `--device` (a sharded rank's own); a missing flag takes its default (cpu, the saved dtype).
    """
    from hrm_codegen.evaluation.likelihood import apply_inference_schedule

    get = lambda name: getattr(args, name, None)  # noqa: E731
    backend = backend_of(args)
    device = device or get("device") or "cpu"
    check_backend(
        backend,
        get("model_type"),
        device=device,
        quantize=get("quantize"),
        draft=bool(get("draft")),
        gguf_type=get("gguf_type"),
    )
    model, tokenizer = load_model_and_tokenizer(
        get("model_type"),
        get("ckpt"),
        tokenizer_path=get("tokenizer"),
        device=device,
        dtype=get("dtype"),
        quantize=None if backend == "onnx" else get("quantize"),  # onnx: onnxruntime's int8
    )
    schedule = apply_inference_schedule(model, get("h_cycles"), get("l_cycles"), get("segments"))
    if backend in ("onnx", "llamacpp"):  # after the schedule: the export unrolls the one in force
        model = prepare_backend(
            model,
            backend,
            quantize=get("quantize"),
            tokenizer=tokenizer,
            gguf_type=get("gguf_type"),
        )
    return model, tokenizer, schedule


def backend_of(args: argparse.Namespace) -> str:
    """`--backend`, with `--compile` as the older spelling of `--backend compiled`."""
    backend = getattr(args, "backend", None) or "torch"
    if getattr(args, "compile", False):
        if backend not in ("torch", "compiled"):
            raise ValueError(
                f"--compile is --backend compiled; it cannot go with --backend {backend}"
            )
        return "compiled"
    return backend


def load_draft_from_args(args: argparse.Namespace, tokenizer: Any, device: str | None = None):
    """`--draft CKPT` as a `SpeculativeDraft` proposing `--draft-tokens` (None without it): its
    family read from its config.json, its tokenizer checked to be the model's."""
    if getattr(args, "draft", None) is None:
        return None
    from hrm_codegen.inference.speculative import SpeculativeDraft
    from hrm_codegen.model.registry import model_type_of_dir

    folder = resolve_model_dir(args.draft)
    draft, draft_tokenizer = load_model_and_tokenizer(
        model_type_of_dir(folder),
        folder,
        tokenizer_path=getattr(args, "tokenizer", None),
        device=device or getattr(args, "device", None) or "cpu",
    )
    if draft_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"--draft {args.draft} has another tokenizer than the model; speculative decoding "
            "compares token ids, so the draft needs the model's tokenizer"
        )
    return SpeculativeDraft(draft, getattr(args, "draft_tokens", None) or 4)


__all__ = ["backend_of", "check_source", "load_draft_from_args", "load_model_from_args"]
