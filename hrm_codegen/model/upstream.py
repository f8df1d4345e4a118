"""Warm-start from a checkpoint of the Sapient HRM (github.com/sapientinc/HRM).

Upstream checkpoints are plain `torch.save(state_dict)` files with keys such as
`_orig_mod.model.inner.H_level.layers.0.self_attn.qkv_proj.weight` (the `_orig_mod.model.inner.`
prefix comes from torch.compile and the ACT wrappers and may be absent). Our parameter names are the
upstream ones, so the import is a rename of the embedding plus a few decisions: the puzzle embedding
has no counterpart here, the Q head is taken only when ours is enabled, and the embedding and LM head
are re-initialised when the vocabularies differ (a puzzle vocabulary is not a code vocabulary).

Shapes are checked, head counts cannot be: the qkv matrix of 8 heads of 64 looks like one of 4 heads
of 128, so build the model with the upstream num_heads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hrm_codegen.model.hrm import HRMForCausalLM

UPSTREAM_PREFIXES = ("_orig_mod.", "model.", "inner.")
LAYER_KEY = re.compile(r"^(H_level|L_level)\.layers\.(\d+)\.(.+)$")
LAYER_PARAMETERS = (
    "self_attn.qkv_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_up_proj.weight",
    "mlp.down_proj.weight",
)


@dataclass
class UpstreamLoadReport:
    """What happened to each tensor: our names that were loaded, upstream names skipped (with why),
    our names re-initialised or left at their initial values (with why)."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reinitialized: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"re-initialised {name}: {why}" for name, why in self.reinitialized.items()]
        return "\n".join(lines)


def strip_upstream_prefix(key: str) -> str:
    """`_orig_mod.model.inner.H_init` -> `H_init` (each prefix part optional, in that order)."""
    for prefix in UPSTREAM_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _read_state_dict(path_or_state_dict: str | Path | Mapping[str, torch.Tensor]) -> dict:
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
        source = "the given state dict"
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"upstream HRM checkpoint {path} not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        source = str(path)
        if not isinstance(state, Mapping):
            raise ValueError(
                f"{path} holds a {type(state).__name__}, not a state dict; upstream checkpoints are "
                "torch.save(model.state_dict(), path)"
            )
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{source}: entries {not_tensors[:5]} are not tensors; expected a state dict"
        )
    return {strip_upstream_prefix(k): v for k, v in state.items()}


def load_upstream_checkpoint(
    model: HRMForCausalLM, path_or_state_dict: str | Path | Mapping[str, torch.Tensor]
) -> UpstreamLoadReport:
    """Copy an upstream HRM checkpoint's weights into `model` in place and report what was done.

    Raises ValueError when the reasoning layers do not fit (shape or layer-count mismatch): a
    partial load of the reasoning modules would be a different model, not a warm start.
    """
    if not isinstance(model, HRMForCausalLM):
        raise TypeError(
            f"load_upstream_checkpoint needs an HRMForCausalLM, got {type(model).__name__}; upstream "
            "checkpoints hold HRM weights"
        )
    upstream = _read_state_dict(path_or_state_dict)
    ours = dict(model.named_parameters()) | dict(model.named_buffers())
    report = UpstreamLoadReport()
    assignments: dict[str, torch.Tensor] = {}

    def check_shape(our_name: str, tensor: torch.Tensor, upstream_name: str) -> None:
        if tensor.shape != ours[our_name].shape:
            raise ValueError(
                f"upstream {upstream_name} has shape {tuple(tensor.shape)} but our {our_name} has "
                f"{tuple(ours[our_name].shape)}: build HRMConfig with the upstream hidden_size, "
                "num_heads and expansion"
            )

    for name, tensor in upstream.items():
        layer = LAYER_KEY.match(name)
        if name.startswith("puzzle_emb."):
            report.skipped[name] = "puzzle embeddings have no counterpart in a language model"
        elif name.startswith("rotary_emb."):
            report.skipped[name] = "rotary tables are computed from positions on the fly"
        elif name in ("H_init", "L_init"):
            check_shape(name, tensor, name)
            assignments[name] = tensor
        elif layer is not None:
            if name not in ours:
                module, index = layer.group(1), int(layer.group(2))
                count = len(getattr(model, module).layers)
                if index >= count:
                    raise ValueError(
                        f"upstream {module} has a layer {index} but our model has {count} "
                        f"{module} layers; set HRMConfig.{module[0]}_layers to the upstream count"
                    )
                raise ValueError(f"upstream {name} has no counterpart in our {module} layers")
            check_shape(name, tensor, name)
            assignments[name] = tensor
        elif name in ("embed_tokens.embedding_weight", "lm_head.weight"):
            our_name = "embed_tokens.weight" if name.startswith("embed_tokens") else name
            if tensor.shape[0] != ours[our_name].shape[0]:
                report.reinitialized[our_name] = (
                    f"vocabulary size differs (upstream {tensor.shape[0]}, ours "
                    f"{ours[our_name].shape[0]}); kept our fresh initialisation"
                )
                continue
            check_shape(our_name, tensor, name)
            assignments[our_name] = tensor
        elif name.startswith("q_head."):
            if model.q_head is None:
                report.skipped[name] = "our Q head is disabled (enable_q_head=False)"
            else:
                check_shape(name, tensor, name)
                assignments[name] = tensor
        else:
            report.skipped[name] = "not part of the upstream HRM inner model that we mirror"

    for module in ("H_level", "L_level"):
        for index in range(len(getattr(model, module).layers)):
            for parameter in LAYER_PARAMETERS:
                name = f"{module}.layers.{index}.{parameter}"
                if name not in assignments:
                    raise ValueError(
                        f"the upstream checkpoint has no {name}: it has fewer {module} layers than "
                        "our model, or it is not an HRM checkpoint"
                    )
    for name in ("H_init", "L_init"):
        if name not in assignments:
            raise ValueError(f"the upstream checkpoint has no {name}; is it an HRM checkpoint?")
    for name in ("embed_tokens.weight", "lm_head.weight", "q_head.weight", "q_head.bias"):
        if name in ours and name not in assignments and name not in report.reinitialized:
            report.reinitialized[name] = (
                "absent from the upstream checkpoint; kept our initialisation"
            )

    with torch.no_grad():
        for name, tensor in assignments.items():
            ours[name].copy_(tensor.to(dtype=ours[name].dtype))
            report.loaded.append(name)
    return report
