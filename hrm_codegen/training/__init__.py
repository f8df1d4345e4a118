"""Training: one loop for pretraining and MBPP fine-tuning, driven by Hydra configs in configs/.

`train(cfg)` is what `scripts/train_codegen.py` calls; see `trainer.py` for the loop and
configs/codegen_base.yaml for every setting.
"""

from hrm_codegen.training.trainer import (
    USER_ERRORS,
    ConfigError,
    NonFiniteLossError,
    Trainer,
    train,
)

__all__ = ["USER_ERRORS", "ConfigError", "NonFiniteLossError", "Trainer", "train"]
