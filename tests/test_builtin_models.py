"""The built-in models keep the real models' topology (SD 1.5, SDXL base), narrow and deterministic."""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")


def _digest(model) -> str:
    """A hash of every weight of every part, in registration order."""
    h = hashlib.sha256()
    for name, module in model.modules().items():
        for key, tensor in module.state_dict().items():
            h.update(f"{name}.{key}".encode())
            h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_tiny_sd_has_sd15_topology():
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    from lora_sched.train.model import build_tiny_sd

    model = build_tiny_sd()
    c = model.unet.config
    assert tuple(c.down_block_types) == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert tuple(c.up_block_types) == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert c.layers_per_block == 2 and c.mid_block_type == "UNetMidBlock2DCrossAttn"
    assert c.attention_head_dim == 8 and not c.use_linear_projection and c.addition_embed_type is None
    assert c.cross_attention_dim == model.text_encoder.config.hidden_size
    assert len(model.vae.config.block_out_channels) == 4 and model.vae.config.layers_per_block == 2
    assert type(model.text_encoder) is CLIPTextModel and model.text_encoder_2 is None
    assert model.kind == "sd1" and not model.is_sdxl
    assert isinstance(model.pipeline(), StableDiffusionPipeline)
    # the module paths SD 1.5 LoRA files name (attention in the first three down blocks only)
    names = {n for n, _ in model.unet.named_modules()}
    assert "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k" in names
    assert "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_q" in names
    assert "mid_block.attentions.0.transformer_blocks.0.attn1.to_v" in names
    assert not any(n.startswith("down_blocks.3.attentions") or n.startswith("up_blocks.0.attentions") for n in names)


def test_tiny_sdxl_has_sdxl_topology():
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from lora_sched.train.model import SDXL_SIZE_EMBED_DIM, build_tiny_sdxl

    model = build_tiny_sdxl()
    c = model.unet.config
    assert tuple(c.down_block_types) == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert tuple(c.up_block_types) == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    assert c.layers_per_block == 2 and tuple(c.transformer_layers_per_block) == (1, 1, 2)
    assert c.use_linear_projection and c.addition_embed_type == "text_time"
    assert c.addition_time_embed_dim == SDXL_SIZE_EMBED_DIM == 256
    te1, te2 = model.text_encoder, model.text_encoder_2
    assert type(te1) is CLIPTextModel and type(te2) is CLIPTextModelWithProjection
    assert c.cross_attention_dim == te1.config.hidden_size + te2.config.hidden_size
    assert c.projection_class_embeddings_input_dim == 6 * 256 + te2.config.projection_dim
    # 64-channel heads everywhere, as SDXL's UNet and both of its text encoders have
    assert [w // h for w, h in zip(c.block_out_channels, c.attention_head_dim)] == [64, 64, 64]
    for te in (te1, te2):
        assert te.config.hidden_size // te.config.num_attention_heads == 64
    assert model.tokenizer.pad_token == "<|endoftext|>" and model.tokenizer_2.pad_token == "!"
    assert model.vae.config.scaling_factor == 0.13025
    assert model.kind == "sdxl" and model.is_sdxl
    assert list(model.modules()) == ["unet", "vae", "text_encoder", "text_encoder_2"]
    names = {n for n, _ in model.unet.named_modules()}
    assert "down_blocks.2.attentions.1.transformer_blocks.1.attn2.to_k" in names
    assert not any(n.startswith("down_blocks.0.attentions") or n.startswith("up_blocks.2.attentions") for n in names)

    pipe = model.pipeline()
    assert isinstance(pipe, StableDiffusionXLPipeline)
    image = pipe("a red circle", num_inference_steps=2, output_type="np", generator=torch.manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)


@pytest.mark.parametrize("name", ["builtin:tiny-sd", "builtin:tiny-sdxl"])
def test_builtin_weights_are_deterministic_and_leave_the_global_rng_alone(name):
    from lora_sched.train.model import build_builtin

    torch.manual_seed(123)
    first = _digest(build_builtin(name))
    after = torch.rand(1)
    torch.manual_seed(123)
    assert _digest(build_builtin(name)) == first
    assert torch.equal(torch.rand(1), after)  # built under a forked RNG


def test_unknown_builtin_names_both_models():
    from lora_sched.errors import ConfigError
    from lora_sched.train.sources import check_model_source

    check_model_source("builtin:tiny-sdxl")
    with pytest.raises(ConfigError, match="did you mean `builtin:tiny-sdxl`"):
        check_model_source("builtin:tiny_sdxl")
    with pytest.raises(ConfigError, match='"builtin:tiny-sd" or "builtin:tiny-sdxl"'):
        check_model_source("builtin:sdxl-base")
