"""One training run over Slurm nodes: scripts/slurm_train.sh renders the `accelerate launch`
arguments of each node from Slurm's variables (hrm_codegen/training/slurm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrm_codegen.training.slurm import accelerate_args, expand_nodelist

REPO = Path(__file__).resolve().parents[1]


def test_slurm_host_lists_expand_in_order():
    assert expand_nodelist("node7") == ["node7"]
    assert expand_nodelist("gpu[03-05,09]") == ["gpu03", "gpu04", "gpu05", "gpu09"]
    assert expand_nodelist("a01,gpu[1-2]x,b[7]") == ["a01", "gpu1x", "gpu2x", "b7"]


def test_each_node_gets_its_rank_and_the_shared_rendezvous():
    env = {"SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8",
           "SLURM_JOB_ID": "12345"}  # fmt: skip
    first = accelerate_args({**env, "SLURM_NODEID": "0"})
    second = accelerate_args({**env, "SLURM_NODEID": "1"})
    assert second == [
        "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "gpu03",
        "--main_process_port", "29845", "--num_processes", "16", "--multi_gpu",
    ]  # fmt: skip
    assert first[:2] == second[:2] and first[3] == "0" and first[4:] == second[4:]
    one_node = accelerate_args({**env, "SLURM_JOB_NODELIST": "gpu03", "SLURM_NNODES": "1",
                                "SLURM_NODEID": "0", "MASTER_PORT": "6000"})  # fmt: skip
    assert one_node[one_node.index("--main_process_port") + 1] == "6000"
    assert one_node[one_node.index("--num_processes") + 1] == "8"
    with pytest.raises(RuntimeError, match="run this inside a Slurm allocation"):
        accelerate_args({})
    with pytest.raises(RuntimeError, match="names 2 host"):
        accelerate_args({**env, "SLURM_NNODES": "3", "SLURM_NODEID": "0"})


def test_the_batch_script_launches_accelerate_with_the_rendered_arguments(tmp_path):
    """Run scripts/slurm_train.sh with a stand-in `srun` (runs its command) and a `python` that
    reports the accelerate launch it was asked for instead of training."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        '#!/usr/bin/env bash\nshift\nexec "$@"\n'
    )  # drop --kill-on-bad-exit
    (bin_dir / "python").write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1 $2" = "-m accelerate.commands.launch" ]; then shift 2; echo "LAUNCH $*"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    for tool in ("srun", "python"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "n[1-2]",
           "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_JOB_ID": "7", "SLURM_SUBMIT_DIR": str(REPO)}  # fmt: skip
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_train.sh"), "experiment=a100", "train.lr=1e-3"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "LAUNCH --num_machines 2 --machine_rank 1 --main_process_ip n1 --main_process_port 29507 "
        "--num_processes 8 --multi_gpu --dynamo_backend no scripts/train_codegen.py "
        "experiment=a100 train.lr=1e-3"
    )
