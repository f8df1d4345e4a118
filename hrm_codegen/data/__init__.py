"""Benchmarks (MBPP, HumanEval) as one task type, prompt templates, SFT and pretraining data."""

from __future__ import annotations

import os

from hrm_codegen.data.humaneval import load_humaneval
from hrm_codegen.data.mbpp import load_mbpp
from hrm_codegen.data.tasks import CodeTask, build_program, canonical_benchmark, normalize_task_id

__all__ = [
    "CodeTask",
    "build_program",
    "canonical_benchmark",
    "load_benchmark",
    "normalize_task_id",
]


def load_benchmark(
    name: str, split: str | None = None, path: str | os.PathLike | None = None
) -> list[CodeTask]:
    """Tasks of `mbpp`, `mbpp_sanitized`, `humaneval` or `toy`, in task-id order.

    `split` is an MBPP split (`prompt`, `test`, `validation`, `train`) or None for all tasks;
    HumanEval only has `test`. Sources are tried in order: `path`, `$HRM_CODEGEN_DATA_DIR`, the
    hub (see `hrm_codegen.data.mbpp` and `.humaneval`).
    """
    benchmark = canonical_benchmark(name)
    if benchmark == "humaneval":
        return load_humaneval(split=split, path=path)
    if benchmark == "toy":  # generated in code (data/toy_tasks.py): no file, `path` unused
        from hrm_codegen.data.toy_tasks import load_toy

        return load_toy(split)
    return load_mbpp(benchmark, split=split, path=path)
