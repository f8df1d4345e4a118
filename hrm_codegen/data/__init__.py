"""Benchmarks (MBPP, HumanEval) as one task type, prompt templates, SFT and pretraining data."""

from __future__ import annotations

import os
from collections.abc import Callable

from hrm_codegen.data.humaneval import load_humaneval
from hrm_codegen.data.mbpp import load_mbpp
from hrm_codegen.data.tasks import (
    CODE_BENCHMARKS,
    CodeTask,
    build_program,
    canonical_benchmark,
    normalize_task_id,
)

__all__ = [
    "CODE_BENCHMARKS",
    "LOADERS",
    "CodeTask",
    "build_program",
    "canonical_benchmark",
    "load_benchmark",
    "normalize_task_id",
]


def _load_toy(split: str | None, path: str | os.PathLike | None) -> list[CodeTask]:
    """Generated in code (data/toy_tasks.py): no file, `path` unused."""
    from hrm_codegen.data.toy_tasks import load_toy

    return load_toy(split)


# How each benchmark of `tasks.CODE_BENCHMARKS` (where it is declared) loads: (split, path).
LOADERS: dict[str, Callable[[str | None, str | os.PathLike | None], list[CodeTask]]] = {
    "mbpp": lambda split, path: load_mbpp("mbpp", split=split, path=path),
    "mbpp_sanitized": lambda split, path: load_mbpp("mbpp_sanitized", split=split, path=path),
    "humaneval": lambda split, path: load_humaneval(split=split, path=path),
    "toy": _load_toy,
}


def load_benchmark(
    name: str, split: str | None = None, path: str | os.PathLike | None = None
) -> list[CodeTask]:
    """Tasks of a benchmark of `CODE_BENCHMARKS` (`mbpp`, `mbpp_sanitized`, `humaneval`, `toy`),
    in task-id order.

    `split` is an MBPP split (`prompt`, `test`, `validation`, `train`) or None for all tasks;
    HumanEval only has `test`. Sources are tried in order: `path`, `$HRM_CODEGEN_DATA_DIR`, the
    hub (see `hrm_codegen.data.mbpp` and `.humaneval`).
    """
    return LOADERS[canonical_benchmark(name)](split, path)
