"""One timed check of a GPU machine: environment, speed, a short pretraining race, MBPP pass@1.

    python scripts/gpu_check.py --out gpu_check --data-dir runs/gpu_check_data   # one H200, < 9 min
    python scripts/gpu_check.py --device cpu --tiny --out /tmp/gc                # toy sizes, CPU

Why one command: a GPU machine is lent for minutes, bare (no registry, no internet), so everything
the check needs is built on the spot from the standard library (the code BPE and the corpus
shard) or passed in with `--data-dir` (a folder with mbpp.jsonl; sanitized-mbpp.json and
HumanEval.jsonl.gz too for decontamination). Five steps, each timed and guarded (a failing step
records its error and the check goes on):

1. environment: GPU, memory, versions, bf16, flash_attn, bubblewrap, CPUs;
2. training tokens/s and MFU of the reference models (configs/model), eager and compiled
   (`hrm_codegen.training.bench.bench_model`);
3. KV-cached decode tokens/s, batch 1 and 32, eager and compiled (`measure_throughput`);
4. pretraining of the HRM and the parameter-matched transformer through the real `train()`, with
   max_steps chosen from step 2 so each run fits its time; `val/bpb`, `val/mbpp_bpb`, tokens/s;
5. greedy MBPP pass@1 of both trained models, judged in the sandbox.

`gpu_check.json` and `gpu_check.md` are rewritten after every measurement, so a kill leaves the
results so far. `--budget-seconds` (default 540) bounds the whole check: work that would not fit
is skipped with a note, and the pretraining runs shrink to the time left.
"""

# The docstring above is the `--help` text. This file holds the public entry points: `run_check`
# (the five steps in order, inside the torch.compile routing of `compile_backend`) and `main` (the
# command line); the steps live below it: options.py (sizes, deadlines, CheckOptions), report.py
# (Budget, Report, guarded, the json and markdown files), measure.py (steps 1-3), pretrain.py (step
# 4), passk.py (step 5). Those modules never import this one.

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hrm_codegen.gpu_check.measure import (
    _device_ready,
    decode_throughput,
    environment,
    train_throughput,
)
from hrm_codegen.gpu_check.options import REAL, STEPS, TINY, CheckOptions
from hrm_codegen.gpu_check.passk import pass_at_1
from hrm_codegen.gpu_check.pretrain import (
    background,
    benchmark_dir,
    plan_run,
    prepare_data,
    pretrain,
)
from hrm_codegen.gpu_check.report import (
    JSON_FILE,
    MD_FILE,
    Budget,
    Report,
    guarded,
    render_markdown,
)


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """Inside the block every `torch.compile` (the benchmark's, generation's, the trainer's) uses
    `backend`. "inductor" changes nothing; `--tiny` uses "eager": Dynamo still traces the same
    graphs (fixed-shape decoding, the compiled model), without Inductor's minutes of C++ builds
    on a CPU. The compiled decode step generation caches per device is restored afterwards."""
    if backend == "inductor":
        yield
        return
    import torch

    from hrm_codegen import generation

    real = torch.compile
    saved_steps = dict(generation._COMPILED_STEPS)

    def routed(model: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("mode", None)  # modes are Inductor's
        kwargs.pop("options", None)
        return real(model, **{**kwargs, "backend": backend})

    torch.compile = routed
    try:
        yield
    finally:
        torch.compile = real
        generation._COMPILED_STEPS.clear()
        generation._COMPILED_STEPS.update(saved_steps)
        torch._dynamo.reset()  # no cache entry of this backend may serve a later compile


# --------------------------------------------------------------------------------------------------
# The whole check


def run_check(options: CheckOptions) -> dict[str, Any]:
    """Run the five steps within the budget; returns the report (also in gpu_check.json).

    `--tiny` on a CPU runs torch on one thread: toy-sized ops gain nothing from more, and on a
    shared machine idle intra-op threads spinning for busy cores made a decode step 50x slower.
    """
    import torch

    options = options.resolved()
    threads = torch.get_num_threads()
    if options.tiny and not options.device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        return _run_check(options)
    finally:
        torch.set_num_threads(threads)


def _run_check(options: CheckOptions) -> dict[str, Any]:
    sizes = TINY if options.tiny else REAL
    budget = Budget(options.budget_seconds)
    header = {
        "tool": "gpu_check",
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "options": asdict(options),
        "sizes": asdict(sizes),
        "budget_seconds": options.budget_seconds,
    }
    report = Report(Path(options.out), header, budget)
    for name in STEPS:
        report.step(name)
    report.write()
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    device = options.device
    mbpp_dir, _ = benchmark_dir(options.data_dir)

    with guarded(report, "environment") as record:
        record["data"] = environment(device)
    ready = _device_ready(device)
    not_ready = None if ready else f"device {device} is not available here"

    in_background = bool(options.background_prepare and ready)
    workers = max(1, (os.cpu_count() or 2) // 2) if in_background else None
    with (
        compile_backend(options.compile_backend),
        background(
            in_background,
            prepare_data,
            work,
            options.data_dir,
            sizes,
            workers,
            options.seed,
        ) as prepared_result,
    ):
        if in_background:
            report.step("pretrain")["notes"].append(
                f"tokenizer and corpus built in a background process ({workers} cores) "
                "during steps 2-3"
            )
        with guarded(report, "train_throughput", not_ready) as record:
            if record["status"] == "running":
                train_throughput(record, report, budget, sizes, device)
        with guarded(report, "decode", not_ready) as record:
            if record["status"] == "running":
                decode_throughput(record, report, budget, sizes, device)
        pass_reserve = 2 * sizes.estimates["pass_model"] if mbpp_dir is not None and ready else 0.0
        if not ready:
            skip = not_ready
        elif not in_background and not budget.fits(sizes.estimates["prepare"]):
            skip = f"{max(budget.left(), 0):.0f}s of the budget left: no time to build the data"
        else:
            skip = None
        with guarded(report, "pretrain", skip) as record:
            if record["status"] == "running":
                pretrain(record, report, budget, sizes, options, prepared_result, pass_reserve)
    if not ready:
        skip = not_ready
    elif mbpp_dir is None:
        skip = "no MBPP file: pass --data-dir with mbpp.jsonl (a lent machine has no hub)"
    else:
        skip = None
    with guarded(report, "pass_at_1", skip) as record:
        if record["status"] == "running":
            pass_at_1(record, report, budget, sizes, options)

    report.data["finished"] = True
    report.data["total_seconds"] = round(budget.elapsed(), 2)
    report.write()
    print(
        f"[gpu_check] total wall time {budget.elapsed():.1f}s (budget {budget.seconds:.0f}s); "
        f"wrote {Path(options.out) / JSON_FILE} and {Path(options.out) / MD_FILE}",
        flush=True,
    )
    return report.data


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`scripts/gpu_check.py`: parse the options, run the check, print where the results are."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the json and md")
    parser.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the pipeline in seconds")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="folder with mbpp.jsonl (+ the other two)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="tokenizer, corpus, runs (not --out)"
    )
    parser.add_argument(
        "--train-seconds", type=float, default=None, help="per pretraining run (180; tiny 3)"
    )
    parser.add_argument("--budget-seconds", type=float, default=540.0, help="whole check")
    parser.add_argument("--pass-tasks", type=int, default=None, help="MBPP tasks (100; tiny 5)")
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (inductor; tiny: eager)"
    )
    parser.add_argument("--lr", type=float, default=6e-4, help="pretraining learning rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # A lent machine has no network: fail fast instead of waiting on hub timeouts.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return run_check(
        CheckOptions(
            out=args.out,
            device=args.device,
            tiny=args.tiny,
            data_dir=args.data_dir,
            work_dir=args.work_dir,
            train_seconds=args.train_seconds,
            budget_seconds=args.budget_seconds,
            pass_tasks=args.pass_tasks,
            compile_backend=args.compile_backend,
            lr=args.lr,
            seed=args.seed,
        )
    )


__all__ = ["CheckOptions", "main", "plan_run", "render_markdown", "run_check"]
