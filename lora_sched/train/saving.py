"""LoRA files during training, named and pruned as sd-scripts writes them.

`save_every_n_epochs = k` writes ``{output_name}-{epoch:06d}.safetensors`` at the end of every k-th
epoch but the last (the last is the final ``{output_name}.safetensors``); `save_every_n_steps = n`
writes ``{output_name}-step{step:08d}.safetensors`` after every n-th update. Each is a kohya-format
LoRA with `ss_*` metadata, written atomically. `save_last_n_epochs = N` keeps the newest N epoch
files (sd-scripts removes the file k * N epochs older at each save); `save_last_n_steps = M` keeps
the step files of the last M steps (sd-scripts' rule: at step s it removes the file of the multiple
of n at or below s - M - 1).

These are the files an image tool loads. Resume state is another thing: lora_sched's checkpoints
(``checkpoints/step-*``, optimizer and RNG included) are written every `save_every_n_steps` as
before, at the end and on a stop signal, and are never pruned by the save_last_n_* keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavePlan:
    output_dir: Path
    output_name: str
    every_n_epochs: int | None = None
    every_n_steps: int | None = None
    last_n_epochs: int | None = None
    last_n_steps: int | None = None


def save_plan(values: Any, output_dir: Path) -> SavePlan:
    def positive(key: str) -> int | None:
        value = values.get(key)
        return int(value) if value is not None and int(value) > 0 else None

    return SavePlan(
        output_dir,
        str(values["output_name"]),
        positive("save_every_n_epochs"),
        positive("save_every_n_steps"),
        positive("save_last_n_epochs"),
        positive("save_last_n_steps"),
    )


def epoch_file_name(output_name: str, epoch: int) -> str:
    return f"{output_name}-{epoch:06d}.safetensors"


def step_file_name(output_name: str, step: int) -> str:
    return f"{output_name}-step{step:08d}.safetensors"


def files_due(plan: SavePlan, done: int, steps_per_epoch: int, run_length: int) -> list[tuple[str, str | None]]:
    """(file to write, older file to remove or None) after update `done` (1-based), in sd-scripts' order:
    the step file, then the epoch file."""
    due: list[tuple[str, str | None]] = []
    if plan.every_n_steps and done % plan.every_n_steps == 0:
        due.append((step_file_name(plan.output_name, done), _older_step_file(plan, done)))
    epoch_end = done % steps_per_epoch == 0 or done == run_length
    epoch, last_epoch = -(-done // steps_per_epoch), -(-run_length // steps_per_epoch)
    if plan.every_n_epochs and epoch_end and epoch % plan.every_n_epochs == 0 and epoch < last_epoch:
        due.append((epoch_file_name(plan.output_name, epoch), _older_epoch_file(plan, epoch)))
    return due


def _older_epoch_file(plan: SavePlan, epoch: int) -> str | None:
    if plan.last_n_epochs is None or plan.every_n_epochs is None:
        return None
    old = epoch - plan.every_n_epochs * plan.last_n_epochs
    return epoch_file_name(plan.output_name, old) if old >= 0 else None


def _older_step_file(plan: SavePlan, step: int) -> str | None:
    if plan.last_n_steps is None or plan.every_n_steps is None:
        return None
    old = step - plan.last_n_steps - 1
    old -= old % plan.every_n_steps
    return step_file_name(plan.output_name, old) if old >= 0 else None


def save_files(plan: SavePlan, files: list[tuple[str, str | None]], write: Callable[[Path], None]) -> list[Path]:
    """Write the LoRA files `files_due` listed with `write(path)`; remove the older ones they replace."""
    written = []
    for name, older in files:
        target = plan.output_dir / name
        write(target)
        written.append(target)
        log.info(f"saved {target}")
        if older is not None and (plan.output_dir / older).is_file():
            (plan.output_dir / older).unlink()
            log.info(f"removed {plan.output_dir / older} (save_last_n_*)")
    return written
