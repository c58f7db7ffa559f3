"""Aspect-ratio buckets as sd-scripts forms them: which bucket an image lands in, how it is resized
and cropped to it, and how many batches an epoch holds. Pure Python (the preview counts with it,
reading only image headers); training imports the same functions, so the two cannot disagree.

The rules (sd-scripts library/model_util.py make_bucket_resolutions and library/train_util.py
BucketManager, DreamBoothDataset.make_buckets):

- bucketing off: one bucket, the resolution; every image is scaled to cover it and centre-cropped;
- bucketing on: min_bucket_reso is rounded down and max_bucket_reso up to a multiple of
  bucket_reso_steps; the resolution's area gives the predefined buckets (the square of that area,
  and for each width from min to max in steps the tallest height within the area, both ways
  round); an image of a predefined size keeps it, any other takes the bucket whose aspect ratio is
  nearest its own (the first of equals in sorted order), is scaled to cover it and centre-cropped;
- bucket_no_upscale: an image larger than the resolution's area is shrunk to that area (its width
  or height rounded to the steps, whichever keeps the aspect ratio closer), a smaller one keeps its
  size; its bucket is that size rounded down to the steps (a crop, never padding);
- each bucket is batched apart: batches per epoch = sum over buckets of ceil(samples / batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

Size = tuple[int, int]  # (width, height)

#: sd-scripts' defaults (its argparse options and dataset_config parameters agree).
BUCKET_DEFAULTS = {
    "enable_bucket": False,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": False,
}


class BucketSettings(NamedTuple):
    """A dataset's bucketing: its resolution (width, height) and sd-scripts' five bucket options."""

    resolution: Size
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False

    def problem(self) -> tuple[str, str, str] | None:
        """(key, why, hint) when sd-scripts refuses these settings (its asserts at start-up), else None."""
        if not self.enable_bucket:
            return None
        for key in ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                return key, f"{value!r}: a whole number of pixels", f"write {key} = {int(value)}"
        if self.bucket_reso_steps < 1:
            return "bucket_reso_steps", f"{self.bucket_reso_steps}: it must be at least 1", "64 is sd-scripts' step"
        low, high = self.min_max()
        width, height = self.resolution
        steps = self.bucket_reso_steps
        if min(width, height) < low:
            fits = min(width, height) - min(width, height) % steps
            return (
                "min_bucket_reso",
                f"{low} (on the steps), above the resolution's shorter side {min(width, height)}",
                f"write min_bucket_reso = {fits} or less (256 when not written), or raise the resolution",
            )
        if max(width, height) > high:
            fits = max(width, height) + (steps - max(width, height) % steps) % steps
            return (
                "max_bucket_reso",
                f"{high} (on the steps), below the resolution's longer side {max(width, height)}",
                f"write max_bucket_reso = {fits} or more (1024 when not written), or lower the resolution",
            )
        return None

    def min_max(self) -> tuple[int, int]:
        """min_bucket_reso rounded down and max_bucket_reso rounded up to bucket_reso_steps (sd-scripts
        adjusts them so, with a warning)."""
        steps = self.bucket_reso_steps
        low = self.min_bucket_reso - self.min_bucket_reso % steps
        high = self.max_bucket_reso + (steps - self.max_bucket_reso % steps) % steps
        return low, high


class Placement(NamedTuple):
    """Where one image goes: its bucket, the size it is resized to (covering the bucket) and the
    offsets of the centre crop from that size to the bucket."""

    bucket: Size
    resized: Size

    @property
    def crop_left_top(self) -> Size:
        return (self.resized[0] - self.bucket[0]) // 2, (self.resized[1] - self.bucket[1]) // 2


def whole(value: object) -> object:
    """A whole float (64.0, as kohya_ss GUI presets write sizes) as its int; anything else as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def resolution_size(value: object) -> Size | None:
    """kohya's resolution as (width, height): 512, "512", "512,768", [512, 768]; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, value
    parts = value if isinstance(value, (list, tuple)) else str(value).replace("x", ",").split(",")
    try:
        numbers = [int(str(p).strip()) for p in parts]
    except ValueError:
        return None
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        return None
    return numbers[0], numbers[-1]


def predefined_buckets(resolution: Size, min_size: int, max_size: int, steps: int) -> list[Size]:
    """The bucket sizes of a resolution's area, sorted (make_bucket_resolutions)."""
    area = resolution[0] * resolution[1]
    side = int(math.sqrt(area) // steps) * steps
    sizes = {(side, side)}
    for width in range(min_size, max_size + 1, steps):
        height = min(max_size, int((area // width) // steps) * steps)
        if height >= min_size:
            sizes.update(((width, height), (height, width)))
    return sorted(sizes)


class BucketRules:
    """The bucket of any image size under one dataset's settings (built once per dataset)."""

    def __init__(self, settings: BucketSettings) -> None:
        self.settings = settings
        if not settings.enable_bucket:
            self.predefined = [settings.resolution]
        elif settings.bucket_no_upscale:
            self.predefined = []
        else:
            low, high = settings.min_max()
            self.predefined = predefined_buckets(settings.resolution, low, high, settings.bucket_reso_steps)
        self._predefined_set = set(self.predefined)
        self._ratios = [w / h for w, h in self.predefined]

    def place(self, size: Size) -> Placement:
        """The bucket and resized size of an image of `size` (width, height); ValueError for a size
        no bucket can hold (an empty side, or one thinner than bucket_reso_steps without upscaling)."""
        width, height = size
        if width < 1 or height < 1:
            raise ValueError(f"an image of {width}x{height} pixels")
        if self.predefined:
            return self._place_predefined(width, height)
        return self._place_unscaled(width, height)

    def _place_predefined(self, width: int, height: int) -> Placement:
        ratio = width / height
        bucket = (width, height)
        if bucket not in self._predefined_set:
            errors = [abs(r - ratio) for r in self._ratios]
            bucket = self.predefined[errors.index(min(errors))]  # the first of equal errors, as argmin
        # wider than the bucket: match heights, else widths (the image covers the bucket)
        scale = bucket[1] / height if ratio > bucket[0] / bucket[1] else bucket[0] / width
        return Placement(bucket, (int(width * scale + 0.5), int(height * scale + 0.5)))

    def _place_unscaled(self, width: int, height: int) -> Placement:
        steps = self.settings.bucket_reso_steps
        resized = (width, height)
        area = self.settings.resolution[0] * self.settings.resolution[1]
        if width * height > area:
            resized = self._shrunk(width / height, area)
        bucket = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
        if bucket[0] < 1 or bucket[1] < 1:
            raise ValueError(f"an image of {width}x{height} pixels: a side is shorter than bucket_reso_steps {steps}")
        return Placement(bucket, resized)

    def _shrunk(self, ratio: float, area: int) -> Size:
        """An image larger than `area` shrunk to it, the side that keeps the ratio closer on the steps."""
        width = math.sqrt(area * ratio)
        height = area / width
        by_width = self._to_steps(width)
        by_height = self._to_steps(height)
        height_for_width = self._to_steps(by_width / ratio)
        width_for_height = self._to_steps(by_height * ratio)
        if height_for_width < 1 or by_height < 1:
            raise ValueError(f"an aspect ratio of {ratio:.4g}: too thin for bucket_reso_steps")
        if abs(by_width / height_for_width - ratio) < abs(width_for_height / by_height - ratio):
            return by_width, int(by_width / ratio + 0.5)
        return int(by_height * ratio + 0.5), by_height

    def _to_steps(self, x: float) -> int:
        steps = self.settings.bucket_reso_steps
        n = int(x + 0.5)
        return n - n % steps


def original_crop(bucket: Size, original: Size) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the image's content in bucket coordinates, as sd-scripts computes
    it for SDXL's crop conditioning (get_crop_ltrb: from the original size, not the resized one)."""
    bucket_ratio = bucket[0] / bucket[1]
    image_ratio = original[0] / original[1]
    if bucket_ratio > image_ratio:
        width, height = bucket[1] * image_ratio, float(bucket[1])
    else:
        width, height = float(bucket[0]), bucket[0] / image_ratio
    left = (bucket[0] - width) // 2
    top = (bucket[1] - height) // 2
    return left, top, left + width, top + height


def bucket_counts(samples: Iterable[tuple[Size, int]]) -> dict[Size, int]:
    """Samples per bucket from (bucket, repeats) pairs, one per image."""
    counts: dict[Size, int] = {}
    for bucket, repeats in samples:
        if repeats > 0:
            counts[bucket] = counts.get(bucket, 0) + repeats
    return counts


def bucket_batches(counts: Iterable[int], batch_size: int) -> int:
    """Batches per epoch of one dataset: each bucket is batched apart."""
    return sum(math.ceil(n / batch_size) for n in counts)


def epoch_batches(order: list[int], bucket_of: list[int], batch_sizes: list[int]) -> list[list[int]]:
    """An epoch's batches from a permutation of its samples: each bucket's samples in the order they
    appear in `order`, cut into batches of its bucket's size; the batches taken in the order their
    first sample appears in `order` (one bucket: `order` cut into consecutive batches).

    bucket_of[i]: the bucket of sample i; batch_sizes[b]: the batch size of bucket b."""
    members: dict[int, list[int]] = {}
    for sample in order:
        members.setdefault(bucket_of[sample], []).append(sample)
    rank = {sample: i for i, sample in enumerate(order)}
    batches = []
    for bucket, samples in members.items():
        size = batch_sizes[bucket]
        batches += [samples[i : i + size] for i in range(0, len(samples), size)]
    batches.sort(key=lambda batch: rank[batch[0]])
    return batches
