"""Score a model on exec tasks: greedy answers graded as LCB's code execution (an `ast` literal
compared with the sandbox's answer, nothing run), counted by difficulty bucket; and, for a model
with adaptive computation, how many segments its Q head asks for against the task's steps; and
the floor every model is read against (`trivial_baselines`).

One place for both callers: the in-training `val/exec_acc` (train_cli) and the study's per-run
evaluation (study/runner.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def score_exec_model(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Sequence[Any],
    *,
    edges: Sequence[int],
    max_new_tokens: int = 48,
    batch_size: int = 32,
) -> dict[str, Any]:
    """{"n", "correct", "accuracy", "buckets": {bucket: {"n", "correct"}}} of greedy answers to
    `tasks` (ExecTask), bucketed by `edges` (the benchmark manifest's)."""
    from hrm_codegen.data.exec_programs import bucket_of
    from hrm_codegen.data.prompts import EXEC_ANSWER_STOP
    from hrm_codegen.evaluation.lcb.grading import grade_execution
    from hrm_codegen.evaluation.sampling import SamplingSettings, generate_texts

    texts = generate_texts(
        model,
        tokenizer,
        {t.task_id: t.prompt() for t in tasks},
        stop=EXEC_ANSWER_STOP,
        sampling=SamplingSettings(max_new_tokens=max_new_tokens, batch_size=batch_size),
        progress=False,
    )
    buckets: dict[str, dict[str, int]] = {}
    correct = 0
    for task in tasks:
        right = grade_execution(task.problem(edges), texts[task.task_id][0]).passed
        bucket = buckets.setdefault(bucket_of(task.steps, edges), {"n": 0, "correct": 0})
        bucket["n"] += 1
        bucket["correct"] += int(right)
        correct += int(right)
    return {
        "n": len(tasks),
        "correct": correct,
        "accuracy": correct / len(tasks) if tasks else float("nan"),
        "buckets": dict(sorted(buckets.items(), key=lambda kv: _bucket_order(kv[0]))),
    }


def _bucket_order(name: str) -> float:
    """`<=8` < `<=16` < ... < `>512`."""
    number = float(name.lstrip("<=>"))
    return number + (0.5 if name.startswith(">") else 0.0)


@torch.no_grad()
def act_segments(model: torch.nn.Module, tokenizer: Any, tasks: Sequence[Any]) -> dict[str, Any]:
    """Segments the Q head asks for on each task's prompt (one prompt at a time, so no other
    prompt's wish enters), and their Spearman rank correlation with the task's steps: does the
    model spend more on harder programs?"""
    from scipy.stats import spearmanr

    segments = []
    device = next(model.parameters()).device
    for task in tasks:
        ids = tokenizer(task.prompt(), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[tokenizer.bos_token_id, *ids]], device=device)
        segments.append(int(model.prepare_for_decoding(ids)))
        model.end_decoding()
    steps = [t.steps for t in tasks]
    rho, p_value = spearmanr(steps, segments) if len(set(segments)) > 1 else (float("nan"), 1.0)
    return {
        "n": len(tasks),
        "mean_segments": sum(segments) / len(segments) if segments else float("nan"),
        "spearman_rho": float(rho),
        "p_value": float(p_value),
        "segments": segments,
        "steps": steps,
    }


def trivial_baselines(
    train: Sequence[Any], splits: dict[str, Sequence[Any]], edges: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Accuracy of answers written without reading the program, graded as a model's: the train
    split's most common answer for every task, and the call's own argument (`f(ARG)` answers
    `ARG`, as if the function returned its input). A model below these has not learned to
    trace programs yet, whatever its rank among models."""
    from collections import Counter

    from hrm_codegen.evaluation.lcb.grading import grade_execution

    constant = Counter(task.output for task in train).most_common(1)[0][0]
    guesses = {
        f"always {constant}": lambda task: constant,
        "the argument": lambda task: task.call[task.call.index("(") + 1 : -1],
    }
    return {
        name: {
            split: sum(grade_execution(t.problem(edges), guess(t)).passed for t in tasks)
            / len(tasks)
            for split, tasks in splits.items()
            if tasks
        }
        for name, guess in guesses.items()
    }


__all__ = ["act_segments", "score_exec_model", "trivial_baselines"]
