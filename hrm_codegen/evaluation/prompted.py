"""The command line's run of a benchmark of prompts and judged answers (LiveCodeBench's code
generation, test output prediction and code execution, and the exec benchmark).

Its registry entry says what differs (`Benchmark.load`, `task_id`, `prompt`, `stop`, `extract`,
`judge`); `run_prompted` does the rest the same way for all: the tasks the flags select, the
answers from a samples file (`{"task_id", "completion"}`, ids as strings) or from the model
(raw generations appended to `generations.jsonl`, resumed by prompt), the judge writing
through the run store, and the table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hrm_codegen.evaluation.benchmark import Benchmark
from hrm_codegen.evaluation.passk import parse_ks
from hrm_codegen.evaluation.results import (
    RESULTS_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    EvalSummary,
    format_table,
    read_samples,
    write_summary,
)
from hrm_codegen.evaluation.sampling import SamplingSettings, generate_texts
from hrm_codegen.evaluation.sandbox import resolve_backend
from hrm_codegen.evaluation.source import check_source, load_draft_from_args, load_model_from_args
from hrm_codegen.evaluation.store import RunStore, default_output

GENERATIONS_FILE = "generations.jsonl"

# (prompts by key, stop strings, samples per prompt) -> generations by key
Generate = Callable[[Mapping[str, str], Sequence[str], int], dict[str, list[str]]]


def run_prompted(args: argparse.Namespace, benchmark: Benchmark) -> EvalSummary:
    """One prompted benchmark from the command line: select, answer (file or model), judge,
    print the table. `--limit` keeps the first N tasks (with a samples file: the first N that
    have samples)."""
    assert benchmark.load is not None and benchmark.prompt is not None
    assert benchmark.judge is not None
    ks, out = start(args, benchmark)
    tasks = benchmark.load(args)
    timings: dict[str, float] = {}
    if args.samples is not None:
        tasks, samples = select_by_samples(
            tasks, read_answers(args.samples), args.limit, benchmark.task_id
        )
        run_info: dict[str, Any] = {}
    else:
        tasks = tasks[: args.limit] if args.limit else tasks
        generate, run_info = model_generator(args, benchmark, out, timings)
        prompts = {benchmark.task_id(task): benchmark.prompt(task) for task in tasks}
        texts = generate(prompts, benchmark.stop, args.num_samples)
        extract = benchmark.extract or (lambda text: text)
        samples = [
            {"task_id": key, "completion": extract(text)} for key in prompts for text in texts[key]
        ]
    summary = benchmark.judge(
        benchmark, tasks, samples, args=args, ks=ks, output_dir=out, timings=timings
    )
    return finish(summary, out, run_info)


def start(args: argparse.Namespace, benchmark: Benchmark) -> tuple[tuple[int, ...], Path]:
    """(ks, output folder) after the checks every prompted run makes before loading anything."""
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit}: give a positive number of problems")
    ks = parse_ks(args.k)
    check_source(args)
    if benchmark.sandboxed:
        resolve_backend(args.sandbox)
    return ks, Path(args.output or default_output(benchmark.name))


def finish(summary: EvalSummary, out: Path, run_info: Mapping[str, Any]) -> EvalSummary:
    """Record the model in the summary (when one answered), print the table."""
    if run_info:
        summary.settings.update(run_info)
        write_summary(out / SUMMARY_FILE, summary)
    print(format_table(summary))
    print(f"wrote {out / SAMPLES_FILE}, {RESULTS_FILE} and {SUMMARY_FILE}")
    return summary


def model_generator(
    args: argparse.Namespace, benchmark: Benchmark, out: Path, timings: dict[str, float]
) -> tuple[Generate, dict[str, Any]]:
    """(generate, run_info) for the model the flags name: `generate(prompts, stop, n)` appends
    raw generations to `out`/generations.jsonl (a rerun generates only unfinished prompts;
    one made with other settings is refused) and records `generation_s` in `timings`."""
    model, tokenizer, _ = load_model_from_args(args)
    sampling = replace(
        SamplingSettings.from_args(args), draft=load_draft_from_args(args, tokenizer)
    )
    run_info = {"model_type": args.model_type, "ckpt": str(Path(args.ckpt).resolve())}

    def generate(prompts: Mapping[str, str], stop: Sequence[str], n: int) -> dict[str, list[str]]:
        store = RunStore.open(out)
        store.check_settings(
            {"benchmark": benchmark.name, "num_samples": n, **sampling.recorded(), **run_info},
            "generations",
        )
        start = time.perf_counter()
        texts = generate_texts(
            model,
            tokenizer,
            prompts,
            stop=stop,
            num_samples=n,
            sampling=sampling,
            progress=not args.no_progress,
            output_file=store.file(GENERATIONS_FILE),
        )
        timings["generation_s"] = time.perf_counter() - start
        return texts

    return generate, run_info


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """A samples file of answers: task ids as the benchmark writes them (LCB's question_id or
    id), kept as strings."""
    return [
        {"task_id": str(s["task_id"]), "completion": s["completion"]} for s in read_samples(path)
    ]


def select_by_samples(
    tasks: Sequence[Any],
    samples: list[dict[str, Any]],
    limit: int | None,
    task_id: Callable[[Any], str],
) -> tuple[list[Any], list[dict[str, Any]]]:
    """(tasks with samples, their samples): a file of answers is judged as given, but samples
    of tasks outside the selection (dates, difficulty) are set aside, and said so."""
    ids = {task_id(t) for t in tasks}
    have = {s["task_id"] for s in samples}
    chosen = [t for t in tasks if task_id(t) in have]
    chosen = chosen[:limit] if limit else chosen
    keep = {task_id(t) for t in chosen}
    kept = [s for s in samples if s["task_id"] in keep]
    outside = [s for s in samples if s["task_id"] not in ids]
    if len(kept) < len(samples):
        print(
            f"{len(samples) - len(kept)} sample(s) are outside the selected problems; not evaluated"
        )
    if not kept:
        raise ValueError(
            f"none of the {len(samples)} samples belong to the selected problems (e.g. "
            f"{[s['task_id'] for s in outside[:3]]}); check --data, the date/difficulty/platform "
            "filters and --limit"
        )
    if limit is None and len(chosen) < len(tasks):
        print(
            f"NOTE: {len(tasks) - len(chosen)} of the {len(tasks)} selected problems have "
            f"no samples; pass@k is over the {len(chosen)} that do"
        )
    return chosen, kept


__all__ = [
    "GENERATIONS_FILE",
    "finish",
    "model_generator",
    "read_answers",
    "run_prompted",
    "select_by_samples",
    "start",
]
