"""`scripts/evaluate.py` killed with SIGKILL and rerun gives exactly the uninterrupted results.

The same output folder is killed at several moments (during start-up, early, midway, late),
rerun each time, and finally run to the end: results.jsonl must then hold one valid line per
sample, none twice, with the same verdicts as a run that was never interrupted. Lines are made
long (a big comment in every completion) so that a kill can land in the middle of a write.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrm_codegen.data import load_benchmark

pytestmark = [pytest.mark.needs_data, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TASKS = 24
PADDING = "    # " + "x" * 20000 + "\n"  # 20 kB per completion: several write() calls per line
VERDICT_FIELDS = ("task_id", "sample_index", "completion", "passed", "status", "detail")


def _samples(data_dir: Path) -> list[dict[str, str]]:
    tasks = load_benchmark("humaneval", path=data_dir / "HumanEval.jsonl.gz")[:TASKS]
    samples = []
    for task in tasks:
        samples.append({"task_id": task.task_id, "completion": PADDING + task.reference_solution})
        samples.append({"task_id": task.task_id, "completion": PADDING + "    return None\n"})
    return samples


def _command(samples: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "scripts" / "evaluate.py"),
        "--samples", str(samples),
        "--benchmark", "humaneval",
        "--output", str(output),
        "--workers", "2",
        "--timeout", "20",
        "--no-progress",
    ]  # fmt: skip


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _verdicts(path: Path) -> list[tuple]:
    """Every line of results.jsonl (all must parse), as the fields that do not vary by run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return sorted(tuple(record[field] for field in VERDICT_FIELDS) for record in records)


def _run_and_kill(
    command: list[str], env: dict[str, str], results: Path, after_lines: int, extra_s: float
) -> None:
    """Start the evaluator, SIGKILL it once results.jsonl has `after_lines` lines (+ a delay)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while _lines(results) < after_lines and proc.poll() is None:
            assert time.monotonic() < deadline, "the evaluator made no progress"
            time.sleep(0.005)
        time.sleep(extra_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_killed_and_rerun_evaluations_match_an_uninterrupted_one(
    data_dir: Path, tmp_path: Path
) -> None:
    samples = _samples(data_dir)
    samples_file = tmp_path / "samples.jsonl"
    samples_file.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    env = dict(os.environ, PYTHONWARNINGS="ignore", HRM_CODEGEN_DATA_DIR=str(data_dir))

    baseline = tmp_path / "uninterrupted"
    subprocess.run(_command(samples_file, baseline), check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    expected = _verdicts(baseline / "results.jsonl")
    assert len(expected) == len(samples)
    assert sum(verdict[3] for verdict in expected) == TASKS  # the references, and only them

    output = tmp_path / "interrupted"
    results = output / "results.jsonl"
    command = _command(samples_file, output)
    rng = random.Random(14)
    # (results lines to wait for, then a random extra delay): start-up, early, midway, late.
    moments = [(0, 0.5), (3, rng.uniform(0, 0.05)), (15, rng.uniform(0, 0.05)),
               (len(samples) - 6, rng.uniform(0, 0.05))]  # fmt: skip
    seen_counts = []
    for after_lines, extra_s in moments:
        _run_and_kill(command, env, results, after_lines, extra_s)
        seen_counts.append(_lines(results))
    assert len(set(seen_counts)) >= 3, f"the kills landed at too few moments: {seen_counts}"
    assert seen_counts[-1] < len(samples), "the last kill came after the end"

    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    got = _verdicts(results)
    keys = [(verdict[0], verdict[1]) for verdict in got]
    assert len(keys) == len(set(keys)), "a sample was judged twice"
    assert got == expected
    summary = json.loads((output / "summary.json").read_text())
    assert summary["counts"]["passed"] == TASKS
