"""Failure causes from sandbox verdicts, for every benchmark's summary."""

from __future__ import annotations

import pytest

from hrm_codegen.evaluation.failures import (
    FAILURE_CAUSES,
    classify_failure,
    classify_record,
    count_failure_causes,
    exception_name,
)


@pytest.mark.parametrize(
    "status, detail, stderr, cause",
    [
        ("passed", "", "", None),
        ("failed", "SyntaxError: invalid syntax at line 3: def f(:", "", "syntax_error"),
        ("failed", "IndentationError: unexpected indent", "", "syntax_error"),
        ("failed", "NameError: name 'x' is not defined at line 2: x", "", "name_error"),
        ("failed", "UnboundLocalError: cannot access local variable 'y'", "", "name_error"),
        ("failed", "AssertionError at line 12: assert f(3) == 4", "", "wrong_answer"),
        ("wrong_answer", "test 0: output differs", "", "wrong_answer"),
        ("failed", "ZeroDivisionError: division by zero", "", "other_exception"),
        ("failed", "json.decoder.JSONDecodeError: Expecting value", "", "other_exception"),
        ("failed", "exited with status 0 before the end of the program", "", "other_exception"),
        ("failed", "killed: out of memory (memory cgroup limit)", "", "memory"),
        ("failed", "MemoryError", "", "memory"),
        ("runtime_error", "", "Traceback...\nNameError: name 'q' is not defined", "name_error"),
        ("timeout", "timed out after 5 s (wall clock)", "", "timeout"),
        ("error", "the sandbox did not start: ...", "", "sandbox_error"),
    ],
)
def test_causes(status: str, detail: str, stderr: str, cause: str | None) -> None:
    assert classify_failure(status, detail, stderr) == cause


def test_counts_cover_every_cause_and_use_recorded_causes() -> None:
    records = [
        {"status": "passed"},
        {"status": "failed", "detail": "NameError: name 'x' is not defined"},
        {"status": "failed", "detail": "ignored", "failure_cause": "memory"},
        {"status": "timeout"},
    ]
    counts = count_failure_causes(records)
    assert list(counts) == list(FAILURE_CAUSES)
    assert counts["name_error"] == counts["memory"] == counts["timeout"] == 1
    assert sum(counts.values()) == 3
    assert classify_record({"status": "failed", "detail": "TabError: x"}) == "syntax_error"
    assert exception_name("builtins.KeyError: 3") == "KeyError"
    assert exception_name("exit status 3") is None
