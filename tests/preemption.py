"""A real launcher process preempted as a scheduler does it (SIGTERM), shared by the slow tests of
the pretraining and the GSPO loops."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def preempt_launcher(overrides: list[str], run_dir: Path, what: str) -> str:
    """Start `scripts/train_codegen.py overrides`, send SIGTERM once `run_dir/metrics.jsonl` has
    three lines, and return its stderr after checking it exited 128 + 15 cleanly; `what` names
    the loop in the failure message."""
    command = [sys.executable, str(REPO / "scripts" / "train_codegen.py"), *overrides]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = run_dir / "metrics.jsonl"
        deadline = time.monotonic() + 240
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{what} never logged three lines"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    return stderr
