"""The validation loss of a run with a validation_split, computed when and as sd-scripts computes it.

sd-scripts (train_network.py, commit 48d368fa) holds out part of every training folder
(lora_sched.config.dataset.split_images: the same images), never trains on it, and reads it in
its order, one repeat per image, regularisation folders excluded:

* when: after every update whose global step (counted from 1) is a multiple of
  validate_every_n_steps, and after every epoch (every validate_every_n_epochs-th epoch when set);
  the epoch of a run that stops at its step count mid-epoch counts as ended;
* what: the first max_validation_steps batches (all by default), each at the four fixed
  timesteps ``linspace(min_timestep, max_timestep, 6)[1:-1]`` (200, 400, 600, 800 for 0 and 1000), each
  (batch, timestep) loss the training loss (the run's objective, lora_sched.train.objective, with
  min_timestep = max_timestep = that timestep, as sd-scripts sets them) without gradients, the
  LoRA in eval mode and a schedule-free optimizer's evaluation weights;
* noise: drawn from a generator seeded by validation_seed (default: seed) afresh at every
  validation, so every validation sees the same noise and the curves compare;
* the logged value: sd-scripts' LossRecorder average over the (batch, timestep) losses
  (its quirk kept: during the first epoch it averages every validation so far, afterwards it
  replaces entry by entry), as ``loss/validation/step_average`` / ``epoch_average``, and its
  difference to the training loss' moving average as ``..._divergence``.

Kept apart from sd-scripts: the held-out batches are in folder order (sd-scripts' dataloader
order is its bucket shuffle), their captions are not shuffled or dropped and not mirrored
(sd-scripts applies the subset's augmentations), every process computes the whole loss (sd-scripts
logs the main process' shard), and the training average behind the divergence is fed one value
per update (sd-scripts: per micro-batch).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from lora_sched.train.data import CachedData, Example, cache_data, load_images
from lora_sched.train.objective import Objective, denoising_loss

#: sd-scripts' NUM_VALIDATION_TIMESTEPS (train_network.py): the fixed timesteps each batch is read at.
NUM_VALIDATION_TIMESTEPS = 4
#: The CSV log's validation columns (empty in the rows of steps without a validation).
STEP_COLUMN, EPOCH_COLUMN = "val_step_average", "val_epoch_average"
VALIDATION_COLUMNS = (STEP_COLUMN, EPOCH_COLUMN)
_log = logging.getLogger("lora_sched.train")
#: The tracker's names for the same values, as sd-scripts logs them.
_TRACKER_NAMES = {STEP_COLUMN: "loss/validation/step", EPOCH_COLUMN: "loss/validation/epoch"}


class ValidationPlan(NamedTuple):
    """When the validation loss is computed and over how much, from the config's keys."""

    every_n_steps: int | None  #: validate_every_n_steps
    every_n_epochs: int | None  #: validate_every_n_epochs (None: every epoch)
    max_batches: int | None  #: max_validation_steps (None: every held-out batch)
    seed: int  #: validation_seed, else seed

    def step_due(self, global_step: int) -> bool:
        """Whether a validation follows the update that made `global_step` (counted from 1)."""
        return self.every_n_steps is not None and global_step % self.every_n_steps == 0

    def epoch_due(self, epoch: int) -> bool:
        """Whether a validation follows epoch `epoch` (counted from 0)."""
        return self.every_n_epochs is None or (epoch + 1) % self.every_n_epochs == 0


def validation_plan(
    values: dict[str, Any], held_out: Sequence[Example], trained: Sequence[Example] = ()
) -> ValidationPlan | None:
    """The run's validation (None without held-out images: the keys that time it then do nothing,
    as in sd-scripts); warns of images in both parts (sd-scripts' split shares one where
    ceil(n x (1 - split)) + round(n x split) > n, e.g. 10 images at 0.35)."""
    if not held_out:
        return None
    shared = sorted({str(e.path) for e in held_out} & {str(e.path) for e in trained if e.path is not None})
    if shared:
        _log.warning(
            "validation_split %s holds out %d image(s) that are trained on too, as sd-scripts splits them: %s",
            values.get("validation_split"),
            len(shared),
            ", ".join(shared[:5]),
        )
    seed = values.get("validation_seed")
    return ValidationPlan(
        values.get("validate_every_n_steps"),
        values.get("validate_every_n_epochs"),
        values.get("max_validation_steps"),
        int(seed if seed is not None else values["seed"]),
    )


def validation_timesteps(low: int, high: int) -> list[int]:
    """sd-scripts' fixed validation timesteps: NUM_VALIDATION_TIMESTEPS evenly inside [low, high]
    (min_timestep, else 0; max_timestep, else num_train_timesteps), truncated to ints as numpy's
    linspace with dtype=int truncates them."""
    import numpy as np

    points = np.linspace(low, high, NUM_VALIDATION_TIMESTEPS + 2, dtype=int)[1:-1]
    return [int(t) for t in points]


@dataclass
class LossRecorder:
    """sd-scripts' LossRecorder (library/train_util.py): losses by (epoch, step) and their average.

    In epoch 0 every loss is appended; later a loss replaces the one at its step index. A validation
    restarts its index at 0, so during the first epoch its average covers every validation so far."""

    losses: list[float] = field(default_factory=list)
    total: float = 0.0

    def add(self, epoch: int, step: int, loss: float) -> None:
        if epoch == 0:
            self.losses.append(loss)
        else:
            while len(self.losses) <= step:
                self.losses.append(0.0)
            self.total -= self.losses[step]
            self.losses[step] = loss
        self.total += loss

    @property
    def average(self) -> float:
        return self.total / len(self.losses) if self.losses else 0.0


def validation_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """The held-out examples' rows cut into batches: each (dataset, bucket) group apart with its
    dataset's batch size, in folder order, groups in the order their first image comes."""
    groups: dict[tuple[int, Any, int], list[int]] = {}
    for row, example in enumerate(examples):
        groups.setdefault((example.dataset, example.bucket, example.batch_size or batch_size), []).append(row)
    batches = []
    for (_, _, size), rows in groups.items():
        batches += [rows[i : i + size] for i in range(0, len(rows), size)]
    return batches


@dataclass
class ValidationSet:
    """The held-out images, cached like the training data, with their conditioning and batches."""

    data: CachedData
    condition: Any  #: lora_sched.train.conditioning: its own, over the unwrapped text encoders
    batches: list[list[int]]


def build_validation_set(
    model: Any,
    examples: Sequence[Example],
    size: tuple[int, int],
    batch_size: int,
    options: tuple[bool, bool],
    text: Any,
) -> ValidationSet:
    """Decode and encode the held-out images as build_model does the training data (call while the
    VAE is loaded, before the LoRA layers are added), with a conditioning of their own; options:
    (train_te, cache_latents_to_disk); text: the run's TextOptions (clip_skip, max_token_length)."""
    from lora_sched.train.conditioning import conditioning

    train_te, disk_cache = options
    fitted, images = load_images(list(examples), size[0], size[1], key="validation_split")
    cache_text = not train_te and not model.is_sdxl  # as build_model caches the training data
    data = cache_data(model, fitted, images, cache_text=cache_text, disk_cache=disk_cache, text=text)
    condition = conditioning(model, data, fitted, train_te, text)
    return ValidationSet(data, condition, validation_batches(fitted, batch_size))


def batch_loss(
    unet: Any,
    condition: Any,
    noise_scheduler: Any,
    data: Any,
    rows: list[int],
    timestep: int,
    gen: Any,
    prediction: str,
    objective: Objective,
    device: Any,
) -> float:
    """The training loss of one held-out batch with every timestep `timestep`, without gradients:
    the run's objective with min_timestep = max_timestep = timestep, as sd-scripts sets them for a
    validation (its noise options and loss weighting apply alike)."""
    import torch

    fixed = replace(objective, min_timestep=timestep, max_timestep=timestep)
    steps = int(noise_scheduler.config.num_train_timesteps)
    weights = data.loss_weights[rows] if data.loss_weights is not None else None
    with torch.no_grad():
        loss = denoising_loss(
            unet, condition, noise_scheduler, data, rows, gen, steps, prediction, device, fixed, weights
        )
    return float(loss)


class Validator:
    """The validations of a run, in step order: call `after_update` once per update."""

    def __init__(self, plan: ValidationPlan, held_out: ValidationSet, timestep_range: tuple[int, int]) -> None:
        self.plan, self.held_out = plan, held_out
        self.timesteps = validation_timesteps(*timestep_range)
        self.batches = held_out.batches[: plan.max_batches] if plan.max_batches is not None else held_out.batches
        self.step_recorder, self.epoch_recorder, self.train_recorder = LossRecorder(), LossRecorder(), LossRecorder()

    def after_update(self, run: Any, step: int, loss: float) -> dict[str, float]:
        """The validation averages due after update `step` (counted from 0), by CSV column; feeds
        `loss` to the training average the divergence is taken from."""
        steps_per_epoch, run_length = run.processes.steps_per_epoch, run.training.resolved.run_length
        epoch, window = divmod(step, steps_per_epoch)
        self.train_recorder.add(epoch, window, loss)
        done, found = step + 1, {}
        if self.batches and self.plan.step_due(done):
            found[STEP_COLUMN] = self._validate(run, epoch, self.step_recorder)
        epoch_ended = done % steps_per_epoch == 0 or done == run_length
        if epoch_ended and self.batches and self.plan.epoch_due(epoch):
            found[EPOCH_COLUMN] = self._validate(run, epoch, self.epoch_recorder)
        return found

    def row(self, found: dict[str, float]) -> list[float | None]:
        """The CSV log's validation cells (None: empty)."""
        return [found.get(column) for column in VALIDATION_COLUMNS]

    def tracker(self, found: dict[str, float]) -> dict[str, float]:
        """The tracker's scalars, as sd-scripts names them: ..._average and ..._divergence."""
        logs = {}
        for column, value in found.items():
            logs[f"{_TRACKER_NAMES[column]}_average"] = value
            logs[f"{_TRACKER_NAMES[column]}_divergence"] = value - self.train_recorder.average
        return logs

    def _validate(self, run: Any, epoch: int, recorder: LossRecorder) -> float:
        """One validation: every (batch, timestep) loss into `recorder`; its average."""
        import torch

        from lora_sched.train.lora import lora_parts
        from lora_sched.train.optim import evaluation_weights

        accelerator, built = run.processes.accelerator, run.built
        unet = accelerator.unwrap_model(run.training.unet)
        gen = torch.Generator().manual_seed(self.plan.seed)
        parts = list(lora_parts(built.model, run.plan.train_te).values())  # sd-scripts: network.eval()
        modes = [part.training for part in parts]
        for part in parts:
            part.eval()  # no LoRA dropout, and no draw from torch's global generator the training uses
        try:
            with evaluation_weights(run.training.optimizer), accelerator.autocast():
                index = 0
                for rows in self.batches:
                    for timestep in self.timesteps:
                        value = batch_loss(
                            unet,
                            self.held_out.condition,
                            built.model.noise_scheduler,
                            self.held_out.data,
                            rows,
                            timestep,
                            gen,
                            built.prediction,
                            run.plan.objective,
                            accelerator.device,
                        )
                        recorder.add(epoch, index, value)
                        index += 1
        finally:
            for part, mode in zip(parts, modes):
                part.train(mode)
        average = recorder.average
        if not math.isfinite(average):
            _log.warning("the validation loss is %s at epoch %d", average, epoch + 1)
        return average
