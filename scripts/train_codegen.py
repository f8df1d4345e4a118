"""Train the HRM (or a transformer baseline) to write Python: pretraining or MBPP fine-tuning.

    python scripts/train_codegen.py experiment=smoke             # tiny, CPU, under a minute
    python scripts/train_codegen.py experiment=quickstart        # small model on MBPP, ~10 min on CPU
    python scripts/train_codegen.py experiment=a100              # reference 27M HRM, one A100
    python scripts/train_codegen.py model=transformer dry_run=true
    accelerate launch --multi_gpu --num_processes 8 scripts/train_codegen.py experiment=a100
    accelerate launch --multi_gpu --num_processes 2 scripts/train_codegen.py experiment=smoke
        # DDP on CPU (gloo): accelerate 1.x starts one process for `--cpu --num_processes N`
    python scripts/train_codegen.py experiment=quickstart resume=true

Settings: configs/codegen_base.yaml. The last line printed names the checkpoint folder, which
scripts/evaluate.py --ckpt takes.
"""

import sys

import hydra
from omegaconf import DictConfig

from hrm_codegen.training import USER_ERRORS, train
from hrm_codegen.training.launch import extra_hydra_overrides


@hydra.main(config_path="../configs", config_name="codegen_base", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    sys.argv += extra_hydra_overrides(sys.argv[1:])
    main()
