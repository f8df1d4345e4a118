"""Local inference backends: how a model's tokens get computed, chosen per run (`--backend`).

`torch` is the eager model, `compiled` its static-cache decode step under `torch.compile`,
`onnx` the model exported to ONNX and run by onnxruntime (optionally int8; `onnx_runtime`),
`llamacpp` is refused until llama-cpp-python is built here; a draft model (`--draft`) adds
speculative decoding on top of `torch` (`speculative`). `backends.check_backend` refuses what
a backend cannot serve before anything loads, in one line that says which and why.

Importing this package imports no torch (the command lines check flags before loading a
model); `SpeculativeDraft` and `speculative_decode` load `speculative` when first asked for.
"""

from __future__ import annotations

from typing import Any

from hrm_codegen.inference.backends import BACKENDS, BackendUnavailableError, check_backend
from hrm_codegen.inference.serving import prepare_backend

_LAZY = {"SpeculativeDraft", "speculative_decode"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from hrm_codegen.inference import speculative

        return getattr(speculative, name)
    raise AttributeError(f"module 'hrm_codegen.inference' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "SpeculativeDraft",
    "check_backend",
    "prepare_backend",
    "speculative_decode",
]
