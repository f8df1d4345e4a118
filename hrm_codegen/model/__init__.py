"""The HRM and the transformer baseline as causal language models (see docs/DESIGN.md, "Model")."""

from hrm_codegen.model.checkpoint import load_pretrained
from hrm_codegen.model.hrm import HRMConfig, HRMForCausalLM
from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.layers import CausalLMOutput
from hrm_codegen.model.transformer import TransformerConfig, TransformerForCausalLM
from hrm_codegen.model.upstream import UpstreamLoadReport, load_upstream_checkpoint

__all__ = [
    "CausalLMOutput",
    "HRMConfig",
    "HRMForCausalLM",
    "KVCache",
    "TransformerConfig",
    "TransformerForCausalLM",
    "UpstreamLoadReport",
    "load_pretrained",
    "load_upstream_checkpoint",
]
