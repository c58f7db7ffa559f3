"""sd-scripts options that change what a LoRA learns, for those lora-sched does not read itself.

`validate`, `preview` and `export` only need the schedule, so they load such an option with a
notice (the file stays sd-scripts' to run). `lora-sched train` refuses it at its line before
anything is built, unless told to train without it (``--train-without KEY``): a LoRA trained while
the file asks for, say, ``min_snr_gamma = 5`` would not be the LoRA sd-scripts trains from it.

An option lora-sched applies is a key of the key table (lora_sched.config.keys) and leaves this
table (tests/test_train_refusals.py checks that the two never share a name). The table lists the keys
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
    # the loss
    "masked_loss": LearningKey("restricts the loss to a mask image per training image"),
    "alpha_mask": LearningKey("restricts the loss to each image's alpha channel"),
    "conditioning_data_dir": LearningKey("reads loss masks from this folder"),
    # the text conditioning
    "weighted_captions": LearningKey("reads (word:1.2) weights in captions"),
    # precision
    "fp8_base": LearningKey("stores the base model in fp8"),
    "fp8_base_unet": LearningKey("stores the base UNet in fp8"),
    # the network
    "network_weights": LearningKey("starts from an existing LoRA instead of a fresh one"),
    "dim_from_weights": LearningKey("takes the rank from network_weights"),
    "base_weights": LearningKey("merges other LoRAs into the base model before training", (None, [], "")),
    "base_weights_multiplier": LearningKey("sets the strength of the merged base_weights", needs="base_weights"),
    # the data
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
    "use_8bit_adam": LearningKey("trains with AdamW8bit (sd-scripts' old flag)"),
    "use_lion_optimizer": LearningKey("trains with Lion (sd-scripts' old flag)"),
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
