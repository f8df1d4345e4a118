"""Losses: cross-entropies against hand-computed values, and the ACT Q losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from hrm_codegen.losses import (
    act_q_losses,
    log_stablemax,
    q_continue_target,
    sequence_is_correct,
    softmax_cross_entropy,
    stablemax_cross_entropy,
    token_cross_entropy,
)


def test_softmax_cross_entropy_matches_hand_computation_and_ignores_minus_100():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[0, 2, -100]])
    first = -(2.0 - math.log(math.exp(2.0) + 1.0 + math.exp(-1.0)))
    second = math.log(3.0)
    assert softmax_cross_entropy(logits, labels).item() == pytest.approx((first + second) / 2)
    per_token = softmax_cross_entropy(logits, labels, reduction="none")
    assert per_token.shape == (1, 3) and per_token[0, 2] == 0
    assert softmax_cross_entropy(logits, labels, reduction="sum").item() == pytest.approx(
        first + second
    )


def test_softmax_cross_entropy_is_float32_on_bf16_logits_and_zero_without_labels():
    logits = torch.randn(2, 5, 11).bfloat16()
    labels = torch.randint(0, 11, (2, 5))
    loss = softmax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert softmax_cross_entropy(logits, torch.full((2, 5), -100)).item() == 0.0


def test_misaligned_labels_are_rejected():
    with pytest.raises(ValueError, match="aligned"):
        softmax_cross_entropy(torch.randn(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


def test_stablemax_matches_its_definition():
    # s(0) = 1, s(1) = 2, s(-1) = 1/2: probabilities 1/3.5, 2/3.5, 0.5/3.5
    logits = torch.tensor([[[0.0, 1.0, -1.0]]])
    assert torch.allclose(
        log_stablemax(logits), torch.log(torch.tensor([1.0, 2.0, 0.5]) / 3.5), atol=1e-7
    )
    loss = stablemax_cross_entropy(logits, torch.tensor([[1]]))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-math.log(2.0 / 3.5), rel=1e-6)
    assert token_cross_entropy("stablemax", logits, torch.tensor([[1]])).item() == loss.item()


def test_stablemax_gradients_are_finite_at_the_branch_point():
    logits = torch.tensor([[[1.0, 0.0, -3.0, 1.0]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[2]])).backward()
    assert torch.isfinite(logits.grad).all()


def test_unknown_loss_kind_is_rejected():
    with pytest.raises(ValueError, match="softmax"):
        token_cross_entropy("focal", torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))


def test_sequence_is_correct_needs_every_label_token_right():
    logits = torch.zeros(3, 2, 4)
    logits[:, 0, 1] = 1.0  # predicts 1 at t=0
    logits[:, 1, 3] = 1.0  # predicts 3 at t=1
    labels = torch.tensor([[1, 3], [1, 2], [-100, 3]])
    assert sequence_is_correct(logits, labels).tolist() == [True, False, True]


def test_act_q_losses_are_weighted_binary_cross_entropies():
    q_halt = torch.tensor([0.5, -1.0, 2.0])
    q_cont = torch.tensor([0.0, 1.0, -2.0])
    correct = torch.tensor([True, False, True])
    target = torch.tensor([0.25, 0.75, 0.5])
    weight = torch.tensor([1.0, 1.0, 0.0])
    losses = act_q_losses(q_halt, q_cont, correct, target, weight)
    expected_halt = (
        F.binary_cross_entropy_with_logits(q_halt[:2], correct[:2].float(), reduction="sum") / 2
    )
    expected_cont = F.binary_cross_entropy_with_logits(q_cont[:2], target[:2], reduction="sum") / 2
    assert losses["q_halt_loss"].item() == pytest.approx(expected_halt.item())
    assert losses["q_continue_loss"].item() == pytest.approx(expected_cont.item())
    assert set(act_q_losses(q_halt, None, correct)) == {"q_halt_loss"}


def test_q_continue_target_bootstraps_from_the_next_step():
    next_halt = torch.tensor([1.0, -2.0, 0.0])
    next_cont = torch.tensor([3.0, -1.0, 5.0])
    is_last = torch.tensor([False, False, True])
    target = q_continue_target(next_halt, next_cont, is_last)
    expected = torch.sigmoid(torch.tensor([3.0, -1.0, 0.0]))
    assert torch.allclose(target, expected)
