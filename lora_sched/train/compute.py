"""How the forward and backward passes run: mixed precision, the attention kernel, gradient checkpointing.

These are the settings that make a real model fit on a GPU. As in sd-scripts (train_network.py):

- ``mixed_precision = "bf16"`` / ``"fp16"``: the frozen weights of the UNet and text encoder(s) are
  stored in that type (half the memory), the LoRA weights and their optimizer state stay float32,
  and the text encoding and the UNet forward run under accelerate's autocast. fp16 gradients are
  scaled (accelerate's GradScaler, through ``accelerator.backward``; a step whose gradients overflow
  is skipped, the LR schedule still advances).
- ``full_bf16`` / ``full_fp16``: the LoRA weights, their gradients and the optimizer state in the half
  type too (sd-scripts' ``network.to(weight_dtype)``); each needs the matching mixed_precision. For
  full_fp16 the gradient scaler is allowed to unscale fp16 gradients (sd-scripts'
  ``patch_accelerator_for_fp16_training``).
- the VAE encodes the latents (and decodes sample images) in the half type too, unless
  ``no_half_vae`` keeps it float32 (SDXL's VAE overflows in fp16: its latents turn to NaN).
- ``gradient_checkpointing``: activations are recomputed in the backward pass (UNet, and the text
  encoder when it is trained): same gradients, much less memory, about a third slower.
- attention: PyTorch's scaled-dot-product attention (``sdpa``); ``xformers`` where that package is
  installed and a GPU is there; ``mem_eff_attn`` (sd-scripts' own kernel) runs on SDPA, which has one.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)


class ComputeOptions(NamedTuple):
    """What a run computes with, decided once from the config and the machine."""

    mixed_precision: str  #: "no", "fp16" or "bf16": what runs (fp16 on a CPU runs as "no")
    gradient_checkpointing: bool
    attention: str  #: "sdpa" or "xformers"
    full_half: bool = False  #: full_fp16 / full_bf16: the LoRA weights in the half type too
    no_half_vae: bool = False  #: the VAE stays float32 under mixed precision


def compute_options(values: dict, on_cpu: bool) -> ComputeOptions:
    """The config's precision, checkpointing and attention keys, with a notice where this machine
    cannot do what the file asks and a faithful substitute exists, and a ConfigError where none does."""
    requested = str(values.get("mixed_precision") or "no")
    full_half = _full_half(requested, bool(values.get("full_fp16")), bool(values.get("full_bf16")), on_cpu)
    return ComputeOptions(
        mixed_precision=_mixed_precision(requested, on_cpu),
        gradient_checkpointing=bool(values.get("gradient_checkpointing")),
        attention=_attention(values, on_cpu),
        full_half=full_half,
        no_half_vae=bool(values.get("no_half_vae")),
    )


def _full_half(mixed_precision: str, full_fp16: bool, full_bf16: bool, on_cpu: bool) -> bool:
    """Whether the LoRA weights train in the half type, with sd-scripts' checks as ConfigErrors:
    full_fp16 needs mixed_precision "fp16" and full_bf16 "bf16" (sd-scripts tests full_fp16 first,
    so with both set full_fp16 decides). full_fp16 needs a GPU: fp16 runs as float32 on a CPU, and
    the LoRA weights cannot be trained "in fp16" there."""
    found = f'mixed_precision is "{mixed_precision}": '
    if full_fp16:
        expected = 'true only with mixed_precision = "fp16" (as sd-scripts asserts)'
        hint = 'set mixed_precision = "fp16", or use full_bf16 with mixed_precision = "bf16", or remove full_fp16'
        _require(mixed_precision == "fp16", "full_fp16", expected, found + hint)
        expected = "a GPU (fp16 has no CPU kernels: on this machine fp16 runs as float32)"
        hint = 'on a CPU use mixed_precision = "bf16" with full_bf16 = true, or remove full_fp16 (or train on a GPU)'
        _require(not on_cpu, "full_fp16", expected, hint)
        if full_bf16:
            _notice("full_fp16 and full_bf16 are both set: as in sd-scripts, full_fp16 decides (full_bf16 is ignored)")
        return True
    if full_bf16:
        expected = 'true only with mixed_precision = "bf16" (as sd-scripts asserts)'
        _require(
            mixed_precision == "bf16",
            "full_bf16",
            expected,
            found + 'set mixed_precision = "bf16", or remove full_bf16',
        )
    return full_bf16


def _require(holds: bool, key: str, expected: str, hint: str) -> None:
    """A ConfigError at `key` (whose value is true) unless the condition `holds`."""
    if not holds:
        raise ConfigError(problem(key, expected, True, hint))


def _mixed_precision(requested: str, on_cpu: bool) -> str:
    """fp16 autocast has no CPU kernels (accelerate would silently run float32): say so, run float32."""
    if requested == "fp16" and on_cpu:
        _notice(
            'mixed_precision = "fp16": this machine has no GPU and fp16 autocast needs one; '
            'this run computes in float32 (bf16 works on a CPU: mixed_precision = "bf16")'
        )
        return "no"
    return requested


def _attention(values: dict, on_cpu: bool) -> str:
    if values.get("mem_eff_attn") and not values.get("xformers"):
        _notice("mem_eff_attn = true: attention runs on PyTorch's SDPA, which has a memory-efficient kernel")
    if not values.get("xformers"):
        return "sdpa"
    if importlib.util.find_spec("xformers") is None:
        _notice(
            "xformers = true: the xformers package is not installed; attention runs on PyTorch's SDPA "
            "(the same attention, with memory-efficient kernels of its own; pip install xformers to use it)"
        )
        return "sdpa"
    if on_cpu:
        _notice("xformers = true: xformers needs a GPU; on this CPU attention runs on PyTorch's SDPA")
        return "sdpa"
    return "xformers"


def _notice(text: str) -> None:
    log.warning(f"notice: {text}")


def set_attention(unet: Any, attention: str) -> None:
    """Every attention layer of the UNet on SDPA (diffusers' AttnProcessor2_0) or on xformers."""
    if attention == "xformers":
        unet.enable_xformers_memory_efficient_attention()
        return
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())


def enable_checkpointing(unet: Any, text_encoder: Any | None) -> None:
    """Gradient checkpointing on the UNet and (when trained) the text encoder.

    Non-reentrant checkpointing: the reentrant kind drops the gradients of LoRA weights inside a
    block whose inputs need none (a frozen embedding feeds the text encoder's first layer). The
    text encoder must be in training mode: transformers checkpoints only then (CLIP has no dropout,
    so the mode changes nothing else).
    """
    unet.enable_gradient_checkpointing()
    if text_encoder is not None:
        kwargs = {"use_reentrant": False}
        enable = getattr(text_encoder, "activation_checkpointing_enable", None)  # transformers 5's name
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers 4.x
            text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        text_encoder.train()


def weight_dtype(mixed_precision: str) -> Any:
    """The type frozen weights are stored in (None: float32, as loaded)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)


def vae_dtype(options: ComputeOptions) -> Any:
    """The type the VAE encodes and decodes in: sd-scripts' weight type, float32 with no_half_vae
    (None: float32, as loaded)."""
    return None if options.no_half_vae else weight_dtype(options.mixed_precision)


def cast_vae(vae: Any, options: ComputeOptions) -> None:
    """The VAE to its type (vae_dtype), before it encodes the latents. diffusers warns at every such
    cast that a model loaded with torch_dtype might keep some modules float32; SD's VAE has none."""
    from diffusers.utils import logging as diffusers_logging

    dtype = vae_dtype(options)
    if dtype is None:
        return
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        vae.to(dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(level)


def cast_frozen_weights(parts: list[Any], mixed_precision: str, full_half: bool = False) -> None:
    """Frozen parameters to the half type; trainable (LoRA) ones to float32, so that the updates
    land on full-precision weights, or (`full_half`: full_fp16 / full_bf16) to the half type too."""
    import torch

    dtype = weight_dtype(mixed_precision)
    if dtype is None:
        return
    trained = dtype if full_half else torch.float32
    for part in parts:
        for param in part.parameters():
            param.data = param.data.to(trained if param.requires_grad else dtype)


def apply_compute(model: Any, options: ComputeOptions, train_te: bool) -> None:
    """Checkpointing and dtypes on a model that has its LoRA layers (the attention is set at load)."""
    encoders = [part for name, part in model.modules().items() if name.startswith("text_encoder")]
    if options.gradient_checkpointing:
        for encoder in encoders if train_te else [None]:  # SDXL: both text encoders
            enable_checkpointing(model.unet, encoder)
    cast_frozen_weights([model.unet, *encoders], options.mixed_precision, options.full_half)


def prepare_accelerator(accelerator: Any, options: ComputeOptions) -> None:
    """full_fp16: let the gradient scaler unscale fp16 gradients (torch's GradScaler refuses them:
    it expects float32 weights under autocast), as sd-scripts' patch_accelerator_for_fp16_training."""
    scaler = getattr(accelerator, "scaler", None)
    if options.full_half and options.mixed_precision == "fp16" and scaler is not None:
        allow_fp16_unscale(scaler)


def allow_fp16_unscale(scaler: Any) -> None:
    """Make `scaler` unscale fp16 gradients (its `_unscale_grads_` called with allow_fp16=True)."""
    unscale = scaler._unscale_grads_

    def unscale_fp16_too(optimizer: Any, inv_scale: Any, found_inf: Any, allow_fp16: bool) -> Any:
        return unscale(optimizer, inv_scale, found_inf, True)

    scaler._unscale_grads_ = unscale_fp16_too


def no_accelerator() -> bool:
    """Whether this machine has no GPU (CUDA, XPU or MPS): the run computes on the CPU."""
    import torch

    if torch.cuda.is_available():
        return False
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return False
    return not torch.backends.mps.is_available()
