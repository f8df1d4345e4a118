"""Step 5: greedy MBPP pass@1 of each model step 4 trained, generated on the device in bf16 and
judged in the bubblewrap sandbox where it works (else the recorded fallback). Its own module
because it is the only step that loads checkpoints and runs untrusted generated code."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hrm_codegen.gpu_check.options import PRETRAIN_ARMS, CheckOptions, Sizes
from hrm_codegen.gpu_check.pretrain import benchmark_dir
from hrm_codegen.gpu_check.report import Budget, Report, _error_text, _free_device_memory


def pass_at_1(
    record: dict[str, Any],
    report: Report,
    budget: Budget,
    sizes: Sizes,
    options: CheckOptions,
) -> None:
    """Greedy pass@1 of each trained model on the first MBPP test tasks, generated on the device
    in bf16 (eager decoding: at ~100 tasks a compile would cost more than it saves) and judged in
    bubblewrap where it works, else the fallback backend (recorded)."""
    from hrm_codegen.data import load_benchmark
    from hrm_codegen.evaluation.harness import evaluate_model
    from hrm_codegen.evaluation.sampling import SamplingSettings
    from hrm_codegen.evaluation.sandbox import resolve_backend
    from hrm_codegen.model import load_model
    from hrm_codegen.model.loading import model_folder
    from hrm_codegen.tokenization import load_tokenizer

    mbpp_dir, _ = benchmark_dir(options.data_dir)
    tasks = load_benchmark("mbpp", split="test", path=mbpp_dir)[: options.pass_tasks]
    backend = resolve_backend("auto")
    record.update(
        sandbox=backend,
        sandbox_note=(
            "bubblewrap sandbox"
            if backend == "bwrap"
            else "bubblewrap unavailable: fallback backend (limits and timeouts, no isolation)"
        ),
        tasks=len(tasks),
        max_new_tokens=sizes.pass_max_new_tokens,
        dtype="bf16 weights" if options.device.startswith("cuda") else "fp32",
        rows=[],
    )
    runs = {r["model"]: r for r in report.step("pretrain").get("runs", []) if r.get("run_dir")}
    for arm in PRETRAIN_ARMS:
        row: dict[str, Any] = {"model": arm}
        record["rows"].append(row)
        if arm not in runs:
            row["skipped"] = "no trained checkpoint from step 4"
            record["status"] = "partial"
            report.write()
            continue
        if not budget.fits(sizes.estimates["pass_model"]):
            row["skipped"] = f"{max(budget.left(), 0):.0f}s of the budget left"
            record["status"] = "partial"
            report.write()
            continue
        try:
            dtype = "bf16" if options.device.startswith("cuda") else "fp32"
            model = load_model(runs[arm]["run_dir"], device=options.device, dtype=dtype)
            tokenizer = load_tokenizer(model_folder(runs[arm]["run_dir"]))
            out_dir = Path(options.work_dir) / "pass_at_1" / arm
            if out_dir.exists():
                shutil.rmtree(out_dir)
            summary = evaluate_model(
                model.eval(),
                tokenizer,
                tasks,
                sampling=SamplingSettings(
                    max_new_tokens=sizes.pass_max_new_tokens, batch_size=sizes.pass_batch_size
                ),
                timeout=sizes.pass_timeout,
                output_dir=out_dir,
                sandbox=backend,
                progress=False,
            )
            row.update(
                {
                    "pass@1": float(summary.pass_at_k["pass@1"]),
                    "passed": sum(c for _, c in summary.per_task.values()),
                    "tasks": summary.num_tasks,
                    "counts": summary.counts,
                    "generation_s": round(summary.timings.get("generation_s", 0.0), 2),
                    "execution_s": round(summary.timings.get("execution_s", 0.0), 2),
                    "sandbox": summary.settings.get("sandbox"),
                }
            )
            del model
        except Exception as error:
            row["error"] = _error_text(error)
            record["status"] = "partial"
            print(f"[gpu_check] pass@1 {arm}: {row['error']}", flush=True)
        finally:
            _free_device_memory()
        report.write()
