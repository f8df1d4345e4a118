"""Peak memory of the token losses (forward + backward): unchunked reference vs the chunked losses.

    python scripts/bench_loss.py                          # 4 x 1024 x 16384 bf16 logits, CPU
    python scripts/bench_loss.py --device cuda --batch 16

Each measurement runs in a fresh subprocess. On CPU the number is the growth of the process's peak
RSS (ru_maxrss) over its RSS once the logits exist; on CUDA, torch.cuda.max_memory_allocated over
the allocated memory once the logits exist. Both count the gradient of the logits (bf16, the same
size as the logits), which any implementation must produce. The estimate for a larger batch is a
straight line through the measurements at `--batch` and `--batch / 2`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from hrm_codegen.losses import log_stablemax

MIB = 2**20


def reference_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The losses as they were before chunking: a float32 (float64) copy of all the logits."""
    valid = labels != -100
    safe = labels.masked_fill(~valid, 0)
    if kind == "softmax":
        per_token = F.cross_entropy(
            logits.float().flatten(0, -2), safe.flatten(), reduction="none"
        ).view(labels.shape)
    else:
        log_probs = log_stablemax(logits.double())
        per_token = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1).float()
    per_token = torch.where(valid, per_token, torch.zeros_like(per_token))
    return per_token.sum() / valid.sum().clamp_min(1)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / MIB


def measure_once(impl: str, kind: str, shape: tuple[int, int, int], device: str) -> dict:
    """One forward + backward in this process; peak memory above the logits, in MiB."""
    from hrm_codegen.losses import token_cross_entropy

    batch, seq, vocab = shape
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, seq, vocab, generator=generator, dtype=torch.bfloat16)
    labels = torch.randint(vocab, (batch, seq), generator=generator)
    logits = logits.to(device).requires_grad_(True)
    labels = labels.to(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / MIB
    else:
        base = _rss_mib()
    start = time.perf_counter()
    if impl == "old":
        loss = reference_loss(kind, logits, labels)
    else:
        loss = token_cross_entropy(kind, logits, labels)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / MIB
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "peak_mib": peak - base,
        "seconds": time.perf_counter() - start,
        "loss": loss.item(),
    }


def _in_subprocess(impl: str, kind: str, shape: tuple[int, int, int], device: str) -> dict:
    args = [sys.executable, __file__, "--child", impl, kind, device, *map(str, shape)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        impl, kind, device, *dims = sys.argv[2:]
        print(json.dumps(measure_once(impl, kind, tuple(int(d) for d in dims), device)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--estimate-batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kinds", default="softmax,stablemax")
    args = parser.parse_args()

    small = max(1, args.batch // 2)
    logits_mib = args.batch * args.seq * args.vocab * 2 / MIB
    print(
        f"device={args.device} logits {args.batch} x {args.seq} x {args.vocab} bf16 "
        f"({logits_mib:,.0f} MiB); peak memory above the logits, forward + backward"
    )
    header = (
        f"{'loss':<11}{'impl':<9}{'peak MiB':>10}{'x logits':>10}{'seconds':>9}"
        f"{f'est. MiB @ B={args.estimate_batch}':>20}"
    )
    print(header)
    print("-" * len(header))
    for kind in args.kinds.split(","):
        losses = []
        for impl in ["old", "new"]:
            big = _in_subprocess(impl, kind, (args.batch, args.seq, args.vocab), args.device)
            half = _in_subprocess(impl, kind, (small, args.seq, args.vocab), args.device)
            per_row = (big["peak_mib"] - half["peak_mib"]) / max(args.batch - small, 1)
            estimate = big["peak_mib"] + per_row * (args.estimate_batch - args.batch)
            losses.append(big["loss"])
            print(
                f"{kind:<11}{impl:<9}{big['peak_mib']:>10,.0f}{big['peak_mib'] / logits_mib:>10.2f}"
                f"{big['seconds']:>9.2f}{estimate:>20,.0f}"
            )
        if abs(losses[0] - losses[1]) > 1e-3 * max(1.0, abs(losses[0])):
            print(f"WARNING: {kind} old and new losses differ: {losses}")


if __name__ == "__main__":
    main()
