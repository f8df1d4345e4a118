"""LCB problems as sandbox work, and sandbox results as LCB verdicts.

Stdin problems become `StdioJob`s (the program runs as a real process, each test's input piped to
its stdin, compared outside the sandbox); functional problems become `SandboxProgram`s whose
trusted test code calls the candidate once per test with the JSON-decoded arguments and asserts
the result equals the JSON-decoded expected value (`class Solution` is instantiated when the code
defines it, as LCB does; a tuple result counts as a list, as in LCB).

Like LCB's grader, the candidate runs after a preamble that imports the standard modules LCB's
grader imports (LeetCode starter code uses `List`/`Optional` without importing them) and raises
the recursion limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hrm_codegen.data.lcb import LCBProblem
from hrm_codegen.evaluation.failures import classify_failure

TRUNCATE_CHARS = 300  # as LCB: half the head, half the tail
LCB_VERDICTS = ("passed", "wrong_answer", "runtime_error", "timeout", "error")
_MODULES = (
    "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "typing",
)  # fmt: skip
PREAMBLE = (
    "".join(f"from {name} import *\n" for name in _MODULES)
    + "from builtins import *\n"
    + f"import {', '.join(_MODULES)}\n"
    + "sys.setrecursionlimit(50000)\n"
)
WRONG_ANSWER_MARK = "lcb wrong answer on test "
TIMEOUT_MARK = "lcb test time limit exceeded"
TEST_MARK = "[lcb test "
_WRONG = re.compile(re.escape(WRONG_ANSWER_MARK) + r"(\d+): got (.*)$", re.DOTALL)
_TEST = re.compile(re.escape(TEST_MARK) + r"(\d+)\]")


def truncate(text: str, limit: int = TRUNCATE_CHARS) -> str:
    """At most `limit` characters, keeping the head and the tail (LCB's truncation)."""
    if len(text) <= limit:
        return text
    return text[: limit // 2] + "...(truncated) ..." + text[-limit // 2 :]


def candidate_source(code: str) -> str:
    """The program that runs: LCB's import preamble, then the model's code."""
    return PREAMBLE + code


def defines_solution_class(code: str) -> bool:
    """LCB's test: LeetCode answers wrap the function in `class Solution`."""
    return "class Solution" in code


def functional_tests(problem: LCBProblem, code: str, timeout_per_test: float = 6.0) -> str:
    """Trusted test code for a call-based problem: one plain assert per test, in order.

    Before each test a marker goes to stderr, so a runtime error or timeout can be traced to
    its test; a wrong answer's assertion message names the test and what was returned. Each
    call runs under a `timeout_per_test` alarm, as in LCB (the handler is set again before each
    test, so a candidate cannot disarm it for later tests); the sandbox's whole-program limit
    still bounds a candidate that swallows the alarm.
    """
    if problem.func_name is None:
        raise ValueError(f"{problem.question_id} has stdin tests, not functional ones")
    target = (
        f"Solution().{problem.func_name}" if defines_solution_class(code) else problem.func_name
    )
    lines = [
        "import json as _lcb_json",
        "import signal as _lcb_signal",
        "import sys as _lcb_sys",
        "",
        "def _lcb_over(signum, frame):",
        f"    raise TimeoutError({TIMEOUT_MARK!r})",
        "",
        "def _lcb_shown(value):",
        "    try:",
        "        text = repr(value)",
        "    except BaseException:",
        "        text = '<unprintable>'",
        f"    limit = {TRUNCATE_CHARS}",
        "    if len(text) <= limit:",
        "        return text",
        "    return text[: limit // 2] + '...(truncated) ...' + text[-limit // 2 :]",
        "",
        f"_lcb_call = {target}",
    ]
    for index, test in enumerate(problem.tests):
        lines += [
            f"_lcb_sys.stderr.write({TEST_MARK + str(index) + ']'!r} + '\\n')",
            "_lcb_sys.stderr.flush()",
            f"_lcb_args = [_lcb_json.loads(line) for line in {test.input!r}.split('\\n')]",
            "_lcb_signal.signal(_lcb_signal.SIGALRM, _lcb_over)",
            f"_lcb_signal.setitimer(_lcb_signal.ITIMER_REAL, {float(timeout_per_test)!r})",
            "_lcb_got = _lcb_call(*_lcb_args)",
            "_lcb_signal.setitimer(_lcb_signal.ITIMER_REAL, 0)",
            "if type(_lcb_got) is tuple:",
            "    _lcb_got = list(_lcb_got)",
            f"_lcb_expected = _lcb_json.loads({test.output!r})",
            f"assert _lcb_got == _lcb_expected, {WRONG_ANSWER_MARK + str(index) + ': got '!r} "
            "+ _lcb_shown(_lcb_got)",
        ]
    return "\n".join(lines) + "\n"


def functional_program(problem: LCBProblem, code: str, timeout_per_test: float = 6.0) -> Any:
    """The `SandboxProgram` that checks `code` on a functional problem."""
    from hrm_codegen.evaluation.sandbox import SandboxProgram

    entry = "Solution" if defines_solution_class(code) else problem.func_name
    return SandboxProgram(
        candidate=candidate_source(code),
        tests=functional_tests(problem, code, timeout_per_test),
        entry_point=entry,
    )


def stdio_job(problem: LCBProblem, code: str, compare: Callable[[str, str], bool]) -> Any:
    """The `StdioJob` that runs `code` on every stdin test of `problem`."""
    from hrm_codegen.evaluation.sandbox import StdioJob

    return StdioJob(
        source=candidate_source(code),
        inputs=tuple(test.input for test in problem.tests),
        expected=tuple(test.output for test in problem.tests),
        compare=compare,
    )


@dataclass(frozen=True)
class Verdict:
    """One sample's LCB verdict; `failed_test` indexes `problem.tests` (public first)."""

    status: str  # one of LCB_VERDICTS
    failed_test: int | None = None
    detail: str = ""
    got: str = ""
    stderr_tail: str = ""
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def record(self, problem: LCBProblem) -> dict[str, Any]:
        """The results.jsonl fields: verdict, failing test's input/expected/got (truncated)."""
        line: dict[str, Any] = {
            "passed": self.passed,
            "status": self.status,
            "failed_test": self.failed_test,
            "detail": self.detail,
            "failure_cause": classify_failure(self.status, self.detail, self.stderr_tail),
            "duration": round(self.duration, 4),
            "difficulty": problem.difficulty,
        }
        if self.failed_test is not None and 0 <= self.failed_test < len(problem.tests):
            test = problem.tests[self.failed_test]
            line["input"] = truncate(test.input)
            line["expected"] = truncate(test.output)
        if self.status == "wrong_answer":
            line["got"] = truncate(self.got)
        if self.status == "runtime_error":
            line["stderr_tail"] = self.stderr_tail
        return line


def _last_marker(stderr: str) -> int | None:
    found = _TEST.findall(stderr)
    return int(found[-1]) if found else None


def _without_markers(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not _TEST.fullmatch(line.strip()))


def verdict_from_exec(result: Any) -> Verdict:
    """A functional program's `ExecResult` as an LCB verdict."""
    stderr = result.stderr_tail or ""
    test = _last_marker(stderr)
    clean = _without_markers(stderr)
    if result.status == "passed":
        return Verdict("passed", duration=result.duration)
    if result.status == "timeout":
        return Verdict("timeout", test, result.detail, duration=result.duration)
    if result.status == "error":
        return Verdict("error", None, result.detail, stderr_tail=clean, duration=result.duration)
    last = next((line for line in reversed(clean.splitlines()) if line.strip()), "")
    if TIMEOUT_MARK in last and last.lstrip().startswith("TimeoutError"):
        return Verdict("timeout", test, f"test {test}: {TIMEOUT_MARK}", duration=result.duration)
    candidates = [(last, False), (result.detail or "", True)]
    for text, from_detail in candidates:
        match = _WRONG.search(text)
        if match and text.lstrip().startswith("AssertionError"):
            got = match.group(2)
            if from_detail:  # the sandbox's detail appends " at line N: <source>"
                got = re.sub(r" at line \d+: .*$", "", got)
            return Verdict(
                "wrong_answer", int(match.group(1)), result.detail, got, clean, result.duration
            )
    return Verdict("runtime_error", test, result.detail, "", clean, result.duration)


def verdict_from_stdio(result: Any) -> Verdict:
    """A stdin program's `StdioResult` as an LCB verdict (the statuses already agree)."""
    status = result.status if result.status in LCB_VERDICTS else "error"
    return Verdict(
        status,
        result.failed_test if status != "passed" else None,
        result.detail,
        result.got if status == "wrong_answer" else "",
        result.stderr_tail,
        result.duration,
    )


def sample_timeout(problem: LCBProblem, timeout_per_test: float) -> float:
    """LCB's whole-sample cap: (per-test timeout + 1) x tests + 5 s."""
    return (timeout_per_test + 1) * len(problem.tests) + 5


def expected_json(text: str) -> Any:
    """JSON of an expected functional output (a clear error for a broken release file)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"expected output {truncate(text)!r} is not JSON ({error})") from None
