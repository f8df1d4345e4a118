"""What a benchmark is to the command line: a `Benchmark` entry, one per `--benchmark` name,
listed once in the registry (`registry.py`). This module imports no benchmark, so every
family's runner can take its entry without an import cycle.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hrm_codegen.evaluation.results import EvalSummary

# (args, entry) -> the summary (None on a rank other than 0 of a sharded run)
Runner = Callable[[argparse.Namespace, "Benchmark"], "EvalSummary | None"]


class Judge(Protocol):
    """`Benchmark.judge`: verdicts on `samples` (`{"task_id", "completion"}` dicts) of `tasks`
    and their summary, written through a `store.RunStore` of `output_dir`, so that a rerun
    judges only what is new; `args` holds the benchmark's own flags (e.g. LCB's `--compare`)."""

    def __call__(
        self,
        benchmark: Benchmark,
        tasks: Sequence[Any],
        samples: Sequence[dict[str, Any]],
        *,
        args: argparse.Namespace,
        ks: tuple[int, ...],
        output_dir: Path,
        timings: dict[str, float],
    ) -> EvalSummary: ...


def task_id_of(task: Any) -> str:
    """A task's id as samples files write it: its `task_id`, as a string."""
    return str(task.task_id)


@dataclass(frozen=True)
class Benchmark:
    """One `--benchmark` name: what it measures, the flags only it takes, and how it runs.

    `run(args, benchmark)` is the whole command-line run: select the tasks, read the samples
    file or generate with the model, judge through the run store, print the table. The
    families' runners are `code_cli.run_code_tasks` (CodeTask benchmarks: tasks, prompts and
    tests from `data/`), `prompted.run_prompted` (one prompt per task; the answers judged by
    `judge`), `lcb.cli.run_selfrepair` and `polyglot.run_polyglot`.

    `flags` are the options (argparse dests) that only the entries declaring them take: any
    other benchmark refuses them in one line (`cli.check_flags`); `selection` says how an entry
    that does not take `--split` chooses its tasks instead. `default_split`: the `--split` of a
    CodeTask benchmark when none is given (None: it has no splits).

    For `prompted.run_prompted`: `load(args)` gives the tasks the flags select, `task_id(task)`
    their ids, `prompt(task)` the model input (generation stops at `stop`), `extract(text)` the
    answer submitted from a generation (None: the text as is), `judge` (see `Judge`) the verdicts
    and summary; `sandboxed`: the judge runs programs, so `--sandbox` is checked before
    anything loads.
    """

    name: str
    about: str
    run: Runner
    flags: tuple[str, ...] = ()
    default_split: str | None = None
    selection: str = ""
    sandboxed: bool = False
    load: Callable[[argparse.Namespace], Sequence[Any]] | None = None
    task_id: Callable[[Any], str] = task_id_of
    prompt: Callable[[Any], str] | None = None
    stop: tuple[str, ...] = ()
    extract: Callable[[str], str] | None = None
    judge: Judge | None = None


__all__ = ["Benchmark", "Judge", "Runner", "task_id_of"]
