"""Local inference backends: how a model's tokens get computed, chosen per run (`--backend`).

`torch` is the eager model, `compiled` its static-cache decode step under `torch.compile`,
`onnx` the model exported to ONNX and run by onnxruntime (optionally int8), `llamacpp` is
refused until llama-cpp-python is built here; a draft model (`--draft`) adds speculative
decoding on top of `torch`. `backends.check_backend` refuses what a backend cannot serve
before anything loads, in one line that says which and why.
"""

from __future__ import annotations

from hrm_codegen.inference.backends import (
    BACKENDS,
    BackendUnavailableError,
    check_backend,
    prepare_backend,
)
from hrm_codegen.inference.speculative import SpeculativeDraft, speculative_decode

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "SpeculativeDraft",
    "check_backend",
    "prepare_backend",
    "speculative_decode",
]
