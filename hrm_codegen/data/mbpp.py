"""MBPP (full: 974 tasks, sanitized: 427) as `CodeTask`s, split by task id.

Sources, first that works: an explicit path (original JSONL/JSON, or the Hugging Face
parquet/arrow layout), `$HRM_CODEGEN_DATA_DIR/{mbpp.jsonl,sanitized-mbpp.json}`, then the hub
(`google-research-datasets/mbpp`). Splits are recomputed from task ids in every case so that
all sources give identical splits.

The hub is reached through `load_hub_dataset` (HumanEval and LCB use it too): the hub client
retries a dead connection with backoff for about half a minute, so an offline machine
(`HF_HUB_OFFLINE`/`HF_DATASETS_OFFLINE`) goes straight to the local cache, and otherwise one quick
request decides whether the hub is reachable at all before the client gets to retry anything.
"""

from __future__ import annotations

import ast
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hrm_codegen.data.records import read_records
from hrm_codegen.data.tasks import CodeTask, normalize_task_id

DATA_DIR_ENV = "HRM_CODEGEN_DATA_DIR"
HUB_DATASET = "google-research-datasets/mbpp"
FILENAMES = {"mbpp": "mbpp.jsonl", "mbpp_sanitized": "sanitized-mbpp.json"}
HUB_CONFIGS = {"mbpp": "full", "mbpp_sanitized": "sanitized"}
EXPECTED_COUNTS = {"mbpp": 974, "mbpp_sanitized": 427}
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
TRUE_VALUES = ("1", "true", "yes", "on")
HUB_PROBE_TIMEOUT = 3.0  # seconds for the one request that tells whether the hub answers at all
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
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


class HubUnavailable(ConnectionError):
    """The hub is offline or unreachable and the local datasets cache has no copy."""


def offline_variable(env: Mapping[str, str] | None = None) -> str | None:
    """The variable that puts the hub offline (`HF_HUB_OFFLINE=1` or `HF_DATASETS_OFFLINE=1`)."""
    env = os.environ if env is None else env
    for name in OFFLINE_VARS:
        if env.get(name, "").strip().lower() in TRUE_VALUES:
            return name
    return None


def hub_endpoint() -> str:
    """The hub's address as the hub client uses it (`HF_ENDPOINT`, else huggingface.co)."""
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except (ImportError, AttributeError):
        return os.environ.get("HF_ENDPOINT", DEFAULT_HUB_ENDPOINT).rstrip("/")


def hub_unreachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be used, after a single request without retries; None if it answers.

    Any HTTP answer below 500 means the network path works (the dataset request itself then
    reports its own errors); no answer, or a server error, means the client would only retry."""
    url = endpoint or hub_endpoint()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        return None if error.code < 500 else f"{url} answered HTTP {error.code}"
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return f"{url} is unreachable ({reason})"


@contextmanager
def _cache_only() -> Iterator[None]:
    """Run the hub libraries in offline mode (their local cache only) for the duration.

    Both read their offline flag once, at import, so the flags are set on the loaded modules."""
    import datasets.config
    from huggingface_hub import constants

    flags = [(constants, "HF_HUB_OFFLINE")]
    flags += [(datasets.config, name) for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    flags = [(module, name) for module, name in flags if hasattr(module, name)]
    saved = [getattr(module, name) for module, name in flags]
    try:
        for module, name in flags:
            setattr(module, name, True)
        yield
    finally:
        for (module, name), value in zip(flags, saved):
            setattr(module, name, value)


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one short line, to quote inside a one-line error."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_hub_dataset(name: str, *args: Any, **kwargs: Any) -> Any:
    """`datasets.load_dataset(name, ...)` that fails in seconds, not after the client's retries.

    Offline (`HF_HUB_OFFLINE`/`HF_DATASETS_OFFLINE` set) or with the hub unreachable after one
    quick request, only the local datasets cache is tried; without a copy there it raises
    `HubUnavailable` naming the reason."""
    import datasets

    variable = offline_variable()
    reason = f"{variable} is set" if variable else hub_unreachable()
    if reason is None:
        return datasets.load_dataset(name, *args, **kwargs)
    try:
        with _cache_only():
            return datasets.load_dataset(name, *args, **kwargs)
    except Exception as error:  # no cached copy: the reason the hub was not asked is the news
        # a ConnectionError here only repeats that the hub was not asked
        detail = "" if isinstance(error, ConnectionError) else f" ({first_line(error)})"
        raise HubUnavailable(f"{reason}, and the local cache has no copy{detail}") from None


def hub_snapshot(repo_id: str, *, repo_type: str = "dataset", **kwargs: Any) -> Path:
    """`huggingface_hub.snapshot_download` that fails in seconds, as `load_hub_dataset` does.

    Offline or with the hub unreachable after one quick request, only the hub cache is read;
    without a copy there it raises `HubUnavailable` naming the reason."""
    import huggingface_hub

    variable = offline_variable()
    reason = f"{variable} is set" if variable else hub_unreachable()
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id=repo_id, repo_type=repo_type, local_files_only=reason is not None, **kwargs
        )
    except Exception:
        if reason is None:
            raise
        raise HubUnavailable(f"{reason}, and the local cache has no copy") from None
    return Path(folder)


def data_dir_fix(filename: str, flags: str) -> str:
    """The command-line fix for a missing benchmark file: the variable to set, then `flags`."""
    return (
        f"set {DATA_DIR_ENV}=/path/to/folder with {filename} (from the project root e.g. "
        f"export {DATA_DIR_ENV}=$PWD/../shared/data){flags}"
    )


def _records_from_hub(variant: str) -> list[dict[str, Any]]:
    """All splits of the hub dataset, concatenated (we re-split by task id ourselves)."""
    dataset_dict = load_hub_dataset(HUB_DATASET, HUB_CONFIGS[variant])
    return [dict(row) for split in dataset_dict.values() for row in split]


def _locate(variant: str, path: str | os.PathLike | None) -> tuple[list[dict[str, Any]], str]:
    """Records from the first reachable source, and a description of where they came from."""
    filename = FILENAMES[variant]
    if path is not None:
        records = read_records(Path(path), HUB_CONFIGS[variant], filename)
        return records, str(path)
    tried = ["no explicit path given"]
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        candidate = Path(env_dir) / filename
        if candidate.exists():
            return read_records(candidate), str(candidate)
        tried.append(f"${DATA_DIR_ENV}/{filename}: {candidate} does not exist")
    else:
        tried.append(f"${DATA_DIR_ENV} is not set")
    hub = f"{HUB_DATASET}/{HUB_CONFIGS[variant]}"
    try:
        return _records_from_hub(variant), f"hub:{hub}"
    except Exception as error:  # offline, missing `datasets` cache, hub outage: report all
        tried.append(f"hub {hub}: {first_line(error)}")
    flags = f", or pass data.path=/path/to/{filename} to train_codegen.py"
    raise FileNotFoundError(
        f"could not load {variant} ({'; '.join(tried)}); {data_dir_fix(filename, flags)}"
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
