"""Stdin/stdout programs (LiveCodeBench style): real stdin per test, comparison outside, verdicts."""

from __future__ import annotations

import threading

import pytest

from hrm_codegen.evaluation.sandbox import (
    STDIO_STATUSES,
    StdioJob,
    StdioResult,
    bwrap_status,
    run_stdio_programs,
)

BACKENDS = [
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(bwrap_status()[0] is None, reason="bubblewrap cannot run here"),
    ),
    "none-unsafe",
]


def tokens_equal(got: str, expected: str) -> bool:
    return got.split() == expected.split()


DOUBLE = "n = int(input())\nprint(2 * n)\n"
JOBS = {
    "passes": StdioJob(DOUBLE, ("3\n", "5\n", "-1\n"), ("6\n", "10\n", "-2\n"), tokens_equal),
    "wrong_second": StdioJob(DOUBLE, ("3\n", "5\n", "7\n"), ("6\n", "11\n", "14\n"), tokens_equal),
    "crash_first": StdioJob(
        "import sys\nraise ValueError(sys.stdin.read().strip())\n", ("boom\n",), ("x\n",),
        tokens_equal,
    ),
    "loops_on_second": StdioJob(
        "n = int(input())\nwhile n == 2:\n    pass\nprint(n)\n", ("1\n", "2\n", "3\n"),
        ("1\n", "2\n", "3\n"), tokens_equal,
    ),
    # exit(0) after a correct answer is fine for a stdio program; any other status is not.
    "exit_zero_after_answer": StdioJob(
        "print(input()[::-1])\nexit(0)\nprint('never')\n", ("abc\n",), ("cba\n",), tokens_equal
    ),
    "exit_three": StdioJob("print(1)\nraise SystemExit(3)\n", ("\n",), ("1\n",), tokens_equal),
    # Each test is a fresh process: state kept in memory by one test is gone in the next.
    "fresh_per_test": StdioJob(
        "import builtins\nbuiltins.seen = getattr(builtins, 'seen', 0) + 1\n"
        "print(builtins.seen, input())\n",
        ("a\n", "b\n", "c\n"), ("1 a\n", "1 b\n", "1 c\n"), tokens_equal,
    ),
    # stdin is a real file descriptor holding exactly the test's input, then end-of-file.
    "real_stdin": StdioJob(
        "import os, sys\ndata = os.read(0, 1 << 20)\nassert not os.isatty(0)\n"
        "assert sys.stdin.read() == ''\nsys.stdout.write(data.decode()[::-1])\n",
        ("xyz", "é\n"), ("zyx", "\né"), lambda got, expected: got == expected,
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def verdicts(request) -> dict[str, StdioResult]:
    results = run_stdio_programs(
        list(JOBS.values()), timeout_per_test=1.5, memory_mb=512, backend=request.param,
        progress=False,
    )  # fmt: skip
    return dict(zip(JOBS, results))


def test_verdicts_and_failing_test(verdicts: dict[str, StdioResult]) -> None:
    got = {name: (r.status, r.failed_test, r.tests_run) for name, r in verdicts.items()}
    assert got == {
        "passes": ("passed", None, 3),
        "wrong_second": ("wrong_answer", 1, 2),
        "crash_first": ("runtime_error", 0, 1),
        "loops_on_second": ("timeout", 1, 2),
        "exit_zero_after_answer": ("passed", None, 1),
        "exit_three": ("runtime_error", 0, 1),
        "fresh_per_test": ("passed", None, 3),
        "real_stdin": ("passed", None, 2),
    }
    assert all(r.status in STDIO_STATUSES for r in verdicts.values())


def test_failure_details(verdicts: dict[str, StdioResult]) -> None:
    wrong = verdicts["wrong_second"]
    assert wrong.got == "10\n" and "test 1" in wrong.detail
    crash = verdicts["crash_first"]
    assert crash.detail == "test 0: ValueError: boom"
    assert "Traceback" in crash.stderr_tail
    assert verdicts["exit_three"].detail == "test 0: exit status 3"
    # The per-test limit stopped the loop, not the whole-sample one.
    assert 1.5 <= verdicts["loops_on_second"].duration < 5
    assert verdicts["passes"].got == "" and verdicts["passes"].stderr_tail == ""


def test_compare_runs_here_on_strings_in_order() -> None:
    calls: list[tuple[str, str, str]] = []

    def compare(got: str, expected: str) -> bool:
        calls.append((threading.current_thread().name, got, expected))
        return got == expected

    job = StdioJob("print(input() + '!')\n", ("a", "b", "c"), ("a!\n", "x\n", "c!\n"), compare)
    (result,) = run_stdio_programs([job], timeout_per_test=2.0, memory_mb=256, progress=False)
    assert result.status == "wrong_answer" and result.failed_test == 1
    assert [(got, expected) for _, got, expected in calls] == [("a!\n", "a!\n"), ("b!\n", "x\n")]


def test_total_timeout_caps_the_sample() -> None:
    slow = StdioJob(
        "import time\ntime.sleep(0.6)\nprint(1)\n", ("",) * 10, ("1",) * 10, tokens_equal
    )
    (result,) = run_stdio_programs(
        [slow], timeout_per_test=2.0, total_timeout=1.5, memory_mb=256, progress=False
    )
    assert result.status == "timeout"
    assert result.failed_test in (1, 2) and result.tests_run == result.failed_test
    assert result.duration < 4


def test_results_come_back_in_order_with_callbacks() -> None:
    jobs = [StdioJob(f"print({i} * int(input()))\n", ("2",), (str(2 * i),), tokens_equal)
            for i in range(5)]  # fmt: skip
    seen: list[int] = []
    results = run_stdio_programs(
        jobs, workers=2, memory_mb=256, progress=False, on_result=lambda i, r: seen.append(i)
    )
    assert [r.status for r in results] == ["passed"] * 5
    assert sorted(seen) == list(range(5))
    assert run_stdio_programs([], progress=False) == []


def test_invalid_jobs_are_named() -> None:
    with pytest.raises(ValueError, match="2 inputs but 1 expected"):
        StdioJob("pass", ("a", "b"), ("a",), tokens_equal)
    with pytest.raises(TypeError, match="tuples"):
        StdioJob("pass", ["a"], ("a",), tokens_equal)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compare must be a function"):
        StdioJob("pass", ("a",), ("a",), "exact")  # type: ignore[arg-type]
    job = StdioJob("pass", ("a",), ("a",), tokens_equal)
    with pytest.raises(TypeError, match="not a single job"):
        run_stdio_programs(job)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_per_test=0"):
        run_stdio_programs([job], timeout_per_test=0)
