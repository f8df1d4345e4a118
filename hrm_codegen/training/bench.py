"""Training throughput of the reference models: tokens/s and MFU per optimiser step.

Each model is built from its config file in configs/model/ (the sizes a run would train), then timed
on random tokens: forward + backward + AdamW step, after warm-up steps that are not counted. Tokens/s
counts every token of the batch; MFU uses the FLOPs formula documented in `flops.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hrm_codegen.model.benchmark import seconds_per_call
from hrm_codegen.training.flops import flops_count, peak_flops
from hrm_codegen.training.optim import build_optimizer
from hrm_codegen.training.trainer import build_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"
REFERENCE_MODELS = ("hrm", "transformer", "transformer_deep")


@dataclass
class BenchResult:
    name: str
    params_total: int
    params_body: int
    flops_per_token: float
    seconds_per_step: float
    tokens_per_second: float
    mfu: float | None


def model_config(name: str) -> dict:
    """configs/model/<name>.yaml resolved, following its `defaults` (transformer_deep extends
    transformer)."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"no model config {path}; known: {known}")
    cfg = OmegaConf.load(path)
    merged = OmegaConf.create()
    for parent in cfg.pop("defaults", []):
        if parent != "_self_":
            merged = OmegaConf.merge(merged, model_config(parent))
    return OmegaConf.to_container(OmegaConf.merge(merged, cfg), resolve=True)


def bench_model(
    name: str,
    *,
    vocab_size: int,
    batch_size: int,
    seq_len: int,
    steps: int,
    warmup: int,
    device: torch.device,
    dtype: str,
    peak: float | None,
    compile_model: bool = False,
    model_overrides: dict | None = None,
) -> BenchResult:
    """Time one model's optimiser step; `model_overrides` replace fields of its config file
    (scripts/gpu_check.py --tiny shrinks the reference models this way)."""
    torch.manual_seed(0)
    model = build_model({**model_config(name), **(model_overrides or {})}, vocab_size).to(device)
    model.train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    run = torch.compile(model) if compile_model else model
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len + 1), device=device)
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step() -> None:
        with autocast:
            loss = run(inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = seconds_per_call(step, steps, warmup, device)
    count = flops_count(model)
    per_token = count.training_flops_per_token(seq_len)
    tok_s = batch_size * seq_len / seconds
    return BenchResult(
        name=name,
        params_total=model.num_parameters(),
        params_body=model.num_parameters(exclude_embeddings=True),
        flops_per_token=per_token,
        seconds_per_step=seconds,
        tokens_per_second=tok_s,
        mfu=tok_s * per_token / peak if peak else None,
    )


def format_table(results: list[BenchResult], header: str) -> str:
    lines = [
        header,
        f"{'model':<18}{'params':>9}{'body':>9}{'GFLOP/tok':>11}{'s/step':>9}{'tokens/s':>11}{'MFU':>8}",
    ]
    for r in results:
        mfu = f"{100 * r.mfu:.2f}%" if r.mfu is not None else "n/a"
        lines.append(
            f"{r.name:<18}{r.params_total / 1e6:>8.1f}M{r.params_body / 1e6:>8.1f}M"
            f"{r.flops_per_token / 1e9:>11.3f}{r.seconds_per_step:>9.3f}"
            f"{r.tokens_per_second:>11,.0f}{mfu:>8}"
        )
    return "\n".join(lines)


def run_bench(
    models: list[str],
    *,
    vocab_size: int,
    batch_size: int,
    seq_len: int,
    steps: int,
    warmup: int,
    device: str,
    dtype: str,
    peak_override: float | None,
    compile_model: bool = False,
) -> str:
    """Time every model and return the printed table."""
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    peak = peak_flops(dev, peak_override)
    results = []
    for name in models:
        results.append(
            bench_model(
                name,
                vocab_size=vocab_size,
                batch_size=batch_size,
                seq_len=seq_len,
                steps=steps,
                warmup=warmup,
                device=dev,
                dtype=dtype,
                peak=peak,
                compile_model=compile_model,
            )
        )
        print(f"  {name}: {results[-1].tokens_per_second:,.0f} tokens/s", flush=True)
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    peak_text = f"{peak / 1e12:.2f} TFLOP/s peak" if peak else "peak unknown (pass --peak-flops)"
    header = (
        f"training step (forward + backward + AdamW), batch {batch_size} x {seq_len} tokens, "
        f"vocab {vocab_size}, {dtype}, {name}, {peak_text}"
    )
    return format_table(results, header)
