"""What a single-file Stable Diffusion checkpoint holds, read from its tensor names and shapes alone.

A single file (the original "LDM" layout: ``model.diffusion_model.*``, ``first_stage_model.*`` and
the text encoder(s)) carries no config. As ComfyUI's model detection does, everything the diffusers
configs need is read from the tensors: the UNet's widths from its convolutions, its levels from the
downsamplers, the res blocks and transformer depth of each level by counting keys, the context width
from a cross-attention key projection; the VAE's widths from its blocks; the text encoders' widths,
depth and vocabulary from their embeddings and layers. The family follows from the text encoders:

- SD 1.x: one CLIP text encoder (``cond_stage_model.transformer.*``);
- SD 2.x: one OpenCLIP text encoder (``cond_stage_model.model.*``);
- SDXL: CLIP + OpenCLIP under ``conditioner.embedders.0/1`` and the size/crop embedding (``label_emb``).

Attention head counts are not in any weight (the projections are full-width). The rule every
released model follows is used: SD 1.x UNets have 8 heads per attention block; SD 2.x and SDXL
UNets and every text encoder have heads 64 wide. A width that is not a multiple of 64 (only
test-sized models have one) gets heads 8 wide.

Only names and shapes are needed, so the check before training reads the safetensors header (a few
kilobytes) and never the weights. Pure Python: no torch import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD_CLIP = "cond_stage_model.transformer."
SD_OPENCLIP = "cond_stage_model.model."
XL_CLIP = "conditioner.embedders.0.transformer."
XL_OPENCLIP = "conditioner.embedders.1.model."
#: How diffusers' conversion script (diffusers -> original SDXL) names the OpenCLIP projection.
LINEAR_PROJECTION = "text_projection.weight"
#: A key ComfyUI and v-prediction SDXL fine-tunes use to mark a v-prediction model.
V_PRED_MARKER = "v_pred"

#: VAE latent scale of each family (not in the weights; every released model of the family uses it).
VAE_SCALING = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025}
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
#: GroupNorm groups of every SD UNet and VAE (a count no weight shape records).
NORM_GROUPS = 32

Shapes = Mapping[str, tuple[int, ...]]


class NotAModel(Exception):
    """The file is no checkpoint this detection knows: `found` says what it is, `hint` what to do."""

    def __init__(self, found: str, hint: str = "") -> None:
        super().__init__(found)
        self.found, self.hint = found, hint


class TextEncoderSpec(NamedTuple):
    """One text encoder: where its tensors are, their layout, and its transformers config."""

    prefix: str
    layout: str  # "clip" (transformers' key names) or "openclip" (OpenCLIP's)
    config: dict[str, Any]  # CLIPTextConfig fields, token ids aside (they are the tokenizer's)
    with_projection: bool  # CLIPTextModelWithProjection (SDXL's second encoder)
    unused_last_block: bool  # SD 2.x's full OpenCLIP export: the last block is never used


class Detected(NamedTuple):
    family: str  # "sd1", "sd2" or "sdxl"
    unet: dict[str, Any]  # UNet2DConditionModel config
    vae: dict[str, Any]  # AutoencoderKL config
    text_encoders: tuple[TextEncoderSpec, ...]
    v_pred_marker: bool

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES[self.family]


def heads(width: int, per_head: int = 64) -> int:
    """Attention heads of a block `width` wide: heads `per_head` wide, 8 wide for a test-sized width."""
    if width % per_head == 0:
        return width // per_head
    return max(1, width // 8)


# -- reading names and shapes ---------------------------------------------------------------------
def safetensors_shapes(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(tensor name -> shape, metadata) from a safetensors header, after checking the file holds
    every byte the header lists (a download cut short is caught here, not mid-training)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(64).startswith(b"version https://git-lfs"):
            raise NotAModel("a Git LFS pointer file, not the weights", "fetch the weights (`git lfs pull`)")
        fh.seek(0)
        start = fh.read(8)
        length = int.from_bytes(start, "little") if len(start) == 8 else -1
        if not 2 <= length <= min(size - 8, 100_000_000):
            raise NotAModel(f"a file that is not safetensors ({size:,} bytes, no valid header)", _REDOWNLOAD)
        try:
            header = json.loads(fh.read(length))
            shapes, end = _header_entries(header)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            raise NotAModel("a safetensors file whose header does not parse", _REDOWNLOAD) from None
    if 8 + length + end > size:
        raise NotAModel(
            f"a truncated file: its header lists {8 + length + end:,} bytes, the file has {size:,}", _REDOWNLOAD
        )
    metadata = header.get("__metadata__") or {}
    return shapes, metadata if isinstance(metadata, dict) else {}


_REDOWNLOAD = "download it again (or re-convert it) and check its size"


def _header_entries(header: dict) -> tuple[dict[str, tuple[int, ...]], int]:
    shapes: dict[str, tuple[int, ...]] = {}
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shapes[name] = tuple(int(d) for d in entry["shape"])
        begin, stop = (int(x) for x in entry["data_offsets"])
        if not 0 <= begin <= stop:
            raise ValueError(name)
        end = max(end, stop)
    return shapes, end


# -- detection -------------------------------------------------------------------------------------
def detect(shapes: Shapes) -> Detected:
    """The family and the diffusers configs of the checkpoint whose tensors have these shapes."""
    _refuse_other_files(shapes)
    text_encoders = _text_encoders(shapes)
    family = _family(shapes, text_encoders)
    unet = unet_config(shapes, family, text_encoders)
    vae = vae_config(shapes, family)
    if unet["in_channels"] != vae["latent_channels"] or unet["out_channels"] != vae["latent_channels"]:
        raise NotAModel(
            f"a UNet with {unet['in_channels']} input channels over a VAE with {vae['latent_channels']} latent "
            "channels (an inpainting or image-conditioned model)",
            "LoRA training here takes text-to-image models",
        )
    return Detected(family, unet, vae, text_encoders, V_PRED_MARKER in shapes)


def _refuse_other_files(shapes: Shapes) -> None:
    """A LoRA, a bare VAE or UNet, or a model of another kind: named, with what to give instead."""
    names = list(shapes)
    if not names:
        raise NotAModel("a file with no tensors", _REDOWNLOAD)
    lora = ("lora_unet_", "lora_te", "lora_down", "lora_up", "lora_A", "lora_B", "hada_", "lokr_")
    if any(part in name for name in names[:200] for part in lora):
        raise NotAModel(
            "a LoRA file (network weights), not a base model",
            "give the base model the LoRA is for (a .safetensors / .ckpt checkpoint or a diffusers folder)",
        )
    if any(n.startswith(UNET) for n in names) and any(n.startswith(VAE) for n in names):
        return
    if all(n.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")) for n in names):
        raise NotAModel("a VAE alone, not a whole model", "give the whole checkpoint (UNet, VAE, text encoder)")
    if "conv_in.weight" in shapes and any(n.startswith("down_blocks.") for n in names):
        raise NotAModel(
            "one part of a diffusers folder (a UNet's weights file)", "give the folder holding model_index.json"
        )
    sample = ", ".join(sorted(names)[:3])
    raise NotAModel(
        f"a checkpoint without Stable Diffusion's UNet and VAE (keys like {sample})",
        "give an SD 1.x, SD 2.x or SDXL checkpoint in the original single-file layout, or a diffusers folder",
    )


def _family(shapes: Shapes, text_encoders: tuple[TextEncoderSpec, ...]) -> str:
    prefixes = tuple(t.prefix for t in text_encoders)
    if prefixes == (XL_CLIP, XL_OPENCLIP) and any(k.startswith(UNET + "label_emb.") for k in shapes):
        return "sdxl"
    if prefixes == (SD_CLIP,):
        return "sd1"
    if prefixes == (SD_OPENCLIP,):
        return "sd2"
    found = " + ".join(p.rstrip(".") for p in prefixes) or "no text encoder"
    raise NotAModel(
        f"an unknown architecture: text encoders {found}",
        "expected SD 1.x (cond_stage_model.transformer), SD 2.x (cond_stage_model.model) or SDXL "
        "(conditioner.embedders.0 and .1 with the UNet's label_emb); an SDXL refiner is not supported",
    )


# -- text encoders -----------------------------------------------------------------------------------
def _text_encoders(shapes: Shapes) -> tuple[TextEncoderSpec, ...]:
    found = []
    for prefix, layout in ((SD_CLIP, "clip"), (SD_OPENCLIP, "openclip"), (XL_CLIP, "clip"), (XL_OPENCLIP, "openclip")):
        if any(k.startswith(prefix) for k in shapes):
            found.append(_clip_spec(shapes, prefix) if layout == "clip" else _openclip_spec(shapes, prefix))
    return tuple(found)


def _clip_spec(shapes: Shapes, prefix: str) -> TextEncoderSpec:
    """A CLIP text encoder in transformers' names (with or without the ``text_model.`` level)."""
    inner = prefix + "text_model." if prefix + "text_model.embeddings.token_embedding.weight" in shapes else prefix
    vocab, width = _shape(shapes, inner + "embeddings.token_embedding.weight", 2)
    positions = _shape(shapes, inner + "embeddings.position_embedding.weight", 2)[0]
    layers = _count(shapes, inner + "encoder.layers.")
    intermediate = _shape(shapes, inner + "encoder.layers.0.mlp.fc1.weight", 2)[0]
    config = _text_config(vocab, width, positions, layers, intermediate, "quick_gelu")  # OpenAI CLIP's activation
    return TextEncoderSpec(prefix, "clip", config, with_projection=False, unused_last_block=False)


def _openclip_spec(shapes: Shapes, prefix: str) -> TextEncoderSpec:
    """An OpenCLIP text encoder. SD 2.x conditions on the penultimate block, so its full export (with
    ``text_projection``, as released and as sd-scripts writes it) carries a last block never used;
    SDXL's second encoder uses every block and its projection (the pooled embedding)."""
    vocab, width = _shape(shapes, prefix + "token_embedding.weight", 2)
    positions = _shape(shapes, prefix + "positional_embedding", 2)[0]
    blocks = _count(shapes, prefix + "transformer.resblocks.")
    intermediate = _shape(shapes, prefix + "transformer.resblocks.0.mlp.c_fc.weight", 2)[0]
    has_projection = prefix + "text_projection" in shapes
    sdxl = prefix == XL_OPENCLIP
    unused_last = not sdxl and has_projection and blocks > 1
    config = _text_config(vocab, width, positions, blocks - unused_last, intermediate, "gelu")
    if sdxl and has_projection:  # OpenCLIP's width x projection matrix
        config["projection_dim"] = _shape(shapes, prefix + "text_projection", 2)[1]
    elif sdxl:  # diffusers' conversion script keeps the Linear layer: projection x width
        config["projection_dim"] = _shape(shapes, prefix + LINEAR_PROJECTION, 2)[0]
    return TextEncoderSpec(prefix, "openclip", config, with_projection=sdxl, unused_last_block=unused_last)


def _text_config(vocab: int, width: int, positions: int, layers: int, intermediate: int, act: str) -> dict:
    return {
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads(width),
        "max_position_embeddings": positions,
        "hidden_act": act,
    }


# -- UNet ---------------------------------------------------------------------------------------------
_BLOCK = re.compile(r"(input_blocks|middle_block|output_blocks)\.(\d+)\.(\d+)\.")
_DEPTH = re.compile(r"(input_blocks|middle_block|output_blocks)\.(\d+)\.(\d+)\.transformer_blocks\.(\d+)\.")


class _Block(NamedTuple):
    kind: str  # "res" (+ attention when depth > 0), "down" or "up" (a resampler alone)
    channels: int
    depth: int  # transformer blocks in this block's attention (0: none)


def unet_config(shapes: Shapes, family: str, text_encoders: tuple[TextEncoderSpec, ...]) -> dict[str, Any]:
    """UNet2DConditionModel's config from the LDM UNet's tensors."""
    conv_in = _shape(shapes, UNET + "input_blocks.0.0.weight", 4)
    model_channels, in_channels = conv_in[0], conv_in[1]
    levels = _levels(_input_blocks(shapes))
    per_level = {len(level) for level in levels}
    if len(per_level) != 1 or 0 in per_level:
        raise _unet_unknown(f"levels with {sorted(per_level)} res blocks (diffusers needs the same number in each)")
    layers = per_level.pop()
    channels = [level[0].channels for level in levels]
    depths = [level[0].depth for level in levels]
    if any(b.channels != c or b.depth != d for level, c, d in zip(levels, channels, depths) for b in level):
        raise _unet_unknown("a level whose blocks differ in width or attention")
    if channels[0] != model_channels:
        raise _unet_unknown(f"a first level {channels[0]} wide after a {model_channels}-wide input convolution")
    _check_up_blocks(shapes, channels, depths, layers)
    mid_depth = _count(shapes, UNET + "middle_block.1.transformer_blocks.")
    if mid_depth != max(depths[-1], 1):  # diffusers' middle block takes the last level's depth
        raise _unet_unknown(f"a middle block with {mid_depth} transformer blocks after a last level with {depths[-1]}")
    context = _context_width(shapes)
    config: dict[str, Any] = {
        "sample_size": {"sd1": 64, "sd2": 96, "sdxl": 128}[family],
        "in_channels": in_channels,
        "out_channels": _shape(shapes, UNET + "out.2.weight", 4)[0],
        "down_block_types": tuple("CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths),
        "up_block_types": tuple("CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)),
        "block_out_channels": tuple(channels),
        "layers_per_block": layers,
        "cross_attention_dim": context,
        "transformer_layers_per_block": tuple(max(d, 1) for d in depths),
        "attention_head_dim": 8 if family == "sd1" else tuple(heads(c) for c in channels),
        "use_linear_projection": len(_shape(shapes, _first_key(shapes, ".proj_in.weight"), None)) == 2,
        "upcast_attention": family == "sd2",  # as SD 2.1's config: attention in float32 under fp16
        "norm_num_groups": NORM_GROUPS,
    }
    time_width = _shape(shapes, UNET + "time_embed.0.weight", 2)[0]
    if time_width != 4 * model_channels:
        config["time_embedding_dim"] = time_width
    if family == "sdxl":
        config.update(_size_conditioning(shapes, text_encoders))
    return config


def _unet_unknown(what: str) -> NotAModel:
    return NotAModel(f"an unknown UNet layout: {what}", "expected an SD 1.x, SD 2.x or SDXL UNet")


def _input_blocks(shapes: Shapes) -> list[_Block]:
    """The UNet's input blocks after the input convolution, in order: res blocks and downsamplers."""
    indices = sorted(
        {int(m.group(2)) for k in shapes if (m := _BLOCK.match(k, len(UNET))) and m.group(1) == "input_blocks"}
    )
    blocks = []
    for i in indices:
        if i == 0:
            continue
        if UNET + f"input_blocks.{i}.0.op.weight" in shapes:
            blocks.append(_Block("down", 0, 0))
            continue
        channels = _shape(shapes, UNET + f"input_blocks.{i}.0.out_layers.3.weight", 4)[0]
        blocks.append(_Block("res", channels, _depth_of(shapes, "input_blocks", i, 1)))
    if indices != list(range(len(indices))):
        raise _unet_unknown(f"input blocks numbered {indices[:12]}")
    return blocks


def _levels(blocks: list[_Block]) -> list[list[_Block]]:
    levels: list[list[_Block]] = [[]]
    for block in blocks:
        if block.kind == "down":
            levels.append([])
        else:
            levels[-1].append(block)
    return levels


def _check_up_blocks(shapes: Shapes, channels: list[int], depths: list[int], layers: int) -> None:
    """The output blocks mirror the input blocks (one more res block per level, as diffusers builds)."""
    expected = len(channels) * (layers + 1)
    found = len({m.group(2) for k in shapes if (m := _BLOCK.match(k, len(UNET))) and m.group(1) == "output_blocks"})
    if found != expected:
        raise _unet_unknown(f"{found} output blocks for {len(channels)} levels of {layers} (expected {expected})")
    for i in range(expected):
        level = len(channels) - 1 - i // (layers + 1)
        key = UNET + f"output_blocks.{i}.0.out_layers.3.weight"
        if _shape(shapes, key, 4)[0] != channels[level] or _depth_of(shapes, "output_blocks", i, 1) != depths[level]:
            raise _unet_unknown(f"output block {i} unlike input level {level}")


def _depth_of(shapes: Shapes, kind: str, block: int, layer: int) -> int:
    """Transformer blocks in ``kind.block.layer`` (0 when it is no attention block)."""
    prefix = UNET + f"{kind}.{block}.{layer}.transformer_blocks."
    return _count(shapes, prefix)


def _context_width(shapes: Shapes) -> int:
    """The text context width: the cross-attention key projection's input width."""
    return _shape(shapes, _first_key(shapes, ".attn2.to_k.weight"), 2)[1]


def _size_conditioning(shapes: Shapes, text_encoders: tuple[TextEncoderSpec, ...]) -> dict[str, Any]:
    """SDXL's added embedding: the pooled text embedding plus six sinusoidal size/crop numbers."""
    total = _shape(shapes, UNET + "label_emb.0.0.weight", 2)[1]
    pooled = text_encoders[-1].config["projection_dim"]
    if (total - pooled) <= 0 or (total - pooled) % 6:
        raise _unet_unknown(f"an added embedding {total} wide over a {pooled}-wide pooled text embedding")
    return {
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": (total - pooled) // 6,
        "projection_class_embeddings_input_dim": total,
    }


# -- VAE ----------------------------------------------------------------------------------------------
def vae_config(shapes: Shapes, family: str) -> dict[str, Any]:
    """AutoencoderKL's config from the LDM VAE's tensors."""
    levels = _count(shapes, VAE + "encoder.down.")
    if levels == 0:
        raise NotAModel("a VAE without encoder blocks", _REDOWNLOAD)
    channels = tuple(_shape(shapes, VAE + f"encoder.down.{i}.block.0.conv1.weight", 4)[0] for i in range(levels))
    return {
        "in_channels": _shape(shapes, VAE + "encoder.conv_in.weight", 4)[1],
        "out_channels": _shape(shapes, VAE + "decoder.conv_out.weight", 4)[0],
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": channels,
        "layers_per_block": _count(shapes, VAE + "encoder.down.0.block."),
        "latent_channels": _shape(shapes, VAE + "decoder.conv_in.weight", 4)[1],
        "norm_num_groups": NORM_GROUPS,
        "sample_size": {"sd1": 512, "sd2": 768, "sdxl": 1024}[family],
        "scaling_factor": VAE_SCALING[family],
    }


# -- small helpers ------------------------------------------------------------------------------------
def _shape(shapes: Shapes, key: str, dims: int | None) -> tuple[int, ...]:
    if key not in shapes:
        raise NotAModel(f"a checkpoint without {key}", "the file is incomplete or of another kind")
    shape = tuple(shapes[key])
    if dims is not None and len(shape) != dims:
        raise NotAModel(f"{key} of shape {list(shape)} (expected {dims} dimensions)", _REDOWNLOAD)
    return shape


def _first_key(shapes: Shapes, suffix: str) -> str:
    for key in shapes:
        if key.startswith(UNET) and key.endswith(suffix):
            return key
    raise NotAModel(f"a UNet without cross-attention (no *{suffix})", "expected an SD 1.x, SD 2.x or SDXL UNet")


def _count(shapes: Shapes, prefix: str) -> int:
    """How many numbered children ``prefix.N.`` there are (0..N-1, every one present)."""
    found = set()
    for key in shapes:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    if found and found != set(range(len(found))):
        raise NotAModel(f"{prefix}N numbered {sorted(found)[:12]} (some missing)", _REDOWNLOAD)
    return len(found)
