"""LoRA adapters (peft) on the modules sd-scripts' networks.lora adapts, and their kohya / A1111 file format.

Which modules: as LoRANetwork walks the model, every ``Linear`` and ``Conv2d`` inside the UNet's
``Transformer2DModel`` blocks and inside the text encoders' ``CLIPAttention`` / ``CLIPMLP`` (q/k/v/out_proj,
fc1, fc2); with conv_dim in network_args also those inside ``ResnetBlock2D`` / ``Downsample2D`` /
``Upsample2D`` (3x3 convs at conv_dim / conv_alpha, their Linear and 1x1 convs at network_dim). Class
names are compared as sd-scripts compares them (``__class__.__name__``), and diffusers' and
transformers' classes carry the names sd-scripts looks for.

Per adapted layer W, LoRA adds (alpha / r) * B A x with A = lora_down (r x in; for a conv, a conv of
W's kernel) and B = lora_up (out x r). peft names them lora_A / lora_B; kohya files name the module
path (lora_sched.train.kohya_names: SD's diffusers paths, SDXL's SGM ones) with dots turned into
underscores under ``lora_unet_`` / ``lora_te_`` (SDXL: ``lora_te1_`` / ``lora_te2_``), plus a scalar
``.alpha``. With a dropout set (network_dropout, rank_dropout, module_dropout) each LoRA layer runs
sd-scripts' LoRAModule.forward instead of peft's (peft drops the layer's input, sd-scripts the rank-r
activations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.train.kohya_names import kohya_block_index, kohya_module_name
from lora_sched.train.network import NetworkSettings

#: Blocks whose layers networks.lora adapts (LoRANetwork's *_TARGET_REPLACE_MODULE).
UNET_BLOCKS = ("Transformer2DModel",)
UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TEXT_ENCODER_BLOCKS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")
#: peft's adapter name.
ADAPTER = "default"


class LoraShape(NamedTuple):
    """Rank and alpha of one adapted layer."""

    rank: int
    alpha: float


def add_lora(model: Any, network: NetworkSettings, train_text_encoder: bool, seed: int) -> None:
    """Freeze the model, then add LoRA layers (lora_A drawn from `seed`, lora_B zero) to the modules
    networks.lora adapts, each with its rank and alpha.

    The text encoders get their adapters from peft directly, not through transformers' `add_adapter`,
    whose peft version demands change between transformers releases (5.24 asks for an unreleased peft).
    SDXL's first text encoder is read at its penultimate layer: its last layer's LoRA (which
    sd-scripts creates and saves, untrained) is kept frozen, since DDP refuses parameters that take
    no part in the loss.
    """
    import torch
    from peft import inject_adapter_in_model

    for part in model.modules().values():
        part.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        targets = unet_targets(model, network)
        if targets:
            model.unet.add_adapter(_lora_config(targets, network))
        if train_text_encoder:
            for name, encoder in text_encoders(model).items():
                targets = text_encoder_targets(encoder, network)
                if targets:
                    inject_adapter_in_model(_lora_config(targets, network), encoder)
                if model.is_sdxl and name == "text_encoder":
                    _freeze_last_layer(encoder)
    if network.has_dropout:
        for part in lora_parts(model, train_text_encoder).values():
            for layer in _lora_layers(part).values():
                _use_kohya_forward(layer, network)


def unet_targets(model: Any, network: NetworkSettings) -> dict[str, LoraShape]:
    """The UNet modules networks.lora adapts, by module path, with their rank and alpha."""
    blocks = UNET_BLOCKS + (UNET_CONV_BLOCKS if network.conv_dim is not None or network.conv_block_dims else ())
    sdxl_layers = int(model.unet.config.layers_per_block) if model.is_sdxl else None
    per_block = network.block_settings(model.is_sdxl) if network.uses_blocks else None
    out = {}
    for path, kind in _walk(model.unet, blocks):
        if per_block is not None:
            index = kohya_block_index(kohya_module_name("unet", path, sdxl_layers), model.is_sdxl)
            shape = _block_shape(kind, index, *per_block)
        else:
            shape = _plain_shape(kind, network)
        if shape is not None:
            out[path] = shape
    return out


def text_encoder_targets(encoder: Any, network: NetworkSettings) -> dict[str, LoraShape]:
    """A text encoder's modules networks.lora adapts (all at network_dim / network_alpha)."""
    out = {}
    for path, kind in _walk(encoder, TEXT_ENCODER_BLOCKS):
        shape = _plain_shape(kind, network)
        if shape is not None:
            out[path] = shape
    return out


def _walk(root: Any, blocks: tuple[str, ...]) -> list[tuple[str, str]]:
    """(path, kind) of every Linear / Conv2d inside a module whose class is one of `blocks`, in
    LoRANetwork's order; kind is "linear", "conv1x1" or "conv" (any other kernel)."""
    found: dict[str, str] = {}
    for name, module in root.named_modules():
        if type(module).__name__ not in blocks:
            continue
        for child_name, child in module.named_modules():
            kind = _layer_kind(child)
            if kind is not None:
                found.setdefault(f"{name}.{child_name}" if child_name else name, kind)
    return list(found.items())


def _layer_kind(module: Any) -> str | None:
    """sd-scripts tests the class name itself: a subclass of Linear is not adapted."""
    cls = type(module).__name__
    if cls == "Linear":
        return "linear"
    if cls == "Conv2d":
        return "conv1x1" if tuple(module.kernel_size) == (1, 1) else "conv"
    return None


def _plain_shape(kind: str, network: NetworkSettings) -> LoraShape | None:
    """network_dim / network_alpha for Linear and 1x1 convs, conv_dim / conv_alpha for other convs;
    None for a rank of 0 (sd-scripts skips the module)."""
    if kind != "conv":
        return _shape(network.dim, network.alpha)
    if network.conv_dim is None:
        return None
    return _shape(network.conv_dim, 1.0 if network.conv_alpha is None else network.conv_alpha)


def _block_shape(
    kind: str, index: int, dims: list, alphas: list, conv_dims: list | None, conv_alphas: list | None
) -> LoraShape | None:
    """The rank and alpha of UNet block `index` (block_dims and kin)."""
    if kind != "conv":
        return _shape(dims[index], alphas[index])
    if conv_dims is None or conv_alphas is None:
        return None
    return _shape(conv_dims[index], conv_alphas[index])


def _shape(rank: int, alpha: float) -> LoraShape | None:
    """As LoRAModule: rank 0 means no module; alpha 0 means alpha = rank (a scale of 1)."""
    if rank == 0:
        return None
    return LoraShape(int(rank), float(rank) if alpha == 0 else float(alpha))


def _lora_config(targets: Mapping[str, LoraShape], network: NetworkSettings) -> Any:
    """A peft config adapting exactly `targets` (full module paths), each at its own rank and alpha."""
    from peft import LoraConfig

    rank = {re.escape(p): s.rank for p, s in targets.items() if s.rank != network.dim}
    alpha = {re.escape(p): s.alpha for p, s in targets.items() if s.alpha != network.alpha}
    return LoraConfig(
        r=network.dim,
        lora_alpha=network.alpha,
        init_lora_weights=True,
        target_modules=sorted(targets),
        rank_pattern=rank,
        alpha_pattern=alpha,
    )


def _freeze_last_layer(encoder: Any) -> None:
    """Freeze the LoRA of an encoder's last layer (read at the penultimate one, it gets no gradient)."""
    last = f"layers.{encoder.config.num_hidden_layers - 1}."
    for name, param in encoder.named_parameters():
        if ".lora_" in name and last in name:
            param.requires_grad_(False)


def _lora_layers(root: Any) -> dict[str, Any]:
    """peft's LoRA layers under `root` by module path."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in root.named_modules() if isinstance(m, LoraLayer)}


def _use_kohya_forward(layer: Any, network: NetworkSettings) -> None:
    """Make a peft LoRA layer compute sd-scripts' LoRAModule.forward (multiplier 1), dropouts included."""
    base = layer.base_layer
    lora_down, lora_up = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
    scale = float(layer.scaling[ADAPTER])
    rank = int(layer.r[ADAPTER])

    def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
        out = base(x, *args, **kwargs)
        if layer.disable_adapters or ADAPTER not in layer.active_adapters:
            return out
        return out + kohya_lora_delta(x, lora_down, lora_up, scale, rank, network, layer.training).to(out.dtype)

    layer.forward = forward


def kohya_lora_delta(
    x: Any, lora_down: Any, lora_up: Any, scale: float, rank: int, network: NetworkSettings, training: bool
) -> Any:
    """What LoRAModule.forward adds to the layer's output, in its order of random draws: module
    dropout (torch.rand(1) per call: skip the LoRA), dropout on lora_down's output, rank dropout (a
    (batch, rank) mask, the kept ranks scaled by 1 / (1 - p)); dropouts act only in training."""
    import torch

    if network.module_dropout is not None and training and torch.rand(1) < network.module_dropout:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    lx = lora_down(x.to(lora_down.weight.dtype))
    if network.dropout is not None and training:
        lx = torch.nn.functional.dropout(lx, p=network.dropout)
    if network.rank_dropout is not None and training:
        mask = torch.rand((lx.size(0), rank), device=lx.device) > network.rank_dropout
        if lx.dim() == 3:
            mask = mask.unsqueeze(1)  # (batch, tokens, rank)
        elif lx.dim() == 4:
            mask = mask.unsqueeze(-1).unsqueeze(-1)  # a conv's (batch, rank, h, w)
        lx = lx * mask
        scale = scale * (1.0 / (1.0 - network.rank_dropout))
    return lora_up(lx) * scale


def text_encoders(model: Any) -> dict[str, Any]:
    """The text encoders by component name (text_encoder[, text_encoder_2])."""
    return {name: part for name, part in model.modules().items() if name.startswith("text_encoder")}


def lora_parts(model: Any, train_text_encoder: bool) -> dict[str, Any]:
    """The model parts that carry LoRA layers, by component name."""
    parts = {"unet": model.unet}
    if train_text_encoder:
        parts.update(text_encoders(model))
    return parts


def trainable(module: Any) -> dict[str, Any]:
    """The trainable parameters of a module by name, in registration order (stable across runs)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def lora_tensors(model: Any, train_text_encoder: bool) -> dict[str, Any]:
    """Every LoRA parameter as ``part.module.path.lora_A.weight`` (peft names without the adapter name)."""
    from peft.utils import get_peft_model_state_dict

    out = {}
    for part, module in lora_parts(model, train_text_encoder).items():
        if not _lora_layers(module):
            continue  # every rank 0: no adapter was added
        for name, tensor in get_peft_model_state_dict(module).items():
            out[f"{part}.{name}"] = tensor
    return out


def lora_alphas(model: Any, train_text_encoder: bool) -> dict[str, float]:
    """Each LoRA layer's alpha as ``part.module.path`` (the keys of lora_tensors less the lora_A / lora_B tail)."""
    return {
        f"{part}.{path}": float(layer.lora_alpha[ADAPTER])
        for part, module in lora_parts(model, train_text_encoder).items()
        for path, layer in _lora_layers(module).items()
    }


def to_kohya(
    tensors: Mapping[str, Any], alpha: float | Mapping[str, float], sdxl_layers_per_block: int | None = None
) -> dict[str, Any]:
    """peft names -> kohya names: ``lora_unet_<path_with_underscores>.lora_down.weight`` etc.
    (`alpha`: one for every module, or each module's by ``part.module.path`` as lora_alphas gives;
    `sdxl_layers_per_block`: the UNet's, for an SDXL model, whose kohya names differ)."""
    import torch

    out: dict[str, Any] = {}
    for name, tensor in tensors.items():
        part, _, rest = name.partition(".")
        module, _, kind = rest.rpartition(".lora_")
        which = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}.get(kind)
        if which is None:
            raise ValueError(f"unexpected LoRA tensor {name!r}")
        module_alpha = alpha[f"{part}.{module}"] if isinstance(alpha, Mapping) else alpha
        if part.startswith("text_encoder") and not module.startswith("text_model."):
            module = "text_model." + module  # transformers 5 flattened CLIPTextModel; kohya names keep the old path
        base = kohya_module_name(part, module, sdxl_layers_per_block)
        out[f"{base}.{which}"] = tensor.detach().to("cpu", torch.float32).contiguous()
        out[f"{base}.alpha"] = torch.tensor(float(module_alpha), dtype=torch.float32)
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
