"""Many programs at a time: `run_programs`, `workers` sandboxes running at once, each program in a
fresh sandbox or a fresh child of its worker's fork server (the mode), results in order.

Built on runner.py (one program) and forkserver.py (one sandbox per worker); neither imports
this module.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm.auto import tqdm

from hrm_codegen.evaluation.sandbox.forkserver import (
    AUTO,
    ForkServerPool,
    choose_mode,
    resolve_mode,
)
from hrm_codegen.evaluation.sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
from hrm_codegen.evaluation.sandbox.runner import (
    ExecResult,
    Launcher,
    SandboxProgram,
    SandboxWarning,
    make_launcher,
    resolve_backend,
    run_one,
)

ERROR_ATTEMPTS = 3  # runs of one item whose result is an evaluator-side `error`


def default_workers() -> int:
    """One program per available core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_programs(
    programs: Sequence[str | SandboxProgram],
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int | None = None,
    backend: str = "auto",
    *,
    on_result: Callable[[int, ExecResult], None] | None = None,
    progress: bool = True,
    desc: str = "executing",
    mode: str | None = None,
) -> list[ExecResult]:
    """Run each program in its own sandboxed interpreter, `workers` at a time.

    `mode`: `process` starts a fresh sandbox per program; `fork` keeps one sandbox per worker
    whose trusted server forks a fresh child per program (see forkserver.py; `bwrap` backend
    only, `process` otherwise); `auto` the one timed faster on this machine, once per process
    (`forkserver.choose_mode`). None: $HRM_CODEGEN_SANDBOX_MODE, else `auto`.
    A str is one program, run as is; a SandboxProgram runs its tests against pristine built-ins
    and modules, comparing only trusted values (see SandboxProgram).
    Returns one ExecResult per program, in order. `on_result(index, result)` is called in the
    calling thread as each program finishes, so callers can persist results as they come.
    `timeout` is the wall-clock time of one program (from its start, not its queueing).
    """
    if not isinstance(programs, Sequence) or isinstance(programs, str):
        raise TypeError("programs must be a sequence of program strings, not a single string")
    for index, program in enumerate(programs):
        if not isinstance(program, (str, SandboxProgram)):
            raise TypeError(
                f"programs[{index}] is {type(program).__name__}, expected str or SandboxProgram"
            )
    if not timeout > 0:
        raise ValueError(f"timeout={timeout}: give the wall-clock limit in seconds, > 0")

    def run(program: str | SandboxProgram, launcher: Launcher, running: threading.Semaphore):
        return run_one(program, launcher, timeout, running)

    def evaluator_error(message: str) -> ExecResult:
        return ExecResult("error", None, "", 0.0, message)

    return run_in_pool(
        programs,
        run,
        evaluator_error,
        memory_mb=memory_mb,
        workers=workers,
        backend=backend,
        on_result=on_result,
        progress=progress,
        desc=desc,
        mode=_resolve_mode(mode, backend, memory_mb) if programs else "process",
    )


def _resolve_mode(mode: str | None, backend: str, memory_mb: int) -> str:
    """`fork` or `process`: as asked, else as timed on this machine (`auto`)."""
    chosen = resolve_mode(mode)
    if chosen == AUTO:
        chosen = choose_mode(resolve_backend(backend), memory_mb).mode
    return chosen


def run_in_pool(
    items: Sequence,
    run: Callable,
    evaluator_error: Callable[[str], object],
    *,
    memory_mb: int,
    workers: int | None,
    backend: str,
    on_result: Callable | None,
    progress: bool,
    desc: str,
    mode: str = "process",
) -> list:
    """`run(item, launcher, running)` for each item, `workers` at a time; results in order.

    `on_result(index, result)` runs in the calling thread as each item finishes; an exception
    inside `run` (an evaluator bug) becomes `evaluator_error(message)` for that item only.
    A result with status `error` (the evaluator, not the program, failed: the sandbox did not
    start, the fork server vanished) is run again, up to ERROR_ATTEMPTS times in all: every run
    is in a fresh sandbox, so a rerun cannot see the first, and one start-up lost to a loaded
    machine must not count as a model's failure. The last attempt's result is kept.
    """
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise ValueError(f"memory_mb={memory_mb}: give at least 64 MiB (default 4096)")
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers}: give a positive number of parallel programs")
    backend = resolve_backend(backend)
    if not items:
        return []
    launcher = make_launcher(backend, memory_mb, workers)
    if mode == "fork" and backend == "bwrap":
        launcher.fork_servers = ForkServerPool(launcher, workers)
    if os.geteuid() == 0 and not (launcher.cgroups and launcher.cgroups.limits_processes):
        warnings.warn(
            "running as root without a writable pids cgroup: RLIMIT_NPROC does not apply to "
            "root, so a fork bomb is only stopped by the timeout",
            SandboxWarning,
            stacklevel=3,
        )
    results: list = [None] * len(items)
    # While `workers` programs run, up to 2 x workers others start their sandbox or tear it down
    # (mostly waiting on the kernel): start-up latency hides behind other programs' execution.
    running = threading.BoundedSemaphore(workers)
    pool = ThreadPoolExecutor(max_workers=3 * workers, thread_name_prefix="sandbox")
    bar = tqdm(total=len(items), desc=desc, unit="prog", disable=not progress)
    attempts = [1] * len(items)

    def attempt(index: int):
        try:
            return run(items[index], launcher, running)
        except Exception as error:  # an evaluator bug must not lose the other results
            return evaluator_error(f"evaluator error: {error!r}")

    try:
        pending = {pool.submit(attempt, index): index for index in range(len(items))}
        while pending:
            future = next(as_completed(pending))
            index = pending.pop(future)
            result = future.result()
            if getattr(result, "status", None) == "error" and attempts[index] < ERROR_ATTEMPTS:
                attempts[index] += 1
                pending[pool.submit(attempt, index)] = index
                continue
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            bar.update(1)
    finally:
        # On Ctrl-C or a failing callback, programs not started yet are dropped; running ones
        # end within their timeout.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if launcher.fork_servers is not None:
            launcher.fork_servers.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()
            atexit.unregister(launcher.cgroups.close)
    return [r for r in results if r is not None]


def run_program(
    program: str | SandboxProgram,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    backend: str = "auto",
    mode: str | None = None,
) -> ExecResult:
    """One program; see `run_programs`."""
    return run_programs([program], timeout, memory_mb, 1, backend, progress=False, mode=mode)[0]
