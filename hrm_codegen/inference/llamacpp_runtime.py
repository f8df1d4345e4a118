"""Our Llama arm written as GGUF and decoded by llama.cpp through llama-cpp-python
(`--backend llamacpp`).

Why by hand: transformers and llama.cpp's own `convert_hf_to_gguf.py` (not an installable
package) are the usual route; the `gguf` package gives the file format, and what is ours is
small: which of our tensors is which GGUF tensor, and one reordering. transformers' Llama rotates
dimension i of each head with dimension i + head_dim/2 ("rotate half"); llama.cpp's `llama`
architecture rotates neighbours (2i, 2i + 1) at the same frequency i. Writing each head's query
and key rows in the order [0, h/2, 1, h/2 + 1, ...] makes llama.cpp compute the same
attention scores (a permutation applied to both q and k leaves q.k unchanged; values and the
output projection keep their order).

Float files (`f32`, `f16`) are written by `gguf`; the quantized ones (`q8_0`, `q4_K`) by
llama.cpp's own quantizer (`llama_model_quantize`, its `Q4_K_M` recipe) from the f32 file.
The vocabulary is the checkpoint's tokenizer as a GPT-2-style byte-level BPE (tokens, merges,
special tokens as control tokens, ids past the tokenizer up to the model's vocab_size as unused
padding). We feed llama.cpp token ids, never text: our code BPE pre-tokenizes with its own
pattern, which llama.cpp's tokenizer does not know, so the GGUF vocabulary serves loading and
detokenizing only.

Only `model_type: llama` is served: llama.cpp has no architecture for our HRM, HRM-Text or our
post-norm transformer (each normalizes after the residual add, where llama.cpp's Llama
normalizes before; no GGUF tensor layout says otherwise). `LlamaCppCausalLM` puts a llama.cpp
context behind our forward/cache contract so `generate` drives it unchanged, one sequence at a
time (its `max_batch_size` is 1; a cache row is shared between samples by llama.cpp's state
snapshots).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrm_codegen.inference.backends import (
    GGUF_TYPES,
    BackendUnavailableError,
    check_gguf_family,
    llama_cpp_missing,
)
from hrm_codegen.model.layers import CausalLMOutput

DEFAULT_GGUF_TYPE = "f16"
_LLAMACPP_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_K": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_UNUSED = 1, 3, 5  # llama.cpp's token types


def require_llama_cpp() -> Any:
    """The `llama_cpp` module, or a one-line error saying how to get it."""
    missing = llama_cpp_missing()
    if missing:
        raise BackendUnavailableError(missing)
    import llama_cpp

    return llama_cpp


def check_gguf_model(model: Any) -> None:
    """Refuse a model llama.cpp cannot run as a Llama (one line: which and why)."""
    check_gguf_family(str(getattr(model, "model_type", None)))
    config = model.hf.config
    head_dim = getattr(config, "head_dim", None)
    if head_dim not in (None, config.hidden_size // config.num_attention_heads):
        raise BackendUnavailableError(
            f"--backend llamacpp needs head_dim = hidden_size / num_heads (llama.cpp's Llama), "
            f"got {head_dim}"
        )


def interleave_rotary_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Query/key projection rows [heads * head_dim, in] from rotate-half order to llama.cpp's
    neighbour pairs: row 2i + j of a head is row j * head_dim / 2 + i of the original."""
    rows, cols = weight.shape
    head_dim = rows // num_heads
    split = weight.reshape(num_heads, 2, head_dim // 2, cols)
    return np.ascontiguousarray(split.transpose(0, 2, 1, 3).reshape(rows, cols))


def _byte_symbols() -> list[str]:
    """The 256 characters a byte-level BPE writes bytes as (GPT-2's scheme: printable Latin-1
    bytes stand for themselves, the others for the characters from U+0100 on, in order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _vocabulary(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) of a byte-level BPE tokenizer, padded to vocab_size.
    Without a tokenizer (a benchmark's random model): the 256 bytes, then placeholders."""
    if tokenizer is None:  # llama.cpp wants at least one merge: two spaces
        space = _byte_symbols()[ord(" ")]
        tokens = _byte_symbols() + [space * 2] + [f"[T{i}]" for i in range(257, vocab_size)]
        return tokens[:vocab_size], [_TOKEN_NORMAL] * vocab_size, [f"{space} {space}"]
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise BackendUnavailableError(
            f"the tokenizer has ids up to {max(by_id)} but the model's vocab_size is "
            f"{vocab_size}: not this model's tokenizer"
        )
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for index in range(vocab_size):
        if index in by_id:
            tokens.append(by_id[index])
            types.append(_TOKEN_CONTROL if index in special else _TOKEN_NORMAL)
        else:
            tokens.append(f"[PAD{index}]")
            types.append(_TOKEN_UNUSED)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if spec.get("type") != "BPE":
        raise BackendUnavailableError(
            f"a GGUF vocabulary is written from a BPE tokenizer, not {spec.get('type')}"
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec.get("merges", [])]
    return tokens, types, merges


def export_gguf(
    model: nn.Module, tokenizer: Any, path: str | Path, *, gguf_type: str = DEFAULT_GGUF_TYPE
) -> Path:
    """Write our Llama `model` (weights as `gguf_type`) with `tokenizer`'s vocabulary to `path`
    (None: a placeholder vocabulary, for a model that is only timed)."""
    if gguf_type not in GGUF_TYPES:
        raise BackendUnavailableError(
            f"--gguf-type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}"
        )
    check_gguf_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gguf_type in _LLAMACPP_FTYPES:
        llama_cpp = require_llama_cpp()
        with tempfile.TemporaryDirectory(prefix="hrm-gguf-") as scratch:
            floats = export_gguf(model, tokenizer, Path(scratch) / "f32.gguf", gguf_type="f32")
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, _LLAMACPP_FTYPES[gguf_type])
            params.nthread = torch.get_num_threads()
            log = Path(scratch) / "quantize.log"
            with _c_stderr_to(log):  # llama.cpp logs every tensor it converts
                status = llama_cpp.llama_model_quantize(
                    str(floats).encode(), str(path).encode(), ctypes.byref(params)
                )
            lines = log.read_text(errors="replace").splitlines()
        if status != 0:
            last = lines[-1] if lines else "no log"
            raise RuntimeError(f"llama.cpp could not quantize to {gguf_type}: {last}")
        fallbacks = [line.split("WARNING: ", 1)[1] for line in lines if "WARNING: " in line]
        for warning in fallbacks:  # tensors whose rows do not fit the format's block size
            warnings.warn(f"llama.cpp quantizing to {gguf_type}: {warning}", stacklevel=2)
        return path
    import gguf

    config = model.hf.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("hrm_codegen llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config.hidden_size // heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    float_type = gguf.GGMLQuantizationType.F16 if gguf_type == "f16" else None
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if gguf_type == "f16" else gguf.LlamaFileType.ALL_F32
    )
    tokens, types, merges = _vocabulary(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name in ("bos", "eos", "pad") if tokenizer is not None else ():
        value = getattr(tokenizer, f"{name}_token_id")
        if value is not None:
            getattr(writer, f"add_{name}_token_id")(int(value))
    writer.add_add_bos_token(False)  # our prompts carry their BOS (generation.encode_prompt)

    def weight(name: str) -> np.ndarray:
        return state[name].detach().float().cpu().numpy()

    def add(name: str, array: np.ndarray) -> None:
        # 1-D tensors (norm weights) stay f32, as llama.cpp expects
        if float_type is not None and array.ndim > 1:
            writer.add_tensor(name, array.astype(np.float16), raw_dtype=float_type)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))

    state = model.hf.state_dict()
    add("token_embd.weight", weight("model.embed_tokens.weight"))
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", weight(layer + "input_layernorm.weight"))
        add(f"blk.{i}.attn_q.weight", interleave_rotary_rows(weight(layer + "self_attn.q_proj.weight"), heads))  # fmt: skip
        add(f"blk.{i}.attn_k.weight", interleave_rotary_rows(weight(layer + "self_attn.k_proj.weight"), kv_heads))  # fmt: skip
        add(f"blk.{i}.attn_v.weight", weight(layer + "self_attn.v_proj.weight"))
        add(f"blk.{i}.attn_output.weight", weight(layer + "self_attn.o_proj.weight"))
        add(f"blk.{i}.ffn_norm.weight", weight(layer + "post_attention_layernorm.weight"))
        add(f"blk.{i}.ffn_gate.weight", weight(layer + "mlp.gate_proj.weight"))
        add(f"blk.{i}.ffn_up.weight", weight(layer + "mlp.up_proj.weight"))
        add(f"blk.{i}.ffn_down.weight", weight(layer + "mlp.down_proj.weight"))
    add("output_norm.weight", weight("model.norm.weight"))
    add("output.weight", weight("lm_head.weight"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@contextlib.contextmanager
def _c_stderr_to(path: Path) -> Iterator[None]:
    """Send what C code writes to file descriptor 2 into `path` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LlamaCppCache:
    """One sequence in a llama.cpp context, with our cache contract (`seq_len`, `max_len`,
    `batch_size` 1, `index_select`). The context holds one sequence at a time; a cache that is
    not the one in it comes back from its state snapshot (taken by `index_select`)."""

    is_static = False
    batch_size = 1
    _ids = itertools.count()

    def __init__(self, runtime: LlamaCppCausalLM, max_len: int, seq_len: int = 0, state=None):
        self.runtime, self.max_len, self.seq_len, self.state = runtime, max_len, seq_len, state
        self.id = next(self._ids)

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        if batch_size != 1:
            raise ValueError(f"--backend llamacpp decodes one sequence at a time, got {batch_size}")
        if self.seq_len + new_tokens > self.max_len:
            raise ValueError(
                f"the llama.cpp context holds {self.max_len} tokens; {self.seq_len} cached + "
                f"{new_tokens} new do not fit"
            )

    def index_select(self, batch_index: torch.Tensor) -> LlamaCppCache:
        """A copy of this sequence (the only row: every index must be 0)."""
        if batch_index.numel() != 1 or int(batch_index.reshape(-1)[0]) != 0:
            raise ValueError(
                "--backend llamacpp holds one sequence per cache; decode with batch size 1"
            )
        if self.seq_len and self.runtime.active is self and self.state is None:
            self.state = self.runtime.llm.save_state()  # shared: neither may change it
        return LlamaCppCache(self.runtime, self.max_len, self.seq_len, self.state)


class LlamaCppCausalLM(nn.Module):
    """A GGUF file in a llama.cpp context behind our models' forward/cache contract: the last
    position's logits for new tokens appended to a cached sequence; batch size 1."""

    max_batch_size = 1

    def __init__(self, gguf_path: str | Path, *, max_seq_len: int, threads: int | None = None):
        super().__init__()
        llama_cpp = self._llama_cpp = require_llama_cpp()
        threads = threads or torch.get_num_threads()
        self.llm = llama_cpp.Llama(
            model_path=str(gguf_path),
            n_ctx=max_seq_len,
            n_batch=min(512, max_seq_len),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )
        self.model_type = "llama"
        self.config = _ServingConfig(vocab_size=self.llm.n_vocab(), max_seq_len=max_seq_len)
        self.active: LlamaCppCache | None = None
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tokenizer: Any,
        *,
        gguf_type: str = DEFAULT_GGUF_TYPE,
        threads: int | None = None,
    ) -> LlamaCppCausalLM:
        """Write `model` as GGUF to a temporary file and load it (llama.cpp reads it at load)."""
        with tempfile.TemporaryDirectory(prefix="hrm-gguf-") as folder:
            path = export_gguf(model, tokenizer, Path(folder) / "model.gguf", gguf_type=gguf_type)
            return cls(path, max_seq_len=model.config.max_seq_len, threads=threads)

    def allocate_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LlamaCppCache:
        del device, dtype  # llama.cpp keeps its own cache
        if batch_size != 1:
            raise ValueError(f"--backend llamacpp decodes one sequence at a time, got {batch_size}")
        return LlamaCppCache(self, min(max_len, self.config.max_seq_len))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: LlamaCppCache | None = None,
        logits_to_keep: int = 1,
        token_type_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """The last position's logits [1, 1, V] after `input_ids` [1, S] follow `cache`."""
        del position_ids, token_type_ids  # llama.cpp numbers positions itself; no PrefixLM
        if input_ids.shape[0] != 1:
            raise ValueError(
                f"--backend llamacpp decodes one sequence at a time, got a batch of "
                f"{input_ids.shape[0]}"
            )
        if logits_to_keep != 1:
            raise ValueError(
                f"--backend llamacpp returns the last position's logits only, got "
                f"logits_to_keep={logits_to_keep}"
            )
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("--backend llamacpp takes unpadded sequences (batch size 1)")
        if cache is None:
            cache = LlamaCppCache(self, self.config.max_seq_len)
        cache.check_fits(1, input_ids.shape[1])
        if self.active is not cache:  # bring this sequence into the context
            old = self.active
            if old is not None and old.seq_len and old.state is None:
                old.state = self.llm.save_state()  # keep the sequence it replaces
            if cache.seq_len == 0:
                self.llm.reset()
            else:
                self.llm.load_state(cache.state)
            self.active = cache
        self.llm.n_tokens = cache.seq_len
        self.llm.eval(input_ids[0].tolist())
        cache.seq_len = self.llm.n_tokens
        cache.state = None  # the context now holds it (a snapshot is taken when shared)
        # the last position's logits, as llama.cpp computed them (without logits_all the
        # wrapper keeps none: it samples inside llama.cpp, which we do not use)
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.config.vocab_size,)).copy()
        return CausalLMOutput(logits=torch.from_numpy(logits)[None, None])


class _ServingConfig:
    """What generation reads from a model's config."""

    def __init__(self, vocab_size: int, max_seq_len: int):
        self.vocab_size, self.max_seq_len = vocab_size, max_seq_len
        self.causal, self.prefix_lm = True, False


__all__ = [
    "DEFAULT_GGUF_TYPE",
    "GGUF_TYPES",
    "LlamaCppCache",
    "LlamaCppCausalLM",
    "check_gguf_model",
    "export_gguf",
    "interleave_rotary_rows",
    "require_llama_cpp",
]
