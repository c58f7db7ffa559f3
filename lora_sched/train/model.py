"""The model to fine-tune: `builtin:tiny-sd` (built in code, no download), or one read by lora_sched.train.sources.

`builtin:tiny-sd` is a real Stable Diffusion layout (UNet2DConditionModel + AutoencoderKL +
CLIPTextModel + CLIP BPE tokenizer + DDPMScheduler), only narrow: StableDiffusionPipeline assembles
from it, so LoRA files trained on it load exactly like SD 1.x ones. Its weights come from a fixed
seed, so every process (and every run) builds bit-identical models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_sched.builtins import BUILTIN_MODEL

#: Seed the built-in weights are drawn from (independent of the training seed).
BUILTIN_WEIGHTS_SEED = 0
#: Longest caption in tokens, as in CLIP.
MAX_TOKENS = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class SDModel:
    """The parts of a Stable Diffusion model that training needs."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    source: str

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def pipeline(self) -> Any:
        """A StableDiffusionPipeline over these parts (no safety checker: nothing to download)."""
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


def builtin_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer with a character vocabulary built in code (no download).

    Vocabulary: BOS, EOS, every byte-level character, and every one with CLIP's end-of-word
    suffix ``</w>``; no merges, so captions tokenize one character per token. It is loaded from a
    vocab.json / merges.txt pair written to a temporary folder: the one way transformers 4.x and
    5.x both accept (building from in-memory ``vocab=`` / ``merges=`` is 5.x only).
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
        return CLIPTokenizerFast.from_pretrained(folder, model_max_length=MAX_TOKENS, local_files_only=True)


def _byte_level_alphabet() -> list[str]:
    """The 256 characters byte-level BPE maps bytes to: printable bytes stand for themselves, the
    others (controls, space, ...) are shifted to code points from 256 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    keep = set(printable)
    shifted = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(shifted)) for b in range(256)]


def build_tiny_sd() -> SDModel:
    """Build `builtin:tiny-sd` deterministically: 8x VAE downsampling as in SD, 32-wide everything."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = builtin_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_WEIGHTS_SEED)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MAX_TOKENS,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    noise_scheduler = sd_noise_scheduler()
    return SDModel(unet, vae, text_encoder, tokenizer, noise_scheduler, BUILTIN_MODEL)


def load_model(name: str, key: str = "pretrained_model_name_or_path", options: Any = None) -> SDModel:
    """`builtin:tiny-sd`, a diffusers folder or a single-file checkpoint (lora_sched.train.sources);
    a Hub id only with options.allow_download. Anything else is a ConfigError."""
    from lora_sched.train.sources import SourceOptions, check_source, load_source

    options = options or SourceOptions()
    return load_source(check_source(name, options, key), options, key)


def check_model_source(name: str, key: str = "pretrained_model_name_or_path", options: Any = None) -> str:
    """Fail early, before anything is written, when the model cannot be loaded; the name to load
    (a Hub id becomes its downloaded folder)."""
    from lora_sched.train.sources import SourceOptions, check_source

    source = check_source(name, options or SourceOptions(), key)
    return name if source.path is None else str(source.path)


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
