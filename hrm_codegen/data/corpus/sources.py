"""Named corpus sources: what a corpus is built from, pinned so that it rebuilds the same bytes.

A source yields `Document`s in one fixed order and describes itself with `pin()`: everything that
decides which bytes it yields (a Python version, package versions, a dataset revision, the hash of
the ordered file list). The builder records the pin in the corpus manifest and refuses to call a
corpus up to date when it changed. Sources that read files the system vouches for (pip's `RECORD`,
dpkg's md5sums) hand the expected checksum to the worker that reads the file, so every byte that
enters the corpus is verified without a second pass.

Kinds (`kind:` in a `configs/corpus/*.yaml` file): `stdlib` and `dirs` here, `installed`
(installed.py), `debian` (debian.py), `hf` (hub.py). `source_from_config` builds any of them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "corpus"

# File extension -> language, for the six Polyglot languages. C++ headers without an extension
# (libstdc++'s `vector`) get their language from the source that yields them.
LANGUAGE_BY_EXTENSION = {
    ".py": "python",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".h": "cpp",
    ".ipp": "cpp",
}
INSTALLED_PACKAGE_DIRS = ("site-packages", "dist-packages")


class CorpusSourceError(ValueError):
    """A source cannot yield its pinned files (missing, another version, a checksum mismatch)."""


def language_of(name: str) -> str | None:
    """The language of a file name by its extension, or None when it is not one of ours."""
    return LANGUAGE_BY_EXTENSION.get(os.path.splitext(name)[1].lower())


@dataclass(frozen=True)
class Document:
    """One document of a source. Exactly one of `path` (a file, or a zip archive with `member`)
    and `text` holds its content; `checksum` (algorithm, hex digest) is what the file's bytes
    must hash to, checked by the worker that reads them."""

    name: str
    language: str
    path: Path | None = None
    text: str | None = None
    member: str | None = None
    checksum: tuple[str, str] | None = None


_ARCHIVES: dict[Path, Any] = {}


def _open_archive(path: Path) -> Any:
    """A zip archive opened once per process (reopening a 50 MB src.zip per member costs ~65 ms:
    its central directory is read again each time)."""
    import zipfile

    if path not in _ARCHIVES:
        _ARCHIVES[path] = zipfile.ZipFile(path)
    return _ARCHIVES[path]


def read_document(document: Document) -> bytes | str:
    """The document's bytes (a file) or text (inline); raises `CorpusSourceError` when the
    bytes do not match the checksum the source pinned."""
    if document.text is not None:
        return document.text
    assert document.path is not None, f"document {document.name} has neither path nor text"
    if document.member is not None:
        raw = _open_archive(document.path).read(document.member)
    else:
        raw = document.path.read_bytes()
    if document.checksum is not None:
        algorithm, expected = document.checksum
        actual = hashlib.new(algorithm, raw).hexdigest()
        if actual != expected:
            raise CorpusSourceError(
                f"{document.path} ({document.name}): {algorithm} {actual} differs from the "
                f"{expected} its package lists; the installed file was changed after "
                "installation: reinstall the package it belongs to"
            )
    return raw


def names_sha256(names: Iterable[str]) -> str:
    """sha256 of an ordered list of document names: two builds read the same files iff equal."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


class CorpusSource:
    """Base of the sources: a kind, `documents()` in a fixed order and the `pin()` that fixes it.

    `documents()` is computed once and cached, so the pin and the build see the same list.
    """

    kind = "abstract"

    def __init__(self, max_documents: int | None = None) -> None:
        if max_documents is not None and max_documents < 1:
            raise ValueError(f"max_documents={max_documents} must be >= 1 (or null for all)")
        self.max_documents = max_documents
        self._documents: list[Document] | None = None

    def list_documents(self) -> Iterable[Document]:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def documents(self) -> list[Document]:
        if self._documents is None:
            docs = list(self.list_documents())
            self._documents = docs if self.max_documents is None else docs[: self.max_documents]
        return self._documents

    def __len__(self) -> int:
        return len(self.documents())

    def describe(self) -> dict[str, Any]:
        """What the source is, from its settings (no file listing)."""
        return {"kind": self.kind, "max_documents": self.max_documents}

    def pin(self) -> dict[str, Any]:
        """The settings plus what they resolved to here: document count and file-list hash."""
        docs = self.documents()
        return {
            **self.describe(),
            "documents": len(docs),
            "names_sha256": names_sha256(doc.name for doc in docs),
        }


def _walk_files(root: Path, suffixes: tuple[str, ...], skip_dirs: tuple[str, ...]) -> list[Path]:
    """Files under `root` with one of `suffixes`, never entering a folder named in `skip_dirs`,
    sorted by path relative to root."""
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in skip_dirs and d != "__pycache__")
        found += [Path(folder) / f for f in files if f.endswith(suffixes)]
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


class StdlibSource(CorpusSource):
    """The running Python's standard library: its `.py` files and nothing installed beside them.

    `site-packages`/`dist-packages` (which live inside the stdlib folder on most installs) are
    never entered. Different Python versions ship different standard libraries: `python` pins
    the version (e.g. "3.11.7"); a build under another version is refused with both versions
    named, unless `python` is null (then the version is only recorded).
    """

    kind = "stdlib"

    def __init__(
        self, python: str | None = None, max_documents: int | None = None, root: str | None = None
    ) -> None:
        super().__init__(max_documents)
        self.python = None if python is None else str(python)
        self.root = Path(root) if root else Path(sysconfig.get_paths()["stdlib"]).resolve()

    def list_documents(self) -> Iterator[Document]:
        running = platform.python_version()
        if self.python is not None and running != self.python:
            raise CorpusSourceError(
                f"source stdlib is pinned to Python {self.python} but this is Python {running}; "
                f"run under Python {self.python}, or set python=null to build this version's "
                "standard library (its fingerprint will differ)"
            )
        for path in _walk_files(self.root, (".py",), INSTALLED_PACKAGE_DIRS):
            yield Document(
                name=path.relative_to(self.root).as_posix(), language="python", path=path
            )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "pinned_python": self.python,
        }


class DirsSource(CorpusSource):
    """Source files under folders of your own, in sorted order (`--dir`).

    Not pinned by any package manager: the pin is the ordered file list plus each file's size
    and modification time, so an edited file makes the build stale.
    """

    kind = "dirs"

    def __init__(
        self,
        dirs: list[str],
        languages: list[str] | None = None,
        max_documents: int | None = None,
    ) -> None:
        super().__init__(max_documents)
        if not dirs:
            raise ValueError("source dirs needs at least one folder (--dir PATH)")
        self.dirs = [Path(str(d)).expanduser().resolve() for d in dirs]
        for folder in self.dirs:
            if not folder.is_dir():
                raise CorpusSourceError(f"source folder {folder} does not exist or is not a folder")
        self.languages = list(languages or ["python"])
        unknown = set(self.languages) - set(LANGUAGE_BY_EXTENSION.values())
        if unknown:
            raise ValueError(
                f"languages {sorted(unknown)} unknown; pick from "
                f"{sorted(set(LANGUAGE_BY_EXTENSION.values()))}"
            )

    def list_documents(self) -> Iterator[Document]:
        suffixes = tuple(e for e, lang in LANGUAGE_BY_EXTENSION.items() if lang in self.languages)
        seen: set[Path] = set()
        for index, root in enumerate(self.dirs):
            for path in _walk_files(root, suffixes, ()):
                real = path.resolve()
                if real in seen or not real.is_file():
                    continue  # overlapping roots or links: each file once
                seen.add(real)
                name = f"{index}/{path.relative_to(root).as_posix()}"
                language = language_of(path.name)
                assert language is not None
                yield Document(name=name, language=language, path=path)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dirs": [str(d) for d in self.dirs],
            "languages": self.languages,
        }

    def pin(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for doc in self.documents():
            assert doc.path is not None
            stat = doc.path.stat()
            digest.update(f"{doc.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {**super().pin(), "stat_sha256": digest.hexdigest()}


class CombinedSource(CorpusSource):
    """Several named sources read one after another (`kind: combined`, `sources: [stdlib,
    debian]`): one corpus of several languages, so one build splits, de-duplicates and
    decontaminates them together. Each document's name is prefixed by its source's."""

    kind = "combined"

    def __init__(self, sources: list[str], max_documents: int | None = None) -> None:
        super().__init__(max_documents)
        if not sources:
            raise ValueError("a combined source needs at least one source name")
        self.names = [str(name) for name in sources]
        self.parts = [source_from_config(named_source_config(name)) for name in self.names]

    def list_documents(self) -> Iterator[Document]:
        import dataclasses

        for name, part in zip(self.names, self.parts):
            for doc in part.documents():
                yield dataclasses.replace(doc, name=f"{Path(name).stem}/{doc.name}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sources": [part.pin() for part in self.parts]}


# kind -> (module, class): a kind's module is imported only when that kind is asked for.
SOURCE_KINDS = {
    "stdlib": ("hrm_codegen.data.corpus.sources", "StdlibSource"),
    "dirs": ("hrm_codegen.data.corpus.sources", "DirsSource"),
    "installed": ("hrm_codegen.data.corpus.installed", "InstalledSource"),
    "debian": ("hrm_codegen.data.corpus.debian", "DebianSource"),
    "hf": ("hrm_codegen.data.corpus.hub", "HubSource"),
    "combined": ("hrm_codegen.data.corpus.sources", "CombinedSource"),
}


def source_class(kind: str) -> Callable[..., CorpusSource]:
    """The class of a source kind."""
    import importlib

    if kind not in SOURCE_KINDS:
        raise ValueError(f"corpus source kind {kind!r} unknown; pick one of {sorted(SOURCE_KINDS)}")
    module, name = SOURCE_KINDS[kind]
    return getattr(importlib.import_module(module), name)


# Keys of a source config that belong to the build (filters, split, dedup), not to the source.
BUILD_KEYS = (
    "name",
    "description",
    "val_fraction",
    "filters",
    "decontaminate",
    "near_dedup",
    "expect_fingerprint",
    "shard_tokens",
    "language_tag",
)


def source_from_config(config: dict[str, Any]) -> CorpusSource:
    """The source a config describes (`kind` plus that kind's settings; build keys ignored)."""
    config = dict(config)
    factory = source_class(str(config.pop("kind", None)))
    settings = {key: value for key, value in config.items() if key not in BUILD_KEYS}
    try:
        return factory(**settings)
    except TypeError as error:
        raise ValueError(
            f"corpus source {factory.__name__}: bad settings {sorted(settings)} ({error})"
        ) from error


def named_source_config(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`configs/corpus/<name>.yaml` (or a yaml path) as a plain dict, with `overrides` on top."""
    from omegaconf import OmegaConf

    path = Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"corpus source {name!r} not found ({path}); pick one of {available} or pass a yaml file"
        )
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(config, dict)
    config.update(overrides or {})
    config["name"] = path.stem
    return config
