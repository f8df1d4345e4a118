"""Which engine computes the tokens (`--backend`), and the refusals of what one cannot serve.

Refusals come before any model is loaded where the flags alone decide (`check_backend`), and
when the model is in hand otherwise (`serving.prepare_backend`: an ACT model for ONNX, weights
not in float32); each is one line naming the backend, the model and the reason.
"""

from __future__ import annotations

BACKENDS = ("torch", "compiled", "onnx", "llamacpp")
ONNX_FAMILIES = ("hrm", "transformer")  # the families whose forward the ONNX export rebuilds


class BackendUnavailableError(ValueError):
    """A backend cannot serve this model or these options (a user error: one line, exit 2)."""


def check_backend(
    backend: str,
    model_type: str | None,
    *,
    device: str | None = None,
    quantize: str | None = None,
    draft: bool = False,
) -> None:
    """Refuse, from the flags alone, a backend that cannot serve `model_type` this way."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "llamacpp":
        raise BackendUnavailableError(
            "--backend llamacpp is not built here yet: llama-cpp-python compiles llama.cpp from "
            "source at install, which this machine has not done (and llama.cpp has no HRM "
            "architecture); use --backend torch, compiled or onnx"
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


__all__ = ["BACKENDS", "ONNX_FAMILIES", "BackendUnavailableError", "check_backend"]
