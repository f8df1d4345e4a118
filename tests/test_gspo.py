"""GSPO objective on hand-made log-probabilities, and rewards from the real sandbox."""

from __future__ import annotations

import math

import pytest
import torch

from hrm_codegen.data import load_benchmark
from hrm_codegen.rl.gspo import (
    group_advantages,
    groups_with_signal,
    grpo_objective,
    gspo_objective,
    k3_kl,
    sequence_log_ratio,
    token_log_probs,
)
from hrm_codegen.rl.rewards import PARTIAL_CREDIT_CAP, RewardConfig, compute_rewards


def test_advantages_are_group_normalised_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    adv = group_advantages(rewards)
    # group 0: mean 0.5, population std 0.5 -> +-1
    assert adv[0].tolist() == pytest.approx([1.0, -1.0, -1.0, 1.0])
    # group 1: mean 0.25, std sqrt(0.1875)
    std = math.sqrt(0.1875)
    assert adv[1].tolist() == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std])
    assert adv[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # identical rewards: exactly zero
    assert groups_with_signal(rewards).tolist() == [True, True, False]


def test_sequence_ratio_is_the_exp_of_the_masked_token_mean():
    logp_new = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    logp_old = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -0.3, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 1's last token is padding
    log_ratio = sequence_log_ratio(logp_new, logp_old, mask)
    assert log_ratio.tolist() == pytest.approx([(0.5 + 0.0 - 1.0) / 3, (0.5 - 0.2) / 2])
    out = gspo_objective(logp_new, logp_old, torch.tensor([1.0, -1.0]), mask)
    assert out.ratio.tolist() == pytest.approx(torch.exp(log_ratio).tolist())


def test_clipping_mask_and_loss_by_hand():
    # Four one-token sequences with log-ratios chosen around the clip range [1 - 0.1, 1 + 0.2].
    log_ratios = torch.tensor([math.log(1.5), math.log(1.5), math.log(0.5), math.log(1.05)])
    advantages = torch.tensor([1.0, -1.0, -2.0, 1.0])
    logp_old = torch.zeros(4, 1)
    logp_new = log_ratios.view(4, 1).clone().requires_grad_(True)
    out = gspo_objective(
        logp_new, logp_old, advantages, torch.ones(4, 1), eps_low=0.1, eps_high=0.2
    )
    # A>0 & s>1.2 clipped; A<0 & s>1.2 not (min keeps s*A); A<0 & s<0.9 clipped; inside: not.
    assert out.clipped.tolist() == [True, False, True, False]
    terms = [min(1.5 * 1, 1.2 * 1), min(1.5 * -1, 1.2 * -1), min(0.5 * -2, 0.9 * -2), 1.05]
    assert float(out.loss.detach()) == pytest.approx(-sum(terms) / 4)
    out.loss.backward()
    # Clipped sequences get no gradient; the others get -A * s / N.
    expected = [0.0, 1.5 / 4, 0.0, -1.05 / 4]
    assert logp_new.grad.flatten().tolist() == pytest.approx(expected)


def test_default_clip_range_is_the_papers():
    logp = torch.zeros(1, 2)
    out = gspo_objective(logp + 3.5e-4, logp, torch.tensor([1.0]), torch.ones(1, 2))
    assert not out.clipped.any()  # 1.00035 < 1 + 4e-4
    out = gspo_objective(logp + 4.5e-4, logp, torch.tensor([1.0]), torch.ones(1, 2))
    assert out.clipped.all()
    out = gspo_objective(logp - 3.5e-4, logp, torch.tensor([-1.0]), torch.ones(1, 2))
    assert out.clipped.all()  # below 1 - 3e-4 with a negative advantage


def _policy_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return token_log_probs(logits, tokens)


def test_on_policy_gspo_gradient_equals_grpo_with_sequence_mean_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 11, generator=generator, requires_grad=True)
    tokens = torch.randint(11, (6, 5), generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]] * 2).float()
    rewards = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    advantages = group_advantages(rewards).flatten()
    grads = []
    for objective in (gspo_objective, grpo_objective):
        logp = _policy_log_probs(logits, tokens)
        loss = objective(logp, logp.detach(), advantages, mask).loss
        (grad,) = torch.autograd.grad(loss, logits)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
    # ... and both are -mean_i A_i mean_t grad log p (the REINFORCE form).
    logp = _policy_log_probs(logits, tokens)
    reinforce = -((logp * mask).sum(1) / mask.sum(1) * advantages).mean()
    (expected,) = torch.autograd.grad(reinforce, logits)
    torch.testing.assert_close(grads[0], expected, atol=1e-6, rtol=1e-5)


def test_off_policy_gspo_and_grpo_differ():
    """Sanity check of the test above: once the ratio moves, the two objectives part ways."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=generator, requires_grad=True)
    tokens = torch.randint(7, (2, 4), generator=generator)
    old = _policy_log_probs(logits, tokens).detach() + torch.randn(2, 4, generator=generator)
    grads = []
    for objective in (gspo_objective, grpo_objective):
        logp = _policy_log_probs(logits, tokens)
        loss = objective(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 4)).loss
        grads.append(torch.autograd.grad(loss, logits)[0])
    assert not torch.allclose(grads[0], grads[1], atol=1e-4)


def test_groups_with_identical_rewards_contribute_no_gradient():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, 9, generator=generator, requires_grad=True)
    tokens = torch.randint(9, (4, 3), generator=generator)
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # group 1 (rows 2, 3) has no signal
    advantages = group_advantages(rewards).flatten()
    logp = _policy_log_probs(logits, tokens)
    old = logp.detach() + 1e-5 * torch.randn(4, 3, generator=generator)  # inside the clip range
    loss = gspo_objective(logp, old, advantages, torch.ones(4, 3), beta=0.0).loss
    loss.backward()
    assert logits.grad[2:].abs().max() == 0
    assert logits.grad[:2].abs().max() > 0


def test_kl_to_the_reference_is_k3_and_adds_beta_times_it():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    mask = torch.ones(1, 2)
    d = ref - logp
    expected = float((torch.exp(d) - d - 1).mean())
    assert float(k3_kl(logp, ref, mask)) == pytest.approx(expected)
    base = gspo_objective(logp, logp, torch.tensor([0.0]), mask)
    with_kl = gspo_objective(logp, logp, torch.tensor([0.0]), mask, logp_ref=ref, beta=0.5)
    assert float(with_kl.loss - base.loss) == pytest.approx(0.5 * expected)
    assert float(with_kl.kl[0]) == pytest.approx(expected)


def test_normalizer_gives_the_global_mean_when_ranks_sum():
    logp = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    full = gspo_objective(logp, logp, adv, torch.ones(4, 3)).loss
    halves = [
        gspo_objective(
            logp[i : i + 2], logp[i : i + 2], adv[i : i + 2], torch.ones(2, 3), normalizer=4
        )
        for i in (0, 2)
    ]
    assert float(halves[0].loss + halves[1].loss) == pytest.approx(float(full))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        gspo_objective(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="advantages"):
        gspo_objective(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="num_groups"):
        group_advantages(torch.zeros(4))


# ------------------------------------------------------------------------------ rewards


def test_rewards_come_from_the_sandbox_verdict():
    task = load_benchmark("toy", "train")[0]  # plus_2
    right = task.reference_solution
    wrong = right.replace("+ 2", "+ 3")
    cheat = "import sys\nsys.exit(0)\n"  # exits 0 before the tests: the sentinel is never printed
    broken = "def plus_2(x:\n"
    rewards = compute_rewards([task] * 4, [right, wrong, cheat, broken], RewardConfig())
    assert [r.value for r in rewards] == [1.0, 0.0, 0.0, 0.0]
    assert [r.passed for r in rewards] == [True, False, False, False]
    assert [r.malformed for r in rewards] == [False, False, False, True]


def test_partial_credit_counts_asserts_one_at_a_time_and_format_penalty():
    task = load_benchmark("toy", "train")[0]  # plus_2: asserts at x = 1, 4, 10
    one_right = "def plus_2(x):\n    return 3 if x == 1 else 0\n"
    config = RewardConfig(partial_credit=True, format_penalty=0.25)
    rewards = compute_rewards(
        [task] * 3,
        [task.reference_solution, one_right, "def plus_2(x:\n"],
        config,
        truncated=[False, False, False],
    )
    assert rewards[0].value == 1.0 and rewards[0].assert_fraction is None
    assert rewards[1].value == pytest.approx(1 / 3) and not rewards[1].passed
    assert rewards[2].value == pytest.approx(-0.25) and rewards[2].malformed
    capped = compute_rewards(
        [task],
        ["def plus_2(x):\n    return x + 2\nplus_2 = lambda x, _n=[0]: x + 2\n"],
        config,
        truncated=[True],
    )
    # passes, but truncated: full reward minus the penalty
    assert capped[0].passed and capped[0].value == pytest.approx(0.75)
    assert PARTIAL_CREDIT_CAP < 1.0
