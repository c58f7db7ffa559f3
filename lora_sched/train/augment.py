"""Per-draw augmentations of a micro-batch: captions processed by sd-scripts' rules (shuffle_caption,
keep_tokens, caption and tag dropout, prefix / suffix: lora_sched.config.captions) and images
mirrored (flip_aug, whose mirrored latents are cached next to the others, as sd-scripts caches them).

Each sample's draw comes from a generator seeded by (seed, epoch, sample position) alone
(lora_sched.train.data.draw_generator): the same sample gets the same caption and flip in a
resumed run, with any number of processes. None of this changes the step count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lora_sched.config.captions import CaptionSettings, process_caption
from lora_sched.train.buckets import encode_latents
from lora_sched.train.data import CachedData, draw_generator, tokenize
from lora_sched.train.text_encoding import DEFAULT_TEXT, TextOptions, encode_sd_text


class BatchData(NamedTuple):
    """One augmented micro-batch, indexed like CachedData by its rows 0 .. n-1.

    SDXL's conditioning (lora_sched.train.conditioning) encodes `drawn_captions` with both encoders itself
    and mirrors the crop ids of the `flips`; it reads its cached values at `source_rows`.
    """

    latents: Any
    input_ids: Any
    embeddings: Any | None
    source_rows: tuple[int, ...] = ()  # the cache rows this micro-batch was drawn from
    flips: tuple[bool, ...] = ()
    drawn_captions: tuple[str, ...] | None = None  # this draw's captions; None: the cached ones


class Augmenter:
    """Turns a micro-batch's rows of the cache into its augmented BatchData."""

    def __init__(
        self, model: Any, examples: list, flipped: dict[int, Any], seed: int, train_te: bool, text: TextOptions
    ) -> None:
        self.tokenizer, self.text_encoder, self.text = model.tokenizer, model.text_encoder, text
        self.captions = [ex.caption for ex in examples]
        self.settings: list[CaptionSettings] = [ex.captions or CaptionSettings() for ex in examples]
        self.flipped, self.seed, self.train_te = flipped, seed, train_te
        self.two_encoders = bool(getattr(model, "is_sdxl", False))  # SDXL encodes in its conditioning

    def __call__(self, data: CachedData, epoch: int, samples: list[int], rows: list[int]) -> tuple[Any, list[int]]:
        import torch

        draws = [draw_generator(self.seed, epoch, sample) for sample in samples]
        flips = [self.settings[r].flip_aug and rng.random() < 0.5 for r, rng in zip(rows, draws)]
        latents = data.latents[rows]
        if any(flips):
            latents = latents.clone()
            for j, (row, flip) in enumerate(zip(rows, flips)):
                if flip:
                    latents[j] = self.flipped[row]
        changed = any(self.settings[r].changes_captions() for r in rows)
        if changed:
            captions = [process_caption(self.captions[r], self.settings[r], epoch + 1, g) for r, g in zip(rows, draws)]
        if self.two_encoders:
            drawn = tuple(captions) if changed else None
            return BatchData(latents, None, None, tuple(rows), tuple(flips), drawn), list(range(len(rows)))
        if not changed:
            embeddings = None if self.train_te else data.embeddings[rows]
            return BatchData(latents, data.input_ids[rows], embeddings), list(range(len(rows)))
        ids = tokenize(self.tokenizer, captions, self.text.max_token_length)
        embeddings = None
        if not self.train_te:  # the frozen encoder runs on this draw's captions
            with torch.no_grad():
                device = next(self.text_encoder.parameters()).device
                embeddings = encode_sd_text(self.text_encoder, ids.to(device), self.text.clip_skip)
        return BatchData(latents, ids, embeddings), list(range(len(rows)))


def make_augmenter(
    model: Any, examples: list, images: list, seed: int, train_te: bool, text: TextOptions = DEFAULT_TEXT
) -> Augmenter | None:
    """The run's augmenter (None when no example has a caption option or flip_aug); encodes the
    mirrored images of flip_aug examples (call it while the VAE is still loaded)."""
    active = [ex.captions is not None and (ex.captions.flip_aug or ex.captions.changes_captions()) for ex in examples]
    if not any(active):
        return None
    flip_rows = [i for i, ex in enumerate(examples) if ex.captions is not None and ex.captions.flip_aug]
    flipped: dict[int, Any] = {}
    if flip_rows:
        from PIL import Image

        scale = float(getattr(model.vae.config, "scaling_factor", 0.18215))
        mirrored = [images[i].transpose(Image.Transpose.FLIP_LEFT_RIGHT) for i in flip_rows]
        latents = encode_latents(model.vae, mirrored, 8, scale)
        flipped = {row: latents[[j]][0] for j, row in enumerate(flip_rows)}
    return Augmenter(model, examples, flipped, seed, train_te, text)
