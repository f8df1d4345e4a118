"""The HRM and the transformer baseline as causal language models, and transformers' HRM-Text and
Llama behind the same contract, and `load_model`, the one way to load any of them from disk (see
docs/DESIGN.md, "Model")."""

from hrm_codegen.model.hf_models import (
    HF_MODEL_TYPES,
    HFCausalLM,
    HFModelConfig,
    build_hf_model,
    is_hf_model_dir,
)
from hrm_codegen.model.hrm import HRMConfig, HRMForCausalLM
from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.layers import CausalLMOutput
from hrm_codegen.model.loading import load_model
from hrm_codegen.model.transformer import TransformerConfig, TransformerForCausalLM
from hrm_codegen.model.upstream import UpstreamLoadReport, load_upstream_checkpoint

__all__ = [
    "HF_MODEL_TYPES",
    "CausalLMOutput",
    "HFCausalLM",
    "HFModelConfig",
    "HRMConfig",
    "HRMForCausalLM",
    "KVCache",
    "TransformerConfig",
    "TransformerForCausalLM",
    "UpstreamLoadReport",
    "build_hf_model",
    "is_hf_model_dir",
    "load_model",
    "load_upstream_checkpoint",
]
