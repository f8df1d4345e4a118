"""The FLOP model for transformers' HRM-Text and Llama against block applications counted with
hooks during a real forward + backward (gradient routing through the last L_bp_cycles L steps of
each H cycle, and its warm-up)."""

from __future__ import annotations

import pytest
import torch

from hrm_codegen.model.flops import hrm_text_backward_applications
from hrm_codegen.model.hf_models import build_hf_model
from hrm_codegen.training.flops import flops_count

VOCAB = 53
SIZES = dict(hidden_size=32, num_heads=2, expansion=2.0, max_seq_len=32)


def _model(model_type: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = {"type": model_type, **SIZES, **fields}
    return build_hf_model(cfg, VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0).train()


def _count_block_applications(model: torch.nn.Module) -> tuple[int, int]:
    """(forward, backward) calls of every decoder layer during one training forward + backward."""
    from transformers.models.hrm_text.modeling_hrm_text import HrmTextDecoderLayer
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    calls = {"forward": 0, "backward": 0}

    def on_forward(module, args, output):
        calls["forward"] += 1

    def on_backward(module, grad_input, grad_output):
        calls["backward"] += 1

    layers = [m for m in model.modules() if isinstance(m, (HrmTextDecoderLayer, LlamaDecoderLayer))]
    handles = [layer.register_forward_hook(on_forward) for layer in layers]
    handles += [layer.register_full_backward_hook(on_backward) for layer in layers]
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    labels = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1)
    model(ids, labels=labels).loss.backward()
    for handle in handles:
        handle.remove()
    return calls["forward"], calls["backward"]


@pytest.mark.parametrize(
    "layers, h_cycles, l_cycles, l_bp_cycles",
    [(1, 2, 2, 1), (1, 2, 3, 2), (2, 2, 3, [3, 2]), (1, 3, 4, [2, 4])],
)
def test_hrm_text_counts_match_hooked_block_applications(layers, h_cycles, l_cycles, l_bp_cycles):
    model = _model(
        "hrm_text", H_layers=layers, L_layers=layers, H_cycles=h_cycles, L_cycles=l_cycles,
        L_bp_cycles=l_bp_cycles,
    )  # fmt: skip
    count = flops_count(model)
    forward, backward = _count_block_applications(model)
    assert count.forward_blocks == forward == h_cycles * (l_cycles + 1) * layers
    assert count.backward_blocks == backward
    raw = [l_bp_cycles] if isinstance(l_bp_cycles, int) else l_bp_cycles
    assert backward == layers * sum(hrm_text_backward_applications(h_cycles, raw))
    layer = model.hf.model.H_module.layers[0]
    assert count.block_params == sum(p.numel() for p in layer.parameters())
    body = model.num_parameters(exclude_embeddings=True) - 32  # less the frozen z_L_init
    assert body == 2 * layers * count.block_params
    seq, head = 9, 32 * VOCAB
    expected = (2 * count.block_params + 4 * seq * 32) * forward + 2 * head
    expected += (4 * count.block_params + 8 * seq * 32) * backward + 4 * head
    assert count.training_flops_per_token(seq) == pytest.approx(expected)


def test_warmed_up_gradient_schedule_is_counted_where_training_is_and_on_average():
    model = _model(
        "hrm_text", H_layers=1, L_layers=1, H_cycles=2, L_cycles=5, L_bp_cycles=2,
        L_bp_warmup_to=5, L_bp_warmup_fraction=0.5,
    )  # fmt: skip
    seen = {}
    for progress in (0.0, 0.2, 0.3, 0.45, 1.0):
        last = model.set_training_progress(progress)
        _, backward = _count_block_applications(model)
        assert flops_count(model, progress=progress).backward_blocks == backward
        seen[progress] = (last, backward)
    # the first cycle always routes through one L step (+ H); the last through `last` (+ H)
    assert seen == {0.0: (2, 5), 0.2: (3, 6), 0.3: (4, 7), 0.45: (5, 8), 1.0: (5, 8)}
    # the budget estimate: 2, 3, 4, 5 for an eighth of training each, then 5
    mean = (5 + 6 + 7 + 8) / 8 + 8 * 0.5
    assert flops_count(model).backward_blocks == pytest.approx(mean)


def test_llama_counts_match_hooked_block_applications():
    model = _model("llama", n_layers=3)
    count = flops_count(model)
    counted = _count_block_applications(model)
    assert (count.forward_blocks, count.backward_blocks) == counted == (3, 3)
    body = model.num_parameters(exclude_embeddings=True) - 32  # less the final norm
    assert body == 3 * count.block_params
