"""Chunked cross-entropies: the same values and gradients as the plain formulas, any chunking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrm_codegen.losses import IGNORE_INDEX, softmax_cross_entropy, stablemax_cross_entropy


def reference_softmax(logits, labels, reduction):
    """The unchunked definition: F.cross_entropy on a float64 copy of all logits."""
    valid = labels != IGNORE_INDEX
    per_token = F.cross_entropy(
        logits.double().flatten(0, -2), labels.masked_fill(~valid, 0).flatten(), reduction="none"
    ).view(labels.shape)
    return _reduce(per_token * valid, valid, reduction)


def reference_stablemax(logits, labels, reduction):
    valid = labels != IGNORE_INDEX
    x = logits.double()
    s = torch.where(x < 0, 1.0 / (1.0 - x.clamp_max(0)), x + 1.0)
    log_probs = s.log() - s.sum(-1, keepdim=True).log()
    per_token = -log_probs.gather(-1, labels.masked_fill(~valid, 0).unsqueeze(-1)).squeeze(-1)
    return _reduce(per_token * valid, valid, reduction)


def _reduce(per_token, valid, reduction):
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    return per_token.sum() / valid.sum().clamp_min(1)


LOSSES = [
    (softmax_cross_entropy, reference_softmax),
    (stablemax_cross_entropy, reference_stablemax),
]


def _inputs(shape, vocab, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(*shape, vocab, generator=generator)).to(dtype)
    labels = torch.randint(vocab, shape, generator=generator)
    labels[torch.rand(shape, generator=generator) < 0.3] = IGNORE_INDEX
    return logits, labels


@pytest.mark.parametrize("loss, reference", LOSSES, ids=["softmax", "stablemax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_chunked_loss_matches_the_unchunked_definition_values_and_gradients(
    loss, reference, dtype, reduction
):
    logits, labels = _inputs((3, 7), 37, dtype)  # 21 rows: chunks of 4 leave a ragged last one
    weights = torch.randn(3, 7, dtype=torch.float64)  # a non-uniform upstream gradient for "none"
    results = {}
    for name, fn in [
        ("chunk4", lambda x: loss(x, labels, reduction=reduction, chunk_rows=4)),
        ("chunk1", lambda x: loss(x, labels, reduction=reduction, chunk_rows=1)),
        ("default", lambda x: loss(x, labels, reduction=reduction)),
        ("reference", lambda x: reference(x, labels, reduction)),
    ]:
        x = logits.clone().requires_grad_(True)
        value = fn(x)
        (value.double() * weights if reduction == "none" else value.double()).sum().backward()
        results[name] = (value.detach().double(), x.grad)
    ref_value, ref_grad = results.pop("reference")
    for name, (value, grad) in results.items():
        assert value.dtype == torch.float64  # (cast above) the loss itself is float32
        torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-5, msg=name)
        assert grad.dtype == dtype  # the gradient has the logits' dtype: no wide copy kept
        tol = dict(rtol=1e-2, atol=1e-3) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad.double(), ref_grad.double(), **tol, msg=name)
    ignored = labels == IGNORE_INDEX
    assert torch.all(results["chunk4"][1][ignored] == 0)  # ignored tokens get no gradient


@pytest.mark.parametrize("loss", [softmax_cross_entropy, stablemax_cross_entropy])
def test_loss_is_float32_for_bf16_logits_and_works_without_grad(loss):
    logits, labels = _inputs((2, 5), 11, torch.bfloat16)
    value = loss(logits, labels)
    assert value.dtype == torch.float32 and value.ndim == 0
    with torch.inference_mode():
        assert torch.equal(loss(logits, labels), value)
    assert loss(logits, torch.full_like(labels, IGNORE_INDEX)).item() == 0.0


def test_stablemax_gradient_at_the_branch_point_matches_its_right_derivative():
    logits = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([1]), chunk_rows=1).backward()
    # s = (1, 1, 1): d/dx_j = 1/3 for j != label, 1/3 - 1 at the label
    torch.testing.assert_close(logits.grad, torch.tensor([[1 / 3, -2 / 3, 1 / 3]]).double())


def test_the_backward_keeps_no_float32_copy_of_the_logits():
    """What autograd saves for the backward: the bf16 logits and per-row scalars, nothing wide."""
    logits, labels = _inputs((4, 8), 64, torch.bfloat16)
    logits.requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        softmax_cross_entropy(logits, labels, chunk_rows=8).backward()
    wide = [t for t in saved if t.dtype != torch.bfloat16 and t.numel() >= logits.numel()]
    assert not wide, [(t.dtype, tuple(t.shape)) for t in wide]
    assert logits.grad is not None and logits.grad.dtype == torch.bfloat16
