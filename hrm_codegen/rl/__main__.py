"""`python -m hrm_codegen.rl experiment=gspo init_from=<run>`: GSPO without the training launcher.

The same Hydra config as scripts/train_codegen.py (configs/codegen_base.yaml plus an experiment).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from hrm_codegen.rl.loop import USER_ERRORS, train_gspo
from hrm_codegen.training.preemption import TrainingInterrupted

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


@hydra.main(config_path=CONFIG_DIR, config_name="codegen_base", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train_gspo(cfg)
    except TrainingInterrupted as stop:  # SIGTERM/SIGINT: checkpoint saved, resume=true continues
        print(f"stopped: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
