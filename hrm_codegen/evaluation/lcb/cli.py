"""LiveCodeBench's four scenarios (and the exec benchmark, graded as code execution) on the
command line: what the registry's entries of them load, prompt and judge with, and the
self-repair run, which builds its prompts from a previous code generation run.

`lcb_codegeneration`, `lcb_testoutput`, `lcb_execution` and `exec` run through
`prompted.run_prompted`; `lcb_selfrepair` through `run_selfrepair`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hrm_codegen.data import lcb as lcb_data
from hrm_codegen.data import prompts
from hrm_codegen.evaluation.benchmark import Benchmark
from hrm_codegen.evaluation.lcb import runner, selfrepair
from hrm_codegen.evaluation.prompted import (
    finish,
    model_generator,
    read_answers,
    start,
)
from hrm_codegen.evaluation.results import EvalSummary, write_jsonl

# the flags every LCB scenario takes (`--previous` is self-repair's alone)
LCB_FLAGS = (
    "data",
    "release",
    "start_date",
    "end_date",
    "difficulty",
    "platform",
    "compare",
    "total_timeout",
)
LCB_SELECTION = "LCB problems with --release/--start-date/..."


def run_settings(args: argparse.Namespace) -> runner.LCBRunSettings:
    """How programs run, from the flags: `--timeout` is per test (LCB's 6 s by default)."""
    return runner.LCBRunSettings(
        compare=args.compare,
        timeout_per_test=runner.LCB_TIMEOUT_PER_TEST_S if args.timeout is None else args.timeout,
        total_timeout=args.total_timeout,
        memory_mb=args.memory_mb,
        workers=args.workers,
        sandbox=args.sandbox,
        progress=not args.no_progress,
    )


# --------------------------------------------------------------------------------------------------
# What the entries load and prompt with


def load_codegen(args: argparse.Namespace) -> list[lcb_data.LCBProblem]:
    return lcb_data.load_lcb_codegen(
        args.data, release=args.release, start_date=args.start_date, end_date=args.end_date,
        difficulty=args.difficulty, platform=args.platform,
    )  # fmt: skip


def load_testoutput(args: argparse.Namespace) -> list[lcb_data.TestOutputProblem]:
    return lcb_data.load_lcb_testoutput(args.data)


def load_execution(args: argparse.Namespace) -> list[lcb_data.CodeExecutionProblem]:
    return lcb_data.load_lcb_execution(args.data)


def load_exec(args: argparse.Namespace) -> list[lcb_data.CodeExecutionProblem]:
    """A built exec benchmark's split (`--split`, default test) as code-execution problems."""
    from hrm_codegen.data.exec_programs import load_exec_problems

    if args.data is None:
        raise ValueError(
            "--benchmark exec needs --data FOLDER (build it with "
            "`python scripts/build_exec_benchmark.py --out FOLDER`)"
        )
    return load_exec_problems(args.data, args.split or "test")


def codegen_prompt(problem: lcb_data.LCBProblem) -> str:
    return prompts.format_lcb_prompt(problem.question_content, problem.starter_code)


def testoutput_prompt(problem: lcb_data.TestOutputProblem) -> str:
    return prompts.format_lcb_testoutput_prompt(
        problem.question_content, problem.starter_code, problem.function_name, problem.input
    )


def execution_prompt(problem: lcb_data.CodeExecutionProblem) -> str:
    return prompts.format_lcb_execution_prompt(problem.code, problem.input)


def exec_prompt(problem: lcb_data.CodeExecutionProblem) -> str:
    return prompts.format_exec_prompt(problem.code, problem.input)


def question_id(problem: lcb_data.LCBProblem) -> str:
    return problem.question_id


# --------------------------------------------------------------------------------------------------
# Judges (`benchmark.Judge`)


def judge_programs(
    benchmark: Benchmark,
    tasks: Sequence[Any],
    samples: Sequence[dict[str, Any]],
    *,
    args: argparse.Namespace,
    ks: tuple[int, ...],
    output_dir: Path,
    timings: dict[str, float],
) -> EvalSummary:
    """Code generation: every program run on the problem's tests in the sandbox."""
    return runner.evaluate_lcb_codegen(
        tasks, samples, ks=ks, settings=run_settings(args), output_dir=output_dir,
        benchmark=benchmark.name, timings=timings,
    )  # fmt: skip


def judge_answers(
    benchmark: Benchmark,
    tasks: Sequence[Any],
    samples: Sequence[dict[str, Any]],
    *,
    args: argparse.Namespace,
    ks: tuple[int, ...],
    output_dir: Path,
    timings: dict[str, float],
) -> EvalSummary:
    """Test output prediction and code execution: the answers parsed and compared, not run."""
    return runner.evaluate_lcb_predictions(
        benchmark.name, tasks, samples, ks=ks, output_dir=output_dir, timings=timings
    )


# --------------------------------------------------------------------------------------------------
# Self-repair


def run_selfrepair(args: argparse.Namespace, benchmark: Benchmark) -> EvalSummary:
    """Self-repair: carry the previous run's passed samples over, repair each failed one (one
    completion per failed sample, from the samples file or the model), judge."""
    if args.previous is None:
        raise ValueError("lcb_selfrepair needs --previous DIR (an lcb_codegeneration --output)")
    ks, out = start(args, benchmark)
    problems = load_codegen(args)
    by_id = {p.question_id: p for p in problems}
    carried, repairs = selfrepair.plan_repairs(by_id, selfrepair.read_previous_run(args.previous))
    involved = {key[0] for key in carried} | {item.task_id for item in repairs}
    chosen = [p for p in problems if p.question_id in involved]
    chosen = chosen[: args.limit] if args.limit else chosen
    keep = {p.question_id for p in chosen}
    carried = {key: r for key, r in carried.items() if key[0] in keep}
    repairs = [item for item in repairs if item.task_id in keep]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        out / "repair_prompts.jsonl",
        [
            {"task_id": r.task_id, "sample_index": r.sample_index, "feedback": r.feedback,
             "prompt": r.prompt}
            for r in repairs
        ],
    )  # fmt: skip
    timings: dict[str, float] = {}
    run_info: dict[str, Any] = {}
    if args.samples is not None:
        repaired = _repairs_from_file(args.samples, repairs)
    else:
        generate, run_info = model_generator(args, benchmark, out, timings)
        prompt_of = {f"{r.task_id}#{r.sample_index}": r.prompt for r in repairs}
        texts = generate(prompt_of, prompts.LCB_STOP, 1)
        repaired = {
            (r.task_id, r.sample_index): prompts.extract_lcb_code(
                texts[f"{r.task_id}#{r.sample_index}"][0]
            )
            for r in repairs
        }
    order = [p.question_id for p in chosen]
    keys = sorted(set(carried) | set(repaired), key=lambda key: (order.index(key[0]), key[1]))
    ordered = [
        {
            "task_id": key[0],
            "completion": carried[key]["completion"] if key in carried else repaired[key],
        }
        for key in keys
    ]
    # the numbering of `ordered` gives each task's samples indices 0.. in the previous order
    renumber = {}
    seen: dict[str, int] = {}
    for key in keys:
        renumber[key] = (key[0], seen.get(key[0], 0))
        seen[key[0]] = seen.get(key[0], 0) + 1
    carried_new = {
        renumber[key]: {**record, "previous_sample_index": key[1]}
        for key, record in carried.items()
    }
    summary = runner.evaluate_lcb_codegen(
        chosen, ordered, ks=ks, settings=run_settings(args), output_dir=out,
        benchmark=benchmark.name, carried=carried_new, timings=timings,
    )  # fmt: skip
    return finish(summary, out, run_info)


def _repairs_from_file(
    path: str | Path, repairs: Sequence[selfrepair.RepairItem]
) -> dict[tuple[str, int], str]:
    """The n-th completion of a task in the samples file repairs its n-th failed sample."""
    queue: dict[str, list[int]] = {}
    for item in repairs:
        queue.setdefault(item.task_id, []).append(item.sample_index)
    repaired = {}
    for sample in read_answers(path):
        indices = queue.get(sample["task_id"])
        if indices:
            repaired[(sample["task_id"], indices.pop(0))] = sample["completion"]
    missing = [(t, i) for t, left in queue.items() for i in left]
    if missing:
        raise ValueError(
            f"{len(missing)} failed sample(s) have no repair in {path}, e.g. {missing[:3]}; "
            "give one completion per failed sample (see repair_prompts.jsonl)"
        )
    return repaired


__all__ = [
    "LCB_FLAGS",
    "LCB_SELECTION",
    "codegen_prompt",
    "exec_prompt",
    "execution_prompt",
    "judge_answers",
    "judge_programs",
    "load_codegen",
    "load_exec",
    "load_execution",
    "load_testoutput",
    "question_id",
    "run_selfrepair",
    "run_settings",
    "testoutput_prompt",
]
