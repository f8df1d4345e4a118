"""LiveCodeBench (LCB) records in LCB's own release format, and the contamination-window filters.

Three record kinds, read as LCB publishes them:

- code generation (`livecodebench/code_generation_lite`): `question_title, question_content,
  platform, question_id, contest_id, contest_date, starter_code, difficulty, public_test_cases,
  private_test_cases, metadata`. Test lists are JSON strings of `{input, output, testtype}`;
  `private_test_cases` may instead be base64 of zlib of a pickle of that JSON string, which is
  unpickled here by an unpickler that can build nothing but plain strings.
- test output prediction (`livecodebench/test_generation`): `question_content, starter_code,
  function_name, test` (JSON list of `{input, output}`), `test_id` (and `question_id`).
- code execution (`livecodebench/execution-v2`): `code, input` (a call such as `f(s = "hi")`),
  `output` (a Python literal), `id`.

Sources, first that works: an explicit path (a JSONL/JSON file or a folder), then
`$HRM_CODEGEN_DATA_DIR/lcb/<kind>.jsonl`, then the hub's data files through the hub cache
(`_records_from_hub`; offline, only the cache: tested on a local copy in the hub's layout).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import pickle
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from hrm_codegen.data.mbpp import data_dir_fix, first_line, hub_snapshot
from hrm_codegen.data.records import read_records

DATA_DIR_ENV = "HRM_CODEGEN_DATA_DIR"
KINDS = ("codegeneration", "testoutput", "execution")
LOCAL_FILES = {
    "codegeneration": "lcb/code_generation.jsonl",
    "testoutput": "lcb/test_generation.jsonl",
    "execution": "lcb/execution.jsonl",
}
HUB_DATASETS = {
    "codegeneration": "livecodebench/code_generation_lite",
    "testoutput": "livecodebench/test_generation",
    "execution": "livecodebench/execution-v2",
}
DIFFICULTIES = ("easy", "medium", "hard")
PLATFORMS = ("leetcode", "codeforces", "atcoder")
# LCB's releases are cumulative: release_vN holds every problem from May 2023 to the end of its
# window. The window is applied to `contest_date`, for a local file and for the hub's files
# (`release_files`: the release's own files, cumulative).
RELEASE_START = date(2023, 5, 1)
RELEASE_END = {
    "v1": date(2024, 3, 31),
    "v2": date(2024, 5, 31),
    "v3": date(2024, 7, 31),
    "v4": date(2024, 9, 30),
    "v5": date(2025, 1, 31),
    "v6": date(2025, 4, 30),
}


class LCBFormatError(ValueError):
    """A record does not follow LCB's release format."""


@dataclass(frozen=True)
class LCBTest:
    """One test: stdin text and expected stdout, or JSON argument lines and a JSON result."""

    input: str
    output: str
    testtype: str  # "stdin" | "functional"


@dataclass(frozen=True)
class LCBProblem:
    """A code generation problem; `func_name` set means call-based (functional) tests."""

    question_id: str
    question_title: str
    question_content: str
    platform: str
    contest_id: str
    contest_date: datetime
    starter_code: str
    difficulty: str
    public_tests: tuple[LCBTest, ...]
    private_tests: tuple[LCBTest, ...]
    func_name: str | None

    @property
    def tests(self) -> tuple[LCBTest, ...]:
        """Public tests first, then private ones: the order LCB grades them in."""
        return self.public_tests + self.private_tests

    @property
    def is_functional(self) -> bool:
        return self.func_name is not None


@dataclass(frozen=True)
class TestOutputProblem:
    """Predict the output of `function_name` on `input` (JSON argument lines)."""

    __test__ = False  # not a pytest test class, whatever its name says

    task_id: str
    question_content: str
    starter_code: str
    function_name: str
    input: str
    output: str  # JSON of the expected value
    difficulty: str = ""


@dataclass(frozen=True)
class CodeExecutionProblem:
    """Predict what `input` (a call) returns when `code` runs; `output` is a Python literal."""

    task_id: str
    code: str
    input: str
    output: str
    difficulty: str = ""


class _StringOnlyUnpickler(pickle.Unpickler):
    """Loads strings and nothing that needs a class: every global lookup is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise LCBFormatError(
            f"private_test_cases pickle asks for {module}.{name}; only a plain string is "
            "accepted (this blob is not an LCB release file, or it was tampered with)"
        )


def decode_private_tests(blob: str) -> list[dict[str, Any]]:
    """LCB's private tests: JSON, or base64(zlib(pickle(JSON string))), the latter unpickled
    with `_StringOnlyUnpickler` so that no object can be constructed while loading."""
    if not isinstance(blob, str):
        raise LCBFormatError(f"private_test_cases must be a string, got {type(blob).__name__}")
    text = blob.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            return _test_list(json.loads(text), "private_test_cases")
        except json.JSONDecodeError as error:
            raise LCBFormatError(f"private_test_cases is not valid JSON ({error})") from None
    try:
        packed = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (binascii.Error, zlib.error, UnicodeEncodeError, ValueError) as error:
        raise LCBFormatError(
            f"private_test_cases is neither JSON nor base64 of zlib data ({error})"
        ) from None
    try:
        loaded = _StringOnlyUnpickler(io.BytesIO(packed)).load()
    except LCBFormatError:
        raise
    except Exception as error:  # any malformed pickle: a format error, not a crash
        raise LCBFormatError(f"private_test_cases holds an unreadable pickle ({error})") from None
    if not isinstance(loaded, str):
        raise LCBFormatError(
            f"private_test_cases pickle holds a {type(loaded).__name__}; LCB stores a JSON string"
        )
    try:
        return _test_list(json.loads(loaded), "private_test_cases")
    except json.JSONDecodeError as error:
        raise LCBFormatError(f"private_test_cases pickle is not JSON ({error})") from None


def encode_private_tests(tests: Iterable[Mapping[str, str]]) -> str:
    """The compressed form LCB ships (for fixtures and round-trip tests)."""
    text = json.dumps([dict(test) for test in tests])
    return base64.b64encode(zlib.compress(pickle.dumps(text))).decode("ascii")


def _test_list(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise LCBFormatError(f"{field} must be a JSON list of test objects")
    return value


def _tests(items: list[dict[str, Any]], field: str, qid: str) -> tuple[LCBTest, ...]:
    tests = []
    for number, item in enumerate(items):
        missing = {"input", "output"} - set(item)
        if missing:
            raise LCBFormatError(f"{qid}: {field}[{number}] lacks {sorted(missing)}")
        kind = item.get("testtype", "stdin")
        if kind not in ("stdin", "functional"):
            raise LCBFormatError(
                f"{qid}: {field}[{number}] has testtype {kind!r}; expected stdin or functional"
            )
        tests.append(LCBTest(str(item["input"]), str(item["output"]), kind))
    return tuple(tests)


def _json_field(record: Mapping[str, Any], name: str, qid: str) -> Any:
    value = record.get(name)
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value) if value else ({} if name == "metadata" else [])
    except (json.JSONDecodeError, TypeError) as error:
        raise LCBFormatError(f"{qid}: {name} is not JSON ({error})") from None


def parse_contest_date(value: Any, where: str = "contest_date") -> datetime:
    """ISO date or datetime (LCB writes `2023-08-21T00:00:00`)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise LCBFormatError(f"{where} {value!r} is not an ISO date (e.g. 2024-01-31)") from None


CODEGEN_FIELDS = (
    "question_title", "question_content", "platform", "question_id", "contest_id",
    "contest_date", "starter_code", "difficulty", "public_test_cases", "private_test_cases",
    "metadata",
)  # fmt: skip


def parse_codegen_record(record: Mapping[str, Any]) -> LCBProblem:
    """An `LCBProblem` from one code generation record, with errors that name the problem."""
    qid = str(record.get("question_id", "?"))
    missing = set(CODEGEN_FIELDS) - set(record)
    if missing:
        raise LCBFormatError(
            f"LCB record {qid} lacks {sorted(missing)}; is this a code_generation release file?"
        )
    metadata = _json_field(record, "metadata", qid)
    if not isinstance(metadata, dict):
        raise LCBFormatError(f"{qid}: metadata must be a JSON object")
    private = record["private_test_cases"]
    private_items = decode_private_tests(private) if isinstance(private, str) else private
    difficulty = str(record["difficulty"]).lower()
    if difficulty not in DIFFICULTIES:
        raise LCBFormatError(f"{qid}: difficulty {record['difficulty']!r} not in {DIFFICULTIES}")
    problem = LCBProblem(
        question_id=qid,
        question_title=str(record["question_title"]),
        question_content=str(record["question_content"]),
        platform=str(record["platform"]).lower(),
        contest_id=str(record["contest_id"]),
        contest_date=parse_contest_date(record["contest_date"], f"{qid}: contest_date"),
        starter_code=str(record["starter_code"] or ""),
        difficulty=difficulty,
        public_tests=_tests(_json_field(record, "public_test_cases", qid), "public", qid),
        private_tests=_tests(_test_list(private_items, "private_test_cases"), "private", qid),
        func_name=metadata.get("func_name") or None,
    )
    if not problem.tests:
        raise LCBFormatError(f"{qid}: no tests (public and private test lists are empty)")
    kinds = {test.testtype for test in problem.tests}
    if kinds != {"functional" if problem.is_functional else "stdin"}:
        raise LCBFormatError(
            f"{qid}: test types {sorted(kinds)} do not match metadata "
            f"(func_name {'set' if problem.is_functional else 'absent'})"
        )
    return problem


def parse_testoutput_record(record: Mapping[str, Any]) -> TestOutputProblem:
    where = f"test output record {record.get('question_id', '?')}/{record.get('test_id', '?')}"
    missing = {"question_content", "starter_code", "function_name", "test", "test_id"} - set(record)
    if missing:
        raise LCBFormatError(f"{where} lacks {sorted(missing)}")
    tests = _json_field(record, "test", where)
    if not isinstance(tests, list) or not tests or not isinstance(tests[0], dict):
        raise LCBFormatError(f"{where}: test must be a non-empty JSON list of {{input, output}}")
    test = tests[0]
    if not {"input", "output"} <= set(test):
        raise LCBFormatError(f"{where}: test[0] needs input and output")
    qid = record.get("question_id")
    task_id = f"{qid}/{record['test_id']}" if qid is not None else str(record["test_id"])
    return TestOutputProblem(
        task_id=task_id,
        question_content=str(record["question_content"]),
        starter_code=str(record["starter_code"]),
        function_name=str(record["function_name"]),
        input=str(test["input"]),
        output=str(test["output"]),
        difficulty=str(record.get("difficulty", "") or "").lower(),
    )


def parse_execution_record(record: Mapping[str, Any]) -> CodeExecutionProblem:
    missing = {"code", "input", "output", "id"} - set(record)
    if missing:
        raise LCBFormatError(
            f"code execution record {record.get('id', '?')} lacks {sorted(missing)}"
        )
    return CodeExecutionProblem(
        task_id=str(record["id"]),
        code=str(record["code"]),
        input=str(record["input"]),
        output=str(record["output"]),
        difficulty=str(record.get("difficulty", "") or "").lower(),
    )


def release_window(release: str) -> tuple[date, date]:
    """(first, last) contest date of a cumulative release `v1`..`v6` (or `release_v3`)."""
    key = release.strip().lower().removeprefix("release_")
    if key not in RELEASE_END:
        raise ValueError(f"--release {release!r} unknown; use one of {', '.join(RELEASE_END)}")
    return RELEASE_START, RELEASE_END[key]


def _as_date(value: str | date | None, flag: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return parse_contest_date(value, flag).date()


def filter_problems(
    problems: Iterable[LCBProblem],
    *,
    release: str | None = None,
    start_date: str | date | None = None,
    end_date: str | date | None = None,
    difficulty: str | None = None,
    platform: str | None = None,
) -> list[LCBProblem]:
    """Problems whose contest_date lies in the window (inclusive), of that difficulty/platform.

    The window is the release's, narrowed by `start_date`/`end_date`: pick problems published
    after a model's training cut-off to measure it free of contamination.
    """
    first, last = release_window(release) if release else (None, None)
    start, end = _as_date(start_date, "--start-date"), _as_date(end_date, "--end-date")
    first = max(filter(None, (first, start)), default=None)
    last = min(filter(None, (last, end)), default=None)
    if difficulty is not None and difficulty.lower() not in DIFFICULTIES:
        raise ValueError(f"--difficulty {difficulty!r}: use easy, medium or hard")
    if platform is not None and platform.lower() not in PLATFORMS:
        raise ValueError(f"--platform {platform!r}: use one of {', '.join(PLATFORMS)}")
    kept = []
    for problem in problems:
        day = problem.contest_date.date()
        if (first and day < first) or (last and day > last):
            continue
        if difficulty and problem.difficulty != difficulty.lower():
            continue
        if platform and problem.platform != platform.lower():
            continue
        kept.append(problem)
    return kept


def _records(kind: str, path: str | os.PathLike | None, release: str | None) -> list[dict]:
    if path is not None:
        return read_records(Path(path))
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir and (Path(env_dir) / LOCAL_FILES[kind]).exists():
        return read_records(Path(env_dir) / LOCAL_FILES[kind])
    return _records_from_hub(kind, release)


def _local_fix(kind: str) -> str:
    """Where an LCB file can come from, in command-line terms."""
    flags = f", or pass --data /path/to/{Path(LOCAL_FILES[kind]).name} (LCB release records)"
    return data_dir_fix(LOCAL_FILES[kind], flags)


def release_files(release: str | None) -> list[str]:
    """The hub files of code_generation_lite that make up a cumulative release: `test.jsonl`
    (release_v1), then `test2.jsonl` ... `test<N>.jsonl` (what its loading script reads)."""
    key = (release or "v6").strip().lower().removeprefix("release_")
    release_window(key)  # an unknown release is refused by name
    number = int(key.removeprefix("v"))
    return ["test.jsonl", *(f"test{i}.jsonl" for i in range(2, number + 1))]


def _records_from_hub(kind: str, release: str | None) -> list[dict]:
    """LCB's hub datasets, read from the repository's data files through the hub cache (the
    network, or only the cache when offline: `HF_HUB_OFFLINE`).

    Why files, not `datasets.load_dataset`: code_generation_lite is a dataset *script*, which
    `datasets` 4 and later no longer run; its data is plain JSON Lines per release, read here
    in release order. The other two repositories are read the same way (JSON Lines or parquet)."""
    repo = HUB_DATASETS[kind]
    patterns = release_files(release) if kind == "codegeneration" else ["*.jsonl", "*.parquet"]
    try:
        folder = hub_snapshot(repo, allow_patterns=patterns)
    except Exception as error:  # offline without a cached copy, hub unreachable, no such repo
        raise FileNotFoundError(
            f"could not load {repo} from the hub ({first_line(error)}); {_local_fix(kind)}"
        ) from None
    if kind == "codegeneration":
        missing = [name for name in patterns if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{repo} at {folder} lacks {', '.join(missing)} for release {release or 'v6'}; "
                f"{_local_fix(kind)}"
            )
        files = [folder / name for name in patterns]
    else:
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".parquet")
        )
        if not files:
            raise FileNotFoundError(f"{repo} at {folder} holds no data files; {_local_fix(kind)}")
    return [record for file in files for record in read_records(file)]


def load_lcb_codegen(
    path: str | os.PathLike | None = None,
    *,
    release: str | None = None,
    start_date: str | date | None = None,
    end_date: str | date | None = None,
    difficulty: str | None = None,
    platform: str | None = None,
) -> list[LCBProblem]:
    """Code generation problems from a local release file (or the hub), filtered, in file order."""
    problems = [
        parse_codegen_record(record) for record in _records("codegeneration", path, release)
    ]
    ids = [problem.question_id for problem in problems]
    if len(set(ids)) != len(ids):
        raise LCBFormatError("the LCB file holds duplicate question_id values; pass each once")
    kept = filter_problems(
        problems,
        release=release,
        start_date=start_date,
        end_date=end_date,
        difficulty=difficulty,
        platform=platform,
    )
    if not kept:
        raise ValueError(
            f"none of the {len(problems)} LCB problems match --release/--start-date/--end-date/"
            "--difficulty/--platform; widen the selection"
        )
    return kept


def load_lcb_testoutput(path: str | os.PathLike | None = None) -> list[TestOutputProblem]:
    return [parse_testoutput_record(r) for r in _records("testoutput", path, None)]


def load_lcb_execution(path: str | os.PathLike | None = None) -> list[CodeExecutionProblem]:
    return [parse_execution_record(r) for r in _records("execution", path, None)]
