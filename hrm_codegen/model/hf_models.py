"""transformers' HRM-Text and Llama as our models: built from our config fields, trained on our losses.

`HrmTextForCausalLM` (`model_type: hrm_text`, Sapient's language-model HRM) and `LlamaForCausalLM` are
used as transformers ships them: nothing of their code is copied or patched. A thin adapter
(`HFCausalLM`) gives each our model contract (docs/DESIGN.md, "Model"): the forward signature and
`CausalLMOutput` with our token losses, `allocate_cache` returning an `HFCache` (transformers' own
`DynamicCache` behind our `seq_len` / `index_select` interface, so `generation.py` decodes them
unchanged), `num_parameters`, and `save_pretrained` writing the transformers folder itself
(`config.json` with `model_type` hrm_text / llama, `model.safetensors`), which
`AutoModelForCausalLM.from_pretrained` loads with no remote code. What transformers' config has no
field for (our loss, the `L_bp_cycles` warm-up) goes to a side file, `hrm_codegen.json`.

HRM-Text's gradient routing: `L_bp_cycles` (transformers' list, one entry per H cycle, left-padded
with 1s) says how many of the last L steps of each H cycle carry gradients; every H step does. The
paper warms the number up during training (2 -> 5): `L_bp_warmup_to` and `L_bp_warmup_fraction`
here, applied by `set_training_progress(fraction)`, which the trainer calls before each step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrm_codegen.losses import LOSS_TYPES, token_cross_entropy
from hrm_codegen.model.kv_cache import check_cache_fits, checked_batch_index
from hrm_codegen.model.layers import (
    CausalLMOutput,
    CycleSchedule,
    cached_length,
    check_forward_inputs,
    default_position_ids,
    prefix_token_types,
    swiglu_intermediate_size,
)
from hrm_codegen.model.sizing import matched_depth
from hrm_codegen.quantization import silence_torchao_import_noise

# Using any transformers model class imports torchao when it is installed, which warns about
# kernels no model here needs (see silence_torchao_import_noise); drop exactly those warnings.
silence_torchao_import_noise()

HF_MODEL_TYPES = ("hrm_text", "llama")
SPEC_NAME = "hrm_codegen.json"  # our fields transformers' config has no place for
CONFIG_NAME = "config.json"

# Fields of our own HRM / transformer configs an experiment may set (it sizes the HRM): an HF model
# built from that experiment ignores the ones it has no use for, as the trainer does between ours.
_OUR_MODEL_FIELDS = {
    "bp_steps",
    "causal",
    "enable_q_head",
    "halt_max_steps",
    "halt_exploration_prob",
    "halt_target",
    "halt_margin",
    "attn_impl",
    "n_layers",
    "H_layers",
    "L_layers",
    "H_cycles",
    "L_cycles",
    "match",
    "num_key_value_heads",
}


_HRM_TEXT_ONLY = ("H_layers", "L_layers", "H_cycles", "L_cycles", "L_bp_cycles")
_HRM_TEXT_ONLY += ("L_bp_warmup_to", "L_bp_warmup_fraction")


@dataclass
class HFModelConfig:
    """Our description of an HF model: what the trainer, the FLOP model and generation read.

    `H_layers == L_layers` is HRM-Text's `num_layers_per_stack` (it has one count for both stacks);
    `n_layers` is Llama's depth. `L_bp_cycles` is given as an int (the last H cycle's
    gradient-carrying L steps; earlier cycles get 1) or transformers' per-H-cycle list, and kept as
    that list; a warm-up moves its last entry.
    """

    model_type: str
    vocab_size: int
    max_seq_len: int = 2048
    hidden_size: int = 512
    num_heads: int = 8
    num_key_value_heads: int | None = None
    expansion: float = 4.0
    intermediate_size: int | None = None  # None: our SwiGLU rule (swiglu_intermediate_size)
    H_layers: int = 4
    L_layers: int = 4
    H_cycles: int = 2
    L_cycles: int = 2
    L_bp_cycles: int | list[int] = 2
    L_bp_warmup_to: int | None = None
    L_bp_warmup_fraction: float = 0.5
    n_layers: int = 8
    prefix_lm: bool = False
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    loss: str = "softmax"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.model_type not in HF_MODEL_TYPES:
            raise ValueError(f"model_type={self.model_type!r} is not one of {HF_MODEL_TYPES}")
        positive = ["vocab_size", "max_seq_len", "hidden_size", "num_heads"]
        positive += ["H_layers", "L_layers", "H_cycles", "L_cycles", "n_layers"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{self.model_type} model.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"model.loss={self.loss!r} is not one of {LOSS_TYPES}")
        # stored resolved, as transformers' config.json has them (a checkpoint compares equal)
        if self.intermediate_size is None:
            self.intermediate_size = swiglu_intermediate_size(self.hidden_size, self.expansion)
        self.L_bp_cycles = self.bp_schedule_list()
        if not self.L_bp_cycles:
            raise ValueError("model.L_bp_cycles=[] needs at least one entry (e.g. 2)")
        if self.model_type == "llama" and self.prefix_lm:
            raise ValueError(
                "model.prefix_lm=true: transformers' Llama has no PrefixLM mask; use model=hrm_text, "
                "our model=hrm / model=transformer, or model.prefix_lm=false"
            )
        if self.model_type != "hrm_text":
            return
        if self.H_layers != self.L_layers:
            raise ValueError(
                f"hrm_text has one num_layers_per_stack for both stacks, got H_layers={self.H_layers} "
                f"and L_layers={self.L_layers}; set them equal"
            )
        for k in self.bp_schedule_list():
            if not 1 <= k <= self.L_cycles:
                raise ValueError(
                    f"model.L_bp_cycles={self.L_bp_cycles}: each entry must lie in 1..L_cycles="
                    f"{self.L_cycles} (the L steps of an H cycle that carry gradients)"
                )
        if len(self.bp_schedule_list()) > self.H_cycles:
            raise ValueError(
                f"model.L_bp_cycles={self.L_bp_cycles} has more entries than H_cycles={self.H_cycles}"
            )
        if self.L_bp_warmup_to is not None:
            start = self.L_bp_cycles[-1]
            if not start <= self.L_bp_warmup_to <= self.L_cycles:
                raise ValueError(
                    f"model.L_bp_warmup_to={self.L_bp_warmup_to} must lie in L_bp_cycles="
                    f"{start}..L_cycles={self.L_cycles} (the last H cycle's start..all its L "
                    "steps); raise L_cycles to warm up further"
                )
            if not 0.0 < self.L_bp_warmup_fraction <= 1.0:
                raise ValueError(
                    f"model.L_bp_warmup_fraction={self.L_bp_warmup_fraction} must lie in (0, 1]"
                )

    def bp_schedule_list(self, last: int | None = None) -> list[int]:
        """transformers' `L_bp_cycles` list, with the last H cycle's entry set to `last` if given."""
        raw = [self.L_bp_cycles] if isinstance(self.L_bp_cycles, int) else list(self.L_bp_cycles)
        raw = [int(k) for k in raw]
        if last is not None:
            raw[-1] = int(last)
        return raw


_SHARED_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(HFModelConfig)
    if f.name not in ("model_type", "vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")
)
#: the `model.*` keys each type takes (vocab_size and the special ids come from the tokenizer)
MODEL_FIELDS = {
    "hrm_text": tuple(f for f in _SHARED_FIELDS if f not in ("n_layers", "num_key_value_heads")),
    "llama": tuple(f for f in _SHARED_FIELDS if f not in _HRM_TEXT_ONLY),
}


def bp_cycles_at(config: HFModelConfig, progress: float) -> int:
    """The last H cycle's gradient-carrying L steps at `progress` (0..1) of training.

    Linear in steps of one from `L_bp_cycles` to `L_bp_warmup_to` over the first
    `L_bp_warmup_fraction` of training: each value gets an equal share of the warm-up.
    """
    start = config.bp_schedule_list()[-1]
    if config.L_bp_warmup_to is None:
        return start
    end = int(config.L_bp_warmup_to)
    share = min(max(progress, 0.0), 1.0) / config.L_bp_warmup_fraction
    return min(end, start + int(math.floor(share * (end - start + 1))))


# ----------------------------------------------------------------------------- cache


class HFCache:
    """transformers' `DynamicCache` behind our cache interface (`seq_len`, `index_select`,
    `max_len`, `batch_size`): generation.py decodes HF models exactly as ours."""

    def __init__(self, hf_config: Any, batch_size: int, max_len: int, inner: Any = None):
        """`hf_config` None: layers are created as they are first written."""
        from transformers import DynamicCache

        if batch_size < 1 or max_len < 1:
            raise ValueError(
                f"HFCache batch_size and max_len must be >= 1, got {batch_size}, {max_len}"
            )
        self.hf_config = hf_config
        self.batch_size = batch_size
        self.max_len = max_len
        self.inner = inner if inner is not None else DynamicCache(config=hf_config)
        self.position = None  # no static (compiled) decoding: see make_static

    @property
    def seq_len(self) -> int:
        return int(self.inner.get_seq_length())

    @property
    def is_static(self) -> bool:
        return False

    def make_static(self) -> None:
        raise NotImplementedError(
            "compiled fixed-shape decoding (generate(compile=True)) is not available for "
            "transformers models; decode with compile=False"
        )

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        check_cache_fits(self, batch_size, new_tokens)

    def index_select(self, batch_index: torch.Tensor) -> HFCache:
        """A new cache whose row i is this cache's row batch_index[i] (see KVCache.index_select)."""
        from transformers import DynamicCache

        batch_index = checked_batch_index(batch_index, self.batch_size)
        if self.seq_len == 0:
            return HFCache(self.hf_config, len(batch_index), self.max_len)
        data = []
        for layer in self.inner.layers:
            index = batch_index.to(layer.keys.device)
            data.append((layer.keys.index_select(0, index), layer.values.index_select(0, index)))
        inner = DynamicCache(ddp_cache_data=data, config=self.hf_config)
        return HFCache(self.hf_config, len(batch_index), self.max_len, inner)

    def __repr__(self) -> str:
        return f"HFCache(batch={self.batch_size}, max_len={self.max_len}, seq_len={self.seq_len})"


# ----------------------------------------------------------------------------- adapter


class HFCausalLM(CycleSchedule, nn.Module):
    """A transformers causal LM with our model contract. `self.hf` is the transformers model."""

    embedding_parameter_names = ("model.embed_tokens.weight", "lm_head.weight")

    def __init__(self, config: HFModelConfig, hf_model: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.model_type = config.model_type
        self.hf = hf_model if hf_model is not None else _new_hf_model(config)
        self.recurrent = config.model_type == "hrm_text"  # has cycles to schedule (Llama: no)
        self.bp_cycles = config.bp_schedule_list()[-1]
        if config.model_type == "hrm_text":
            self.set_training_progress(0.0)

    # ------------------------------------------------------------------------- schedule

    def set_training_progress(self, fraction: float) -> int:
        """Apply the `L_bp_cycles` warm-up at `fraction` (0..1) of training; returns the last H
        cycle's gradient-carrying L steps now in force (a no-op for Llama)."""
        if self.config.model_type != "hrm_text":
            return 0
        self.bp_cycles = bp_cycles_at(self.config, fraction)
        # HrmTextModel reads this list (left-padded to H_cycles with 1s) on every forward; a
        # forward at another depth sets its own (_depth_in_force)
        self.hf.model.L_bp_cycles_padded = self._bp_padded(
            self.config.H_cycles, self.config.L_cycles
        )
        return self.bp_cycles

    def _bp_padded(self, h_cycles: int, l_cycles: int) -> list[int]:
        """transformers' `L_bp_cycles_padded` for `h_cycles` H cycles: the configured schedule
        (warm-up included) for the last cycles, 1 before them, each at most `l_cycles`."""
        raw = self.config.bp_schedule_list(last=self.bp_cycles)[-h_cycles:]
        return [min(k, l_cycles) for k in [1] * (h_cycles - len(raw)) + raw]

    # ------------------------------------------------------------------------- depth

    def _require_recurrence(self, what: str) -> None:
        if self.config.model_type != "hrm_text":
            raise ValueError(
                f"{what} only applies to a recurrent model (HRM, HRM-Text); this model is "
                f"{self.config.model_type}"
            )

    def set_inference_schedule(
        self, h_cycles: int | None = None, l_cycles: int | None = None, segments: int | None = None
    ) -> None:
        """HRM-Text at another depth than trained, for evaluation (see our HRM's method of the
        same name); it has no segments, so `segments` may only be None or 1."""
        self._require_recurrence("an inference schedule (--h-cycles/--l-cycles)")
        if segments not in (None, 1):
            raise ValueError(f"segments={segments}: HRM-Text runs one segment (it has no ACT)")
        for name, value in (("h_cycles", h_cycles), ("l_cycles", l_cycles)):
            if value is not None and int(value) < 1:
                raise ValueError(f"set_inference_schedule({name}={value}): must be >= 1 (or None)")
        self.inference_h_cycles = int(h_cycles) if h_cycles is not None else None
        self.inference_l_cycles = int(l_cycles) if l_cycles is not None else None

    def set_training_cycles(self, h_cycles: int | None = None, l_cycles: int | None = None) -> None:
        """This training step's depth (randomized-depth training, training/depth.py)."""
        self._require_recurrence("randomized depth")
        super().set_training_cycles(h_cycles, l_cycles)

    @property
    def num_segments_eval(self) -> int:
        return 1

    @contextmanager
    def _depth_in_force(self) -> Iterator[None]:
        """transformers' model reads its depth from its config on every forward: set this
        forward's H/L cycles (and cache slots) there, and put the configured ones back after."""
        if self.config.model_type != "hrm_text":
            yield
            return
        inner = self.hf.model
        hf_config = inner.config
        h, l_cycles = self.h_cycles, self.l_cycles
        saved = (hf_config.H_cycles, hf_config.L_cycles, hf_config.num_hidden_layers)
        hf_config.H_cycles, hf_config.L_cycles = h, l_cycles
        hf_config.num_hidden_layers = hf_config.num_layers_per_stack * h * (l_cycles + 1)
        inner.L_bp_cycles_padded = self._bp_padded(h, l_cycles)
        try:
            yield
        finally:
            hf_config.H_cycles, hf_config.L_cycles, hf_config.num_hidden_layers = saved

    # ------------------------------------------------------------------------- contract

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return sum(
            p.numel()
            for name, p in self.hf.named_parameters()
            if not (exclude_embeddings and name in self.embedding_parameter_names)
        )

    @property
    def lm_head(self) -> nn.Module:
        return self.hf.lm_head

    def allocate_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HFCache:
        """A growing transformers cache (device and dtype follow the keys written into it).
        HRM-Text's grows its layer slots as they are written (no config), so a deeper inference
        schedule than trained fits."""
        hrm_text = self.config.model_type == "hrm_text"
        return HFCache(None if hrm_text else self.hf.config, batch_size, max_len)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: HFCache | None = None,
        logits_to_keep: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """See docs/DESIGN.md. With `prefix_lm`, `token_type_ids` 1 marks the bidirectional prompt;
        a prefill into an empty cache without them treats its real tokens as the prompt."""
        c = self.config
        check_forward_inputs(input_ids, labels, logits_to_keep)
        batch, seq_len = input_ids.shape
        past = cached_length(cache, input_ids, attention_mask, c.max_seq_len)
        token_type_ids = prefix_token_types(
            token_type_ids, c.prefix_lm, input_ids, attention_mask, cache, past
        )
        if position_ids is None and attention_mask is not None:
            position_ids = default_position_ids(
                batch, seq_len, past, attention_mask, input_ids.device
            )
        kwargs: dict[str, Any] = {}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        with self._depth_in_force():
            out = self.hf(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=None if cache is None else cache.inner,
                use_cache=cache is not None,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        result = CausalLMOutput(logits=out.logits)
        if labels is not None:
            result.lm_loss = result.loss = token_cross_entropy(c.loss, out.logits, labels)
        return result

    # ------------------------------------------------------------------------- save / load

    def save_pretrained(self, directory: str | Path) -> Path:
        """The transformers folder (`config.json`, `model.safetensors`) plus `hrm_codegen.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(directory)
        spec = dataclasses.asdict(self.config)
        (directory / SPEC_NAME).write_text(json.dumps(spec, indent=2) + "\n")
        return directory

    def load_weights(self, directory: str | Path) -> None:
        """Load the weights of a `save_pretrained` folder into this model (same architecture):
        a warm start (`init_from`) whose config may differ in what has no weights (`prefix_lm`,
        the L_bp_cycles schedule, the loss)."""
        self.load_state_dict(state_dict_from_dir(directory), strict=True)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HFCausalLM:
        return load_hf_model_dir(directory, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- building


def _hf_config(config: HFModelConfig) -> Any:
    """transformers' config for `config` (sdpa attention, our rotary theta, untied head)."""
    from transformers import HrmTextConfig, LlamaConfig

    shared = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_attention_heads=config.num_heads,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=False,
    )
    if config.model_type == "llama":
        return LlamaConfig(
            num_hidden_layers=config.n_layers,
            num_key_value_heads=config.num_key_value_heads or config.num_heads,
            **shared,
        )
    return HrmTextConfig(
        num_hidden_layers=config.H_layers,  # per stack; transformers inflates it to cache slots
        head_dim=config.hidden_size // config.num_heads,
        H_cycles=config.H_cycles,
        L_cycles=config.L_cycles,
        L_bp_cycles=config.bp_schedule_list(),
        prefix_lm=config.prefix_lm,
        **shared,
    )


def _new_hf_model(config: HFModelConfig) -> nn.Module:
    from transformers import HrmTextForCausalLM, LlamaForCausalLM

    model_class = HrmTextForCausalLM if config.model_type == "hrm_text" else LlamaForCausalLM
    return model_class(_hf_config(config))


def hf_model_config(
    model_cfg: dict[str, Any],
    vocab_size: int,
    *,
    bos_token_id: int | None,
    eos_token_id: int | None,
    pad_token_id: int | None,
) -> HFModelConfig:
    """Our `model` config group (type hrm_text | llama) -> HFModelConfig.

    Llama's depth follows `match` (params | compute | null) against the HRM sized in the same config,
    by the trainer's rule (`matched_depth`). Fields only our own HRM/transformer have are ignored
    (an experiment sizes the HRM); any other unknown field is an error naming the known ones.
    """
    fields = dict(model_cfg)
    model_type = fields.pop("type", None) or fields.pop("model_type", None)
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"model.type={model_type!r} is not one of {HF_MODEL_TYPES}")
    known = set(MODEL_FIELDS[model_type])
    if model_type == "llama":
        match = fields.pop("match", None)
        if match is not None:
            fields["n_layers"] = matched_depth(model_cfg, match, fields.get("n_layers"))
    unknown = sorted(set(fields) - known - _OUR_MODEL_FIELDS)
    if unknown:
        raise ValueError(
            f"model={model_type} config: unknown fields {unknown}; known fields: {sorted(known)}"
        )
    values = {k: v for k, v in fields.items() if k in known}
    bp = values.get("L_bp_cycles")
    if bp is not None and not isinstance(bp, int):  # a list (omegaconf's ListConfig from Hydra)
        values["L_bp_cycles"] = [int(k) for k in bp]
    return HFModelConfig(
        model_type=model_type,
        vocab_size=vocab_size,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        **values,
    )


def build_hf_model(
    model_cfg: dict[str, Any],
    vocab_size: int,
    *,
    bos_token_id: int | None,
    eos_token_id: int | None,
    pad_token_id: int | None,
) -> HFCausalLM:
    """A fresh transformers HRM-Text or Llama (transformers' own initialisation) in our adapter."""
    config = hf_model_config(
        model_cfg,
        vocab_size,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return HFCausalLM(config)


def is_hf_model_dir(path: str | Path) -> bool:
    """True when `path` is a folder whose config.json names a transformers model type we adapt."""
    config_path = Path(path) / CONFIG_NAME
    if not config_path.is_file():
        return False
    try:
        data = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") in HF_MODEL_TYPES


def load_hf_model_dir(
    path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> HFCausalLM:
    """Load a `save_pretrained` folder (ours, or any hrm_text / llama checkpoint) into the adapter.

    Without `hrm_codegen.json` (a folder from elsewhere) our fields are read off transformers'
    config, with the softmax loss.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not is_hf_model_dir(path):
        raise ValueError(
            f"{path} is not a transformers {'/'.join(HF_MODEL_TYPES)} folder (no config.json with "
            f"model_type in {HF_MODEL_TYPES}); pass a folder written by save_pretrained"
        )
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    spec_path = path / SPEC_NAME
    if spec_path.is_file():
        config = HFModelConfig(**json.loads(spec_path.read_text()))
    else:
        config = _config_from_hf(hf_model.config)
    model = HFCausalLM(config, hf_model)
    if device is not None:
        model.to(device)
    return model.eval()


def state_dict_from_dir(directory: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a `save_pretrained` folder under the adapter's names (`hf.` + transformers'),
    read through transformers: the file's own names differ (HRM-Text's keeps the upstream fused
    layout, which transformers converts on loading), so never load its tensors directly."""
    from transformers import AutoModelForCausalLM

    if not is_hf_model_dir(directory):
        raise ValueError(
            f"{directory} is not a transformers {'/'.join(HF_MODEL_TYPES)} folder; pass a folder "
            "written by save_pretrained"
        )
    saved = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return {f"hf.{name}": tensor for name, tensor in saved.state_dict().items()}


def _config_from_hf(hf_config: Any) -> HFModelConfig:
    eos = hf_config.eos_token_id
    common = dict(
        vocab_size=hf_config.vocab_size,
        max_seq_len=hf_config.max_position_embeddings,
        hidden_size=hf_config.hidden_size,
        num_heads=hf_config.num_attention_heads,
        intermediate_size=hf_config.intermediate_size,
        rope_theta=float((hf_config.rope_parameters or {}).get("rope_theta", 10000.0)),
        rms_norm_eps=hf_config.rms_norm_eps,
        bos_token_id=hf_config.bos_token_id,
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
        pad_token_id=hf_config.pad_token_id,
    )
    if hf_config.model_type == "llama":
        return HFModelConfig(
            model_type="llama",
            n_layers=hf_config.num_hidden_layers,
            num_key_value_heads=hf_config.num_key_value_heads,
            **common,
        )
    stack = hf_config.num_layers_per_stack
    return HFModelConfig(
        model_type="hrm_text",
        H_layers=stack,
        L_layers=stack,
        H_cycles=hf_config.H_cycles,
        L_cycles=hf_config.L_cycles,
        L_bp_cycles=list(hf_config.L_bp_cycles),
        prefix_lm=bool(hf_config.prefix_lm),
        **common,
    )


# ----------------------------------------------------------------------------- registry hooks
# hrm_codegen/model/registry.py registers `hrm_text` and `llama` with these (this module does not
# import the registry).


def is_dir_of(model_type: str) -> Callable[[str | Path], bool]:
    """`is_dir` of the registry entry `model_type`: a transformers folder of that model type."""

    def is_dir(folder: str | Path) -> bool:
        if not is_hf_model_dir(folder):
            return False
        return json.loads((Path(folder) / CONFIG_NAME).read_text()).get("model_type") == model_type

    return is_dir


def builder_of(model_type: str) -> Callable[..., HFCausalLM]:
    """`build` of the registry entry `model_type` (the registry's builder contract)."""

    def build(model_cfg: dict[str, Any], vocab_size: int, **ids: int | None) -> HFCausalLM:
        return build_hf_model({**model_cfg, "type": model_type}, vocab_size, **ids)

    return build
