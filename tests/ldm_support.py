"""Test support: diffusers models written as single-file checkpoints in the original (LDM) layout.

The key map here is written from the LDM naming, independently of the loader (which uses
diffusers' LDM -> diffusers conversion): a round trip through both only agrees when each side is
right. The layout, as the released SD 1.x / 2.x / SDXL checkpoints have it:

- UNet under ``model.diffusion_model.``: ``input_blocks.0.0`` is the input convolution, then per
  level its res blocks (``input_blocks.N.0``, attention at ``.1``) and a downsampler
  (``input_blocks.N.0.op``) after every level but the last; ``middle_block.0/1/2`` (res, attention,
  res); ``output_blocks`` mirror the levels with one more res block each, the upsampler at ``.1.conv``
  (``.2.conv`` after an attention); ``time_embed.0/2``, ``label_emb.0.0/0.2`` (SDXL), ``out.0/2``.
  Res blocks name their parts ``in_layers.0/2``, ``emb_layers.1``, ``out_layers.0/3``, ``skip_connection``.
- VAE under ``first_stage_model.``: ``encoder.down.N.block.M`` / ``.downsample``, ``decoder.up.N``
  numbered from the lowest resolution (diffusers' up_blocks reversed), ``mid.block_1/2``,
  ``mid.attn_1`` with 1x1-convolution ``q/k/v/proj_out`` and ``norm``, ``norm_out``,
  ``nin_shortcut``.
- CLIP text encoders keep transformers' names under ``cond_stage_model.transformer.text_model.``
  (SDXL: ``conditioner.embedders.0.transformer.text_model.``); OpenCLIP ones (SD 2.x:
  ``cond_stage_model.model.``, SDXL: ``conditioner.embedders.1.model.``) fuse q/k/v into
  ``attn.in_proj_*`` and store ``text_projection`` as width x projection. SD 2.x's released files
  hold one block more than is used, and a text_projection; the writer adds both, as sd-scripts does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPENCLIP_PARTS = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _rename(rest: str, parts: dict[str, str]) -> str:
    for old, new in parts.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


# -- UNet -------------------------------------------------------------------------------------------
def unet_to_ldm(state: dict[str, Any], config: Any) -> dict[str, Any]:
    layers = config["layers_per_block"]
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    up_has_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    out = {}
    for key, tensor in state.items():
        out["model.diffusion_model." + _unet_key(key, layers, fixed, up_has_attention)] = tensor
    return out


def _unet_key(key: str, layers: int, fixed: dict[str, str], up_has_attention: list[bool]) -> str:
    parts = key.split(".")
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * index}.{_rename(rest, RESNET_PARTS)}"
        return f"middle_block.1.{rest}"
    block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
    if parts[0] == "down_blocks":
        first = 1 + block * (layers + 1)
        if kind == "resnets":
            return f"input_blocks.{first + index}.0.{_rename(rest, RESNET_PARTS)}"
        if kind == "attentions":
            return f"input_blocks.{first + index}.1.{rest}"
        return f"input_blocks.{first + layers}.0.op.{rest.removeprefix('conv.')}"  # the downsampler
    first = block * (layers + 1)
    if kind == "resnets":
        return f"output_blocks.{first + index}.0.{_rename(rest, RESNET_PARTS)}"
    if kind == "attentions":
        return f"output_blocks.{first + index}.1.{rest}"
    slot = 2 if up_has_attention[block] else 1  # the upsampler follows the last res block (and attention)
    return f"output_blocks.{first + layers}.{slot}.{rest}"


# -- VAE --------------------------------------------------------------------------------------------
def vae_to_ldm(state: dict[str, Any], config: Any) -> dict[str, Any]:
    levels = len(config["block_out_channels"])
    out = {}
    for key, tensor in state.items():
        ldm = _vae_key(key, levels)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out["first_stage_model." + ldm] = tensor
    return out


def _vae_key(key: str, levels: int) -> str:
    half, rest = key.split(".", 1) if key.startswith(("encoder.", "decoder.")) else ("", key)
    if not half:
        return key  # quant_conv, post_quant_conv
    if rest.startswith("conv_norm_out."):
        return f"{half}.norm_out.{rest.split('.', 1)[1]}"
    if rest.startswith("mid_block."):
        _, kind, index, inner = rest.split(".", 3)
        if kind == "resnets":
            return f"{half}.mid.block_{int(index) + 1}.{_rename(inner, {'conv_shortcut': 'nin_shortcut'})}"
        return f"{half}.mid.attn_1.{_rename(inner, VAE_ATTENTION_PARTS)}"
    if rest.startswith(("down_blocks.", "up_blocks.")):
        _, index, kind, inner = rest.split(".", 3)
        level = int(index) if half == "encoder" else levels - 1 - int(index)
        name = "down" if half == "encoder" else "up"
        if kind == "resnets":
            number, inner = inner.split(".", 1)
            return f"{half}.{name}.{level}.block.{number}.{_rename(inner, {'conv_shortcut': 'nin_shortcut'})}"
        sampler = "downsample" if half == "encoder" else "upsample"
        return f"{half}.{name}.{level}.{sampler}.{inner.split('.', 1)[1]}"  # downsamplers.0.conv.* -> *.conv.*
    return f"{half}.{rest}"


# -- text encoders ----------------------------------------------------------------------------------
def _bare(state: dict[str, Any]) -> dict[str, Any]:
    """Text-encoder keys without transformers' ``text_model.`` level (present before 5.6)."""
    return {k.removeprefix("text_model."): t for k, t in state.items()}


def clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}text_model.{k}": t for k, t in _bare(state).items() if k != "text_projection.weight"}


def openclip_to_ldm(state: dict[str, Any], prefix: str, sd2_export: bool) -> dict[str, Any]:
    import torch

    bare = _bare(state)
    out = {
        "token_embedding.weight": bare["embeddings.token_embedding.weight"],
        "positional_embedding": bare["embeddings.position_embedding.weight"],
        "ln_final.weight": bare["final_layer_norm.weight"],
        "ln_final.bias": bare["final_layer_norm.bias"],
    }
    if "text_projection.weight" in bare:
        out["text_projection"] = bare["text_projection.weight"].T.contiguous()
    layers = 1 + max(int(k.split(".")[2]) for k in bare if k.startswith("encoder.layers."))
    for i in range(layers):
        source, target = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [bare[f"{source}self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(qkv)
        for key, tensor in bare.items():
            fused = any(f"self_attn.{p}_proj." in key for p in "qkv")
            if key.startswith(source) and not fused:
                out[target + _rename(key[len(source) :], OPENCLIP_PARTS)] = tensor
    if sd2_export:  # the released layout: one more block (never used) and the projection
        last = f"transformer.resblocks.{layers - 1}."
        for key in [k for k in out if k.startswith(last)]:
            out[key.replace(last, f"transformer.resblocks.{layers}.")] = out[key].clone()
        width = bare["embeddings.token_embedding.weight"].shape[1]
        out["text_projection"] = torch.eye(width)
        out["logit_scale"] = torch.tensor(4.6052)
    return {prefix + k: t for k, t in out.items()}


# -- whole models -----------------------------------------------------------------------------------
def model_to_ldm(model: Any, family: str) -> dict[str, Any]:
    """The LDM state dict of an SDModel of `family` ("sd1", "sd2" or "sdxl")."""
    state = unet_to_ldm(model.unet.state_dict(), model.unet.config)
    state.update(vae_to_ldm(model.vae.state_dict(), model.vae.config))
    te = model.text_encoder.state_dict()
    if family == "sd1":
        state.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    elif family == "sd2":
        state.update(openclip_to_ldm(te, "cond_stage_model.model.", sd2_export=True))
    else:
        state.update(clip_to_ldm(te, "conditioner.embedders.0.transformer."))
        state.update(openclip_to_ldm(model.text_encoder_2.state_dict(), "conditioner.embedders.1.model.", False))
    return state


def save_single_file(model: Any, family: str, path: Path, dtype: Any = None) -> Path:
    """`model` as one checkpoint at `path` (.safetensors, or a tensors-only .ckpt)."""
    import torch
    from safetensors.torch import save_file

    state = {k: t.detach().contiguous() for k, t in model_to_ldm(model, family).items()}
    if dtype is not None:
        state = {k: t.to(dtype) if t.is_floating_point() else t for k, t in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 0}, str(path))
    return path


def build_tiny_sd2() -> Any:
    """A narrow SD 2.x-shaped model: OpenCLIP-style text encoder (GELU, 64-wide heads), linear
    attention projections, heads 64 wide; the built-in tokenizer."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_sched.train.model import MAX_TOKENS, SDModel, build_tiny_sd, builtin_tokenizer, sd_noise_scheduler

    tokenizer = builtin_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(64, 128),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=(1, 2),
            use_linear_projection=True,
            upcast_attention=True,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=1,
                max_position_embeddings=MAX_TOKENS,
                hidden_act="gelu",
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    vae = build_tiny_sd().vae
    return SDModel(unet, vae, text_encoder, tokenizer, sd_noise_scheduler(), "tiny-sd2")
