"""Bits per byte of the Polyglot example solutions given their prompts:
`scripts/evaluate.py --benchmark polyglot --metric bpb`.

At our scale every pass rate is 0; how well a model predicts the right answer moves long before
it writes one. The text scored is the reference answer in the `whole` edit format (each example
solution file as its name and a fenced block: what `reference_samples` answers and a passing
model writes), after BOS and the try-1 prompt fitted to the model's context (`fitting`), so the
model reads exactly what the pass-rate run would send it. An exercise whose stubs do not fit is
skipped and counted (`prompt_too_long`), as there.

An answer longer than the context left after its prompt is scored in windows of the model's
`max_seq_len`: the first holds the whole prompt, each later one scores the next R answer tokens
(R = `fitting.response_reserve`) after the L - R tokens before them, so every answer token is
predicted from at least as many tokens as the prompt may take. Bits are summed over the answer's
tokens (no EOS: the answer's end is a stop string, not a token) and divided by its UTF-8 bytes;
per language and overall, sum of bits over sum of bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_codegen.evaluation.polyglot.exercises import Exercise, example_solution, load_exercises
from hrm_codegen.evaluation.polyglot.fitting import PromptFitter
from hrm_codegen.evaluation.polyglot.prompts import format_files

if TYPE_CHECKING:  # torch is imported where a model is scored
    import torch

    from hrm_codegen.bpb import BpbTotals

BPB_FILE = "bpb.json"


def example_answer(exercise: Exercise) -> str:
    """The reference answer scored: the example solution in the `whole` format."""
    return format_files(example_solution(exercise))


def scoring_windows(
    prompt_tokens: int, total: int, max_seq_len: int, stride: int
) -> list[tuple[int, int, int]]:
    """(start, end, first) per window over a sequence of `total` tokens whose first
    `prompt_tokens` are the prompt: the window reads tokens start..end-1 (at most `max_seq_len`)
    and scores the tokens at positions first..end-1; together they score every answer token once.
    """
    if not 0 < prompt_tokens < total:
        raise ValueError(f"need a prompt and an answer: {prompt_tokens} of {total} tokens")
    if prompt_tokens > max_seq_len - stride:
        raise ValueError(
            f"a prompt of {prompt_tokens} tokens leaves fewer than {stride} of {max_seq_len}"
        )
    windows = []
    start, first, end = 0, prompt_tokens, min(total, max_seq_len)
    while True:
        windows.append((start, end, first))
        if end >= total:
            return windows
        first, end = end, min(total, end + stride)
        start = max(0, end - max_seq_len)


def window_batches(
    ids: Sequence[int], windows: Sequence[tuple[int, int, int]]
) -> list[dict[str, torch.Tensor]]:
    """One batch per window: its tokens, and as labels (aligned: label t is token t + 1) the
    tokens it scores, -100 elsewhere."""
    import torch

    from hrm_codegen.losses import IGNORE_INDEX

    batches = []
    for start, end, first in windows:
        labels = [ids[p + 1] if first <= p + 1 < end else IGNORE_INDEX for p in range(start, end)]
        batches.append(
            {
                "input_ids": torch.tensor([list(ids[start:end])], dtype=torch.long),
                "labels": torch.tensor([labels], dtype=torch.long),
                "attention_mask": torch.ones(1, end - start, dtype=torch.long),
            }
        )
    return batches


def score_example(
    model: Any,
    tokenizer: Any,
    exercise: Exercise,
    fitter: PromptFitter,
    stride: int,
    byte_lengths: torch.Tensor,
    device: str | None = None,
) -> tuple[str, BpbTotals | None, int]:
    """(how the prompt was fitted, the answer's totals, the windows it took; None and 0 when
    the prompt cannot fit)."""
    from hrm_codegen.bpb import dataset_bpb

    stubs = {name: exercise.read(name) for name in exercise.solution_files}
    prompt = fitter.first(exercise, "whole", stubs)
    if prompt.text is None:
        return prompt.fit, None, 0
    prompt_ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt.text, add_special_tokens=False)]
    answer_ids = tokenizer.encode(example_answer(exercise), add_special_tokens=False)
    ids = prompt_ids + answer_ids
    limit = int(model.config.max_seq_len)
    windows = scoring_windows(len(prompt_ids), len(ids), limit, stride)
    totals = dataset_bpb(model, window_batches(ids, windows), byte_lengths, device=device)
    return prompt.fit, totals, len(windows)


def polyglot_bpb(
    model: Any,
    tokenizer: Any,
    exercises: Sequence[Exercise],
    *,
    max_new_tokens: int,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Bits per byte of each exercise's reference answer, per language and overall, with the
    prompts fitted to the model's context as a pass-rate run with `max_new_tokens` fits them;
    `per_exercise` holds each exercise's fit and totals."""
    from tqdm.auto import tqdm

    from hrm_codegen.bpb import BpbTotals, token_byte_lengths

    if tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no bos_token_id; load it with hrm_codegen.tokenization")
    fitter = PromptFitter.for_model(model, tokenizer, max_new_tokens)
    if fitter is None:
        raise ValueError("--metric bpb needs a model whose config states max_seq_len")
    stride = int(model.config.max_seq_len) - fitter.max_prompt_tokens
    byte_lengths = token_byte_lengths(tokenizer)
    by_language: dict[str, BpbTotals] = {}
    counts: dict[str, dict[str, int]] = {}
    per_exercise: dict[str, dict[str, Any]] = {}
    for exercise in tqdm(exercises, desc="polyglot bpb", disable=not progress, unit="exercise"):
        fit, totals, windows = score_example(
            model, tokenizer, exercise, fitter, stride, byte_lengths, device
        )
        count = counts.setdefault(
            exercise.language,
            {"exercises": 0, "scored": 0, "whole": 0, "truncated": 0, "prompt_too_long": 0},
        )
        count["exercises"] += 1
        count[fit] += 1
        row: dict[str, Any] = {"fit": fit}
        if totals is not None:
            count["scored"] += 1
            by_language[exercise.language] = (
                by_language.get(exercise.language, BpbTotals()) + totals
            )
            row.update(bpb=totals.bpb, bytes=totals.bytes, tokens=totals.tokens, windows=windows)
        per_exercise[exercise.task_id] = row
    overall = sum(by_language.values(), BpbTotals())
    per_language = {}
    for language, count in counts.items():
        totals = by_language.get(language, BpbTotals())
        per_language[language] = {
            "bpb": totals.bpb,
            "bytes": totals.bytes,
            "tokens": totals.tokens,
            **count,
        }
    return {
        "bpb": overall.bpb,
        "loss": overall.loss,
        "tokens": overall.tokens,
        "bytes": overall.bytes,
        "max_prompt_tokens": fitter.max_prompt_tokens,
        "window_stride": stride,
        "per_language": per_language,
        "per_exercise": per_exercise,
    }


def format_bpb_table(result: dict[str, Any]) -> str:
    """One row per language, then all: bpb, bytes scored, and the exercises scored, truncated
    and skipped."""
    rows = [
        "| language | bpb | bytes | exercises | scored | truncated | prompt_too_long |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for language, values in result["per_language"].items():
        rows.append(
            f"| {language} | {values['bpb']:.4f} | {values['bytes']} | {values['exercises']} | "
            f"{values['scored']} | {values['truncated']} | {values['prompt_too_long']} |"
        )
    languages = result["per_language"].values()
    total = {key: sum(v[key] for v in languages) for key in ("exercises", "scored", "truncated")}
    skipped = sum(v["prompt_too_long"] for v in languages)
    rows.append(
        f"| all | {result['bpb']:.4f} | {result['bytes']} | {total['exercises']} | "
        f"{total['scored']} | {total['truncated']} | {skipped} |"
    )
    return "\n".join(rows)


def run_polyglot_bpb(options: Any) -> dict[str, Any]:
    """What `evaluate.py --benchmark polyglot --metric bpb` runs, from its parsed flags:
    `data` (the polyglot-benchmark folder), `languages`, `exercises`, `limit`, `model_type` +
    `ckpt` (+ the load flags `source.load_model_from_args` reads), `max_new_tokens` (the answer's
    reserve, as in a pass-rate run), `output`, `no_progress`. Prints the table; with `output`
    writes bpb.json there."""
    from hrm_codegen.evaluation.source import load_model_from_args
    from hrm_codegen.model.registry import cli_names

    get = lambda name, default=None: getattr(options, name, default)  # noqa: E731
    if not get("data"):
        raise ValueError("--benchmark polyglot needs --data DIR (the polyglot-benchmark folder)")
    if get("model_type") not in cli_names():
        raise ValueError(
            f"--metric bpb needs --model-type {', '.join(cli_names())} (our tokenizer and byte "
            f"counts), not {get('model_type')!r}"
        )
    if get("edit_format") not in (None, "whole"):
        raise ValueError("--metric bpb scores whole-file answers; drop --edit-format")

    def names(flag: str) -> list[str] | None:
        return [n.strip() for n in (get(flag) or "").split(",") if n.strip()] or None

    exercises = load_exercises(
        get("data"), languages=names("languages"), exercises=names("exercises"), limit=get("limit")
    )
    model, tokenizer, schedule = load_model_from_args(options)
    model.eval()
    max_new_tokens = get("max_new_tokens") or 1024
    start = time.perf_counter()
    scored = polyglot_bpb(
        model,
        tokenizer,
        exercises,
        max_new_tokens=max_new_tokens,
        device=get("device"),
        progress=not get("no_progress", False),
    )
    result = {
        "metric": "bpb",
        "data": "polyglot",
        "description": f"{Path(get('data'))}: the example solutions of {len(exercises)} "
        "exercises given their try-1 prompts (whole format)",
        "ckpt": str(Path(get("ckpt")).resolve()),
        "model_type": get("model_type"),
        "schedule": schedule,
        "max_new_tokens": max_new_tokens,
        **scored,
        "seconds": round(time.perf_counter() - start, 3),
    }
    print(
        f"{result['description']}; prompts fitted to {scored['max_prompt_tokens']} tokens of "
        f"{model.config.max_seq_len}"
    )
    print(format_bpb_table(result))
    output = get("output")
    if output is not None:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BPB_FILE).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {folder / BPB_FILE}")
    return result


__all__ = [
    "BPB_FILE",
    "example_answer",
    "format_bpb_table",
    "polyglot_bpb",
    "run_polyglot_bpb",
    "score_example",
    "scoring_windows",
    "window_batches",
]
