"""The data a run reads, found once for everyone: counting an epoch's batches, and training.

Where the data comes from (the first that applies; sd-scripts ignores train_data_dir when a
dataset_config is given, and so does this):

1. ``dataset_config``: kohya's dataset TOML (or JSON): ``[general]``, ``[[datasets]]`` and
   ``[[datasets.subsets]]`` with ``image_dir``, ``num_repeats``, ``batch_size``, ``is_reg`` ...,
   each value looked up subset -> dataset -> general -> the training config -> sd-scripts' default;
2. ``train_data_dir``: kohya's DreamBooth layout, ``N_concept/`` folders whose images count N
   times (a folder whose name does not start with an int before ``_`` is skipped, as is N < 1;
   loose images in ``train_data_dir`` itself are not read), and ``reg_data_dir``'s folders as
   regularisation images of the same dataset;
3. ``samples_per_epoch``: stated by the user for data that is not on this machine (images x
   repeats, regularisation samples included).

``builtin:shapes`` counts only when train_data_dir names it. Anything else is `NoData`: an
epoch-based run length is then unknown, never guessed.

Counting is sd-scripts' (library/train_util.py, library/config_util.py): an image is a file
whose name ends in one of its extension spellings (``.png`` or ``.PNG``, not ``.Png``; hidden
files are not matched, as glob does not match them), samples = images x repeats, regularisation
images are repeated or cut to as many samples as the training images, and a dataset yields
ceil(samples / batch_size) batches per epoch (one bucket; each dataset is batched apart).
Counting lists folders and reads the first bytes of each image (no decoding), so validation
stays cheap; an empty file or one that is no image is reported here, before training starts.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, NamedTuple

from lora_sched.builtins import BUILTIN_DATA, BUILTIN_SHAPES_SIZE
from lora_sched.config.buckets import (
    BUCKET_DEFAULTS,
    BucketRules,
    BucketSettings,
    Size,
    bucket_batches,
    bucket_counts,
    resolution_size,
    whole,
)
from lora_sched.config.captions import CAPTION_DEFAULTS, CAPTION_TYPES, CaptionSettings, caption_settings
from lora_sched.config.image_head import ImageHead, read_head
from lora_sched.errors import Problem, problem, raw

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: The spellings sd-scripts globs for (lower and upper case only).
_EXTENSION_SPELLINGS = IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)
#: sd-scripts' defaults for the dataset_config values the count and training read.
KOHYA_SUBSET_DEFAULTS = {"num_repeats": 1, "is_reg": False, "caption_extension": ".caption", "class_tokens": None}
KOHYA_DATASET_DEFAULTS = {"batch_size": 1, "validation_split": 0.0}
#: How many file names a message lists before "and N more".
_SHOWN = 5


class Subset(NamedTuple):
    """One folder of images, each counted `repeats` times per epoch."""

    path: str
    repeats: int
    images: list[str]
    class_tokens: str | None = None
    caption_extension: str | None = None
    is_reg: bool = False
    sizes: list[Size | None] | None = None  # (width, height) of each image, read when bucketing needs them
    captions: CaptionSettings | None = None  # a dataset_config subset's caption options (None: the config's)

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip("/\\"))

    @property
    def concept(self) -> str:
        """Caption words for images without a caption file (the folder's words, "_" read as spaces)."""
        return (self.class_tokens or "").replace("_", " ")


class Dataset(NamedTuple):
    """One batched dataset: its subsets, batch size, resolution (None: the config's), validation split
    and bucketing (None: off)."""

    subsets: list[Subset]
    batch_size: int
    resolution: Any = None
    validation_split: float = 0.0
    buckets: BucketSettings | None = None
    validation_seed: int = 0  # shuffles each training folder before the split (see split_images)

    def train_samples(self) -> int:
        return sum(s.repeats * _kept(len(s.images), self.validation_split) for s in self.subsets if not s.is_reg)

    def samples(self) -> int:
        """Samples per epoch: training images x repeats, plus the regularisation samples sd-scripts adds."""
        train = self.train_samples()
        return train + reg_samples(train, [s for s in self.subsets if s.is_reg])

    def bucketed(self) -> bool:
        """Whether images go to several buckets here (bucketing on and every image's size known)."""
        return bool(
            self.buckets is not None
            and self.buckets.enable_bucket
            and all(s.sizes is not None and None not in s.sizes for s in self.subsets if s.images)
        )

    def image_repeats(self) -> list[tuple[Subset, int, int]]:
        """(subset, image index, repeats) of every image an epoch reads: the training images kept by
        the validation split, then the regularisation images with sd-scripts' balanced repeats."""
        train = [(s, i, s.repeats) for s in self.subsets if not s.is_reg for i in self.split(s)[0]]
        reg = [(s, i, s.repeats) for s in self.subsets if s.is_reg for i in range(len(s.images))]
        balanced = reg_repeats(sum(r for _, _, r in train), [r for _, _, r in reg])
        return train + [(s, i, r) for (s, i, _), r in zip(reg, balanced) if r > 0]

    def split(self, subset: Subset) -> tuple[list[int], list[int]]:
        """(trained, held out) image indices of a subset: see split_images; a regularisation
        folder is never split (sd-scripts holds none of it out)."""
        if subset.is_reg or self.validation_split <= 0:
            return list(range(len(subset.images))), []
        return split_images(len(subset.images), self.validation_split, self.validation_seed)

    def bucket_counts(self) -> dict[Size, int]:
        """Samples per bucket (bucketed() must hold)."""
        assert self.buckets is not None
        rules = BucketRules(self.buckets)
        return bucket_counts((rules.place(s.sizes[i]).bucket, r) for s, i, r in self.image_repeats())  # type: ignore[index]

    def batches(self) -> int:
        """Batches per epoch: each bucket is batched apart (one bucket without bucketing)."""
        if self.bucketed():
            return bucket_batches(self.bucket_counts().values(), self.batch_size)
        return math.ceil(self.samples() / self.batch_size)


class DataPlan(NamedTuple):
    """The data a run reads: where from, its datasets (empty for a stated size or builtin:shapes),
    samples and batches per epoch, and what was found wrong or worth a notice on the way."""

    source: str
    datasets: list[Dataset]
    samples: int
    batches: int
    problems: list[Problem]
    key: str = "train_data_dir"


class NoData(NamedTuple):
    """The data is not known on this machine: why, and the problems found while looking."""

    why: str
    problems: list[Problem]


def _kept(images: int, validation_split: float) -> int:
    """Training images left after sd-scripts' validation split (the first ceil(n x (1 - split)))."""
    return math.ceil(images * (1 - validation_split)) if validation_split > 0 else images


def split_images(count: int, validation_split: float, seed: int) -> tuple[list[int], list[int]]:
    """(trained, held out) indices of a folder's `count` images, as sd-scripts' split_train_val
    picks them: the images shuffled by Python's random seeded with `seed`, the first
    ceil(count x (1 - split)) trained, the last round(count x split) held out. The two parts can
    share an image where that ceil and round both round up (sd-scripts trains and validates on it)."""
    order = list(range(count))
    import random  # ~1 ms of validate's start-up otherwise; only a split needs it

    random.Random(seed).shuffle(order)
    return order[: _kept(count, validation_split)], order[count - round(count * validation_split) :]


def reg_samples(train_samples: int, reg: list[Subset]) -> int:
    """Regularisation samples per epoch (see reg_repeats)."""
    return sum(reg_repeats(train_samples, [s.repeats for s in reg for _ in s.images]))


def reg_repeats(train_samples: int, repeats: list[int]) -> list[int]:
    """The repeats each regularisation image gets: sd-scripts registers them (with their own
    repeats) one by one until they reach the training samples (the rest get 0); when all are
    registered short of it, it adds one repeat per image in turn until they reach it."""
    given = [0] * len(repeats)
    n = 0
    for i, r in enumerate(repeats):
        if n >= train_samples:
            return given
        given[i], n = r, n + r
    while repeats and n < train_samples:
        for i in range(len(given)):
            if n >= train_samples:
                break
            given[i], n = given[i] + 1, n + 1
    return given


# -- listing folders ---------------------------------------------------------------------------
def list_images(folder: str) -> list[str]:
    """Image paths of one folder, sorted, as sd-scripts' glob_images finds them."""
    with os.scandir(folder) as entries:
        return sorted(
            e.path
            for e in entries
            if not e.name.startswith(".") and e.name.endswith(_EXTENSION_SPELLINGS) and e.is_file()
        )


def concept_repeats(name: str) -> int | None:
    """The repeats of an `N_concept` folder name as sd-scripts reads them (int of the text before
    the first "_"), or None when that is not an int."""
    try:
        return int(name.split("_")[0])
    except ValueError:
        return None


def scan_concepts(train_data_dir: str) -> tuple[list[Subset], list[str]]:
    """The concept folders of a DreamBooth-layout folder (sorted by name) and one notice per folder skipped.

    Raises OSError when the folder cannot be listed.
    """
    root = os.path.expanduser(train_data_dir)
    folders: list[Subset] = []
    skipped: list[str] = []
    with os.scandir(root) as entries:
        subdirs = sorted(e.path for e in entries if e.is_dir())
    for path in subdirs:
        name = os.path.basename(path)
        repeats = concept_repeats(name)
        if repeats is None:
            skipped.append(f"{path}: not in the N_concept form (e.g. 10_shapes); skipped")
            continue
        if repeats < 1:
            skipped.append(f"{path}: {repeats} repeats; skipped")
            continue
        _, _, tokens = name.partition("_")
        folders.append(Subset(path, repeats, list_images(path), class_tokens=tokens))
    return folders, skipped


def read_heads(subsets: list[Subset], sizes: bool) -> dict[str, ImageHead]:
    """Each image's header, read once: whether it may be an image and, with `sizes`, its size."""
    return {path: read_head(path, sizes) for s in subsets for path in s.images}


def image_problems(subsets: list[Subset], key: str, heads: dict[str, ImageHead]) -> list[Problem]:
    """An error naming the files of `subsets` that no image decoder can read (empty, or not an image).

    A file that passes can still be damaged further on: training decodes every image before its
    first step and stops naming any that fails."""
    bad = [(path, why) for s in subsets for path in s.images if (why := heads[path].unreadable) is not None]
    if not bad:
        return []
    shown = ", ".join(f"{path} ({why})" for path, why in bad[:_SHOWN])
    more = f", and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return [
        problem(
            key,
            "image files training can read",
            raw(f"{len(bad)} unreadable: {shown}{more}"),
            "remove or replace them: training stops on them before its first step (sd-scripts stops too)",
        )
    ]


def with_sizes(dataset: Dataset, heads: dict[str, ImageHead], key: str) -> tuple[Dataset, list[Problem]]:
    """The dataset with each image's size (when it buckets), and an error for settings sd-scripts
    refuses or images no bucket holds; sizes a header does not give are read with PIL when present."""
    settings = dataset.buckets
    if settings is None or not settings.enable_bucket:
        return dataset, []
    refused = settings.problem()
    if refused:
        name, why, hint = refused
        return dataset, [problem(name, f"bucket settings sd-scripts accepts ({key})", raw(why), hint)]
    subsets = [s._replace(sizes=[heads[p].size or _decoded_size(p) for p in s.images]) for s in dataset.subsets]
    dataset = dataset._replace(subsets=subsets)
    rules, bad = BucketRules(settings), []
    for s in subsets:
        for path, size in zip(s.images, s.sizes or []):
            if size is None:
                continue  # unreadable: reported by image_problems, or found by training
            try:
                rules.place(size)
            except ValueError as exc:
                bad.append(f"{path} ({exc})")
    if not bad:
        return dataset, []
    dataset = dataset._replace(subsets=[s._replace(sizes=None) for s in subsets])  # not bucketed: refused
    shown = ", ".join(bad[:_SHOWN]) + (f", and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
    return dataset, [problem(key, "images a bucket can hold", raw(shown), "remove them or lower bucket_reso_steps")]


def _decoded_size(path: str) -> Size | None:
    """An image's size from PIL (a format the header reader does not know), None without PIL."""
    try:
        from PIL import Image  # only for such a file
    except ImportError:
        return None
    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # PIL raises many kinds for a damaged file; training reports it by name
        return None


# -- the three sources -------------------------------------------------------------------------
def folder_plan(
    train_data_dir: str,
    batch_size: int,
    reg_data_dir: str | None = None,
    check_images: bool = True,
    buckets: BucketSettings | None = None,
    validation: tuple[float, int] = (0.0, 0),
) -> DataPlan | NoData:
    """The DreamBooth-layout folder (or builtin:shapes) train_data_dir names, with the regularisation
    folders of reg_data_dir (the same layout) in the same dataset, as sd-scripts reads them;
    check_images: read each image's first bytes (see image_problems), and its size when `buckets`
    is on (builtin:shapes is drawn at the resolution: one bucket); validation: (validation_split,
    validation_seed) of the dataset."""
    key = "train_data_dir"
    if train_data_dir == BUILTIN_DATA:
        return DataPlan(BUILTIN_DATA, [], BUILTIN_SHAPES_SIZE, math.ceil(BUILTIN_SHAPES_SIZE / batch_size), [])
    try:
        if not os.path.isdir(os.path.expanduser(train_data_dir)):
            return NoData(f'train_data_dir "{train_data_dir}" is not a folder on this machine', [])
        folders, skipped = scan_concepts(train_data_dir)
        if reg_data_dir and os.path.isdir(os.path.expanduser(reg_data_dir)):
            reg, reg_skipped = scan_concepts(reg_data_dir)
            folders += [s._replace(is_reg=True) for s in reg]
            skipped += reg_skipped
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        return NoData(f'train_data_dir "{train_data_dir}" cannot be read ({exc})', [])
    dataset = Dataset(
        folders, batch_size, buckets=buckets, validation_split=validation[0], validation_seed=validation[1]
    )
    skipped_notes = [problem(key, "N_concept/ folders", raw(n), severity="notice") for n in skipped]
    if not dataset.samples():  # the skipped folders say why
        return NoData(f'train_data_dir "{train_data_dir}" holds no image in N_concept/ folders', skipped_notes)
    problems = []
    if check_images:
        heads = read_heads(folders, sizes=buckets is not None and buckets.enable_bucket)
        dataset, problems = with_sizes(dataset, heads, key)
        problems = image_problems(folders, key, heads) + problems
    problems += skipped_notes
    return DataPlan(f'train_data_dir "{train_data_dir}"', [dataset], dataset.samples(), dataset.batches(), problems)


def size_plan(samples: int, batch_size: int) -> DataPlan:
    """A stated data-set size: samples per epoch (images x repeats), batched by train_batch_size."""
    return DataPlan(f"samples_per_epoch = {samples}", [], samples, math.ceil(samples / batch_size), [])


def dataset_config_plan(path: str, fallback: dict[str, Any], check_images: bool = True) -> DataPlan | NoData:
    """kohya's dataset_config file; `fallback` holds the training config's values (the last lookup
    before sd-scripts' defaults: batch_size, resolution, caption_extension, num_repeats, ...)."""
    key = "dataset_config"
    name = os.path.expanduser(path)
    if not os.path.isfile(name):
        return NoData(f'dataset_config "{path}" is not a file on this machine', [])
    try:
        doc, text = _read_table_file(name)
    except (OSError, ValueError) as exc:
        found = exc.strerror if isinstance(exc, OSError) else str(exc)
        return NoData(
            f'dataset_config "{path}" cannot be read',
            [Problem("", "a kohya dataset config (TOML or JSON)", found or "", file=path)],
        )
    reader = _DatasetConfigReader(path, doc, fallback)
    datasets = reader.datasets()
    reader.problems = _with_lines(reader.problems, text)
    if reader.unknown_kind:
        return NoData(f'dataset_config "{path}" {reader.unknown_kind}', reader.problems)
    if any(p.severity == "error" for p in reader.problems):
        return NoData(f'dataset_config "{path}" has errors', reader.problems)
    samples = sum(d.samples() for d in datasets)
    if not samples:
        return NoData(f'dataset_config "{path}" names no folder with images here', reader.problems)
    read = [s for d in datasets if d.train_samples() for s in d.subsets]  # reg images alone are not read
    problems = reader.problems
    if check_images:
        heads = read_heads(read, sizes=any(d.buckets is not None and d.buckets.enable_bucket for d in datasets))
        found = image_problems(read, "image_dir", heads)
        # a dataset of regularisation images alone is not read (sd-scripts never loads it)
        sized = [
            with_sizes(d, heads, f"datasets[{i}]") if d.train_samples() else (d, []) for i, d in enumerate(datasets)
        ]
        datasets = [d for d, _ in sized]
        found += [p for _, ps in sized for p in ps]
        problems = problems + [p.located(file=path) for p in found]
    batches = sum(d.batches() for d in datasets)
    return DataPlan(f'dataset_config "{path}"', datasets, samples, batches, problems, key=key)


def _read_table_file(name: str) -> tuple[dict[str, Any], str | None]:
    """The document and, for TOML, its text (to give problems their lines)."""
    with open(name, "rb") as f:
        data = f.read()
    text: str | None = None
    if name.lower().endswith(".json"):
        import json  # only for a JSON dataset config

        doc = json.loads(data.decode("utf-8"))
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib

        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a table")
    return doc, text


def _with_lines(problems: list[Problem], text: str | None) -> list[Problem]:
    """Problems keyed like "datasets[0].subsets[1].num_repeats" with the line the key is on (a missing
    key: the line of the table that lacks it)."""
    if not problems or text is None:
        return problems
    import re  # only when the dataset config has a problem

    from lora_sched.config.locate import key_lines

    lines = key_lines(text)
    located = []
    for p in problems:
        path = tuple(int(i) if i else part for i, part in re.findall(r"\[(\d+)\]|([^.\[\]]+)", p.key))
        while path and path not in lines:
            path = path[:-1]
        located.append(p.located(line=lines.get(path)))
    return located


class _DatasetConfigReader:
    """The DreamBooth-style datasets of a dataset_config document, with each value's type checked."""

    def __init__(self, path: str, doc: dict[str, Any], fallback: dict[str, Any]) -> None:
        self.path, self.doc, self.fallback = path, doc, fallback
        self.problems: list[Problem] = []
        self.unknown_kind = ""

    def error(self, key: str, expected: str, found: Any) -> None:
        self.problems.append(problem(key, expected, found).located(file=self.path))

    def value(self, name: str, tables: list[tuple[str, dict]], expected: type | tuple, default: Any) -> Any:
        """The first non-None `name` in `tables` (subset, dataset, general, config), type-checked."""
        for where, table in tables:
            if table.get(name) is None:
                continue
            value = table[name]
            ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in _as_tuple(expected))
            if not ok:
                self.error(f"{where}{name}", _EXPECTED[name], value)
                return default
            return value
        return default

    def datasets(self) -> list[Dataset]:
        general = self.doc.get("general") or {}
        entries = self.doc.get("datasets") or []
        if not isinstance(general, dict) or not isinstance(entries, list):
            self.error("datasets", "[general] and [[datasets]] tables", raw("another structure"))
            return []
        out = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self.error(f"datasets[{i}]", "a [[datasets]] table", entry)
                continue
            out.append(self.dataset(i, entry, general))
        return out

    def dataset(self, i: int, entry: dict, general: dict) -> Dataset:
        tables = [(f"datasets[{i}].", entry), ("general.", general), ("", self.fallback)]
        batch = self.value("batch_size", tables, int, KOHYA_DATASET_DEFAULTS["batch_size"])
        split = self.value("validation_split", tables, (int, float), 0.0)
        validation_seed = self.value("validation_seed", tables, int, 0)
        # a dataset config's own resolution is an int or [width, height]: config_util.py:244 (sd-scripts
        # 48d368fa) refuses text there; the training config's (the last table) is text, "512" or "512,768"
        own = tables[:-1]
        resolution = self.value("resolution", own, (int, list), None)
        if all(table.get("resolution") is None for _, table in own):
            resolution = self.value("resolution", tables[-1:], (int, str), None)
        buckets = self.buckets(tables, resolution)
        if batch < 1:
            self.error(f"datasets[{i}].batch_size", _EXPECTED["batch_size"], batch)
            batch = 1
        subsets, seen = [], set()
        raw_subsets = entry.get("subsets") or []
        for j, sub in enumerate(raw_subsets if isinstance(raw_subsets, list) else []):
            if not isinstance(sub, dict):
                self.error(f"datasets[{i}].subsets[{j}]", "a [[datasets.subsets]] table", sub)
                continue
            if "metadata_file" in sub or "conditioning_data_dir" in sub:
                self.unknown_kind = (
                    "uses fine-tuning (metadata_file) or ControlNet subsets, which lora_sched does not count"
                )
                continue
            subset = self.subset(f"datasets[{i}].subsets[{j}].", [(f"datasets[{i}].subsets[{j}].", sub), *tables])
            if subset is None or subset.repeats < 1 or subset.path in seen:  # sd-scripts ignores these too
                continue
            seen.add(subset.path)
            subsets.append(subset)
        return Dataset(subsets, batch, resolution, float(split), buckets, validation_seed)

    def buckets(self, tables: list[tuple[str, dict]], resolution: Any) -> BucketSettings | None:
        """The dataset's bucketing (dataset -> general -> the training config -> sd-scripts' defaults);
        None when its resolution is unreadable (reported by training, which needs it)."""
        size = resolution_size(resolution)
        if size is None:
            return None
        found = {k: self.value(k, tables, type(d), d) for k, d in BUCKET_DEFAULTS.items()}
        return BucketSettings(size, **found)

    def subset(self, where: str, tables: list[tuple[str, dict]]) -> Subset | None:
        image_dir = tables[0][1].get("image_dir")
        if not isinstance(image_dir, str):
            self.error(
                f"{where}image_dir", _EXPECTED["image_dir"], image_dir if image_dir is not None else raw("nothing")
            )
            return None
        repeats = self.value("num_repeats", tables, int, KOHYA_SUBSET_DEFAULTS["num_repeats"])
        is_reg = self.value("is_reg", tables[:1], bool, False)
        class_tokens = self.value("class_tokens", tables, str, None)
        caption_extension = self.value("caption_extension", tables, str, KOHYA_SUBSET_DEFAULTS["caption_extension"])
        folder = os.path.expanduser(image_dir)
        try:
            images = list_images(folder) if os.path.isdir(folder) else []
        except (OSError, ValueError):
            images = []
        if not images:  # sd-scripts skips such a subset with a warning
            self.problems.append(
                problem(
                    f"{where}image_dir", "a folder with images", image_dir, "skipped, as sd-scripts skips it", "notice"
                ).located(file=self.path)
            )
        captions = caption_settings({k: self.value(k, tables, t, None) for k, t in CAPTION_TYPES.items()})
        for key in ("caption_dropout_rate", "caption_tag_dropout_rate"):
            if not 0 <= getattr(captions, key) <= 1:
                self.error(f"{where}{key}", "a number in [0, 1]", getattr(captions, key))
        for key in ("keep_tokens", "caption_dropout_every_n_epochs"):
            if getattr(captions, key) < 0:
                self.error(f"{where}{key}", "an int >= 0", getattr(captions, key))
        return Subset(folder, repeats, images, class_tokens, caption_extension, is_reg, captions=captions)


def _as_tuple(expected: type | tuple) -> tuple:
    return expected if isinstance(expected, tuple) else (expected,)


_EXPECTED = {
    "image_dir": "a folder path (a string)",
    "num_repeats": "an int (repeats per epoch)",
    "batch_size": "an int >= 1",
    "is_reg": "true or false",
    "class_tokens": "a string",
    "caption_extension": "a string",
    "validation_split": "a number in [0, 1]",
    "validation_seed": "an int",
    "resolution": "an int or [width, height]",
    "enable_bucket": "true or false",
    "bucket_no_upscale": "true or false",
    "min_bucket_reso": "an int (pixels)",
    "max_bucket_reso": "an int (pixels)",
    "bucket_reso_steps": "an int >= 1 (pixels)",
}


def config_buckets(values: dict[str, Any]) -> BucketSettings | None:
    """The training config's bucketing (for train_data_dir); None when its resolution is unreadable."""
    size = resolution_size(values.get("resolution"))
    if size is None:
        return None
    found = {k: d if values.get(k) is None else whole(values[k]) for k, d in BUCKET_DEFAULTS.items()}
    return BucketSettings(size, **found)


def validation_settings(values: dict[str, Any]) -> tuple[float, int]:
    """(validation_split, validation_seed) of the training config; the seed defaults to `seed`.

    sd-scripts without a validation_seed shuffles by the global random state, once for the training
    part and again for the validation part, so the two can share images; seeding by `seed` keeps
    them apart and the split reproducible."""
    seed = values.get("validation_seed")
    return float(values.get("validation_split") or 0.0), int(seed if seed is not None else values.get("seed") or 0)


def plan_data(
    values: dict[str, Any],
    given: set[str] | dict[str, Any],
    dataset_config: str | None = None,
    reg_data_dir: str | None = None,
    check_images: bool = True,
) -> DataPlan | NoData:
    """The data a config's run reads (see the module docstring for the order of the sources).

    values: the config's values (defaults applied); given: the keys the config sets; reg_data_dir:
    sd-scripts' regularisation folder next to train_data_dir (an empty string is unset);
    check_images: False to find only where the data is and its size (no image file is opened).
    """
    batch = int(values["train_batch_size"])
    size = values.get("samples_per_epoch")
    validation = validation_settings(values)
    config_path = dataset_config or values.get("dataset_config")
    found: DataPlan | NoData
    if config_path:
        # the training config is the last lookup before sd-scripts' defaults: only what it sets
        passed = ("resolution", "caption_extension", "validation_split", *BUCKET_DEFAULTS, *CAPTION_DEFAULTS)
        fallback = {"batch_size": batch, **{k: whole(values[k]) for k in passed if k in given}}
        fallback["validation_seed"] = validation[1]
        found = dataset_config_plan(str(config_path), fallback, check_images)
    elif "train_data_dir" in given:
        buckets = config_buckets(values)
        found = folder_plan(str(values["train_data_dir"]), batch, reg_data_dir, check_images, buckets, validation)
    else:
        found = NoData("no data is named: neither train_data_dir nor dataset_config is set", [])
    if size is None:
        return found
    if isinstance(found, NoData):
        stated = size_plan(int(size), batch)
        return stated._replace(problems=found.problems + stated.problems)
    if found.samples != size:
        note = problem(
            "samples_per_epoch",
            f"the size of the data named ({found.source}: {found.samples} samples per epoch)",
            size,
            f"the data on this machine is counted: {found.samples}",
            severity="warning",
        )
        return found._replace(problems=[*found.problems, note])
    return found
