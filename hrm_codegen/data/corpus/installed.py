"""Python source of installed distributions at exact versions, verified by pip's `RECORD`.

A manifest (`name -> version`) pins which distributions go in; each one's `RECORD` lists the
files pip installed with their sha256, so the build reads exactly the bytes pip wrote and a file
edited since is refused by the worker that reads it. The site-packages folder itself is never
walked: whatever else lives there (other distributions, stray files) stays out.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from hrm_codegen.data.corpus.sources import CorpusSource, CorpusSourceError, Document

# Hashes a RECORD may carry (the wheel spec allows sha256 "or better"), readable by hashlib.
_RECORD_ALGORITHMS = {"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b"}


def normalize_name(name: str) -> str:
    """PEP 503 name, so `Jinja2`, `jinja2` and `hydra_core`/`hydra-core` each name one thing."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def _parse_manifest(distributions: dict[str, str] | list) -> dict[str, str]:
    """`{name: version}` or `["name==version", ...]` as `{normalized name: version}`."""
    if isinstance(distributions, dict):
        pairs = list(distributions.items())
    else:
        pairs = []
        for entry in distributions:
            if isinstance(entry, dict):
                pairs += list(entry.items())
                continue
            name, sep, version = str(entry).partition("==")
            if not sep:
                raise ValueError(f"distribution {entry!r}: write it as name==version")
            pairs.append((name.strip(), version.strip()))
    manifest: dict[str, str] = {}
    for name, version in pairs:
        if not isinstance(version, str):
            # yaml reads `foo: 1.10` as the float 1.1: a version must stay the text it was.
            raise ValueError(
                f"distribution {name}: version {version!r} is not a string; quote it in the "
                f'yaml ({name}: "{version}")'
            )
        key = normalize_name(name)
        if key in manifest:
            raise ValueError(f"distribution {name} is listed twice (as {key})")
        manifest[key] = version
    if not manifest:
        raise ValueError("source installed needs at least one distribution (name: version)")
    return dict(sorted(manifest.items()))


def _find_distribution(name: str, paths: list[str] | None) -> metadata.Distribution | None:
    """The distribution `name` (normalized) as Python would import it, or None."""
    if paths is None:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
    for dist in metadata.distributions(path=list(paths)):
        if normalize_name(dist.metadata["Name"] or "") == name:
            return dist  # the first on the path, the one an import would find
    return None


def installed_manifest(names: list[str], paths: list[str] | None = None) -> dict[str, str]:
    """The versions installed here of `names` ({normalized name: version}), to write a manifest."""
    manifest = {}
    for name in sorted({normalize_name(n) for n in names}):
        dist = _find_distribution(name, paths)
        if dist is None:
            raise CorpusSourceError(f"distribution {name} is not installed; pip install {name}")
        manifest[name] = dist.version
    return manifest


def _record_hex(value: str) -> tuple[str, str] | None:
    """`sha256=<urlsafe base64, no padding>` from a RECORD as (algorithm, hex digest)."""
    algorithm, sep, encoded = value.partition("=")
    if not sep or algorithm not in _RECORD_ALGORITHMS or not encoded:
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    if len(raw) != hashlib.new(algorithm).digest_size:
        return None
    return algorithm, raw.hex()


def _own_path(path: str) -> PurePosixPath | None:
    """A RECORD path inside the distribution's folder, or None for `../../bin/x`, absolute
    paths and `__pycache__` (files pip placed elsewhere or generated after install)."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or "__pycache__" in pure.parts:
        return None
    return pure


class InstalledSource(CorpusSource):
    """The `.py` files of installed distributions pinned by name and exact version.

    `paths` replaces `sys.path` when looking the distributions up (a venv's site-packages, or a
    test's fake one). Documents are `<name>-<version>/<path in RECORD>`, distributions sorted by
    normalized name and files by path, each with the sha256 its RECORD lists.
    """

    kind = "installed"

    def __init__(
        self,
        distributions: dict[str, str] | list,
        max_documents: int | None = None,
        paths: list[str] | None = None,
    ) -> None:
        super().__init__(max_documents)
        self.distributions = _parse_manifest(distributions)
        self.paths = None if paths is None else [str(Path(p).expanduser()) for p in paths]

    def _distribution(self, name: str, version: str) -> metadata.Distribution:
        dist = _find_distribution(name, self.paths)
        if dist is None:
            raise CorpusSourceError(
                f"distribution {name} is not installed; pip install {name}=={version}"
            )
        if dist.version != version:
            raise CorpusSourceError(
                f"distribution {name} is pinned to {version} but {dist.version} is installed; "
                f"pip install {name}=={version}, or pin {dist.version} in the manifest"
            )
        return dist

    def _records(self, name: str, dist: metadata.Distribution) -> list[tuple[str, str, str]]:
        """(RECORD path, algorithm, hex digest) of the distribution's own `.py` files."""
        text = dist.read_text("RECORD")
        if text is None:
            raise CorpusSourceError(
                f"distribution {name} has no RECORD (installed without pip?); its files cannot "
                f"be verified: pip install --force-reinstall {name}=={dist.version}"
            )
        rows = []
        for row in csv.reader(io.StringIO(text)):
            if not row or not row[0].endswith(".py"):
                continue
            own = _own_path(row[0])
            if own is None:
                continue
            checksum = _record_hex(row[1]) if len(row) > 1 else None
            if checksum is None:
                raise CorpusSourceError(
                    f"distribution {name}: RECORD lists {row[0]} without a usable hash "
                    f"({row[1:2]}); pip install --force-reinstall {name}=={dist.version}"
                )
            rows.append((own.as_posix(), *checksum))
        return sorted(rows)

    def list_documents(self) -> Iterator[Document]:
        seen: set[Path] = set()
        for name, version in self.distributions.items():
            dist = self._distribution(name, version)
            for record_path, algorithm, digest in self._records(name, dist):
                path = Path(str(dist.locate_file(record_path))).resolve()
                if path in seen:
                    continue  # a file two distributions both list: read it once
                if not path.is_file():
                    raise CorpusSourceError(
                        f"distribution {name}: {record_path} is in its RECORD but missing at "
                        f"{path}; pip install --force-reinstall {name}=={version}"
                    )
                seen.add(path)
                yield Document(
                    name=f"{name}-{version}/{record_path}",
                    language="python",
                    path=path,
                    checksum=(algorithm, digest),
                )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "distributions": dict(self.distributions)}

    def pin(self) -> dict[str, Any]:
        """Adds the hash of every file's RECORD checksum: the pin then fixes the bytes too."""
        digest = hashlib.sha256()
        for doc in self.documents():
            assert doc.checksum is not None
            digest.update(f"{doc.name}\0{doc.checksum[0]}:{doc.checksum[1]}\n".encode())
        return {**super().pin(), "checksums_sha256": digest.hexdigest()}
