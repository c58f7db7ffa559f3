"""What the UNet is conditioned on, per micro-batch: the text embeddings (and, for SDXL, the pooled
text embedding and the size/crop ids), either cached once (frozen text encoders) or computed every
step (trained ones).

SD 1.x / 2.x: the text encoder's last hidden state (or, with clip_skip, an earlier one). SDXL, as
sd-scripts' sdxl_train_network: the penultimate hidden states of both text encoders concatenated on
the channel axis, the second encoder's projected pooled output (at the first end-of-text token), and
six ids per image (original height and width, crop top and left, target height and width), which
diffusers' UNet embeds itself (``added_cond_kwargs``). Long captions (max_token_length) and
clip_skip: lora_sched.train.text_encoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lora_sched.train.data import CachedData, Example, tokenize
from lora_sched.train.text_encoding import DEFAULT_TEXT, TextOptions, check_clip_skip, encode_sd_text, encode_sdxl_text


@dataclass
class TextConditioning:
    """SD 1.x / 2.x: one text encoder; its output in `data.embeddings` while it is frozen (`data`:
    the cache, or a micro-batch whose captions were drawn anew, lora_sched.train.augment)."""

    text_encoder: Any
    train_te: bool
    clip_skip: int | None = None

    def __call__(self, data: Any, rows: list[int], device: Any) -> tuple[Any, dict]:
        if self.train_te:
            return encode_sd_text(self.text_encoder, data.input_ids[rows].to(device), self.clip_skip), {}
        return data.embeddings[rows], {}

    def wrap(self, prepare: Any) -> list[Any]:
        """Hand the trained text encoder to accelerate (`prepare`); the modules DDP syncs."""
        if not self.train_te:
            return []
        self.text_encoder = prepare(self.text_encoder)
        return [self.text_encoder]


@dataclass
class SdxlConditioning:
    """SDXL: both text encoders (cached while frozen) and the size/crop ids of each example."""

    text_encoder: Any
    text_encoder_2: Any
    input_ids: Any  # tokenizer 1, (N, 77)
    input_ids_2: Any  # tokenizer 2, (N, 77)
    time_ids: Any  # (N, 6)
    eos_id: int  # tokenizer 2's end-of-text id: where the pooled output is read
    train_te: bool
    hidden: Any = None  # cached (N, 77, width_1 + width_2) while the encoders are frozen
    pooled: Any = None  # cached (N, projection_dim)
    tokenizers: tuple = ()  # (tokenizer 1, tokenizer 2): for captions drawn anew (caption options)
    crop_right: Any = None  # (N,): each image's crop right edge, for the crop ids of a mirrored draw
    max_token_length: int | None = None  # 150 / 225: ids are (N, chunks, 77)

    def __call__(self, data: Any, rows: list[int], device: Any) -> tuple[Any, dict]:
        """`rows` index `data`: the cache, or an augmented micro-batch (lora_sched.train.augment.BatchData)
        whose cached values sit at its `source_rows`, with its drawn captions and flips."""
        cache_rows = list(getattr(data, "source_rows", ()) or rows)
        captions = getattr(data, "drawn_captions", None)  # (the cache's `captions` are every caption)
        if captions is not None:  # this draw's captions, through both encoders
            ids_1, ids_2 = (tokenize(t, list(captions), self.max_token_length).to(device) for t in self.tokenizers)
            hidden, pooled = self._encode(ids_1, ids_2)
        elif self.train_te:
            hidden, pooled = self._encode(
                self.input_ids[cache_rows].to(device), self.input_ids_2[cache_rows].to(device)
            )
        else:
            hidden, pooled = self.hidden[cache_rows], self.pooled[cache_rows]
        ids = mirrored_time_ids(self.time_ids[cache_rows], self.crop_right[cache_rows], getattr(data, "flips", ()))
        ids = ids.to(device=device, dtype=hidden.dtype)
        return hidden, {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}}

    def _encode(self, ids_1: Any, ids_2: Any) -> tuple[Any, Any]:
        """Both encoders on token ids: with gradients while they train, without while frozen."""
        import torch

        with torch.enable_grad() if self.train_te else torch.no_grad():
            return encode_sdxl_text(self.text_encoder, self.text_encoder_2, ids_1, ids_2, self.eos_id)

    def wrap(self, prepare: Any) -> list[Any]:
        if not self.train_te:
            return []
        self.text_encoder, self.text_encoder_2 = prepare(self.text_encoder), prepare(self.text_encoder_2)
        return [self.text_encoder, self.text_encoder_2]


def size_ids(example: Example, target: tuple[int, int]) -> list[int]:
    """SDXL's six ids of an image trained at `target` (width, height): original (h, w), crop (top,
    left), target (h, w). The original size and crop come from how the image was fitted to its size
    (sd-scripts' rule, lora_sched.config.buckets.original_crop); a drawn image was drawn at `target`."""
    geometry = example.geometry
    if geometry is None:
        return [target[1], target[0], 0, 0, target[1], target[0]]
    left, top = geometry.crop_ltrb[:2]
    (ow, oh), (tw, th) = geometry.original_size, geometry.bucket
    return [oh, ow, int(top), int(left), th, tw]


def crop_right(example: Example, target: tuple[int, int]) -> int:
    """The right edge of the image's crop box in its bucket (`target` width when it was not fitted)."""
    geometry = example.geometry
    return target[0] if geometry is None else int(geometry.crop_ltrb[2])


def mirrored_time_ids(time_ids: Any, right: Any, flips: Any) -> Any:
    """The size ids of a micro-batch whose `flips` rows were mirrored: as sd-scripts, the crop left
    of a mirrored image is its target width minus the crop's right edge (top and sizes unchanged)."""
    if not any(flips):
        return time_ids
    ids = time_ids.clone()
    for j, flipped in enumerate(flips):
        if flipped:
            ids[j, 3] = ids[j, 5] - right[j]
    return ids


def sdxl_conditioning(
    model: Any, data: CachedData, examples: list[Example], train_te: bool, max_token_length: int | None = None
) -> SdxlConditioning:
    """Tokenize every caption for both encoders, compute each example's size ids from its latents'
    size, and encode the captions once when the encoders are frozen."""
    import torch

    ids_1 = tokenize(model.tokenizer, data.captions, max_token_length)
    ids_2 = tokenize(model.tokenizer_2, data.captions, max_token_length)
    scale = model.vae_scale_factor
    rows, rights = [], []
    for i, example in enumerate(examples):
        height, width = (int(n) * scale for n in data.latents[[i]].shape[-2:])
        rows.append(size_ids(example, (width, height)))
        rights.append(crop_right(example, (width, height)))
    time_ids = torch.tensor(rows, dtype=torch.float32)
    eos_id = int(model.tokenizer_2.eos_token_id)
    cond = SdxlConditioning(model.text_encoder, model.text_encoder_2, ids_1, ids_2, time_ids, eos_id, train_te)
    cond.tokenizers = (model.tokenizer, model.tokenizer_2)
    cond.crop_right = torch.tensor(rights, dtype=torch.float32)
    cond.max_token_length = max_token_length
    if not train_te:
        device, te_1, te_2 = model.unet.device, model.text_encoder, model.text_encoder_2
        with torch.no_grad():
            parts = [
                encode_sdxl_text(te_1, te_2, ids_1[i : i + 8].to(device), ids_2[i : i + 8].to(device), eos_id)
                for i in range(0, len(ids_1), 8)
            ]
        cond.hidden = torch.cat([h for h, _ in parts])
        cond.pooled = torch.cat([p for _, p in parts])
    return cond


def model_text_options(model: Any, text: TextOptions) -> TextOptions:
    """The run's text options for `model`, checked against it before anything is encoded: SDXL
    ignores clip_skip, with sd-scripts' warning; SD's clip_skip must name a layer of its encoder."""
    if model.is_sdxl:
        if text.clip_skip is not None:
            logging.getLogger("lora_sched.train").warning(
                "clip_skip = %s is ignored for SDXL, as sd-scripts ignores it: SDXL is conditioned on the "
                "penultimate layer of both text encoders",
                text.clip_skip,
            )
        return text._replace(clip_skip=None)
    check_clip_skip(text, model.text_encoder)
    return text


def conditioning(
    model: Any, data: CachedData, examples: list[Example], train_te: bool, text: TextOptions = DEFAULT_TEXT
) -> Any:
    """The conditioning for `model`'s kind (`text`: as model_text_options made it)."""
    if model.is_sdxl:
        return sdxl_conditioning(model, data, examples, train_te, text.max_token_length)
    return TextConditioning(model.text_encoder, train_te, text.clip_skip)
