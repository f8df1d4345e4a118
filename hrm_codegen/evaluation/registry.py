"""The benchmark registry: every name `scripts/evaluate.py --benchmark` accepts, declared once.

Each entry (`benchmark.Benchmark`) says what the benchmark measures, which flags only it
takes, and how it runs: its family's runner and, for benchmarks of prompts and answers, its
tasks, prompt, answer extraction and judge. The command line (`cli.py`) is its flags plus this
table; docs/DESIGN.md ("How to add a benchmark") walks through adding one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from hrm_codegen.data import CODE_BENCHMARKS, prompts
from hrm_codegen.evaluation.benchmark import Benchmark
from hrm_codegen.evaluation.code_cli import run_code_tasks
from hrm_codegen.evaluation.lcb import cli as lcb
from hrm_codegen.evaluation.polyglot import run_polyglot
from hrm_codegen.evaluation.polyglot.benchmark import POLYGLOT_FLAGS
from hrm_codegen.evaluation.prompted import run_prompted
from hrm_codegen.evaluation.results import EvalSummary

CODE_FLAGS = ("split", "best_of", "rank")


def _code(name: str, about: str, default_split: str | None) -> Benchmark:
    """A CodeTask benchmark (a row of `data.CODE_BENCHMARKS`): tasks, prompts and tests from
    `data/`, judged in the sandbox."""
    return Benchmark(name, about, run_code_tasks, CODE_FLAGS, default_split=default_split)


def _polyglot(args: argparse.Namespace, benchmark: Benchmark) -> EvalSummary:
    return run_polyglot(args)


BENCHMARKS: dict[str, Benchmark] = {
    entry.name: entry
    for entry in (
        # CodeTask benchmarks: declared once, in data/tasks.py
        *(_code(b.name, b.about, b.default_split) for b in CODE_BENCHMARKS.values()),
        Benchmark(
            "lcb_codegeneration",
            "LiveCodeBench code generation, run on the public and private tests",
            run_prompted,
            lcb.LCB_FLAGS,
            selection=lcb.LCB_SELECTION,
            sandboxed=True,
            load=lcb.load_codegen,
            task_id=lcb.question_id,
            prompt=lcb.codegen_prompt,
            stop=prompts.LCB_STOP,
            extract=prompts.extract_lcb_code,
            judge=lcb.judge_programs,
        ),
        Benchmark(
            "lcb_selfrepair",
            "LiveCodeBench self-repair of a code generation run's failures (--previous)",
            lcb.run_selfrepair,
            (*lcb.LCB_FLAGS, "previous"),
            selection=lcb.LCB_SELECTION,
            sandboxed=True,
        ),
        Benchmark(
            "lcb_testoutput",
            "LiveCodeBench test output prediction (answers parsed, not run)",
            run_prompted,
            lcb.LCB_FLAGS,
            selection=lcb.LCB_SELECTION,
            load=lcb.load_testoutput,
            prompt=lcb.testoutput_prompt,
            stop=prompts.LCB_ANSWER_STOP,
            judge=lcb.judge_answers,
        ),
        Benchmark(
            "lcb_execution",
            "LiveCodeBench code execution (predicted outputs parsed, not run)",
            run_prompted,
            lcb.LCB_FLAGS,
            selection=lcb.LCB_SELECTION,
            load=lcb.load_execution,
            prompt=lcb.execution_prompt,
            stop=prompts.LCB_ANSWER_STOP,
            judge=lcb.judge_answers,
        ),
        Benchmark(
            "exec",
            "output prediction on generated programs (--data: build_exec_benchmark.py's)",
            run_prompted,
            ("data", "split"),
            load=lcb.load_exec,
            prompt=lcb.exec_prompt,
            stop=prompts.EXEC_ANSWER_STOP,
            judge=lcb.judge_answers,
        ),
        Benchmark(
            "polyglot",
            "aider's Polyglot: Exercism exercises in six languages, edited in two tries",
            _polyglot,
            ("data", *POLYGLOT_FLAGS),
            selection="Polyglot exercises with --languages/--exercises/--limit",
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The entry of `name`, or an error listing the names there are."""
    if name not in BENCHMARKS:
        raise ValueError(f"--benchmark {name!r} unknown; use one of {describe(BENCHMARKS)}")
    return BENCHMARKS[name]


def flag_owners() -> dict[str, list[str]]:
    """{flag: the benchmarks that take it} for every flag some entry declares as its own."""
    owners: dict[str, list[str]] = {}
    for entry in BENCHMARKS.values():
        for flag in entry.flags:
            owners.setdefault(flag, []).append(entry.name)
    return owners


def describe(names: Iterable[str]) -> str:
    """Names for a message, a family given in full written as one (`lcb_*`)."""
    names = list(names)
    parts: list[str] = []
    for name in names:
        family = name.split("_")[0] + "_" if "_" in name else None
        members = [n for n in BENCHMARKS if family and n.startswith(family)]
        if len(members) > 1 and all(n in names for n in members):
            if f"{family}*" not in parts:
                parts.append(f"{family}*")
        else:
            parts.append(name)
    return ", ".join(parts)


__all__ = ["BENCHMARKS", "CODE_FLAGS", "describe", "flag_owners", "get_benchmark"]
