"""Peak saved-activation bytes of training-mode ACT against halt_max_steps.

Two ways to train one batch with ACT: `one-graph` runs every segment in one forward
(`model(**batch).loss.backward()`, how training ran before), `per-segment` back-propagates each
segment as soon as its Q targets are known (what the trainer does, model/act.py). Every sequence is
made to run all halt_max_steps segments (the Q head prefers "continue"), the worst case.

The meter counts what autograd saves for backward (saved-tensor hooks, storages counted once,
parameters left out) and records the peak of what is alive at once; it is device independent and
deterministic. On CUDA, `--device cuda` also prints torch.cuda.max_memory_allocated.

    python scripts/bench_act.py                     # steps 1,2,4,8 on a small HRM, CPU
    python scripts/bench_act.py --device cuda --hidden 512 --seq 1024 --batch 8
"""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Callable

import torch

from hrm_codegen.model import HRMConfig, HRMForCausalLM
from hrm_codegen.model.act import act_segments


class SavedTensorMeter:
    """Live and peak bytes of the tensors autograd saves for backward (activations only)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.live: dict[int, list[int]] = {}  # storage pointer -> [bytes, references]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def pack(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.skip or storage.nbytes() == 0:
            return tensor
        entry = self.live.setdefault(key, [storage.nbytes(), 0])
        if entry[1] == 0:
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        box = _Box(tensor)
        weakref.finalize(box, self._release, key)  # runs when autograd frees the saved tensor
        return box

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Box) else packed

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Box:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def tiny_act_model(
    halt_max_steps: int, hidden: int = 64, vocab: int = 512, seed: int = 0
) -> HRMForCausalLM:
    """A small ACT HRM whose Q head always prefers to continue (every segment runs)."""
    torch.manual_seed(seed)
    config = HRMConfig(
        vocab_size=vocab,
        max_seq_len=4096,
        hidden_size=hidden,
        num_heads=max(1, hidden // 64) * 2,
        expansion=2.0,
        H_layers=1,
        L_layers=1,
        enable_q_head=True,
        halt_max_steps=halt_max_steps,
        halt_exploration_prob=0.0,
    )
    model = HRMForCausalLM(config).train()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([-5.0, 5.0]))
    return model


def one_graph(model: HRMForCausalLM, ids: torch.Tensor) -> None:
    model(ids, labels=ids).loss.backward()


def per_segment(model: HRMForCausalLM, ids: torch.Tensor) -> None:
    tokens = float(ids.numel())
    for segment in act_segments(model.config, model.act_segment, ids, ids):
        (segment.loss_sum / tokens).backward()


def peak_saved_bytes(
    model: HRMForCausalLM, ids: torch.Tensor, train: Callable[[HRMForCausalLM, torch.Tensor], None]
) -> int:
    """Peak bytes of saved activations alive at once while `train` runs forward and backward."""
    meter = SavedTensorMeter(model)
    with meter.hooks():
        train(model, ids)
    model.zero_grad(set_to_none=True)
    return meter.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{'halt_max_steps':>14} {'one-graph MiB':>14} {'per-segment MiB':>16}", end="")
    print(f" {'cuda one-graph':>15} {'cuda per-seg':>13}" if device.type == "cuda" else "")
    for steps in (int(s) for s in args.steps.split(",")):
        model = tiny_act_model(steps, args.hidden, args.vocab).to(device)
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
        row = f"{steps:>14}"
        cuda = ""
        for train in (one_graph, per_segment):
            row += f" {peak_saved_bytes(model, ids, train) / 2**20:>{14 + 2 * (train is per_segment)}.2f}"
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                train(model, ids)
                model.zero_grad(set_to_none=True)
                cuda += f" {(torch.cuda.max_memory_allocated(device) - base) / 2**20:>14.1f}M"
        print(row + cuda)


if __name__ == "__main__":
    main()
