"""How a baseline's depth follows the HRM sized in the same config, and the error a `model` config
that cannot build a model raises.

A module of its own because both the registry (our transformer) and model/hf_models.py (transformers'
Llama) size baselines by this rule, and the registry imports hf_models: keeping the rule here lets
hf_models use it without importing the registry back.
"""

from __future__ import annotations

from typing import Any


class ModelConfigError(ValueError):
    """A `model` config that cannot build a model, named together with what to set instead."""


def matched_depth(model_cfg: dict[str, Any], match: str, default: int | None) -> int | None:
    """Depth of a transformer baseline matched to the HRM sized in the same config.

    An experiment sizes the HRM (H_layers, L_layers, cycles); a baseline run of that experiment
    (`model=transformer` / `model=transformer_deep`) takes its depth from those sizes, so the
    comparison stays fair at any scale: `params` stacks the HRM's distinct blocks
    (H_layers + L_layers), `compute` as many blocks as the HRM applies per forward,
    H_cycles * (L_cycles * L_layers + H_layers). Without HRM sizes, `n_layers` stands.
    """
    if match not in ("params", "compute"):
        raise ModelConfigError(f"model.match={match!r} must be 'params', 'compute' or null")
    sizes = {k: model_cfg.get(k) for k in ("H_layers", "L_layers", "H_cycles", "L_cycles")}
    if match == "params" and sizes["H_layers"] and sizes["L_layers"]:
        return sizes["H_layers"] + sizes["L_layers"]
    if match == "compute" and all(sizes.values()):
        return sizes["H_cycles"] * (sizes["L_cycles"] * sizes["L_layers"] + sizes["H_layers"])
    return default
