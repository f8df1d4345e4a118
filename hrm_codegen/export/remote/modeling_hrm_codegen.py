"""`HRMCodegenForCausalLM`: a thin Hugging Face wrapper around hrm_codegen's own model code.

Why a wrapper and not a port: the model logic (blocks, HRM recurrence, ACT, KV-cache slots) lives
once, in hrm_codegen/model/. `scripts/export_hf.py` copies those source files next to this one as
`hrm_codegen_<module>.py`, rewriting only their `hrm_codegen...` imports into relative ones, so what
`from_pretrained(dir, trust_remote_code=True)` runs is the code the model was trained with, and the
folder works where hrm_codegen is not installed. This file adds only what transformers needs: the
`PreTrainedModel` / `GenerationMixin` surface, HF label and cache conventions, and an adapter that
lets our attention write into a transformers `Cache`.

KV cache: a `DynamicCache` with one layer per block *application* (`config.num_hidden_layers`):
per layer for the transformer; for the HRM per layer per module application per segment, because
each application sees other hidden states and so caches other keys and values at the same position.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_hrm_codegen import HRMCodegenConfig
from .hrm_codegen_hrm import HRMConfig, HRMForCausalLM
from .hrm_codegen_transformer import TransformerConfig, TransformerForCausalLM

MODELS = {
    "hrm": (HRMConfig, HRMForCausalLM),
    "transformer": (TransformerConfig, TransformerForCausalLM),
}
# transformers 5 calls the cache `cache`, 4.x `past_key_values`; the output names it the same way
CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)


class HFCacheSlots:
    """Our `KVCache` interface (`update(slot, k, v)`, `seq_len`, ...) over a transformers `Cache`.

    Our attention calls `update(slot, keys, values)` with [B, kv_heads, S, D], the layout HF caches
    use, so a slot is simply a cache layer index. The HF layers track their own lengths, so
    `advance` has nothing to do.
    """

    is_static = False

    def __init__(self, cache: Cache, num_slots: int) -> None:
        self.cache = cache
        self.seq_len = int(cache.get_seq_length())
        layers = getattr(cache, "layers", None)
        if layers is not None and getattr(cache, "layer_class_to_replicate", None) is None:
            from transformers.cache_utils import DynamicLayer

            while len(layers) < num_slots:  # a cache built from another config: grow it
                layers.append(DynamicLayer())

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        if self.seq_len and self.cache.layers[0].keys.shape[0] != batch_size:
            raise ValueError(
                f"input batch size {batch_size} does not match the cache's "
                f"{self.cache.layers[0].keys.shape[0]}"
            )

    def update(
        self, slot: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(keys, values, slot)

    def advance(self, new_tokens: int) -> None:
        pass


class HRMCodegenForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = HRMCodegenConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules: list[str] = []

    def __init__(self, config: HRMCodegenConfig) -> None:
        super().__init__(config)
        config_class, model_class = MODELS[config.architecture]
        self.model = model_class(config_class(**config.model_config))
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Our modules initialise themselves (truncated normal, Q head bias -5); keep that."""

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embed_tokens

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """HF conventions on the outside: `labels` unshifted (the loss predicts labels[t + 1] from
        position t), a `Cache` in and out; our model's forward inside (see docs/DESIGN.md)."""
        if inputs_embeds is not None or input_ids is None:
            raise ValueError(
                "HRMCodegenForCausalLM takes input_ids (inputs_embeds is not supported)"
            )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache and labels is None:
            cache = DynamicCache()
        slots = HFCacheSlots(cache, self.config.num_hidden_layers) if cache is not None else None
        if isinstance(self.model, HRMForCausalLM):
            if slots is None:
                self.model.end_decoding()  # a full forward runs the evaluation schedule
            elif slots.seq_len == 0:  # prefill: decide the segments every later step runs
                self.model.prepare_for_decoding(input_ids, _real_mask(attention_mask))
        shifted = None
        if labels is not None:
            shifted = torch.full_like(labels, -100)
            shifted[:, :-1] = labels[:, 1:]
        out = self.model(
            input_ids,
            labels=shifted,
            attention_mask=_real_mask(attention_mask),
            position_ids=position_ids,
            cache=slots,
            logits_to_keep=logits_to_keep if isinstance(logits_to_keep, int) else 0,
        )
        return CausalLMOutputWithPast(loss=out.loss, logits=out.logits, **{CACHE_FIELD: cache})


def _real_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """None for an all-ones mask, so attention takes the same fused path as hrm_codegen's own
    generation on unpadded prompts (and gives the same tokens)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask
