"""Best-of-n at test time: sample N completions per task, submit one.

Two rankings, reported under different names because only one is a pass@1:

- `logprob`: the sample with the highest mean token log-probability under the model (the model's
  own confidence; no test is run), a legitimate pass@1 of a best-of-N decoder. Metric name
  `pass@1[best-of-N,logprob]`.
- `first-test`: run each sample against the task's *first* test only and submit one that passes
  it (the most confident among those, else the most confident sample). It uses a test the
  grader also runs, so its score is not pass@1: it is reported as `first-test@1[best-of-N]`.

How `scripts/evaluate.py --best-of N --rank logprob|first-test` uses this module:

    from hrm_codegen.evaluation.best_of_n import best_of_n_samples, metric_name
    samples = best_of_n_samples(model, tokenizer, tasks, n=args.best_of, rank=args.rank,
                                sampling=SamplingSettings.from_args(args),
                                timeout=args.timeout, workers=args.workers,
                                memory_mb=args.memory_mb, sandbox=args.sandbox)
    summary = evaluate_samples(tasks, samples, ks=(1,), timeout=..., workers=...,
                               output_dir=args.output)   # one sample per task -> pass@1
    print(metric_name(args.rank, args.best_of), summary.pass_at_k["pass@1"])

The samples keep `mean_logprob`, `sample_index` and `rank` fields for the results files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from hrm_codegen.data import CodeTask
from hrm_codegen.data.prompts import extract_completion, format_prompt, stop_sequences
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation.sampling import SamplingSettings, sample_texts
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    SandboxProgram,
    run_programs,
)
from hrm_codegen.generation import encode_prompt

RANKS = ("logprob", "first-test")
BEST_OF_N_SAMPLING = SamplingSettings(temperature=0.8)  # n greedy samples would be one


def metric_name(rank: str, n: int) -> str:
    """The name a best-of-`n` score is reported under (see the module docstring)."""
    check_rank(rank)
    if rank == "logprob":
        return f"pass@1[best-of-{n},logprob]"
    return f"first-test@1[best-of-{n}]"


def check_rank(rank: str) -> None:
    if rank not in RANKS:
        raise ValueError(f"--rank {rank!r} is not one of {RANKS}")


@torch.inference_mode()
def mean_token_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
) -> list[list[float]]:
    """Mean log-probability of each completion's tokens given BOS + its prompt, [prompt][sample].

    The completion text is scored as submitted (tokenised on its own after the prompt's tokens,
    as generation produced it), teacher-forced in one forward per batch at temperature 1: the
    model's distribution, not the one sampled from. An empty completion scores -inf.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} lists of completions")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[tuple[int, int, list[int], int]] = []  # (prompt, sample, ids, prompt length)
    for p, (prompt, samples) in enumerate(zip(prompts, completions)):
        prompt_ids = encode_prompt(tokenizer, prompt)
        for j, text in enumerate(samples):
            ids = prompt_ids + tokenizer.encode(text, add_special_tokens=False)
            rows.append((p, j, ids, len(prompt_ids)))
    scores: list[list[float]] = [[float("-inf")] * len(s) for s in completions]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(ids) for _, _, ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            for r, (_, _, ids, _) in enumerate(chunk):
                input_ids[r, : len(ids)] = torch.tensor(ids)
            logits = model(input_ids.to(device)).logits.float()  # right padding: never attended
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            token_logp = logp.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            for r, (p, j, ids, prompt_len) in enumerate(chunk):
                if len(ids) > prompt_len:
                    scores[p][j] = float(token_logp[r, prompt_len - 1 : len(ids) - 1].mean())
    finally:
        model.train(was_training)
    return scores


def _by_task(samples: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, Mapping]]]:
    groups: dict[str, list[tuple[int, Mapping]]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(str(sample["task_id"]), []).append((index, sample))
    return groups


def _most_confident(group: list[tuple[int, Mapping]]) -> tuple[int, Mapping]:
    """Highest `mean_logprob` (missing counts as -inf); ties go to the earliest sample."""
    return max(group, key=lambda item: (item[1].get("mean_logprob", float("-inf")), -item[0]))


def select_by_logprob(samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One sample per task (tasks in first-seen order): the highest `mean_logprob`."""
    return [
        {**_most_confident(group)[1], "rank": "logprob"} for group in _by_task(samples).values()
    ]


def select_by_first_test(
    tasks: Sequence[CodeTask],
    samples: Sequence[Mapping[str, Any]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int | None = None,
    sandbox: str = "auto",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One sample per task: the most confident among those passing the task's first test, else
    the most confident of all (`first_test_passed` says which). MBPP-style tasks only: HumanEval
    has one `check` function, no separate first test."""
    by_id = {task.task_id: task for task in tasks}
    groups = _by_task(samples)
    programs, owners = [], []
    for task_id, group in groups.items():
        task = by_id.get(task_id)
        if task is None:
            raise ValueError(
                f"sample for unknown task {task_id!r}: pass the tasks it was drawn for"
            )
        if task.benchmark == "humaneval" or not task.tests:
            raise ValueError(
                f"--rank first-test needs tasks with separate assert tests (MBPP-style); "
                f"{task_id} has none to run alone; use --rank logprob"
            )
        first = dataclasses.replace(task, tests=task.tests[:1])
        for index, sample in group:
            programs.append(SandboxProgram(*program_parts(first, str(sample["completion"]))))
            owners.append(index)
    results = run_programs(
        programs,
        timeout,
        memory_mb,
        workers,
        sandbox,
        progress=progress,
        desc="first test",
    )
    passed = {index for index, result in zip(owners, results) if result.passed}
    selected = []
    for group in groups.values():
        passing = [item for item in group if item[0] in passed]
        _, sample = _most_confident(passing or group)
        selected.append({**sample, "rank": "first-test", "first_test_passed": bool(passing)})
    return selected


def select_best_of_n(
    tasks: Sequence[CodeTask], samples: Sequence[Mapping[str, Any]], rank: str, **sandbox: Any
) -> list[dict[str, Any]]:
    """`select_by_logprob` or `select_by_first_test` (which takes the sandbox keywords)."""
    check_rank(rank)
    if rank == "logprob":
        return select_by_logprob(samples)
    return select_by_first_test(tasks, samples, **sandbox)


def best_of_n_samples(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Sequence[CodeTask],
    *,
    n: int,
    rank: str = "logprob",
    sampling: SamplingSettings = BEST_OF_N_SAMPLING,
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Sample `n` completions per task, score them, and return the one submission per task."""
    check_rank(rank)
    if n < 1:
        raise ValueError(f"--best-of {n}: give the number of samples per task, >= 1")
    if n > 1 and sampling.temperature <= 0:
        raise ValueError(
            f"--best-of {n} with temperature {sampling.temperature}: greedy samples are all the "
            "same; pass --temperature > 0 (e.g. 0.8)"
        )
    prompts = [format_prompt(task) for task in tasks]
    samples: list[dict[str, Any]] = []
    by_stop: dict[tuple[str, ...], list[int]] = {}
    for index, task in enumerate(tasks):
        by_stop.setdefault(tuple(stop_sequences(task)), []).append(index)
    texts: list[list[str]] = [[] for _ in tasks]
    for stop, indices in by_stop.items():
        generated = sample_texts(
            model,
            tokenizer,
            [prompts[i] for i in indices],
            stop=stop,
            num_samples=n,
            sampling=sampling,
            progress=progress,
        )
        for i, outputs in zip(indices, generated):
            texts[i] = [extract_completion(tasks[i], text) for text in outputs]
    scores = mean_token_logprobs(model, tokenizer, prompts, texts, batch_size=sampling.batch_size)
    for task, completions, task_scores in tqdm(
        list(zip(tasks, texts, scores)), desc="rank", disable=not progress
    ):
        for j, (completion, score) in enumerate(zip(completions, task_scores)):
            samples.append(
                {
                    "task_id": task.task_id,
                    "completion": completion,
                    "mean_logprob": score,
                    "sample_index": j,
                }
            )
    return select_best_of_n(
        tasks,
        samples,
        rank,
        **(
            {}
            if rank == "logprob"
            else dict(
                timeout=timeout,
                memory_mb=memory_mb,
                workers=workers,
                sandbox=sandbox,
                progress=progress,
            )
        ),
    )
