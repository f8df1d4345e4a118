"""Corpus source `hf`: the rows of a Hugging Face dataset, pinned to one commit of its repo.

A branch moves, so a dataset named by "main" would rebuild different bytes next month; the source
takes only a full commit hash. The files are resolved with `huggingface_hub.snapshot_download`,
which reads the hub cache (`datasets--org--name/snapshots/<commit>/...`) and downloads what is
missing, unless `HF_HUB_OFFLINE` is set. Rows are streamed (parquet in row batches, JSON Lines
line by line) in sorted file order, so a corpus of many gigabytes never sits in memory; the pin
is the settings plus each file's size and sha256, never a listing of the rows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hrm_codegen.data.corpus.sources import (
    LANGUAGE_BY_EXTENSION,
    CorpusSource,
    CorpusSourceError,
    Document,
)

COMMIT_HASH = re.compile(r"[0-9a-f]{40}")
PARQUET_SUFFIXES = (".parquet",)
# `.json` files on the hub are usually JSON Lines too (codeparrot ships `file-*.json.gz`).
JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
SUPPORTED_SUFFIXES = PARQUET_SUFFIXES + JSON_LINES_SUFFIXES
BATCH_ROWS = 1024  # parquet rows decoded at a time: bounds memory for any file size
HASH_CHUNK = 1 << 20
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
# Spellings datasets use for a language field, mapped onto ours; other values are lower-cased.
LANGUAGE_ALIASES = {
    "py": "python",
    "python3": "python",
    "c++": "cpp",
    "js": "javascript",
    "golang": "go",
    "rs": "rust",
}


def hub_offline() -> bool:
    """Whether the hub must not be contacted. Read at call time, not import time:
    `huggingface_hub.constants` freezes `HF_HUB_OFFLINE` when it is first imported."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in TRUE_VALUES or bool(constants.HF_HUB_OFFLINE)


def file_sha256(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read in chunks so a multi-gigabyte shard costs no memory."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _language_name(value: Any) -> str:
    if value is None:
        return "unknown"
    name = str(value).strip().lower()
    return LANGUAGE_ALIASES.get(name, name)


def _is_string_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):
        checks.append(pa.types.is_string_view)
    return any(check(arrow_type) for check in checks)


class HubSource(CorpusSource):
    """Rows of a hub dataset at one commit: `text_field` of each row is a document.

    `data_files` are glob patterns inside the repo (hub semantics: `*` also crosses `/`).
    `language` names the language of every row (default python), or `language_field` the column
    that holds it. `where` keeps only rows whose field has one of the listed values, e.g.
    `{license: [mit, apache-2.0]}`. `documents()` is a one-pass stream, and `len()` is the row
    count when the files state it (parquet metadata, uncompressed JSON Lines), else a TypeError.
    """

    kind = "hf"

    def __init__(
        self,
        dataset: str,
        revision: Any,
        data_files: str | list[str],
        text_field: str,
        language: str | None = None,
        language_field: str | None = None,
        max_documents: int | None = None,
        cache_dir: str | None = None,
        where: dict[str, list[Any]] | None = None,
    ) -> None:
        super().__init__(max_documents)
        if not isinstance(dataset, str) or not dataset.strip():
            raise ValueError(
                f"source hf: dataset={dataset!r} must be a hub repo id like 'org/name'"
            )
        self.dataset = dataset.strip()
        self.revision = self._check_revision(revision)
        patterns = [data_files] if isinstance(data_files, str) else list(data_files or [])
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(
                f"source hf: data_files={data_files!r} must be glob patterns inside the repo, "
                "e.g. 'data/python/*.parquet'"
            )
        self.data_files = patterns
        if not isinstance(text_field, str) or not text_field:
            raise ValueError(f"source hf: text_field={text_field!r} must name the text column")
        self.text_field = text_field
        if language is not None and language_field is not None:
            raise ValueError(
                f"source hf: set language={language!r} or language_field={language_field!r}, "
                "not both"
            )
        known = sorted(set(LANGUAGE_BY_EXTENSION.values()))
        if language is not None and language not in known:
            raise ValueError(f"source hf: language {language!r} unknown; pick one of {known}")
        self.language_field = language_field
        self.language = None if language_field is not None else (language or "python")
        self.cache_dir = None if cache_dir is None else str(Path(str(cache_dir)).expanduser())
        self.where = {
            str(field): sorted(
                {str(value) for value in ([values] if isinstance(values, str) else values)}
            )
            for field, values in (where or {}).items()
        }
        for field, values in self.where.items():
            if not values:
                raise ValueError(f"source hf: where.{field} lists no values; drop it or add some")
        self._files: list[tuple[str, Path]] | None = None
        self._file_pins: list[dict[str, Any]] | None = None

    def _check_revision(self, revision: Any) -> str:
        branch = revision if isinstance(revision, str) and revision else "main"
        hint = (
            f"find the hash on https://huggingface.co/datasets/{self.dataset}/commits/{branch} or "
            f"with huggingface_hub.HfApi().dataset_info('{self.dataset}', revision='{branch}').sha"
        )
        if not isinstance(revision, str):
            raise CorpusSourceError(
                f"source hf: revision {revision!r} of {self.dataset} is not a string; quote the "
                f"40-character commit hash in the yaml (unquoted hex can load as a number); {hint}"
            )
        if not COMMIT_HASH.fullmatch(revision):
            raise CorpusSourceError(
                f"source hf: revision {revision!r} of {self.dataset} is not a full commit hash; a "
                "branch or tag moves, so pin the 40-character hex commit the corpus is built "
                f"from: {hint}"
            )
        return revision

    # -- resolving the files -------------------------------------------------------------

    def _snapshot(self) -> Path:
        """The snapshot folder of the pinned commit, from the cache or downloaded."""
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        offline = hub_offline()
        where = f"{self.dataset} at commit {self.revision}"
        download = (
            f"hf download {self.dataset} --repo-type dataset --revision {self.revision} "
            + " ".join(f"--include '{pattern}'" for pattern in self.data_files)
        )
        cache = self.cache_dir or constants.HF_HUB_CACHE
        try:
            folder = huggingface_hub.snapshot_download(
                repo_id=self.dataset,
                repo_type="dataset",
                revision=self.revision,
                allow_patterns=self.data_files,
                cache_dir=self.cache_dir,
                local_files_only=offline,
            )
        except GatedRepoError as error:
            raise CorpusSourceError(
                f"source hf: {self.dataset} is gated: accept its terms on "
                f"https://huggingface.co/datasets/{self.dataset} and log in (hf auth login, or "
                f"HF_TOKEN) ({type(error).__name__})"
            ) from error
        except RepositoryNotFoundError as error:
            raise CorpusSourceError(
                f"source hf: dataset {self.dataset} not found on the hub (or private): check the "
                "repo id, or log in (hf auth login, or HF_TOKEN) if it is private"
            ) from error
        except RevisionNotFoundError as error:
            raise CorpusSourceError(
                f"source hf: {self.dataset} has no commit {self.revision}: check the hash on "
                f"https://huggingface.co/datasets/{self.dataset}/commits/main"
            ) from error
        except LocalEntryNotFoundError as error:
            if offline:
                reason, fix = "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE to download it"
            else:
                cause = str(error.__cause__ or error).splitlines()[0]
                reason, fix = f"the hub could not be reached ({cause})", "check the connection"
            raise CorpusSourceError(
                f"source hf: {where} is not (fully) in the hub cache {cache} and {reason}: "
                f"{fix}, or run `{download}` on a connected machine and copy its datasets--* "
                f"folder into {cache}"
            ) from error
        except HfHubHTTPError as error:
            raise CorpusSourceError(
                f"source hf: downloading {where} failed ({str(error).splitlines()[0]}); retry, "
                "or fetch it with "
                f"`{download}`"
            ) from error
        return Path(folder)

    def files(self) -> list[tuple[str, Path]]:
        """The data files, as (path in the repo, real file) in sorted order; resolved once."""
        if self._files is None:
            from huggingface_hub.utils import filter_repo_objects

            snapshot = self._snapshot()
            present = []
            for folder, subdirs, names in os.walk(snapshot):
                subdirs.sort()
                present += [
                    (Path(folder) / name).relative_to(snapshot).as_posix() for name in names
                ]
            matched = sorted(filter_repo_objects(present, allow_patterns=self.data_files))
            if not matched:
                sample = ", ".join(sorted(present)[:8]) or "nothing"
                raise CorpusSourceError(
                    f"source hf: no file of {self.dataset} at {self.revision} matches data_files "
                    f"{self.data_files} (the local snapshot {snapshot} holds: {sample}); fix "
                    "data_files to patterns of the repo's files"
                )
            files = []
            for name in matched:
                if not name.endswith(SUPPORTED_SUFFIXES):
                    raise CorpusSourceError(
                        f"source hf: {self.dataset}/{name} matches data_files {self.data_files} "
                        f"but is not one of {list(SUPPORTED_SUFFIXES)}; narrow data_files to "
                        "parquet or JSON Lines files"
                    )
                link = snapshot / name
                try:
                    # The cache stores snapshot files as links to content-addressed blobs.
                    real = link.resolve(strict=True)
                except (OSError, RuntimeError) as error:
                    raise CorpusSourceError(
                        f"source hf: {link} is a broken link into the hub cache; delete "
                        f"{snapshot} and download {self.dataset} at {self.revision} again"
                    ) from error
                files.append((name, real))
            self._files = files
        return self._files

    # -- reading rows ----------------------------------------------------------------------

    def _fields(self) -> list[str]:
        fields = [self.text_field]
        if self.language_field is not None:
            fields.append(self.language_field)
        fields += [field for field in self.where if field not in fields]
        return fields

    def _missing_field(self, name: str, field: str, available: list[str]) -> CorpusSourceError:
        if field == self.text_field:
            setting = "text_field"
        elif field == self.language_field:
            setting = "language_field"
        else:
            setting = f"where.{field}"
        return CorpusSourceError(
            f"source hf: {self.dataset}/{name} has no field {field!r} (it has: "
            f"{', '.join(sorted(available))}); set {setting} to one of them"
        )

    def _text(self, name: str, row: int, value: Any) -> str:
        if value is None:
            return ""  # kept so row numbers and counts stay exact; the length filter drops it
        if not isinstance(value, str):
            raise CorpusSourceError(
                f"source hf: {self.dataset}/{name}#{row} field {self.text_field!r} holds "
                f"{type(value).__name__}, not text; set text_field to a string column"
            )
        return value

    def _unreadable(self, name: str, error: object) -> CorpusSourceError:
        return CorpusSourceError(
            f"source hf: {self.dataset}/{name} at {self.revision} is unreadable ({error}); "
            "delete it from the hub cache and download it again"
        )

    def _open_parquet(self, name: str, path: Path) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as error:
            raise self._unreadable(name, error) from error

    def _parquet_rows(self, name: str, path: Path) -> Iterator[dict[str, Any]]:
        import pyarrow as pa

        with self._open_parquet(name, path) as table:
            schema = table.schema_arrow
            for field in self._fields():
                if field not in schema.names:
                    raise self._missing_field(name, field, schema.names)
            text_type = schema.field(self.text_field).type
            if not _is_string_type(text_type):
                raise CorpusSourceError(
                    f"source hf: {self.dataset}/{name} column {self.text_field!r} is {text_type}, "
                    "not text; set text_field to a string column"
                )
            batches = table.iter_batches(batch_size=BATCH_ROWS, columns=self._fields())
            while True:
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as error:
                    raise self._unreadable(name, error) from error
                if batch is None:
                    return
                columns = {field: batch.column(field).to_pylist() for field in self._fields()}
                for index in range(batch.num_rows):
                    yield {field: values[index] for field, values in columns.items()}

    def _json_lines_rows(self, name: str, path: Path) -> Iterator[dict[str, Any]]:
        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as lines:
            number = 0
            try:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise CorpusSourceError(
                            f"source hf: {self.dataset}/{name} line {number} is not JSON "
                            f"({error.msg}); data_files must name JSON Lines files, one object "
                            "per line"
                        ) from error
                    if not isinstance(record, dict):
                        raise CorpusSourceError(
                            f"source hf: {self.dataset}/{name} line {number} is a "
                            f"{type(record).__name__}, not an object; data_files must name JSON "
                            "Lines files of records"
                        )
                    for field in self._fields():
                        if field not in record:
                            raise self._missing_field(name, field, list(record))
                    yield record
            except (UnicodeDecodeError, EOFError, OSError, zlib.error) as error:
                raise self._unreadable(name, f"after line {number}: {error}") from error

    def _rows(self, name: str, path: Path) -> Iterator[dict[str, Any]]:
        if name.endswith(PARQUET_SUFFIXES):
            return self._parquet_rows(name, path)
        return self._json_lines_rows(name, path)

    def list_documents(self) -> Iterator[Document]:
        """Each kept row as a Document named `<file>#<row>` (row counts all rows of the file)."""
        produced = 0
        for name, path in self.files():
            for row, record in enumerate(self._rows(name, path)):
                if any(
                    record[field] is None or str(record[field]) not in values
                    for field, values in self.where.items()
                ):
                    continue
                language = (
                    self.language
                    if self.language_field is None
                    else _language_name(record[self.language_field])
                )
                text = self._text(name, row, record[self.text_field])
                yield Document(name=f"{name}#{row}", language=language, text=text)
                produced += 1
                if self.max_documents is not None and produced >= self.max_documents:
                    return

    def documents(self) -> Iterator[Document]:  # type: ignore[override]
        """A fresh one-pass stream: a hub dataset is too large to hold as a list."""
        return self.list_documents()

    def __len__(self) -> int:
        """Rows the stream yields, from parquet metadata and line counts; TypeError when the
        count would need a full read (compressed JSON Lines, a `where` filter)."""
        if self.where:
            raise TypeError(
                f"source hf {self.dataset}: rows kept by `where` are known only once read"
            )
        total = 0
        for name, path in self.files():
            if self.max_documents is not None and total >= self.max_documents:
                break
            if name.endswith(PARQUET_SUFFIXES):
                with self._open_parquet(name, path) as table:
                    total += table.metadata.num_rows
            elif name.endswith(".gz"):
                raise TypeError(
                    f"source hf {self.dataset}: {name} is compressed; no cheap row count"
                )
            else:
                with open(path, "rb") as lines:
                    total += sum(1 for line in lines if line.strip())
        return total if self.max_documents is None else min(total, self.max_documents)

    def __bool__(self) -> bool:
        return True  # `if source:` must not count rows (or raise) through __len__

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dataset": self.dataset,
            "revision": self.revision,
            "data_files": list(self.data_files),
            "text_field": self.text_field,
            "language": self.language,
            "language_field": self.language_field,
            "where": {field: list(values) for field, values in self.where.items()},
        }

    def pin(self) -> dict[str, Any]:
        """The settings plus each resolved file's path, size and sha256; rows are not listed."""
        if self._file_pins is None:
            pins = []
            for name, path in self.files():
                size, sha256 = file_sha256(path)
                pins.append({"path": name, "size": size, "sha256": sha256})
            self._file_pins = pins
        return {**self.describe(), "files": [dict(pin) for pin in self._file_pins]}
