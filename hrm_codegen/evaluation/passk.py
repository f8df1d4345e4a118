"""Pass@k: the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models
Trained on Code", section 2.1.

With n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that a random
k-subset of the n samples holds at least one pass. The binomials overflow floats for realistic n,
so the ratio is computed as the product prod_{i=n-c+1}^{n} (1 - k/i), which is exact in rationals
and stable in floating point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with `n` samples, `c` of them correct."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if n < 1:
        raise ValueError(f"n={n}: a task needs at least one sample")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} correct samples is outside 0..n={n}")
    if not 1 <= k <= n:
        raise ValueError(
            f"k={k} needs 1 <= k <= n, but there are n={n} samples per task; "
            f"generate at least {k} samples (--num-samples) or lower k"
        )
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    fail_all = 1.0
    for i in range(n - c + 1, n + 1):
        fail_all *= 1.0 - k / i
    return 1.0 - fail_all


def parse_ks(ks: str | Iterable[int]) -> tuple[int, ...]:
    """`"1,10"` or `[1, 10]` -> `(1, 10)`: sorted, unique, each a positive int."""
    if isinstance(ks, str):
        try:
            values = [int(part) for part in ks.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"cannot read k values from {ks!r}; write them like '1,10,100'"
            ) from None
    else:
        values = list(ks)
    if not values:
        raise ValueError("no k given; pass at least one, e.g. k=1")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} is not a positive integer")
    return tuple(sorted(set(values)))


def mean_pass_at_k(
    per_task_counts: Mapping[str, tuple[int, int]] | Iterable[tuple[int, int]],
    ks: Iterable[int],
) -> dict[str, float]:
    """pass@k for each k, averaged over tasks: `{"pass@1": ..., "pass@10": ...}`.

    `per_task_counts` maps a task id to `(n, c)` (or is a list of such pairs). Every task must
    have at least k samples for every k asked for; the error names the first task that does not.
    """
    items = (
        list(per_task_counts.items())
        if isinstance(per_task_counts, Mapping)
        else [(f"task #{i}", pair) for i, pair in enumerate(per_task_counts)]
    )
    if not items:
        raise ValueError("no tasks to average pass@k over")
    ks = parse_ks(ks)
    for task_id, (n, _c) in items:
        if ks[-1] > n:
            raise ValueError(
                f"k={ks[-1]} is larger than the {n} sample(s) of {task_id}; generate at least "
                f"{ks[-1]} samples per task (--num-samples) or drop k={ks[-1]}"
            )
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for _, (n, c) in items) / len(items) for k in ks}


def check_ks(ks: tuple[int, ...], samples_per_task: Mapping[str, int]) -> None:
    """Refuse a k larger than the fewest samples a task has, before anything is generated or
    run, naming that task."""
    task_id, fewest = min(samples_per_task.items(), key=lambda item: item[1])
    if ks[-1] > fewest:
        raise ValueError(
            f"k={ks[-1]} is larger than the {fewest} sample(s) of {task_id}; generate at least "
            f"{ks[-1]} samples per task (--num-samples) or drop k={ks[-1]}"
        )
