"""The numeric environment of a run: thread settings applied on purpose, and everything that can
change a float recorded, so that a rerun can be bit-exact and a difference can be explained.

On a CPU the intra-op thread count changes how reductions are split, so two runs that differ
only in threads differ in the last bits of every loss; the library versions (torch, its MKL and
oneDNN) and the CPU's instruction set do too. `apply_threads` sets what the config asks for;
`runtime_record` is written into the run's config and first metrics record.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import torch

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")


def apply_threads(intra_op: int | None, inter_op: int | None) -> None:
    """Set torch's intra-op and inter-op threads (None keeps the current value).

    torch accepts the inter-op count only before its first parallel work; asking for another
    count after that is a clear error rather than a silent mismatch.
    """
    if intra_op is not None:
        if int(intra_op) < 1:
            raise ValueError(f"threads.intra_op={intra_op} must be >= 1 (or null for the default)")
        torch.set_num_threads(int(intra_op))
    if inter_op is not None and int(inter_op) != torch.get_num_interop_threads():
        if int(inter_op) < 1:
            raise ValueError(f"threads.inter_op={inter_op} must be >= 1 (or null for the default)")
        try:
            torch.set_num_interop_threads(int(inter_op))
        except RuntimeError as error:
            raise RuntimeError(
                f"threads.inter_op={inter_op}: torch already runs "
                f"{torch.get_num_interop_threads()} inter-op threads in this process ({error}); "
                "set it in a fresh process or leave threads.inter_op=null"
            ) from error


def _library_versions() -> dict[str, str]:
    """MKL and oneDNN versions as torch reports them ("none" when not built in)."""
    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", shown)
    onednn = re.search(r"MKL-DNN v([^\s]+)", shown)
    capability = re.search(r"CPU capability usage: (\w+)", shown)
    return {
        "mkl": mkl.group(1) if mkl else "none",
        "onednn": onednn.group(1) if onednn else "none",
        "cpu_capability": capability.group(1) if capability else "unknown",
    }


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what platform knows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_record() -> dict[str, Any]:
    """Everything about this process that can change a float of a CPU run, as flat values."""
    record: dict[str, Any] = {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **_library_versions(),
    }
    for name in THREAD_ENV:
        record[name] = os.environ.get(name, "unset")
    if torch.cuda.is_available():
        record["cuda"] = torch.version.cuda or "unknown"
        record["gpu"] = torch.cuda.get_device_name(0)
    return record
