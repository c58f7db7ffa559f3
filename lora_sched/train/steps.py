"""The steps of a run: one optimizer update per step, the LR scheduler stepped once per update.

Accumulation is counted here, not by accelerate: a step s runs the micro-batches of window s of
its epoch (``gradient_accumulation_steps`` of them, fewer for the last window of an epoch), then
makes one optimizer update and one `scheduler.step()` on every process. The scheduler is never
passed to `accelerator.prepare` (accelerate would step it once per process). Gradients are
averaged over the window (each micro-batch loss divided by the window length) and, in a
multi-process run, across processes by DDP on the window's last backward (`no_sync` before it).
Noise and timesteps come from a generator seeded by (seed, step, micro-batch, process), and the
data order from (seed, epoch): a run resumed at step k computes exactly what the uninterrupted
run computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

from lora_sched.train.build import Run
from lora_sched.train.csv_log import LOG_NAME, CsvLog
from lora_sched.train.data import sample_weights, step_generator
from lora_sched.train.finish import StepsDone, save_checkpoint, save_lora
from lora_sched.train.lora import lora_alphas
from lora_sched.train.lr_log import LrReport
from lora_sched.train.metadata import run_session
from lora_sched.train.objective import denoising_loss, lora_pairs, max_norm_regularize
from lora_sched.train.optim import evaluation_weights
from lora_sched.train.sampling import draw_samples
from lora_sched.train.saving import files_due, save_files
from lora_sched.train.signals import StopSignals
from lora_sched.train.validation import VALIDATION_COLUMNS, Validator

_log = logging.getLogger("lora_sched.train")


def run_steps(run: Run, held: contextlib.ExitStack) -> StepsDone:
    """Steps start .. run_length-1, each logged, with checkpoints every save_every_n_steps and at a
    stop signal, LoRA files and sample images where due."""
    plan, accelerator, optimizer = run.plan, run.processes.accelerator, run.training.optimizer
    run_length = run.training.resolved.run_length
    run_session(plan)  # the LoRA files' ss_session_id and ss_training_started_at: fixed before the first step
    report = LrReport(plan.optimizer_type, [g["name"] for g in optimizer.param_groups])
    main = accelerator.is_main_process
    validator = _validator(run)
    extra_columns = VALIDATION_COLUMNS if validator else ()
    log = CsvLog(plan.output_dir / LOG_NAME, report.columns(), run.start, extra_columns) if main else None
    if plan.tracker and main:
        accelerator.init_trackers("lora_sched")
    bar = _progress_bar(accelerator, run.start, run_length)
    stop = held.enter_context(StopSignals())
    permutations = _Permutations(run)
    norm_pairs = _norm_pairs(run)
    loss, stopping, done = float("nan"), False, run.start
    if run.start == 0 and plan.samples and plan.samples.at_first:
        _draw_samples(run, "e000000")  # sd-scripts' name for the images before training
    for step in range(run.start, run_length):
        epoch = step // run.processes.steps_per_epoch
        lrs = report.values(optimizer, _current_lrs(run.training.scheduler, optimizer))
        loss = train_step(run, step, permutations, norm_pairs)
        validated = validator.after_update(run, step, loss) if validator else {}  # when sd-scripts validates
        if log is not None:
            log.write(step, epoch, lrs, loss, validator.row(validated) if validator else ())
        if plan.tracker:
            scalars = report.tracker(lrs, loss)
            accelerator.log({**scalars, **validator.tracker(validated)} if validator else scalars, step=step)
        _advance_bar(bar, report.postfix(step + 1, lrs, loss))
        done = step + 1
        _save_and_sample(run, done)
        stopping = stop.requested(accelerator)
        if done < run_length and (stopping or (plan.save_every and done % plan.save_every == 0)):
            if log is not None:
                log.sync()  # the rows up to a checkpoint are on disk before it is
            with evaluation_weights(optimizer):
                save_checkpoint(run, done, epoch)
        if stopping:
            break
    bar.close()
    if log is not None:
        log.close()
    return StepsDone(stop.signum if stopping else None, done, loss)


def _validator(run: Run) -> Validator | None:
    """The run's validations (None without held-out images), at the run's timestep range."""
    if run.plan.validation is None or run.built.validation is None:
        return None
    num_train_timesteps = int(run.built.model.noise_scheduler.config.num_train_timesteps)
    timesteps = run.plan.objective.timestep_range(num_train_timesteps)
    return Validator(run.plan.validation, run.built.validation, timesteps)


def _progress_bar(accelerator: Any, start: int, run_length: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=run_length,
        initial=start,
        desc="train",
        disable=not accelerator.is_local_main_process or os.environ.get("LORA_SCHED_NO_PROGRESS") == "1",  # notebook
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _advance_bar(bar: Any, postfix: dict[str, str]) -> None:
    """One step done: the text first, then the count, so that the redraw `update` makes shows both for
    the same step (step = the count of steps done, as the bar counts them)."""
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)


class _Permutations:
    """The data order of the current epoch, drawn once per epoch."""

    def __init__(self, run: Run) -> None:
        self._order = run.processes.order
        self._epoch: int = -1
        self._permutation: Any = None

    def of(self, epoch: int) -> Any:
        if self._epoch != epoch:
            self._epoch, self._permutation = epoch, self._order.permutation(epoch)
        return self._permutation


def _norm_pairs(run: Run) -> list | None:
    """The (down, up, scale) of every trained LoRA layer, which scale_weight_norms rescales after each
    update (None without it): found once, the parameters are the same tensors the whole run."""
    if not run.plan.objective.scale_weight_norms:
        return None
    return lora_pairs(run.training.params, lora_alphas(run.built.model, run.plan.train_te))


def train_step(run: Run, step: int, permutations: _Permutations, norm_pairs: list | None = None) -> float:
    """One optimizer update over the micro-batches of `step`'s window, then one scheduler step;
    returns the window's mean loss (over every process). `norm_pairs`: see `_norm_pairs`."""
    import torch

    plan, accelerator, order, training = run.plan, run.processes.accelerator, run.processes.order, run.training
    epoch, window = divmod(step, run.processes.steps_per_epoch)
    permutation = permutations.of(epoch)
    positions = range(window * plan.accum, min((window + 1) * plan.accum, order.batches_per_process))
    total = torch.zeros((), device=accelerator.device)
    for micro, position in enumerate(positions):
        samples = order.batch(epoch, position, permutation)
        data, rows = _micro_batch(run, epoch, samples)
        weights = sample_weights(run.built.data, samples)  # prior_loss_weight for regularisation images
        with contextlib.ExitStack() as stack:
            if micro != len(positions) - 1:  # DDP averages gradients on the window's last backward only
                for module in training.wrapped:
                    stack.enter_context(accelerator.no_sync(module))
            loss = _micro_batch_loss(run, step, micro, data, rows, weights)
            accelerator.backward(loss / len(positions))
        total += loss.detach()
    if plan.max_grad_norm > 0:
        accelerator.clip_grad_norm_(list(training.params.values()), plan.max_grad_norm)
    training.optimizer.step()
    training.optimizer.zero_grad(set_to_none=True)
    if norm_pairs is not None:  # scale_weight_norms, as sd-scripts: after each update, on every process alike
        norms = max_norm_regularize(norm_pairs, plan.objective.scale_weight_norms)
        _log.debug("scale_weight_norms: %d module(s) scaled, mean norm %g, max norm %g", *norms)
        if plan.tracker:  # sd-scripts' names (train_network.py generate_step_logs)
            accelerator.log(
                {
                    "max_norm/keys_scaled": norms.keys_scaled,
                    "max_norm/max_key_norm": norms.max_norm,
                    "norm/avg_key_norm": norms.mean_norm,
                },
                step=step,
            )
    if accelerator.num_processes > 1:
        loss_value = float(accelerator.reduce(total / len(positions), "mean"))
    else:
        loss_value = float(total) / len(positions)
    _step_scheduler(training.scheduler, loss_value)
    return loss_value


def _micro_batch(run: Run, epoch: int, samples: list[int]) -> tuple[Any, list[int]]:
    """The data of a micro-batch and its rows: the cache, or its samples with captions and flips drawn."""
    built = run.built
    rows = [built.data.index[i] for i in samples]
    return built.augment(built.data, epoch, samples, rows) if built.augment else (built.data, rows)


def _micro_batch_loss(run: Run, step: int, micro: int, data: Any, rows: list[int], weights: Any = None) -> Any:
    """The loss of micro-batch `micro` of `step`, its noise and timesteps drawn from (seed, step, micro, process)."""
    built, accelerator = run.built, run.processes.accelerator
    noise_scheduler = built.model.noise_scheduler
    with accelerator.autocast():  # as sd-scripts: the text encoding runs under mixed precision too
        return denoising_loss(
            run.training.unet,
            built.condition,
            noise_scheduler,
            data,
            rows,
            step_generator(run.plan.seed, step, micro, accelerator.process_index),
            int(noise_scheduler.config.num_train_timesteps),
            built.prediction,
            accelerator.device,
            objective=run.plan.objective,
            sample_weights=weights,
        )


def _current_lrs(scheduler: Any, optimizer: Any) -> list[float]:
    """The LR of each group for the coming update (what the log records for this step)."""
    lrs = [g["lr"] for g in optimizer.param_groups]
    if any(lr is None for lr in lrs):  # Adafactor with relative_step: the scheduler knows the LR
        lrs = list(scheduler.get_last_lr())
    return [float(lr) for lr in lrs]


def _step_scheduler(scheduler: Any, loss: float) -> None:
    """One scheduler step per optimizer update; metric-driven classes (ReduceLROnPlateau behind
    WarmupThen) get the loss and average it over plateau_every updates themselves."""
    step_update = getattr(scheduler, "step_update", None)
    if step_update is not None:
        step_update(loss)
    else:
        scheduler.step()


def _save_and_sample(run: Run, done: int) -> None:
    """The LoRA files and sample images due after update `done` (both from the weights as they are now:
    a schedule-free optimizer's evaluation weights, as for checkpoints)."""
    plan, steps_per_epoch, run_length = run.plan, run.processes.steps_per_epoch, run.training.resolved.run_length
    point = plan.samples.point_after(done, steps_per_epoch, run_length) if plan.samples else None
    files = files_due(plan.saves, done, steps_per_epoch, run_length)
    if point is None and not files:  # every process decides alike: the weights swap on all or none
        return
    with evaluation_weights(run.training.optimizer):
        if run.processes.accelerator.is_main_process:
            save_files(plan.saves, files, lambda path: save_lora(run, done, path))
        if point is not None:
            _draw_samples(run, point)


def _draw_samples(run: Run, point: str) -> None:
    draw_samples(run.plan.samples, run.built.model, run.processes.accelerator, point)
    run.processes.accelerator.wait_for_everyone()
