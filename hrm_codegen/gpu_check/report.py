"""Time and results: `Budget` (wall-clock accounting against `--budget-seconds`), `Report` (the
results, rewritten as gpu_check.json and gpu_check.md after every change so a killed check leaves
what it measured), `guarded` (one step timed, its error recorded instead of raised), and the
markdown rendering of the report. Kept apart from the steps so that each step module shares the
same record keeping and the file formats live in one place."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JSON_FILE = "gpu_check.json"
MD_FILE = "gpu_check.md"


# --------------------------------------------------------------------------------------------------
# Time, results on disk


class Budget:
    """Wall-clock accounting against `--budget-seconds`, so work is skipped before it overruns."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self, until_fraction: float = 1.0) -> float:
        """Seconds left before `until_fraction` of the budget is spent."""
        return self.seconds * until_fraction - self.elapsed()

    def fits(self, need: float, until_fraction: float = 1.0) -> bool:
        return self.left(until_fraction) >= need


class Report:
    """The results, rewritten to gpu_check.json and gpu_check.md after every change, so a killed
    check leaves what it had measured."""

    def __init__(self, out: Path, header: dict[str, Any], budget: Budget) -> None:
        self.out = out
        self.budget = budget
        self.data: dict[str, Any] = {**header, "finished": False, "steps": {}}
        out.mkdir(parents=True, exist_ok=True)

    def step(self, name: str) -> dict[str, Any]:
        return self.data["steps"].setdefault(name, {"status": "pending", "notes": []})

    def write(self) -> None:
        self.data["elapsed_seconds"] = round(self.budget.elapsed(), 2)
        for path, text in (
            (self.out / JSON_FILE, json.dumps(_jsonable(self.data), indent=2) + "\n"),
            (self.out / MD_FILE, render_markdown(self.data)),
        ):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null (and say so in the field's note)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def guarded(report: Report, name: str, skip_reason: str | None = None) -> Iterator[dict[str, Any]]:
    """Run one step: time it, record its error instead of raising, write the report after."""
    record = report.step(name)
    record["status"] = "running"
    start = time.perf_counter()
    try:
        if skip_reason is not None:
            record["status"] = "skipped"
            record["notes"].append(skip_reason)
        yield record
        if record["status"] == "running":
            record["status"] = "ok"
    except Exception as error:  # the check goes on; the error is the result
        record["status"] = "error"
        record["error"] = _error_text(error)
        record["traceback"] = traceback.format_exc()[-4000:]
        print(f"[gpu_check] step {name} failed: {record['error']}", flush=True)
    finally:
        record["seconds"] = round(time.perf_counter() - start, 2)
        _free_device_memory()
        report.write()


def _free_device_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _row_note(row: dict[str, Any]) -> str:
    return row.get("error") or row.get("skipped") or ""


def render_markdown(data: dict[str, Any]) -> str:
    """The report as markdown: one table per step, then its notes and errors."""
    steps = data.get("steps", {})
    opts = data.get("options", {})
    total = data.get("total_seconds")
    lines = [
        "# gpu_check",
        "",
        f"`{data.get('command', '')}`, started {data.get('started', '?')}; "
        + (
            f"total wall time {total:.1f} s"
            if total is not None
            else f"unfinished after {data.get('elapsed_seconds', 0):.1f} s"
        )
        + f" of a {data.get('budget_seconds', 0):.0f} s budget.",
        "",
        f"device {opts.get('device')}{', --tiny (toy sizes)' if opts.get('tiny') else ''}; "
        f"torch.compile backend {opts.get('compile_backend')}; MBPP from "
        f"{opts.get('data_dir') or 'nowhere (no --data-dir)'}; work dir {opts.get('work_dir')}",
    ]
    env = steps.get("environment", {})
    lines += _section("1. Environment", env)
    if env.get("data"):
        lines += _table(["item", "value"], [[k, v] for k, v in env["data"].items()])

    step = steps.get("train_throughput", {})
    lines += _section("2. Training throughput (forward + backward + AdamW)", step)
    if step.get("rows"):
        lines.append(
            f"batch {step.get('batch_size')} x {step.get('seq_len')} tokens, vocab "
            f"{step.get('vocab_size')}, {step.get('dtype')}, peak "
            f"{_fmt(step.get('peak_flops'))} FLOP/s"
        )
        lines.append("")
        lines += _table(
            ["model", "compiled", "params", "GFLOP/token", "s/step", "tokens/s", "MFU", "compile s"]
            + ["note"],
            [
                [
                    r["model"],
                    r["compiled"],
                    r.get("params_total"),
                    r["flops_per_token"] / 1e9 if "flops_per_token" in r else None,
                    r.get("seconds_per_step"),
                    r.get("tokens_per_second"),
                    f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else None,
                    r.get("compile_seconds"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )

    step = steps.get("decode", {})
    lines += _section("3. Decoding with the KV cache (greedy, random prompts)", step)
    if step.get("rows"):
        lines.append(
            f"prompt {step.get('prompt_len')} tokens, {step.get('new_tokens')} new tokens, "
            f"{step.get('dtype')}"
        )
        lines.append("")
        lines += _table(
            ["model", "batch", "compiled", "new tokens/s", "prompt tokens/s", "wall s", "note"],
            [
                [
                    r["model"],
                    r["batch_size"],
                    r["compiled"],
                    r.get("new_tokens_per_s"),
                    r.get("prompt_tokens_per_s"),
                    r.get("wall_seconds"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )

    step = steps.get("pretrain", {})
    lines += _section("4. Pretraining on a standard-library shard", step)
    prep = step.get("prepare")
    if prep:
        lines += _table(
            ["item", "value"],
            [
                ["tokenizer", f"{prep.get('vocab_size')} tokens, {prep.get('tokenizer_text')}"],
                ["corpus files", prep.get("source", {}).get("files")],
                ["train / validation tokens", _split_tokens(prep.get("tokens", {}))],
                ["decontaminated", prep.get("decontaminated")],
                [
                    "tokenizer s / corpus s",
                    f"{prep.get('tokenizer_seconds')} / {prep.get('corpus_seconds')}",
                ],
            ],
        )
        lines.append("")
    if step.get("runs"):
        lines += _table(
            ["model", "compile", "steps", "tokens", "train tokens/s", "MFU", "val/bpb"]
            + ["val/mbpp_bpb", "wall s", "note"],
            [
                [
                    r["model"],
                    r.get("compile"),
                    r.get("steps", r.get("max_steps")),
                    r.get("tokens_seen"),
                    r.get("train_tok_s"),
                    f"{100 * r['train_mfu']:.1f}%" if r.get("train_mfu") is not None else None,
                    r.get("val/bpb"),
                    r.get("val/mbpp_bpb"),
                    r.get("wall_seconds"),
                    _row_note(r),
                ]
                for r in step["runs"]
            ],
        )

    step = steps.get("pass_at_1", {})
    lines += _section("5. MBPP pass@1 (greedy)", step)
    if step.get("rows"):
        lines.append(
            f"first {step.get('tasks')} MBPP test tasks, {step.get('max_new_tokens')} new tokens "
            f"at most, {step.get('dtype')}; judged by: {step.get('sandbox_note')}"
        )
        lines.append("")
        lines += _table(
            ["model", "pass@1", "passed", "tasks", "generation s", "judging s", "note"],
            [
                [
                    r["model"],
                    r.get("pass@1"),
                    r.get("passed"),
                    r.get("tasks"),
                    r.get("generation_s"),
                    r.get("execution_s"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )
    return "\n".join(lines) + "\n"


def _split_tokens(tokens: dict[str, int]) -> str:
    return " / ".join(f"{tokens.get(s, 0):,}" for s in ("train", "validation"))


def _section(title: str, step: dict[str, Any]) -> list[str]:
    status = step.get("status", "pending")
    seconds = step.get("seconds")
    lines = ["", f"## {title}", "", f"status: {status}" + (f", {seconds} s" if seconds else "")]
    if step.get("error"):
        lines.append(f"error: `{_fmt(step['error'])}`")
    lines += [f"- {_fmt(note)}" for note in step.get("notes", [])]
    lines.append("")
    return lines
