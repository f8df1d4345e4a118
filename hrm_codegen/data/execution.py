"""Run benchmark programs and report which pass: a plain, unsandboxed checker for trusted code.

Used to verify reference solutions and augmented training variants at build time, where the
code comes from the dataset itself. Model samples go through `hrm_codegen.evaluation.sandbox`.

Starting Python costs ~0.1 s, too much for thousands of programs, so each worker is one
subprocess that forks a fresh child per program: every program still gets its own process
(globals, recursion limit, `sys.exit`, stray prints cannot leak), at ~1 ms apiece.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# Runs inside the worker subprocess: reads a JSON list of programs on stdin, prints one JSON
# list of booleans. A child passes when the program runs to the end without raising.
_DRIVER = r"""
import json, os, signal, sys
programs, timeout = json.load(sys.stdin)
results = []
for program in programs:
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        signal.alarm(timeout)
        try:
            exec(compile(program, "<program>", "exec"), {"__name__": "__main__"})
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    results.append(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
sys.stdout.write(json.dumps(results))
"""


def _run_batch(programs: list[str], timeout: int) -> list[bool]:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", _DRIVER],
        input=json.dumps([programs, timeout]),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"program runner crashed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


def check_programs(
    programs: list[str], timeout: int = 10, workers: int | None = None, batch_size: int = 256
) -> list[bool]:
    """For each program, whether it runs to completion (all its asserts hold) within `timeout` s."""
    if os.name != "posix":
        raise OSError("check_programs needs os.fork (Linux/macOS)")
    if timeout < 1:
        raise ValueError(f"timeout={timeout}: use a whole number of seconds >= 1")
    workers = workers or min(4, os.cpu_count() or 1)
    # Several batches per worker, so one slow program does not leave the other workers idle.
    batch_size = max(1, min(batch_size, -(-len(programs) // (4 * workers))))
    batches = [programs[i : i + batch_size] for i in range(0, len(programs), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda batch: _run_batch(batch, timeout), batches)
    return [passed for batch_result in results for passed in batch_result]
