"""The processes of one training run: process group, device, rank and world size, collectives.

    dist = Distributed(device="auto", mixed_precision="no")   # joins what the launcher describes
    dist.rank, dist.world, dist.is_main, dist.device
    totals = dist.sum([loss_sum, rows])                       # float64, summed over processes
    dist.sum_gradients(model.parameters())                    # or average_gradients(...)
    signum = dist.agreed_signal(stop.requested)               # every process stops together
    dist.end()                                                # leaves the group as it found it

Both loops (the LM loop in `trainer.py`, GSPO in `hrm_codegen/rl/loop.py`) start one. It is built
on accelerate's `Accelerator` because the LM loop already runs on it (DDP wrapping, mixed precision,
the fp16 loss scaler, `accelerate launch` and Slurm's `training/slurm.py`): wrapping that same
state, rather than calling `torch.distributed` beside it, gives both loops one launcher (the
environment `accelerate launch`/torchrun write), one process group per process, and one device
rule. `accelerator` stays reachable for what only the LM loop needs (`prepare`, `backward`,
`autocast`, `no_sync`, `clip_grad_norm_`).

A caller that joined a process group itself (a test under `torch.multiprocessing.spawn`, a
notebook) without describing it in the environment is adopted: its rank and size are written
where accelerate reads them. `end()` destroys only a group this run created.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda")


class DistributedConfigError(ValueError):
    """A `device` setting this machine cannot honour, with what to set instead."""


class Distributed:
    """One process's view of the run's processes (see the module docstring)."""

    def __init__(self, device: str = "auto", mixed_precision: str = "no") -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        device = str(device)
        if device not in DEVICES:
            raise DistributedConfigError(f"device={device!r} is not one of {', '.join(DEVICES)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise DistributedConfigError(
                "device=cuda but no CUDA device is visible; use device=cpu"
            )
        import torch.distributed as dist

        # a group joined before this run (by the caller, or adopted below) stays the caller's
        self.owns_group = not (dist.is_available() and dist.is_initialized())
        _adopt_existing_group()
        # accelerate keeps one process-wide state; reset its per-run part (precision, device
        # placement) so a second run in the same process can use other settings.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)

    # ------------------------------------------------------------------ who and where

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (it fills caches), then the others."""
        with self.accelerator.main_process_first():
            yield

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in one process)."""
        self.accelerator.wait_for_everyone()

    def sum(self, values: Iterable[Any]) -> list[float]:
        """`values` summed element-wise over the processes, as float64 Python floats."""
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.world > 1:
            import torch.distributed as dist

            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum every trainable parameter's gradient over the processes, in place.

        For a loss each process already divided by a global count (both loops do): the sum is
        then the one-process gradient. A parameter without a gradient joins with zeros, so a
        process with nothing to back-propagate never leaves the others waiting."""
        if self.world > 1:
            _all_reduce_gradients([p for p in params if p.requires_grad])

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average every trainable parameter's gradient over the processes, in place (for a
        loss each process divided by its own count)."""
        if self.world > 1:
            params = [p for p in params if p.requires_grad]
            _all_reduce_gradients(params)
            torch._foreach_div_([p.grad for p in params], float(self.world))

    def broadcast(self, values: list[Any]) -> list[Any]:
        """The main process's `values` (picklable) on every process."""
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(values)
        return values

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (picklable), in rank order, on every process."""
        from accelerate.utils import gather_object

        return list(gather_object([value]))

    def agreed_signal(self, signum: int | None) -> int | None:
        """The stop signal any process received (max over processes), else None: every process
        then stops after the same step."""
        signum = signum or 0
        if self.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([signum], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag[0])
        return signum or None

    # ------------------------------------------------------------------ teardown

    def end(self) -> None:
        """Destroy the process group this run created; an adopted one stays the caller's."""
        if not self.owns_group:
            return
        self.accelerator.end_training()


def _adopt_existing_group() -> None:
    """Describe an already joined process group in the environment accelerate reads (rank,
    world size) when nothing describes it yet."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or "WORLD_SIZE" in os.environ:
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world)
    )


def _all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of `params` over the processes, one flat buffer per dtype."""
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        parts = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [part.view_as(g) for part, g in zip(parts, grads)])


__all__ = ["DEVICES", "Distributed", "DistributedConfigError"]
