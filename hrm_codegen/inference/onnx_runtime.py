"""Our HRM and transformer exported to ONNX and decoded by onnxruntime (`--backend onnx`).

One graph serves the prefill and every decode step. Its inputs are the new tokens
(`input_ids`, `position_ids` [B, S]), the whole preallocated KV cache (`past_keys`,
`past_values` [slots, B, kv_heads, max_len, head_dim], read only) and a boolean attention
mask [B, 1, S, max_len + S] over the cache columns followed by the new positions; its outputs
are the last position's logits [B, V] and the new positions' keys and values
(`present_keys`, `present_values` [slots, B, kv_heads, S, head_dim]), which the host writes
into the cache. The host builds the mask with the models' own rules (`build_attention_mask`:
padding, causality, PrefixLM prompts), so the graph holds no masking logic and the same
`generate` loop drives it (`OnnxCausalLM` has the model's forward/cache contract).

The HRM's recurrence (H/L cycles, segments) is unrolled at export: the schedule in force then
is the graph's. A model whose Q head picks the number of ACT segments per prompt is refused
unless a number is forced. `quantize="int8-dynamic"` runs onnxruntime's dynamic int8
quantization on the exported graph (int8 weights, activations quantized per call).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrm_codegen.inference.backends import ONNX_FAMILIES, BackendUnavailableError
from hrm_codegen.model.kv_cache import check_cache_fits, checked_batch_index
from hrm_codegen.model.layers import (
    AttentionInputs,
    CausalLMOutput,
    build_attention_mask,
    cached_length,
    check_forward_inputs,
    default_position_ids,
    prefix_token_types,
)

GRAPH_FILE = "model.onnx"
INFO_FILE = "onnx_model.json"
ONNX_QUANTIZE = ("int8-dynamic",)
_INPUTS = ["input_ids", "position_ids", "attention_mask", "past_keys", "past_values"]
_OUTPUTS = ["logits", "present_keys", "present_values"]


@dataclass
class OnnxModelInfo:
    """What the host needs besides the graph: the cache's shape and the masking rules."""

    family: str
    vocab_size: int
    max_seq_len: int
    num_slots: int
    num_kv_heads: int
    head_dim: int
    causal: bool
    prefix_lm: bool
    quantize: str | None = None
    parameters: int = 0  # the exported model's, for reports (the graph holds them, not torch)


def check_exportable(model: Any) -> None:
    """Refuse, in one line, a model the export cannot turn into a fixed graph."""
    family = getattr(model, "model_type", None)
    if family not in ONNX_FAMILIES:
        raise BackendUnavailableError(
            f"--backend onnx cannot serve a {family or type(model).__name__} model: the export "
            f"rebuilds the forward of our {' and '.join(ONNX_FAMILIES)} models only"
        )
    config = model.config
    if (
        family == "hrm"
        and model.q_head is not None
        and config.halt_max_steps > 1
        and model.inference_segments is None
    ):
        raise BackendUnavailableError(
            f"--backend onnx cannot serve this HRM: its Q head picks the number of ACT segments "
            f"per prompt (up to halt_max_steps={config.halt_max_steps}) and an exported graph "
            "runs a fixed number; force one (evaluate.py --segments N)"
        )
    if not config.causal:
        raise BackendUnavailableError(
            "--backend onnx cannot serve a model with causal=False: decoding needs a KV cache"
        )
    for name, param in model.named_parameters():
        if type(param.data) is not torch.Tensor or param.dtype != torch.float32:
            raise BackendUnavailableError(
                f"--backend onnx exports float32 weights; {name} is {param.dtype} "
                f"({type(param.data).__name__}): load with --dtype fp32 and no torchao --quantize "
                "(--quantize int8-dynamic quantizes the graph with onnxruntime)"
            )


class _GraphCache:
    """Stands in for the KV cache while tracing: past keys/values are graph inputs, and the new
    ones are collected per slot to become graph outputs."""

    is_static = False

    def __init__(self, past_keys: torch.Tensor, past_values: torch.Tensor):
        self.past_keys, self.past_values = past_keys, past_values
        self.new: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(
        self, slot: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.new[slot] = (keys, values)
        return (
            torch.cat([self.past_keys[slot], keys], dim=2),
            torch.cat([self.past_values[slot], values], dim=2),
        )


class _ExportedStep(nn.Module):
    """The forward the graph records: the model's blocks on explicit attention inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past_keys: torch.Tensor,
        past_values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        cos, sin = model.rotary_emb(position_ids)
        attn = AttentionInputs(cos=cos, sin=sin, mask=attention_mask, is_causal=False)
        cache = _GraphCache(past_keys, past_values)
        x = model.embed_tokens(input_ids)
        if model.model_type == "hrm":
            z_H, z_L = model.initial_state(x)
            for seg in range(model.num_segments_eval):
                first_slot = seg * model.cache_slots_per_segment
                z_H, z_L = model.segment(x, z_H, z_L, attn, cache, first_slot)
            hidden = z_H
        else:
            hidden = x
            for slot, layer in enumerate(model.layers):
                hidden = layer(hidden, attn, cache, slot)
        logits = model.lm_head(hidden[:, -1]).float()
        slots = sorted(cache.new)
        keys = torch.stack([cache.new[s][0] for s in slots])
        values = torch.stack([cache.new[s][1] for s in slots])
        return logits, keys, values


def export_onnx(model: nn.Module, folder: str | Path, *, quantize: str | None = None) -> Path:
    """Write `model` as `folder/model.onnx` (+ `onnx_model.json`); `quantize="int8-dynamic"`
    quantizes it with onnxruntime's dynamic int8. Returns `folder`."""
    if quantize is not None and quantize not in ONNX_QUANTIZE:
        raise BackendUnavailableError(
            f"--backend onnx quantizes with {ONNX_QUANTIZE} only, not {quantize!r}"
        )
    check_exportable(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    probe = model.allocate_cache(1, 1)
    slots, _, kv_heads, _, head_dim = probe.keys.shape
    batch, new, past = 2, 3, 5  # trace with sizes that differ, so none is taken for a constant
    example = (
        torch.zeros(batch, new, dtype=torch.long),
        torch.arange(past, past + new).expand(batch, new),
        torch.ones(batch, 1, new, past + new, dtype=torch.bool),
        torch.zeros(slots, batch, kv_heads, past, head_dim),
        torch.zeros(slots, batch, kv_heads, past, head_dim),
    )
    axes = {
        "input_ids": {0: "batch", 1: "new"},
        "position_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 2: "new", 3: "keys"},
        "past_keys": {1: "batch", 3: "past"},
        "past_values": {1: "batch", 3: "past"},
        "logits": {0: "batch"},
        "present_keys": {1: "batch", 3: "new"},
        "present_values": {1: "batch", 3: "new"},
    }
    graph = folder / GRAPH_FILE
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                _ExportedStep(model),
                example,
                str(graph),
                dynamo=False,
                input_names=_INPUTS,
                output_names=_OUTPUTS,
                dynamic_axes=axes,
                opset_version=17,
            )
    finally:
        model.train(was_training)
    if quantize == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        floats = folder / "model.fp32.onnx"
        graph.rename(floats)
        fold_weights(floats, floats)
        logging.disable(logging.WARNING)  # its advice to pre-process, logged on the root logger
        try:
            quantize_dynamic(
                str(floats),
                str(graph),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            logging.disable(logging.NOTSET)
        floats.unlink()
    config = model.config
    info = OnnxModelInfo(
        family=model.model_type,
        vocab_size=config.vocab_size,
        max_seq_len=config.max_seq_len,
        num_slots=slots,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        causal=config.causal,
        prefix_lm=config.prefix_lm,
        quantize=quantize,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    (folder / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return folder


def fold_weights(source: Path, target: Path) -> int:
    """Make every weight product of `source` a MatMul whose weight is a stored tensor, each
    distinct weight stored once; returns how many duplicate copies were dropped.

    Why: the exporter writes a weight's transpose as a node of the graph; the quantizer quantizes
    a MatMul only when its weight is a stored tensor, so without this it quantized each block's
    first application and left the HRM's later cycles (two thirds of its products) in float32.
    onnxruntime's basic optimizations fold the transposes into stored tensors (one per use); the
    copies of one weight are then merged by content.
    """
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="hrm-onnx-fold-") as scratch:
        options.optimized_model_filepath = str(Path(scratch) / "folded.onnx")
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    graph, first, renamed = model.graph, {}, {}
    for tensor in list(graph.initializer):
        key = (tensor.data_type, tuple(tensor.dims), onnx.numpy_helper.to_array(tensor).tobytes())
        if key in first:
            renamed[tensor.name] = first[key]
            graph.initializer.remove(tensor)
        else:
            first[key] = tensor.name
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    onnx.save(model, str(target))
    return len(renamed)


class OnnxKVCache:
    """The host side of the graph's cache: numpy [slots, B, kv_heads, max_len, head_dim] keys
    and values, filled up to `seq_len` (the contract of `KVCache` that generation uses)."""

    is_static = False

    def __init__(self, keys: np.ndarray, values: np.ndarray, seq_len: int = 0):
        self.keys, self.values, self.seq_len = keys, values, seq_len

    @classmethod
    def allocate(cls, info: OnnxModelInfo, batch_size: int, max_len: int) -> OnnxKVCache:
        if batch_size < 1 or max_len < 1:
            raise ValueError(
                f"cache batch_size and max_len must be >= 1, got {batch_size}, {max_len}"
            )
        shape = (info.num_slots, batch_size, info.num_kv_heads, max_len, info.head_dim)
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        check_cache_fits(self, batch_size, new_tokens)

    def index_select(self, batch_index: torch.Tensor) -> OnnxKVCache:
        """A new cache whose row i is this cache's row batch_index[i] (as `KVCache`'s)."""
        rows = checked_batch_index(batch_index, self.batch_size).numpy()
        return OnnxKVCache(
            np.ascontiguousarray(self.keys[:, rows]),
            np.ascontiguousarray(self.values[:, rows]),
            self.seq_len,
        )


class OnnxCausalLM(nn.Module):
    """An exported model behind our models' forward/cache contract, on onnxruntime's CPU
    provider with every graph optimization on; `generate` drives it like the model it was."""

    def __init__(self, folder: str | Path, *, threads: int | None = None):
        super().__init__()
        import onnxruntime

        folder = Path(folder)
        self.info = OnnxModelInfo(**json.loads((folder / INFO_FILE).read_text()))
        self.config = self.info  # vocab_size, max_seq_len: what generation reads
        self.model_type = self.info.family
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(folder / GRAPH_FILE), options, providers=["CPUExecutionProvider"]
        )
        # generation asks the parameters for the device (and autocast for their dtype)
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    @classmethod
    def from_model(
        cls, model: nn.Module, *, quantize: str | None = None, threads: int | None = None
    ) -> OnnxCausalLM:
        """Export `model` to a temporary folder and load it (the session keeps the graph)."""
        with tempfile.TemporaryDirectory(prefix="hrm-onnx-") as folder:
            export_onnx(model, folder, quantize=quantize)
            return cls(folder, threads=threads)

    def allocate_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> OnnxKVCache:
        del device, dtype  # the host cache is float32 numpy on the CPU
        return OnnxKVCache.allocate(self.info, batch_size, max_len)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: OnnxKVCache | None = None,
        logits_to_keep: int = 1,
        token_type_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """The last position's logits [B, 1, V]; the new keys and values go into `cache`."""
        if logits_to_keep != 1:
            raise ValueError(
                f"the ONNX graph computes the last position's logits only (logits_to_keep=1), "
                f"got {logits_to_keep}"
            )
        check_forward_inputs(input_ids, None, logits_to_keep)
        info = self.info
        batch, seq_len = input_ids.shape
        past = cached_length(cache, input_ids, attention_mask, info.max_seq_len, info.causal)
        if position_ids is None:
            position_ids = default_position_ids(
                batch, seq_len, past, attention_mask, input_ids.device
            )
        types = prefix_token_types(
            token_type_ids, info.prefix_lm, input_ids, attention_mask, cache, past
        )
        if cache is None:  # nothing cached, nothing kept (after the PrefixLM rule saw no cache)
            cache = OnnxKVCache.allocate(info, batch, seq_len)
        mask, is_causal = build_attention_mask(
            attention_mask, seq_len, past, info.causal, input_ids.device, types
        )
        if mask is None:  # the fast paths' masks made explicit
            mask = torch.ones(seq_len, past + seq_len, dtype=torch.bool)
            if is_causal:
                mask = mask.tril(past)
            mask = mask[None, None]
        mask = mask.expand(batch, 1, seq_len, past + seq_len).cpu().numpy()
        full = np.zeros((batch, 1, seq_len, cache.max_len + seq_len), dtype=bool)
        full[..., :past] = mask[..., :past]
        full[..., cache.max_len :] = mask[..., past:]
        logits, keys, values = self.session.run(
            _OUTPUTS,
            {
                "input_ids": input_ids.cpu().numpy().astype(np.int64),
                "position_ids": position_ids.cpu().numpy().astype(np.int64),
                "attention_mask": full,
                "past_keys": cache.keys,
                "past_values": cache.values,
            },
        )
        cache.keys[:, :, :, past : past + seq_len] = keys
        cache.values[:, :, :, past : past + seq_len] = values
        cache.seq_len = past + seq_len
        return CausalLMOutput(logits=torch.from_numpy(logits).unsqueeze(1))


@torch.inference_mode()
def top1_agreement(
    reference: Any, candidate: Any, prompts: list[list[int]], max_new_tokens: int
) -> float:
    """How often `candidate` picks `reference`'s greedy token, on `reference`'s own greedy
    continuations (teacher forcing: one early disagreement does not derail the rest), over every
    new position of every prompt. For a quantized model against its float original."""
    from hrm_codegen.generation import generate_ids

    agree = total = 0
    for prompt in prompts:
        tokens = generate_ids(reference, [prompt], max_new_tokens=max_new_tokens)[0][0]
        device = next(candidate.parameters()).device
        cache = candidate.allocate_cache(1, len(prompt) + len(tokens), device=device)
        fed = list(prompt)
        for token in tokens:
            ids = torch.tensor([fed], device=device)
            logits = candidate(ids, cache=cache, logits_to_keep=1).logits[0, -1]
            agree += int(logits.argmax()) == token
            total += 1
            fed = [token]
    return agree / total if total else 1.0


__all__ = [
    "OnnxCausalLM",
    "OnnxKVCache",
    "OnnxModelInfo",
    "check_exportable",
    "export_onnx",
    "fold_weights",
    "top1_agreement",
]
