"""Steps 1-3, the measurements that need no data: the environment (GPU, versions, bf16,
flash_attn, bubblewrap, CPUs), training tokens/s and MFU of the reference models eager and
compiled (`bench_model`), and KV-cached decode tokens/s (`measure_throughput`). Together because
they are all short, budget-bounded benchmarks on randomly initialised models that fill a table
row by row; step 4 plans its runs from the training numbers recorded here."""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import asdict
from typing import Any

from hrm_codegen.gpu_check.options import (
    BENCH_DEADLINE,
    DECODE_DEADLINE,
    DECODE_MODELS,
    TRAIN_MODELS,
    Sizes,
)
from hrm_codegen.gpu_check.report import Budget, Report, _error_text, _free_device_memory

# --------------------------------------------------------------------------------------------------
# Step 1: environment


def environment(device: str) -> dict[str, Any]:
    """What the numbers were measured on, and which optional pieces work there."""
    import importlib

    import torch

    from hrm_codegen.evaluation.sandbox import bwrap_status
    from hrm_codegen.training.flops import peak_flops

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            driver_cudnn=torch.backends.cudnn.version(),
        )
    else:
        info.update(gpu=None, bf16_supported=None)
    peak = peak_flops(torch.device(device)) if _device_ready(device) else None
    info["peak_flops"] = peak
    for name in ("flash_attn", "transformers", "accelerate", "tokenizers", "hydra", "omegaconf"):
        try:
            module = importlib.import_module(name)
            info[f"{name}_version"] = getattr(module, "__version__", "present")
        except Exception as error:  # a missing or broken package is a finding, not a failure
            info[f"{name}_version"] = None
            info[f"{name}_error"] = _error_text(error)[:300]
    info["bwrap_path"] = shutil.which("bwrap")
    command, reason = bwrap_status()
    info["bwrap_works"] = command is not None
    if command is None:
        info["bwrap_reason"] = reason
    return info


def _device_ready(device: str) -> bool:
    import torch

    return not device.startswith("cuda") or torch.cuda.is_available()


# --------------------------------------------------------------------------------------------------
# Step 2: training throughput


def train_throughput(
    record: dict[str, Any], report: Report, budget: Budget, sizes: Sizes, device: str
) -> None:
    """Training tokens/s and MFU of each reference model, eager then compiled; the compile time
    is estimated as the extra wall time of the compiled run over the eager one."""
    import torch

    from hrm_codegen.training.bench import bench_model
    from hrm_codegen.training.flops import peak_flops

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    peak = peak_flops(dev)
    dtype = "bf16" if cuda else "fp32"
    record.update(
        dtype=f"{dtype} autocast" if cuda else "fp32",
        batch_size=sizes.batch_size,
        seq_len=sizes.seq_len,
        vocab_size=sizes.vocab_size,
        peak_flops=peak,
        rows=[],
    )
    report.write()
    counted = sizes.bench_steps + sizes.bench_warmup
    extra: dict[str, float] = {}  # eager wall time outside the timed steps (build, warm-up)
    estimate = dict(sizes.estimates)
    for compiled in (False, True):
        for name in TRAIN_MODELS:
            kind = "bench_compiled" if compiled else "bench_eager"
            row: dict[str, Any] = {"model": name, "compiled": compiled}
            record["rows"].append(row)
            if not budget.fits(estimate[kind], BENCH_DEADLINE):
                row["skipped"] = (
                    f"needs ~{estimate[kind]:.0f}s, {max(budget.left(BENCH_DEADLINE), 0):.0f}s "
                    f"left for this step ({BENCH_DEADLINE:.0%} of the budget)"
                )
                record["status"] = "partial"
                report.write()
                continue
            start = time.perf_counter()
            try:
                result = bench_model(
                    name,
                    vocab_size=sizes.vocab_size,
                    batch_size=sizes.batch_size,
                    seq_len=sizes.seq_len,
                    steps=sizes.bench_steps,
                    warmup=sizes.bench_warmup,
                    device=dev,
                    dtype=dtype,
                    peak=peak,
                    compile_model=compiled,
                    model_overrides=sizes.model_overrides.get(name),
                )
            except Exception as error:
                row["error"] = _error_text(error)
                record["status"] = "partial"
                print(f"[gpu_check] train {name} compiled={compiled}: {row['error']}", flush=True)
            else:
                wall = time.perf_counter() - start
                outside = max(wall - counted * result.seconds_per_step, 0.0)
                row.update(asdict(result), wall_seconds=round(wall, 2))
                row.pop("name")
                if compiled:
                    row["compile_seconds"] = round(max(outside - extra.get(name, 0.0), 0.0), 2)
                    estimate[kind] = max(wall * 1.1, 1.0)
                else:
                    extra[name] = outside
            finally:
                _free_device_memory()
            report.write()
            print(f"[gpu_check] train {name} compiled={compiled}: {_rate(row)}", flush=True)


def _rate(row: dict[str, Any]) -> str:
    if "tokens_per_second" in row:
        return f"{row['tokens_per_second']:,.0f} tokens/s"
    return row.get("error") or row.get("skipped") or "?"


# --------------------------------------------------------------------------------------------------
# Step 3: decoding


def decode_throughput(
    record: dict[str, Any], report: Report, budget: Budget, sizes: Sizes, device: str
) -> None:
    """KV-cached greedy decode tokens/s of the HRM and the compute-matched transformer; weights
    cast to bf16 on CUDA (the precision policy: stream, cache and logits in bf16)."""
    import torch

    from hrm_codegen.generation import measure_throughput
    from hrm_codegen.training.bench import model_config
    from hrm_codegen.training.trainer import build_model

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    record.update(
        dtype="bf16 weights (model.to(bfloat16))" if dev.type == "cuda" else "fp32",
        prompt_len=sizes.decode_prompt_len,
        new_tokens=sizes.decode_new_tokens,
        rows=[],
    )
    estimate = dict(sizes.estimates)
    models: dict[str, Any] = {}
    try:
        for compiled in (False, True):
            kind = "decode_compiled" if compiled else "decode_eager"
            for batch in sizes.decode_batches:
                for name in DECODE_MODELS:
                    row: dict[str, Any] = {"model": name, "batch_size": batch, "compiled": compiled}
                    record["rows"].append(row)
                    if not budget.fits(estimate[kind], DECODE_DEADLINE):
                        row["skipped"] = (
                            f"needs ~{estimate[kind]:.0f}s, "
                            f"{max(budget.left(DECODE_DEADLINE), 0):.0f}s left for this step "
                            f"({DECODE_DEADLINE:.0%} of the budget)"
                        )
                        record["status"] = "partial"
                        report.write()
                        continue
                    start = time.perf_counter()
                    try:
                        if name not in models:
                            torch.manual_seed(0)
                            config = {
                                **model_config(name),
                                **sizes.model_overrides.get(name, {}),
                            }
                            model = build_model(config, sizes.vocab_size)
                            models[name] = model.to(device=dev, dtype=dtype).eval()
                        result = measure_throughput(
                            models[name],
                            batch_size=batch,
                            prompt_len=sizes.decode_prompt_len,
                            new_tokens=sizes.decode_new_tokens,
                            compile=compiled,
                        )
                    except Exception as error:
                        row["error"] = _error_text(error)
                        record["status"] = "partial"
                    else:
                        wall = time.perf_counter() - start
                        row.update(result, wall_seconds=round(wall, 2))
                        if compiled:
                            estimate[kind] = max(wall * 1.1, 1.0)
                    report.write()
                    rate = row.get("new_tokens_per_s")
                    shown = f"{rate:,.1f} new tokens/s" if rate else row.get("error", "?")
                    print(
                        f"[gpu_check] decode {name} batch={batch} compiled={compiled}: {shown}",
                        flush=True,
                    )
    finally:
        models.clear()
