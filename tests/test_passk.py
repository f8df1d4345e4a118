"""pass@k against values worked out by hand from 1 - C(n-c, k) / C(n, k)."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from hrm_codegen.evaluation.passk import mean_pass_at_k, parse_ks, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (5, 2, 1, 0.4),  # k=1 is the pass rate c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
        (4, 0, 2, 0.0),
        (4, 3, 2, 1.0),  # only one failure: every pair holds a pass
        (200, 1, 100, 0.5),  # 1 - C(199,100)/C(200,100) = 1 - 100/200
        (10, 10, 10, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_pass_at_k_matches_exact_binomials_where_floats_would_overflow() -> None:
    # C(1000, 500) ~ 1e299 is near the float limit; the product form never builds it.
    for n, c, k in [(1000, 7, 10), (1000, 500, 500), (2000, 3, 1000), (37, 5, 9)]:
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)


def test_pass_at_k_rejects_k_larger_than_n() -> None:
    with pytest.raises(ValueError, match=r"k=10 needs 1 <= k <= n.*n=5.*--num-samples"):
        pass_at_k(5, 1, 10)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 1, 0)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers() -> None:
    with pytest.raises(TypeError, match="n must be an int"):
        pass_at_k(5.0, 1, 1)  # type: ignore[arg-type]


def test_mean_pass_at_k_averages_over_tasks() -> None:
    counts = {"Mbpp/1": (5, 2), "Mbpp/2": (5, 0), "Mbpp/3": (5, 5)}
    got = mean_pass_at_k(counts, [2, 1])
    assert list(got) == ["pass@1", "pass@2"]
    assert got["pass@1"] == pytest.approx((0.4 + 0.0 + 1.0) / 3)
    assert got["pass@2"] == pytest.approx((0.7 + 0.0 + 1.0) / 3)


def test_mean_pass_at_k_names_the_task_with_too_few_samples() -> None:
    with pytest.raises(ValueError, match=r"k=10 is larger than the 3 sample\(s\) of HumanEval/7"):
        mean_pass_at_k({"HumanEval/0": (20, 1), "HumanEval/7": (3, 1)}, [1, 10])


def test_mean_pass_at_k_accepts_pairs_and_rejects_no_tasks() -> None:
    assert mean_pass_at_k([(2, 1), (2, 2)], [1]) == {"pass@1": pytest.approx(0.75)}
    with pytest.raises(ValueError, match="no tasks"):
        mean_pass_at_k({}, [1])


def test_parse_ks() -> None:
    assert parse_ks("10,1, 100") == (1, 10, 100)
    assert parse_ks([5, 1, 5]) == (1, 5)
    for bad in ("", "1,x", "0", [-1]):
        with pytest.raises(ValueError):
            parse_ks(bad)


def test_pass_at_k_equals_the_exact_ratio_for_every_small_case() -> None:
    # Every (n, c, k) with n <= 12, edge cases included: c = 0, c = n, n - c < k, k = n.
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)
