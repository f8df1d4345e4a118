"""Where training metrics go: a progress bar, plain console lines, metrics.jsonl, and W&B.

Every metric logged is appended to `<run dir>/metrics.jsonl` (one JSON object per line with `step`),
whatever the logger choice, so runs can be plotted (`scripts/plot_runs.py`) without W&B.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hrm_codegen.run_layout import METRICS_FILE

SUPERSEDED_FILE = "metrics.superseded.jsonl"
LOGGER_NAMES = ("console", "jsonl", "wandb")
# The open loggers, newest last: waits inside training (evaluation) draw their bars under the
# newest one's, and only when it shows one (`nested_bar`).
_OPEN_LOGGERS: list[RunLogger] = []


class RunLogger:
    """One object the loop talks to; only the main process writes anything."""

    def __init__(
        self,
        run_dir: Path | None,
        logger_cfg: dict[str, Any],
        *,
        config: dict[str, Any],
        is_main: bool,
        total_steps: int,
        initial_step: int,
        run_name: str,
    ) -> None:
        name = logger_cfg.get("name")
        if name not in LOGGER_NAMES:
            raise ValueError(f"logger.name={name!r} is not one of {LOGGER_NAMES} (pick logger=...)")
        self.is_main = is_main
        self.metrics_path = run_dir / METRICS_FILE if (run_dir is not None and is_main) else None
        if self.metrics_path is not None and self.metrics_path.is_file():
            superseded = drop_rows_after(self.metrics_path, initial_step)
            if superseded:
                tqdm.write(
                    f"resuming at step {initial_step}: {superseded} metrics rows logged after it "
                    f"by the interrupted process moved to {SUPERSEDED_FILE}",
                    file=sys.stdout,
                )
        show_bar = bool(logger_cfg.get("progress_bar", True)) and is_main
        self.bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc="train",
            unit="step",
            disable=not show_bar,
            dynamic_ncols=True,
            file=sys.stdout,
        )
        self.plain_lines = is_main and not show_bar
        self.shows_bar = show_bar
        self._advanced_at: float | None = None  # when the last training step ended
        _OPEN_LOGGERS.append(self)
        self.wandb_run = None
        if name == "wandb" and is_main and run_dir is not None:
            self.wandb_run = _start_wandb(run_dir, logger_cfg, config, run_name)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` at `step` in every sink; train metrics also go to the bar."""
        if not self.is_main:
            return
        row = {"step": step, **{k: _scalar(v) for k, v in metrics.items()}}
        if self.metrics_path is not None:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=step)
        shown = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("train/")}
        if shown:
            self.bar.set_postfix(
                {k: _short(shown[k]) for k in ("loss", "lr", "tok_s", "mfu") if k in shown},
                refresh=False,
            )
            if self.plain_lines:
                self.print(
                    f"step {step}: " + " ".join(f"{k}={_short(v)}" for k, v in shown.items())
                )

    def advance(self, steps: int = 1) -> None:
        """Count `steps` finished training steps on the bar."""
        self.bar.update(steps)
        self._advanced_at = time.perf_counter()

    def resume_rate(self) -> None:
        """Leave the time since the last `advance` (evaluation, checkpointing) out of the bar's
        rate and ETA, which tqdm computes from wall time between updates: a 100 s evaluation
        would otherwise read as one slow step and the ETA would jump. Call it when training
        resumes; the time of the steps themselves is kept. Harmless to call after every step:
        the bookkeeping between steps it leaves out is microseconds."""
        if self.bar.disable or self._advanced_at is None:
            return
        paused = time.perf_counter() - self._advanced_at
        # what tqdm's own `unpause` does, but from the end of the last step rather than from the
        # last redraw, so steps not yet drawn keep their time
        self.bar.start_t += paused
        self.bar.last_print_t += paused
        self._advanced_at = time.perf_counter()

    def print(self, message: str) -> None:
        """A line on the console that does not break the progress bar."""
        if self.is_main:
            tqdm.write(message, file=sys.stdout)

    def close(self) -> None:
        """Close the bar and finish the W&B run, whose files are complete when this returns."""
        self.bar.close()
        if self in _OPEN_LOGGERS:
            _OPEN_LOGGERS.remove(self)
        if self.wandb_run is not None:
            _finish_wandb(self.wandb_run)
            self.wandb_run = None


def nested_bar(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A transient bar for a wait inside training (evaluation batches, pass@1 generation), drawn
    under the training bar and erased when closed, so a long evaluation shows a count and an ETA
    instead of a frozen training bar. Disabled (a no-op bar) unless an open `RunLogger` shows its
    bar and stdout is a terminal: a run with `logger.progress_bar=false`, or writing to a log
    file, gets no carriage-return noise from it."""
    logger = _OPEN_LOGGERS[-1] if _OPEN_LOGGERS else None
    show = logger is not None and logger.shows_bar and _is_terminal(sys.stdout)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        disable=not show,
        dynamic_ncols=True,
        file=sys.stdout,
    )


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _start_wandb(run_dir: Path, cfg: dict[str, Any], config: dict[str, Any], run_name: str) -> Any:
    try:
        import wandb
    except ImportError as error:
        raise ImportError(
            "logger=wandb needs the wandb package: pip install 'hrm-codegen[wandb]' (or pick "
            "logger=console)"
        ) from error
    return wandb.init(
        project=cfg.get("project") or "hrm-codegen",
        entity=cfg.get("entity"),
        group=cfg.get("group"),
        tags=list(cfg.get("tags") or []),
        mode=cfg.get("mode"),
        name=run_name,
        dir=str(run_dir),
        config=config,
    )


def _finish_wandb(run: Any) -> None:
    """Finish a W&B run so that its files are complete when this returns.

    `run.finish()` alone does not promise that: wandb-core buffers the tail of the transaction log
    (`run-*.wandb`, the whole of an offline run) and writes it when it closes the run's stream,
    which it does on a finish notice the SDK sends without waiting. A reader right after (`wandb
    sync` in the same notebook, a test) could miss the last history rows, or every record of a
    short run. Tearing the service down waits for its process to exit, after it has closed every
    stream. Only when no other run of this process is active, so a caller's own run keeps its
    service; the next `wandb.init` starts a new one.
    """
    import wandb

    run.finish()
    if wandb.run is None:
        wandb.teardown()


def _scalar(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the fact visible
    return value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def drop_rows_after(path: Path, step: int) -> int:
    """Move the rows of a metrics file logged after `step` (work a killed process did past its
    last checkpoint, which the resumed run redoes) to `metrics.superseded.jsonl` beside it, so
    that a killed and resumed run logs exactly what an uninterrupted one does. Returns how many."""
    keep, later = [], []
    for line in path.read_text().splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            row_step = int(json.loads(line).get("step", 0))
        except (json.JSONDecodeError, TypeError, ValueError):
            row_step = step + 1  # a torn last line from a kill mid-write
        (keep if row_step <= step else later).append(line if line.endswith("\n") else line + "\n")
    if later:
        with (path.parent / SUPERSEDED_FILE).open("a") as handle:
            handle.writelines(later)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(keep))
        tmp.replace(path)
    return len(later)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of `<run_dir>/metrics.jsonl`, with a clear error when the file is missing."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run_dir} is not a training run dir written by "
            "scripts/train_codegen.py"
        )
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON: {error}") from error
    return rows
