"""A loaded model as its backend runs it (`prepare_backend`).

Apart from `backends.py` because it builds the engines (the ONNX export), which themselves read
the refusals in `backends.py`: flags are checked below the engines, models prepared above them.
"""

from __future__ import annotations

from typing import Any

from hrm_codegen.inference.backends import check_backend


def prepare_backend(
    model: Any,
    backend: str,
    *,
    quantize: str | None = None,
    tokenizer: Any = None,
    gguf_type: str | None = None,
) -> Any:
    """The model as `backend` runs it: an ONNX Runtime model for `onnx` (exported now, weights
    quantized to int8 with `quantize="int8-dynamic"`), a llama.cpp context for `llamacpp`
    (written as GGUF with `tokenizer`'s vocabulary, weights as `gguf_type`, default f16), else
    `model` itself (`compiled` is a decoding option: `generate(..., compile=True)`)."""
    check_backend(
        backend, getattr(model, "model_type", None), quantize=quantize, gguf_type=gguf_type
    )
    if backend == "llamacpp":
        from hrm_codegen.inference.llamacpp_runtime import DEFAULT_GGUF_TYPE, LlamaCppCausalLM

        if tokenizer is None:
            raise ValueError("--backend llamacpp writes the tokenizer into the GGUF file: pass it")
        return LlamaCppCausalLM.from_model(
            model, tokenizer, gguf_type=gguf_type or DEFAULT_GGUF_TYPE
        )
    if backend != "onnx":
        return model
    from hrm_codegen.inference.onnx_runtime import OnnxCausalLM

    return OnnxCausalLM.from_model(model, quantize=quantize)


__all__ = ["prepare_backend"]
