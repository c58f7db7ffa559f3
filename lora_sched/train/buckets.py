"""The image work of aspect-ratio buckets: each image resized and centre-cropped to its bucket, latents
cached per bucket size, and which bucket each sample of an epoch batches with.

Which bucket an image takes is decided by lora_sched.config.buckets (the rules the preview counts
with); this module only applies it. As sd-scripts resizes: area averaging when shrinking (PIL's
BOX filter; sd-scripts uses OpenCV's INTER_AREA), Lanczos when enlarging.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from lora_sched.config.buckets import BucketRules, BucketSettings, Placement, Size, original_crop
from lora_sched.errors import ConfigError, problem


class Geometry(NamedTuple):
    """Where a training image came from: its size on disk, and how it was fitted to its bucket."""

    original_size: Size  # (width, height) before any resize
    placement: Placement

    @property
    def bucket(self) -> Size:
        return self.placement.bucket

    @property
    def crop_ltrb(self) -> tuple[float, float, float, float]:
        """sd-scripts' crop (left, top, right, bottom) in bucket pixels (SDXL's crop conditioning)."""
        return original_crop(self.placement.bucket, self.original_size)


@functools.lru_cache(maxsize=64)
def rules_for(settings: BucketSettings) -> BucketRules:
    return BucketRules(settings)


def fit_to_bucket(img: Any, settings: BucketSettings) -> tuple[Any, Geometry]:
    """`img` (a PIL image) resized to cover its bucket and centre-cropped to it."""
    from PIL import Image

    placement = rules_for(settings).place(img.size)
    geometry = Geometry(img.size, placement)
    if img.size != placement.resized:
        shrinking = placement.resized[0] <= img.width and placement.resized[1] <= img.height
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
        img = img.resize(placement.resized, resample)
    left, top = placement.crop_left_top
    width, height = placement.bucket
    return img.crop((left, top, left + width, top + height)), geometry


class BucketLatents:
    """Cached latents of several sizes: one tensor per image; a batch (one bucket) is stacked."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, rows: list[int]) -> Any:
        import torch

        return torch.stack([self.items[i] for i in rows])


def encode_latents(vae: Any, images: list, batch: int, scale: float) -> Any:
    """VAE latents (distribution mean x scale) of `images`, encoded `batch` at a time among images of
    one size: a tensor (N, C, h, w) when every image has the same size, else BucketLatents."""
    import numpy as np
    import torch

    by_size: dict[Size, list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(img.size, []).append(i)
    out: list[Any] = [None] * len(images)
    with torch.no_grad():
        for members in by_size.values():
            for start in range(0, len(members), batch):
                chunk = members[start : start + batch]
                arrays = [np.asarray(images[i], dtype=np.float32) for i in chunk]
                pixels = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]) / 127.5 - 1.0
                pixels = pixels.to(vae.device, vae.dtype)
                latents = vae.encode(pixels).latent_dist.mean.float() * scale  # float32 from a half VAE too
                for i, latent in zip(chunk, latents):
                    out[i] = latent
    if len(by_size) == 1:
        return torch.stack(out)
    return BucketLatents(out)


def sample_buckets(groups: list[tuple[int, Any, int]], index: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(bucket of each sample, batch size of each bucket) for ShardedOrder: samples are the example
    positions of `index` (repeats expanded), groups[i] example i's (dataset, bucket, batch size)."""
    ids: dict[tuple, int] = {}
    for group in groups:
        ids.setdefault(group, len(ids))
    return tuple(ids[groups[i]] for i in index), tuple(group[2] for group in ids)


def check_sizes(model: str, examples: list, width: int, height: int, value: object) -> None:
    """Before the model is built: with buckets, bucket_reso_steps must be a multiple of the model's
    size step (every bucket is a multiple of it); without, each dataset's resolution itself."""
    from lora_sched.train.memory import check_resolution, resolution_multiple

    settings = {ex.buckets for ex in examples if ex.buckets is not None}
    step = resolution_multiple(model)
    for found in settings:
        if found.enable_bucket and step and found.bucket_reso_steps % step:
            steps = found.bucket_reso_steps
            fits = steps + (step - steps % step)
            hint = f"write bucket_reso_steps = {fits} (or another multiple of {step}; sd-scripts' default is 64)"
            raise ConfigError(problem("bucket_reso_steps", f"a multiple of {step} for this model", steps, hint))
    sizes = {found.resolution for found in settings if not found.enable_bucket}
    if not settings or any(ex.buckets is None for ex in examples):
        sizes.add((width, height))
    for w, h in sorted(sizes):
        check_resolution(model, w, h, value if (w, h) == (width, height) else f"{w},{h}")


def check_fitted(examples: list, step: int, width: int, height: int, value: object) -> None:
    """Every size training runs at (each bucket, or the resolution) divides by the model's size step."""
    sizes = {ex.bucket for ex in examples if ex.bucket is not None} or {(width, height)}
    bad = sorted(size for size in sizes if size[0] % step or size[1] % step)
    if bad:
        key = "resolution" if (width, height) in bad else "bucket_reso_steps"
        hint = f"{bad[0][0]}x{bad[0][1]} is not: make the resolution and bucket_reso_steps multiples of {step}"
        raise ConfigError(problem(key, f"sizes that are multiples of {step} for this model", value, hint))


def bucket_metadata(examples: list) -> dict[str, Any]:
    """sd-scripts' bucket metadata of a LoRA file: ss_enable_bucket and, with buckets, the settings
    and ss_bucket_info (samples per bucket in size order, the mean aspect-ratio error of the images)."""
    settings = next((ex.buckets for ex in examples if ex.buckets is not None and ex.buckets.enable_bucket), None)
    if settings is None:
        return {"ss_enable_bucket": False}
    low, high = settings.min_max()
    counts: dict[Size, int] = {}
    errors = []
    for ex in examples:
        if ex.geometry is None:
            continue
        counts[ex.bucket] = counts.get(ex.bucket, 0) + ex.repeats
        (bw, bh), (w, h) = ex.bucket, ex.geometry.original_size
        errors.append(abs(bw / bh - w / h))
    info = {
        "buckets": {str(i): {"resolution": list(size), "count": counts[size]} for i, size in enumerate(sorted(counts))},
        "mean_img_ar_error": sum(errors) / len(errors) if errors else 0,
    }
    return {
        "ss_enable_bucket": True,
        "ss_bucket_no_upscale": settings.bucket_no_upscale,
        "ss_min_bucket_reso": low,
        "ss_max_bucket_reso": high,
        "ss_bucket_info": info,
    }
