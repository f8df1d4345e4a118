"""Compare training runs: loss (and pass@1 where logged) against tokens seen, in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrm_codegen.run_layout import CONFIG_SNAPSHOT, METRICS_FILE
from hrm_codegen.training.logging import read_metrics

# (metric key in metrics.jsonl, panel title, y-axis label); a panel is drawn only when some run
# logged the key.
PANELS = (
    ("train/loss", "training loss", "loss (nats per label token)"),
    ("val/loss", "validation loss", "loss (nats per label token)"),
    ("val/pass@1", "validation pass@1 (greedy)", "pass@1 (fraction of tasks)"),
    # GSPO runs (hrm_codegen/rl): the sandbox reward and the share of groups that carry a gradient
    ("train/reward_mean", "GSPO reward (mean per sample)", "reward"),
    ("train/groups_with_signal", "groups with reward variance", "fraction of groups"),
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
    config = run_dir / CONFIG_SNAPSHOT
    if config.is_file():
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(config)
        model_type = OmegaConf.select(cfg, "model.type")
        layers = OmegaConf.select(cfg, "model.n_layers")
        if model_type:
            label += f" ({model_type}{f', {layers} layers' if layers else ''})"
    return label


def split_runs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(run dirs, the rest): a shell glob such as `runs/<experiment>/*` also matches folders and
    files that are no run (no metrics.jsonl), which a caller skips with a note."""
    runs: list[Path] = []
    rest: list[Path] = []
    for path in map(Path, paths):
        (runs if (path / METRICS_FILE).is_file() else rest).append(path)
    return runs, rest


def plot_runs(run_dirs: list[Path], out: Path, log_x: bool = False) -> Path:
    """Draw every run's curves into one figure at `out`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    if not run_dirs:
        raise ValueError(
            "no run dirs given: pass one or more runs/<experiment>/<timestamp> folders"
        )
    runs = [(Path(d), read_metrics(Path(d))) for d in run_dirs]
    panels = [p for p in PANELS if any(metric_series(rows, p[0])[0] for _, rows in runs)]
    if not panels:
        raise ValueError(
            f"none of {[str(d) for d in run_dirs]} logged {[p[0] for p in PANELS]} with tokens_seen"
        )
    fig, axes = plt.subplots(  # one tokens axis for all panels: a step reads the same everywhere
        1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, sharex=True
    )
    for ax, (key, title, ylabel) in zip(axes[0], panels):
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
        ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6))  # room for labels such as 1.25 M
        ax.xaxis.set_major_formatter(EngFormatter())  # 200 k, 1.5 M: no "1e6" offset to decode
        ax.grid(alpha=0.3)
        if len(runs) > 1:  # which curve is which run, in every panel
            ax.legend(fontsize=8)
    if len(runs) == 1:
        fig.suptitle(run_label(runs[0][0]), fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
