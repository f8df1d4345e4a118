#!/usr/bin/env bash
# One training run over Slurm nodes, data parallel through accelerate (one launcher per node).
#   sbatch --nodes=1 scripts/slurm_train.sh experiment=a100        # one node of 8 GPUs
#   sbatch --nodes=2 scripts/slurm_train.sh experiment=a100        # two nodes, 16 GPUs
# Arguments are train_codegen.py's (Hydra overrides). Every node must see this folder and the
# run folder (a shared file system). Each launcher's arguments (machines, this node's rank, the
# rendezvous host and port, processes in all) come from Slurm's variables:
# hrm_codegen/training/slurm.py. A rerun with resume=true continues from the last checkpoint.
#SBATCH --job-name=hrm-codegen
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
srun --kill-on-bad-exit=1 bash -c \
    'exec python -m accelerate.commands.launch $(python -m hrm_codegen.training.slurm) \
        --dynamo_backend no scripts/train_codegen.py "$@"' bash "$@"
