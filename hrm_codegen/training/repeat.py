"""Did two runs log the same numbers? Every logged float of two run folders, compared bit for bit.

`compare_runs` is how a rerun is checked (`scripts/compare_runs.py`): the same command on the
same machine and thread count must log identical floats; a run on other threads or another CPU
logs different last bits from the first step on, and this says where they start and how far they
have grown by the end. Timings and the provenance record are not compared (they are expected to
differ; the provenance is shown side by side instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrm_codegen.training.logging import read_metrics

TIMING_KEYS = frozenset({"train/tok_s", "train/mfu", "train_seconds"})
PROVENANCE_PREFIX = "provenance/"


def comparable_rows(run_dir: Path) -> dict[tuple[int, str], Any]:
    """(step, metric) -> value for every logged value that must repeat."""
    values: dict[tuple[int, str], Any] = {}
    for row in read_metrics(run_dir):
        step = int(row["step"])
        for key, value in row.items():
            if key == "step" or key in TIMING_KEYS or key.startswith(PROVENANCE_PREFIX):
                continue
            values[(step, key)] = value
    return values


def provenance(run_dir: Path) -> dict[str, Any]:
    """The first provenance record a run logged (its data and numeric environment)."""
    for row in read_metrics(run_dir):
        found = {
            k[len(PROVENANCE_PREFIX) :]: v
            for k, v in row.items()
            if k.startswith(PROVENANCE_PREFIX)
        }
        if found:
            return found
    return {}


@dataclass
class RunComparison:
    """Where two runs' logs agree and where they part."""

    compared: int = 0
    differing: int = 0
    only_in_one: list[tuple[int, str]] = field(default_factory=list)
    unshared_metrics: list[str] = field(default_factory=list)  # logged by one run only
    first_difference: tuple[int, str, Any, Any] | None = None
    largest: dict[str, float] = field(default_factory=dict)  # metric -> max |a - b|
    final: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # metric -> (a, b) last step

    @property
    def identical(self) -> bool:
        return self.differing == 0 and not self.only_in_one


def _distance(a: Any, b: Any) -> float:
    numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
    if numbers and math.isfinite(a) and math.isfinite(b):
        return abs(float(a) - float(b))
    return math.inf


def compare_runs(run_a: str | Path, run_b: str | Path) -> RunComparison:
    """Every (step, metric) both runs logged, compared exactly (after the JSON round trip)."""
    a, b = comparable_rows(Path(run_a)), comparable_rows(Path(run_b))
    # a metric one run never logs (a newer version's extra counter) is reported, not a mismatch;
    # a metric both log must be logged at the same steps
    shared_metrics = {m for _, m in a} & {m for _, m in b}
    out = RunComparison(
        only_in_one=sorted(k for k in set(a) ^ set(b) if k[1] in shared_metrics),
        unshared_metrics=sorted(({m for _, m in a} | {m for _, m in b}) - shared_metrics),
    )
    for key in sorted(set(a) & set(b)):
        out.compared += 1
        if a[key] == b[key]:
            continue
        out.differing += 1
        if out.first_difference is None:
            out.first_difference = (key[0], key[1], a[key], b[key])
        out.largest[key[1]] = max(out.largest.get(key[1], 0.0), _distance(a[key], b[key]))
    last_step: dict[str, int] = {}
    for step, metric in set(a) & set(b):
        last_step[metric] = max(step, last_step.get(metric, -1))
    for metric, step in sorted(last_step.items()):
        out.final[metric] = (a[(step, metric)], b[(step, metric)])
    return out


def comparison_text(run_a: Path, run_b: Path, result: RunComparison) -> str:
    """A plain-text verdict: identical, or where the runs part and how far apart they end."""
    lines = [f"A: {run_a}", f"B: {run_b}"]
    prov_a, prov_b = provenance(run_a), provenance(run_b)
    for key in sorted(set(prov_a) | set(prov_b)):
        if prov_a.get(key) != prov_b.get(key):
            lines.append(f"  provenance {key}: A {prov_a.get(key)!r}  B {prov_b.get(key)!r}")
    if result.unshared_metrics:
        lines.append(
            f"  logged by one run only (not compared): {', '.join(result.unshared_metrics)}"
        )
    if result.identical:
        lines.append(f"identical: all {result.compared} logged values equal bit for bit")
        return "\n".join(lines)
    lines.append(f"{result.differing} of {result.compared} logged values differ")
    if result.only_in_one:
        lines.append(f"{len(result.only_in_one)} (step, metric) pairs logged by one run only")
    if result.first_difference is not None:
        step, metric, va, vb = result.first_difference
        lines.append(f"first difference: step {step} {metric}: A {va!r}  B {vb!r}")
    for metric in ("train/loss", "val/loss", "val/bpb", "val/mbpp_bpb"):
        if metric in result.final:
            va, vb = result.final[metric]
            lines.append(
                f"final {metric}: A {va!r}  B {vb!r}  (|diff| {_distance(va, vb):.3g}; "
                f"largest along the run {result.largest.get(metric, 0.0):.3g})"
            )
    return "\n".join(lines)
