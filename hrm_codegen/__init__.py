"""HRM-CodeGen: the Hierarchical Reasoning Model trained to write Python."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _passive_openmp_waits() -> None:
    """Let idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE), unless the
    user chose a policy. On a 2-core machine that two other jobs kept busy, a 2-thread training
    step took 3.9-5.0 s with spinning threads and 1.4-1.6 s with sleeping ones, with the same
    loss bit for bit (README, "Threads"). OpenMP reads the variable when torch loads it, so this
    runs on the first import of the package, and does nothing when torch is already imported."""
    if "OMP_WAIT_POLICY" not in _os.environ and "torch" not in _sys.modules:
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_passive_openmp_waits()
