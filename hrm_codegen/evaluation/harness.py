"""Benchmark evaluation: samples -> sandboxed results -> pass@k, and a model -> samples first.

`evaluate_samples` judges given completions; `evaluate_model` generates them with our models or
any Hugging Face causal LM, then judges them; `generate_texts` generates for prompts that are
not `CodeTask`s (LCB). The command line (`run_evaluation`, what `scripts/evaluate.py` runs) is
in `cli.py`. With an `output_dir`, everything is written as it is produced (`samples.jsonl`,
`results.jsonl`, `summary.json`), and a rerun with the same folder picks up where a crash left
off: finished generations and judged samples are not redone.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hrm_codegen.data import CodeTask, normalize_task_id
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation.failures import classify_failure, count_failure_causes
from hrm_codegen.evaluation.passk import mean_pass_at_k, parse_ks
from hrm_codegen.evaluation.results import (
    RESULTS_FILE,
    RUN_CONFIG_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    EvalSummary,
    JsonlAppender,
    read_jsonl,
    write_jsonl,
    write_summary,
)
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    STATUSES,
    SandboxProgram,
    default_workers,
    resolve_backend,
    run_programs,
)


class OutputDirMismatchError(ValueError):
    """The output folder holds files of a different evaluation than the one asked for."""


# --------------------------------------------------------------------------------------------------
# Samples -> results -> summary


def _index_tasks(tasks: Sequence[CodeTask]) -> tuple[str, dict[str, CodeTask]]:
    if not tasks:
        raise ValueError("no tasks to evaluate (empty benchmark selection; check --split/--limit)")
    benchmarks = {task.benchmark for task in tasks}
    if len(benchmarks) != 1:
        raise ValueError(f"tasks mix benchmarks {sorted(benchmarks)}; evaluate one at a time")
    by_id = {task.task_id: task for task in tasks}
    if len(by_id) != len(tasks):
        raise ValueError("tasks hold duplicate task ids; pass each task once")
    return benchmarks.pop(), by_id


def number_samples(
    samples: Sequence[Mapping[str, Any]],
    task_ids: Sequence[str],
    *,
    what: str,
    canonical_id: Callable[[Any], str] = str,
    unknown_hint: str,
    missing_hint: str,
) -> list[dict[str, Any]]:
    """`{task_id, sample_index, completion}` per sample: ids made canonical by `canonical_id`,
    `sample_index` in order of appearance. One check for every benchmark (MBPP/HumanEval, LCB):
    samples of tasks outside `task_ids` and tasks without samples are errors, named as `what`
    (e.g. "mbpp tasks evaluated") with the hint on how to fix them."""
    known = set(task_ids)
    numbered, seen, unknown = [], Counter(), []
    for position, sample in enumerate(samples):
        if not isinstance(sample, Mapping) or "task_id" not in sample:
            raise ValueError(f"sample {position} must be a dict with task_id and completion")
        completion = sample.get("completion")
        if not isinstance(completion, str):
            raise ValueError(
                f"sample {position} ({sample['task_id']}) has completion of type "
                f"{type(completion).__name__}; it must be a string"
            )
        try:
            task_id = canonical_id(sample["task_id"])
        except TypeError as error:  # e.g. a float or null id in a samples file
            raise ValueError(f"sample {position}: {error}") from None
        if task_id not in known:
            unknown.append(str(sample["task_id"]))
            continue
        numbered.append(
            {"task_id": task_id, "sample_index": seen[task_id], "completion": completion}
        )
        seen[task_id] += 1
    if unknown:
        raise ValueError(
            f"{len(unknown)} sample(s) name tasks that are not among the {len(known)} {what}, "
            f"e.g. {sorted(set(unknown))[:5]}; {unknown_hint}"
        )
    missing = [task_id for task_id in task_ids if not seen[task_id]]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(known)} {what} have no samples, e.g. {missing[:5]}; "
            f"{missing_hint}"
        )
    return numbered


def _check_ks(ks: tuple[int, ...], counts: Mapping[str, int]) -> None:
    task_id, fewest = min(counts.items(), key=lambda item: item[1])
    if ks[-1] > fewest:
        raise ValueError(
            f"k={ks[-1]} is larger than the {fewest} sample(s) of {task_id}; generate at least "
            f"{ks[-1]} samples per task (--num-samples) or drop k={ks[-1]}"
        )


def _previous_results(output_dir: Path | None, samples: list[dict[str, Any]]) -> dict[tuple, dict]:
    """Results already in output_dir for these samples; refuses results of other samples."""
    if output_dir is None or not (output_dir / RESULTS_FILE).exists():
        return {}
    path = output_dir / RESULTS_FILE
    wanted = {(s["task_id"], s["sample_index"]): s["completion"] for s in samples}
    judged = {}
    for record in read_jsonl(path, repair_tail=True):
        key = (record.get("task_id"), record.get("sample_index"))
        if wanted.get(key) != record.get("completion"):
            raise OutputDirMismatchError(
                f"{path} holds a result for {key[0]} sample {key[1]} that is not one of the "
                "samples evaluated now; use a new --output folder (or delete this one)"
            )
        judged[key] = record
    return judged


def _judge(
    benchmark: str,
    by_id: Mapping[str, CodeTask],
    samples: list[dict[str, Any]],
    *,
    ks: tuple[int, ...],
    timeout: float,
    memory_mb: int,
    workers: int | None,
    sandbox: str,
    output_dir: Path | None,
    progress: bool,
    timings: dict[str, float],
) -> EvalSummary:
    """Run every sample not judged yet, appending results as they come, then summarise."""
    judged = _previous_results(output_dir, samples)
    pending = [s for s in samples if (s["task_id"], s["sample_index"]) not in judged]
    backend = resolve_backend(sandbox)
    workers = default_workers() if workers is None else workers
    if judged:
        print(f"{len(judged)} sample(s) already judged in {output_dir}; running {len(pending)}")
    appender = JsonlAppender(output_dir / RESULTS_FILE) if output_dir else None

    def record(index: int, result) -> None:
        sample = pending[index]
        line = {
            **sample,
            "passed": result.passed,
            "status": result.status,
            "detail": result.detail,
            "exit_code": result.exit_code,
            "duration": round(result.duration, 4),
            "failure_cause": classify_failure(result.status, result.detail, result.stderr_tail),
        }
        judged[(sample["task_id"], sample["sample_index"])] = line
        if appender is not None:
            appender.append(line)

    start = time.perf_counter()
    try:
        # Candidate and tests kept apart: the tests run against pristine built-ins and modules
        # and compare only trusted values, so a wrong program cannot make them lie.
        programs = [
            SandboxProgram(*program_parts(by_id[s["task_id"]], s["completion"])) for s in pending
        ]
        run_programs(
            programs,
            timeout=timeout,
            memory_mb=memory_mb,
            workers=workers,
            backend=backend,
            on_result=record,
            progress=progress,
            desc=f"judging {benchmark}",
        )
    finally:
        if appender is not None:
            appender.close()
    seconds = time.perf_counter() - start
    timings = dict(timings, execution_s=seconds)
    if pending:
        timings["samples_per_s"] = len(pending) / seconds

    summary = summarize_records(
        benchmark,
        list(by_id),
        list(judged.values()),
        ks=ks,
        statuses=STATUSES,
        timings=timings,
        settings={
            "sandbox": backend,
            "timeout_s": timeout,
            "memory_mb": memory_mb,
            "workers": workers,
            "ks": list(ks),
        },
    )
    if output_dir:
        write_summary(output_dir / SUMMARY_FILE, summary)
    return summary


def summarize_records(
    benchmark: str,
    task_ids: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    *,
    ks: Sequence[int],
    statuses: Sequence[str],
    timings: dict[str, float],
    settings: dict[str, Any],
    breakdown: dict[str, Any] | None = None,
) -> EvalSummary:
    """The summary every benchmark writes from its judged `records` (results.jsonl lines with
    `task_id`, `passed`, `status`): pass@k by the unbiased estimator, counts per status (every
    one of `statuses`, zeros included), failures by cause; a loud warning for sandbox errors."""
    per_task = {task_id: [0, 0] for task_id in task_ids}
    counts = Counter(dict.fromkeys(statuses, 0))
    for record in records:
        per_task[record["task_id"]][0] += 1
        per_task[record["task_id"]][1] += bool(record["passed"])
        counts[record["status"]] += 1
    if counts.get("error"):
        warnings.warn(
            f"{counts['error']} sample(s) could not be run by the sandbox (status 'error', counted "
            "as not passed); see 'detail' in results.jsonl",
            RuntimeWarning,
            stacklevel=4,  # the caller of the benchmark's evaluate function
        )
    return EvalSummary(
        benchmark=benchmark,
        num_tasks=len(per_task),
        n=min(n for n, _ in per_task.values()),
        pass_at_k=mean_pass_at_k({t: (n, c) for t, (n, c) in per_task.items()}, tuple(ks)),
        counts=dict(counts),
        per_task={t: (n, c) for t, (n, c) in per_task.items()},
        timings=timings,
        failures=count_failure_causes(records),
        settings=settings,
        breakdown=breakdown or {},
    )


def evaluate_samples(
    tasks: Sequence[CodeTask],
    samples: Sequence[Mapping[str, Any]],
    *,
    ks: Sequence[int] | str = (1,),
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    output_dir: str | Path | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str = "auto",
    progress: bool = True,
) -> EvalSummary:
    """Judge `samples` (`{"task_id", "completion"}` each) against `tasks`; pass@k per k.

    Every sample must name one of `tasks` and every task needs at least max(ks) samples. With
    `output_dir`, writes samples.jsonl, results.jsonl (appended as results come) and
    summary.json, and skips samples already judged there.
    """
    benchmark, by_id = _index_tasks(tasks)
    ks = parse_ks(ks)
    numbered = number_samples(
        samples,
        list(by_id),
        what=f"{benchmark} tasks evaluated",
        canonical_id=lambda task_id: normalize_task_id(benchmark, task_id),
        unknown_hint="check --benchmark/--split/--limit or the samples file",
        missing_hint="select only the tasks you have samples for (--split/--limit) or complete "
        "the samples file",
    )
    _check_ks(ks, Counter(s["task_id"] for s in numbered))
    out = _prepare_output_dir(output_dir)
    if out is not None:
        _check_or_write_samples(out, numbered)
    return _judge(
        benchmark,
        by_id,
        numbered,
        ks=ks,
        timeout=timeout,
        memory_mb=memory_mb,
        workers=workers,
        sandbox=sandbox,
        output_dir=out,
        progress=progress,
        timings={},
    )


def _prepare_output_dir(output_dir: str | Path | None) -> Path | None:
    if output_dir is None:
        return None
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output {out} exists and is not a folder; pick a folder path")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_or_write_samples(out: Path, samples: list[dict[str, Any]]) -> None:
    """samples.jsonl holds exactly these samples; an existing different one is refused."""
    path = out / SAMPLES_FILE
    if path.exists():
        previous = [
            {k: r.get(k) for k in ("task_id", "sample_index", "completion")}
            for r in read_jsonl(path)
        ]
        if previous != samples:
            raise OutputDirMismatchError(
                f"{path} holds different samples from the ones evaluated now; use a new "
                "--output folder (or delete this one)"
            )
        return
    write_jsonl(path, samples)


# --------------------------------------------------------------------------------------------------
# Model -> samples


def _generator(model):
    """Our `generate` for our models, `generate_hf` for a transformers model (same shape)."""
    from hrm_codegen.generation import generate, generate_hf

    # A transformers model exists only once transformers' modeling code is imported; asking the
    # lazy `transformers` module for `PreTrainedModel` would import that code, and with it
    # torchao and its load warnings, on every evaluation of our own models.
    modeling = sys.modules.get("transformers.modeling_utils")
    if modeling is not None and isinstance(model, modeling.PreTrainedModel):
        return generate_hf
    return generate


def _with_precision(generate, model, dtype: str | None, compile: bool):
    """`generate` run under autocast in `dtype` (when the model's weights are float32 and dtype
    is lower) and with `compile=True` passed on; HF models cannot take `compile`."""
    import contextlib
    import functools

    import torch

    from hrm_codegen.model.precision import resolve_dtype

    if compile and getattr(generate, "__name__", "") != "generate":
        raise ValueError("--compile applies to hrm/transformer models, not to --model-type hf")
    parameter = next(model.parameters())
    target = resolve_dtype(dtype, parameter.device) if dtype is not None else parameter.dtype
    autocast = parameter.dtype == torch.float32 and target != torch.float32

    @functools.wraps(generate)
    def run(*args, **kwargs):
        context = (
            torch.autocast(parameter.device.type, dtype=target)
            if autocast
            else contextlib.nullcontext()
        )
        with context:
            return generate(*args, **kwargs, **({"compile": True} if compile else {}))

    return run


def sample_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    stop: Sequence[str],
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
    dtype: str | None = None,
    compile: bool = False,
) -> list[list[str]]:
    """`num_samples` generations per prompt, [prompt][sample], decoded the one way every benchmark
    shares: our `generate` (or `generate_hf` for a transformers model), greedy at temperature 0,
    under `dtype` autocast and `compile` as in `evaluate_model`."""
    generate = _with_precision(_generator(model), model, dtype, compile)
    return generate(
        model,
        tokenizer,
        list(prompts),
        max_new_tokens=max_new_tokens,
        num_samples=num_samples,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else 1.0,
        top_p=top_p,
        stop=list(stop),
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )


def _generate_appending(
    model,
    tokenizer,
    items: Sequence,
    *,
    prompt_of: Callable[[Any], str],
    stop_of: Callable[[Sequence], Sequence[str]],
    lines_of: Callable[[Any, list[str]], list[dict[str, Any]]],
    path: Path | None,
    batch_size: int,
    **decoding: Any,
) -> list[list[dict[str, Any]]]:
    """`lines_of(item, generations)` for every item, [item][line], generating with `sample_texts`
    (`decoding` its keywords). With a JSONL `path` the items go in chunks of 4 batches and each
    chunk's lines are appended as it finishes, so a crash loses one chunk (the resumable runs of
    `evaluate_model` and `generate_texts`); `stop_of(chunk)` gives a chunk's stop strings."""
    lines: list[list[dict[str, Any]]] = []
    size = max(4 * batch_size, 1) if path is not None else len(items)
    appender = JsonlAppender(path) if path is not None else None
    try:
        for first in range(0, len(items), size):
            part = items[first : first + size]
            texts = sample_texts(
                model,
                tokenizer,
                [prompt_of(item) for item in part],
                stop=stop_of(part),
                batch_size=batch_size,
                **decoding,
            )
            for item, generations in zip(part, texts):
                lines.append(lines_of(item, generations))
                if appender is not None:
                    for line in lines[-1]:
                        appender.append(line)
    finally:
        if appender is not None:
            appender.close()
    return lines


def evaluate_model(
    model,
    tokenizer,
    tasks: Sequence[CodeTask],
    *,
    num_samples: int = 1,
    ks: Sequence[int] | str = (1,),
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str = "auto",
    progress: bool = True,
    run_info: Mapping[str, Any] | None = None,
    dtype: str | None = None,
    compile: bool = False,
    shard: tuple[int, int] | None = None,
    barrier: Callable[[], None] | None = None,
) -> EvalSummary | None:
    """Generate `num_samples` completions per task, then judge them (see `evaluate_samples`).

    `shard=(rank, world)` with `barrier` (e.g. accelerate's `wait_for_everyone`): this process
    generates the tasks at positions rank, rank + world, ... into its own part file
    (`samples.part<rank>-of<world>.jsonl`, resumed like samples.jsonl); after the barrier rank 0
    merges the parts in task order and judges, and the other ranks return None. Greedy output
    is the one-process run's (each task's prompt is decoded the same way wherever it runs).

    `temperature=0` is greedy decoding. With `output_dir`, generations are appended to
    samples.jsonl task by task, so a rerun regenerates only tasks that were not finished;
    `run_info` (e.g. the checkpoint path) is stored with the generation settings, and a rerun
    with different settings is refused rather than mixing samples of two runs.

    `dtype` (bf16/fp16) runs generation under autocast for a float32 model (as the trainer's
    pass@1 does through accelerate), so the KV cache and the stream are in that dtype; a model
    already cast is left alone. `compile` decodes with a compiled fixed-shape step (our models).
    """
    benchmark, by_id = _index_tasks(tasks)
    ks = parse_ks(ks)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: generate at least one sample per task")
    _check_ks(ks, {task_id: num_samples for task_id in by_id})
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if temperature == 0 and num_samples > 1:
        warnings.warn(
            f"greedy decoding (temperature 0) with num_samples={num_samples} repeats one sample "
            "per task; set a temperature > 0 (e.g. 0.8) for pass@k with k > 1",
            UserWarning,
            stacklevel=2,
        )
    rank, world = shard or (0, 1)
    if world > 1 and (output_dir is None or barrier is None):
        raise ValueError(
            "sharded generation needs an output_dir and a barrier (the ranks meet there)"
        )
    out = _prepare_output_dir(output_dir)
    settings = {
        "benchmark": benchmark,
        "num_samples": num_samples,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        **(dict(run_info) if run_info else {}),
    }
    done: dict[str, list[dict[str, Any]]] = {}
    if out is not None and world > 1:
        if rank == 0:  # checks (and records) the settings once, before the others read them
            done = _resume_generation(out, settings, by_id, num_samples)
        barrier()
        if rank != 0:
            done = _resume_generation(out, settings, by_id, num_samples, write=False)
        part = out / f"samples.part{rank}-of{world}.jsonl"
        done.update(_complete_lines(part, num_samples, repair=True))
    elif out is not None:
        done = _resume_generation(out, settings, by_id, num_samples)
    mine = [t for i, t in enumerate(tasks) if i % world == rank]
    todo = [task for task in mine if task.task_id not in done]
    start = time.perf_counter()
    if todo:
        from hrm_codegen.data.prompts import extract_completion, format_prompt, stop_sequences

        lines = _generate_appending(
            model,
            tokenizer,
            todo,
            prompt_of=format_prompt,
            stop_of=lambda part: stop_sequences(part[0]),
            lines_of=lambda task, generations: [
                {
                    "task_id": task.task_id,
                    "sample_index": index,
                    "completion": extract_completion(task, text),
                    "generation": text,
                }
                for index, text in enumerate(generations)
            ],
            path=(part if world > 1 else out / SAMPLES_FILE) if out is not None else None,
            num_samples=num_samples,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            dtype=dtype,
            compile=compile,
        )
        done.update((task.task_id, task_lines) for task, task_lines in zip(todo, lines))
    generation_s = time.perf_counter() - start
    if world > 1:
        barrier()
        if rank != 0:
            return None
        assert out is not None
        for other in range(world):  # every rank's part, complete tasks only
            done.update(_complete_lines(out / f"samples.part{other}-of{world}.jsonl", num_samples))
        missing = [t.task_id for t in tasks if t.task_id not in done]
        if missing:
            raise RuntimeError(
                f"{len(missing)} task(s) have no samples after every rank finished (first: "
                f"{missing[0]}); rerun the same command: each rank resumes its part"
            )
        # the parts merged in task order: samples.jsonl as one process would have written it
        write_jsonl(out / SAMPLES_FILE, [line for t in tasks for line in done[t.task_id]])
    samples = [
        {k: line[k] for k in ("task_id", "sample_index", "completion")}
        for task in tasks
        for line in done[task.task_id]
    ]
    return _judge(
        benchmark,
        by_id,
        samples,
        ks=ks,
        timeout=timeout,
        memory_mb=memory_mb,
        workers=workers,
        sandbox=sandbox,
        output_dir=out,
        progress=progress,
        timings={"generation_s": generation_s},
    )


def check_run_config(out: Path, settings: Mapping[str, Any], what: str) -> None:
    """Refuse to add to `out` when its run_config.json records other settings (a resumed run must
    not mix outputs of two runs), then record `settings` there. `what` names the run in the
    error (e.g. "an evaluation", "a Polyglot run")."""
    path = out / RUN_CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(
            k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k)
        )
        if changed:
            raise OutputDirMismatchError(
                f"{out} holds {what} made with other settings ({', '.join(changed)}: "
                f"{[previous.get(k) for k in changed]} there, {[settings.get(k) for k in changed]} "
                "now); use a new --output folder (or delete this one)"
            )
    path.write_text(json.dumps(dict(settings), indent=2) + "\n")


def _complete_lines(
    path: Path, num_samples: int, repair: bool = False, known: Mapping[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The tasks of a generation file with all their samples, each sorted by sample index
    (`repair`: rewrite the file without a task cut short, so that appending redoes it; `known`:
    only these task ids count)."""
    if not path.exists():
        return {}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in read_jsonl(path, repair_tail=True):
        grouped[line["task_id"]].append(line)
    done = {
        task_id: sorted(lines, key=lambda line: line["sample_index"])
        for task_id, lines in grouped.items()
        if (known is None or task_id in known) and len(lines) == num_samples
    }
    if repair and len(done) != len(grouped):
        write_jsonl(path, [line for lines in done.values() for line in lines])
    return done


def _resume_generation(
    out: Path,
    settings: dict[str, Any],
    by_id: Mapping[str, CodeTask],
    num_samples: int,
    write: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Finished generations in `out` (all samples of a task), after checking the settings match
    (`write=False`: only check them, as ranks other than 0 of a sharded run do)."""
    config_path = out / RUN_CONFIG_FILE
    samples_path = out / SAMPLES_FILE
    if samples_path.exists() and not config_path.exists():
        raise OutputDirMismatchError(
            f"{samples_path} exists but {config_path} does not: the folder was not written by "
            "evaluate_model; use a new --output folder, or judge those samples with --samples"
        )
    if write:
        check_run_config(out, settings, "an evaluation")
    elif json.loads(config_path.read_text()) != json.loads(json.dumps(dict(settings))):
        raise OutputDirMismatchError(f"{out} holds an evaluation made with other settings")
    # a task cut short by a crash is dropped from the file: it is redone
    return _complete_lines(samples_path, num_samples, repair=True, known=by_id)


def generate_texts(
    model,
    tokenizer,
    prompts: Mapping[str, str],
    *,
    stop: Sequence[str],
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    dtype: str | None = None,
    compile: bool = False,
    output_file: str | Path | None = None,
) -> dict[str, list[str]]:
    """`num_samples` raw generations per prompt (keyed as `prompts`), for benchmarks whose
    prompts are not `CodeTask`s (LCB). With `output_file` (JSONL), generations are appended
    key by key and a rerun generates only the keys not finished there."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: generate at least one sample per prompt")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    done: dict[str, list[str]] = {}
    path = Path(output_file) if output_file is not None else None
    if path is not None and path.exists():
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in read_jsonl(path, repair_tail=True):
            grouped[str(line.get("key"))].append(line)
        complete = {key: lines for key, lines in grouped.items() if len(lines) == num_samples}
        done = {
            key: [line["generation"] for line in sorted(lines, key=lambda x: x["sample_index"])]
            for key, lines in complete.items()
            if key in prompts
        }
        if len(complete) != len(grouped):  # a crash mid-prompt: redo that prompt only
            write_jsonl(path, [line for lines in complete.values() for line in lines])
    todo = [key for key in prompts if key not in done]
    if todo:
        lines = _generate_appending(
            model,
            tokenizer,
            todo,
            prompt_of=prompts.__getitem__,
            stop_of=lambda part: stop,
            lines_of=lambda key, generations: [
                {"key": key, "sample_index": index, "generation": text}
                for index, text in enumerate(generations)
            ],
            path=path,
            num_samples=num_samples,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            dtype=dtype,
            compile=compile,
        )
        for key, key_lines in zip(todo, lines):
            done[key] = [line["generation"] for line in key_lines]
    return {key: done[key] for key in prompts}


# --------------------------------------------------------------------------------------------------
# Models from disk (the command line is in cli.py)


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder (`config.json` inside), a training run folder holding `checkpoint/`, or a
    folder of runs (`runs/quickstart`: its latest run), with errors phrased for `--ckpt`."""
    from hrm_codegen.model.checkpoint import CheckpointError, resolve_checkpoint_dir

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--ckpt {path} does not exist")
    try:
        return resolve_checkpoint_dir(path)
    except CheckpointError:
        raise ValueError(
            f"--ckpt {path} is not a model: expected {path}/config.json (a saved model, e.g. "
            f"<run>/best), {path}/checkpoint/config.json (a training run folder) or "
            f"{path}/<run>/checkpoint/config.json (a folder of runs)"
        ) from None


def load_model(
    model_type: str,
    ckpt: str | Path,
    *,
    tokenizer_path: str | Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    quantize: str | None = None,
):
    """(model, tokenizer) for `--model-type hrm|transformer|<registered>|hf --ckpt PATH`.

    Every family of `hrm_codegen.model.registry` loads with `load_model_dir` and the tokenizer
    saved next to the weights (or `tokenizer_path`); `hf` is any local Hugging Face causal LM
    folder, with its own tokenizer.
    `dtype` (`auto|bf16|fp16|fp32`, see `precision.resolve_dtype`) casts the weights, so the
    stream, the KV cache and decoding run in it; None keeps the saved dtype. `quantize`
    (`int8|int8-dynamic|int4`, see `hrm_codegen.quantization`) quantizes the cast model's
    projections; a checkpoint saved quantized loads quantized without it.
    """
    from hrm_codegen.model.precision import resolve_dtype

    if quantize is not None:
        from hrm_codegen.quantization import quantize_model

        model, tokenizer = load_model(
            model_type, ckpt, tokenizer_path=tokenizer_path, device=device, dtype=dtype
        )
        return quantize_model(model, quantize), tokenizer

    torch_dtype = resolve_dtype(dtype, device) if dtype is not None else None
    folder = resolve_model_dir(ckpt)
    from hrm_codegen.model import registry

    if model_type in registry.model_types():
        from hrm_codegen.tokenization import load_tokenizer

        saved = json.loads((folder / "config.json").read_text())
        saved_type = saved.get("model_type")
        if not registry.get_model_type(model_type).is_dir(folder):
            hint = saved_type if saved_type in registry.model_types() else "hf"
            raise ValueError(
                f"--model-type {model_type}, but {folder}/config.json says model_type="
                f"{saved_type!r}; pass --model-type {hint}"
            )
        model = registry.load_model_dir(folder, device=device)
        quantized = saved.get("quantization")
        if torch_dtype is not None and quantized is None:  # quantized weights keep their dtype
            model = model.to(torch_dtype)
        source = tokenizer_path or folder
        if tokenizer_path is None and not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(
                f"{folder} has no tokenizer.json; pass --tokenizer (e.g. gpt2 or a folder)"
            )
        return model, load_tokenizer(source)
    if model_type == "hf":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # our own export (scripts/export_hf.py) ships its modeling code: trust that, nothing else
        config_path = folder / "config.json"
        exported = json.loads(config_path.read_text()).get("model_type") == "hrm_codegen"
        try:
            model = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, trust_remote_code=exported or None
            )
            tokenizer = AutoTokenizer.from_pretrained(
                tokenizer_path or folder, local_files_only=True, trust_remote_code=exported or None
            )
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"{folder} is not a Hugging Face causal LM folder transformers can load ({error}); "
                "for checkpoints of this repository pass --model-type hrm or transformer"
            ) from error
        if not tokenizer("def f(x):\n    return x\n")["input_ids"]:
            raise ValueError(
                f"the tokenizer in {tokenizer_path or folder} turns code into no tokens; save a "
                "working tokenizer with the model or pass --tokenizer"
            )
        return model.to(device=device, dtype=torch_dtype), tokenizer
    raise ValueError(
        f"--model-type {model_type!r} unknown; use one of {[*registry.model_types(), 'hf']}"
    )
