"""InstalledSource on a fake site-packages: RECORD-pinned files, versions and checksums."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from hrm_codegen.data.corpus.installed import InstalledSource, installed_manifest
from hrm_codegen.data.corpus.sources import CorpusSourceError, read_document

FILES = {
    "mypkg/__init__.py": b"from mypkg.core import add\n",
    "mypkg/core.py": b"def add(a, b):\n    return a + b\n",
    "mypkg/sub/util.py": b"X = 1\n",
    "mypkg_top.py": b"import mypkg\n",
}


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_dist(
    site: Path,
    name: str = "mypkg",
    version: str = "1.0",
    files: dict[str, bytes] | None = None,
    extra_record: str = "",
    record: bool = True,
) -> Path:
    """A distribution as pip leaves it: files, METADATA, and a RECORD with their sha256s."""
    files = FILES if files is None else files
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        lines.append(f"{rel},{record_hash(data)},{len(data)}")
    # what pip also writes: compiled files (no hash), scripts outside site-packages, metadata
    lines += [
        f"{name}/__pycache__/core.cpython-311.pyc,,",
        f"../../bin/{name}-script.py,{record_hash(b'x')},1",
        f"{name}-{version}.dist-info/METADATA,{record_hash(b'm')},1",
        f"{name}-{version}.dist-info/RECORD,,",
    ]
    if record:
        (info / "RECORD").write_text("\n".join(lines) + "\n" + extra_record)
    return info


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    make_dist(site)
    return site


def test_documents_are_the_record_py_files_sorted_with_checksums(site: Path) -> None:
    source = InstalledSource({"mypkg": "1.0"}, paths=[str(site)])
    docs = source.documents()
    assert [d.name for d in docs] == [
        "mypkg-1.0/mypkg/__init__.py",
        "mypkg-1.0/mypkg/core.py",
        "mypkg-1.0/mypkg/sub/util.py",
        "mypkg-1.0/mypkg_top.py",
    ]
    for doc in docs:
        rel = doc.name.split("/", 1)[1]
        assert doc.language == "python"
        assert doc.path == (site / rel).resolve()
        assert doc.checksum == ("sha256", hashlib.sha256(FILES[rel]).hexdigest())
        assert read_document(doc) == FILES[rel]


def test_describe_and_pin_record_versions_and_content(site: Path) -> None:
    source = InstalledSource(["MyPkg==1.0"], paths=[str(site)])
    pin = source.pin()
    assert pin["kind"] == "installed"
    assert pin["distributions"] == {"mypkg": "1.0"}
    assert pin["documents"] == 4
    # same names, other bytes (a new RECORD): the content part of the pin changes
    (site / "mypkg/core.py").write_bytes(b"def add(a, b):\n    return b + a\n")
    record = site / "mypkg-1.0.dist-info/RECORD"
    old = record_hash(FILES["mypkg/core.py"])
    record.write_text(
        record.read_text().replace(old, record_hash(b"def add(a, b):\n    return b + a\n"))
    )
    repinned = InstalledSource(["MyPkg==1.0"], paths=[str(site)]).pin()
    assert repinned["names_sha256"] == pin["names_sha256"]
    assert repinned["checksums_sha256"] != pin["checksums_sha256"]


def test_distributions_sorted_by_normalized_name_and_max_documents(site: Path) -> None:
    make_dist(site, name="Another_Pkg", version="2.0", files={"another_pkg/a.py": b"A = 1\n"})
    source = InstalledSource({"mypkg": "1.0", "another-pkg": "2.0"}, paths=[str(site)])
    names = [d.name for d in source.documents()]
    assert names[0] == "another-pkg-2.0/another_pkg/a.py"
    assert names[1].startswith("mypkg-1.0/")
    assert len(InstalledSource({"mypkg": "1.0"}, max_documents=2, paths=[str(site)])) == 2


def test_tampered_file_is_refused_by_the_reader(site: Path) -> None:
    docs = InstalledSource({"mypkg": "1.0"}, paths=[str(site)]).documents()
    (site / "mypkg/core.py").write_bytes(b"def add(a, b):\n    return a - b\n")
    core = next(d for d in docs if d.name.endswith("core.py"))
    with pytest.raises(CorpusSourceError, match="reinstall"):
        read_document(core)
    assert read_document(docs[0]) == FILES["mypkg/__init__.py"]  # the others still read


def test_other_version_installed_names_both_and_the_fix(site: Path) -> None:
    source = InstalledSource({"mypkg": "1.1"}, paths=[str(site)])
    with pytest.raises(CorpusSourceError) as error:
        source.documents()
    message = str(error.value)
    assert "1.1" in message and "1.0" in message and "pip install mypkg==1.1" in message


def test_missing_distribution_names_it_and_the_fix(site: Path) -> None:
    with pytest.raises(CorpusSourceError, match=r"absent.*pip install absent==3\.0"):
        InstalledSource({"absent": "3.0"}, paths=[str(site)]).documents()


def test_distribution_without_record_is_refused(tmp_path: Path) -> None:
    make_dist(tmp_path, record=False)
    with pytest.raises(CorpusSourceError, match="no RECORD"):
        InstalledSource({"mypkg": "1.0"}, paths=[str(tmp_path)]).documents()


def test_py_line_without_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg/extra.py").write_text("Y = 2\n")
    make_dist(tmp_path, extra_record="mypkg/extra.py,,6\n")
    with pytest.raises(CorpusSourceError, match=r"mypkg/extra\.py without a usable hash"):
        InstalledSource({"mypkg": "1.0"}, paths=[str(tmp_path)]).documents()


def test_record_file_missing_on_disk_is_refused(site: Path) -> None:
    (site / "mypkg/sub/util.py").unlink()
    with pytest.raises(CorpusSourceError, match=r"mypkg/sub/util\.py is in its RECORD but missing"):
        InstalledSource({"mypkg": "1.0"}, paths=[str(site)]).documents()


def test_unlisted_files_beside_the_distribution_stay_out(site: Path) -> None:
    (site / "mypkg/planted.py").write_text("import os\n")
    (site / "stray.py").write_text("import os\n")
    names = [d.name for d in InstalledSource({"mypkg": "1.0"}, paths=[str(site)]).documents()]
    assert not any("planted" in n or "stray" in n for n in names)
    assert not any("bin/" in n or "__pycache__" in n for n in names)


def test_versions_must_be_strings_and_names_unique() -> None:
    with pytest.raises(ValueError, match="quote it"):
        InstalledSource({"mypkg": 1.1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="listed twice"):
        InstalledSource({"My_Pkg": "1.0", "my-pkg": "1.0"})
    with pytest.raises(ValueError, match="name==version"):
        InstalledSource(["mypkg"])


def test_installed_manifest_reads_versions(site: Path) -> None:
    make_dist(site, name="Other.Pkg", version="0.3b1", files={"other/x.py": b"\n"})
    manifest = installed_manifest(["mypkg", "other.pkg"], paths=[str(site)])
    assert manifest == {"mypkg": "1.0", "other-pkg": "0.3b1"}
    assert InstalledSource(manifest, paths=[str(site)]).pin()["documents"] == 5
    with pytest.raises(CorpusSourceError, match="nope"):
        installed_manifest(["nope"], paths=[str(site)])
