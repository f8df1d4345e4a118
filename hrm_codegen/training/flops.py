"""Model FLOPs utilisation (MFU): a model's FLOPs per token and the device's peak FLOP/s.

MFU = achieved model FLOPs per second / peak FLOPs per second. The model FLOPs per token are the
family's own formula, which its registry entry carries (`hrm_codegen.model.registry`; the formulas
and their conventions are in hrm_codegen/model/flops.py); the peaks are below.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from hrm_codegen.model.flops import FlopsCount
from hrm_codegen.model.registry import model_flops

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets (SXM parts).
GPU_PEAK_FLOPS = {"a100": 312e12, "h100": 989e12, "h200": 989e12}


def flops_count(model: torch.nn.Module, *, progress: float | None = None) -> FlopsCount:
    """Read the block structure off a model of a registered family (HRM or transformer, or
    transformers' HRM-Text / Llama in our adapter) by its entry's FLOP formula. `progress` (0..1):
    where in training, for a gradient schedule that warms up (HRM-Text); None: its mean over
    training."""
    return model_flops(model, progress)


def peak_flops(device: torch.device | str, override: float | None = None) -> float | None:
    """Peak FLOP/s of `device`: the override, the GPU table, or a CPU estimate; None if unknown."""
    if override:
        return float(override)
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, value in GPU_PEAK_FLOPS.items():
            if key in name:
                return value
        return None
    if device.type == "cpu":
        return cpu_peak_flops()
    return None


def cpu_peak_flops(cpuinfo: str | None = None, threads: int | None = None) -> float | None:
    """Float32 FMA peak of the CPU threads torch uses: threads x GHz x FLOPs per cycle.

    A rough ceiling from /proc/cpuinfo: AVX-512 cores do 64 float32 FLOPs per cycle (two 16-wide FMA
    units), AVX2+FMA cores 32. Pass `--peak-flops` for a measured number.
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.exists():
            return None
        cpuinfo = path.read_text(errors="replace")
    flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    if "avx512f" in flags:
        per_cycle = 64
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32
    else:
        per_cycle = 8
    ghz_in_name = re.search(r"^model name\s*:.*@\s*([\d.]+)\s*GHz", cpuinfo, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
    if ghz_in_name:
        hz = float(ghz_in_name.group(1)) * 1e9
    elif mhz:
        hz = float(mhz.group(1)) * 1e6
    else:
        return None
    return (threads or torch.get_num_threads()) * hz * per_cycle
