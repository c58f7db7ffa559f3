"""Caption and image augmentations as sd-scripts applies them each time an image is drawn
(library/train_util.py BaseDataset.process_caption and __getitem__), in pure Python.

Per subset (a dataset_config's [[datasets.subsets]], else the training config):

- ``caption_prefix`` / ``caption_suffix`` are joined to the caption with a space;
- ``caption_dropout_rate``: the whole caption is dropped (trained as "") with that chance;
  ``caption_dropout_every_n_epochs = n``: dropped in every n-th epoch (epochs counted from 1);
- otherwise the caption's first line is read and, with ``shuffle_caption`` or
  ``caption_tag_dropout_rate``, it is split on ``caption_separator`` (","): the first
  ``keep_tokens`` tags stay in front (or, with ``keep_tokens_separator`` in the caption, the tags
  before it, and those after a second one stay at the end), the others are shuffled and each is
  dropped with ``caption_tag_dropout_rate``; the tags are joined with ", ";
- ``flip_aug``: the image is mirrored left-right with chance 1/2.

None of them changes the number of samples or batches: the step count is the same with or without.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # random costs ~1 ms of validate's start-up (measured: 26.3 vs 27.1 ms); only training draws
    import random

#: The types a dataset_config may give each value (a rate may be written as an int: 0 or 1).
CAPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "shuffle_caption": bool,
    "keep_tokens": int,
    "keep_tokens_separator": str,
    "caption_separator": str,
    "caption_prefix": str,
    "caption_suffix": str,
    "caption_dropout_rate": (int, float),
    "caption_dropout_every_n_epochs": int,
    "caption_tag_dropout_rate": (int, float),
    "flip_aug": bool,
}


class CaptionSettings(NamedTuple):
    """The caption options of one subset, at sd-scripts' defaults (its argparse options and
    dataset_config subset parameters; the key table's defaults are the same, tested)."""

    shuffle_caption: bool = False
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    caption_separator: str = ","
    caption_prefix: str = ""
    caption_suffix: str = ""
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    flip_aug: bool = False

    def changes_captions(self) -> bool:
        """Whether a caption can differ from one draw to the next (or from the file's first line)."""
        return bool(
            self.shuffle_caption
            or self.caption_tag_dropout_rate > 0
            or self.caption_dropout_rate > 0
            or self.caption_dropout_every_n_epochs > 0
            or self.caption_prefix
            or self.caption_suffix
        )


#: sd-scripts' default of each caption option (None in a config: this).
CAPTION_DEFAULTS: dict[str, object] = dict(CaptionSettings._field_defaults)


def caption_settings(values: dict) -> CaptionSettings:
    """The settings from a table of values (absent or None: sd-scripts' default)."""
    found = {k: d if values.get(k) is None else values[k] for k, d in CAPTION_DEFAULTS.items()}
    found["caption_dropout_rate"] = float(found["caption_dropout_rate"])
    found["caption_tag_dropout_rate"] = float(found["caption_tag_dropout_rate"])
    return CaptionSettings(**found)


def process_caption(caption: str, settings: CaptionSettings, epoch: int, rng: random.Random) -> str:
    """The caption one draw trains on; `epoch` counts from 1, as sd-scripts' current_epoch does."""
    if settings.caption_prefix:
        caption = settings.caption_prefix + " " + caption
    if settings.caption_suffix:
        caption = caption + " " + settings.caption_suffix
    dropped = settings.caption_dropout_rate > 0 and rng.random() < settings.caption_dropout_rate
    every = settings.caption_dropout_every_n_epochs
    if dropped or (every > 0 and epoch % every == 0):
        return ""
    caption = caption.split("\n")[0]
    if not (settings.shuffle_caption or settings.caption_tag_dropout_rate > 0):
        return caption
    front, flex, back = _split_tags(caption, settings)
    if settings.shuffle_caption:
        rng.shuffle(flex)
    if settings.caption_tag_dropout_rate > 0:
        flex = [tag for tag in flex if rng.random() >= settings.caption_tag_dropout_rate]
    return ", ".join(front + flex + back)


def _split_tags(caption: str, settings: CaptionSettings) -> tuple[list[str], list[str], list[str]]:
    """(tags kept in front, tags shuffled and dropped, tags kept at the end)."""
    sep, keep = settings.caption_separator, settings.keep_tokens_separator
    if keep and keep in caption:
        front, flex = caption.split(keep, 1)
        back = ""
        if keep in flex:
            flex, back = flex.split(keep, 1)
        return _tags(front, sep), _tags(flex, sep), _tags(back, sep)
    tags = [t.strip() for t in caption.strip().split(sep)]
    n = settings.keep_tokens
    return (tags[:n], tags[n:], []) if n > 0 else ([], tags, [])


def _tags(text: str, sep: str) -> list[str]:
    return [t.strip() for t in text.split(sep) if t.strip()]
