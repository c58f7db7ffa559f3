"""The arithmetic of an epoch-based run, shown by `preview` so that a user can check it by hand.

sd-scripts prints only its result ("num batches per epoch", "num epochs"); a run that trains for a
surprising number of steps is then hard to explain. These lines show every factor the way
sd-scripts counts them (lora_sched.config.dataset, lora_sched.config.buckets,
lora_sched.schedules.durations): samples = images x repeats per folder (regularisation images
repeated to the training samples), batches per epoch per bucket when bucketing sorts the images,
then ceil(batches / processes / accumulation) optimizer steps per epoch, times the epochs.
"""

from __future__ import annotations

import math
from typing import Any

from lora_sched.config.dataset import DataPlan, Dataset
from lora_sched.schedules.durations import updates_per_epoch

#: Buckets listed one by one up to this many; more are summed on one line.
MAX_BUCKETS_SHOWN = 6
INDENT = "  "


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def subset_lines(dataset: Dataset) -> list[str]:
    """One line per folder: images x repeats = samples; regularisation folders with the samples they
    are repeated (or cut) to, since sd-scripts balances them against the training samples."""
    lines = []
    reg_samples: dict[int, int] = {}
    for subset, _, repeats in dataset.image_repeats():
        if subset.is_reg:
            reg_samples[id(subset)] = reg_samples.get(id(subset), 0) + repeats
    kept_of = {id(s): 0 for s in dataset.subsets}
    for subset, _, _ in dataset.image_repeats():
        kept_of[id(subset)] += 1
    for subset in dataset.subsets:
        images = len(subset.images)
        if subset.is_reg:
            samples = reg_samples.get(id(subset), 0)
            lines.append(
                f"{subset.name} (regularisation): {_plural(images, 'image')}, repeated to {samples} samples"
                " (sd-scripts matches the training samples)"
            )
            continue
        kept = kept_of[id(subset)]
        shown = f"{kept} of {images} images (validation_split)" if kept != images else _plural(images, "image")
        repeats = _plural(subset.repeats, "repeat")
        lines.append(f"{subset.name}: {shown} x {repeats} = {kept * subset.repeats} samples")
    return lines


def batch_line(dataset: Dataset) -> str:
    """The dataset's batches per epoch: each bucket batched apart, or all samples in one bucket."""
    size = dataset.batch_size
    if not dataset.bucketed():
        samples = dataset.samples()
        return f"batches of {size}: ceil({samples} / {size}) = {math.ceil(samples / size)}"
    counts = sorted(dataset.bucket_counts().items(), key=lambda item: (-item[1], item[0]))
    total = sum(math.ceil(n / size) for _, n in counts)
    if len(counts) > MAX_BUCKETS_SHOWN:
        return f"batches of {size}, each of {len(counts)} buckets batched apart: {total}"
    parts = ", ".join(f"{w}x{h}: ceil({n} / {size}) = {math.ceil(n / size)}" for (w, h), n in counts)
    return f"batches of {size} per bucket: {parts}; {total} in all"


def epoch_arithmetic(found: DataPlan, epochs: int, batch_size: int, accumulation: int, processes: int) -> list[str]:
    """The lines that explain `epochs` epochs of `found`: samples, batches, steps per epoch, total
    (batch_size: train_batch_size, which batches a stated size or builtin:shapes)."""
    lines = ["how the steps are counted:"]
    several = len(found.datasets) > 1
    for i, dataset in enumerate(found.datasets, 1):
        head = f"dataset {i}: " if several else ""
        lines += [INDENT + head + line for line in subset_lines(dataset)]
        lines.append(INDENT + head + f"samples per epoch: {dataset.samples()}")
        lines.append(INDENT + head + batch_line(dataset))
    if not found.datasets:  # a stated size or builtin:shapes: one bucket of the stated samples
        lines.append(INDENT + f"samples per epoch: {found.samples} ({found.source})")
        lines.append(INDENT + f"batches of {batch_size}: ceil({found.samples} / {batch_size}) = {found.batches}")
    batches = found.batches
    if several:
        lines.append(INDENT + f"batches per epoch: {' + '.join(str(d.batches()) for d in found.datasets)} = {batches}")
    per_epoch = updates_per_epoch(batches, accumulation, processes)
    lines.append(INDENT + f"steps per epoch: {_steps_formula(batches, accumulation, processes)} = {per_epoch}")
    lines.append(INDENT + f"total: {_plural(epochs, 'epoch')} x {per_epoch} = {epochs * per_epoch} steps")
    return lines


def _steps_formula(batches: int, accumulation: int, processes: int) -> str:
    """ceil(batches / processes / accumulation) as sd-scripts writes it, without factors of 1."""
    inner = f"{batches} batch" if batches == 1 else f"{batches} batches"
    if accumulation == 1 and processes == 1:
        return inner
    if processes > 1:
        inner = f"ceil({inner} / {processes} processes)"
        if accumulation == 1:
            return inner
    return f"ceil({inner} / accumulation {accumulation})"


def config_arithmetic(cfg: Any, processes: int = 1) -> list[str]:
    """The lines for a loaded sd-scripts config whose run is counted in epochs of data found here;
    [] when the run is not counted in epochs or its data is not on this machine."""
    epochs = cfg.values.get("max_train_epochs")
    found = cfg.data()
    if epochs is None or not isinstance(found, DataPlan):
        return []
    values = cfg.values
    batch, accumulation = int(values["train_batch_size"]), int(values["gradient_accumulation_steps"])
    return epoch_arithmetic(found, int(epochs), batch, accumulation, processes)
