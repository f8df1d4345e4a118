"""Sampling from a model, decoded the one way every benchmark shares.

`SamplingSettings` carries the decoding keywords (one object instead of the same seven keywords
in every signature), `sample_texts` turns prompts into texts with our `generate` (or
`generate_hf` for a transformers model), and `generate_texts` does it resumably for keyed
prompts (LCB, exec), appending to a JSONL file as it goes.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hrm_codegen.evaluation.results import JsonlAppender
from hrm_codegen.evaluation.store import complete_lines


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are decoded.

    `temperature` 0 is greedy; `top_p` nucleus sampling; `batch_size` rows decoded together
    (prompt x sample; the samples do not depend on it); `seed` seeds every sampled row;
    `dtype` (`auto|bf16|fp16|fp32`) runs a float32 model's generation under autocast in that
    dtype (a model already cast is left alone); `compile` decodes with a compiled fixed-shape
    step (our models only); `draft` (a `SpeculativeDraft`) decodes speculatively (greedy).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int = 8
    seed: int = 0
    dtype: str | None = None
    compile: bool = False
    draft: Any = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, **defaults: Any) -> SamplingSettings:
        """The settings `scripts/evaluate.py`'s flags give (`--temperature`, `--top-p`,
        `--max-new-tokens`, `--batch-size`, `--seed`, `--dtype`, `--compile`); a field `args`
        lacks (or holds None for) takes `defaults`, else the field's own default. `--backend
        compiled` is `--compile`; the draft model is the caller's to load (`draft` stays None)."""
        values = {}
        for field in fields(cls):
            if field.name == "draft":
                continue
            value = getattr(args, field.name, None)
            if field.name == "compile" and getattr(args, "backend", None) == "compiled":
                value = True
            if value is not None:
                values[field.name] = value
            elif field.name in defaults:
                values[field.name] = defaults[field.name]
        return cls(**values)

    def recorded(self) -> dict[str, Any]:
        """What run_config.json records of them: the settings that change what is sampled."""
        return {k: getattr(self, k) for k in ("temperature", "top_p", "max_new_tokens", "seed")}

    def keywords(self) -> dict[str, Any]:
        """The settings as keywords (for `best_of_n_samples`); the draft model as it is, not
        copied."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def generator_for(model: Any) -> Callable[..., list[list[str]]]:
    """Our `generate` for our models, `generate_hf` for a transformers model (same shape)."""
    from hrm_codegen.generation import generate, generate_hf

    # A transformers model exists only once transformers' modeling code is imported; asking the
    # lazy `transformers` module for `PreTrainedModel` would import that code, and with it
    # torchao and its load warnings, on every evaluation of our own models.
    modeling = sys.modules.get("transformers.modeling_utils")
    if modeling is not None and isinstance(model, modeling.PreTrainedModel):
        return generate_hf
    return generate


def with_precision(
    generate: Callable[..., Any], model: Any, dtype: str | None, compile: bool
) -> Callable[..., Any]:
    """`generate` run under autocast in `dtype` (when the model's weights are float32 and dtype
    is lower) and with `compile=True` passed on; HF models cannot take `compile`."""
    import torch

    from hrm_codegen.model.precision import resolve_dtype

    if compile and getattr(generate, "__name__", "") != "generate":
        raise ValueError("--compile applies to hrm/transformer models, not to --model-type hf")
    parameter = next(model.parameters())
    target = resolve_dtype(dtype, parameter.device) if dtype is not None else parameter.dtype
    autocast = parameter.dtype == torch.float32 and target != torch.float32

    @functools.wraps(generate)
    def run(*args: Any, **kwargs: Any) -> Any:
        context = (
            torch.autocast(parameter.device.type, dtype=target)
            if autocast
            else contextlib.nullcontext()
        )
        with context:
            return generate(*args, **kwargs, **({"compile": True} if compile else {}))

    return run


def sample_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    stop: Sequence[str],
    num_samples: int = 1,
    sampling: SamplingSettings = SamplingSettings(),
    progress: bool = False,
) -> list[list[str]]:
    """`num_samples` generations per prompt, [prompt][sample], decoded the one way every
    benchmark shares (`evaluate_model`, `generate_texts`, best-of-n, Polyglot's responder)."""
    generate = with_precision(generator_for(model), model, sampling.dtype, sampling.compile)
    return generate(
        model,
        tokenizer,
        list(prompts),
        max_new_tokens=sampling.max_new_tokens,
        num_samples=num_samples,
        do_sample=sampling.temperature > 0,
        temperature=sampling.temperature if sampling.temperature > 0 else 1.0,
        top_p=sampling.top_p,
        stop=list(stop),
        seed=sampling.seed,
        batch_size=sampling.batch_size,
        progress=progress,
        **({"draft": sampling.draft} if sampling.draft is not None else {}),
    )


def generate_appending(
    model: Any,
    tokenizer: Any,
    items: Sequence[Any],
    *,
    prompt_of: Callable[[Any], str],
    stop_of: Callable[[Sequence[Any]], Sequence[str]],
    lines_of: Callable[[Any, list[str]], list[dict[str, Any]]],
    path: Path | None,
    num_samples: int,
    sampling: SamplingSettings,
    progress: bool,
) -> list[list[dict[str, Any]]]:
    """`lines_of(item, generations)` for every item, [item][line], generating with
    `sample_texts`. With a JSONL `path` the items go in chunks of 4 batches and each chunk's
    lines are appended as it finishes, so a crash loses one chunk (the resumable runs of
    `evaluate_model` and `generate_texts`); `stop_of(chunk)` gives a chunk's stop strings."""
    lines: list[list[dict[str, Any]]] = []
    size = max(4 * sampling.batch_size, 1) if path is not None else len(items)
    appender = JsonlAppender(path) if path is not None else None
    try:
        for first in range(0, len(items), size):
            part = items[first : first + size]
            texts = sample_texts(
                model,
                tokenizer,
                [prompt_of(item) for item in part],
                stop=stop_of(part),
                num_samples=num_samples,
                sampling=sampling,
                progress=progress,
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


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Mapping[str, str],
    *,
    stop: Sequence[str],
    num_samples: int = 1,
    sampling: SamplingSettings = SamplingSettings(),
    progress: bool = True,
    output_file: str | Path | None = None,
) -> dict[str, list[str]]:
    """`num_samples` raw generations per prompt (keyed as `prompts`), for benchmarks whose
    prompts are not `CodeTask`s (LCB, exec). With `output_file` (JSONL), generations are
    appended key by key and a rerun generates only the keys not finished there."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: generate at least one sample per prompt")
    path = Path(output_file) if output_file is not None else None
    finished = complete_lines(path, num_samples, key="key", known=prompts, repair=True)
    done = {key: [line["generation"] for line in lines] for key, lines in finished.items()}
    todo = [key for key in prompts if key not in done]
    if todo:
        lines = generate_appending(
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
            sampling=sampling,
            progress=progress,
        )
        for key, key_lines in zip(todo, lines):
            done[key] = [line["generation"] for line in key_lines]
    return {key: done[key] for key in prompts}


__all__ = [
    "SamplingSettings",
    "generate_appending",
    "generate_texts",
    "generator_for",
    "sample_texts",
    "with_precision",
]
