"""TransformerForCausalLM: reference sizes, causality, padding and KV-cached decoding."""

import pytest
import torch

from hrm_codegen.model import TransformerConfig, TransformerForCausalLM
from hrm_codegen.model.layers import Block

VOCAB = 53


def tiny_model(seed: int = 0, **overrides) -> TransformerForCausalLM:
    torch.manual_seed(seed)
    settings = dict(
        vocab_size=VOCAB, max_seq_len=128, hidden_size=32, num_heads=4, expansion=2.0, n_layers=3
    )
    return TransformerForCausalLM(TransformerConfig(**{**settings, **overrides})).eval()


def test_reference_configs_match_the_hrm_in_parameters_and_compute():
    param = TransformerConfig.param_matched(50257)
    compute = TransformerConfig.compute_matched(50257)
    assert (param.n_layers, compute.n_layers) == (8, 24)
    assert param.vocab_size == compute.vocab_size == 50257
    # the same block as the HRM's, so 8 of them have the HRM's 27.3M reasoning parameters
    block = Block(hidden_size=512, num_heads=8, expansion=4.0)
    assert 8 * sum(p.numel() for p in block.parameters()) == 27_262_976
    small = TransformerForCausalLM(
        TransformerConfig.param_matched(100, hidden_size=64, num_heads=4)
    )
    assert small.num_parameters() - small.num_parameters(exclude_embeddings=True) == 2 * 100 * 64
    assert len(small.layers) == 8


def test_forward_and_loss():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 9))
    labels = torch.full_like(ids, -100)
    labels[:, 4:] = ids[:, 4:]
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, 9, VOCAB)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, 4:].flatten(0, 1), ids[:, 4:].flatten()
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_future_tokens_never_change_earlier_logits():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 20))
    changed = ids.clone()
    changed[:, 15] = (changed[:, 15] + 3) % VOCAB
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    assert torch.equal(before[:, :15], after[:, :15])
    assert not torch.allclose(before[:, 15:], after[:, 15:])


def test_prefill_plus_64_decode_steps_equals_the_full_forward():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (3, 16 + 64))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.allocate_cache(3, 80)
        chunks = [model(ids[:, :16], cache=cache).logits]
        chunks += [model(ids[:, t : t + 1], cache=cache).logits for t in range(16, 80)]
    assert cache.num_slots == 3 and cache.seq_len == 80
    assert (full - torch.cat(chunks, dim=1)).abs().max().item() <= 1e-4


def test_multi_token_chunks_after_a_prefill_are_causal():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (1, 30))
    with torch.no_grad():
        cache = model.allocate_cache(1, 30)
        chunks = [model(ids[:, a:b], cache=cache).logits for a, b in [(0, 10), (10, 22), (22, 30)]]
        full = model(ids).logits
    assert (full - torch.cat(chunks, dim=1)).abs().max().item() <= 1e-4


def test_left_padded_rows_match_the_unpadded_row():
    model = tiny_model()
    row = torch.randint(1, VOCAB, (5,))
    ids = torch.stack(
        [torch.randint(1, VOCAB, (8,)), torch.cat([torch.zeros(3, dtype=torch.long), row])]
    )
    mask = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    with torch.no_grad():
        batch = model(ids, attention_mask=mask).logits
        alone = model(row[None]).logits
    assert torch.isfinite(batch).all()
    assert (batch[1, 3:] - alone[0]).abs().max().item() <= 1e-5


def test_grouped_query_attention_decodes_consistently():
    model = tiny_model(num_key_value_heads=2)
    assert model.layers[0].self_attn.qkv_proj.out_features == (4 + 2 * 2) * 8
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        cache = model.allocate_cache(2, 12)
        assert cache.keys.shape[2] == 2
        chunks = [model(ids[:, :5], cache=cache).logits]
        chunks += [model(ids[:, t : t + 1], cache=cache).logits for t in range(5, 12)]
        full = model(ids).logits
    assert (full - torch.cat(chunks, dim=1)).abs().max().item() <= 1e-4


def test_bad_config_names_the_problem():
    with pytest.raises(ValueError, match="n_layers"):
        TransformerConfig(vocab_size=10, n_layers=0)
    with pytest.raises(ValueError, match="divisible"):
        tiny_model(num_heads=5)
    with pytest.raises(ValueError, match="attn_impl"):
        TransformerConfig(vocab_size=10, attn_impl="xformers")
