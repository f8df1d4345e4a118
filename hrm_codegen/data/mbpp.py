"""MBPP (full: 974 tasks, sanitized: 427) as `CodeTask`s, split by task id.

Sources, first that works: an explicit path (original JSONL/JSON, or the Hugging Face
parquet/arrow layout), `$HRM_CODEGEN_DATA_DIR/{mbpp.jsonl,sanitized-mbpp.json}`, then the hub
(`google-research-datasets/mbpp`). Splits are recomputed from task ids in every case so that
all sources give identical splits.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from hrm_codegen.data.records import read_records
from hrm_codegen.data.tasks import CodeTask, normalize_task_id

DATA_DIR_ENV = "HRM_CODEGEN_DATA_DIR"
HUB_DATASET = "google-research-datasets/mbpp"
FILENAMES = {"mbpp": "mbpp.jsonl", "mbpp_sanitized": "sanitized-mbpp.json"}
HUB_CONFIGS = {"mbpp": "full", "mbpp_sanitized": "sanitized"}
EXPECTED_COUNTS = {"mbpp": 974, "mbpp_sanitized": 427}
# Inclusive task-id ranges of the splits defined in the MBPP paper (Austin et al., 2021).
SPLITS = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
}


def split_of(task_number: int) -> str:
    """The MBPP split a task id belongs to."""
    for name, (low, high) in SPLITS.items():
        if low <= task_number <= high:
            return name
    raise ValueError(f"MBPP task id {task_number} is outside 1..974; is this really MBPP?")


def find_entry_point(code: str, tests: tuple[str, ...]) -> str | None:
    """The function the tests call: the first name called in the tests that the code defines.

    MBPP has no entry-point field; augmentation needs it so it never renames what tests call.
    """
    try:
        defined = {
            node.name
            for node in ast.parse(code.replace("\r\n", "\n")).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
    except SyntaxError:
        return None
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if is_call and node.func.id in defined:
                return node.func.id
    return None


def _task_from_record(record: dict[str, Any], variant: str) -> CodeTask:
    """Build a task from either schema; the field names tell full from sanitized."""
    tests = tuple(record["test_list"])
    task_id = normalize_task_id(variant, int(record["task_id"]))
    if variant == "mbpp":
        if "text" not in record:
            raise ValueError(
                f"record {task_id} has no 'text' field: this looks like sanitized MBPP; "
                "load it with load_benchmark('mbpp_sanitized', path=...)"
            )
        return CodeTask(
            task_id=task_id,
            benchmark="mbpp",
            prompt=record["text"],
            reference_solution=record["code"],
            tests=tests,
            entry_point=find_entry_point(record["code"], tests),
            setup_code=record.get("test_setup_code") or "",
        )
    if "prompt" not in record:
        raise ValueError(
            f"record {task_id} has no 'prompt' field: this looks like full MBPP; "
            "load it with load_benchmark('mbpp', path=...)"
        )
    return CodeTask(
        task_id=task_id,
        benchmark="mbpp_sanitized",
        prompt=record["prompt"],
        reference_solution=record["code"],
        tests=tests,
        entry_point=find_entry_point(record["code"], tests),
        test_imports=tuple(record.get("test_imports") or ()),
    )


def _records_from_hub(variant: str) -> list[dict[str, Any]]:
    """All splits of the hub dataset, concatenated (we re-split by task id ourselves)."""
    import datasets

    dataset_dict = datasets.load_dataset(HUB_DATASET, HUB_CONFIGS[variant])
    return [dict(row) for split in dataset_dict.values() for row in split]


def _locate(variant: str, path: str | os.PathLike | None) -> tuple[list[dict[str, Any]], str]:
    """Records from the first reachable source, and a description of where they came from."""
    tried: list[str] = []
    if path is not None:
        records = read_records(Path(path), HUB_CONFIGS[variant], FILENAMES[variant])
        return records, str(path)
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        candidate = Path(env_dir) / FILENAMES[variant]
        if candidate.exists():
            return read_records(candidate), str(candidate)
        tried.append(f"${DATA_DIR_ENV}/{FILENAMES[variant]} ({candidate} does not exist)")
    else:
        tried.append(f"${DATA_DIR_ENV}/{FILENAMES[variant]} (${DATA_DIR_ENV} is not set)")
    try:
        return _records_from_hub(variant), f"hub:{HUB_DATASET}/{HUB_CONFIGS[variant]}"
    except Exception as error:  # offline, missing `datasets` cache, hub outage: report all
        tried.append(f"datasets.load_dataset({HUB_DATASET!r}, {HUB_CONFIGS[variant]!r}) ({error})")
    raise FileNotFoundError(
        f"could not load {variant}; tried:\n  1. an explicit path (none given)\n  2. "
        + "\n  3. ".join(tried)
        + f"\nPass load_benchmark({variant!r}, path='.../{FILENAMES[variant]}') or set "
        f"{DATA_DIR_ENV} to the folder that holds {FILENAMES[variant]}."
    )


def load_mbpp(
    variant: str = "mbpp", split: str | None = None, path: str | os.PathLike | None = None
) -> list[CodeTask]:
    """MBPP tasks of one variant (`mbpp` or `mbpp_sanitized`), optionally one split, by task id."""
    if variant not in FILENAMES:
        raise ValueError(f"MBPP variant {variant!r} unknown; use 'mbpp' or 'mbpp_sanitized'")
    if split is not None and split not in SPLITS:
        raise ValueError(f"MBPP split {split!r} unknown; use one of {list(SPLITS)} or None (all)")
    records, source = _locate(variant, path)
    tasks = sorted(
        (_task_from_record(record, variant) for record in records), key=lambda t: t.number
    )
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source} holds duplicate MBPP task ids; is it two files concatenated?")
    if split is not None:
        tasks = [task for task in tasks if split_of(task.number) == split]
    return tasks
