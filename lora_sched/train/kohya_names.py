"""Module names in kohya LoRA files.

SD 1.x / 2.x: sd-scripts' UNet names its modules as diffusers does, so a kohya name is the
diffusers path with dots as underscores (``lora_unet_down_blocks_0_attentions_0_...``), and the
text encoder's is ``lora_te_text_model_...``.

SDXL: sd-scripts' SDXL UNet keeps the original (SGM / LDM) layout, so its names count
``input_blocks`` / ``middle_block`` / ``output_blocks``: with L layers per block, down block i's
layer j is ``input_blocks.{(L+1)i + j + 1}`` (``.0`` its ResNet, ``.1`` its attention) and its
downsampler ``input_blocks.{(L+1)(i+1)}.0.op``; the mid block is ``middle_block.0`` (ResNet),
``.1`` (attention), ``.2`` (ResNet); up block i's layer j is ``output_blocks.{(L+1)i + j}`` and its
upsampler the last entry of its last layer. Inside a ResNet, the SGM names of its layers differ
too (``conv1`` is ``in_layers.2``, ...); attention modules are named alike in both. The text encoders
are ``lora_te1_`` / ``lora_te2_``.
"""

from __future__ import annotations

import re

#: Prefix of each model part's modules in a kohya file.
SD_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
SDXL_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


def sdxl_unet_path(path: str, layers_per_block: int, up_attention: frozenset[int] = frozenset({0, 1})) -> str:
    """The SGM path of a diffusers SDXL UNet module path (`up_attention`: the up blocks that have
    attention, where an upsampler comes after it)."""
    parts = path.split(".")
    per = layers_per_block + 1
    head, rest = parts[0], parts[1:]
    if head == "down_blocks" and len(rest) >= 3:
        i, kind, j = int(rest[0]), rest[1], int(rest[2])
        if kind == "downsamplers":
            return _join(f"input_blocks.{per * (i + 1)}.0.op", rest[4:] if rest[3:4] == ["conv"] else rest[3:])
        return _join(f"input_blocks.{per * i + j + 1}.{_SLOT[kind]}", _inner(kind, rest[3:]))
    if head == "mid_block" and len(rest) >= 2:
        kind, j = rest[0], int(rest[1])
        return _join(f"middle_block.{1 if kind == 'attentions' else 2 * j}", _inner(kind, rest[2:]))
    if head == "up_blocks" and len(rest) >= 3:
        i, kind, j = int(rest[0]), rest[1], int(rest[2])
        if kind == "upsamplers":
            slot = 2 if i in up_attention else 1
            return _join(f"output_blocks.{per * i + layers_per_block}.{slot}", rest[3:])
        return _join(f"output_blocks.{per * i + j}.{_SLOT[kind]}", _inner(kind, rest[3:]))
    raise ValueError(f"no SDXL (SGM) name for UNet module {path!r}")


_SLOT = {"resnets": 0, "attentions": 1}
#: A ResNet's layers: diffusers name -> SGM name.
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _inner(kind: str, rest: list[str]) -> list[str]:
    if kind != "resnets" or not rest or rest[0] not in _RESNET:
        return rest
    return [*_RESNET[rest[0]].split("."), *rest[1:]]


def _join(base: str, rest: list[str]) -> str:
    return ".".join([base, *rest])


def kohya_module_name(part: str, path: str, sdxl_layers_per_block: int | None = None) -> str:
    """``lora_<part>_<path with underscores>``; SDXL UNet paths in SGM layout first."""
    if sdxl_layers_per_block is None:
        return SD_PREFIX[part] + path.replace(".", "_")
    if part == "unet":
        path = sdxl_unet_path(path, sdxl_layers_per_block)
    return SDXL_PREFIX[part] + path.replace(".", "_")


#: SD 1.x / 2.x kohya names: (up|down) block i, its resnets / attentions / samplers j.
_UPDOWN = re.compile(r"(up|down)_blocks_(\d+)_(resnets|upsamplers|downsamplers|attentions)_(\d+)_")
#: UNet blocks per side that sd-scripts counts for SD 1.x / 2.x (4 levels of 3).
SD_BLOCKS_PER_SIDE = 12


def kohya_block_index(lora_name: str, is_sdxl: bool) -> int:
    """The UNet block a kohya module name belongs to, as networks.lora numbers them for block_dims
    (SD: 0 none, 1-12 down, 12 mid, 13-24 up; SDXL: 0 embeddings, 1-9 input, 10-12 middle, 13-21
    output, 22 out); -1 for a name outside them (which indexes the last block, as in sd-scripts)."""
    if is_sdxl:
        if not lora_name.startswith("lora_unet_"):
            return -1
        name = lora_name[len("lora_unet_") :]
        if name.startswith(("time_embed_", "label_emb_")):
            return 0
        for head, first in (("input_blocks_", 1), ("middle_block_", 10), ("output_blocks_", 13)):
            if name.startswith(head):
                return first + int(name.split("_")[2])
        return 22 if name.startswith("out_") else -1
    found = _UPDOWN.search(lora_name)
    if found:
        side, i, kind, j = found.group(1), int(found.group(2)), found.group(3), int(found.group(4))
        index = 3 * i + (2 if kind in ("upsamplers", "downsamplers") else j)
        return 1 + index if side == "down" else SD_BLOCKS_PER_SIDE + 1 + index
    return SD_BLOCKS_PER_SIDE if "mid_block_" in lora_name else -1
