"""Transformer baseline built from the HRM's own block, embedding and head.

Two reference depths: 8 layers matches the HRM's parameter count (4 H + 4 L layers), 24 layers
matches its forward compute (2 H cycles x (2 L cycles x 4 layers + 4 layers) = 24 block applications).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrm_codegen.losses import LOSS_TYPES, token_cross_entropy
from hrm_codegen.model.checkpoint import PretrainedModel
from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.layers import (
    ATTN_IMPLS,
    Block,
    CausalLMOutput,
    RotaryEmbedding,
    ScaledEmbedding,
    make_linear,
    prepare_attention_inputs,
)


@dataclass
class TransformerConfig:
    vocab_size: int
    max_seq_len: int = 2048
    hidden_size: int = 512
    num_heads: int = 8
    num_key_value_heads: int | None = None
    expansion: float = 4.0
    n_layers: int = 8
    causal: bool = True
    prefix_lm: bool = False  # token_type_ids == 1 (prompt): bidirectional; see layers.py
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    loss: str = "softmax"
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ["vocab_size", "max_seq_len", "hidden_size", "num_heads", "n_layers"]:
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TransformerConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"TransformerConfig.loss={self.loss!r} is not one of {LOSS_TYPES}")
        if self.prefix_lm and not self.causal:
            raise ValueError(
                "TransformerConfig.prefix_lm=True needs causal=True (PrefixLM makes only the prompt "
                "bidirectional; causal=False already makes everything bidirectional)"
            )
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(
                f"TransformerConfig.attn_impl={self.attn_impl!r} is not one of {ATTN_IMPLS}"
            )

    @classmethod
    def param_matched(cls, vocab_size: int, **overrides) -> TransformerConfig:
        """8 layers: the same parameter count as the reference HRM (4 H + 4 L layers)."""
        return cls(vocab_size=vocab_size, **{"n_layers": 8, **overrides})

    @classmethod
    def compute_matched(cls, vocab_size: int, **overrides) -> TransformerConfig:
        """24 layers: the same number of block applications per forward as the reference HRM."""
        return cls(vocab_size=vocab_size, **{"n_layers": 24, **overrides})


class TransformerForCausalLM(PretrainedModel):
    model_type = "transformer"
    config_class = TransformerConfig
    recurrent = False  # no cycles to schedule

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = ScaledEmbedding(config.vocab_size, config.hidden_size)
        self.rotary_emb = RotaryEmbedding(config.hidden_size // config.num_heads, config.rope_theta)
        self.layers = nn.ModuleList(
            Block(
                config.hidden_size,
                config.num_heads,
                config.expansion,
                config.num_key_value_heads,
                config.rms_norm_eps,
                config.attn_impl,
            )
            for _ in range(config.n_layers)
        )
        self.lm_head = make_linear(config.hidden_size, config.vocab_size)

    def allocate_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """One slot per layer."""
        return KVCache.for_model(
            len(self.layers),
            self.layers[0].self_attn,
            self.lm_head.weight,
            batch_size,
            max_len,
            device,
            dtype,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """See docs/DESIGN.md; `logits_to_keep` as in HRMForCausalLM.forward. `token_type_ids`
        [B, S] (1 = prompt) only with `config.prefix_lm`."""
        c = self.config
        attn = prepare_attention_inputs(
            self.rotary_emb,
            input_ids,
            attention_mask,
            position_ids,
            cache,
            c.causal,
            c.max_seq_len,
            labels,
            logits_to_keep,
            token_type_ids,
            c.prefix_lm,
        )
        h = self.embed_tokens(input_ids)
        for slot, layer in enumerate(self.layers):
            h = layer(h, attn, cache, slot)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        out = CausalLMOutput(logits=logits)
        if labels is not None:
            out.lm_loss = out.loss = token_cross_entropy(c.loss, logits, labels)
        return out
