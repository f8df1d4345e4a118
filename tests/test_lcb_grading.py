"""Test output prediction and code execution answers, graded by parsing, never by eval."""

from __future__ import annotations

import pytest

from hrm_codegen.data.lcb import CodeExecutionProblem, TestOutputProblem
from hrm_codegen.evaluation.lcb.grading import (
    asserted_value,
    grade_execution,
    grade_testoutput,
    literal_value,
)

SPLIT = TestOutputProblem(
    "3100/1", "q", "class Solution: ...", "splitDigits", '"000111"\n3', "[0, 111]"
)
WRAP = CodeExecutionProblem("sample_0", "def f(s):\n    return s + s\n", "f(s = 'ab')", "'abab'")
BIG = CodeExecutionProblem(
    "sample_1", "...", "g(n = 100)", "[1267650600228229401496703205376, 2, 25.0]"
)


@pytest.mark.parametrize(
    "answer, status",
    [
        ("[0, 111]", "passed"),
        ("[0, 111]\n", "passed"),
        ('assert splitDigits("000111", 3) == [0, 111]', "passed"),
        ("# the pieces\nassert splitDigits('000111', 3) == [0, 111]\nmore text", "passed"),
        ("[0, 111.0]", "passed"),  # equal values (Python equality, as LCB)
        ("[0, 11]", "wrong_answer"),
        ("(0, 111)", "wrong_answer"),  # a tuple is not the JSON list (as LCB)
        ("['000', '111']", "wrong_answer"),
        ("[0] + [111]", "invalid_answer"),  # needs evaluation: LCB would eval it
        ("__import__('os').system('echo hi')", "invalid_answer"),
        ("[0, 111", "invalid_answer"),
        ("", "invalid_answer"),
    ],
)
def test_testoutput_answers(answer: str, status: str) -> None:
    assert grade_testoutput(SPLIT, answer).status == status


@pytest.mark.parametrize(
    "answer, problem, status",
    [
        ("'abab'", WRAP, "passed"),
        ('"abab"\n[/ANSWER]', WRAP, "passed"),
        ("assert f(s = 'ab') == 'abab'", WRAP, "passed"),  # the assertion rewritten in full
        ("'abab' [/ANSWER] trailing", WRAP, "passed"),
        ("'ab'", WRAP, "wrong_answer"),
        ("f(s = 'ab')", WRAP, "invalid_answer"),  # repeating the call is refused, as in LCB
        ("'ab' * 2", WRAP, "invalid_answer"),
        ("[1267650600228229401496703205376, 2, 25.0]", BIG, "passed"),
        ("[1267650600228229401496703205377, 2, 25.0]", BIG, "wrong_answer"),
        ("[2 ** 100, 2, 25.0]", BIG, "invalid_answer"),
    ],
)
def test_execution_answers(answer: str, problem: CodeExecutionProblem, status: str) -> None:
    assert grade_execution(problem, answer).status == status


def test_causes_and_parsing_helpers() -> None:
    assert grade_testoutput(SPLIT, "[0, 111").failure_cause == "syntax_error"
    assert grade_testoutput(SPLIT, "[0] * 2").failure_cause == "other_exception"
    assert grade_testoutput(SPLIT, "[1]").failure_cause == "wrong_answer"
    assert grade_testoutput(SPLIT, "[0, 111]").failure_cause is None
    assert asserted_value("assert f(1) == [1, 2]") == "[1, 2]"
    assert asserted_value("assert f(1) != 2") is None
    assert asserted_value("x = 1") is None
    assert literal_value("-3.5")[:2] == (True, -3.5)
    assert literal_value("x" * 200_000)[0] is False
