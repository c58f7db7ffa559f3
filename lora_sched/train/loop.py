"""A training run, as a pipeline:

    plan (pure: every input checked) -> open the run folder -> build -> steps -> finish

lora_sched.train.plan checks the config and decides everything it can before anything is built or
written; run_folder locks the output folder and reads the checkpoint to resume; build makes the
processes, the model with its LoRA layers and data cache, and what trains it; steps runs the
optimizer updates (see its docstring: accumulation, determinism on resume); finish writes the final
checkpoint and the LoRA file; then train draws the run's plot, once the rest is released.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from pathlib import Path
from typing import Any

from lora_sched.errors import ConfigError
from lora_sched.train.build import Run, build_model, build_training, start_processes
from lora_sched.train.csv_log import LOG_NAME
from lora_sched.train.data import load_images
from lora_sched.train.finish import TrainResult, finish
from lora_sched.train.lr_log import PLOT_NAME, write_plot
from lora_sched.train.plan import check_epoch_length, parse_resolution, plan_run
from lora_sched.train.run_folder import open_run_folder, resume_training, set_aside_checkpoints
from lora_sched.train.signals import TrainingInterrupted
from lora_sched.train.steps import run_steps

#: What the run is doing, step by step of its start-up (the command line shows it: train/commands.py).
log = logging.getLogger("lora_sched.train")

#: Names other modules and the docs know from here (docs/training.md: lora_sched.train.loop.TrainingInterrupted).
__all__ = ["TrainResult", "TrainingInterrupted", "check_epoch_length", "parse_resolution", "train"]


def train(
    cfg: Any,
    *,
    resume: str | None = None,
    trust_scheduler_code: bool = False,
    allow_schedule_change: bool = False,
    train_without: frozenset[str] = frozenset(),
) -> TrainResult:
    """Run the fine-tune `cfg` describes; return where the LoRA file went.

    An sd-scripts option in the file that changes what is learned and that train does not apply is
    refused before anything is built, unless named in `train_without`.

    Problems found here (a missing model folder, no readable image, ...) are raised as a
    ConfigError located in the config file (file:line of the key).
    """
    try:
        with contextlib.ExitStack() as held:  # the output folder's lock, the signal handlers
            result = _train(cfg, resume, trust_scheduler_code, allow_schedule_change, train_without, held)
            if result.is_main_process and result.written:
                _draw_plot(result.output.parent)
            return result
    except ConfigError as exc:
        locate = getattr(cfg, "locate", None)
        raise ConfigError(locate(exc.problems) if locate else exc.problems) from None


def _draw_plot(output_dir: Path) -> None:
    """train_plot.png from the run's log, drawn once _train has returned: the run's model, optimizer
    and caches are gone by then (no gc.collect: reference counting frees them, and a full collection
    costs a quarter second), and their freed heap is handed back to the OS first (glibc's
    malloc_trim; nothing elsewhere), so matplotlib's 20 MiB of modules reuse that memory instead of
    raising the run's peak (bench/bench_train.py, tiny SD: peak 1.046x a bare loop before, see
    docs/benchmarks.md for after)."""
    with contextlib.suppress(AttributeError, OSError, TypeError):  # not glibc: the allocator keeps what it keeps
        ctypes.CDLL(None).malloc_trim(0)
    write_plot(output_dir / LOG_NAME, output_dir / PLOT_NAME)


def _train(
    cfg: Any,
    resume: str | None,
    trust_scheduler_code: bool,
    allow_schedule_change: bool,
    train_without: frozenset[str],
    held: contextlib.ExitStack,
) -> TrainResult:
    log.info("checking the config and counting the data")
    plan = plan_run(cfg, resume, train_without)
    log.info("reading %d images at %dx%d", len(plan.data.examples), plan.width, plan.height)
    examples, images = load_images(plan.data.examples, plan.width, plan.height)
    processes = start_processes(cfg, plan, examples)  # the epoch is checked before the folder is touched
    folder = open_run_folder(cfg, plan, held)
    log.info("loading the model %s and caching the latents", plan.model_name)
    if plan.model_name.startswith("builtin:"):
        log.info("%s has random weights: it trains and samples to show the run, its samples are noise", plan.model_name)
    built = build_model(plan, processes, examples, images)
    training = build_training(cfg, plan, processes, built, trust_scheduler_code)
    start = resume_training(folder, processes, training, allow_schedule_change)
    set_aside_checkpoints(folder, processes.accelerator)
    run = Run(cfg, plan, processes, built, training, start)
    return finish(run, run_steps(run, held))
