"""Seconds per training step of the quick start under each CPU thread policy, quiet or loaded.

python scripts/bench_threads.py                  # quiet machine
python scripts/bench_threads.py --load 2         # two busy processes beside it (a shared machine)

Each policy trains `experiment=quickstart` for --steps steps in a fresh process (the OpenMP wait
policy is read when torch loads, so it cannot change inside one process) and prints s/step, the
thread count the run recorded and its final loss (equal losses: the policy changed speed only).
Needs MBPP ($HRM_CODEGEN_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# (name, threads.intra_op, OMP_WAIT_POLICY)
POLICIES = [
    ("torch default, spinning waits (before)", "null", "ACTIVE"),
    ("auto threads, spinning waits", "auto", "ACTIVE"),
    ("auto threads, passive waits (default)", "auto", "PASSIVE"),
    ("2 threads, passive waits", "2", "PASSIVE"),
    ("1 thread", "1", "PASSIVE"),
]


def _busy() -> None:
    while True:
        pass


def run_policy(threads: str, wait: str, steps: int, folder: Path) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": wait}
    env.pop("OMP_NUM_THREADS", None)
    command = [
        sys.executable,
        str(REPO / "scripts" / "train_codegen.py"),
        "experiment=quickstart",
        f"train.max_steps={steps}",
        "eval.pass_at_1=false",
        "eval.max_batches=1",
        "logger=jsonl",
        f"run_dir={folder}",
        f"threads.intra_op={threads}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed ({' '.join(command)}):\n{result.stderr[-2000:]}")
    state = json.loads((folder / "checkpoint" / "trainer_state.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").open()]
    record = next(r for r in rows if "provenance/intra_op_threads" in r)
    return {
        "s_per_step": state["train_seconds"] / state["step"],
        "command_s": time.perf_counter() - start,
        "threads": record["provenance/intra_op_threads"],
        "loss": [r["train/loss"] for r in rows if "train/loss" in r][-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside the runs")
    args = parser.parse_args()
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in busy:
        process.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # the first run trains the quick start's tokenizer (cached): not timed
            run_policy("1", "PASSIVE", 1, Path(tmp) / "warmup")
            results = []
            for index, (name, threads, wait) in enumerate(POLICIES):
                results.append(
                    (name, run_policy(threads, wait, args.steps, Path(tmp) / str(index)))
                )
    finally:
        for process in busy:
            process.terminate()
    print(f"quick start, {args.steps} steps, {os.cpu_count()} CPUs, {args.load} busy process(es)")
    print(f"{'policy':<42} {'threads':>7} {'s/step':>7} {'command s':>9}  final loss")
    for name, r in results:
        print(
            f"{name:<42} {r['threads']:>7} {r['s_per_step']:>7.2f} {r['command_s']:>9.0f}  "
            f"{r['loss']!r}"
        )


if __name__ == "__main__":
    main()
