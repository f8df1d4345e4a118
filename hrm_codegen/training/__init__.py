"""Training: one loop for pretraining and MBPP fine-tuning, driven by Hydra configs in configs/.

`train(cfg, evaluators=())` runs the LM loop (`hrm_codegen.train_cli` composes it with evaluation
for `scripts/train_codegen.py`); see `trainer.py` for the loop, docs/DESIGN.md "Training components"
for the parts a second loop reuses, and configs/codegen_base.yaml for every setting. The loop is imported on first use, so light modules
such as `checkpointing` (which the evaluator reads run folders with) do not pull in accelerate.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "USER_ERRORS",
    "ConfigError",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hrm_codegen.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'hrm_codegen.training' has no attribute {name!r}")
