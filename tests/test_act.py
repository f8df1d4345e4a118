"""Training-mode ACT one segment at a time: same gradient as one graph, flat activation memory,
halted rows leaving the batch, halting targets, the Q head on lengths, and the prefill decision."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from test_model_hrm import VOCAB, tiny_config

from hrm_codegen.data.sft import SFTCollator
from hrm_codegen.model import HRMForCausalLM
from hrm_codegen.model.act import (
    ACTStats,
    act_segments,
    halt_target_exact,
    halt_target_loss_plateau,
)
from hrm_codegen.training.trainer import _with_lengths

REPO = Path(__file__).resolve().parents[1]


def act_model(max_steps: int = 3, seed: int = 0, **overrides) -> HRMForCausalLM:
    torch.manual_seed(seed)
    act = dict(enable_q_head=True, halt_max_steps=max_steps, halt_exploration_prob=0.0)
    return HRMForCausalLM(tiny_config(**{**act, **overrides})).train()


def mixed_halting_model(max_steps: int = 4, **overrides) -> HRMForCausalLM:
    """Q values that differ per row, so some rows halt early and others run on."""
    model = act_model(max_steps, **overrides)
    with torch.no_grad():
        torch.nn.init.normal_(model.q_head.weight, std=1.0)
        model.q_head.bias.copy_(torch.tensor([0.0, 0.3]))
    return model


def right_padded(lengths: list[int], width: int, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    items = []
    for n in lengths:
        ids = torch.randint(1, VOCAB, (n,), generator=generator)
        labels = torch.cat([torch.full((2,), -100), ids[3:], torch.tensor([5])])
        items.append({"input_ids": ids, "labels": labels})
    batch = SFTCollator(pad_id=0)(items)
    assert batch["input_ids"].shape[1] == width
    return batch


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


# ----------------------------------------------------------------------------- one segment at a time


def test_per_segment_backward_gives_the_one_graph_gradient_and_drops_halted_rows():
    model = mixed_halting_model()
    batch = _with_lengths(right_padded([9, 12, 7, 12, 10, 5], width=12))
    ids, labels, lengths = batch["input_ids"], batch["labels"], batch["lengths"]

    torch.manual_seed(3)
    out = model(ids, labels=labels, lengths=lengths)
    out.loss.backward()
    one_graph = grads(model)

    torch.manual_seed(3)
    stats = ACTStats(model.config.halt_max_steps, "cpu")
    rows_per_segment = []
    for segment in act_segments(model.config, model.act_segment, ids, labels, lengths):
        (segment.loss_sum / 42.0).backward()  # any known scale; the denominator comes at the end
        stats.add(segment)
        rows_per_segment.append(segment.rows.tolist())
    scale = 42.0 / stats.tokens.float()
    per_segment = {name: grad * scale for name, grad in grads(model).items()}

    # the halting really was mixed, and each segment ran only the rows still running
    sizes = [len(rows) for rows in rows_per_segment]
    assert sizes[0] == 6 and sizes[-1] < 6 and sizes == sorted(sizes, reverse=True)
    for earlier, later in zip(rows_per_segment, rows_per_segment[1:]):
        assert set(later) <= set(earlier)
    assert one_graph.keys() == per_segment.keys()
    assert "embed_tokens.weight" in one_graph and "q_head.weight" in one_graph
    for name, grad in one_graph.items():
        torch.testing.assert_close(per_segment[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    metrics = stats.metrics()
    assert metrics["loss"].item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert metrics["act_steps"].item() == pytest.approx(out.metrics["act_steps"].item())
    histogram = [metrics[f"act/steps_{k}"].item() for k in range(1, 5)]
    assert sum(histogram) == pytest.approx(1.0)
    assert sum(k * f for k, f in zip(range(1, 5), histogram)) == pytest.approx(
        metrics["act_steps"].item()
    )
    # the histogram says how many rows ran segment k: those that halted after k or later
    assert sizes == [round(6 * sum(histogram[k:])) for k in range(len(sizes))]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_act", REPO / "scripts" / "bench_act.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_saved_activations_stay_flat_in_halt_max_steps_one_segment_at_a_time():
    bench = load_bench()
    ids = torch.randint(0, 512, (2, 32))
    peaks = {}
    for steps in (2, 4, 8):
        model = bench.tiny_act_model(steps, hidden=32)
        peaks[steps] = (
            bench.peak_saved_bytes(model, ids, bench.one_graph),
            bench.peak_saved_bytes(model, ids, bench.per_segment),
        )
    one_graph = {k: v[0] for k, v in peaks.items()}
    per_segment = {k: v[1] for k, v in peaks.items()}
    assert one_graph[8] > 3.5 * one_graph[2]  # every segment's activations alive at once
    assert per_segment[8] <= 1.05 * per_segment[2]  # two segments' at most, whatever the steps
    assert per_segment[2] <= 1.05 * one_graph[2]


# ----------------------------------------------------------------------------- halting targets


def test_loss_plateau_target_says_halt_when_the_next_segment_gains_at_most_the_margin():
    now = torch.tensor([2.0, 2.0, 2.0, 0.5])
    following = torch.tensor([1.5, 1.995, 2.3, 0.5])
    target = halt_target_loss_plateau(now, following, margin=0.01)
    assert target.tolist() == [False, True, True, True]


def test_exact_target_needs_every_label_token_right_on_constructed_logits():
    labels = torch.tensor([[3, 1, -100], [2, 2, 0]])
    logits = torch.full((2, 3, 4), -1.0)
    logits[0, 0, 3] = logits[0, 1, 1] = 1.0  # row 0: both labels right (position 2 ignored)
    logits[1, 0, 2] = logits[1, 1, 2] = logits[1, 2, 1] = 1.0  # row 1: the last label wrong
    assert halt_target_exact(logits, labels).tolist() == [True, False]


def test_segment_losses_use_the_configured_halting_target():
    """With logits that stop improving, loss_plateau says halt where exact says continue."""
    for target, expected in (("loss_plateau", True), ("exact", False)):
        model = act_model(2, halt_target=target, halt_margin=1e9)  # any gain is "not enough"
        ids = torch.randint(1, VOCAB, (3, 10))
        segment = next(act_segments(model.config, model.act_segment, ids, ids))
        right = (segment.q_halt > 0) == expected  # q_halt starts at -5: "don't halt"
        assert segment.halt_right.item() == int(right.sum())


def test_halt_target_and_bp_steps_are_checked_in_the_config():
    with pytest.raises(ValueError, match="halt_target"):
        act_model(halt_target="sometimes")
    with pytest.raises(ValueError, match=r"bp_steps >= 2"):
        act_model(bp_steps=1)
    assert act_model().config.halt_target == "loss_plateau"


# ----------------------------------------------------------------------------- Q head on lengths


def test_q_head_on_lengths_equals_the_q_head_on_the_mask():
    model = mixed_halting_model().eval()
    batch = right_padded([9, 12, 4], width=12)
    with torch.no_grad():
        masked = model(batch["input_ids"], attention_mask=batch["attention_mask"])
        by_length = model(batch["input_ids"], lengths=_with_lengths(batch)["lengths"])
    torch.testing.assert_close(by_length.q_halt_logits, masked.q_halt_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        by_length.q_continue_logits, masked.q_continue_logits, atol=1e-5, rtol=0
    )


def test_training_batches_trade_the_mask_for_lengths_and_left_padding_is_refused():
    batch = _with_lengths(right_padded([9, 12, 4], width=12))
    assert "attention_mask" not in batch and batch["lengths"].tolist() == [9, 12, 4]
    packed = _with_lengths({"input_ids": torch.ones(2, 5, dtype=torch.long)})
    assert packed["lengths"].tolist() == [5, 5]
    left = right_padded([9, 12, 4], width=12)
    left["attention_mask"] = left["attention_mask"].flip(-1)
    with pytest.raises(ValueError, match="right-padded"):
        _with_lengths(left)


# ----------------------------------------------------------------------------- the prefill decision


def decoding_model(q_bias: list[float], max_steps: int = 3) -> HRMForCausalLM:
    model = act_model(max_steps).eval()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor(q_bias))
    return model


def test_prefill_decides_the_segments_and_the_cache_holds_only_those():
    ids = torch.randint(1, VOCAB, (2, 6))
    halting = decoding_model([5.0, -5.0])
    assert halting.prepare_for_decoding(ids) == 1
    assert halting.allocate_cache(2, 8).num_slots == halting.cache_slots_per_segment
    running = decoding_model([-5.0, 5.0])
    assert running.prepare_for_decoding(ids) == 3
    running.set_inference_schedule(segments=2)  # forced wins over the Q head
    assert running.prepare_for_decoding(ids) == 2
    halting.end_decoding()
    assert halting.num_segments_eval == 3


def test_a_prefill_group_runs_the_max_of_its_rows_decisions_and_decodes_like_the_full_forward():
    model = mixed_halting_model(max_steps=4).eval()
    prompts = torch.randint(1, VOCAB, (12, 7), generator=torch.Generator().manual_seed(0))
    alone = [model.prepare_for_decoding(prompts[i : i + 1]) for i in range(12)]
    assert len(set(alone)) > 1  # the rows really disagree
    chosen = model.prepare_for_decoding(prompts)
    assert chosen == max(alone)
    cache = model.allocate_cache(12, 10)
    assert cache.num_slots == chosen * model.cache_slots_per_segment
    with torch.no_grad():
        steps = [model(prompts[:, :4], cache=cache).logits[:, -1]]
        steps += [model(prompts[:, t : t + 1], cache=cache).logits[:, -1] for t in range(4, 7)]
        model.end_decoding()
        model.set_inference_schedule(segments=chosen)
        full = model(prompts).logits
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:], atol=1e-4, rtol=0)


def test_generation_forgets_the_decision_afterwards():
    from hrm_codegen.generation import generate_ids

    model = decoding_model([5.0, -5.0])
    out = generate_ids(model, [[1, 2, 3]], max_new_tokens=3)
    assert len(out[0][0]) == 3 and model.decode_segments is None
    model.prepare_for_decoding(torch.tensor([[1, 2]]))
    model.train()
    assert model.decode_segments is None
