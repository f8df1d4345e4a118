"""The precision policy in one place (see docs/DESIGN.md, "Precision policy").

Under mixed precision (``torch.autocast`` in bf16/fp16, or a model cast with ``.to(torch.bfloat16)``)
the residual stream, the KV cache and decoding run in the *compute dtype*; RMSNorm statistics, rotary
angles, softmax and the losses are computed in float32 (stablemax in float64) chunk by chunk.
"""

from __future__ import annotations

import torch

DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")


def compute_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype activations of a model whose weights look like `like` run in.

    Autocast does not touch embeddings, buffers or cache allocation, so code that creates
    activations from weights (embedding lookups, initial states, the KV cache) asks here instead
    of reading `weight.dtype`, which stays float32 under autocast.
    """
    device_type = like.device.type
    if like.is_floating_point() and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return like.dtype


def resolve_dtype(name: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """`--dtype auto|bf16|fp16|fp32` -> a torch dtype; auto is bf16 on CUDA and float32 elsewhere.

    fp16 on CPU is refused: CPU kernels for half are slow or missing, so it is never what is meant.
    """
    device_type = torch.device(device).type
    if isinstance(name, torch.dtype):
        dtype = name
    elif name is None or name == "auto":
        dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
    elif name in DTYPE_NAMES:
        dtype = DTYPE_NAMES[name]
    else:
        raise ValueError(f"dtype={name!r} is not one of {DTYPE_CHOICES}")
    if dtype == torch.float16 and device_type == "cpu":
        raise ValueError("fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return dtype
