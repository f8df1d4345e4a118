"""Post-training weight quantization of our models (and HF causal LMs) through torchao.

Three recipes, all on every projection of the model (`qkv_proj`, `o_proj`, `gate_up_proj`,
`down_proj` of every block, and `lm_head`):

- `int8`: int8 weights, per output channel; activations stay float (weight-only: less memory
  traffic, the win for batch-1 decoding);
- `int8-dynamic`: int8 weights and int8 activations quantized per token at run time (int8 GEMMs:
  the win when a batch makes decoding compute-bound);
- `int4`: int4 weights in groups of `group_size` input columns, asymmetric (tinygemm's scheme). The
  packing is device-specific, so the recipe picks the layout of the device the model is on:
  torchao's CPU layout (`Int4OpaqueTensor`, `aten._weight_int4pack_mm_for_cpu`) on CPU, and the
  tinygemm tile layout (`Int4TilePackedTo4dTensor`, bf16, compute capability >= 8) on CUDA.

Left in floating point, on purpose: the token embedding (a lookup, not a matmul: no kernel gains
and it is a small part of decoding time; quantizing it is a separate torchao workflow) and the
HRM's Q head (2 x hidden weights, nothing to save, and its two outputs are compared against each
other to decide halting, so an error there flips decisions rather than blurring a logit).

A quantized folder is `config.json` (the model's config, `"model_type"`, and a `"quantization"`
recipe: method, group size, layout, torchao version) and `model.quantized.pt`, the state dict
with torchao tensor subclasses written by `torch.save` (torchao registers them for
`torch.load(weights_only=True)`; its safetensors support does not cover the CPU int4 layout).
`hrm_codegen.model.load_model` reads such a folder through `load_quantized`.

torch is imported inside the functions that run a model, so that a command line listing
`QUANTIZE_CHOICES` in its `--help` (`evaluate.py --samples` judges files and runs no model)
starts without loading torch (~1 s).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

QUANTIZE_CHOICES = ("int8", "int8-dynamic", "int4")
QUANTIZED_WEIGHTS_NAME = "model.quantized.pt"
DEFAULT_INT4_GROUP_SIZE = 64
# Linear layers kept in floating point (see the module docstring), by attribute name.
EXCLUDED_LINEARS = ("q_head",)


class QuantizationError(ValueError):
    """A model or recipe torchao cannot quantize as asked (a user error, shown without traceback)."""


@dataclass(frozen=True)
class QuantizationRecipe:
    """What `quantize_model` did, saved with a quantized checkpoint so loading can redo nothing."""

    method: str
    group_size: int | None = None  # int4 only
    layout: str = "default"  # int4: "cpu" (Int4OpaqueTensor) or "cuda-tinygemm"
    int8_layers: tuple[str, ...] = ()  # int4: layers whose shape int4 cannot pack, in int8

    def to_dict(self) -> dict[str, Any]:
        import torchao

        data = dataclasses.asdict(self)
        data["int8_layers"] = list(self.int8_layers)
        return {**data, "torchao_version": torchao.__version__}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> QuantizationRecipe:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["int8_layers"] = tuple(fields.get("int8_layers", ()))
        recipe = cls(**fields)
        if recipe.method not in QUANTIZE_CHOICES:
            raise QuantizationError(
                f"{source}: quantization method {recipe.method!r} is not one of {QUANTIZE_CHOICES}"
            )
        return recipe


class _TorchaoImportNoise(logging.Filter):
    """Drops exactly the warnings torchao's import writes on a machine that lacks its optional
    kernels, and nothing else those loggers say.

    Why: transformers imports torchao whenever it is installed (its quantizer registry loads
    when any transformers model class is first used), so without this every run that builds or
    loads a transformers model (hrm_text, llama, --model-type hf) prints them, although nothing
    there quantizes; and where we do quantize (`--quantize`), the int8/int4 recipes use none of
    the kernels named. The messages:
    - `torchao`: "Failed to load .../torchao/_C_mxfp8...so: ..." (its fp8 / CUTLASS extensions,
      built for another CUDA or Python);
    - `torchao.kernel.intmm`: "Warning: Detected no triton, on systems without Triton certain
      kernels will not work";
    - `torch.utils._pytree`: "<enum ...> is an Enum subclass ... Calling register_constant() on
      Enum subclasses is deprecated", for torchao's enums only (torchao's call, not ours).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == "torchao":
            return not (message.startswith("Failed to load ") and "torchao" in message)
        if record.name == "torchao.kernel.intmm":
            return not message.startswith("Warning: Detected no triton")
        if record.name == "torch.utils._pytree":
            subject = record.args[0] if isinstance(record.args, tuple) and record.args else None
            from_torchao = str(getattr(subject, "__module__", "")).startswith("torchao")
            deprecated = "register_constant() on Enum subclasses is deprecated" in message
            return not (from_torchao and deprecated)
        return True


TORCHAO_NOISY_LOGGERS = ("torchao", "torchao.kernel.intmm", "torch.utils._pytree")


def silence_torchao_import_noise() -> None:
    """Install `_TorchaoImportNoise` on the loggers it reads (once; before torchao is imported,
    since the messages come at import). Called when `hrm_codegen.model` is imported."""
    for name in TORCHAO_NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TorchaoImportNoise) for f in logger.filters):
            logger.addFilter(_TorchaoImportNoise())


def import_torchao():
    """torchao, imported with its load-time chatter silenced (on a CPU build it warns about every
    CUDA extension it cannot load), and with an install hint when missing."""
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        import torchao
        import torchao.prototype.quantization.int4  # noqa: F401
        import torchao.quantization
    except ImportError as error:
        raise QuantizationError(
            f"quantization needs torchao ({error}); install it with pip install -e '.[quant]'"
        ) from error
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return torchao


def is_quantized(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a torchao quantized tensor (any of its tensor subclasses)."""
    from torchao.utils import TorchAOBaseTensor

    return isinstance(tensor, TorchAOBaseTensor)


def quantizable_linears(model: nn.Module) -> list[str]:
    """Names of the linear layers a recipe quantizes: every `nn.Linear` but `EXCLUDED_LINEARS`."""
    from torch import nn

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] not in EXCLUDED_LINEARS
    ]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_recipe(
    method: str, device: str | torch.device, group_size: int | None = None
) -> QuantizationRecipe:
    """The recipe for `--quantize METHOD` on `device` (int4's layout depends on the device)."""
    import torch

    if method not in QUANTIZE_CHOICES:
        raise QuantizationError(
            f"--quantize {method!r}: choose one of {', '.join(QUANTIZE_CHOICES)}"
        )
    device_type = torch.device(device).type
    if method != "int4":
        if group_size is not None:
            raise QuantizationError(f"group_size applies to int4 only, not to {method}")
        return QuantizationRecipe(method)
    group_size = group_size or DEFAULT_INT4_GROUP_SIZE
    layouts = {"cpu": ("cpu", (32, 64, 128)), "cuda": ("cuda-tinygemm", (32, 64, 128, 256))}
    if device_type not in layouts:
        raise QuantizationError(f"int4 has a CPU and a CUDA layout in torchao, not {device_type}")
    layout, sizes = layouts[device_type]
    if group_size not in sizes:
        raise QuantizationError(f"int4 on {device_type}: group_size must be one of {sizes}")
    return QuantizationRecipe("int4", group_size, layout)


def _int4_unpackable(module: nn.Linear, recipe: QuantizationRecipe) -> bool:
    """Whether int4 cannot pack this layer: an input width not a multiple of the group size, or
    (CPU layout) an output width not a multiple of 16, e.g. the LM head of GPT-2's 50257 tokens."""
    out_features, in_features = module.weight.shape
    return in_features % recipe.group_size != 0 or (
        recipe.layout == "cpu" and out_features % 16 != 0
    )


def _torchao_config(recipe: QuantizationRecipe):
    """The torchao config object behind a recipe."""
    import_torchao()
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if recipe.method == "int8":
        return Int8WeightOnlyConfig()
    if recipe.method == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if recipe.layout == "cpu":
        return PrototypeInt4WeightOnlyConfig(group_size=recipe.group_size)
    return Int4WeightOnlyConfig(
        group_size=recipe.group_size, int4_packing_format="tile_packed_to_4d"
    )


def quantization_of(model: nn.Module) -> QuantizationRecipe | None:
    """The recipe a model was quantized with, or None for a floating-point model."""
    return getattr(model, "quantization_recipe", None)


def quantize_model(model: nn.Module, method: str, *, group_size: int | None = None) -> nn.Module:
    """Quantize every projection of `model` in place with recipe `method`; returns the model.

    int4: a layer whose shape the int4 layout cannot pack is quantized to int8 instead, with a
    warning, and listed in the recipe's `int8_layers`. Raises when any layer is left in floating
    point, so a "quantized" model is never silently part float. int4 on CUDA needs bf16 weights
    (tinygemm); a float32 model is cast first, and said so. int4 keeps its scales in the dtype it
    was quantized from: cast the model before quantizing, not after.
    """
    import torch

    device = _model_device(model)
    recipe = make_recipe(method, device, group_size)
    done = quantization_of(model)
    if done is not None:
        if done.method == recipe.method:
            return model
        raise QuantizationError(
            f"the model is already quantized with {done.method}; load the floating-point "
            f"checkpoint to quantize it with {method}"
        )
    names = quantizable_linears(model)
    conv1d = [name for name, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    if conv1d or not names:
        raise QuantizationError(
            f"{type(model).__name__} has {'Conv1D projections' if conv1d else 'no nn.Linear'} "
            "(e.g. GPT-2); torchao's recipes quantize nn.Linear layers only"
        )
    if recipe.layout == "cuda-tinygemm" and next(model.parameters()).dtype != torch.bfloat16:
        print(  # stderr: stdout may be a streamed completion
            "int4 on CUDA (tinygemm) runs in bf16: casting the model to bf16 first", file=sys.stderr
        )
        model.to(torch.bfloat16)
    import_torchao()
    from torchao.quantization import quantize_

    modules = dict(model.named_modules())
    if recipe.method == "int4":
        fallback = tuple(name for name in names if _int4_unpackable(modules[name], recipe))
        if fallback:
            warnings.warn(
                f"int4 cannot pack {list(fallback)} (group_size={recipe.group_size}, layout "
                f"{recipe.layout}); quantizing them to int8 instead",
                stacklevel=2,
            )
            recipe = dataclasses.replace(recipe, int8_layers=fallback)
    plan = [(set(names) - set(recipe.int8_layers), _torchao_config(recipe))]
    if recipe.int8_layers:
        plan.append((set(recipe.int8_layers), _torchao_config(QuantizationRecipe("int8"))))
    with torch.no_grad():
        for chosen, config in plan:
            quantize_(model, config, filter_fn=lambda module, name, chosen=chosen: name in chosen)
    left = [name for name in names if not is_quantized(modules[name].weight)]
    if left:
        raise QuantizationError(
            f"{method}: torchao left {len(left)} layer(s) in floating point ({left[:4]}); for "
            f"int4 every input width must be a multiple of group_size={recipe.group_size}"
        )
    model.quantization_recipe = recipe
    return model


def save_quantized(model: nn.Module, directory: str | Path) -> Path:
    """Write a quantized model of ours as `config.json` (with the recipe) + `model.quantized.pt`."""
    import torch

    recipe = quantization_of(model)
    if recipe is None:
        raise QuantizationError("the model is not quantized; use save_pretrained")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": model.model_type,
        **dataclasses.asdict(model.config),
        "quantization": recipe.to_dict(),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(model.state_dict(), directory / QUANTIZED_WEIGHTS_NAME)
    return directory


def load_quantized(
    model_class: type,
    config: Any,
    recipe_data: dict[str, Any],
    directory: Path,
    device: torch.device | str | None = None,
):
    """Rebuild a model saved by `save_quantized` (called by `from_pretrained`).

    The quantized tensors are assigned as they were saved (no re-quantization); int4 packing is
    device-specific, so an int4 checkpoint loads only on the device type it was quantized for.
    """
    import torch

    recipe = QuantizationRecipe.from_dict(recipe_data, str(directory / "config.json"))
    path = directory / QUANTIZED_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: config.json says the model is quantized")
    target = torch.device(device) if device is not None else torch.device("cpu")
    wanted = {"cpu": "cpu", "cuda-tinygemm": "cuda"}.get(recipe.layout)
    if wanted is not None and target.type != wanted:
        raise QuantizationError(
            f"{directory} holds int4 weights packed for {wanted}; int4 layouts differ by device, "
            f"so quantize the floating-point checkpoint on {target.type} instead"
        )
    import_torchao()
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # no float weights to build and throw away: the file has them all
        model = model_class(config)
    with torch.no_grad():
        model.load_state_dict(state, strict=True, assign=True)
    model.quantization_recipe = recipe
    return model.to(target)
