"""`HRMCodegenConfig`: the Hugging Face config of an exported hrm_codegen model (HRM or transformer).

Written by `scripts/export_hf.py`; loaded by `AutoConfig.from_pretrained(dir, trust_remote_code=True)`
without hrm_codegen installed. `model_config` is our own config dataclass as a dict (what
`save_pretrained` of hrm_codegen writes), `architecture` says which of our two models it describes;
the usual HF names (`hidden_size`, `num_hidden_layers`, ...) are filled in for tools that read
them. `num_hidden_layers` counts KV-cache slots, i.e. block *applications* (the HRM runs each of its
blocks several times per token, and every application caches its own keys and values), because that
is what `DynamicCache(config=...)` sizes itself by.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

ARCHITECTURES = ("hrm", "transformer")


def cache_slots(architecture: str, model_config: dict[str, Any]) -> int:
    """KV-cache slots of one forward: layers for the transformer; for the HRM, layers x module
    applications x segments, with segments at its maximum (halt_max_steps with the Q head)."""
    if architecture == "transformer":
        return int(model_config["n_layers"])
    c = {"H_layers": 4, "L_layers": 4, "H_cycles": 2, "L_cycles": 2, **model_config}
    per_segment = c["H_cycles"] * (c["L_cycles"] * c["L_layers"] + c["H_layers"])
    segments = int(c.get("halt_max_steps", 1)) if c.get("enable_q_head") else 1
    return segments * per_segment


class HRMCodegenConfig(PretrainedConfig):
    model_type = "hrm_codegen"

    def __init__(
        self,
        architecture: str = "hrm",
        model_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={architecture!r} is not one of {ARCHITECTURES}")
        self.architecture = architecture
        self.model_config = dict(model_config or {"vocab_size": 1})
        c = self.model_config
        heads = int(c.get("num_heads", 8))
        self.vocab_size = int(c["vocab_size"])
        self.hidden_size = int(c.get("hidden_size", 512))
        self.num_attention_heads = heads
        self.num_key_value_heads = int(c.get("num_key_value_heads") or heads)
        self.head_dim = self.hidden_size // heads
        self.max_position_embeddings = int(c.get("max_seq_len", 2048))
        self.num_hidden_layers = cache_slots(architecture, c)
        kwargs.setdefault("tie_word_embeddings", False)  # embedding and LM head are separate
        kwargs.setdefault("use_cache", True)
        super().__init__(**kwargs)
