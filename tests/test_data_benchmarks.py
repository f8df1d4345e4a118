"""The real benchmarks from $HRM_CODEGEN_DATA_DIR: counts, splits, and every reference passing."""

from __future__ import annotations

import pytest

from hrm_codegen.data import build_program, load_benchmark
from hrm_codegen.data.execution import check_programs
from hrm_codegen.data.prompts import extract_completion, format_target, stop_sequences

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def all_tasks(data_dir):
    return {
        name: load_benchmark(name, path=data_dir)
        for name in ("mbpp", "mbpp_sanitized", "humaneval")
    }


def test_counts_and_splits(all_tasks, data_dir):
    assert {name: len(tasks) for name, tasks in all_tasks.items()} == {
        "mbpp": 974,
        "mbpp_sanitized": 427,
        "humaneval": 164,
    }
    sizes = {
        split: len(load_benchmark("mbpp", split=split, path=data_dir))
        for split in ("prompt", "test", "validation", "train")
    }
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert len(load_benchmark("mbpp_sanitized", split="test", path=data_dir)) == 257
    assert all(t.entry_point for tasks in all_tasks.values() for t in tasks)


def test_data_dir_env_loads_the_same_tasks(all_tasks, data_dir, monkeypatch):
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(data_dir))
    assert load_benchmark("mbpp_sanitized") == all_tasks["mbpp_sanitized"]
    assert load_benchmark("humaneval") == all_tasks["humaneval"]


def test_stop_sequences_never_cut_a_reference_target(all_tasks):
    for tasks in all_tasks.values():
        for task in tasks:
            target = format_target(task)
            assert extract_completion(task, target) == target, task.task_id


def _failing(tasks, programs):
    results = check_programs(programs, timeout=20, workers=2)
    assert len(results) == len(tasks) == 974 + 427 + 164
    return [f"{t.benchmark}:{t.task_id}" for t, ok in zip(tasks, results) if not ok]


def test_every_reference_solution_passes(all_tasks):
    """974 + 427 + 164 reference solutions, as the dataset ships them."""
    tasks = [task for name in ("mbpp", "mbpp_sanitized", "humaneval") for task in all_tasks[name]]
    assert _failing(tasks, [build_program(t, t.reference_solution) for t in tasks]) == []


@pytest.mark.slow
def test_every_training_target_passes_as_generated_output(all_tasks):
    """The same, for the normalised target text cut at a stop sequence, as a model sample is."""
    tasks = [task for name in ("mbpp", "mbpp_sanitized", "humaneval") for task in all_tasks[name]]
    programs = [
        build_program(t, extract_completion(t, format_target(t) + stop_sequences(t)[0]))
        for t in tasks
    ]
    assert _failing(tasks, programs) == []
