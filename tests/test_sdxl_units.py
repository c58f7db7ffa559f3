"""SDXL pieces without training: kohya's SDXL module names, the size/crop ids, the metadata's model
family, the resolution grammar training shares with the config layer."""

from __future__ import annotations

import pytest

from lora_sched.train.kohya_names import kohya_module_name, sdxl_unet_path
from lora_sched.train.metadata import base_model_version, model_name

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("diffusers", "sgm"),
    [
        ("down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2"),
        ("down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
        (
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
            "input_blocks.4.1.transformer_blocks.0.attn1.to_q",
        ),
        ("down_blocks.2.attentions.1.proj_in", "input_blocks.8.1.proj_in"),
        ("mid_block.resnets.0.time_emb_proj", "middle_block.0.emb_layers.1"),
        ("mid_block.attentions.0.transformer_blocks.1.attn2.to_k", "middle_block.1.transformer_blocks.1.attn2.to_k"),
        ("mid_block.resnets.1.conv2", "middle_block.2.out_layers.3"),
        (
            "up_blocks.0.attentions.2.transformer_blocks.0.attn1.to_out.0",
            "output_blocks.2.1.transformer_blocks.0.attn1.to_out.0",
        ),
        ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv"),
        ("up_blocks.1.resnets.0.conv_shortcut", "output_blocks.3.0.skip_connection"),
        ("up_blocks.2.resnets.2.norm1", "output_blocks.8.0.in_layers.0"),
    ],
)
def test_sdxl_unet_paths_follow_the_sgm_layout(diffusers, sgm):
    assert sdxl_unet_path(diffusers, layers_per_block=2) == sgm


def test_diffusers_maps_every_sdxl_kohya_name_back_to_its_module():
    """diffusers' own conversion of kohya SDXL names (the two steps load_lora_weights runs) undoes
    ours, for every Linear and Conv2d in the tiny SDXL UNet's blocks (ResNets and samplers too)."""
    import re

    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,
        _maybe_map_sgm_blocks_to_diffusers,
    )

    from lora_sched.train.model import build_tiny_sdxl

    unet = build_tiny_sdxl().unet
    blocks = ("down_blocks", "mid_block", "up_blocks")
    names = [
        n
        for n, m in unet.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and n.split(".")[0] in blocks
    ]
    state = {}
    for n in names:
        base = kohya_module_name("unet", n, 2)
        state.update({f"{base}.lora_down.weight": torch.zeros(1, 1), f"{base}.lora_up.weight": torch.zeros(1, 1)})
        state[f"{base}.alpha"] = torch.tensor(1.0)
    converted = _convert_non_diffusers_lora_to_diffusers(_maybe_map_sgm_blocks_to_diffusers(state, unet.config))
    keys = converted[0] if isinstance(converted, tuple) else converted
    found = set()
    for key in keys:
        if ".down.weight" in key:  # diffusers' intermediate names: attention LoRA still as processor.to_q_lora
            module = key.removeprefix("unet.").split(".lora.down")[0].split("_lora.down")[0]
            module = re.sub(r"\.processor\.to_(q|k|v)$", r".to_\1", module).replace(".processor.to_out", ".to_out.0")
            found.add(module)
    assert len(names) == 258 and found == set(names)


def test_kohya_prefixes():
    path = "text_model.encoder.layers.0.self_attn.q_proj"
    assert kohya_module_name("text_encoder", path) == "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    assert kohya_module_name("text_encoder", path, 2).startswith("lora_te1_text_model_")
    assert kohya_module_name("text_encoder_2", path, 2).startswith("lora_te2_text_model_")
    assert (
        kohya_module_name("unet", "down_blocks.0.attentions.0.proj_in")
        == "lora_unet_down_blocks_0_attentions_0_proj_in"
    )
    with pytest.raises(ValueError, match="no SDXL"):
        sdxl_unet_path("conv_in", 2)


@pytest.mark.parametrize(
    ("target", "original", "ids"),
    [
        ((64, 64), (64, 64), [64, 64, 0, 0, 64, 64]),
        ((64, 64), (100, 50), [50, 100, 16, 0, 64, 64]),  # a wide image in a square: sd-scripts' top margin
        ((64, 64), (50, 100), [100, 50, 0, 16, 64, 64]),
        ((128, 64), (64, 64), [64, 64, 0, 32, 64, 128]),
    ],
)
def test_size_ids_as_sd_scripts_computes_them(target, original, ids):
    from lora_sched.config.buckets import Placement
    from lora_sched.train.buckets import Geometry
    from lora_sched.train.conditioning import size_ids
    from lora_sched.train.data import Example

    example = Example("x", "a caption", 1, geometry=Geometry(original, Placement(target, target)))
    assert size_ids(example, target) == ids
    drawn = Example("y", "a caption", 1)  # builtin:shapes: drawn at the training size
    assert size_ids(drawn, target) == [target[1], target[0], 0, 0, target[1], target[0]]


def test_base_model_version_and_name(tmp_path):
    assert base_model_version("sdxl", False) == base_model_version("sdxl", True) == "sdxl_base_v1-0"
    assert base_model_version("sd2", True) == "sd_v2_v" and base_model_version("sd1", False) == "sd_v1"
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_name(str(folder) + "/") == "my-model" and model_name("builtin:tiny-sd") == "builtin:tiny-sd"


@pytest.mark.parametrize(
    ("value", "size"),
    [(512, (512, 512)), ("512,768", (512, 768)), (" 640 , 512", (640, 512)), ([512, 768], (512, 768))],
)
def test_parse_resolution_reads_the_config_grammar(value, size):
    from lora_sched.train.loop import parse_resolution

    assert parse_resolution(value) == size


@pytest.mark.parametrize("value", ["512x768", "512,", True, 512.0, [512], [0, 512]])
def test_parse_resolution_refuses_what_the_config_layer_refuses(value):
    from lora_sched.errors import ConfigError
    from lora_sched.train.loop import parse_resolution

    with pytest.raises(ConfigError, match="resolution"):
        parse_resolution(value)


def test_sdxl_text_encoding_reads_the_pooled_output_at_the_first_eos():
    from lora_sched.train.conditioning import encode_sdxl_text
    from lora_sched.train.model import build_tiny_sdxl

    model = build_tiny_sdxl()
    ids_1 = model.tokenizer(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids_2 = model.tokenizer_2(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden, pooled = encode_sdxl_text(model.text_encoder, model.text_encoder_2, ids_1, ids_2, 1)
        reference = model.text_encoder_2(ids_2)  # transformers pools at the first EOS too for this tokenizer
    assert hidden.shape == (1, 77, model.unet.config.cross_attention_dim)
    assert torch.equal(pooled, reference.text_embeds)


def test_a_mirrored_draw_moves_the_crop_left_as_sd_scripts_does():
    """sd-scripts (train_util, flip_aug with cached latents): a mirrored image's crop left is the
    target width minus the crop box's right edge; top and sizes stay."""
    from lora_sched.config.buckets import Placement
    from lora_sched.train.buckets import Geometry
    from lora_sched.train.conditioning import crop_right, mirrored_time_ids, size_ids
    from lora_sched.train.data import Example

    target = (64, 64)
    # a 45 x 64 image fitted inside 64 x 64: 45 wide, left (64 - 45) // 2 = 9, right 54
    example = Example("x", "a caption", 1, geometry=Geometry((45, 64), Placement(target, target)))
    ids = torch.tensor([size_ids(example, target)] * 2, dtype=torch.float32)
    right = torch.tensor([crop_right(example, target)] * 2, dtype=torch.float32)
    assert ids[0].tolist() == [64, 45, 0, 9, 64, 64] and right.tolist() == [54, 54]
    mirrored = mirrored_time_ids(ids, right, (False, True))
    assert mirrored.tolist() == [[64, 45, 0, 9, 64, 64], [64, 45, 0, 64 - 54, 64, 64]]
    assert ids[1, 3] == 9  # the cached ids are not changed
    assert mirrored_time_ids(ids, right, ()) is ids
