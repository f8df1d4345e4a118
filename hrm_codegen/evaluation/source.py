"""What a command-line run evaluates: a samples file (`--samples`) or a model (`--model-type`,
`--ckpt`, `--tokenizer`, `--device`, `--dtype`, `--quantize` and the HRM schedule flags
`--h-cycles`, `--l-cycles`, `--segments`). One check and one load for every benchmark, so they
refuse the same mistakes with the same words."""

from __future__ import annotations

import argparse
from typing import Any

from hrm_codegen.evaluation.harness import load_model_and_tokenizer, resolve_model_dir


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
    model, tokenizer = load_model_and_tokenizer(
        get("model_type"),
        get("ckpt"),
        tokenizer_path=get("tokenizer"),
        device=device or get("device") or "cpu",
        dtype=get("dtype"),
        quantize=get("quantize"),
    )
    schedule = apply_inference_schedule(model, get("h_cycles"), get("l_cycles"), get("segments"))
    return model, tokenizer, schedule


__all__ = ["check_source", "load_model_from_args"]
