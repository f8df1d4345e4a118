"""Randomized-depth training: the recurrence depth of each optimiser step drawn from a
configured distribution, so that a recurrent model learns to use more (or fewer) cycles than its
mean at test time (`train.random_depth`).

Why: a model trained at one depth gets worse when run deeper (our HRM: val/bpb 2.08 as trained,
2.67 at 2x H cycles). Huginn (Geiping et al. 2025, arXiv:2502.05171) samples the number of
recurrences per step from a Poisson-lognormal distribution and back-propagates through the last k
of them, which lets its loss keep falling as test-time recurrence grows; Parcae
(arXiv:2604.12946) draws it per sequence. Here the depth is drawn per step (every sequence of the
step shares it, so the batch stays one shape), for `H` cycles or `L` cycles, and the gradient is
truncated as the model's own schedule says (our HRM: the last `bp_steps` module applications;
HRM-Text: every H step and the last `L_bp_cycles` L steps of each H cycle).

The draw for step s is a pure function of (seed, s) — numpy's PCG64 seeded with [seed, s] — so a
resumed run draws exactly the depths it would have, and a FLOP budget is converted into the exact
number of steps whose summed FLOPs (each at its own depth) reach it. The FLOPs a step counts are
those of the depth it ran (training/flops.py reads the model's training depth).

Distributions (mean m = the model's configured cycles, the depth evaluation runs by default):
- `poisson_lognormal`: tau ~ N(log(m - 1) - sigma^2 / 2, sigma), depth = 1 + Poisson(e^tau)
  (Huginn's form, shifted so that E[depth] = m), clipped to [1, max].
- `uniform`: depth uniform on {1, ..., 2m - 1} (mean m), clipped to [1, max].
Written here because no maintained library draws a per-step recurrence depth for a training loop;
the sampling itself is numpy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DISTRIBUTIONS = ("poisson_lognormal", "uniform")
LEVELS = ("H", "L")


class DepthConfigError(ValueError):
    """`train.random_depth` cannot be used as given (one line: the value and the fix)."""


@dataclass(frozen=True)
class DepthSampler:
    """Draws the depth (H or L cycles) of each training step."""

    distribution: str
    level: str
    mean: int
    sigma: float
    max_depth: int
    seed: int

    def draw(self, step: int) -> int:
        rng = np.random.default_rng([int(self.seed), int(step)])
        if self.distribution == "uniform":
            depth = int(rng.integers(1, 2 * self.mean))
        else:
            tau = rng.normal(math.log(self.mean - 1) - self.sigma**2 / 2, self.sigma)
            depth = 1 + int(rng.poisson(math.exp(tau)))
        return max(1, min(depth, self.max_depth))

    def set_depth(self, model: Any, depth: int | None) -> None:
        """Make `model` train at `depth` cycles of this level (None: its configured depth)."""
        if depth is None:
            model.set_training_cycles()
        elif self.level == "H":
            model.set_training_cycles(h_cycles=depth)
        else:
            model.set_training_cycles(l_cycles=depth)


def depth_sampler(train_cfg: Any, model: Any, seed: int) -> DepthSampler | None:
    """The sampler `train.random_depth` asks for (None when it is null or off)."""
    spec = train_cfg.get("random_depth") if hasattr(train_cfg, "get") else None
    if not spec or not spec.get("distribution"):
        return None
    if not getattr(model, "recurrent", False):
        raise DepthConfigError(
            f"train.random_depth needs a recurrent model (model=hrm or model=hrm_text); "
            f"{getattr(model, 'model_type', type(model).__name__)} has no cycles to draw"
        )
    distribution = str(spec["distribution"])
    if distribution not in DISTRIBUTIONS:
        raise DepthConfigError(
            f"train.random_depth.distribution={distribution!r}: use one of {', '.join(DISTRIBUTIONS)}"
        )
    level = str(spec.get("level") or "H")
    if level not in LEVELS:
        raise DepthConfigError(f"train.random_depth.level={level!r}: use H or L")
    mean = int(model.config.H_cycles if level == "H" else model.config.L_cycles)
    if mean < 2:
        raise DepthConfigError(
            f"train.random_depth: the model's {level}_cycles={mean} is the mean depth and must be "
            f">= 2 for a depth that varies; raise model.{level}_cycles"
        )
    sigma = float(spec.get("sigma", 0.5))
    if not sigma > 0:
        raise DepthConfigError(f"train.random_depth.sigma={sigma} must be > 0")
    max_depth = int(spec.get("max") or 4 * mean)
    if max_depth < mean:
        raise DepthConfigError(
            f"train.random_depth.max={max_depth} is below the mean depth {mean}; raise it"
        )
    return DepthSampler(distribution, level, mean, sigma, max_depth, seed)


__all__ = ["DISTRIBUTIONS", "DepthConfigError", "DepthSampler", "depth_sampler"]
