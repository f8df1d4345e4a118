"""The toy benchmark: generated tasks load like MBPP and their reference solutions pass."""

from __future__ import annotations

import pytest

from hrm_codegen.data import build_program, load_benchmark, normalize_task_id
from hrm_codegen.data.prompts import extract_completion, format_prompt, format_target
from hrm_codegen.data.toy_tasks import SPLITS, load_toy
from hrm_codegen.evaluation.sandbox import run_programs


def test_splits_partition_the_tasks_by_constant():
    every = load_benchmark("toy")
    by_split = {split: load_benchmark("toy", split) for split in SPLITS}
    ids = [t.task_id for split in SPLITS for t in by_split[split]]
    assert sorted(ids) == sorted(t.task_id for t in every) and len(set(ids)) == len(ids)
    assert len(every) == 29 and [len(by_split[s]) for s in SPLITS] == [23, 3, 3]
    assert {t.entry_point for t in by_split["validation"]} == {"plus_5", "times_5", "minus_5"}
    assert {t.entry_point for t in by_split["test"]} == {"plus_8", "times_8", "minus_8"}
    # a prefix of the train split covers every unary family and the first binary
    assert [t.entry_point for t in by_split["train"][:4]] == ["plus_2", "times_2", "minus_2", "add"]
    assert normalize_task_id("toy", 3) == "Toy/3" == every[2].task_id


def test_prompt_and_target_follow_the_mbpp_template():
    task = load_toy("test")[1]  # times_8
    assert format_prompt(task) == (
        '"""\nWrite a function times_8(x) that returns x times 8.\n'
        "assert times_8(1) == 8\nassert times_8(4) == 32\nassert times_8(10) == 80\n" + '"""\n'
    )
    assert format_target(task) == "def times_8(x):\n    return x * 8\n"
    generated = "def times_8(x):\n    return x * 8\n\nassert times_8(1) == 8"
    assert extract_completion(task, generated) == format_target(task)


def test_reference_solutions_pass_and_wrong_constants_fail():
    tasks = load_toy()[:8] + load_toy("test")  # every family once, and the test constant
    right = [build_program(t, t.reference_solution) for t in tasks]
    # the binaries swap an operator, the unaries change the constant
    wrong = [
        build_program(
            t,
            t.reference_solution.replace(t.entry_point.rsplit("_", 1)[-1] + "\n", "1\n")
            if "_" in t.entry_point
            else t.reference_solution.replace("(a, b)", "(b, a)", 1).replace("+", "-"),
        )
        for t in tasks
        if t.entry_point not in ("mul", "maximum", "minimum")  # symmetric in (a, b)
    ]
    results = run_programs(right + wrong, timeout=10, progress=False)
    assert all(r.passed for r in results[: len(right)]), [r.detail for r in results if not r.passed]
    assert not any(r.passed for r in results[len(right) :])


def test_unknown_split_is_named():
    with pytest.raises(ValueError, match="'dev'"):
        load_toy("dev")
