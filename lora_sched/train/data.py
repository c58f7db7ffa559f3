"""Training data: kohya's folder layout or the generated `builtin:shapes`, cached as latents once.

The data is what the config layer found (lora_sched.config.dataset: train_data_dir in kohya's
``N_concept/`` layout, or a dataset_config), walked by the same code that counts the preview's
epochs: images with same-name caption files (``caption_extension``); an image without one is
captioned by its folder's words (sd-scripts uses the class tokens too). An image that cannot be
decoded stops training before its first step, naming every such file: the preview counted it, so
skipping it would run a different length than the preview showed.

Order: the examples of an epoch are a permutation drawn from a generator seeded by (seed, epoch)
alone, and each process takes every P-th batch of it (the way accelerate shards a dataloader), so
the batch at any (epoch, position, process) is known without replaying the run: resume is exact.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.builtins import BUILTIN_DATA, BUILTIN_SHAPES_SIZE
from lora_sched.config.buckets import BucketSettings, epoch_batches
from lora_sched.config.captions import CaptionSettings, caption_settings
from lora_sched.config.dataset import IMAGE_EXTENSIONS, DataPlan, Dataset, NoData, Subset, folder_plan
from lora_sched.config.keys import caption_suffix
from lora_sched.errors import ConfigError, did_you_mean, problem, raw
from lora_sched.train.buckets import Geometry, encode_latents, fit_to_bucket, sample_buckets
from lora_sched.train.text_encoding import DEFAULT_TEXT, TextOptions, encode_sd_text, tokenize_chunks

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One training image (a path, or a builtin drawing function) with its caption and repeats.

    buckets: its dataset's bucketing (None: fitted to the size load() is given); geometry: its size
    on disk and its bucket, known once load_images has decoded it (None for a drawn image)."""

    name: str
    caption: str
    repeats: int
    path: Path | None = None
    draw: Callable[[int, int], Any] | None = None
    buckets: BucketSettings | None = None
    geometry: Geometry | None = None
    captions: CaptionSettings | None = None  # its subset's caption options and flip_aug (lora_sched.train.augment)
    dataset: int = 0  # its [[datasets]] entry: each dataset is batched apart
    batch_size: int | None = None  # its dataset's batch size (None: the run's)
    loss_weight: float = 1.0  # prior_loss_weight for a regularisation image, as sd-scripts' loss_weights

    def load(self, width: int, height: int) -> Any:
        """The image as an RGB PIL image, fitted to its bucket (or resized to cover (width, height)
        and centre-cropped)."""
        return self.load_fitted(width, height)[0]

    def load_fitted(self, width: int, height: int) -> tuple[Any, Geometry | None]:
        if self.draw is not None:
            return self.draw(width, height), None
        from PIL import Image

        with Image.open(self.path) as img:
            img.load()
            return fit_to_bucket(img.convert("RGB"), self.buckets or BucketSettings((width, height)))

    @property
    def bucket(self) -> tuple[int, int] | None:
        return self.geometry.bucket if self.geometry is not None else None


# -- builtin:shapes --------------------------------------------------------------------------
_SHAPES = ("circle", "square", "triangle", "diamond")
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40)}
_BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15)}


def builtin_shapes() -> list[Example]:
    """BUILTIN_SHAPES_SIZE captioned drawings: 4 shapes x 4 colours x 2 backgrounds, in a fixed order."""
    examples = []
    for shape in _SHAPES:
        for colour in _COLOURS:
            for background in _BACKGROUNDS:
                caption = f"a {colour} {shape} on a {background} background"
                draw = _Drawing(shape, colour, background)
                examples.append(Example(f"{shape}-{colour}-{background}", caption, 1, draw=draw))
    assert len(examples) == BUILTIN_SHAPES_SIZE, "lora_sched.builtins.BUILTIN_SHAPES_SIZE is out of date"
    return examples


@dataclass(frozen=True)
class _Drawing:
    shape: str
    colour: str
    background: str

    def __call__(self, width: int, height: int) -> Any:
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (width, height), _BACKGROUNDS[self.background])
        pen = ImageDraw.Draw(img)
        x0, y0, x1, y1 = width * 0.2, height * 0.2, width * 0.8, height * 0.8
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        fill = _COLOURS[self.colour]
        if self.shape == "circle":
            pen.ellipse((x0, y0, x1, y1), fill=fill)
        elif self.shape == "square":
            pen.rectangle((x0, y0, x1, y1), fill=fill)
        elif self.shape == "triangle":
            pen.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
        else:
            pen.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
        return img


# -- kohya folders ---------------------------------------------------------------------------
class TrainingData(NamedTuple):
    """What training reads: its examples (repeats in each), the batch size and the resolution, and
    the images validation_split holds out (lora_sched.train.validation; never trained on)."""

    examples: list[Example]
    batch_size: int
    resolution: Any
    validation: tuple[Example, ...] = ()


def training_data(cfg: Any) -> TrainingData:
    """The examples of the data the config names (dataset_config, else train_data_dir, default
    builtin:shapes), with the batch size and resolution they are trained at."""
    values = cfg.values
    caption_extension = str(values.get("caption_extension") or ".txt")
    batch, resolution = int(values["train_batch_size"]), values["resolution"]
    captions = caption_settings(values)
    found = cfg.data()
    weight = float(values.get("prior_loss_weight", 1.0))
    if not values.get("dataset_config"):
        if isinstance(found, DataPlan) and found.datasets:  # the folders the preview counted (reg_data_dir too)
            examples = examples_from(found, caption_extension, captions, weight)
            held_out = tuple(validation_examples(found, caption_extension, captions))
            return TrainingData(examples, batch, resolution, held_out)
        _refuse_unsplit_builtin(values)
        examples = load_examples(str(values["train_data_dir"]), caption_extension)
        return TrainingData([replace(ex, captions=captions) for ex in examples], batch, resolution)
    if isinstance(found, NoData) or not found.datasets:
        why = found.why if isinstance(found, NoData) else "it holds no dataset here"
        raise ConfigError(
            problem("dataset_config", "a kohya dataset config with images", values["dataset_config"], why)
        )
    examples = examples_from(found, caption_extension, prior_loss_weight=weight)
    held_out = tuple(validation_examples(found, caption_extension))
    sizes = {d.batch_size for d in found.datasets}  # one size: it counts "sp" durations, as the preview does
    batch = sizes.pop() if len(sizes) == 1 else batch
    return TrainingData(examples, batch, found.datasets[0].resolution or resolution, held_out)


def _refuse_unsplit_builtin(values: dict[str, Any]) -> None:
    """builtin:shapes has no folders to hold images out of or regularisation images to add: refuse
    reg_data_dir and validation_split with it rather than ignore them."""
    for key in ("reg_data_dir", "validation_split"):
        given = values.get(key)
        if given:
            raise ConfigError(
                problem(
                    key,
                    f"{key} with a train_data_dir of N_concept/ folders or a dataset_config",
                    given,
                    f"{BUILTIN_DATA} (the default train_data_dir) has no such folders; name your images",
                )
            )


def examples_from(
    found: DataPlan,
    caption_extension: str,
    captions: CaptionSettings | None = None,
    prior_loss_weight: float = 1.0,
) -> list[Example]:
    """Every example an epoch of a counted data plan reads, with its dataset's bucketing (or
    resolution) and batch size and its subset's caption options (else `captions`): the images the
    validation split keeps, then the regularisation images with the repeats sd-scripts' fill gives
    them (lora_sched.config.dataset.reg_repeats) and `prior_loss_weight` as their loss weight."""
    examples: list[Example] = []
    for number, dataset in enumerate(found.datasets):
        picked: dict[str, tuple[Subset, list[tuple[int, int]]]] = {}  # by folder, in epoch order
        for subset, image, repeats in dataset.image_repeats():
            picked.setdefault(subset.path, (subset, []))[1].append((image, repeats))
        for subset, pairs in picked.values():
            weight = prior_loss_weight if subset.is_reg else 1.0
            examples += _subset_examples(subset, caption_extension, captions, number, dataset, pairs, weight)
    return examples


def validation_examples(
    found: DataPlan, caption_extension: str, captions: CaptionSettings | None = None
) -> list[Example]:
    """The images each dataset's validation_split holds out (one repeat each, as sd-scripts' validation
    dataset reads them; regularisation folders are never split)."""
    examples: list[Example] = []
    for number, dataset in enumerate(found.datasets):
        for subset in dataset.subsets:
            held_out = [(image, 1) for image in dataset.split(subset)[1]]
            examples += _subset_examples(subset, caption_extension, captions, number, dataset, held_out)
    return examples


def _subset_examples(
    subset: Subset,
    caption_extension: str,
    captions: CaptionSettings | None,
    number: int,
    dataset: Dataset,
    picked: list[tuple[int, int]] | None = None,
    loss_weight: float = 1.0,
) -> list[Example]:
    """The examples of a subset's `picked` (image index, repeats) pairs (default: every image with
    the subset's repeats), each weighing `loss_weight` in the loss."""
    # bucketing off: its one bucket is the dataset's resolution (None: unreadable, the run's is used)
    fit = dataset.buckets if dataset.bucketed() or (dataset.buckets and not dataset.buckets.enable_bucket) else None
    examples = []
    suffix = caption_suffix(subset.caption_extension or caption_extension)  # "txt" reads img.txt, as sd-scripts
    pairs = picked if picked is not None else [(i, subset.repeats) for i in range(len(subset.images))]
    for index, repeats in pairs:
        image_path = subset.images[index]
        image = Path(image_path)
        caption_file = Path(os.path.splitext(image_path)[0] + suffix)
        caption = subset.concept
        if os.path.isfile(caption_file):  # False for a name too long to exist too, as in sd-scripts
            caption = _first_line(caption_file.read_text(encoding="utf-8", errors="replace"))
        options = subset.captions or captions
        name = f"{subset.name}/{image.name}"
        examples.append(
            Example(
                name,
                caption,
                repeats,
                image,
                buckets=fit,
                captions=options,
                dataset=number,
                batch_size=dataset.batch_size,
                loss_weight=loss_weight,
            )
        )
    return examples


def _first_line(text: str) -> str:
    """A caption file's caption: its first line, stripped (sd-scripts reads no further)."""
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


def load_examples(train_data_dir: str, caption_extension: str = ".txt", key: str = "train_data_dir") -> list[Example]:
    """Every example of `train_data_dir` (kohya layout) or of `builtin:shapes`; ConfigError if none."""
    if train_data_dir.startswith("builtin:"):
        if train_data_dir != BUILTIN_DATA:
            hint = did_you_mean(train_data_dir, [BUILTIN_DATA]) or f"the built-in dataset is {BUILTIN_DATA}"
            raise ConfigError(problem(key, f'"{BUILTIN_DATA}" or a folder in kohya layout', train_data_dir, hint))
        return builtin_shapes()
    root = Path(os.path.expanduser(train_data_dir))
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise ConfigError(
            problem(key, "a folder of N_concept/ subfolders (kohya layout)", train_data_dir, f"the path {what}")
        )
    found = folder_plan(train_data_dir, 1)  # the same walk that counts an epoch for the preview
    if isinstance(found, NoData):
        raise ConfigError(
            problem(
                key,
                f"N_concept/ subfolders with images ({', '.join(IMAGE_EXTENSIONS)}) and same-name captions",
                raw(found.why),
                f"e.g. {root / '10_shapes' / 'img001.png'} with {root / '10_shapes' / 'img001.txt'}",
            )
        )
    for notice in found.problems:
        if notice.severity == "notice":
            log.warning(f"notice: {notice.found}")
    return examples_from(found, caption_extension)


def load_images(examples: list[Example], width: int, height: int, key: str = "train_data_dir") -> tuple[list, list]:
    """Decode every image (before the first step), fitted to its bucket; the examples with their
    geometry; ConfigError naming each image that cannot be read."""
    images, fitted, bad = [], [], []
    for example in examples:
        try:
            image, geometry = example.load_fitted(width, height)
        except Exception as exc:  # PIL raises many types for a bad file: collect them all
            bad.append(f"{example.path} ({type(exc).__name__}: {exc})")
            continue
        images.append(image)
        fitted.append(replace(example, geometry=geometry))
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ConfigError(
            problem(
                key,
                "images training can decode",
                raw(f"{len(bad)} of {len(examples)} unreadable: {shown}"),
                "remove or replace them; training stops before its first step so that it runs the length "
                "the preview counted",
            )
        )
    return fitted, images


def sample_index(examples: list[Example]) -> list[int]:
    """Example positions with repeats expanded: one epoch is one pass over it."""
    return [i for i, ex in enumerate(examples) for _ in range(ex.repeats)]


# -- cached tensors and the sharded order ----------------------------------------------------
@dataclass
class CachedData:
    """Latents (N, C, h, w; BucketLatents when buckets differ in size: indexed by a batch's rows the
    same way), token ids (N, 77) and, while the text encoder is frozen, embeddings.

    `index` lists example positions with repeats expanded: one epoch = one pass over it.
    """

    latents: Any
    input_ids: Any
    embeddings: Any | None
    index: list[int]
    captions: list[str]
    loss_weights: Any | None = None  # (N,) each example's loss weight; None when all weigh 1

    @property
    def num_samples(self) -> int:
        return len(self.index)


def tokenize(tokenizer: Any, captions: list[str], max_token_length: int | None = None) -> Any:
    """Token ids of `captions`, padded (and cut) to the tokenizer's length, as SD's encoders take them;
    with max_token_length 150 / 225, (N, chunks, 77) (lora_sched.train.text_encoding)."""
    if max_token_length:
        return tokenize_chunks(tokenizer, captions, max_token_length)
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def cache_data(
    model: Any,
    examples: list[Example],
    images: list,
    cache_text: bool,
    batch: int = 8,
    disk_cache: bool = False,
    text: TextOptions = DEFAULT_TEXT,
) -> CachedData:
    """Encode every image through the VAE once (distribution mean x scaling factor, deterministic)
    and tokenize every caption; also encode captions when the text encoder is frozen. `disk_cache`
    (cache_latents_to_disk): latents read from / written to IMAGE.npz files (train/latent_cache.py).
    `text`: the run's clip_skip and max_token_length (lora_sched.train.text_encoding.TextOptions)."""
    import torch

    scale = float(getattr(model.vae.config, "scaling_factor", 0.18215))
    captions = [ex.caption for ex in examples]
    ids = tokenize(model.tokenizer, captions, text.max_token_length)
    if disk_cache:
        from lora_sched.train.latent_cache import disk_cached_latents

        latents = disk_cached_latents(model.vae, examples, images, batch, scale)
    else:
        latents = encode_latents(model.vae, images, batch, scale)  # one tensor, or one per image when sizes differ
    with torch.no_grad():
        embeddings = None
        if cache_text:
            encoder, starts = model.text_encoder, range(0, len(ids), batch)
            embeddings = torch.cat([encode_sd_text(encoder, ids[i : i + batch], text.clip_skip) for i in starts])
    index = sample_index(examples)
    return CachedData(latents, ids, embeddings, index, captions, loss_weights(examples))


def sample_weights(data: CachedData, samples: list[int]) -> Any | None:
    """The loss weights of a micro-batch's samples (positions into data.index), None when every
    example weighs 1 (the loss is then the plain batch mean)."""
    if data.loss_weights is None:
        return None
    return data.loss_weights[[data.index[i] for i in samples]]


def loss_weights(examples: list[Example]) -> Any | None:
    """Each example's loss weight as a tensor (prior_loss_weight for regularisation images), or None
    when all weigh 1: the loss then stays the plain batch mean, bit for bit as without weights."""
    import torch

    weights = [ex.loss_weight for ex in examples]
    return None if all(w == 1.0 for w in weights) else torch.tensor(weights, dtype=torch.float32)


@dataclass(frozen=True)
class ShardedOrder:
    """Which samples a process's micro-batches hold: a pure function of (seed, epoch, position, rank).

    An epoch is ceil(num_samples / batch) global batches of a seeded permutation (with buckets: each
    bucket's samples in permutation order cut into batches, sum over buckets of ceil(n / batch),
    taken in the order their first sample comes in the permutation); process `rank`
    of `num_processes` takes global batches rank, rank + P, ... and wraps around to the first
    batches when they run out (as accelerate's even_batches does), so every process runs
    ceil(batches / P) micro-batches and the same number of optimizer updates.
    """

    num_samples: int
    batch_size: int
    seed: int
    rank: int = 0
    num_processes: int = 1
    bucket_of: tuple[int, ...] = ()  # the bucket of each sample (empty: one bucket)
    bucket_batch: tuple[int, ...] = ()  # the batch size of each bucket

    @property
    def num_batches(self) -> int:
        if not self.bucket_of:
            return math.ceil(self.num_samples / self.batch_size)
        counts = [0] * len(self.bucket_batch)
        for bucket in self.bucket_of:
            counts[bucket] += 1
        return sum(math.ceil(n / size) for n, size in zip(counts, self.bucket_batch))

    @property
    def batches_per_process(self) -> int:
        return math.ceil(self.num_batches / self.num_processes)

    def updates_per_epoch(self, accum: int) -> int:
        """Optimizer updates per epoch: windows of `accum` micro-batches, the last one possibly shorter."""
        return math.ceil(self.batches_per_process / accum)

    def permutation(self, epoch: int) -> list[int]:
        import torch

        gen = torch.Generator().manual_seed(_mix(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def batch(self, epoch: int, position: int, permutation: list[int] | None = None) -> list[int]:
        """Sample positions (into CachedData.index) of this process's micro-batch `position`."""
        perm = permutation if permutation is not None else self.permutation(epoch)
        g = (position * self.num_processes + self.rank) % self.num_batches
        if self.bucket_of:  # each bucket batched apart (lora_sched.config.buckets.epoch_batches)
            return epoch_batches(perm, list(self.bucket_of), list(self.bucket_batch))[g]
        return perm[g * self.batch_size : (g + 1) * self.batch_size]


def sharded_order(examples: list[Example], batch_size: int, seed: int, rank: int, procs: int) -> ShardedOrder:
    """The order of `examples` (decoded by load_images): bucketed when they fill several buckets (or
    come from several datasets, each batched apart with its own batch size)."""
    index = sample_index(examples)
    groups = [(ex.dataset, ex.bucket, ex.batch_size or batch_size) for ex in examples]  # batched apart
    if len(set(groups)) < 2:
        return ShardedOrder(len(index), groups[0][2] if groups else batch_size, seed, rank, procs)
    bucket_of, bucket_batch = sample_buckets(groups, index)
    return ShardedOrder(len(index), batch_size, seed, rank, procs, bucket_of, bucket_batch)


def _mix(*parts: int) -> int:
    """A 63-bit seed from several ints (splitmix64 steps), so nearby (seed, step) pairs differ fully."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return state >> 1


def draw_generator(seed: int, epoch: int, sample: int) -> random.Random:
    """The generator of one sample's draw in an epoch (its caption processing and flip): the same in
    a resumed run and with any number of processes."""
    return random.Random(_mix(seed, epoch, sample, 3))


def step_generator(seed: int, step: int, micro: int, rank: int) -> Any:
    """The generator the noise and timesteps of one micro-batch are drawn from."""
    import torch

    return torch.Generator().manual_seed(_mix(seed, step, micro, rank, 1))
