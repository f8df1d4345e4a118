"""Train the HRM (or a transformer baseline) to write Python: pretraining or MBPP fine-tuning.

    python scripts/train_codegen.py experiment=smoke             # tiny, CPU, under a minute
    python scripts/train_codegen.py experiment=quickstart        # small model on MBPP, ~10 min on CPU
    python scripts/train_codegen.py experiment=a100              # reference 27M HRM, one A100
    python scripts/train_codegen.py model=transformer dry_run=true
    accelerate launch --multi_gpu --num_processes 8 scripts/train_codegen.py experiment=a100
    accelerate launch --multi_gpu --num_processes 2 scripts/train_codegen.py experiment=smoke
        # DDP on CPU (gloo): accelerate 1.x starts one process for `--cpu --num_processes N`
    python scripts/train_codegen.py experiment=quickstart resume=true

Settings: configs/codegen_base.yaml (`loop: lm | gspo` picks the loop). The last lines printed name
the latest checkpoint folder and the best one (`<run>/best`), which scripts/evaluate.py --ckpt takes.
SIGTERM/SIGINT save a checkpoint at the current step and exit with 128 + the signal number.
"""

import sys

import hydra
from omegaconf import DictConfig

from hrm_codegen.train_cli import main as train_main
from hrm_codegen.train_cli import run_dir_overrides
from hrm_codegen.training.launch import extra_hydra_overrides


@hydra.main(config_path="../configs", config_name="codegen_base", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train_main(cfg)


if __name__ == "__main__":
    sys.argv += extra_hydra_overrides(sys.argv[1:])
    sys.argv += run_dir_overrides(sys.argv[1:])  # run_dir=X: Hydra's files go into X
    main()
