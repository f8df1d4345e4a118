"""The two edit formats a response may use, parsed and applied to the solution files.

`whole`: a line naming the file, then a fenced block holding the whole new file.
`diff`: search/replace blocks, the file name on a line above the block::

    path/to/file.py
    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

(5 to 9 marker characters). A block is applied to the first exact occurrence of its search
text, else to the first run of lines equal to it once leading whitespace is ignored, else the
response is malformed. Edits to test files are dropped (the tests are restored before every
run anyway), so editing a test never changes a verdict. As in aider's benchmark, a response may
create new files inside the exercise (Java's `Frame.java` beside `BowlingGame.java`; in `diff`
an empty SEARCH creates one); edits to the exercise's other existing files (build files, test
helpers, read-only "editor" files) and new files that the test harness would pick up as tests
or configuration (`conftest.py`, `*_test.go`, `build.rs`, hidden folders, ...) are dropped like
test edits, so that no response changes which tests run or how. A name that is no plausible
file inside the exercise makes the response malformed, as does a search text that is not found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EDIT_FORMATS = ("whole", "diff")

# New files a response may not add (dropped like test edits): what a test runner or build
# would pick up as tests or configuration.
_HARNESS_NAMES = frozenset(
    {
        "conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "pytest.py",
        "sitecustomize.py", "usercustomize.py", "CMakeLists.txt", "Makefile", "build.rs",
        "Cargo.toml", "Cargo.lock", "go.mod", "go.sum", "go.work", "package.json",
        "build.gradle", "settings.gradle", "gradlew",
    }
)  # fmt: skip
_HARNESS_FILE = re.compile(
    r"(_test\.go|\.(spec|test)\.[cm]?[jt]sx?|_test\.py|_test\.cpp|(jest|babel)\.config\.\w+)$"
    r"|^test_\w*\.py$"
)
_HARNESS_FOLDERS = ("tests/", "test/", "src/test/")  # Rust, C++ and Java test folders
_FILE_NAME = re.compile(r"^[\w.+-]+(/[\w.+-]+)*$")

_FENCE = re.compile(r"^\s*(```+|~~~+)")
_SEARCH = re.compile(r"^<{5,9} SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} REPLACE\s*$")


class MalformedResponseError(ValueError):
    """The response cannot be applied; `reason` says why, for the results file."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Edit:
    """One change: a whole new file (`search is None`) or one search/replace block."""

    file: str
    replace: str
    search: str | None = None


@dataclass
class AppliedResponse:
    """The solution files after a response, and what of the response was set aside."""

    files: dict[str, str]
    ignored_files: list[str] = field(default_factory=list)


def _clean_file_name(line: str) -> str:
    """`**src/lib.rs**:`, `# lib.rs` or `` `lib.rs` `` -> the bare name."""
    name = line.strip().strip("*`#:").strip()
    name = name.removeprefix("File:").removeprefix("file:").strip().strip("*`'\"")
    return name


def _is_harness(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (
        any(part.startswith(".") for part in name.split("/"))
        or base in _HARNESS_NAMES
        or bool(_HARNESS_FILE.search(base))
        or name.startswith(_HARNESS_FOLDERS)
    )


def resolve_file_name(
    name: str,
    solution_files: Sequence[str],
    test_files: Sequence[str],
    fixed_files: Sequence[str] = (),
) -> tuple[str, str]:
    """(kind, file) for a name a response gave.

    kind is "solution", "test", "fixed" (another file the exercise has, or a new name the test
    harness would pick up: both dropped), "new" (a file to create) or "other" (no plausible
    file name inside the exercise). A name matches a file by its full relative path or, when
    unambiguous, by its base name, since models often drop the folders.
    """
    cleaned = name.replace("\\", "/").removeprefix("./")
    kinds = (("solution", solution_files), ("test", test_files), ("fixed", fixed_files))
    for kind, files in kinds:
        if cleaned in files:
            return kind, cleaned
    base = cleaned.rsplit("/", 1)[-1]
    for kind, files in kinds:
        same = [f for f in files if f.rsplit("/", 1)[-1] == base]
        if len(same) == 1:
            return kind, same[0]
    parts = cleaned.split("/")
    if not _FILE_NAME.match(cleaned) or ".." in parts or "." not in base.strip("."):
        return "other", cleaned
    return ("fixed" if _is_harness(cleaned) else "new"), cleaned


def _closes(line: str, fence: str) -> bool:
    """A closing fence: only fence characters, at least as many as the opening one."""
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def parse_whole(response: str, solution_files: Sequence[str]) -> list[Edit]:
    """Every fenced block with the file name on the line above (or the only solution file)."""
    lines = response.splitlines()
    edits: list[Edit] = []
    index = 0
    while index < len(lines):
        if not _FENCE.match(lines[index]):
            index += 1
            continue
        fence = _FENCE.match(lines[index]).group(1)
        name = ""
        for back in range(index - 1, -1, -1):
            if lines[back].strip():
                name = _clean_file_name(lines[back])
                break
        end = index + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        if end == len(lines):
            raise MalformedResponseError(f"the code block opened on line {index + 1} never closes")
        if not name or " " in name:
            if len(solution_files) != 1:
                raise MalformedResponseError(
                    f"the code block on line {index + 1} has no file name on the line above it"
                )
            name = solution_files[0]
        body = "\n".join(lines[index + 1 : end])
        edits.append(Edit(file=name, replace=body + "\n" if body else ""))
        index = end + 1
    if not edits:
        raise MalformedResponseError("no file name followed by a fenced code block was found")
    return edits


def parse_diff(response: str) -> list[Edit]:
    """Every search/replace block, with the file name from the closest line above it.

    Consecutive blocks without a name of their own belong to the previous block's file.
    """
    lines = response.splitlines()
    edits: list[Edit] = []
    previous_file = ""
    index = 0
    while index < len(lines):
        if not _SEARCH.match(lines[index].rstrip()):
            if _DIVIDER.match(lines[index].rstrip()) or _REPLACE.match(lines[index].rstrip()):
                raise MalformedResponseError(
                    f"line {index + 1} ({lines[index].strip()}) is outside a SEARCH block"
                )
            index += 1
            continue
        name = ""
        for back in range(index - 1, -1, -1):
            text = lines[back].strip()
            if not text or _FENCE.match(text):
                continue
            name = previous_file if _REPLACE.match(text) else _clean_file_name(text)
            break
        if not name:
            raise MalformedResponseError(
                f"the SEARCH block on line {index + 1} has no file name on a line above it"
            )
        divider = next(
            (i for i in range(index + 1, len(lines)) if _DIVIDER.match(lines[i].rstrip())), None
        )
        if divider is None:
            raise MalformedResponseError(f"the SEARCH block on line {index + 1} has no =======")
        end = next(
            (i for i in range(divider + 1, len(lines)) if _REPLACE.match(lines[i].rstrip())),
            None,
        )
        if end is None:
            raise MalformedResponseError(
                f"the SEARCH block on line {index + 1} has no >>>>>>> REPLACE"
            )
        search = lines[index + 1 : divider]
        replace = lines[divider + 1 : end]
        edits.append(
            Edit(
                file=name,
                search="".join(line + "\n" for line in search),
                replace="".join(line + "\n" for line in replace),
            )
        )
        previous_file = name
        index = end + 1
    if not edits:
        raise MalformedResponseError("no <<<<<<< SEARCH / ======= / >>>>>>> REPLACE block found")
    return edits


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def replace_first(content: str, search: str, replace: str) -> str | None:
    """`content` with the first match of `search` replaced, or None when nothing matches.

    Exact text first; then the first run of lines equal to the search lines ignoring leading
    whitespace, where the replacement gets the indentation the file had in excess of the
    search text (a block quoted one level too shallow is re-indented, not mangled).
    """
    if search in content:
        return content.replace(search, replace, 1)
    if search.endswith("\n") and search[:-1] and content.endswith(search[:-1]):
        return content[: len(content) - len(search) + 1] + replace  # file without last newline
    wanted = search.splitlines()
    if not wanted:
        return None
    have = content.splitlines(keepends=True)
    stripped = [line.strip("\r\n").lstrip() for line in have]
    target = [line.lstrip() for line in wanted]
    for start in range(len(have) - len(wanted) + 1):
        if stripped[start : start + len(wanted)] != target:
            continue
        first = next((i for i, line in enumerate(wanted) if line.strip()), 0)
        file_indent, search_indent = _indent(have[start + first]), _indent(wanted[first])
        extra = (
            file_indent[: len(file_indent) - len(search_indent)]
            if file_indent.endswith(search_indent)
            else ""
        )
        new = "".join(
            (extra + line if line.strip() else line) + "\n" for line in replace.splitlines()
        )
        return "".join(have[:start]) + new + "".join(have[start + len(wanted) :])
    return None


def apply_response(
    response: str,
    edit_format: str,
    files: Mapping[str, str],
    test_files: Sequence[str] = (),
    fixed_files: Sequence[str] = (),
) -> AppliedResponse:
    """The solution `files` (name -> text) after applying `response` in `edit_format`, with
    the files it creates added.

    `fixed_files` are the exercise's other files (build files, helpers, editor files), whose
    edits are dropped as test edits are. Raises MalformedResponseError (with the reason) when
    the response cannot be applied as a whole; no partial result is returned.
    """
    if edit_format not in EDIT_FORMATS:
        raise ValueError(f"--edit-format {edit_format!r} unknown; use one of {EDIT_FORMATS}")
    solution_files = list(files)
    edits = (
        parse_whole(response, solution_files) if edit_format == "whole" else parse_diff(response)
    )
    result = AppliedResponse(files=dict(files))
    for edit in edits:
        kind, name = resolve_file_name(
            edit.file, list(result.files), test_files, [f for f in fixed_files if f not in files]
        )
        if kind in ("test", "fixed"):
            if name not in result.ignored_files:
                result.ignored_files.append(name)
            continue
        if kind == "other":
            raise MalformedResponseError(
                f"the response edits {edit.file!r}, which is not one of the solution files "
                f"({', '.join(solution_files)}) nor a new file's name inside the exercise"
            )
        if edit.search is None:
            result.files[name] = edit.replace
            continue
        if kind == "new" and not edit.search.strip():
            result.files[name] = edit.replace  # an empty SEARCH creates the file
            continue
        if kind == "new":
            raise MalformedResponseError(
                f"the SEARCH text for {name} was not found: there is no such file "
                "(an empty SEARCH creates one)"
            )
        updated = replace_first(result.files[name], edit.search, edit.replace)
        if updated is None:
            first = edit.search.strip().splitlines()[0] if edit.search.strip() else ""
            raise MalformedResponseError(
                f"the SEARCH text for {name} was not found in the file (it starts {first!r})"
            )
        result.files[name] = updated
    return result
