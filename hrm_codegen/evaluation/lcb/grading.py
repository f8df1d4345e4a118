"""Grading test-output-prediction and code-execution answers without running model text.

LCB `eval`s the model's answer (test output prediction) or executes `assert output == answer`
(code execution). Here the answer is parsed with `ast` and must be a literal
(`ast.literal_eval`: numbers, strings, bytes, containers, True/False/None, negation): a value
that needs code to compute (`[0] * 3`, `float("inf")`, a call) is graded `invalid_answer`.
For honest literal answers the verdicts agree with LCB's; only non-literal answers that
happen to evaluate to the right value differ (LCB passes them, we do not).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from hrm_codegen.data.lcb import CodeExecutionProblem, TestOutputProblem

MAX_ANSWER_CHARS = 100_000
PREDICTION_VERDICTS = ("passed", "wrong_answer", "invalid_answer")


@dataclass(frozen=True)
class Grade:
    status: str  # one of PREDICTION_VERDICTS
    detail: str = ""
    answer: str = ""  # the expression that was compared

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failure_cause(self) -> str | None:
        if self.passed:
            return None
        if self.status == "wrong_answer":
            return "wrong_answer"
        return "syntax_error" if self.detail.startswith("SyntaxError") else "other_exception"


def literal_value(expression: str) -> tuple[bool, Any, str]:
    """(ok, value, reason): the value of a Python literal written as text."""
    if len(expression) > MAX_ANSWER_CHARS:
        return False, None, f"answer longer than {MAX_ANSWER_CHARS} characters"
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        return False, None, f"SyntaxError: {error.msg}"
    try:
        return True, ast.literal_eval(tree), ""
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:
        return False, None, f"not a literal ({type(error).__name__}: {str(error)[:100]})"


def asserted_value(statement: str) -> str | None:
    """The right-hand side of `assert <call> == <value>`, as written (None: not such an assert)."""
    try:
        tree = ast.parse(statement.strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    test = tree.body[0].test
    if (
        not isinstance(test, ast.Compare)
        or len(test.ops) != 1
        or not isinstance(test.ops[0], ast.Eq)
    ):
        return None
    return ast.get_source_segment(statement.strip(), test.comparators[0])


def _answer_expression(answer: str) -> str:
    """The compared expression: the RHS of the first `assert` line, else the first line.

    Base-model prompts end in `assert f(...) == `, so a completion is usually the value itself;
    a model that rewrites the whole assertion is understood too.
    """
    text = answer.split("[/ANSWER]")[0]
    lines = [
        line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        if line.lstrip().startswith("assert"):
            value = asserted_value(line)
            return value if value is not None else line.strip()
    return lines[0].strip() if lines else ""


def _compare(expression: str, expected: Any) -> Grade:
    if not expression:
        return Grade("invalid_answer", "empty answer", expression)
    ok, value, reason = literal_value(expression)
    if not ok:
        return Grade("invalid_answer", reason, expression)
    if value == expected:
        return Grade("passed", "", expression)
    return Grade("wrong_answer", f"{expression[:200]} != {expected!r:.200}", expression)


def grade_testoutput(problem: TestOutputProblem, answer: str) -> Grade:
    """The predicted output of `function_name(input)` against the JSON-decoded expected one."""
    expected = json.loads(problem.output)
    return _compare(_answer_expression(answer), expected)


def grade_execution(problem: CodeExecutionProblem, answer: str) -> Grade:
    """The predicted value of `input` against the expected literal (`output`).

    As LCB: the text after `==` (when the model wrote the assertion) up to `[/ANSWER]` or the
    end of the line; an answer that repeats the call is refused (it would just call the code).
    """
    text = answer
    if "==" in text:
        text = text.split("==", 1)[1]
    text = text.split("[/ANSWER]")[0] if "[/ANSWER]" in text else text.split("\n")[0]
    text = text.strip()
    if problem.input.strip() and problem.input.strip() in text:
        return Grade("invalid_answer", "the answer repeats the call instead of its value", text)
    ok, expected, reason = literal_value(problem.output)
    if not ok:
        raise ValueError(f"code execution record {problem.task_id}: output is {reason}")
    return _compare(text, expected)


def grade_answer(problem: TestOutputProblem | CodeExecutionProblem, answer: str) -> Grade:
    """A prediction graded by its problem's kind: a test output (`grade_testoutput`) or a code
    execution (`grade_execution`, also the exec benchmark's)."""
    if isinstance(problem, TestOutputProblem):
        return grade_testoutput(problem, answer)
    return grade_execution(problem, answer)
