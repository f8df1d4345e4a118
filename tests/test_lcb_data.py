"""LCB records in LCB's release format: parsing, the restricted unpickler, the window filters."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib
from datetime import date
from pathlib import Path

import pytest

from hrm_codegen.data.lcb import (
    LCBFormatError,
    decode_private_tests,
    encode_private_tests,
    filter_problems,
    load_lcb_codegen,
    load_lcb_execution,
    load_lcb_testoutput,
    parse_codegen_record,
    release_window,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
CODEGEN = FIXTURES / "code_generation.jsonl"


def _records() -> list[dict]:
    return [json.loads(line) for line in CODEGEN.read_text().splitlines()]


def _blob(payload: bytes) -> str:
    return base64.b64encode(zlib.compress(payload)).decode()


def test_fixture_problems_parse_with_their_compressed_private_tests() -> None:
    problems = load_lcb_codegen(CODEGEN)
    assert [p.question_id for p in problems] == ["abc300_a", "abc350_b", "1900A", "3001", "3100"]
    pairs = problems[0]
    assert not pairs.is_functional and len(pairs.public_tests) == 1
    assert [t.output for t in pairs.private_tests] == ["0\n", "30\n0\n15\n"]  # from the blob
    assert pairs.tests[0].input == "2\n1 2\n3 4\n"
    big = problems[2]
    assert big.private_tests[1].output.strip() == str(99999999999999999999**2)
    solution = problems[3]
    assert solution.is_functional and solution.func_name == "maxPairSum"
    assert solution.platform == "leetcode" and solution.contest_date.year == 2024
    assert {t.testtype for t in solution.tests} == {"functional"}


def test_private_tests_round_trip_through_the_compressed_form() -> None:
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_private_tests(encode_private_tests(tests)) == tests
    assert decode_private_tests(json.dumps(tests)) == tests
    assert decode_private_tests("") == []


class Planted:
    """An object a malicious blob would ask the unpickler to build."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload, message",
    [
        (pickle.dumps(Planted()), "only a plain string is accepted"),
        (pickle.dumps(Path("/etc")), "only a plain string is accepted"),
        (pickle.dumps(date(2024, 1, 1)), "only a plain string is accepted"),
        (pickle.dumps(["a list, not a string"]), "holds a list"),
        (pickle.dumps("not json"), "pickle is not JSON"),
        (b"\x80\x05garbage", "unreadable pickle"),
    ],
)
def test_the_unpickler_refuses_anything_but_a_json_string(payload: bytes, message: str) -> None:
    with pytest.raises(LCBFormatError, match=message):
        decode_private_tests(_blob(payload))


def test_a_blob_that_is_not_base64_zlib_fails_clearly() -> None:
    with pytest.raises(LCBFormatError, match="neither JSON nor base64"):
        decode_private_tests("!!not base64!!")
    with pytest.raises(LCBFormatError, match="neither JSON nor base64"):
        decode_private_tests(base64.b64encode(b"not zlib").decode())


def test_bad_records_name_the_problem_and_the_fix() -> None:
    record = _records()[0]
    with pytest.raises(LCBFormatError, match="abc300_a lacks \\['metadata'\\]"):
        parse_codegen_record({k: v for k, v in record.items() if k != "metadata"})
    with pytest.raises(LCBFormatError, match="do not match metadata"):
        parse_codegen_record({**record, "metadata": json.dumps({"func_name": "f"})})
    with pytest.raises(LCBFormatError, match="difficulty"):
        parse_codegen_record({**record, "difficulty": "impossible"})
    with pytest.raises(LCBFormatError, match="not an ISO date"):
        parse_codegen_record({**record, "contest_date": "last week"})


def test_release_and_date_windows_select_by_contest_date() -> None:
    problems = load_lcb_codegen(CODEGEN)
    assert release_window("v1") == (date(2023, 5, 1), date(2024, 3, 31))
    assert release_window("release_v6")[1] == date(2025, 4, 30)
    v1 = [p.question_id for p in filter_problems(problems, release="v1")]
    assert v1 == ["abc300_a", "3001"]  # 2023-06-03 and 2024-01-14
    v4 = [p.question_id for p in filter_problems(problems, release="v4")]
    assert v4 == ["abc300_a", "abc350_b", "1900A", "3001"]
    after = filter_problems(problems, start_date="2024-05-11", end_date="2025-01-31")
    assert [p.question_id for p in after] == ["abc350_b", "1900A"]  # bounds are inclusive
    narrowed = filter_problems(problems, release="v2", start_date="2024-01-01")
    assert [p.question_id for p in narrowed] == ["abc350_b", "3001"]
    assert [p.question_id for p in filter_problems(problems, difficulty="hard")] == ["1900A"]
    leetcode = filter_problems(problems, platform="LeetCode")
    assert [p.question_id for p in leetcode] == ["3001", "3100"]
    with pytest.raises(ValueError, match="--release 'v9' unknown"):
        filter_problems(problems, release="v9")
    with pytest.raises(ValueError, match="--difficulty"):
        filter_problems(problems, difficulty="trivial")
    with pytest.raises(ValueError, match="widen the selection"):
        load_lcb_codegen(CODEGEN, end_date="2020-01-01")


def test_local_file_under_the_data_dir_comes_before_the_hub(tmp_path, monkeypatch) -> None:
    (tmp_path / "lcb").mkdir()
    (tmp_path / "lcb" / "code_generation.jsonl").write_text(CODEGEN.read_text())
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(tmp_path))
    assert len(load_lcb_codegen()) == 5


def test_prediction_records_parse() -> None:
    testoutput = load_lcb_testoutput(FIXTURES / "test_output.jsonl")
    assert [p.task_id for p in testoutput] == ["3001/0", "3100/1"]
    assert testoutput[1].input == '"000111"\n3' and testoutput[1].output == "[0, 111]"
    execution = load_lcb_execution(FIXTURES / "execution.jsonl")
    assert [p.task_id for p in execution] == ["sample_0", "sample_1"]
    assert execution[0].input == "doubleWrap(s = 'ab')"


def _hub_copy(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    """A dataset repository as the hub cache lays it out: blobs/<sha256>, snapshots/<commit>/
    links to them, refs/main naming the commit."""
    import hashlib
    import os

    commit = "0" * 39 + "1"
    root = cache / f"datasets--{repo.replace('/', '--')}"
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def test_the_hub_loader_reads_a_local_copy_in_the_hubs_layout(tmp_path, monkeypatch):
    """Offline, the hub's data files come from the hub cache: code_generation_lite's cumulative
    release files (its loading script is not run), the other scenarios' JSON Lines."""
    from huggingface_hub import constants

    from hrm_codegen.data import lcb

    cache = tmp_path / "hub"
    lines = CODEGEN.read_text().splitlines(keepends=True)
    _hub_copy(cache, "livecodebench/code_generation_lite", {
        "test.jsonl": "".join(lines[:1]).encode(), "test2.jsonl": "".join(lines[1:]).encode(),
    })  # fmt: skip
    _hub_copy(cache, "livecodebench/execution-v2", {"data/test.jsonl": (FIXTURES / "execution.jsonl").read_bytes()})  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HRM_CODEGEN_DATA_DIR", raising=False)
    assert lcb.release_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    everything = load_lcb_codegen(release="v2")  # test.jsonl + test2.jsonl, as the file holds
    assert [p.question_id for p in everything] == [p.question_id for p in load_lcb_codegen(CODEGEN, release="v2")]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="lacks test3.jsonl for release v3"):
        load_lcb_codegen(release="v3")
    assert [p.task_id for p in load_lcb_execution()] == [p.task_id for p in load_lcb_execution(FIXTURES / "execution.jsonl")]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="could not load livecodebench/test_generation"):
        lcb.load_lcb_testoutput()
