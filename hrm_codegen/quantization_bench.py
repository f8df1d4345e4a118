"""What quantization costs and buys, per model and precision (behind scripts/bench_quantization.py).

Each (model, precision) is measured in a fresh spawned process, so peak resident memory is that
variant's alone (a process's RSS never gives back what an earlier variant's allocator kept):
weights on disk (the file `save_pretrained` / `save_quantized` writes), peak RSS sampled while
decoding (and the RSS before the model was built: Python, torch and torchao), decode tokens/s
at batch 1 and 8 (random prompts, no EOS), top-1 next-token agreement
with fp32 and bits per byte on held-out code (standard-library modules, teacher-forced), and,
for a trained checkpoint, greedy generation latency per MBPP problem.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VARIANTS = ("fp32", "bf16", "int8", "int8-dynamic", "int4")
# Held-out text: standard-library modules, read from this interpreter (small, plain Python).
HELD_OUT_MODULES = ("textwrap", "heapq", "bisect", "fractions", "difflib", "shlex")


@dataclass
class VariantSpec:
    """One measurement: which model, which precision, and the shared held-out windows."""

    label: str
    variant: str
    tokenizer: str
    ckpt: str | None = None  # a checkpoint of ours, else `reference` names a reference builder
    reference: str | None = None
    vocab_size: int = 0
    windows: list[list[int]] = field(default_factory=list)
    fp32_top1: list[int] | None = None
    prompt_len: int = 32
    new_tokens: int = 32
    batches: tuple[int, ...] = (1, 8)
    mbpp_prompts: list[str] = field(default_factory=list)
    mbpp_stop: list[str] = field(default_factory=list)
    mbpp_max_new_tokens: int = 256
    threads: int | None = None
    repeats: int = 2


def held_out_windows(tokenizer, seq_len: int, count: int) -> list[list[int]]:
    """`count` windows of `seq_len + 1` token ids (BOS first) cut from the held-out modules."""
    import importlib
    import inspect

    ids: list[int] = []
    for name in HELD_OUT_MODULES:
        source = inspect.getsource(importlib.import_module(name))
        ids += [tokenizer.bos_token_id, *tokenizer.encode(source, add_special_tokens=False)]
    width = seq_len + 1
    windows = [ids[i : i + width] for i in range(0, len(ids) - width + 1, width)][:count]
    if len(windows) < count:
        raise ValueError(f"the held-out text gives {len(windows)} windows of {width} tokens")
    return windows


class _PeakRss:
    """Samples this process's resident set size in a thread; `peak` is the highest seen."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _build(spec: VariantSpec):
    import torch

    from hrm_codegen.model import load_model
    from hrm_codegen.model.benchmark import reference_models
    from hrm_codegen.quantization import quantize_model

    if spec.ckpt is not None:
        model = load_model(spec.ckpt)
    else:
        torch.manual_seed(0)  # every variant of a reference model starts from the same weights
        model = reference_models(spec.vocab_size)[spec.reference]()
    model.eval()
    if spec.variant == "bf16":
        model.to(torch.bfloat16)
    elif spec.variant != "fp32":
        quantize_model(model, spec.variant)
    return model


def decode_tokens_per_s(model, batch: int, prompt_len: int, new_tokens: int, repeats: int) -> float:
    """New tokens/s of greedy decoding on random prompts: the best of `repeats` runs of
    `new_tokens + 1` tokens minus the best 1-token run (the prefill), so a noisy machine errs
    towards each variant's own speed rather than towards its neighbours' load."""
    import torch

    from hrm_codegen.generation import generate_ids

    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(model.config.vocab_size, (batch, prompt_len), generator=generator)
    prompts = prompts.tolist()

    def best(tokens: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            generate_ids(model, prompts, max_new_tokens=tokens, batch_size=batch)
            times.append(time.perf_counter() - start)
        return min(times)

    generate_ids(model, prompts, max_new_tokens=2, batch_size=batch)  # warm-up
    prefill = best(1)
    return batch * new_tokens / max(best(new_tokens + 1) - prefill, 1e-6)


def _disk_bytes(model) -> int:
    from hrm_codegen.quantization import quantization_of, save_quantized

    with tempfile.TemporaryDirectory() as folder:
        if quantization_of(model) is not None:
            path = save_quantized(model, folder)
        else:
            path = model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(path).iterdir() if f.name != "config.json")


def _release_freed_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps it otherwise, and RSS would count the fp32
    weights a quantized variant was made from)."""
    import ctypes

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_variant(spec: VariantSpec) -> dict[str, Any]:
    """Everything for one variant (runs in its own process; see the module docstring)."""
    import torch

    from hrm_codegen.bpb import BpbTotals, batch_bpb_totals, token_byte_lengths
    from hrm_codegen.generation import encode_prompt, generate_ids
    from hrm_codegen.quantization import import_torchao
    from hrm_codegen.tokenization import load_tokenizer

    if spec.threads:
        torch.set_num_threads(spec.threads)
    import_torchao()  # in every variant, fp32 included, so the base RSS compares
    tokenizer = load_tokenizer(spec.tokenizer)
    result: dict[str, Any] = {"label": spec.label, "variant": spec.variant}
    result["base_rss_mb"] = _PeakRss().process.memory_info().rss / 2**20
    model = _build(spec)
    result["disk_mb"] = _disk_bytes(model) / 2**20
    _release_freed_memory()  # what building and quantizing freed, so RSS is what decoding holds

    byte_lengths = token_byte_lengths(tokenizer)
    totals, top1 = BpbTotals(), []
    with torch.inference_mode():
        for window in spec.windows:
            ids = torch.tensor([window])
            logits = model(ids[:, :-1]).logits.float()
            totals += batch_bpb_totals(
                logits, ids[:, 1:], byte_lengths, getattr(model.config, "loss", "softmax")
            )
            top1 += logits.argmax(-1).flatten().tolist()
    result["bpb"] = totals.bpb
    result["top1"] = top1
    if spec.fp32_top1 is not None:
        same = sum(a == b for a, b in zip(top1, spec.fp32_top1))
        result["agreement"] = same / len(top1)

    with _PeakRss() as rss:
        for batch in spec.batches:
            result[f"decode_b{batch}"] = decode_tokens_per_s(
                model, batch, spec.prompt_len, spec.new_tokens, spec.repeats
            )
    result["peak_rss_mb"] = rss.peak / 2**20

    if spec.mbpp_prompts:
        seconds, tokens = [], []
        for prompt in spec.mbpp_prompts:
            start = time.perf_counter()
            ids = generate_ids(
                model,
                [encode_prompt(tokenizer, prompt)],
                max_new_tokens=spec.mbpp_max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                stop=spec.mbpp_stop,
                tokenizer=tokenizer,
            )[0][0]
            seconds.append(time.perf_counter() - start)
            tokens.append(len(ids))
        result["mbpp_s_per_problem"] = sum(seconds) / len(seconds)
        result["mbpp_tokens_per_problem"] = sum(tokens) / len(tokens)
    return result


def run_variants(specs: list[VariantSpec], on_result=None) -> list[dict[str, Any]]:
    """Measure each spec in a fresh spawned process, in order; fp32's predictions (the first
    spec of each label must be fp32) become the reference of that label's other variants."""
    context = multiprocessing.get_context("spawn")
    results, fp32_top1 = [], {}
    for spec in specs:
        if spec.variant != "fp32":
            spec.fp32_top1 = fp32_top1.get(spec.label)
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                result = pool.submit(measure_variant, spec).result()
            except Exception as error:  # one variant failing must not lose the others
                result = {"label": spec.label, "variant": spec.variant, "error": repr(error)}
        if spec.variant == "fp32" and "top1" in result:
            fp32_top1[spec.label] = result["top1"]
            result["agreement"] = 1.0
        result.pop("top1", None)
        results.append(result)
        if on_result is not None:
            on_result(result)
    _add_bpb_change(results)
    return results


def _add_bpb_change(results: list[dict[str, Any]]) -> None:
    base = {r["label"]: r["bpb"] for r in results if r["variant"] == "fp32" and "bpb" in r}
    for r in results:
        if "bpb" in r and r["label"] in base:
            r["bpb_change"] = r["bpb"] - base[r["label"]]


def format_table(results: list[dict[str, Any]]) -> str:
    """A markdown table, one row per (model, precision)."""
    has_mbpp = any("mbpp_s_per_problem" in r for r in results)
    header = ["model", "precision", "disk MB", "base RSS MB", "peak RSS MB", "tok/s b1"]
    header += ["tok/s b8"]
    header += ["top-1 vs fp32", "bpb", "bpb change"]
    if has_mbpp:
        header += ["MBPP s/problem", "tokens/problem"]

    def number(value, digits: int = 1) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.{digits}f}"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['variant']} | error: {r['error'][:80]} |")
            continue
        agreement = r.get("agreement")
        cells = [
            r["label"],
            r["variant"],
            number(r["disk_mb"]),
            number(r["base_rss_mb"], 0),
            number(r["peak_rss_mb"], 0),
            number(r.get("decode_b1")),
            number(r.get("decode_b8")),
            f"{100 * agreement:.1f}%" if agreement is not None else "-",
            number(r.get("bpb"), 3),
            f"{r['bpb_change']:+.3f}" if "bpb_change" in r else "-",
        ]
        if has_mbpp:
            cells += [number(r.get("mbpp_s_per_problem"), 2)]
            cells += [number(r.get("mbpp_tokens_per_problem"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
