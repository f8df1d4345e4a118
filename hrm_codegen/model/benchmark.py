"""Speed of the reference HRM and both transformer baselines: training throughput and decoding.

Used by scripts/bench_model.py; kept here so the numbers come from the same code on every machine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from hrm_codegen.model.checkpoint import PretrainedModel
from hrm_codegen.model.hrm import HRMConfig, HRMForCausalLM
from hrm_codegen.model.transformer import TransformerConfig, TransformerForCausalLM


@dataclass
class BenchResult:
    name: str
    params_total: int
    params_reasoning: int
    train_tokens_per_s: float
    decode_cached_tokens_per_s: float
    decode_uncached_tokens_per_s: float


def reference_models(vocab_size: int) -> dict[str, Callable[[], PretrainedModel]]:
    """Builders (not instances, to keep one model in memory at a time) for the three references."""
    return {
        "HRM (4+4 layers, 2x2 cycles)": lambda: HRMForCausalLM(HRMConfig.reference(vocab_size)),
        "Transformer 8L (param-matched)": lambda: TransformerForCausalLM(
            TransformerConfig.param_matched(vocab_size)
        ),
        "Transformer 24L (compute-matched)": lambda: TransformerForCausalLM(
            TransformerConfig.compute_matched(vocab_size)
        ),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(
    step: Callable[[], object], steps: int, warmup: int, device: torch.device
) -> float:
    """Mean wall time of `step` over `steps` calls after `warmup` untimed ones, with the device
    synchronised around the timed loop (CUDA work is asynchronous). Shared by the model and training
    benchmarks so both time the same way."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def train_tokens_per_second(
    model: PretrainedModel,
    batch_size: int,
    seq_len: int,
    steps: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    warmup_steps: int = 1,
) -> float:
    """Forward + backward (no optimiser step) tokens/s, after untimed warm-up steps (CUDA needs
    them for kernel selection and the allocator; on CPU they only cost time)."""
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)

    def step():
        with _autocast(device, autocast_dtype):
            loss = model(ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return batch_size * seq_len / seconds_per_call(step, steps, warmup_steps, device)


@torch.no_grad()
def decode_tokens_per_second(
    model: PretrainedModel,
    batch_size: int,
    prompt_len: int,
    new_tokens: int,
    use_cache: bool,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Greedy decoding rate in new tokens/s (all rows), prefill included in the time.

    Without the cache every step re-runs the model over the whole sequence so far.
    """
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len), device=device)
    total_len = prompt_len + new_tokens
    _synchronize(device)
    start = time.perf_counter()
    with _autocast(device, autocast_dtype):
        if use_cache:
            cache = model.allocate_cache(batch_size, total_len, device=device, dtype=autocast_dtype)
            next_input = ids
            for _ in range(new_tokens):
                logits = model(next_input, cache=cache, logits_to_keep=1).logits
                next_input = logits[:, -1].argmax(-1, keepdim=True)
        else:
            for _ in range(new_tokens):
                logits = model(ids, logits_to_keep=1).logits
                ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    _synchronize(device)
    return batch_size * new_tokens / (time.perf_counter() - start)


def run_benchmark(
    vocab_size: int = 50257,
    device: str = "cpu",
    batch_size: int = 8,
    seq_len: int = 256,
    steps: int = 2,
    decode_batch_size: int = 8,
    prompt_len: int = 128,
    new_tokens: int = 32,
    uncached_new_tokens: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    only: list[str] | None = None,
) -> list[BenchResult]:
    """Measure every reference model (or those whose name contains one of `only`)."""
    torch_device = torch.device(device)
    builders = reference_models(vocab_size)
    if only:
        builders = {k: v for k, v in builders.items() if any(s.lower() in k.lower() for s in only)}
        if not builders:
            raise ValueError(f"--only {only} matches none of {list(reference_models(vocab_size))}")
    results = []
    for name, build in tqdm(builders.items(), desc="models"):
        torch.manual_seed(0)
        model = build().to(torch_device)
        warmup = 1 if torch_device.type == "cuda" else 0
        train = train_tokens_per_second(
            model, batch_size, seq_len, steps, torch_device, autocast_dtype, warmup
        )
        cached = decode_tokens_per_second(
            model, decode_batch_size, prompt_len, new_tokens, True, torch_device, autocast_dtype
        )
        uncached = decode_tokens_per_second(
            model,
            decode_batch_size,
            prompt_len,
            uncached_new_tokens or new_tokens,
            False,
            torch_device,
            autocast_dtype,
        )
        results.append(
            BenchResult(
                name,
                model.num_parameters(),
                model.num_parameters(exclude_embeddings=True),
                train,
                cached,
                uncached,
            )
        )
        del model
        if torch_device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def format_table(results: list[BenchResult], header: str) -> str:
    """A Markdown table of the results under a one-line description of the setup."""
    lines = [
        header,
        "",
        "| model | params | params w/o emb+head | train tok/s (fwd+bwd) "
        "| decode tok/s, KV cache | decode tok/s, no cache |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.params_total / 1e6:.1f}M | {r.params_reasoning / 1e6:.1f}M "
            f"| {r.train_tokens_per_s:,.0f} | {r.decode_cached_tokens_per_s:,.1f} "
            f"| {r.decode_uncached_tokens_per_s:,.1f} |"
        )
    return "\n".join(lines)
