"""Read benchmark records (one dict per task) from the file layouts the datasets ship in.

Supported: JSON Lines (optionally gzipped), a JSON list, Parquet files, Arrow files, a folder
written by `datasets.save_to_disk`, and a Hugging Face repository snapshot (config subfolders
of parquet files). Keeping this separate lets each benchmark loader stay about its schema.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

_TABLE_SUFFIXES = (".parquet", ".arrow")


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    records = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from error
    return records


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    # `datasets` caches and save_to_disk write the Arrow *stream* format; plain files use the
    # random-access format. Try both rather than making the user know the difference.
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all().to_pylist()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all().to_pylist()


def _read_file(path: Path) -> list[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        return _read_json_lines(path)
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path} holds a JSON {type(data).__name__}, expected a list of tasks")
        return data
    if name.endswith(_TABLE_SUFFIXES):
        return _read_table(path)
    raise ValueError(
        f"cannot read {path}: expected .jsonl, .jsonl.gz, .json, .parquet or .arrow, "
        "or a folder with those"
    )


def read_records(
    path: Path, hf_config: str | None = None, filename: str | None = None
) -> list[dict[str, Any]]:
    """All records under `path` (a file or folder), every split concatenated.

    `hf_config` picks the config subfolder of a hub snapshot (MBPP's `full`/`sanitized`);
    `filename` is the canonical file to prefer when `path` is a data folder.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"benchmark path {path} does not exist")
    if path.is_file():
        return _read_file(path)
    if filename is not None and (path / filename).is_file():
        return _read_file(path / filename)
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        splits = loaded.values() if isinstance(loaded, datasets.DatasetDict) else [loaded]
        return [dict(row) for split in splits for row in split]
    if hf_config is not None and (path / hf_config).is_dir():
        path = path / hf_config
    for suffix in (".parquet", ".arrow", ".jsonl", ".jsonl.gz", ".json"):
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        # A hub snapshot of MBPP holds both configs; never mix them.
        if hf_config is None:
            files = [p for p in files if p.parent.name not in ("full", "sanitized")] or files
        if files:
            return [record for file in files for record in _read_file(file)]
    raise FileNotFoundError(
        f"no benchmark files under {path}: expected {filename or 'a .jsonl/.json file'}, "
        "parquet/arrow files, or a datasets.save_to_disk folder"
    )
