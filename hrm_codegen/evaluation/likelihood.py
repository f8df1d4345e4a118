"""Bits per byte of a saved model on held-out text: `scripts/evaluate.py --metric bpb`.

Pass@k of a small model is 0 and compares nothing; bits per byte moves at every scale and needs no
sandbox. `--data corpus` scores the validation split of a token-shard corpus (packed windows, as
`val/bpb` in training), `--data mbpp` the MBPP reference solutions given their prompts (as
`val/mbpp_bpb`); `--language go` scores only that language's tokens of the corpus (as
`val/bpb/go`). With an HRM, `--h-cycles/--l-cycles/--segments` run more (or less) recurrence at
inference than in training (`HRMForCausalLM.set_inference_schedule`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a model is scored: the command line lists BPB_DATA without torch
    import torch

BPB_DATA = ("corpus", "mbpp")


def apply_inference_schedule(
    model: torch.nn.Module,
    h_cycles: int | None = None,
    l_cycles: int | None = None,
    segments: int | None = None,
) -> dict[str, int]:
    """Set an HRM's or HRM-Text's inference schedule; returns the schedule now in force (empty
    for others).

    A transformer has no recurrence to scale: asking for one is an error, not a silent no-op.
    """
    asked = {"h_cycles": h_cycles, "l_cycles": l_cycles, "segments": segments}
    if not getattr(model, "recurrent", False):
        given = [f"--{k.replace('_', '-')}" for k, v in asked.items() if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} only apply to an HRM or HRM-Text (this model is "
                f"{getattr(model, 'model_type', type(model).__name__)}); drop them"
            )
        return {}
    model.set_inference_schedule(h_cycles, l_cycles, segments)
    return {
        "h_cycles": model.h_cycles,
        "l_cycles": model.l_cycles,
        "segments": model.num_segments_eval,
    }


def bpb_dataset(
    data: str,
    tokenizer: Any,
    *,
    corpus_dir: str | Path | None = None,
    split: str | None = None,
    seq_len: int = 1024,
    benchmark: str = "mbpp",
    limit: int | None = None,
    prefix_lm: bool = False,
    language: str | None = None,
) -> tuple[Any, Any, str]:
    """(dataset, collate, description) for `--data corpus|mbpp`; `prefix_lm` (the model's) marks
    MBPP prompts so that a PrefixLM model reads them as it was fine-tuned to; `language`: only
    that language's label tokens count (the others' labels are ignored, windows without it
    dropped), so the bpb is the language's own over the same windows training scores."""
    if data == "corpus":
        from hrm_codegen.data.corpus import PackedDataset, stack_windows, tokenizer_fingerprint
        from hrm_codegen.tokenization import hrm_codegen_home

        folder = Path(corpus_dir or hrm_codegen_home() / "corpus").expanduser()
        dataset = PackedDataset(folder, split or "validation", seq_len)
        if dataset.meta.get("tokenizer_hash") != tokenizer_fingerprint(
            tokenizer.backend_tokenizer.to_str()
        ):
            raise ValueError(
                f"{folder} was tokenized with another tokenizer than this model's; pass the "
                "--corpus-dir built with the model's tokenizer"
            )
        description = f"{folder} {split or 'validation'}, windows of {seq_len}"
        count = min(limit, len(dataset)) if limit else len(dataset)
        if language:
            return (
                language_windows(dataset, language, count),
                stack_windows,
                (f"{description}, {language} tokens only"),
            )
        if limit:
            dataset = [dataset[i] for i in range(count)]
        return dataset, stack_windows, description
    if data == "mbpp":
        from hrm_codegen.data import load_benchmark
        from hrm_codegen.data.sft import SFTCollator, SFTDataset

        if benchmark not in ("mbpp", "mbpp_sanitized"):
            raise ValueError(f"--data mbpp scores MBPP; --benchmark {benchmark} is not MBPP")
        tasks = load_benchmark(benchmark, split=split or "validation")
        tasks = tasks[:limit] if limit else tasks
        dataset = SFTDataset(tasks, tokenizer, seq_len)
        collate = SFTCollator(tokenizer.pad_token_id, pad_to_multiple_of=8, prefix_lm=prefix_lm)
        return dataset, collate, f"{benchmark} {split or 'validation'}: {len(dataset)} tasks"
    raise ValueError(f"--data {data!r} is not one of {BPB_DATA}")


def language_windows(dataset: Any, language: str, count: int) -> list[dict[str, Any]]:
    """The first `count` windows that hold `language`, other languages' labels ignored (-100)."""
    import torch

    from hrm_codegen.losses import IGNORE_INDEX

    names = list(getattr(dataset, "language_names", []))
    if language not in names:
        raise ValueError(
            f"--language {language}: the corpus split holds {', '.join(names) or 'no named'} "
            "languages"
        )
    code = names.index(language)
    items = []
    for index in range(count):
        other = torch.as_tensor(dataset.label_language_codes(index)) != code
        if bool(other.all()):
            continue
        item = dataset[index]
        items.append({**item, "labels": item["labels"].masked_fill(other, IGNORE_INDEX)})
    return items


def run_bpb_evaluation(
    *,
    model_type: str,
    ckpt: str | Path,
    data: str = "corpus",
    tokenizer: str | Path | None = None,
    corpus_dir: str | Path | None = None,
    split: str | None = None,
    benchmark: str = "mbpp",
    limit: int | None = None,
    seq_len: int | None = None,
    batch_size: int = 8,
    max_batches: int | None = None,
    device: str = "cpu",
    h_cycles: int | None = None,
    l_cycles: int | None = None,
    segments: int | None = None,
    output: str | Path | None = None,
    quantize: str | None = None,
    dtype: str | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """Load the model, set the schedule, score the text; print and (with `output`) write JSON.

    `quantize` scores the model quantized (`hrm_codegen.quantization`)."""
    from hrm_codegen.evaluation.harness import load_model_and_tokenizer
    from hrm_codegen.model.registry import cli_names

    if model_type not in cli_names():
        raise ValueError(
            f"--metric bpb needs --model-type {', '.join(cli_names())} (our tokenizer "
            f"and byte counts), not {model_type!r}"
        )
    model, tok = load_model_and_tokenizer(
        model_type, ckpt, tokenizer_path=tokenizer, device=device, quantize=quantize, dtype=dtype
    )
    model.eval()
    schedule = apply_inference_schedule(model, h_cycles, l_cycles, segments)
    seq_len = min(seq_len or 1024, int(model.config.max_seq_len))
    dataset, collate, description = bpb_dataset(
        data,
        tok,
        corpus_dir=corpus_dir,
        split=split,
        seq_len=seq_len,
        benchmark=benchmark,
        limit=limit,
        prefix_lm=bool(getattr(model.config, "prefix_lm", False)),
        language=language,
    )
    from hrm_codegen.bpb import batched, dataset_bpb, token_byte_lengths

    start = time.perf_counter()
    totals = dataset_bpb(
        model,
        batched(dataset, collate, batch_size, max_batches),
        token_byte_lengths(tok),
        device=device,
    )
    result = {
        "metric": "bpb",
        "data": data,
        **({"language": language} if language else {}),
        "description": description,
        "ckpt": str(Path(ckpt).resolve()),
        "model_type": model_type,
        "schedule": schedule,
        "bpb": totals.bpb,
        "loss": totals.loss,
        "tokens": totals.tokens,
        "bytes": totals.bytes,
        "seconds": round(time.perf_counter() - start, 3),
    }
    shown = ", ".join(f"{k}={v}" for k, v in schedule.items()) or "as trained"
    print(f"{description}; schedule: {shown}")
    print("| bpb | nats/token | tokens | bytes |\n|---:|---:|---:|---:|")
    print(f"| {totals.bpb:.4f} | {totals.loss:.4f} | {totals.tokens} | {totals.bytes} |")
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bpb.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out / 'bpb.json'}")
    return result
