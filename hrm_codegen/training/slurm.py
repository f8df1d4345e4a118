"""`accelerate launch` arguments for one training run spread over Slurm nodes.

`scripts/slurm_train.sh` runs one launcher per node (`srun`, one task per node); each asks this
module for its arguments, read off Slurm's variables: how many machines (`SLURM_NNODES`), which
one this is (`SLURM_NODEID`), the rendezvous (the first host of `SLURM_JOB_NODELIST`, a port
derived from the job id unless `MASTER_PORT` is set), and the processes in all (GPUs per node,
`SLURM_GPUS_ON_NODE`, times nodes). accelerate then starts torchrun on every node with a static
rendezvous: the data-parallel training is the one `accelerate launch --multi_gpu` runs on one node.

Written here because Slurm's compressed host lists (`gpu[03-05,09]`) are normally expanded by
`scontrol show hostnames`, which a test machine does not have; the rest is accelerate's own.

    python -m hrm_codegen.training.slurm      # prints the arguments for this node
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

DEFAULT_PORT_BASE = 29500


def expand_nodelist(text: str) -> list[str]:
    """Slurm's host list (`a01,gpu[03-05,09],b[1-2]x`) as host names, in order."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text.strip()):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                hosts += [f"{prefix}{i:0{len(lo)}d}{suffix}" for i in range(int(lo), int(hi) + 1)]
            else:
                hosts.append(f"{prefix}{part}{suffix}")
    return hosts


def _gpus_per_node(env: Mapping[str, str]) -> int:
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        value = env.get(name)
        if value:
            return int(value.split(":")[-1].split("(")[0])  # "8", "a100:8" or "8(x2)"
    return 0


def accelerate_args(env: Mapping[str, str] | None = None) -> list[str]:
    """The `accelerate launch` arguments for the node this Slurm task runs on."""
    env = os.environ if env is None else env
    missing = [n for n in ("SLURM_JOB_NODELIST", "SLURM_NNODES", "SLURM_NODEID") if n not in env]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: run this inside a Slurm allocation (srun, one task "
            "per node), as scripts/slurm_train.sh does"
        )
    nodes = int(env["SLURM_NNODES"])
    hosts = expand_nodelist(env["SLURM_JOB_NODELIST"])
    if len(hosts) != nodes:
        raise RuntimeError(
            f"SLURM_JOB_NODELIST={env['SLURM_JOB_NODELIST']} names {len(hosts)} host(s), "
            f"SLURM_NNODES={nodes}"
        )
    gpus = _gpus_per_node(env)
    processes = nodes * max(1, gpus)
    port = int(
        env.get("MASTER_PORT") or DEFAULT_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % 1000
    )
    args = [
        "--num_machines", str(nodes),
        "--machine_rank", env["SLURM_NODEID"],
        "--main_process_ip", hosts[0],
        "--main_process_port", str(port),
        "--num_processes", str(processes),
    ]  # fmt: skip
    if processes > 1:
        args.append("--multi_gpu")
    return args


def main() -> int:
    try:
        print(" ".join(accelerate_args()))
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
