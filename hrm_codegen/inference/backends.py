"""Which engine computes the tokens (`--backend`), and the refusals of what one cannot serve.

Refusals come before any model is loaded where the flags alone decide (`check_backend`), and
when the model is in hand otherwise (`serving.prepare_backend`: an ACT model for ONNX, weights
not in float32); each is one line naming the backend, the model and the reason.
"""

from __future__ import annotations

import importlib.util

BACKENDS = ("torch", "compiled", "onnx", "llamacpp")
ONNX_FAMILIES = ("hrm", "transformer")  # the families whose forward the ONNX export rebuilds
GGUF_FAMILIES = ("llama",)  # the families llama.cpp has an architecture for
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_K")  # --gguf-type: weights as llama.cpp reads them


class BackendUnavailableError(ValueError):
    """A backend cannot serve this model or these options (a user error: one line, exit 2)."""


def check_backend(
    backend: str,
    model_type: str | None,
    *,
    device: str | None = None,
    quantize: str | None = None,
    draft: bool = False,
    gguf_type: str | None = None,
) -> None:
    """Refuse, from the flags alone, a backend that cannot serve `model_type` this way."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if gguf_type is not None and backend != "llamacpp":
        raise BackendUnavailableError(
            f"--gguf-type {gguf_type} is the weights of --backend llamacpp, not --backend {backend}"
        )
    if model_type == "hf" and backend != "torch":
        raise BackendUnavailableError(
            f"--backend {backend} cannot serve --model-type hf: a Hugging Face model decodes "
            "inside transformers' own generate; use --backend torch"
        )
    if backend == "onnx":
        if model_type is not None and model_type not in ONNX_FAMILIES:
            raise BackendUnavailableError(
                f"--backend onnx cannot serve --model-type {model_type}: the export rebuilds the "
                f"forward of our {' and '.join(ONNX_FAMILIES)} models only"
            )
        if device is not None and not str(device).startswith("cpu"):
            raise BackendUnavailableError(
                f"--backend onnx runs onnxruntime's CPU provider; --device {device} is not "
                "served (use --device cpu)"
            )
        if quantize is not None and quantize != "int8-dynamic":
            raise BackendUnavailableError(
                f"--backend onnx cannot take --quantize {quantize} (a torchao format); "
                "--quantize int8-dynamic gives onnxruntime's own dynamic int8"
            )
    if draft and backend != "torch":
        raise BackendUnavailableError(
            f"--draft cannot be combined with --backend {backend}: speculative decoding verifies "
            "with the eager model; use --backend torch"
        )
    if draft and model_type == "hf":
        raise BackendUnavailableError(
            "--draft cannot serve --model-type hf: speculative decoding rolls back our KV cache"
        )
    if backend == "llamacpp":
        _check_llamacpp(model_type, device, quantize, gguf_type)


def check_gguf_family(model_type: str) -> None:
    """Refuse a family llama.cpp has no architecture for (one line: which and why)."""
    if model_type not in GGUF_FAMILIES:
        raise BackendUnavailableError(
            f"--backend llamacpp serves --model-type llama only, not {model_type}: llama.cpp "
            "has no architecture for our HRM or HRM-Text, and our transformer normalizes after "
            "the residual add where llama.cpp's Llama normalizes before"
        )


def llama_cpp_missing() -> str | None:
    """Why llama-cpp-python cannot be used here (None when it is installed)."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return None
    return (
        "--backend llamacpp needs llama-cpp-python, which compiles llama.cpp at install: "
        "pip install -e '.[llamacpp]' (a C++ compiler and cmake; ~10 min on 2 cores)"
    )


def _check_llamacpp(
    model_type: str | None, device: str | None, quantize: str | None, gguf_type: str | None
) -> None:
    """llama.cpp runs our Llama arm on the CPU, quantized by itself, when llama-cpp-python is
    installed (it compiles llama.cpp at install: an optional extra)."""
    if model_type is not None:
        check_gguf_family(model_type)
    if device is not None and not str(device).startswith("cpu"):
        raise BackendUnavailableError(
            f"--backend llamacpp runs llama.cpp's CPU build; --device {device} is not served "
            "(use --device cpu)"
        )
    if quantize is not None:
        raise BackendUnavailableError(
            f"--backend llamacpp cannot take --quantize {quantize} (a torchao format); "
            f"--gguf-type {' | '.join(GGUF_TYPES[2:])} gives llama.cpp's own quantization"
        )
    if gguf_type is not None and gguf_type not in GGUF_TYPES:
        raise BackendUnavailableError(
            f"--gguf-type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}"
        )
    missing = llama_cpp_missing()
    if missing:
        raise BackendUnavailableError(missing)


__all__ = [
    "BACKENDS",
    "GGUF_FAMILIES",
    "GGUF_TYPES",
    "ONNX_FAMILIES",
    "BackendUnavailableError",
    "check_backend",
    "check_gguf_family",
    "llama_cpp_missing",
]
