"""Reinforcement learning on sandbox rewards: GSPO (Group Sequence Policy Optimization).

Lives apart from `training/` and `evaluation/` because it needs both (optimiser, checkpoints and
logging from one; the sandbox verdict from the other), and those two never import each other.
`train_gspo(cfg)` is what `scripts/train_codegen.py` runs for `loop: gspo` (`experiment=gspo`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GSPOLoop", "train_gspo"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # the loop pulls in the model and the sandbox: import on first use
        from hrm_codegen.rl import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'hrm_codegen.rl' has no attribute {name!r}")
