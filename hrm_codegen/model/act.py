"""Adaptive computation (ACT) for the HRM, one segment at a time.

Training-mode ACT runs up to `halt_max_steps` segments per sequence. `act_segments` drives them: it
runs one segment on the rows still running, decides which rows halt (the Q head, with random
exploration), gathers the others into a smaller batch for the next segment, and yields each segment's
losses as soon as its Q targets are known. The caller may call `backward()` on every yielded segment
before asking for the next one: then at most two segments' graphs are alive at a time (the one being
yielded and the next, whose Q values are the bootstrapped targets), so activation memory does not
grow with `halt_max_steps`, and halted rows cost nothing. Collecting every segment first and
summing gives the same loss in one graph (that is what `HRMForCausalLM.forward` does in training
mode).

Loss weighting. Every (sequence, segment) pair that ran contributes its label tokens' losses, and its
Q losses weighted by its label-token count, all over one denominator: the label tokens summed over
the pairs that ran. So the LM loss is the token mean over running pairs (as for a model without
ACT), and the Q losses are the mean over running pairs whenever sequences have equal label counts
(packed pretraining). One denominator is what lets the trainer back-propagate each segment before
the denominator is known (it rescales the accumulated gradient once at the end of the step).

Each row halts once; for the rows halting after a segment, one gradient-free extra segment gives the
next-step Q values (and, for the `loss_plateau` target, the next-step loss). That is one extra
gradient-free segment per sequence, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from hrm_codegen.losses import IGNORE_INDEX, act_q_losses, q_continue_target, sequence_is_correct

HALT_TARGETS = ("loss_plateau", "exact")


@dataclass
class ACTSegmentOutput:
    """What `HRMForCausalLM.act_segment` returns for the b rows it ran."""

    logits: torch.Tensor | None  # [b, S, vocab] (None when run without the LM head)
    token_loss: torch.Tensor | None  # [b] float32: label-token loss summed per row (or None)
    q_halt: torch.Tensor  # [b] float32
    q_continue: torch.Tensor  # [b] float32
    z_H: torch.Tensor  # [b, S, hidden], detached: the carry into the next segment
    z_L: torch.Tensor

    def carry(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The detached (z_H, z_L) of the rows `index` (positions in this output)."""
        return self.z_H[index], self.z_L[index]


# segment_fn(input_ids, labels, lengths, carry, with_lm) -> ACTSegmentOutput
SegmentFn = Callable[..., ACTSegmentOutput]


@dataclass
class ACTSegment:
    """One segment's share of the training loss, ready to back-propagate.

    Sums, not means: divide `loss_sum` by the label tokens of every pair that ran (see the module
    docstring). `rows` are the micro-batch rows this segment ran, `halted` which of them stop here.
    """

    step: int  # 1-based segment number
    rows: torch.Tensor  # [b] long
    halted: torch.Tensor  # [b] bool
    logits: torch.Tensor | None  # [b, S, vocab]
    q_halt: torch.Tensor  # [b]
    q_continue: torch.Tensor  # [b]
    token_loss: torch.Tensor | None = None  # scalar: summed token loss of the b rows
    q_halt_loss: torch.Tensor | None = None  # scalar: sum over rows of label tokens x BCE
    q_continue_loss: torch.Tensor | None = None
    tokens: torch.Tensor | None = None  # scalar float: label tokens of the b rows
    halt_right: torch.Tensor | None = None  # scalar: rows whose q_halt > 0 matches the target

    @property
    def loss_sum(self) -> torch.Tensor:
        """token loss + 0.5 (q_halt + q_continue), summed (the model's loss times its denominator)."""
        if self.token_loss is None:
            raise ValueError("this ACT segment ran without labels: it has no loss")
        return self.token_loss + 0.5 * (self.q_halt_loss + self.q_continue_loss)


def halt_target_exact(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference target: halting is right when every label token's argmax is right.

    For programs of hundreds of tokens this is almost never true, so the Q head learns to never
    halt; kept as `halt_target: exact` for puzzle-like data and comparisons with the paper.
    """
    return sequence_is_correct(logits, labels)


def halt_target_loss_plateau(
    loss_now: torch.Tensor, loss_next: torch.Tensor, margin: float
) -> torch.Tensor:
    """Bool [b]: halting is right when one more segment lowers the mean token loss by <= margin.

    It states directly what halting should predict, "more compute does not help this sequence",
    and unlike exact correctness it carries information on long programs: the per-token loss moves
    by small amounts from segment to segment, and rows whose loss still falls learn to continue.
    Inputs are per-row mean label-token losses (nats) of this segment and the next.
    """
    return (loss_now - loss_next) <= margin


def _mean_loss(token_loss: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return token_loss.detach() / counts.clamp_min(1)


def act_segments(
    config,
    segment_fn: SegmentFn,
    input_ids: torch.Tensor,
    labels: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> Iterator[ACTSegment]:
    """Run training-mode ACT on one batch, yielding each segment's losses in order.

    `config` is the model's HRMConfig (halt_max_steps, halt_exploration_prob, halt_target,
    halt_margin); `segment_fn` is `model.act_segment` (or a compiled / autocast-wrapped version).
    Segment s is yielded after segment s+1 has run (its Q values are s's targets), so a caller that
    back-propagates each yielded segment holds at most two graphs. One host sync per segment
    (which rows continue decides the next batch's shape).
    """
    max_steps = int(config.halt_max_steps)
    device = input_ids.device
    rows = torch.arange(input_ids.shape[0], device=device)
    counts = None if labels is None else (labels != IGNORE_INDEX).sum(-1).float()

    def take(tensor: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
        return None if tensor is None else tensor[index]

    def run(index: torch.Tensor, carry, with_lm: bool = True) -> ACTSegmentOutput:
        return segment_fn(
            input_ids[index], take(labels, index), take(lengths, index), carry, with_lm
        )

    current, step = run(rows, None), 1
    while True:
        with torch.no_grad():  # the reference's halting rule: Q says halt after a random minimum
            n = rows.shape[0]
            explore = torch.rand(n, device=device) < config.halt_exploration_prob
            min_steps = torch.randint(2, max(max_steps, 2) + 1, (n,), device=device) * explore
            halted = (current.q_halt > current.q_continue) & (step >= min_steps)
            halted = halted | (step >= max_steps)
        halted_host = halted.cpu()
        go_on = (~halted_host).nonzero().squeeze(1).to(device)
        stop = halted_host.nonzero().squeeze(1).to(device)
        following = None
        if go_on.numel():
            following = run(rows[go_on], current.carry(go_on))
        segment = ACTSegment(step, rows, halted, current.logits, current.q_halt, current.q_continue)
        if labels is not None:
            _add_losses(config, segment, current, following, go_on, stop, run, labels, counts)
        yield segment
        if following is None:
            return
        current, rows, step = following, rows[go_on], step + 1


def _add_losses(
    config,
    segment: ACTSegment,
    current: ACTSegmentOutput,
    following: ACTSegmentOutput | None,
    go_on: torch.Tensor,
    stop: torch.Tensor,
    run: Callable[..., ACTSegmentOutput],
    labels: torch.Tensor,
    counts: torch.Tensor,
) -> None:
    """Fill in `segment`'s losses: LM, Q-halt (against the configured target), Q-continue
    (bootstrapped from the next segment's Q values)."""
    rows = segment.rows
    row_counts = counts[rows]
    plateau = config.halt_target == "loss_plateau"
    with torch.no_grad():
        next_q_halt = torch.empty_like(current.q_halt)
        next_q_cont = torch.empty_like(current.q_continue)
        next_loss = torch.empty_like(current.token_loss) if plateau else None
        if following is not None:
            next_q_halt[go_on] = following.q_halt.detach()
            next_q_cont[go_on] = following.q_continue.detach()
            if plateau:
                next_loss[go_on] = _mean_loss(following.token_loss, row_counts[go_on])
        if stop.numel():  # one gradient-free look ahead for the rows that stop here
            ahead = run(rows[stop], current.carry(stop), with_lm=plateau)
            next_q_halt[stop] = ahead.q_halt
            next_q_cont[stop] = ahead.q_continue
            if plateau:
                next_loss[stop] = _mean_loss(ahead.token_loss, row_counts[stop])
        if plateau:
            now = _mean_loss(current.token_loss, row_counts)
            halt_target = halt_target_loss_plateau(now, next_loss, float(config.halt_margin))
        else:
            halt_target = halt_target_exact(current.logits.detach(), labels[rows])
        is_last = torch.full_like(halt_target, segment.step >= int(config.halt_max_steps))
        cont_target = q_continue_target(next_q_halt, next_q_cont, is_last)
    q = act_q_losses(current.q_halt, current.q_continue, halt_target, cont_target, row_counts)
    tokens = row_counts.sum()
    segment.token_loss = current.token_loss.sum()
    segment.q_halt_loss = q["q_halt_loss"] * tokens  # act_q_losses returns weighted means
    segment.q_continue_loss = q["q_continue_loss"] * tokens
    segment.tokens = tokens
    segment.halt_right = ((current.q_halt.detach() > 0) == halt_target).sum()


class ACTStats:
    """Detached sums over segments (and micro-batches, and processes) for the logged metrics.

    `vector` is one float64 tensor on the device so a step reduces and reads it once:
    [token loss, q_halt loss, q_continue loss, label tokens, right halts, pairs, rows halted after
    1 .. halt_max_steps segments].
    """

    FIELDS = 6

    def __init__(self, max_steps: int, device: torch.device | str) -> None:
        self.max_steps = int(max_steps)
        self.vector = torch.zeros(self.FIELDS + self.max_steps, dtype=torch.float64, device=device)

    def add(self, segment: ACTSegment) -> None:
        v = self.vector
        if segment.token_loss is not None:
            v[0] += segment.token_loss.detach().double()
            v[1] += segment.q_halt_loss.detach().double()
            v[2] += segment.q_continue_loss.detach().double()
            v[3] += segment.tokens.double()
            v[4] += segment.halt_right.double()
            v[5] += segment.rows.shape[0]
        v[self.FIELDS + segment.step - 1] += segment.halted.sum().double()

    @property
    def tokens(self) -> torch.Tensor:
        """Label tokens summed over every (sequence, segment) pair: the loss denominator."""
        return self.vector[3]

    def metrics(
        self, vector: torch.Tensor | None = None, with_losses: bool = True
    ) -> dict[str, torch.Tensor]:
        """act_steps (mean), act/steps_k (the fraction of sequences that halted after k segments)
        and, `with_losses`, lm_loss, loss, the Q losses and accuracy, as 0-dim tensors."""
        v = self.vector if vector is None else vector
        tokens = v[3].clamp_min(1)
        hist = v[self.FIELDS :]
        sequences = hist.sum().clamp_min(1)
        out = {
            "act_steps": (hist * torch.arange(1, self.max_steps + 1, device=v.device)).sum()
            / sequences
        }
        out.update({f"act/steps_{k + 1}": hist[k] / sequences for k in range(self.max_steps)})
        if with_losses:
            out["lm_loss"] = v[0] / tokens
            out["q_halt_loss"] = v[1] / tokens
            out["q_continue_loss"] = v[2] / tokens
            out["loss"] = out["lm_loss"] + 0.5 * (out["q_halt_loss"] + out["q_continue_loss"])
            out["q_halt_accuracy"] = v[4] / v[5].clamp_min(1)
        return out
