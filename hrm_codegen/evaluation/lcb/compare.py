"""Judging a stdout against the expected one: LCB's rule, and a float-tolerant variant.

Both see the outputs as lines: the whole text stripped, split at newlines, each line stripped
(so trailing spaces, `\\r\\n` and a missing final newline never matter) and equal line counts.

- `lcb` (LCB's grader): a line matches when it is equal as text, or when both lines are
  sequences of decimals that are equal as `Decimal`s (`1.0` matches `1`, `0.3333333` does not
  match `0.333333333`: decimals compare exactly).
- `tolerant`: everything `lcb` accepts, and token by token: where the expected token is not an
  integer, numbers within 1e-6 absolute or relative (`math.isclose`); an expected integer must
  be matched exactly (as a decimal: `7.0` matches `7`), so big integers are never rounded
  through floats.

These functions only ever see strings, and run outside the sandbox.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

FLOAT_TOLERANCE = 1e-6
COMPARE_MODES = ("lcb", "tolerant")
_INTEGER = re.compile(r"^[+-]?\d+$")


def output_lines(text: str) -> list[str]:
    """LCB's view of an output: stripped as a whole, split at newlines, each line stripped."""
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _lines_match(got: str, expected: str, lines_equal: Callable[[str, str], bool]) -> bool:
    """Both comparisons' frame: as many lines, each the same text or equal by `lines_equal`."""
    got_lines, expected_lines = output_lines(got), output_lines(expected)
    if len(got_lines) != len(expected_lines):
        return False
    return all(
        line == want or lines_equal(line, want) for line, want in zip(got_lines, expected_lines)
    )


def _decimal_lines_equal(line: str, want: str) -> bool:
    got_numbers, expected_numbers = _decimals(line), _decimals(want)
    return (
        got_numbers is not None and expected_numbers is not None and got_numbers == expected_numbers
    )


def lcb_outputs_equal(got: str, expected: str) -> bool:
    """LCB's comparison (equal lines, or lines equal as sequences of exact decimals)."""
    return _lines_match(got, expected, _decimal_lines_equal)


def _tokens_close(token: str, want: str, tolerance: float) -> bool:
    if token == want:
        return True
    exact = _decimals(token), _decimals(want)
    if exact[0] is not None and exact[0] == exact[1]:
        return True
    if _INTEGER.match(want):
        return False
    try:
        value, target = float(token), float(want)
    except ValueError:
        return False
    if math.isinf(value) or math.isinf(target):
        return value == target
    return math.isclose(value, target, rel_tol=tolerance, abs_tol=tolerance)


def tolerant_outputs_equal(got: str, expected: str, tolerance: float = FLOAT_TOLERANCE) -> bool:
    """Non-integer numbers within `tolerance` (absolute or relative), the rest as in `lcb`."""

    def lines_close(line: str, want: str) -> bool:
        tokens, wanted = line.split(), want.split()
        return len(tokens) == len(wanted) and all(
            _tokens_close(t, w, tolerance) for t, w in zip(tokens, wanted)
        )

    return _lines_match(got, expected, lines_close)


def comparator(mode: str) -> Callable[[str, str], bool]:
    """The (got, expected) -> equal function of `--compare lcb|tolerant`."""
    if mode == "lcb":
        return lcb_outputs_equal
    if mode == "tolerant":
        return tolerant_outputs_equal
    raise ValueError(f"--compare {mode!r} unknown; use lcb (LCB's rule) or tolerant")
