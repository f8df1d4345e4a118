"""Stop cleanly on SIGTERM/SIGINT: the loop finishes its step, saves, and exits.

Schedulers preempt with SIGTERM (then SIGKILL after a grace period); Ctrl-C sends SIGINT. A loop
that polls `StopSignal.requested` after each step can save a checkpoint at the current step before
exiting, so `resume=true` loses nothing. A second signal exits at once with the default action
(the checkpoint swap is crash-safe, so that is safe too).

    with StopSignal() as stop:
        while ...:
            step()
            if stop.requested is not None:
                save(); raise TrainingInterrupted(stop.requested, step)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint at `step`; exit code 128 + signum."""

    def __init__(self, signum: int, step: int, checkpoint: Any = None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"stopped by {name} at step {step}{where}; resume=true continues from it")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignal:
    """Turns the first SIGTERM/SIGINT into a flag (`requested`: the signal number, else None).

    Handlers can only be installed from the main thread; elsewhere this does nothing (and
    `requested` stays None). The previous handlers come back on `uninstall`/leaving the block."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, *, announce: bool = True) -> None:
        self.signals = signals
        self.announce = announce
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignal:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signum
            if self.announce:
                print(
                    f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then "
                    "stopping (send it again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        # the second signal: act as if no handler had been installed
        previous = self._previous.get(signum, signal.SIG_DFL)
        self.uninstall()
        if previous == signal.SIG_IGN:  # it was ignored before (e.g. SIGINT in a background job)
            return
        if callable(previous) and previous is not signal.SIG_DFL:
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


__all__ = ["STOP_SIGNALS", "StopSignal", "TrainingInterrupted"]
