"""The model to fine-tune: a built-in one (built in code, no download), or one read by lora_sched.train.sources.

`builtin:tiny-sd` has SD 1.5's layout and `builtin:tiny-sdxl` SDXL base's (UNet2DConditionModel +
AutoencoderKL + CLIP text encoder(s) + CLIP BPE tokenizer(s) + DDPMScheduler), only narrow:
StableDiffusionPipeline / StableDiffusionXLPipeline assemble from them, and their LoRA files have
the key names of SD 1.5 / SDXL ones. Their weights come from a fixed seed, so every process (and
every run) builds bit-identical models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_sched.builtins import BUILTIN_BLOCKS, BUILTIN_MODEL, BUILTIN_MODELS, BUILTIN_RESOLUTION, BUILTIN_SDXL_MODEL
from lora_sched.errors import ConfigError, did_you_mean, problem

#: Seed the built-in weights are drawn from (independent of the training seed).
BUILTIN_WEIGHTS_SEED = 0
#: Longest caption in tokens, as in CLIP.
MAX_TOKENS = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: Widths of the built-in models (SD 1.5: UNet 320/640/1280/1280, VAE 128/256/512/512; SDXL: UNet
#: 320/640/1280). lora_sched.train.memory reads the same numbers from lora_sched.builtins.
TINY_SD_UNET_BLOCKS = BUILTIN_BLOCKS[BUILTIN_MODEL]["unet"]
TINY_SDXL_UNET_BLOCKS = BUILTIN_BLOCKS[BUILTIN_SDXL_MODEL]["unet"]
TINY_VAE_BLOCKS = BUILTIN_BLOCKS[BUILTIN_MODEL]["vae"]
#: Width of tiny-sd's text encoder and of tiny-sdxl's first one (CLIP-L: 768); tiny-sdxl's second is twice it.
TINY_TEXT_WIDTH = 64
#: Channels each of SDXL's six size/crop ids is embedded in (fixed by SDXL, and by sd-scripts).
SDXL_SIZE_EMBED_DIM = 256


@dataclass
class SDModel:
    """The parts of a Stable Diffusion model (SD 1.x, 2.x or SDXL) that training needs.

    SDXL has a second text encoder (CLIPTextModelWithProjection, whose projected pooled output
    conditions the UNet) with its own tokenizer; for SD 1.x / 2.x those two are None.
    """

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    source: str
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    @property
    def is_sdxl(self) -> bool:
        """SDXL's UNet takes the pooled text embedding and the size/crop ids as extra conditioning."""
        return getattr(self.unet.config, "addition_embed_type", None) == "text_time"

    @property
    def kind(self) -> str:
        """ "sdxl", "sd2" (its UNet projects attention inputs with linear layers) or "sd1"."""
        if self.is_sdxl:
            return "sdxl"
        return "sd2" if getattr(self.unet.config, "use_linear_projection", False) else "sd1"

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def modules(self) -> dict[str, Any]:
        """The torch modules by their diffusers component name (unet, vae, text_encoder[, text_encoder_2])."""
        parts = {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}
        if self.text_encoder_2 is not None:
            parts["text_encoder_2"] = self.text_encoder_2
        return parts

    def pipeline(self) -> Any:
        """The matching diffusers pipeline over these parts (SD: no safety checker, nothing to download)."""
        if self.is_sdxl:
            from diffusers import StableDiffusionXLPipeline

            return StableDiffusionXLPipeline(
                vae=self.vae,
                text_encoder=self.text_encoder,
                text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer,
                tokenizer_2=self.tokenizer_2,
                unet=self.unet,
                scheduler=self.noise_scheduler,
            )
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=self.noise_scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def builtin_tokenizer(pad_token: str = EOS) -> Any:
    """A CLIP byte-level BPE tokenizer with a character vocabulary built in code (no download).

    Vocabulary: BOS, EOS, every byte-level character, and every one with CLIP's end-of-word
    suffix ``</w>``; no merges, so captions tokenize one character per token. It is loaded from a
    vocab.json / merges.txt pair written to a temporary folder: the one way transformers 4.x and
    5.x both accept (building from in-memory ``vocab=`` / ``merges=`` is 5.x only). SD pads with
    EOS; SDXL's second tokenizer pads with "!", as OpenCLIP does.
    """
    import json
    import tempfile

    from transformers import CLIPTokenizerFast  # the tokenizers-backed class (in 5.x an alias of CLIPTokenizer)

    chars = _byte_level_alphabet()
    vocab = {BOS: 0, EOS: 1}
    for token in chars + [c + "</w>" for c in chars]:
        vocab[token] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="lora_sched_tokenizer_") as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        Path(folder, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizerFast.from_pretrained(
            folder, model_max_length=MAX_TOKENS, pad_token=pad_token, local_files_only=True
        )


def _byte_level_alphabet() -> list[str]:
    """The 256 characters byte-level BPE maps bytes to: printable bytes stand for themselves, the
    others (controls, space, ...) are shifted to code points from 256 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    keep = set(printable)
    shifted = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(shifted)) for b in range(256)]


def build_tiny_sd() -> SDModel:
    """Build `builtin:tiny-sd` deterministically: SD 1.5's topology, narrow.

    As SD 1.5: four down blocks (three with cross-attention, the last plain), the up blocks
    mirrored, two ResNet layers per block, a mid block with attention, 8 attention heads, a VAE of
    four blocks with 8x downsampling and a CLIPTextModel; only the widths are small (UNet
    32/32/64/64 against 320/640/1280/1280), so its LoRA key names are SD 1.5's.
    """
    import torch
    from diffusers import UNet2DConditionModel

    tokenizer = builtin_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_WEIGHTS_SEED)
        unet = UNet2DConditionModel(
            sample_size=BUILTIN_RESOLUTION // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=TINY_SD_UNET_BLOCKS,
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TINY_TEXT_WIDTH,
            attention_head_dim=8,  # SD 1.x's diffusers config: 8 heads in every block
            norm_num_groups=32,
        )
        vae = _tiny_vae(scaling_factor=0.18215)
        text_encoder = _tiny_clip(len(tokenizer), TINY_TEXT_WIDTH, projection=None)
    return SDModel(unet, vae, text_encoder, tokenizer, sd_noise_scheduler(), BUILTIN_MODEL)


def build_tiny_sdxl() -> SDModel:
    """Build `builtin:tiny-sdxl` deterministically: SDXL base's topology, narrow.

    As SDXL: three down blocks (plain, then two with cross-attention, 1 and 2 transformer layers
    deep where SDXL has 2 and 10), two ResNet layers per block, linear attention projections with
    64-channel heads, the "text_time" extra conditioning (pooled text embedding + six size/crop
    ids, each embedded in 256 channels), two text encoders (CLIPTextModel, and
    CLIPTextModelWithProjection whose pooled projection conditions the UNet) whose penultimate
    hidden states are concatenated for cross-attention, two tokenizers, SDXL's VAE scaling factor.
    """
    import torch
    from diffusers import UNet2DConditionModel

    tokenizer, tokenizer_2 = builtin_tokenizer(), builtin_tokenizer(pad_token="!")
    width_1, width_2 = TINY_TEXT_WIDTH, 2 * TINY_TEXT_WIDTH
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_WEIGHTS_SEED)
        unet = UNet2DConditionModel(
            sample_size=BUILTIN_RESOLUTION // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=TINY_SDXL_UNET_BLOCKS,
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1, 2),
            cross_attention_dim=width_1 + width_2,
            attention_head_dim=tuple(c // 64 for c in TINY_SDXL_UNET_BLOCKS),  # heads, as SDXL's config counts them
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=SDXL_SIZE_EMBED_DIM,
            projection_class_embeddings_input_dim=6 * SDXL_SIZE_EMBED_DIM + width_2,
            norm_num_groups=32,
        )
        vae = _tiny_vae(scaling_factor=0.13025)
        text_encoder = _tiny_clip(len(tokenizer), width_1, projection=None)
        text_encoder_2 = _tiny_clip(len(tokenizer_2), width_2, projection=width_2)
    return SDModel(
        unet, vae, text_encoder, tokenizer, sd_noise_scheduler(), BUILTIN_SDXL_MODEL, text_encoder_2, tokenizer_2
    )


def _tiny_vae(scaling_factor: float) -> Any:
    """SD's VAE layout (four blocks of two layers, 8x downsampling, attention in the mid block), narrow."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=TINY_VAE_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=BUILTIN_RESOLUTION,
        scaling_factor=scaling_factor,
    )


def _tiny_clip(vocab_size: int, width: int, projection: int | None) -> Any:
    """A CLIP text encoder with 64-channel heads (as CLIP-L and OpenCLIP have), 3 layers (SDXL and
    clip_skip = 2 read the penultimate one); with `projection`, the pooled output is projected."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=3,
        num_attention_heads=width // 64,
        max_position_embeddings=MAX_TOKENS,
        hidden_act="quick_gelu" if projection is None else "gelu",  # CLIP-L / OpenCLIP bigG
        projection_dim=projection or width,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config) if projection is None else CLIPTextModelWithProjection(config)


#: How each built-in model is built.
BUILDERS = {BUILTIN_MODEL: build_tiny_sd, BUILTIN_SDXL_MODEL: build_tiny_sdxl}


def build_builtin(name: str) -> SDModel:
    """One of BUILTIN_MODELS, built in code."""
    return BUILDERS[name]()


def check_builtin_name(name: str, key: str) -> None:
    """A `builtin:` name that is not one of BUILTIN_MODELS is refused (with the nearest one)."""
    if name not in BUILTIN_MODELS:
        names = " or ".join(f'"{n}"' for n in BUILTIN_MODELS)
        hint = did_you_mean(name, list(BUILTIN_MODELS)) or f"the built-in models are {names}"
        raise ConfigError(problem(key, f"{names}, or a local model", name, hint))


def sd_noise_scheduler(prediction_type: str = "epsilon") -> Any:
    """SD's noise schedule (scaled-linear betas 0.00085..0.012 over 1000 steps; SDXL's too)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        clip_sample=False,
        prediction_type=prediction_type,
    )
