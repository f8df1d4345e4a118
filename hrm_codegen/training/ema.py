"""Exponential moving average of the weights, used for evaluation and for the saved model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class EMA:
    """Float32 shadow copy of every trainable parameter, updated after each optimiser step.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so early shadows are not
    dominated by the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}; use null to turn EMA off")
        self.decay = decay
        self.num_updates = 0
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[name].detach().float().clone() for name in self.names]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        params = dict(model.named_parameters())
        current = [params[name].detach().float() for name in self.names]
        torch._foreach_lerp_(self.shadow, current, 1.0 - decay)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = [name for name in self.names if name not in state]
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        for name, tensor in zip(self.names, self.shadow):
            tensor.copy_(state[name])
        self.num_updates = num_updates

    @contextmanager
    def applied_to(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily swap the shadow weights into `model` (for eval or saving), then swap back."""
        params = dict(model.named_parameters())
        targets = [params[name] for name in self.names]
        backup = [p.detach().clone() for p in targets]
        with torch.no_grad():
            torch._foreach_copy_(targets, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(targets, backup)
