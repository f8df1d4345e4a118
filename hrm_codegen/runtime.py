"""The numeric environment of a process: CPU threads chosen on purpose, and everything that can
change a float recorded, so that a rerun can be bit-exact and a difference can be explained.

Threads: two intra-op threads fighting other processes for two cores ran training 3-5x slower
than one (each OpenMP region waits for its slowest thread, and a descheduled thread stalls every
region). `threads.intra_op=auto` therefore takes the cores that are actually free, measured from
/proc/stat over a fraction of a second, at least one; an integer pins it; null leaves torch's
default. Training, evaluation, generation and studies all go through `apply_threads`, and the
choice is recorded (`runtime_record`). The thread count may change the last bits of a reduction
in general; on the machine the studies ran on, one and two threads gave bit-identical runs (see
the README), and every run records its count so a difference can be traced.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")


AUTO = "auto"
_CHOSEN: dict[str, Any] = {}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores(sample_seconds: float = 0.25) -> float | None:
    """Cores busy with work (all processes) over a short sample of /proc/stat; None where that
    file does not exist (then `auto` assumes a quiet machine)."""
    import time

    def ticks() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as handle:
                fields = [int(x) for x in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    first = ticks()
    if first is None:
        return None
    time.sleep(sample_seconds)
    second = ticks()
    if second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (1.0 - idle / total)


def auto_threads(sample_seconds: float = 0.25) -> int:
    """Intra-op threads for a process about to start: the usable cores minus those other work
    keeps busy (rounded to the nearest core), at least one."""
    cores = usable_cores()
    busy = busy_cores(sample_seconds)
    if busy is None:
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def resolve_threads(setting: int | str | None) -> int | None:
    """The intra-op thread count a `threads.intra_op` setting asks for (None: leave as is)."""
    if setting is None:
        return None
    if isinstance(setting, str) and setting.strip().lower() == AUTO:
        return auto_threads()
    try:
        count = int(setting)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or (isinstance(setting, float) and setting != count):
        raise ValueError(
            f"threads.intra_op={setting!r} must be a positive integer, 'auto' (the free cores) "
            "or null (torch's default)"
        )
    return count


def apply_threads(intra_op: int | str | None, inter_op: int | None = None) -> None:
    """Set torch's intra-op threads (`resolve_threads`) and inter-op threads (None keeps the
    current value), and remember what was asked for `runtime_record`.

    torch accepts the inter-op count only before its first parallel work; asking for another
    count after that is a clear error rather than a silent mismatch.
    """
    import torch  # here, not at import: `evaluate.py --samples` runs no model and no torch

    count = resolve_threads(intra_op)
    _CHOSEN["threads_setting"] = "default" if intra_op is None else str(intra_op)
    if count is not None:
        torch.set_num_threads(count)
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
    import torch

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
    import torch

    record: dict[str, Any] = {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "intra_op_threads": torch.get_num_threads(),
        "threads_setting": _CHOSEN.get("threads_setting", "default"),
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
