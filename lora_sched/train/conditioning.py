"""What the UNet is conditioned on, per micro-batch: the text embeddings (and, for SDXL, the pooled
text embedding and the size/crop ids), either cached once (frozen text encoders) or computed every
step (trained ones).

SD 1.x / 2.x: the text encoder's last hidden state. SDXL, as sd-scripts' sdxl_train_network: the
penultimate hidden states of both text encoders concatenated on the channel axis, the second
encoder's projected pooled output (at the first end-of-text token), and six ids per image
(original height and width, crop top and left, target height and width), which diffusers' UNet
embeds itself (``added_cond_kwargs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lora_sched.train.data import CachedData, Example, tokenize


@dataclass
class TextConditioning:
    """SD 1.x / 2.x: one text encoder; its output in `data.embeddings` while it is frozen (`data`:
    the cache, or a micro-batch whose captions were drawn anew, lora_sched.train.augment)."""

    text_encoder: Any
    train_te: bool

    def __call__(self, data: Any, rows: list[int], device: Any) -> tuple[Any, dict]:
        if self.train_te:
            return self.text_encoder(data.input_ids[rows].to(device))[0], {}
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

    def __call__(self, data: Any, rows: list[int], device: Any) -> tuple[Any, dict]:
        """`rows` index `data`: the cache, or an augmented micro-batch (lora_sched.train.augment.BatchData)
        whose cached values sit at its `source_rows`, with its drawn captions and flips."""
        cache_rows = list(getattr(data, "source_rows", ()) or rows)
        captions = getattr(data, "drawn_captions", None)  # (the cache's `captions` are every caption)
        if captions is not None:  # this draw's captions, through both encoders
            ids_1, ids_2 = (tokenize(t, list(captions)).to(device) for t in self.tokenizers)
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


def encode_sdxl_text(text_encoder: Any, text_encoder_2: Any, ids_1: Any, ids_2: Any, eos_id: int) -> tuple[Any, Any]:
    """(penultimate hidden states of both encoders side by side, encoder 2's projected pooled output).

    The pooled output is read at the first end-of-text token (the tokenizer's id), as sd-scripts
    does: SDXL's text_encoder_2 config names a legacy EOS id that is not the tokenizer's.
    """
    import torch

    out_1 = text_encoder(ids_1, output_hidden_states=True)
    out_2 = text_encoder_2(ids_2, output_hidden_states=True)
    hidden = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
    first_eos = (ids_2 == eos_id).int().argmax(dim=-1)
    last = out_2.last_hidden_state[torch.arange(ids_2.shape[0], device=ids_2.device), first_eos]
    pooled = _unwrap(text_encoder_2).text_projection(last)
    return hidden, pooled


def _unwrap(module: Any) -> Any:
    """The model inside a DDP wrapper (accelerate's prepare), for its config and submodules."""
    return getattr(module, "module", module)


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


def sdxl_conditioning(model: Any, data: CachedData, examples: list[Example], train_te: bool) -> SdxlConditioning:
    """Tokenize every caption for both encoders, compute each example's size ids from its latents'
    size, and encode the captions once when the encoders are frozen."""
    import torch

    ids_1, ids_2 = tokenize(model.tokenizer, data.captions), tokenize(model.tokenizer_2, data.captions)
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


def conditioning(model: Any, data: CachedData, examples: list[Example], train_te: bool) -> Any:
    """The conditioning for `model`'s kind."""
    if model.is_sdxl:
        return sdxl_conditioning(model, data, examples, train_te)
    return TextConditioning(model.text_encoder, train_te)
