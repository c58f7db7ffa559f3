"""How the forward and backward passes run: mixed precision, the attention kernel, gradient checkpointing.

These are the settings that make a real model fit on a GPU. As in sd-scripts:

- ``mixed_precision = "bf16"`` / ``"fp16"``: the frozen weights of the UNet and text encoder are
  stored in that type (half the memory), the LoRA weights and their optimizer state stay float32,
  and the forward runs under autocast (accelerate's). fp16 gradients are scaled (accelerate's
  GradScaler, through ``accelerator.backward``; a step whose gradients overflow is skipped, the LR
  schedule still advances). The VAE stays float32: it only encodes the latents once.
- ``gradient_checkpointing``: activations are recomputed in the backward pass (UNet, and the text
  encoder when it is trained): same gradients, much less memory, about a third slower.
- attention: PyTorch's scaled-dot-product attention (``sdpa``); ``xformers`` where that package is
  installed and a GPU is there; ``mem_eff_attn`` (sd-scripts' own kernel) runs on SDPA, which has one.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, NamedTuple


class ComputeOptions(NamedTuple):
    """What a run computes with, decided once from the config and the machine."""

    mixed_precision: str  #: "no", "fp16" or "bf16": what runs (fp16 on a CPU runs as "no")
    gradient_checkpointing: bool
    attention: str  #: "sdpa" or "xformers"


def compute_options(values: dict, on_cpu: bool) -> ComputeOptions:
    """The config's precision, checkpointing and attention keys, with a notice where this machine
    cannot do what the file asks and a faithful substitute exists."""
    return ComputeOptions(
        mixed_precision=_mixed_precision(str(values.get("mixed_precision") or "no"), on_cpu),
        gradient_checkpointing=bool(values.get("gradient_checkpointing")),
        attention=_attention(values, on_cpu),
    )


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
    print(f"notice: {text}", file=sys.stderr)


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


def cast_frozen_weights(parts: list[Any], mixed_precision: str) -> None:
    """Frozen parameters to the half type, trainable (LoRA) ones to float32: the weights updates
    land on keep full precision, the base model takes half the memory."""
    import torch

    dtype = weight_dtype(mixed_precision)
    if dtype is None:
        return
    for part in parts:
        for param in part.parameters():
            param.data = param.data.to(torch.float32 if param.requires_grad else dtype)


def apply_compute(model: Any, options: ComputeOptions, train_te: bool) -> None:
    """Checkpointing and dtypes on a model that has its LoRA layers (the attention is set at load)."""
    encoders = [part for name, part in model.modules().items() if name.startswith("text_encoder")]
    if options.gradient_checkpointing:
        for encoder in encoders if train_te else [None]:  # SDXL: both text encoders
            enable_checkpointing(model.unet, encoder)
    cast_frozen_weights([model.unet, *encoders], options.mixed_precision)


def no_accelerator() -> bool:
    """Whether this machine has no GPU (CUDA, XPU or MPS): the run computes on the CPU."""
    import torch

    if torch.cuda.is_available():
        return False
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return False
    return not torch.backends.mps.is_available()
