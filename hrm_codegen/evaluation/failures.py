"""Why a sample failed, in a few causes every benchmark shares.

A summary that only says "failed" hides whether a model writes code that does not parse, uses
names it never defined, computes wrong answers, or runs out of time. `classify_failure` reads a
verdict (the sandbox's `status`, its one-line `detail` and the stderr tail) and names the cause;
`count_failure_causes` totals them for the summary, and each results.jsonl line keeps its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

FAILURE_CAUSES = (
    "syntax_error",  # SyntaxError, IndentationError, TabError: the program does not parse
    "name_error",  # NameError, UnboundLocalError: a name used but never defined
    "wrong_answer",  # AssertionError, or output / value not the expected one
    "other_exception",  # any other exception, crash or early exit
    "timeout",  # wall clock or CPU limit
    "memory",  # MemoryError, or killed by the memory limit
    "sandbox_error",  # the evaluator could not run the program (never the program's fault)
)
_SYNTAX = {"SyntaxError", "IndentationError", "TabError"}
_NAME = {"NameError", "UnboundLocalError"}
_WRONG = {"AssertionError"}
_MEMORY = {"MemoryError"}
_EXCEPTION_NAME = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt))\b"
)
_OUT_OF_MEMORY = ("out of memory", "cannot allocate memory")


def exception_name(text: str) -> str | None:
    """`NameError` from `NameError: name 'x' is not defined at line 3: ...` (or None)."""
    match = _EXCEPTION_NAME.match(text.strip())
    return match.group(1) if match else None


def classify_failure(status: str, detail: str = "", stderr_tail: str = "") -> str | None:
    """The cause of a failed verdict, one of `FAILURE_CAUSES`; None for a pass.

    `status` is the sandbox's (`failed`, `timeout`, `error`) or an LCB verdict (`wrong_answer`,
    `runtime_error`, ...). The exception is read from `detail`, else from the last stderr line.
    """
    if status == "passed":
        return None
    if status == "timeout":
        return "timeout"
    if status == "error":
        return "sandbox_error"
    if status == "wrong_answer":
        return "wrong_answer"
    lowered = detail.lower()
    if any(marker in lowered for marker in _OUT_OF_MEMORY):
        return "memory"
    name = exception_name(detail)
    if name is None:
        last = next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
        name = exception_name(last)
    if name in _SYNTAX:
        return "syntax_error"
    if name in _NAME:
        return "name_error"
    if name in _WRONG:
        return "wrong_answer"
    if name in _MEMORY:
        return "memory"
    return "other_exception"


def classify_record(record: Mapping[str, Any]) -> str | None:
    """`classify_failure` of a results.jsonl line (or any mapping with status/detail)."""
    return classify_failure(
        str(record.get("status", "")),
        str(record.get("detail", "") or ""),
        str(record.get("stderr_tail", "") or ""),
    )


def count_failure_causes(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Failures per cause, every cause present (zeros included) so summaries line up."""
    counts = dict.fromkeys(FAILURE_CAUSES, 0)
    for record in records:
        cause = record.get("failure_cause", classify_record(record))
        if cause is not None:
            counts[cause] = counts.get(cause, 0) + 1
    return counts
