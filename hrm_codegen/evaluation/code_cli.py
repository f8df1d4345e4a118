"""The command line's run of the CodeTask benchmarks (MBPP, MBPP sanitized, HumanEval, toy):
tasks from `data/` (`--split`, `--limit`), samples from a file or a model (best-of-n and
sharded generation included), judged by `harness`, the table printed, and for a small model's
zero a note on what to measure instead. The registry's entries of these benchmarks run
`run_code_tasks`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hrm_codegen.data import CodeTask, load_benchmark, normalize_task_id
from hrm_codegen.evaluation.benchmark import Benchmark
from hrm_codegen.evaluation.harness import evaluate_model, evaluate_samples
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
from hrm_codegen.evaluation.sampling import SamplingSettings
from hrm_codegen.evaluation.sandbox import DEFAULT_TIMEOUT_S, resolve_backend
from hrm_codegen.evaluation.source import (
    backend_of,
    check_source,
    load_draft_from_args,
    load_model_from_args,
)
from hrm_codegen.evaluation.store import default_output
from hrm_codegen.run_layout import METRICS_FILE


def run_code_tasks(args: argparse.Namespace, benchmark: Benchmark) -> EvalSummary | None:
    """The command line's work for a CodeTask benchmark: pick tasks, get samples (file or
    model), judge, print a table.

    `--h-cycles/--l-cycles/--segments` set an HRM's inference schedule (test-time compute);
    `--dtype` casts the loaded weights and `--quantize` quantizes them (`harness.load_model_and_tokenizer`);
    `--compile` as in `evaluate_model`. `--best-of N` samples N completions per task and
    submits one, chosen by `--rank` (`best_of_n.py`); the score is reported under
    `metric_name(rank, N)`, since `first-test` uses a graded test and is not a pass@1. Under
    `accelerate launch` with several processes, generation is sharded over them (rank 0
    judges and reports; the others return None).
    """
    ks = parse_ks(args.k)
    check_source(args)
    _check_best_of(args, ks)
    if args.ckpt is not None:
        resolve_backend(args.sandbox)  # --sandbox bwrap without bubblewrap fails before loading
    shard, barrier, device = launched_shard(args)
    output = args.output or default_output(benchmark.name)
    judging = {
        "timeout": DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout,
        "workers": args.workers,
        "memory_mb": args.memory_mb,
        "sandbox": args.sandbox,
        "progress": not args.no_progress,
    }
    if args.samples is not None:
        tasks, kept, uncovered = match_samples_file(args.samples, benchmark, args.split, args.limit)
        summary = evaluate_samples(tasks, kept, ks=ks, output_dir=output, **judging)
        if uncovered:
            summary.settings["tasks_without_samples"] = len(uncovered)
            write_summary(Path(output) / SUMMARY_FILE, summary)
        _print_done(summary, output)
        return summary
    tasks = select_tasks(benchmark, args.split, args.limit)
    model, tok, schedule = load_model_from_args(args, device=device)
    # the weights were cast to --dtype as they loaded: generation needs no autocast on top
    draft = load_draft_from_args(args, tok, device=device)
    sampling = replace(SamplingSettings.from_args(args), dtype=None, draft=draft)
    if args.best_of is not None:
        summary = _best_of_n_evaluation(
            model, tok, tasks, args, replace(sampling, compile=False), output, judging
        )
        _print_done(summary, output)
        return summary
    summary = evaluate_model(
        model,
        tok,
        tasks,
        num_samples=args.num_samples,
        ks=ks,
        output_dir=output,
        shard=shard,
        barrier=barrier,
        run_info={
            "model_type": args.model_type,
            "ckpt": str(Path(args.ckpt).resolve()),
            **({"schedule": schedule} if schedule else {}),
            **({"quantize": args.quantize} if args.quantize else {}),
            **({"backend": backend_of(args)} if backend_of(args) != "torch" else {}),
        },
        sampling=sampling,
        **judging,
    )
    if summary is None:  # a rank other than 0 of a sharded run: rank 0 judges and reports
        return None
    _print_done(summary, output)
    parameters = sum(p.numel() for p in model.parameters())
    parameters = parameters or getattr(getattr(model, "info", None), "parameters", 0)  # onnx
    context = training_bpb_context(args.ckpt, tok, tasks)
    for line in small_model_note(
        summary, parameters, model_type=args.model_type, ckpt=args.ckpt, bpb=context
    ):
        print(line)
    return summary


def _print_done(summary: EvalSummary, output: str | Path) -> None:
    print(format_table(summary))
    print(f"wrote {Path(output) / SAMPLES_FILE}, {RESULTS_FILE} and {SUMMARY_FILE}")


def _check_best_of(args: argparse.Namespace, ks: tuple[int, ...]) -> None:
    """`--best-of` samples from a model and submits one sample per task; `--rank` needs it."""
    if args.best_of is None:
        if args.rank != "logprob":
            raise ValueError("--rank chooses among --best-of N samples: give --best-of")
        return
    from hrm_codegen.evaluation.best_of_n import check_rank  # torch: only with a model

    check_rank(args.rank)
    if args.samples is not None:
        raise ValueError("--best-of samples from a model: give --model-type/--ckpt")
    if args.num_samples != 1 or ks != (1,):
        raise ValueError(
            f"--best-of submits one sample per task (scored as @1): drop --num-samples "
            f"{args.num_samples} / --k {','.join(map(str, ks))}"
        )


def _best_of_n_evaluation(
    model: Any,
    tok: Any,
    tasks: list[CodeTask],
    args: argparse.Namespace,
    sampling: SamplingSettings,
    output: str | Path,
    judging: dict[str, Any],
) -> EvalSummary:
    """Sample, rank and submit one completion per task, judge it, name the score honestly."""
    from hrm_codegen.evaluation.best_of_n import best_of_n_samples, metric_name

    samples = best_of_n_samples(
        model, tok, tasks, n=args.best_of, rank=args.rank, sampling=sampling, **judging
    )
    summary = evaluate_samples(tasks, samples, ks=(1,), output_dir=output, **judging)
    name = metric_name(args.rank, args.best_of)
    summary.pass_at_k = {name: summary.pass_at_k["pass@1"]}
    summary.settings.update({"best_of": args.best_of, "rank": args.rank, "metric": name})
    write_summary(Path(output) / SUMMARY_FILE, summary)
    return summary


def launched_shard(args: argparse.Namespace) -> tuple[tuple[int, int] | None, Any, str | None]:
    """Under `accelerate launch` with several processes: (rank, world), the barrier and this
    rank's device, so generation shards over the processes; else (None, None, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, None, None
    if args.ckpt is None or args.best_of is not None:
        raise ValueError(
            "several processes shard generation from a model: give --model-type/--ckpt "
            "(judge a --samples file, or --best-of, in one process)"
        )
    if args.output is None:
        raise ValueError("a sharded evaluation needs --output (the ranks meet in that folder)")
    from accelerate import PartialState

    # on the CPU the ranks meet over gloo (accelerate needs `cpu=True` to start that group)
    state = PartialState(cpu=args.device == "cpu")
    device = "cpu" if args.device == "cpu" else str(state.device)
    return (state.process_index, state.num_processes), state.wait_for_everyone, device


# --------------------------------------------------------------------------------------------------
# Tasks


def select_tasks(benchmark: Benchmark, split: str | None, limit: int | None) -> list[CodeTask]:
    """The benchmark's tasks for --split (default: its `default_split`, e.g. MBPP's test; 'all'
    = every task) and --limit."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of tasks")
    if split == "all":
        split = None
    elif split is None:
        split = benchmark.default_split
    tasks = load_benchmark(benchmark.name, split=split)
    return tasks[:limit] if limit else tasks


def match_samples_file(
    path: str | Path, benchmark: Benchmark, split: str | None, limit: int | None
) -> tuple[list[CodeTask], list[dict[str, Any]], list[str]]:
    """(tasks to judge, their samples, tasks a full run would have but the file lacks).

    Without --split the tasks are those the file has samples for, whatever their split: a file
    of completions is judged as given (an MBPP file of all 974 tasks is not cut to the test
    split). With --split, samples of other tasks are set aside, and said so. --limit keeps the
    first N tasks that have samples. Ids that are not in the benchmark at all are an error
    (usually a wrong --benchmark).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of tasks")
    name = benchmark.name
    everything = load_benchmark(name)
    known = {task.task_id for task in everything}
    given = read_samples(path)
    ids = []
    for number, sample in enumerate(given, start=1):
        try:
            task_id = normalize_task_id(name, sample["task_id"])
        except TypeError as error:
            raise ValueError(f"{path}: sample {number}: {error}") from None
        if task_id not in known:
            raise ValueError(
                f"{path}: task id {sample['task_id']!r} is not a {name} task; is --benchmark right?"
            )
        ids.append(task_id)
    pool = select_tasks(benchmark, split, None) if split is not None else everything
    have = set(ids)
    tasks = [task for task in pool if task.task_id in have][:limit]
    chosen = {task.task_id for task in tasks}
    kept = [sample for sample, task_id in zip(given, ids) if task_id in chosen]
    if len(kept) < len(given):
        print(f"{len(given) - len(kept)} sample(s) are outside --split/--limit; not evaluated")
    if not kept:
        raise ValueError(
            f"none of the {len(given)} samples in {path} belong to the selected tasks; check "
            "--split/--limit"
        )
    uncovered: list[str] = []
    if limit is None:  # what a complete file would cover: the split asked for, else the usual one
        expected = select_tasks(benchmark, split, None)
        uncovered = [task.task_id for task in expected if task.task_id not in chosen]
        if uncovered:
            print(
                f"NOTE: {len(uncovered)} of the {len(expected)} tasks of {_scope(benchmark, split)}"
                f" have no samples (e.g. {uncovered[:3]}); pass@k is over the {len(tasks)} tasks "
                "that do"
            )
    return tasks, kept, uncovered


def _scope(benchmark: Benchmark, split: str | None) -> str:
    """Words for the tasks `select_tasks` picks, for messages."""
    if split is not None:
        return f"--split {split}"
    if benchmark.default_split is None:
        return benchmark.name
    return f"{benchmark.name} ({benchmark.default_split} split)"


# --------------------------------------------------------------------------------------------------
# A small model's zero, explained


# The note below is for the quickstart's outcome: a model this small (the quickstart's has about
# 2M parameters), trained for minutes on a CPU, passes essentially no MBPP task, since public code
# models reach a few percent pass@1 only from about 100M parameters and billions of training
# tokens. Under these bounds a 0% is what to expect, not a broken pipeline, and a user should hear
# so with what to measure instead; larger models, or a pass@1 that moved, get no note.
SMALL_MODEL_PARAMETERS = 50_000_000
TINY_PASS_AT_1 = 0.01


def training_bpb_context(ckpt: str | Path, tok: Any, tasks: list[CodeTask]) -> dict[str, Any]:
    """What the quick start's bits per byte on MBPP did: the first and last `val/mbpp_bpb` its
    run logged (metrics.jsonl beside the checkpoint), and the score of a model that guesses
    uniformly among its tokens (log2 V bits per token over these tasks' bytes per token): the
    untrained baseline the user's model is measured against."""
    import json
    import math

    from hrm_codegen.data.prompts import format_target

    out: dict[str, Any] = {}
    texts = [format_target(task) for task in tasks]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    if n_bytes:
        out["uniform"] = math.log2(len(tok)) * n_tokens / n_bytes
    folder = Path(ckpt).resolve()
    runs = sorted(folder.glob("*/metrics.jsonl"), key=lambda m: m.stat().st_mtime)
    candidates = [runs[-1].parent] if runs else []  # a folder of runs: its latest, as loaded
    for candidate in (*candidates, folder, *list(folder.parents)[:3]):
        metrics = candidate / METRICS_FILE
        if metrics.is_file():
            rows = [json.loads(line) for line in metrics.open() if line.strip()]
            curve = [(r["step"], r["val/mbpp_bpb"]) for r in rows if "val/mbpp_bpb" in r]
            if curve:
                out["first"], out["last"] = curve[0], curve[-1]
            break
    return out


def small_model_note(
    summary: EvalSummary,
    parameters: int,
    *,
    model_type: str,
    ckpt: str | Path,
    bpb: dict[str, Any] | None = None,
) -> list[str]:
    """2-3 lines after the table when a small model's pass@1 is (near) zero: what it got and
    why, and what moves at this scale (bits per byte on MBPP), so a 0% from the quick start is
    not taken for a failure; [] otherwise."""
    pass_at_1 = summary.pass_at_k.get("pass@1")
    if pass_at_1 is None or pass_at_1 >= TINY_PASS_AT_1 or parameters >= SMALL_MODEL_PARAMETERS:
        return []
    import shlex

    samples = sum(summary.counts.values())
    failed = samples - summary.counts.get("passed", 0)
    causes = sorted(((n, c) for c, n in summary.failures.items() if n), reverse=True)
    why = ", ".join(f"{n} {cause}" for n, cause in causes) or "none classified"
    command = (
        f"python scripts/evaluate.py --model-type {model_type} --ckpt {shlex.quote(str(ckpt))} "
        "--metric bpb --data mbpp"
    )
    return [
        f"note: pass@1 {100 * pass_at_1:.2f}% is what a {parameters / 1e6:.1f}M-parameter model "
        f"is expected to get: {failed} of {samples} samples failed ({why}; each sample's cause "
        f"is in {RESULTS_FILE}).",
        f"What moves at this scale is bits per byte on MBPP, lower is better{_bpb_moves(bpb)}: "
        f"{command}",
        "A pass@1 worth reading needs larger models trained on a GPU: see docs/results/ "
        "(cpu_small.md: CPU-scale runs; gpu.md: GPU runs).",
    ]


def _bpb_moves(bpb: dict[str, Any] | None) -> str:
    """ ", here 3.41 at step 100 -> 2.62 at step 200 (a uniform guess: 4.10)" from the context."""
    if not bpb:
        return ""
    parts = []
    if "first" in bpb:
        (s0, v0), (s1, v1) = bpb["first"], bpb["last"]
        parts.append(f"this run's val/mbpp_bpb went {v0:.2f} at step {s0} -> {v1:.2f} at step {s1}")
    if "uniform" in bpb:
        parts.append(f"an untrained model guessing uniformly scores {bpb['uniform']:.2f}")
    return f" ({'; '.join(parts)})" if parts else ""


__all__ = [
    "launched_shard",
    "match_samples_file",
    "run_code_tasks",
    "select_tasks",
    "small_model_note",
    "training_bpb_context",
]
