"""scripts/plot_runs.py: several runs' curves against tokens seen in one PNG; and the study's
bpb-vs-FLOPs plot, whose axis reads in SI units."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hrm_codegen.training.plot import PANELS, metric_series, plot_runs, run_label, split_runs

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure saved during the test, by file name, kept open for inspection."""
    from matplotlib.figure import Figure

    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        original(self, fname, *args, **kwargs)  # draws it: tick labels are final afterwards
        saved[Path(fname).name] = self

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


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


def test_every_panel_has_a_y_label_and_names_the_runs(tmp_path, saved_figures):
    hrm = write_run(tmp_path / "quickstart" / "run-a", "hrm", training_rows(5.0, 10, 0.1))
    baseline = write_run(tmp_path / "baseline" / "run-b", "transformer", training_rows(6.0, 8))
    plot_runs([hrm, baseline], tmp_path / "cmp.png")
    axes = saved_figures["cmp.png"].axes
    assert [ax.get_title() for ax in axes] == [title for _, title, _ in PANELS[:3]]
    assert all(ax.get_ylabel() for ax in axes)
    for ax in axes:  # a legend in every panel, pass@1 too, though one run logged it
        legend = ax.get_legend()
        assert legend is not None
        names = [text.get_text() for text in legend.get_texts()]
        assert names[0] == "quickstart/run-a (hrm)"
    assert [len(ax.get_legend().get_texts()) for ax in axes] == [2, 1, 1]  # val only in run-a
    plot_runs([hrm], tmp_path / "one.png")  # one run: its name on top, no legend needed
    single = saved_figures["one.png"]
    assert single.get_suptitle() == "quickstart/run-a (hrm)"
    assert all(ax.get_legend() is None and ax.get_ylabel() for ax in single.axes)


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


def test_a_glob_over_an_experiment_skips_what_is_no_run_with_one_note_each(tmp_path):
    experiment = tmp_path / "runs" / "quickstart"
    runs = [write_run(experiment / name, "hrm", training_rows(3.0, 3)) for name in ("a", "b")]
    empty = experiment / "2025-01-01_00-00-00"  # what a failed run used to leave
    (empty / ".hydra").mkdir(parents=True)
    stray = experiment / "notes.txt"
    stray.write_text("x")
    paths = sorted(experiment.iterdir())  # what the shell makes of runs/quickstart/*
    assert split_runs(paths) == (runs, [empty, stray])
    script = [sys.executable, str(REPO / "scripts" / "plot_runs.py")]
    out = tmp_path / "cmp.png"
    done = subprocess.run(
        [*script, *map(str, paths), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"skipping {empty}: no metrics.jsonl",
        f"skipping {stray}: no metrics.jsonl",
    ]
    assert out.read_bytes().startswith(PNG_MAGIC)
    none = subprocess.run(
        [*script, str(empty), str(stray), "--out", str(tmp_path / "none.png")],
        capture_output=True,
        text=True,
    )
    assert none.returncode == 2
    assert "none of the 2 path(s) holds metrics.jsonl" in none.stderr
    assert not (tmp_path / "none.png").exists()


def test_the_study_flops_axis_reads_in_si_units(tmp_path, saved_figures):
    from hrm_codegen.study.report import write_plots

    def curve(bpb: float) -> list[dict]:  # a CPU-sized study: a few GFLOPs in all
        return [
            {"flops": 3e8 * i, "val/bpb": bpb / i, "train_seconds": 9.0 * i, "tokens_seen": 4e3 * i}
            for i in range(1, 11)
        ]

    arms = {"hrm": 1e-3, "transformer": 3e-3}
    result = {
        "study": "tiny",
        "arms": {arm: {"selected_lr": lr, "pretrain": {}} for arm, lr in arms.items()},
        "runs": [
            {"stage": "pretrain", "arm": arm, "lr": lr, "seed": seed, "curve": curve(3.0 + seed)}
            | {"final val/bpb": 1.0 + seed}
            for arm, lr in arms.items()
            for seed in (0, 1)
        ],
        "protocol": {"arms": list(arms), "seeds": [0, 1], "test_time_multipliers": [1, 2]},
    }
    assert "bpb_vs_flops.png" in write_plots(result, tmp_path, "")
    ax = saved_figures["bpb_vs_flops.png"].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(label.endswith("FLOPs") for label in labels), labels
    assert any("GFLOPs" in label for label in labels), labels
    assert ax.xaxis.get_offset_text().get_text() == ""  # no "1e12" beside the axis
    assert ax.get_ylabel() and len(ax.get_legend().get_texts()) == 2


def test_runs_without_plottable_metrics_are_an_error(tmp_path):
    run = write_run(tmp_path / "r" / "1", "hrm", [{"step": 1, "train/loss": 1.0}])
    with pytest.raises(ValueError, match="tokens_seen"):
        plot_runs([run], tmp_path / "out.png")
