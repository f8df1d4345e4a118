"""On the real benchmarks: every reference solution passes, other tasks' solutions all fail.

This also checks program assembly (`program_parts` -> SandboxProgram, pristine tests comparing
only trusted values) end to end through the sandbox: 974 MBPP,
427 sanitized MBPP and 164 HumanEval programs, each in its own sandboxed interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm_codegen.data import build_program, load_benchmark
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation import evaluate_samples
from hrm_codegen.evaluation.sandbox import SandboxProgram, run_programs

pytestmark = pytest.mark.needs_data

FILES = {
    "mbpp": "mbpp.jsonl",
    "mbpp_sanitized": "sanitized-mbpp.json",
    "humaneval": "HumanEval.jsonl.gz",
}
COUNTS = {"mbpp": 974, "mbpp_sanitized": 427, "humaneval": 164}


@pytest.mark.parametrize("name", list(FILES))
def test_reference_solutions_score_one(name: str, data_dir: Path, tmp_path: Path) -> None:
    tasks = load_benchmark(name, path=data_dir / FILES[name])
    assert len(tasks) == COUNTS[name]
    samples = [{"task_id": t.task_id, "completion": t.reference_solution} for t in tasks]
    # Mbpp/123's reference needs ~2.2 s of CPU (over 30 s of wall clock next to other heavy
    # jobs on 2 shared cores): a generous timeout keeps this test about
    # program assembly and verdicts, not about how loaded the machine is.
    summary = evaluate_samples(
        tasks, samples, ks=[1], timeout=90.0, output_dir=tmp_path, progress=False
    )
    failures = [
        (record["task_id"], record["status"], record["detail"])
        for record in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())
        if not record["passed"]
    ]
    assert not failures, failures[:10]
    assert summary.pass_at_k == {"pass@1": 1.0}
    assert summary.counts["passed"] == COUNTS[name]


@pytest.mark.parametrize("name", list(FILES))
def test_wrong_solutions_score_zero(name: str, data_dir: Path) -> None:
    # Every 8th task gets the next task's reference: real, runnable, plausible and wrong.
    tasks = load_benchmark(name, path=data_dir / FILES[name])
    chosen = tasks[::8]
    samples = [
        {
            "task_id": task.task_id,
            "completion": tasks[(tasks.index(task) + 1) % len(tasks)].reference_solution,
        }
        for task in chosen
    ]
    summary = evaluate_samples(chosen, samples, ks=[1], progress=False)
    assert summary.pass_at_k == {"pass@1": 0.0}
    assert summary.counts["passed"] == 0 and summary.counts["error"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FILES))
def test_trusted_tests_keep_every_verdict_of_wrong_solutions(name: str, data_dir: Path) -> None:
    # Every task gets the next task's reference, judged as one plain program and as a
    # SandboxProgram: the trusted run must agree on every single verdict.
    tasks = load_benchmark(name, path=data_dir / FILES[name])
    completions = [tasks[(i + 1) % len(tasks)].reference_solution for i in range(len(tasks))]
    plain = run_programs(
        [build_program(t, c) for t, c in zip(tasks, completions)], timeout=30.0, progress=False
    )
    trusted = run_programs(
        [SandboxProgram(*program_parts(t, c)) for t, c in zip(tasks, completions)],
        timeout=30.0,
        progress=False,
    )
    differ = [
        (task.task_id, a.status, b.status, b.detail)
        for task, a, b in zip(tasks, plain, trusted)
        if a.status != b.status
    ]
    assert not differ, differ[:10]
    assert not [r for r in trusted if r.status == "error"]
