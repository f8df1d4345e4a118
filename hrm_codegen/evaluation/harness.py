"""The CodeTask benchmarks (MBPP, MBPP sanitized, HumanEval, toy): samples -> sandboxed
results -> pass@k, and a model -> samples first.

`evaluate_samples` judges given completions; `evaluate_model` generates them with our models or
any Hugging Face causal LM (`sampling.sample_texts`), then judges them. Both write through the
run store (`store.RunStore`: samples.jsonl, results.jsonl appended as verdicts come,
summary.json), so a rerun with the same folder picks up where a crash left off: finished
generations and judged samples are not redone. The command line's run is `code_cli.py`.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hrm_codegen.data import CodeTask, normalize_task_id
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation.failures import classify_failure
from hrm_codegen.evaluation.passk import check_ks, parse_ks
from hrm_codegen.evaluation.results import (
    RUN_CONFIG_FILE,
    SAMPLES_FILE,
    EvalSummary,
    summarize_records,
    write_jsonl,
)
from hrm_codegen.evaluation.sampling import SamplingSettings, generate_appending
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    STATUSES,
    SandboxProgram,
    default_workers,
    resolve_backend,
    run_programs,
)
from hrm_codegen.evaluation.store import (
    OutputDirMismatchError,
    RunStore,
    complete_lines,
    judging_timings,
    number_samples,
)

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


def _judge(
    benchmark: str,
    by_id: Mapping[str, CodeTask],
    samples: list[dict[str, Any]],
    store: RunStore,
    *,
    ks: tuple[int, ...],
    timeout: float,
    memory_mb: int,
    workers: int | None,
    sandbox: str,
    progress: bool,
    timings: dict[str, float],
) -> EvalSummary:
    """Run every sample not judged yet in the store, appending results as they come, then
    summarise."""
    judged = store.judged(samples)
    pending = [s for s in samples if (s["task_id"], s["sample_index"]) not in judged]
    backend = resolve_backend(sandbox)
    workers = default_workers() if workers is None else workers
    if judged:
        print(f"{len(judged)} sample(s) already judged in {store.folder}; running {len(pending)}")
    # Candidate and tests kept apart: the tests run against pristine built-ins and modules and
    # compare only trusted values, so a wrong program cannot make them lie.
    programs = [
        SandboxProgram(*program_parts(by_id[s["task_id"]], s["completion"])) for s in pending
    ]

    def verdict(index: int, result: Any) -> dict[str, Any]:
        return {
            **pending[index],
            "passed": result.passed,
            "status": result.status,
            "detail": result.detail,
            "exit_code": result.exit_code,
            "duration": round(result.duration, 4),
            "failure_cause": classify_failure(result.status, result.detail, result.stderr_tail),
        }

    seconds = store.judge(
        lambda emit: run_programs(
            programs,
            timeout=timeout,
            memory_mb=memory_mb,
            workers=workers,
            backend=backend,
            on_result=lambda index, result: emit(verdict(index, result)),
            progress=progress,
            desc=f"judging {benchmark}",
        ),
        judged,
    )
    summary = summarize_records(
        benchmark,
        list(by_id),
        list(judged.values()),
        ks=ks,
        statuses=STATUSES,
        timings=judging_timings(timings, seconds, len(pending)),
        settings={
            "sandbox": backend,
            "timeout_s": timeout,
            "memory_mb": memory_mb,
            "workers": workers,
            "ks": list(ks),
        },
    )
    store.write_summary(summary)
    return summary


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
    check_ks(ks, Counter(s["task_id"] for s in numbered))
    store = RunStore.open(output_dir)
    store.keep_samples(numbered)
    return _judge(
        benchmark,
        by_id,
        numbered,
        store,
        ks=ks,
        timeout=timeout,
        memory_mb=memory_mb,
        workers=workers,
        sandbox=sandbox,
        progress=progress,
        timings={},
    )


# --------------------------------------------------------------------------------------------------
# Model -> samples


def evaluate_model(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[CodeTask],
    *,
    num_samples: int = 1,
    ks: Sequence[int] | str = (1,),
    sampling: SamplingSettings | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    output_dir: str | Path | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str = "auto",
    progress: bool = True,
    run_info: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    barrier: Callable[[], None] | None = None,
) -> EvalSummary | None:
    """Generate `num_samples` completions per task, then judge them (see `evaluate_samples`).

    `sampling` says how completions are decoded (`SamplingSettings`: greedy by default, with
    the seed, dtype, compiled step and speculative draft); the trainer, GSPO, the studies, the
    GPU check and evaluate.py each build one.

    `shard=(rank, world)` with `barrier` (e.g. accelerate's `wait_for_everyone`): this process
    generates the tasks at positions rank, rank + world, ... into its own part file
    (`samples.part<rank>-of<world>.jsonl`, resumed like samples.jsonl); after the barrier rank 0
    merges the parts in task order and judges, and the other ranks return None. Greedy output
    is the one-process run's (each task's prompt is decoded the same way wherever it runs).

    With `output_dir`, generations are appended to
    samples.jsonl task by task, so a rerun regenerates only tasks that were not finished;
    `run_info` (e.g. the checkpoint path) is stored with the generation settings, and a rerun
    with different settings is refused rather than mixing samples of two runs.

    `sampling.dtype` (bf16/fp16) runs generation under autocast for a float32 model (as the
    trainer's pass@1 does through accelerate), so the KV cache and the stream are in that dtype;
    a model already cast is left alone.
    """
    benchmark, by_id = _index_tasks(tasks)
    ks = parse_ks(ks)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: generate at least one sample per task")
    check_ks(ks, {task_id: num_samples for task_id in by_id})
    sampling = sampling or SamplingSettings()
    if sampling.temperature == 0 and num_samples > 1:
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
    store = RunStore.open(output_dir)
    settings = {
        "benchmark": benchmark,
        "num_samples": num_samples,
        **sampling.recorded(),
        **(dict(run_info) if run_info else {}),
    }
    generated = _generate(
        model, tokenizer, tasks, store, settings, num_samples=num_samples, sampling=sampling,
        progress=progress, rank=rank, world=world, barrier=barrier,
    )  # fmt: skip
    if generated is None:  # another rank's share: rank 0 judges
        return None
    done, generation_s = generated
    samples = [
        {k: line[k] for k in ("task_id", "sample_index", "completion")}
        for task in tasks
        for line in done[task.task_id]
    ]
    return _judge(
        benchmark,
        by_id,
        samples,
        store,
        ks=ks,
        timeout=timeout,
        memory_mb=memory_mb,
        workers=workers,
        sandbox=sandbox,
        progress=progress,
        timings={"generation_s": generation_s},
    )


def _generate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[CodeTask],
    store: RunStore,
    settings: dict[str, Any],
    *,
    num_samples: int,
    sampling: SamplingSettings,
    progress: bool,
    rank: int,
    world: int,
    barrier: Callable[[], None] | None,
) -> tuple[dict[str, list[dict[str, Any]]], float] | None:
    """({task_id: its samples.jsonl lines}, seconds generating): what the store holds, plus the
    tasks generated now. Sharded (`world` > 1): this rank's share goes to its own part file;
    after the barrier rank 0 merges every part into samples.jsonl, the other ranks get None."""
    by_id = {task.task_id: task for task in tasks}
    part = store.file(f"samples.part{rank}-of{world}.jsonl" if world > 1 else SAMPLES_FILE)
    done: dict[str, list[dict[str, Any]]] = {}
    if world > 1:
        assert barrier is not None
        if rank == 0:  # checks (and records) the settings once, before the others read them
            done = _resume_generation(store, settings, by_id, num_samples)
        barrier()
        if rank != 0:
            done = _resume_generation(store, settings, by_id, num_samples, write=False)
        done.update(complete_lines(part, num_samples, repair=True))
    elif store.folder is not None:
        done = _resume_generation(store, settings, by_id, num_samples)
    mine = [t for i, t in enumerate(tasks) if i % world == rank]
    todo = [task for task in mine if task.task_id not in done]
    start = time.perf_counter()
    if todo:
        from hrm_codegen.data.prompts import extract_completion, format_prompt, stop_sequences

        lines = generate_appending(
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
            path=part,
            num_samples=num_samples,
            sampling=sampling,
            progress=progress,
        )
        done.update((task.task_id, task_lines) for task, task_lines in zip(todo, lines))
    seconds = time.perf_counter() - start
    if world == 1:
        return done, seconds
    assert barrier is not None
    barrier()
    if rank != 0:
        return None
    for other in range(world):  # every rank's part, complete tasks only
        done.update(complete_lines(store.file(f"samples.part{other}-of{world}.jsonl"), num_samples))
    missing = [t.task_id for t in tasks if t.task_id not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} task(s) have no samples after every rank finished (first: "
            f"{missing[0]}); rerun the same command: each rank resumes its part"
        )
    # the parts merged in task order: samples.jsonl as one process would have written it
    write_jsonl(store.file(SAMPLES_FILE), [line for t in tasks for line in done[t.task_id]])
    return done, seconds


def _resume_generation(
    store: RunStore,
    settings: dict[str, Any],
    by_id: Mapping[str, CodeTask],
    num_samples: int,
    write: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Finished generations in the store (all samples of a task), after checking the settings
    match (`write=False`: only check them, as ranks other than 0 of a sharded run do)."""
    config_path, samples_path = store.file(RUN_CONFIG_FILE), store.file(SAMPLES_FILE)
    if samples_path.exists() and not config_path.exists():
        raise OutputDirMismatchError(
            f"{samples_path} exists but {config_path} does not: the folder was not written by "
            "evaluate_model; use a new --output folder, or judge those samples with --samples"
        )
    store.check_settings(settings, "an evaluation", write=write)
    # a task cut short by a crash is dropped from the file: it is redone
    return complete_lines(samples_path, num_samples, known=by_id, repair=True)


# --------------------------------------------------------------------------------------------------
# Models from disk (the command line is in cli.py and code_cli.py)


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder (`config.json` inside), a training run folder holding `checkpoint/`, or a
    folder of runs (`runs/quickstart`: its latest run), with errors phrased for `--ckpt`."""
    from hrm_codegen.model.loading import model_folder

    try:
        return model_folder(path)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"--ckpt {error}") from None


def load_model_and_tokenizer(
    model_type: str,
    ckpt: str | Path,
    *,
    tokenizer_path: str | Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    quantize: str | None = None,
):
    """(model, tokenizer) for `--model-type <cli name of a registered family>|hf --ckpt PATH`.

    The model comes from `hrm_codegen.model.load_model` (which see for `dtype` and `quantize`);
    this adds the command line's checks (the folder holds the `--model-type` given) and the
    tokenizer: for a registered family the one saved next to the weights (or `tokenizer_path`),
    for `hf` (any local Hugging Face causal LM folder) its own.
    """
    from hrm_codegen.model import registry
    from hrm_codegen.model.loading import HF_FAMILY, load_model

    folder = resolve_model_dir(ckpt)
    if model_type == HF_FAMILY:
        from transformers import AutoTokenizer

        from hrm_codegen.model.loading import EXPORT_MODEL_TYPE, saved_model_type

        model = load_model(folder, family=HF_FAMILY, device=device, dtype=dtype, quantize=quantize)
        # our own export (scripts/export_hf.py) ships its code: trust that, nothing else
        exported = saved_model_type(folder) == EXPORT_MODEL_TYPE
        try:
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
        return model, tokenizer
    if model_type not in registry.cli_names():
        raise ValueError(
            f"--model-type {model_type!r} unknown; use one of {[*registry.cli_names(), 'hf']}"
        )
    from hrm_codegen.model.loading import saved_model_type
    from hrm_codegen.tokenization import load_tokenizer

    entry = registry.get_model_type_by_cli_name(model_type)
    if not entry.is_dir(folder):
        saved_type = saved_model_type(folder)
        claimed = [registry.get_model_type(n) for n in registry.model_types()]
        hint = next((e.cli_name for e in claimed if e.is_dir(folder)), HF_FAMILY)
        raise ValueError(
            f"--model-type {model_type}, but {folder}/config.json says model_type="
            f"{saved_type!r}; pass --model-type {hint}"
        )
    if tokenizer_path is None and not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no tokenizer.json; pass --tokenizer (e.g. gpt2 or a folder)"
        )
    model = load_model(folder, family=entry.name, device=device, dtype=dtype, quantize=quantize)
    return model, load_tokenizer(tokenizer_path or folder)
