"""LoRA adapters (peft) on the UNet attention projections and optionally the CLIP text encoder,
and their kohya / A1111 file format.

Per adapted linear layer W (out x in), LoRA adds (alpha / r) * B A x with A = lora_down (r x in)
and B = lora_up (out x r). peft names them lora_A / lora_B; kohya files name the module path with
dots turned into underscores under ``lora_unet_`` / ``lora_te_``, plus a scalar ``.alpha``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}


def add_lora(model: Any, rank: int, alpha: float, train_text_encoder: bool, seed: int) -> None:
    """Freeze the model, then add trainable LoRA layers (lora_A drawn from `seed`, lora_B zero).

    The text encoder gets its adapter from peft directly, not through transformers' `add_adapter`,
    whose peft version demands change between transformers releases (5.24 asks for an unreleased peft).
    """
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    for part in (model.unet, model.vae, model.text_encoder):
        part.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.unet.add_adapter(
            LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=UNET_TARGETS)
        )
        if train_text_encoder:
            inject_adapter_in_model(
                LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=TEXT_ENCODER_TARGETS),
                model.text_encoder,
            )


def trainable(module: Any) -> dict[str, Any]:
    """The trainable parameters of a module by name, in registration order (stable across runs)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def lora_tensors(model: Any, train_text_encoder: bool) -> dict[str, Any]:
    """Every LoRA parameter as ``part.module.path.lora_A.weight`` (peft names without the adapter name)."""
    from peft.utils import get_peft_model_state_dict

    parts = {"unet": model.unet}
    if train_text_encoder:
        parts["text_encoder"] = model.text_encoder
    out = {}
    for part, module in parts.items():
        for name, tensor in get_peft_model_state_dict(module).items():
            out[f"{part}.{name}"] = tensor
    return out


def to_kohya(tensors: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """peft names -> kohya names: ``lora_unet_<path_with_underscores>.lora_down.weight`` etc."""
    import torch

    out: dict[str, Any] = {}
    for name, tensor in tensors.items():
        part, _, rest = name.partition(".")
        module, _, kind = rest.rpartition(".lora_")
        which = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}.get(kind)
        if which is None:
            raise ValueError(f"unexpected LoRA tensor {name!r}")
        if part == "text_encoder" and not module.startswith("text_model."):
            module = "text_model." + module  # transformers 5 flattened CLIPTextModel; kohya names keep the old path
        base = KOHYA_PREFIX[part] + module.replace(".", "_")
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
