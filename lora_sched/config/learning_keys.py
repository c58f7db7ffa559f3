"""sd-scripts options that change what a LoRA learns, for those lora-sched does not read itself.

`validate`, `preview` and `export` only need the schedule, so they load such an option with a
notice (the file stays sd-scripts' to run). `lora-sched train` refuses it at its line before
anything is built, unless told to train without it (``--train-without KEY``): a LoRA trained while
the file asks for, say, ``min_snr_gamma = 5`` would not be the LoRA sd-scripts trains from it.

An option lora-sched applies is a key of the key table (lora_sched.config.keys) and so never
appears here at run time (`learning_key` looks only at keys outside it). The table lists the keys
sd-scripts' LoRA scripts (train_network.py, sdxl_train_network.py and the library they call) read
for SD 1.x / 2.x / SDXL; options of other model families' scripts (FLUX, SD3, musubi-tuner) are
ignored by those scripts, and so are not refused here either.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class LearningKey(NamedTuple):
    """What an option changes, and the values that change nothing (sd-scripts' default and the
    values it treats as "off")."""

    changes: str
    neutral: tuple[Any, ...] = (None, False, 0, "")
    needs: str | None = None  #: another option without which this one has no effect


_OFF = (None, False, 0, "")

#: key -> what it changes in sd-scripts' training.
LEARNING_KEYS: dict[str, LearningKey] = {
    # the noise and timesteps the UNet learns from
    "noise_offset": LearningKey("adds an offset to the training noise (brighter/darker images)"),
    "noise_offset_random_strength": LearningKey("draws the noise offset's strength at random", needs="noise_offset"),
    "adaptive_noise_scale": LearningKey("scales the noise offset with the latents' mean", needs="noise_offset"),
    "multires_noise_iterations": LearningKey("adds multi-resolution (pyramid) noise"),
    "multires_noise_discount": LearningKey(
        "weights the multi-resolution noise levels", (*_OFF, 0.3), needs="multires_noise_iterations"
    ),
    "ip_noise_gamma": LearningKey("perturbs the input noise (input perturbation)"),
    "ip_noise_gamma_random_strength": LearningKey("draws the input perturbation at random", needs="ip_noise_gamma"),
    "min_timestep": LearningKey("restricts the timesteps trained on", _OFF),
    "max_timestep": LearningKey("restricts the timesteps trained on", (None, 1000)),
    "zero_terminal_snr": LearningKey("rescales the noise schedule to zero terminal SNR"),
    # the loss
    "loss_type": LearningKey("changes the loss function (l1, huber or smooth_l1 instead of l2)", (None, "", "l2")),
    "huber_c": LearningKey("sets the Huber loss threshold", (*_OFF, 0.1), needs="loss_type"),
    "huber_schedule": LearningKey(
        "sets how the Huber threshold varies with the timestep", (None, "", "snr"), "loss_type"
    ),
    "huber_scale": LearningKey("sets the Huber loss scale", (*_OFF, 1.0), needs="loss_type"),
    "min_snr_gamma": LearningKey("weights the loss by min(SNR, gamma) (Min-SNR weighting)"),
    "debiased_estimation_loss": LearningKey("weights the loss by 1/sqrt(SNR) (debiased estimation)"),
    "scale_v_pred_loss_like_noise_pred": LearningKey("rescales a v-prediction loss like a noise-prediction one"),
    "v_pred_like_loss": LearningKey("adds a v-prediction-like loss term"),
    "masked_loss": LearningKey("restricts the loss to a mask image per training image"),
    "alpha_mask": LearningKey("restricts the loss to each image's alpha channel"),
    "conditioning_data_dir": LearningKey("reads loss masks from this folder"),
    # the text conditioning
    "clip_skip": LearningKey("conditions on an earlier CLIP layer", (*_OFF, 1)),
    "max_token_length": LearningKey("conditions on captions longer than 75 tokens", (*_OFF, 75)),
    "weighted_captions": LearningKey("reads (word:1.2) weights in captions"),
    # precision
    "full_fp16": LearningKey("trains the LoRA weights themselves in fp16"),
    "full_bf16": LearningKey("trains the LoRA weights themselves in bf16"),
    "no_half_vae": LearningKey("keeps the VAE in float32 when caching latents"),
    "fp8_base": LearningKey("stores the base model in fp8"),
    "fp8_base_unet": LearningKey("stores the base UNet in fp8"),
    # the network
    "network_args": LearningKey(
        "sets the network's options (conv_dim, dropouts, block-wise dims and LRs)", (None, [], "")
    ),
    "network_dropout": LearningKey("drops LoRA neurons during training"),
    "network_weights": LearningKey("starts from an existing LoRA instead of a fresh one"),
    "dim_from_weights": LearningKey("takes the rank from network_weights"),
    "base_weights": LearningKey("merges other LoRAs into the base model before training", (None, [], "")),
    "base_weights_multiplier": LearningKey("sets the strength of the merged base_weights", needs="base_weights"),
    "scale_weight_norms": LearningKey("scales down LoRA weights whose norm exceeds it after each step"),
    # the data
    "reg_data_dir": LearningKey("adds regularisation images to every epoch"),
    "prior_loss_weight": LearningKey("weights the regularisation images' loss", (*_OFF, 1.0), needs="reg_data_dir"),
    "validation_split": LearningKey("holds images out of training for a validation loss", _OFF),
    "in_json": LearningKey("reads captions and buckets from a fine-tuning metadata file"),
    "random_crop": LearningKey("crops the images at random instead of centred"),
    "color_aug": LearningKey("changes the images' hue at random"),
    "face_crop_aug_range": LearningKey("crops around faces at random"),
    "resize_interpolation": LearningKey("sets the filter images are resized with"),
    "caption_extention": LearningKey("sets the caption files' extension (the old spelling of caption_extension)"),
    "secondary_separator": LearningKey("keeps tags joined by a second separator together when tags shuffle"),
    "enable_wildcard": LearningKey("draws one of several captions written {a|b}"),
    "token_warmup_min": LearningKey("shortens captions at the start of training", (*_OFF, 1)),
    "token_warmup_step": LearningKey("shortens captions at the start of training", _OFF),
    # the run
    "initial_step": LearningKey("starts the run (and its LR schedule) at a later step"),
    "initial_epoch": LearningKey("starts the run (and its LR schedule) at a later epoch"),
    "vae": LearningKey("encodes the latents with another VAE"),
    "use_8bit_adam": LearningKey("trains with AdamW8bit (sd-scripts' old flag)"),
    "use_lion_optimizer": LearningKey("trains with Lion (sd-scripts' old flag)"),
    "save_precision": LearningKey("writes the LoRA in fp16 or bf16", (None, "", "float")),
}

#: sd-scripts options `train` reads although they are not lora-sched keys (lora_sched.train.options):
#: a notice never calls them unused.
TRAIN_READS = frozenset({"network_module", "log_with", "logging_dir", "log_prefix"})


def is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    """Whether `value` is one of the values that change nothing (1 == 1.0, but True is not 1)."""
    return any(isinstance(value, bool) == isinstance(n, bool) and value == n for n in neutral)


def learning_key(name: str, value: Any, given: dict[str, Any]) -> LearningKey | None:
    """The option's record when `name` = `value` changes what sd-scripts learns (`given`: the file's
    other options, for those that act only with another one), else None."""
    record = LEARNING_KEYS.get(name)
    if record is None or is_neutral(value, record.neutral):
        return None
    if record.needs is not None:
        other = LEARNING_KEYS[record.needs]
        if is_neutral(given.get(record.needs), other.neutral):
            return None
    return record
