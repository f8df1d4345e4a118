"""Compare training runs: loss (and pass@1 where logged) against tokens seen, in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrm_codegen.training.logging import read_metrics

# (metric key in metrics.jsonl, panel title); a panel is drawn only when some run logged the key.
PANELS = (
    ("train/loss", "training loss"),
    ("val/loss", "validation loss"),
    ("val/pass@1", "validation pass@1 (greedy)"),
    # GSPO runs (hrm_codegen/rl): the sandbox reward and the share of groups that carry a gradient
    ("train/reward_mean", "GSPO reward (mean per sample)"),
    ("train/groups_with_signal", "groups with reward variance"),
)


def metric_series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(tokens_seen, value) for `key`, one point per step; a resumed run's repeated steps keep the
    latest value, so a crash-and-resume does not draw the same steps twice."""
    by_step: dict[int, tuple[float, float]] = {}
    for row in rows:
        if key in row and "tokens_seen" in row and isinstance(row[key], (int, float)):
            by_step[int(row["step"])] = (float(row["tokens_seen"]), float(row[key]))
    points = [by_step[step] for step in sorted(by_step)]
    return [p[0] for p in points], [p[1] for p in points]


def run_label(run_dir: Path) -> str:
    """`<experiment>/<run dir name> (<model type>)`, from the run's config.yaml when present."""
    label = f"{run_dir.parent.name}/{run_dir.name}"
    config = run_dir / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(config)
        model_type = OmegaConf.select(cfg, "model.type")
        layers = OmegaConf.select(cfg, "model.n_layers")
        if model_type:
            label += f" ({model_type}{f', {layers} layers' if layers else ''})"
    return label


def plot_runs(run_dirs: list[Path], out: Path, log_x: bool = False) -> Path:
    """Draw every run's curves into one figure at `out`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run_dirs:
        raise ValueError(
            "no run dirs given: pass one or more runs/<experiment>/<timestamp> folders"
        )
    runs = [(Path(d), read_metrics(Path(d))) for d in run_dirs]
    panels = [(k, t) for k, t in PANELS if any(metric_series(rows, k)[0] for _, rows in runs)]
    if not panels:
        raise ValueError(
            f"none of {[str(d) for d in run_dirs]} logged {[k for k, _ in PANELS]} with tokens_seen"
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for run_dir, rows in runs:
            tokens, values = metric_series(rows, key)
            if tokens:
                ax.plot(
                    tokens,
                    values,
                    marker="o" if len(tokens) < 20 else None,
                    ms=3,
                    label=run_label(run_dir),
                )
        ax.set_title(title)
        ax.set_xlabel("tokens seen")
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
