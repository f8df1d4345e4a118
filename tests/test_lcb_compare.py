"""Stdout comparison: LCB's rule and the tolerant mode, side by side on the same outputs."""

from __future__ import annotations

import pytest

from hrm_codegen.evaluation.lcb.compare import (
    comparator,
    lcb_outputs_equal,
    output_lines,
    tolerant_outputs_equal,
)

BIG = str(99999999999999999999**2)


@pytest.mark.parametrize(
    "got, expected, lcb, tolerant",
    [
        ("3\n7\n", "3\n7", True, True),  # final newline
        ("  3  \r\n7   \n\n", "3\n7\n", True, True),  # whitespace, CRLF, trailing blank lines
        ("3 7\n", "3\n7\n", False, False),  # line count
        ("3\n\n7\n", "3\n7\n", False, False),  # a blank line inside counts
        ("1 2  3\n", "1 2 3\n", True, True),  # token-wise equal as decimals
        ("Yes\n", "yes\n", False, False),  # text is compared exactly
        ("1.0\n", "1\n", True, True),  # equal decimals
        ("0.50\n", "0.5\n", True, True),
        ("0.333333\n", "0.3333333333\n", False, True),  # 3.3e-7 off: exact vs tolerant
        ("0.3334\n", "0.3333333333\n", False, False),  # 6.7e-5 off: both reject
        ("1000000.5\n", "1000000.4999999\n", False, True),  # relative 1e-13
        (BIG + "\n", BIG + "\n", True, True),
        (str(int(BIG) + 1), BIG, False, False),  # big integers are exact in both modes
        ("9.9999999999999998e+39\n", BIG + "\n", False, False),  # a float for an integer
        ("1 2\n", "1 2 3\n", False, False),
        ("inf\n", "inf\n", True, True),
        ("nan\n", "nan\n", True, True),  # equal as text
        ("", "", True, True),
        ("", "0", False, False),
    ],
)
def test_modes_side_by_side(got: str, expected: str, lcb: bool, tolerant: bool) -> None:
    assert lcb_outputs_equal(got, expected) is lcb
    assert tolerant_outputs_equal(got, expected) is tolerant
    assert comparator("lcb")(got, expected) is lcb
    assert comparator("tolerant")(got, expected) is tolerant


def test_lines_are_lcbs_stripped_lines() -> None:
    assert output_lines("\n a \n b\t\n\n") == ["a", "b"]


def test_unknown_mode_names_the_choices() -> None:
    with pytest.raises(ValueError, match="use lcb .* or tolerant"):
        comparator("fuzzy")
