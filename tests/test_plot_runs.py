"""scripts/plot_runs.py: several runs' curves against tokens seen in one PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hrm_codegen.training.plot import metric_series, plot_runs, run_label

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir: Path, model_type: str, rows: list[dict]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"model:\n  type: {model_type}\n  hidden_size: 64\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def training_rows(start_loss: float, steps: int, pass_at_1: float | None = None) -> list[dict]:
    rows = [
        {"step": s, "train/loss": start_loss / s, "train/lr": 1e-3, "tokens_seen": 100 * s}
        for s in range(1, steps + 1)
    ]
    if pass_at_1 is not None:
        rows.append(
            {"step": steps, "val/loss": 1.0, "val/pass@1": pass_at_1, "tokens_seen": 100 * steps}
        )
    return rows


def test_series_are_indexed_by_tokens_and_a_resumed_run_keeps_the_latest_value_per_step():
    rows = training_rows(4.0, 4)
    rows += [{"step": 3, "train/loss": 0.5, "tokens_seen": 300}]  # resumed after a crash at step 4
    rows += [{"step": 4, "train/loss": 0.25, "tokens_seen": 400}]
    tokens, losses = metric_series(rows, "train/loss")
    assert tokens == [100.0, 200.0, 300.0, 400.0]
    assert losses == [4.0, 2.0, 0.5, 0.25]
    assert metric_series(rows, "val/pass@1") == ([], [])


def test_two_runs_are_drawn_into_one_png(tmp_path):
    hrm = write_run(tmp_path / "quickstart" / "run-a", "hrm", training_rows(5.0, 10, 0.1))
    baseline = write_run(tmp_path / "baseline" / "run-b", "transformer", training_rows(6.0, 8))
    out = plot_runs([hrm, baseline], tmp_path / "plots" / "cmp.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 2 * height  # three panels side by side: train loss, val loss, pass@1
    assert run_label(hrm) == "quickstart/run-a (hrm)"


def test_the_script_writes_the_png_and_a_folder_that_is_not_a_run_is_named(tmp_path):
    run = write_run(tmp_path / "x" / "run", "hrm", training_rows(3.0, 3))
    script = [sys.executable, str(REPO / "scripts" / "plot_runs.py")]
    ok = subprocess.run(
        [*script, str(run), "--out", str(tmp_path / "p.png")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/metrics.jsonl not found"):
        plot_runs([run, tmp_path], tmp_path / "q.png")


def test_runs_without_plottable_metrics_are_an_error(tmp_path):
    run = write_run(tmp_path / "r" / "1", "hrm", [{"step": 1, "train/loss": 1.0}])
    with pytest.raises(ValueError, match="tokens_seen"):
        plot_runs([run], tmp_path / "out.png")
