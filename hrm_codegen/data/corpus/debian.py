"""Source code shipped by Debian packages at recorded versions, verified by dpkg's md5sums.

The other five Polyglot languages have no pip to vouch for their files, but Debian packages
(the Go tree, the Rust standard library, OpenJDK's `src.zip`, C++ headers, Node modules) do:
dpkg records each installed package's version in `<admindir>/status` and the md5 of every file
it unpacked in `<admindir>/info/<package>.md5sums`. Only files a package's md5sums list are
taken, so nothing else on the system can slip in, and each one is checked against its md5 by
the worker that reads it.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.data.corpus.sources import (
    LANGUAGE_BY_EXTENSION,
    CorpusSource,
    CorpusSourceError,
    Document,
    language_of,
)

_ENTRY_KEYS = {"name", "version", "architecture", "language", "include", "exclude", "archive"}
_ENTRY_KEYS |= {"members"}
_MD5_LINE = re.compile(r"([0-9a-fA-F]{32}) [ *]?(.+)")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: `*` and `?` stay inside one folder, `**` spans folders (`a/**/b`
    also matches `a/b`). fnmatch lets `*` cross `/`, which would make patterns too greedy."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class _Matcher:
    """Include globs minus exclude globs."""

    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, include: list[str], exclude: list[str]) -> _Matcher:
        return cls(tuple(map(glob_regex, include)), tuple(map(glob_regex, exclude)))

    def __call__(self, path: str) -> bool:
        return any(p.match(path) for p in self.include) and not any(
            p.match(path) for p in self.exclude
        )


def _strings(entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key) or []
    if isinstance(value, str):
        value = [value]
    return [str(v).lstrip("/") for v in value]


def _parse_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One `packages:` entry checked and with defaults, as describe() records it."""
    if not isinstance(entry, dict):
        raise ValueError(f"package entry {entry!r} must be a mapping with name and version")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"package entry {entry.get('name')}: unknown keys {sorted(unknown)}")
    name, version = entry.get("name"), entry.get("version")
    if not name or version is None:
        raise ValueError(f"package entry {entry!r} needs a name and a version")
    if not isinstance(version, str):
        raise ValueError(
            f'package {name}: version {version!r} is not a string; quote it ("{version}")'
        )
    language = entry.get("language")
    if language is not None and language not in set(LANGUAGE_BY_EXTENSION.values()):
        raise ValueError(
            f"package {name}: language {language!r} unknown; pick from "
            f"{sorted(set(LANGUAGE_BY_EXTENSION.values()))}"
        )
    parsed = {
        "name": str(name),
        "version": version,
        "architecture": entry.get("architecture"),
        "language": language,
        "include": _strings(entry, "include"),
        "exclude": _strings(entry, "exclude"),
        "archive": str(entry["archive"]).lstrip("/") if entry.get("archive") else None,
        "members": _strings(entry, "members"),
    }
    if not parsed["include"] and not parsed["archive"]:
        raise ValueError(f"package {name}: give include globs, an archive, or both")
    if parsed["archive"] and not parsed["members"]:
        raise ValueError(f"package {name}: archive {parsed['archive']} needs members globs")
    return parsed


def read_dpkg_status(path: Path) -> list[dict[str, str]]:
    """The stanzas of a dpkg status file (deb822: `Key: value`, continuation lines indented,
    stanzas separated by blank lines), keeping only the first line of each field."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _apt_fix(name: str, version: str) -> str:
    return f"apt-get install {name}={version}"


class DebianSource(CorpusSource):
    """Files that installed Debian packages own, pinned by package name and exact version.

    Each entry of `packages` names a package, its version, the `language` of its documents
    (else taken from each file's extension), `include`/`exclude` globs over paths relative to
    `root`, and optionally an `archive` (a zip the package owns, e.g. OpenJDK's `src.zip`) whose
    members matching `members` (minus `exclude`) become documents. Documents are
    `<package>-<version>/<path>` (`.../src.zip!/<member>` for members), sorted per package,
    packages in config order.
    """

    kind = "debian"

    def __init__(
        self,
        packages: list[dict],
        max_documents: int | None = None,
        admindir: str = "/var/lib/dpkg",
        root: str = "/",
    ) -> None:
        super().__init__(max_documents)
        if not packages:
            raise ValueError("source debian needs at least one package entry")
        self.packages = [_parse_entry(dict(entry)) for entry in packages]
        names = [p["name"] for p in self.packages]
        if len(set(names)) != len(names):
            raise ValueError(
                f"packages listed twice: {sorted({n for n in names if names.count(n) > 1})}"
            )
        self.admindir = Path(admindir)
        self.root = Path(root)
        self._archive_md5: dict[str, str] = {}

    def _installed(self, entry: dict[str, Any], stanzas: list[dict[str, str]]) -> dict[str, str]:
        """The status stanza of the entry's installed package; refuses another version."""
        name, version = entry["name"], entry["version"]
        found = [s for s in stanzas if s.get("Package") == name]
        installed = [s for s in found if s.get("Status", "").split()[-1:] == ["installed"]]
        if entry["architecture"]:
            installed = [s for s in installed if s.get("Architecture") == entry["architecture"]]
        if not installed:
            state = f" (dpkg state: {found[0].get('Status')})" if found else ""
            raise CorpusSourceError(
                f"package {name} is not installed{state}; {_apt_fix(name, version)}"
            )
        if len(installed) > 1:
            arches = sorted(s.get("Architecture", "?") for s in installed)
            raise CorpusSourceError(
                f"package {name} is installed for architectures {arches}; set architecture: "
                f"<one of them> in its entry"
            )
        stanza = installed[0]
        if stanza.get("Version") != version:
            raise CorpusSourceError(
                f"package {name} is pinned to {version} but {stanza.get('Version')} is "
                f"installed; {_apt_fix(name, version)}, or pin {stanza.get('Version')}"
            )
        return stanza

    def _md5sums(self, entry: dict[str, Any], stanza: dict[str, str]) -> dict[str, str]:
        """{path relative to root: md5} from the package's md5sums (`<name>:<arch>` for
        Multi-Arch: same packages, else `<name>`)."""
        name = entry["name"]
        info = self.admindir / "info"
        candidates = [info / f"{name}.md5sums"]
        if stanza.get("Architecture"):
            candidates.insert(0, info / f"{name}:{stanza['Architecture']}.md5sums")
        for path in candidates:
            if path.is_file():
                sums = {}
                for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
                    match = _MD5_LINE.fullmatch(line.rstrip("\r"))
                    if match:
                        sums[match.group(2).lstrip("/")] = match.group(1).lower()
                return sums
        raise CorpusSourceError(
            f"package {name} has no md5sums in {info}; its files cannot be verified: "
            f"apt-get install --reinstall {name}={entry['version']}"
        )

    def _language(self, entry: dict[str, Any], path: str) -> str:
        language = entry["language"] or language_of(path)
        if language is None:
            raise CorpusSourceError(
                f"package {entry['name']}: {path} has no known source extension; set language "
                "in its entry or narrow include"
            )
        return language

    def _file_documents(self, entry: dict[str, Any], sums: dict[str, str]) -> list[Document]:
        name, version = entry["name"], entry["version"]
        matcher = _Matcher.of(entry["include"], entry["exclude"])
        docs = []
        for rel in sorted(p for p in sums if entry["include"] and matcher(p)):
            path = self.root / rel
            if not path.is_file():
                raise CorpusSourceError(
                    f"package {name}: {rel} is in its md5sums but missing under {self.root}; "
                    f"apt-get install --reinstall {name}={version}"
                )
            docs.append(
                Document(
                    name=f"{name}-{version}/{rel}",
                    language=self._language(entry, rel),
                    path=path,
                    checksum=("md5", sums[rel]),
                )
            )
        return docs

    def _archive_documents(self, entry: dict[str, Any], sums: dict[str, str]) -> list[Document]:
        """Members of the entry's zip, after checking the zip against its md5 once here."""
        name, version, archive = entry["name"], entry["version"], entry["archive"]
        if archive not in sums:
            raise CorpusSourceError(
                f"package {name}: archive {archive} is not among the files it installed; "
                "fix the archive path (dpkg -L " + name + ")"
            )
        path = self.root / archive
        if not path.is_file():
            raise CorpusSourceError(
                f"package {name}: archive {archive} is missing under {self.root}; "
                f"apt-get install --reinstall {name}={version}"
            )
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sums[archive]:
            raise CorpusSourceError(
                f"package {name}: {path} md5 {digest.hexdigest()} differs from the "
                f"{sums[archive]} its package lists; apt-get install --reinstall {name}={version}"
            )
        matcher = _Matcher.of(entry["members"], entry["exclude"])
        with zipfile.ZipFile(path) as zipped:
            members = sorted(m for m in zipped.namelist() if not m.endswith("/") and matcher(m))
        docs = []
        for member in members:
            doc_name = f"{name}-{version}/{archive}!/{member}"
            self._archive_md5[doc_name] = sums[archive]
            language = self._language(entry, member)
            docs.append(Document(name=doc_name, language=language, path=path, member=member))
        return docs

    def list_documents(self) -> Iterator[Document]:
        status = self.admindir / "status"
        if not status.is_file():
            raise CorpusSourceError(
                f"no dpkg status at {status}; set admindir to a Debian system's dpkg folder"
            )
        stanzas = read_dpkg_status(status)
        for entry in self.packages:
            sums = self._md5sums(entry, self._installed(entry, stanzas))
            docs = self._file_documents(entry, sums)
            if entry["archive"]:
                docs += self._archive_documents(entry, sums)
            yield from sorted(docs, key=lambda doc: doc.name)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "packages": [dict(p) for p in self.packages]}

    def pin(self) -> dict[str, Any]:
        """Adds the hash of every document's md5 (an archive member's: its archive's), so the
        pin fixes the bytes as well as the names."""
        digest = hashlib.sha256()
        for doc in self.documents():
            md5 = doc.checksum[1] if doc.checksum else self._archive_md5[doc.name]
            digest.update(f"{doc.name}\0md5:{md5}\n".encode())
        return {**super().pin(), "checksums_sha256": digest.hexdigest()}
