"""LoRA adapters (peft) on the UNet attention projections and optionally the CLIP text encoder(s),
and their kohya / A1111 file format.

Per adapted linear layer W (out x in), LoRA adds (alpha / r) * B A x with A = lora_down (r x in)
and B = lora_up (out x r). peft names them lora_A / lora_B; kohya files name the module path
(lora_sched.train.kohya_names: SD's diffusers paths, SDXL's SGM ones) with dots turned into
underscores under ``lora_unet_`` / ``lora_te_`` (SDXL: ``lora_te1_`` / ``lora_te2_``), plus a
scalar ``.alpha``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def add_lora(model: Any, rank: int, alpha: float, train_text_encoder: bool, seed: int) -> None:
    """Freeze the model, then add trainable LoRA layers (lora_A drawn from `seed`, lora_B zero).

    The text encoders get their adapters from peft directly, not through transformers' `add_adapter`,
    whose peft version demands change between transformers releases (5.24 asks for an unreleased peft).
    """
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    for part in model.modules().values():
        part.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.unet.add_adapter(
            LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=UNET_TARGETS)
        )
        if train_text_encoder:
            for name, encoder in text_encoders(model).items():
                targets = _text_encoder_targets(encoder, skip_last=model.is_sdxl and name == "text_encoder")
                inject_adapter_in_model(
                    LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=targets), encoder
                )


def text_encoders(model: Any) -> dict[str, Any]:
    """The text encoders by component name (text_encoder[, text_encoder_2])."""
    return {name: part for name, part in model.modules().items() if name.startswith("text_encoder")}


def _text_encoder_targets(encoder: Any, skip_last: bool) -> Any:
    """The attention projections of every layer; without the last layer's when only the penultimate
    hidden state is read (SDXL's first encoder): those would get no gradient, and DDP refuses
    parameters that take no part in the loss."""
    if not skip_last:
        return TEXT_ENCODER_TARGETS
    kept = "|".join(str(i) for i in range(encoder.config.num_hidden_layers - 1))
    return rf".*\.layers\.({kept})\.self_attn\.({'|'.join(TEXT_ENCODER_TARGETS)})"


def trainable(module: Any) -> dict[str, Any]:
    """The trainable parameters of a module by name, in registration order (stable across runs)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def lora_tensors(model: Any, train_text_encoder: bool) -> dict[str, Any]:
    """Every LoRA parameter as ``part.module.path.lora_A.weight`` (peft names without the adapter name)."""
    from peft.utils import get_peft_model_state_dict

    parts = {"unet": model.unet}
    if train_text_encoder:
        parts.update(text_encoders(model))
    out = {}
    for part, module in parts.items():
        for name, tensor in get_peft_model_state_dict(module).items():
            out[f"{part}.{name}"] = tensor
    return out


def to_kohya(tensors: Mapping[str, Any], alpha: float, sdxl_layers_per_block: int | None = None) -> dict[str, Any]:
    """peft names -> kohya names: ``lora_unet_<path_with_underscores>.lora_down.weight`` etc.
    (`sdxl_layers_per_block`: the UNet's, for an SDXL model, whose kohya names differ)."""
    import torch

    from lora_sched.train.kohya_names import kohya_module_name

    out: dict[str, Any] = {}
    for name, tensor in tensors.items():
        part, _, rest = name.partition(".")
        module, _, kind = rest.rpartition(".lora_")
        which = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}.get(kind)
        if which is None:
            raise ValueError(f"unexpected LoRA tensor {name!r}")
        if part.startswith("text_encoder") and not module.startswith("text_model."):
            module = "text_model." + module  # transformers 5 flattened CLIPTextModel; kohya names keep the old path
        base = kohya_module_name(part, module, sdxl_layers_per_block)
        out[f"{base}.{which}"] = tensor.detach().to("cpu", torch.float32).contiguous()
        out[f"{base}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
    return out


def save_safetensors_atomic(tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a .safetensors file atomically and durably (temp file, fsync, os.replace): never a half file."""
    from safetensors.torch import save

    from lora_sched.config.writer import atomic_write_bytes

    atomic_write_bytes(path, save(dict(tensors), metadata=dict(metadata) if metadata else None))


def kohya_metadata(info: Mapping[str, Any]) -> dict[str, str]:
    """`ss_*` metadata (all strings, as safetensors requires): JSON for structures, str() otherwise."""
    out = {}
    for key, value in info.items():
        if value is None:
            continue
        out[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
    return out
