"""DebianSource on a fake dpkg admindir and root: md5sums-pinned files, versions, archives."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from hrm_codegen.data.corpus.debian import DebianSource, glob_regex, read_dpkg_status
from hrm_codegen.data.corpus.sources import CorpusSourceError, read_document

GO_FILES = {
    "usr/share/go/src/strings/strings.go": b"package strings\n",
    "usr/share/go/src/strings/builder.go": b"package strings\n\ntype Builder struct{}\n",
    "usr/share/go/src/strings/strings_test.go": b"package strings_test\n",
    "usr/share/go/src/sort/sort.go": b"package sort\n",
    "usr/share/go/src/sort/testdata/x.go": b"package x\n",
    "usr/share/go/README": b"not code\n",
}
CPP_FILES = {"usr/include/c++/12/vector": b"#pragma once\n", "usr/include/c++/12/bits/a.h": b"//\n"}
JAVA_MEMBERS = {
    "java.base/java/util/List.java": b"package java.util;\n",
    "java.base/java/util/Map.java": b"package java.util;\n",
    "java.base/sun/misc/Unsafe.java": b"package sun.misc;\n",
    "java.base/java/util/": b"",
}

STATUS = """Package: golang-src
Status: install ok installed
Priority: optional
Architecture: all
Version: 1.19.8-2
Description: Go source
 with a continuation line
 Version: 9.9 (not a field)

Package: libstdcxx-dev
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 12.2.0-14

Package: jdk-source
Status: install ok installed
Architecture: all
Version: 17.0.19+10-1

Package: removed-pkg
Status: deinstall ok config-files
Architecture: all
Version: 1.0
"""


def write_package(root: Path, info: Path, md5sums_name: str, files: dict[str, bytes]) -> None:
    """Files under root and the md5sums dpkg would have written for them."""
    lines = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        lines.append(f"{hashlib.md5(data).hexdigest()}  {rel}")
    (info / f"{md5sums_name}.md5sums").write_text("\n".join(lines) + "\n")


@pytest.fixture
def system(tmp_path: Path) -> tuple[Path, Path]:
    """(admindir, root) of a fake Debian system with three packages installed."""
    admindir, root = tmp_path / "dpkg", tmp_path / "root"
    (admindir / "info").mkdir(parents=True)
    (admindir / "status").write_text(STATUS)
    write_package(root, admindir / "info", "golang-src", GO_FILES)
    write_package(root, admindir / "info", "libstdcxx-dev:amd64", CPP_FILES)
    archive = root / "usr/lib/jvm/src.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        for member, data in JAVA_MEMBERS.items():
            zipped.writestr(member, data)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    (admindir / "info/jdk-source.md5sums").write_text(f"{digest}  usr/lib/jvm/src.zip\n")
    # a file on disk that no package owns, matching the Go glob: must never be taken
    (root / "usr/share/go/src/sort/planted.go").write_bytes(b"package sort\n")
    return admindir, root


GO = {
    "name": "golang-src",
    "version": "1.19.8-2",
    "include": ["usr/share/go/src/**/*.go"],
    "exclude": ["**/*_test.go", "**/testdata/**"],
}
CPP = {
    "name": "libstdcxx-dev",
    "version": "12.2.0-14",
    "language": "cpp",
    "include": ["usr/include/c++/12/**"],
}
JAVA = {
    "name": "jdk-source",
    "version": "17.0.19+10-1",
    "language": "java",
    "archive": "usr/lib/jvm/src.zip",
    "members": ["java.base/java/**"],
}


def source(system: tuple[Path, Path], *packages: dict, **kwargs: object) -> DebianSource:
    admindir, root = system
    return DebianSource(list(packages), admindir=str(admindir), root=str(root), **kwargs)


def test_documents_are_owned_matching_files_with_md5(system: tuple[Path, Path]) -> None:
    docs = source(system, GO).documents()
    assert [d.name for d in docs] == [
        "golang-src-1.19.8-2/usr/share/go/src/sort/sort.go",
        "golang-src-1.19.8-2/usr/share/go/src/strings/builder.go",
        "golang-src-1.19.8-2/usr/share/go/src/strings/strings.go",
    ]
    root = system[1]
    for doc in docs:
        rel = doc.name.split("/", 1)[1]
        assert doc.language == "go"  # no language in the entry: from the extension
        assert doc.path == root / rel
        assert doc.checksum == ("md5", hashlib.md5(GO_FILES[rel]).hexdigest())
        assert read_document(doc) == GO_FILES[rel]


def test_packages_in_config_order_and_multiarch_md5sums(system: tuple[Path, Path]) -> None:
    src = source(system, CPP, GO)
    docs = src.documents()
    assert [d.name for d in docs[:2]] == [
        "libstdcxx-dev-12.2.0-14/usr/include/c++/12/bits/a.h",
        "libstdcxx-dev-12.2.0-14/usr/include/c++/12/vector",
    ]
    assert {d.language for d in docs[:2]} == {"cpp"}  # `vector` has no extension
    assert docs[2].name.startswith("golang-src-")
    pin = src.pin()
    assert pin["documents"] == 5
    assert [p["name"] for p in pin["packages"]] == ["libstdcxx-dev", "golang-src"]
    assert pin["packages"][1]["version"] == "1.19.8-2"
    assert len(source(system, CPP, GO, max_documents=1)) == 1


def test_archive_members_become_documents(system: tuple[Path, Path]) -> None:
    docs = source(system, JAVA).documents()
    archive = system[1] / "usr/lib/jvm/src.zip"
    assert [d.name for d in docs] == [
        "jdk-source-17.0.19+10-1/usr/lib/jvm/src.zip!/java.base/java/util/List.java",
        "jdk-source-17.0.19+10-1/usr/lib/jvm/src.zip!/java.base/java/util/Map.java",
    ]
    assert all(d.path == archive and d.checksum is None and d.language == "java" for d in docs)
    assert read_document(docs[1]) == JAVA_MEMBERS["java.base/java/util/Map.java"]
    assert "checksums_sha256" in source(system, JAVA).pin()


def test_tampered_archive_is_refused_when_listing(system: tuple[Path, Path]) -> None:
    archive = system[1] / "usr/lib/jvm/src.zip"
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("java.base/java/util/Evil.java", b"class Evil {}\n")
    with pytest.raises(CorpusSourceError, match=r"src\.zip md5 .* differs"):
        source(system, JAVA).documents()


def test_tampered_file_is_refused_by_the_reader(system: tuple[Path, Path]) -> None:
    docs = source(system, GO).documents()
    (system[1] / "usr/share/go/src/sort/sort.go").write_bytes(b"package evil\n")
    with pytest.raises(CorpusSourceError, match="md5"):
        read_document(docs[0])


def test_other_version_names_both_and_the_fix(system: tuple[Path, Path]) -> None:
    with pytest.raises(CorpusSourceError) as error:
        source(system, {**GO, "version": "1.19.9-1"}).documents()
    message = str(error.value)
    assert "1.19.9-1" in message and "1.19.8-2" in message
    assert "apt-get install golang-src=1.19.9-1" in message


def test_missing_or_removed_package_names_it_and_the_fix(system: tuple[Path, Path]) -> None:
    with pytest.raises(
        CorpusSourceError, match=r"nowhere is not installed; apt-get install nowhere=1"
    ):
        source(system, {"name": "nowhere", "version": "1", "include": ["**"]}).documents()
    removed = {"name": "removed-pkg", "version": "1.0", "include": ["**"]}
    with pytest.raises(CorpusSourceError, match="config-files"):
        source(system, removed).documents()


def test_owned_file_missing_on_disk_is_refused(system: tuple[Path, Path]) -> None:
    (system[1] / "usr/share/go/src/sort/sort.go").unlink()
    with pytest.raises(CorpusSourceError, match=r"sort\.go is in its md5sums but missing"):
        source(system, GO).documents()


def test_unknown_extension_without_language_is_refused(system: tuple[Path, Path]) -> None:
    with pytest.raises(CorpusSourceError, match="set language"):
        source(system, {**CPP, "language": None}).documents()


def test_entry_validation() -> None:
    with pytest.raises(ValueError, match="quote it"):
        DebianSource([{"name": "p", "version": 1.1, "include": ["**"]}])
    with pytest.raises(ValueError, match="unknown keys"):
        DebianSource([{"name": "p", "version": "1", "include": ["**"], "lang": "go"}])
    with pytest.raises(ValueError, match="include globs, an archive"):
        DebianSource([{"name": "p", "version": "1"}])
    with pytest.raises(ValueError, match="language 'cobol'"):
        DebianSource([{"name": "p", "version": "1", "include": ["**"], "language": "cobol"}])


def test_glob_semantics() -> None:
    pattern = glob_regex("usr/src/**/*.go")
    assert pattern.match("usr/src/a.go") and pattern.match("usr/src/x/y/a.go")
    assert not pattern.match("usr/src/a.go.orig") and not pattern.match("usr/other/a.go")
    assert glob_regex("a/*.js").match("a/b.js") and not glob_regex("a/*.js").match("a/b/c.js")
    assert glob_regex("**/z*.go").match("s/syscall/zerrors.go")
    assert not glob_regex("**/z*.go").match("s/zip/reader.go")
    assert glob_regex("a/[!b]?.h").match("a/cd.h") and not glob_regex("a/[!b]?.h").match("a/bd.h")


def test_status_parser_keeps_stanzas_and_ignores_continuations(tmp_path: Path) -> None:
    (tmp_path / "status").write_text(STATUS)
    stanzas = read_dpkg_status(tmp_path / "status")
    assert [s["Package"] for s in stanzas] == [
        "golang-src",
        "libstdcxx-dev",
        "jdk-source",
        "removed-pkg",
    ]
    assert stanzas[0]["Version"] == "1.19.8-2"


def test_two_architectures_need_one_chosen(system: tuple[Path, Path]) -> None:
    admindir = system[0]
    status = admindir / "status"
    status.write_text(
        status.read_text()
        + "\nPackage: libstdcxx-dev\nStatus: install ok installed\nArchitecture: i386\n"
        + "Multi-Arch: same\nVersion: 12.2.0-14\n"
    )
    with pytest.raises(CorpusSourceError, match=r"\['amd64', 'i386'\]; set architecture"):
        source(system, CPP).documents()
    assert len(source(system, {**CPP, "architecture": "amd64"})) == 2
