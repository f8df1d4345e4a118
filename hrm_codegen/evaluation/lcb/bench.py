"""Throughput of LCB stdin judging: samples/s of correct stdin programs, several tests each.

Each sample is a real process per program in the sandbox with every test's input piped to its
stdin, compared by LCB's rule: the cost an `lcb_codegeneration` run pays per sample.
"""

from __future__ import annotations

import time
from typing import Any

from hrm_codegen.evaluation.lcb.compare import lcb_outputs_equal
from hrm_codegen.evaluation.lcb.programs import candidate_source

# A correct answer to "print A_i + B_i for each of N pairs", and its tests.
PAIR_SUMS = (
    "n = int(input())\nfor _ in range(n):\n    a, b = map(int, input().split())\n    print(a + b)\n"
)


def _pair_sum_tests(count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    inputs, outputs = [], []
    for index in range(count):
        pairs = [(index * 7 + j, j * j - index) for j in range(1, index + 3)]
        inputs.append(f"{len(pairs)}\n" + "".join(f"{a} {b}\n" for a, b in pairs))
        outputs.append("".join(f"{a + b}\n" for a, b in pairs))
    return tuple(inputs), tuple(outputs)


def bench_lcb_stdin(
    *,
    repeat: int = 50,
    tests_per_sample: int = 5,
    workers: int | None = None,
    timeout_per_test: float = 6.0,
    sandbox: str = "auto",
) -> dict[str, Any]:
    """One row like `evaluation.bench.benchmark_throughput`'s: `repeat` stdin samples of
    `tests_per_sample` tests each; `samples_per_s` is the headline."""
    from hrm_codegen.evaluation.sandbox import (
        StdioJob,
        default_workers,
        resolve_backend,
        run_stdio_programs,
    )

    if repeat < 1 or tests_per_sample < 1:
        raise ValueError(f"repeat={repeat}, tests_per_sample={tests_per_sample}: both must be >= 1")
    workers = workers or default_workers()
    backend = resolve_backend(sandbox)
    inputs, outputs = _pair_sum_tests(tests_per_sample)
    job = StdioJob(candidate_source(PAIR_SUMS), inputs, outputs, lcb_outputs_equal)
    start = time.perf_counter()
    results = run_stdio_programs(
        [job] * repeat,
        timeout_per_test=timeout_per_test,
        workers=workers,
        backend=backend,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return {
        "harness": f"lcb stdin ({backend})",
        "round": 1,
        "workers": workers,
        "samples": repeat,
        "passed": sum(result.status == "passed" for result in results),
        "seconds": seconds,
        "samples_per_s": repeat / seconds,
        "tests_per_sample": tests_per_sample,
    }
