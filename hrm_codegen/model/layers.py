"""Building blocks shared by the HRM and the transformer baseline.

Everything here follows the reference HRM design: post-norm blocks, RMSNorm without a learned weight
(float32, eps 1e-5), rotary position embeddings (theta 10000, rotate-half), a fused `qkv_proj`, a SwiGLU
MLP with a fused `gate_up_proj`, no biases, and JAX-style truncated-normal initialisation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.precision import compute_dtype

ATTN_IMPLS = ("sdpa", "flash_attn")
# SDPA broadcasts grouped key/value heads itself from torch 2.5 (no repeat_interleave copy)
SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)
_FLASH_FALLBACKS_WARNED: set[tuple[str, ...]] = set()

try:  # optional: FlashAttention 2 kernels (pip install hrm-codegen[flash])
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the environment
    flash_attn_func = None


# ----------------------------------------------------------------------------- initialisation


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0):
    """Fill `tensor` with a normal truncated at [lower, upper] standard deviations.

    Like JAX's `truncated_normal` initialiser, the samples are rescaled so that the *truncated*
    distribution has standard deviation `std` (a plain truncation would shrink it by ~12% at ±2σ).
    """
    if std == 0:
        return tensor.zero_()
    phi = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    mass = cdf(upper) - cdf(lower)
    variance = (
        1
        + (lower * phi(lower) - upper * phi(upper)) / mass
        - ((phi(lower) - phi(upper)) / mass) ** 2
    )
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, mean=0.0, std=1.0, a=lower, b=upper)
        tensor.mul_(std / math.sqrt(variance))
    return tensor


def make_linear(in_features: int, out_features: int, bias: bool = False) -> nn.Linear:
    """A linear layer with truncated-normal weights at std 1/sqrt(fan_in) and zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    trunc_normal_(layer.weight, std=1.0 / math.sqrt(in_features))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def swiglu_intermediate_size(hidden_size: int, expansion: float) -> int:
    """round(expansion * hidden * 2/3), rounded up to a multiple of 256 (as in the reference)."""
    size = round(expansion * hidden_size * 2 / 3)
    return -(-size // 256) * 256


# ----------------------------------------------------------------------------- norm and rotary


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm without a learned weight, computed in float32 and returned in the input dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)
    return x32.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary embeddings, computed on the fly from arbitrary position ids.

    Computing from `position_ids` (rather than slicing a precomputed table) serves left-padded
    batches and cached decoding with one code path. The frequencies are recomputed in float32 on
    every call rather than kept in a buffer, because `model.to(torch.bfloat16)` would round a
    buffer and shift the angle at position 1000 by ~0.4 rad.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [B, S] -> (cos, sin), each float32 [B, S, head_dim]."""
        dims = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=position_ids.device)
        inv_freq = 1.0 / (self.theta ** (dims / self.head_dim))
        angles = position_ids.float().unsqueeze(-1) * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, heads, head_dim]; cos/sin [B, S, head_dim]. Computed in float32."""
    x32 = x.float()
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)


# ----------------------------------------------------------------------------- attention inputs


@dataclass
class AttentionInputs:
    """What every block application of one forward shares: rotary tables and the attention mask.

    `mask` is a boolean [B, 1, S, past + S] (True = may attend) or None; with None, `is_causal` says
    whether SDPA's built-in causal mask applies (only valid when queries and keys line up).
    """

    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None
    is_causal: bool


def default_position_ids(
    batch_size: int,
    seq_len: int,
    past_len: int,
    attention_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """cumsum(attention_mask) - 1 clamped at 0 when a mask is given, else past..past+S-1.

    With a mask, left-padded rows get positions 0..n-1 on their real tokens, exactly as unpadded.
    """
    if attention_mask is None:
        positions = torch.arange(past_len, past_len + seq_len, device=device)
        return positions.unsqueeze(0).expand(batch_size, seq_len)
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp_min(0)[:, -seq_len:]


def build_attention_mask(
    attention_mask: torch.Tensor | None,
    seq_len: int,
    past_len: int,
    causal: bool,
    device: torch.device,
    token_type_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, bool]:
    """Return (bool mask [B, 1, S, past+S] or None, is_causal) for scaled_dot_product_attention.

    The fast path (no mask tensor) is taken whenever it is exact. Query i sits at key position
    past + i; a query whose every key is masked (a left-pad query) is allowed to see itself, so no
    row of the softmax is empty and nothing turns into NaN. PrefixLM: `token_type_ids` [B, S] marks
    the new positions that are prompt (1); a prompt query also sees every later prompt key of this
    call (cached keys are earlier, so causality already shows them).
    """
    total = past_len + seq_len
    if token_type_ids is not None:
        mask, _ = build_attention_mask(attention_mask, seq_len, past_len, True, device)
        if mask is None:  # the causal mask of aligned queries and keys, made explicit
            query_pos = torch.arange(past_len, total, device=device).unsqueeze(-1)
            mask = (torch.arange(total, device=device).unsqueeze(0) <= query_pos)[None, None]
        prompt = token_type_ids.to(device).bool()  # [B, S]
        prompt_keys = torch.cat([prompt.new_zeros(prompt.shape[0], past_len), prompt], dim=1)
        both = prompt[:, :, None] & prompt_keys[:, None, :]  # [B, S, total]
        if attention_mask is not None:
            both = both & attention_mask.bool().unsqueeze(1)
        return mask | both.unsqueeze(1), False
    if attention_mask is None:
        if not causal or seq_len == 1:
            return None, False  # every query sees every cached/current key
        if past_len == 0:
            return None, True
    query_pos = torch.arange(past_len, total, device=device).unsqueeze(-1)  # [S, 1]
    key_pos = torch.arange(total, device=device).unsqueeze(0)  # [1, total]
    allowed = (
        key_pos <= query_pos
        if causal
        else torch.ones(seq_len, total, dtype=torch.bool, device=device)
    )
    allowed = allowed.unsqueeze(0)  # [1, S, total]
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool().unsqueeze(1)  # key padding
        allowed = allowed | (key_pos == query_pos).unsqueeze(0)  # a query always sees itself
    return allowed.unsqueeze(1), False


# ----------------------------------------------------------------------------- layers


class Attention(nn.Module):
    """Multi-head attention with a fused qkv projection (rows: q heads, k heads, v heads)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_key_value_heads: int | None = None,
        attn_impl: str = "sdpa",
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.num_kv_heads = num_key_value_heads or num_heads
        if num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={num_heads} must be a multiple of num_key_value_heads={self.num_kv_heads}"
            )
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r} is not one of {ATTN_IMPLS}")
        if attn_impl == "flash_attn" and flash_attn_func is None:
            raise ImportError(
                "attn_impl='flash_attn' needs the flash_attn package: pip install 'hrm-codegen[flash]' "
                "or use attn_impl='sdpa' (which already uses FlashAttention kernels on CUDA)"
            )
        self.attn_impl = attn_impl
        self.head_dim = hidden_size // num_heads
        qkv_rows = (num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.qkv_proj = make_linear(hidden_size, qkv_rows)
        self.o_proj = make_linear(num_heads * self.head_dim, hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        attn: AttentionInputs,
        cache: KVCache | None = None,
        slot: int = 0,
    ) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        qkv = self.qkv_proj(x).view(
            batch, seq_len, self.num_heads + 2 * self.num_kv_heads, self.head_dim
        )
        q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=2)
        q, k = apply_rotary(q, attn.cos, attn.sin), apply_rotary(k, attn.cos, attn.sin)

        use_flash = self.attn_impl == "flash_attn" and flash_usable(q, attn.mask)
        if cache is not None:
            k, v = cache.update(slot, k.transpose(1, 2), v.transpose(1, 2))  # [B, kv, past+S, D]
            k, v = k.to(q.dtype), v.to(q.dtype)  # no-op when the cache is in the compute dtype
            if use_flash:
                k, v = k.transpose(1, 2), v.transpose(1, 2)
        elif not use_flash:
            k, v = k.transpose(1, 2), v.transpose(1, 2)

        if use_flash:  # [B, S, heads, D]; causal aligns to the bottom right, as decoding needs
            out = flash_attn_func(
                q, k, v, causal=attn.is_causal or cache is not None and seq_len > 1
            )
        else:
            out = sdpa(q.transpose(1, 2), k, v, attn.mask, attn.is_causal).transpose(1, 2)
        return self.o_proj(out.reshape(batch, seq_len, self.num_heads * self.head_dim))


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
) -> torch.Tensor:
    """SDPA on [B, heads, S, D] queries and [B, kv_heads, L, D] keys/values (grouped heads allowed).

    With torch >= 2.5 SDPA broadcasts the kv heads itself (`enable_gqa`), which spares a copy of
    the keys and values (the whole cache, when decoding) per block per step. Only without a mask
    and in half precision: otherwise SDPA serves `enable_gqa` with its math kernel, which
    materialises the whole score matrix, and the copy is the cheaper price.
    """
    if k.shape[1] != q.shape[1]:
        fused = mask is None and q.dtype in (torch.float16, torch.bfloat16)
        if SDPA_HAS_GQA and fused:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True
            )
        repeats = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


def flash_usable(q: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """Whether flash_attn can run this call; if not, say why once per reason instead of silently
    falling back on SDPA (a run configured for flash_attn should know it is not getting it)."""
    reasons = []
    if not q.is_cuda:
        reasons.append(f"inputs on {q.device.type}, it needs CUDA")
    if q.dtype not in (torch.float16, torch.bfloat16):
        reasons.append(f"{q.dtype} inputs, it needs fp16/bf16 (run under bf16 autocast or cast)")
    if mask is not None:
        reasons.append("an explicit attention mask (padding or fixed-shape decoding)")
    if not reasons:
        return True
    key = tuple(reasons)
    if key not in _FLASH_FALLBACKS_WARNED:
        _FLASH_FALLBACKS_WARNED.add(key)
        warnings.warn(
            f"attn_impl='flash_attn' cannot be used for this call ({'; '.join(reasons)}); "
            "using PyTorch SDPA instead (warned once per reason)",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        intermediate = swiglu_intermediate_size(hidden_size, expansion)
        self.gate_up_proj = make_linear(hidden_size, 2 * intermediate)
        self.down_proj = make_linear(intermediate, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm block: h = rmsnorm(h + attn(h)); h = rmsnorm(h + mlp(h))."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        expansion: float,
        num_key_value_heads: int | None = None,
        rms_norm_eps: float = 1e-5,
        attn_impl: str = "sdpa",
    ):
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads, num_key_value_heads, attn_impl)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.eps = rms_norm_eps

    def forward(
        self, h: torch.Tensor, attn: AttentionInputs, cache: KVCache | None = None, slot: int = 0
    ) -> torch.Tensor:
        h = rms_norm(h + self.self_attn(h, attn, cache, slot), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class ScaledEmbedding(nn.Module):
    """Token embedding with init std 1/sqrt(hidden), multiplied by sqrt(hidden) on the way out."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        trunc_normal_(self.weight, std=1.0 / math.sqrt(hidden_size))
        self.scale = math.sqrt(hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings in the compute dtype (autocast leaves F.embedding in the weight's dtype, which
        would keep the whole residual stream in float32 under bf16 autocast)."""
        return (self.scale * F.embedding(input_ids, self.weight)).to(compute_dtype(self.weight))


# ----------------------------------------------------------------------------- outputs


@dataclass
class CausalLMOutput:
    """What both models return. `loss` is the total; `lm_loss` the language-model part alone."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    q_halt_logits: torch.Tensor | None = None
    q_continue_logits: torch.Tensor | None = None


def prepare_attention_inputs(
    rotary: RotaryEmbedding,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    cache: KVCache | None,
    causal: bool,
    max_seq_len: int,
    labels: torch.Tensor | None = None,
    logits_to_keep: int = 0,
    token_type_ids: torch.Tensor | None = None,
    prefix_lm: bool = False,
) -> AttentionInputs:
    """Validate the forward's inputs and build what every block application needs.

    PrefixLM (`prefix_lm`): `token_type_ids` [B, S] (1 = prompt, bidirectional among the prompt;
    0 = causal); a prefill into an empty cache without them treats its real tokens as the prompt,
    so generation prefills the prompt bidirectionally and then decodes causally. Without
    `prefix_lm` no token_type_ids are accepted and the fused causal path is untouched."""
    check_forward_inputs(input_ids, labels, logits_to_keep)
    batch, seq_len = input_ids.shape
    if cache is not None and cache.is_static:
        return _static_attention_inputs(rotary, input_ids, attention_mask, position_ids, cache)
    past = cached_length(cache, input_ids, attention_mask, max_seq_len, causal)
    if position_ids is None:
        position_ids = default_position_ids(batch, seq_len, past, attention_mask, input_ids.device)
    elif tuple(position_ids.shape) != (batch, seq_len):
        raise ValueError(
            f"position_ids must have shape {(batch, seq_len)}, got {tuple(position_ids.shape)}"
        )
    token_type_ids = prefix_token_types(
        token_type_ids, prefix_lm, input_ids, attention_mask, cache, past
    )
    cos, sin = rotary(position_ids)
    mask, is_causal = build_attention_mask(
        attention_mask, seq_len, past, causal, input_ids.device, token_type_ids
    )
    return AttentionInputs(cos=cos, sin=sin, mask=mask, is_causal=is_causal)


def check_forward_inputs(
    input_ids: torch.Tensor, labels: torch.Tensor | None, logits_to_keep: int
) -> None:
    """The shape checks every model's forward makes first (ours and `hf_models.HFCausalLM`)."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
    if logits_to_keep and labels is not None:
        raise ValueError("logits_to_keep needs labels=None: the loss reads every position")
    if labels is not None and labels.shape != input_ids.shape:
        raise ValueError(
            f"labels {tuple(labels.shape)} must have the shape of input_ids {tuple(input_ids.shape)}"
        )


def cached_length(
    cache: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_seq_len: int,
    causal: bool = True,
) -> int:
    """Positions already in `cache` (0 without one), after checking that the new ones fit the
    cache and `max_seq_len` and that `attention_mask` covers past + new positions. `cache` is a
    growing (non-static) `KVCache` or any cache with `seq_len` and `check_fits` (`HFCache`)."""
    batch, seq_len = input_ids.shape
    past = 0
    if cache is not None:
        if not causal:
            raise ValueError(
                "a KV cache needs causal attention: this model has causal=False, so every position "
                "depends on later tokens; run a full forward instead"
            )
        past = cache.seq_len
        cache.check_fits(batch, seq_len)
    if past + seq_len > max_seq_len:
        raise ValueError(
            f"sequence of {past + seq_len} positions (cached {past} + new {seq_len}) exceeds "
            f"config.max_seq_len={max_seq_len}; raise max_seq_len or shorten the input"
        )
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, past + seq_len):
        raise ValueError(
            f"attention_mask must have shape [batch, past + seq] = {(batch, past + seq_len)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    return past


def prefix_token_types(
    token_type_ids: torch.Tensor | None,
    prefix_lm: bool,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache: Any,
    past: int,
) -> torch.Tensor | None:
    """The PrefixLM token types this forward uses (None: plain causal attention); the one rule
    for every model with `prefix_lm` (ours and `hf_models.HFCausalLM`)."""
    if not prefix_lm:
        if token_type_ids is not None:
            raise ValueError(
                "token_type_ids given but config.prefix_lm=False; set prefix_lm=True (model."
                "prefix_lm=true) or do not ask the collator for them"
            )
        return None
    if token_type_ids is None:
        if cache is None or past:
            return None  # a cache-less forward without token types is causal (pretraining)
        seq_len = input_ids.shape[1]
        if attention_mask is None:
            return torch.ones_like(input_ids)
        return attention_mask[:, -seq_len:].long()
    if tuple(token_type_ids.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(token_type_ids.shape)}"
        )
    return token_type_ids


def _static_attention_inputs(
    rotary: RotaryEmbedding,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    cache: KVCache,
) -> AttentionInputs:
    """Fixed-shape one-token decoding on a static cache: every input has the same shape at every
    step and nothing reads the host-side `cache.seq_len`, so a compiled step never recompiles.

    The mask covers all `max_len` cache columns: the caller sets the column being written to 1 and
    leaves later ones 0, which is the causal mask of a single query.
    """
    batch, seq_len = input_ids.shape
    if seq_len != 1:
        raise ValueError(f"a static cache decodes one token per row per step, got {seq_len}")
    if attention_mask is None or position_ids is None:
        raise ValueError(
            "a static cache needs attention_mask [batch, max_len] and position_ids [batch, 1]"
        )
    if tuple(attention_mask.shape) != (batch, cache.max_len) or batch != cache.batch_size:
        raise ValueError(
            f"a static cache of batch {cache.batch_size} and max_len {cache.max_len} needs "
            f"attention_mask of shape {(cache.batch_size, cache.max_len)}, got "
            f"{tuple(attention_mask.shape)} for a batch of {batch}"
        )
    cos, sin = rotary(position_ids)
    mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, max_len]
    return AttentionInputs(cos=cos, sin=sin, mask=mask, is_causal=False)


class CycleSchedule:
    """The cycles a recurrent model runs now, for our HRM and the HRM-Text adapter alike: a
    training step's drawn depth (training mode, `set_training_cycles`, training/depth.py), else
    an inference schedule (`inference_h_cycles`/`inference_l_cycles`), else `config`'s."""

    inference_h_cycles: int | None = None
    inference_l_cycles: int | None = None
    training_h_cycles: int | None = None
    training_l_cycles: int | None = None

    def set_training_cycles(self, h_cycles: int | None = None, l_cycles: int | None = None) -> None:
        """This training step's depth; None: the configured one. Applies in training mode only:
        evaluation runs the configured depth (the trained mean) or an inference schedule."""
        for name, value in (("h_cycles", h_cycles), ("l_cycles", l_cycles)):
            if value is not None and int(value) < 1:
                raise ValueError(f"set_training_cycles({name}={value}): must be >= 1 (or None)")
        self.training_h_cycles = int(h_cycles) if h_cycles is not None else None
        self.training_l_cycles = int(l_cycles) if l_cycles is not None else None

    @property
    def h_cycles(self) -> int:
        if self.training and self.training_h_cycles:  # type: ignore[attr-defined]
            return self.training_h_cycles
        return self.inference_h_cycles or self.config.H_cycles  # type: ignore[attr-defined]

    @property
    def l_cycles(self) -> int:
        if self.training and self.training_l_cycles:  # type: ignore[attr-defined]
            return self.training_l_cycles
        return self.inference_l_cycles or self.config.L_cycles  # type: ignore[attr-defined]
