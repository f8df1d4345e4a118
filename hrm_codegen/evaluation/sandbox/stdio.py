"""Programs judged on standard input and output (LiveCodeBench-style), in the same sandbox.

One sandbox per job: the bootstrap compiles the program once, then for each test forks a fresh
child with that test's input as its stdin (a real file descriptor, not a mocked `input`), and
sends back the child's exit status, stdout and stderr in a frame. The expected outputs never
enter the sandbox: each frame is compared here, with the job's `compare`, as it arrives, and
the sandbox is stopped at the first failing test. Forking per test costs ~1 ms where a fresh
sandbox per test costs ~30-50 ms, and each test still starts from the same untouched process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hrm_codegen.evaluation.sandbox.limits import DEFAULT_MEMORY_MB, STARTED, STDERR_TAIL_LINES
from hrm_codegen.evaluation.sandbox.pool import run_in_pool
from hrm_codegen.evaluation.sandbox.runner import (
    ExecResult,
    Launcher,
    Observation,
    _Tail,
    execute,
    judge,
)

STDIO_STATUSES = ("passed", "wrong_answer", "runtime_error", "timeout", "error")
GOT_BYTES = 2048  # how much of a failing test's stdout is kept in the result
MAX_TOTAL_TIMEOUT_S = 300.0  # the default whole-sample cap


@dataclass(frozen=True)
class StdioJob:
    """An untrusted program and its tests: one stdin text and expected stdout per test."""

    source: str
    inputs: tuple[str, ...]
    expected: tuple[str, ...]
    compare: Callable[[str, str], bool]  # (got, expected) -> equal; runs outside the sandbox

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise TypeError(f"StdioJob.source is {type(self.source).__name__}; give a str")
        if not isinstance(self.inputs, tuple) or not isinstance(self.expected, tuple):
            raise TypeError("StdioJob.inputs and .expected must be tuples of str (wrap lists)")
        if len(self.inputs) != len(self.expected):
            raise ValueError(
                f"StdioJob has {len(self.inputs)} inputs but {len(self.expected)} expected "
                "outputs; give one expected stdout per input"
            )
        if not all(isinstance(text, str) for text in self.inputs + self.expected):
            raise TypeError("StdioJob.inputs and .expected must hold only str")
        if not callable(self.compare):
            raise TypeError("StdioJob.compare must be a function (got, expected) -> bool")


@dataclass(frozen=True)
class StdioResult:
    """The verdict on one StdioJob; `failed_test` is the first failing test's index."""

    status: str  # one of STDIO_STATUSES
    failed_test: int | None
    tests_run: int
    got: str
    stderr_tail: str
    duration: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class _Frames(_Tail):
    """The bootstrap's stdout: frames parsed and compared as they arrive, stop at a failure."""

    def __init__(self, job: StdioJob) -> None:
        super().__init__()
        self.job = job
        self.pending = bytearray()
        self.passed = 0  # tests passed, in order
        self.failure: StdioResult | None = None
        self.broken = ""

    def add(self, data: bytes) -> None:
        if not self.first:
            self.first = data[:1]
            data = data[1:] if self.first == STARTED else data
        if self.first != STARTED:
            super().add(data)
            return
        self.pending += data
        self.total = len(self.pending)
        while self.failure is None and not self.broken:
            end = self.pending.find(b"\n")
            if end < 0:
                return
            try:
                index, status, code, out_size, err_size = self.pending[:end].decode().split()
                index, code, out_size, err_size = (
                    int(index),
                    int(code),
                    int(out_size),
                    int(err_size),
                )
            except ValueError:
                self.broken = "the sandbox sent an unreadable frame"
                return
            if len(self.pending) < end + 1 + out_size + err_size:
                return
            body = bytes(self.pending[end + 1 : end + 1 + out_size + err_size])
            del self.pending[: end + 1 + out_size + err_size]
            self.total = len(self.pending)
            if index != self.passed or status not in ("ok", "error", "timeout"):
                self.broken = f"the sandbox sent frame {index} ({status}) out of order"
                return
            self._judge_test(index, status, code, body[:out_size], body[out_size:])

    def _judge_test(self, index: int, status: str, code: int, out: bytes, err: bytes) -> None:
        got = out.decode("utf-8", errors="replace")
        stderr_tail = "\n".join(
            err.decode("utf-8", errors="replace").splitlines()[-STDERR_TAIL_LINES:]
        )

        def fail(verdict: str, detail: str) -> None:
            self.failure = StdioResult(
                verdict, index, index + 1, got[:GOT_BYTES], stderr_tail, 0.0, detail
            )

        if status == "timeout":
            fail("timeout", f"test {index} timed out")
        elif status == "error":
            last = next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
            fail("runtime_error", f"test {index}: {last.strip() or f'exit status {code}'}")
        else:
            try:
                equal = bool(self.job.compare(got, self.job.expected[index]))
            except Exception as error:  # a bug in the caller's compare, not the program's
                fail("error", f"compare raised {error!r} on test {index}")
                return
            if equal:
                self.passed += 1
            else:
                fail("wrong_answer", f"test {index}: output differs from the expected one")

    @property
    def stop(self) -> bool:
        return self.failure is not None or bool(self.broken) or self.passed == len(self.job.inputs)


def _stdio_spec(job: StdioJob, timeout_per_test: float) -> tuple[bytes, list[bytes]]:
    encode = lambda text: text.encode("utf-8", errors="surrogatepass")  # noqa: E731
    parts = [encode(job.source), *(encode(text) for text in job.inputs)]
    return f"stdio {timeout_per_test!r}".encode(), parts


def _stdio_verdict(job: StdioJob, frames: _Frames, seen: Observation | ExecResult) -> StdioResult:
    if isinstance(seen, ExecResult):  # the sandbox could not be started
        return StdioResult("error", None, 0, "", "", 0.0, seen.detail)
    duration = seen.duration
    if frames.failure is not None:
        failure = frames.failure
        return StdioResult(
            failure.status,
            failure.failed_test,
            failure.tests_run,
            failure.got,
            failure.stderr_tail,
            duration,
            failure.detail,
        )
    if frames.passed == len(job.inputs):
        return StdioResult("passed", None, frames.passed, "", "", duration)
    verdict = judge(job.source, seen, duration)
    if frames.broken or verdict.status == "error":
        detail = frames.broken or verdict.detail
        return StdioResult("error", None, frames.passed, "", verdict.stderr_tail, duration, detail)
    if seen.killed_for == "timeout":
        detail = f"the whole sample timed out after {frames.passed} test(s)"
        return StdioResult(
            "timeout", frames.passed, frames.passed, "", verdict.stderr_tail, duration, detail
        )
    # The sandbox died between tests: memory or process limits, output flood.
    return StdioResult(
        "runtime_error",
        frames.passed,
        frames.passed + 1,
        "",
        verdict.stderr_tail,
        duration,
        f"test {frames.passed}: {verdict.detail}",
    )


def run_stdio_programs(
    jobs: Sequence[StdioJob],
    *,
    timeout_per_test: float = 6.0,
    total_timeout: float | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int | None = None,
    backend: str = "auto",
    on_result: Callable[[int, StdioResult], None] | None = None,
    progress: bool = True,
    desc: str = "executing",
) -> list[StdioResult]:
    """Judge each job in its own sandbox, `workers` at a time; one StdioResult per job, in order.

    Tests run in order and stop at the first failure: a non-zero exit or exception is a
    runtime_error, a test over `timeout_per_test` a timeout, an output `compare` rejects a
    wrong_answer. `total_timeout` caps a whole job; by default (as LiveCodeBench)
    (timeout_per_test + 1) * tests + 5 s, at most MAX_TOTAL_TIMEOUT_S.
    """
    if isinstance(jobs, StdioJob) or not isinstance(jobs, Sequence):
        raise TypeError("jobs must be a sequence of StdioJob, not a single job")
    for index, job in enumerate(jobs):
        if not isinstance(job, StdioJob):
            raise TypeError(f"jobs[{index}] is {type(job).__name__}, expected StdioJob")
    if not timeout_per_test > 0:
        raise ValueError(f"timeout_per_test={timeout_per_test}: give seconds per test, > 0")
    if total_timeout is not None and not total_timeout > 0:
        raise ValueError(f"total_timeout={total_timeout}: give seconds per job, > 0, or None")

    def run(job: StdioJob, launcher: Launcher, running: threading.Semaphore) -> StdioResult:
        if not job.inputs:
            return StdioResult("passed", None, 0, "", "", 0.0, "no tests")
        total = total_timeout
        if total is None:
            total = min((timeout_per_test + 1) * len(job.inputs) + 5, MAX_TOTAL_TIMEOUT_S)
        frames = _Frames(job)
        seen = execute(
            _stdio_spec(job, timeout_per_test),
            launcher,
            total,
            running,
            stdout=frames,
            stop=lambda: frames.stop,
        )
        return _stdio_verdict(job, frames, seen)

    def evaluator_error(message: str) -> StdioResult:
        return StdioResult("error", None, 0, "", "", 0.0, message)

    return run_in_pool(
        jobs,
        run,
        evaluator_error,
        memory_mb=memory_mb,
        workers=workers,
        backend=backend,
        on_result=on_result,
        progress=progress,
        desc=desc,
    )
