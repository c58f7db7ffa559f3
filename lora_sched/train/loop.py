"""The training loop: one optimizer update per step, the LR scheduler stepped once per update.

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
import csv
import io
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.config.writer import atomic_write_text
from lora_sched.errors import ConfigError, problem, raw
from lora_sched.schedules.fields import resolution_size
from lora_sched.train import checkpoint as ckpt
from lora_sched.train.augment import make_augmenter
from lora_sched.train.buckets import bucket_metadata, check_fitted, check_sizes
from lora_sched.train.compute import ComputeOptions, apply_compute, compute_options, set_attention
from lora_sched.train.conditioning import conditioning
from lora_sched.train.data import (
    CachedData,
    ShardedOrder,
    TrainingData,
    cache_data,
    load_images,
    sharded_order,
    step_generator,
    training_data,
)
from lora_sched.train.lock import OutputLock
from lora_sched.train.lora import (
    add_lora,
    kohya_metadata,
    lora_tensors,
    save_safetensors_atomic,
    text_encoders,
    to_kohya,
    trainable,
)
from lora_sched.train.lr_log import PLOT_NAME, LrReport, write_plot
from lora_sched.train.memory import check_memory
from lora_sched.train.metadata import LoraRunFacts, lora_metadata
from lora_sched.train.model import check_model_source, load_model
from lora_sched.train.optim import (
    build_optimizer,
    evaluation_weights,
    is_schedule_free,
    parse_optimizer_args,
    set_optimizer_mode,
)
from lora_sched.train.options import check_network_module, tracker_settings
from lora_sched.train.sampling import SamplePlan, draw_samples, sample_plan
from lora_sched.train.saving import SavePlan, files_due, save_files, save_plan
from lora_sched.train.sources import SourceOptions

LOG_NAME = "train_log.csv"


@dataclass
class TrainResult:
    output: Path
    steps: int
    last_loss: float
    is_main_process: bool = True


def parse_resolution(value: Any) -> tuple[int, int]:
    """kohya's resolution: 512, "512,768" (width, height) or, from a dataset config, [512, 768]."""
    size = resolution_size(value)
    if size is None or min(size) < 1:
        raise ConfigError(problem("resolution", 'an int, "WIDTH,HEIGHT" or [WIDTH, HEIGHT]', value))
    return size


def check_output_dir(output_dir: Path, output_file: str | None = None) -> None:
    """Refuse an output_dir that is a file or cannot be created, or that holds a folder where a
    file goes (the LoRA, the log) or a file where a folder goes (checkpoints/)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(
            problem(
                "output_dir",
                "a folder (or a path where one can be made)",
                str(output_dir),
                "a file of that name exists; choose another output_dir",
            )
        )
    for parent in output_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    problem("output_dir", "a path whose parents are folders", str(output_dir), f"{parent} is a file")
                )
            break
    inside = [(ckpt.checkpoints_dir(output_dir), "a folder"), (output_dir / LOG_NAME, "a file")]
    inside.append((output_dir / PLOT_NAME, "a file"))
    if output_file:
        inside.append((output_dir / output_file, "a file"))
    for path, kind in inside:
        try:
            wrong = path.exists() and (path.is_dir() != (kind == "a folder") or path.is_symlink())
        except (OSError, ValueError):  # a name the OS cannot take is the config layer's to report
            continue
        if wrong:
            raise ConfigError(
                problem(
                    "output_dir",
                    f"a folder where {path.name} can be written",
                    str(output_dir),
                    f"{path} is not {kind}{' (a link)' if path.is_symlink() else ''}; move it away or choose "
                    "another output_dir",
                )
            )


def _set_aside_old_checkpoints(output_dir: Path, resume_dir: Path | None) -> None:
    """A fresh run into a folder holding another run's checkpoints renames them (kept, never mixed:
    a later `--resume latest` must not pick up a checkpoint of the earlier run)."""
    root = ckpt.checkpoints_dir(output_dir)
    if resume_dir is not None and resume_dir.resolve().parent == root.resolve():
        return
    if not ckpt.list_checkpoints(output_dir):
        return
    target = _free_name(root, "previous")
    os.replace(root, target)
    print(f"notice: {root} held another run's checkpoints: moved to {target.name}", file=sys.stderr)


def _set_aside_later_checkpoints(output_dir: Path, saved: ckpt.Checkpoint) -> None:
    """Resuming at step k continues a new line of the run: checkpoints after k (of the run that made
    them, maybe another schedule, maybe damaged) move to checkpoints.superseded-*/, so a later
    `--resume latest` picks this run's checkpoints, never theirs."""
    root = ckpt.checkpoints_dir(output_dir)
    if saved.folder.resolve().parent != root.resolve():
        return
    later = [folder for step, folder in ckpt.list_checkpoints(output_dir) if step > saved.step]
    if not later:
        return
    target = _free_name(root, "superseded")
    target.mkdir()
    for folder in later:
        os.replace(folder, target / folder.name)
    names = ", ".join(f.name for f in later)
    print(
        f"notice: resuming at step {saved.step}: the later checkpoints ({names}) moved to {target.name}",
        file=sys.stderr,
    )


def _free_name(root: Path, label: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = root.with_name(f"{root.name}.{label}-{stamp}")
    n = 1
    while target.exists():
        target, n = root.with_name(f"{root.name}.{label}-{stamp}-{n}"), n + 1
    return target


def train(
    cfg: Any, *, resume: str | None = None, trust_scheduler_code: bool = False, allow_schedule_change: bool = False
) -> TrainResult:
    """Run the fine-tune `cfg` describes; return where the LoRA file went.

    Problems found here (a missing model folder, no readable image, ...) are raised as a
    ConfigError located in the config file (file:line of the key).
    """
    try:
        with contextlib.ExitStack() as held:  # the output folder's lock, the signal handlers
            return _train(cfg, resume, trust_scheduler_code, allow_schedule_change, held)
    except ConfigError as exc:
        locate = getattr(cfg, "locate", None)
        raise ConfigError(locate(exc.problems) if locate else exc.problems) from None


class RunPlan(NamedTuple):
    """Everything a run needs that the config decides, computed (and checked) once, before any model
    is built or anything is written."""

    output_dir: Path
    out_file: Path
    resume: str | None
    model_name: str
    model_options: Any  # SourceOptions: downloads, tokenizers, v-prediction
    tracker: Any
    log_dir: Path | None
    data: TrainingData
    width: int
    height: int
    optimizer_type: str
    optimizer_args: dict
    group_lrs: dict
    train_te: bool
    seed: int
    batch_size: int
    accum: int
    compute: ComputeOptions
    cache_latents_to_disk: bool
    max_grad_norm: float
    save_every: int | None
    samples: SamplePlan | None  # sample images (sample_prompts and its timing keys)
    saves: SavePlan  # LoRA files every N epochs / steps (save_every_n_*, save_last_n_*)


def plan_run(cfg: Any, resume: str | None = None) -> RunPlan:
    """The run `cfg` describes; every input is checked here (output folder, model source, network
    module, tracker, data, resolution, memory, optimizer, in that order), so a refusal costs nothing."""
    v = cfg.values
    output_dir = Path(os.path.expanduser(str(v["output_dir"])))
    check_output_dir(output_dir, f"{v['output_name']}.safetensors")
    model_options = SourceOptions.from_values(v)
    model_name = check_model_source(str(v["pretrained_model_name_or_path"]), options=model_options)
    check_network_module(cfg)
    tracker, log_dir = tracker_settings(cfg, output_dir)
    data_read = training_data(cfg)  # the same walk that counted the preview's epochs
    width, height = parse_resolution(data_read.resolution)
    check_sizes(model_name, data_read.examples, width, height, data_read.resolution)
    check_memory(model_name, len(data_read.examples), width, height, _env_int("LOCAL_WORLD_SIZE", 1))
    optimizer_type = str(v.get("optimizer_type") or "AdamW")
    optimizer_args = parse_optimizer_args(v.get("optimizer_args"))
    group_lrs = cfg.group_lrs()
    train_te = float(group_lrs.get("text_encoder", 0.0)) > 0
    _check_optimizer(optimizer_type, optimizer_args, group_lrs, train_te, cfg.schedule_name == "adafactor")
    save_every = v.get("save_every_n_steps")
    return RunPlan(
        output_dir=output_dir,
        out_file=output_dir / f"{v['output_name']}.safetensors",
        resume=resume if resume is not None else v.get("resume"),
        model_name=model_name,
        model_options=model_options,
        tracker=tracker,
        log_dir=log_dir,
        data=data_read,
        width=width,
        height=height,
        optimizer_type=optimizer_type,
        optimizer_args=optimizer_args,
        group_lrs=group_lrs,
        train_te=train_te,
        seed=int(v["seed"]),
        batch_size=data_read.batch_size,
        accum=int(v["gradient_accumulation_steps"]),
        compute=compute_options(v, on_cpu=_no_accelerator()),
        cache_latents_to_disk=bool(v.get("cache_latents_to_disk")),
        max_grad_norm=float(v.get("max_grad_norm") or 0.0),
        save_every=int(save_every) if save_every else None,
        samples=sample_plan(v, output_dir),
        saves=save_plan(v, output_dir),
    )


@dataclass
class _Run:
    """The live objects of a run, made by the setup functions below and used by the step and finish."""

    cfg: Any
    plan: RunPlan
    accelerator: Any
    order: ShardedOrder
    steps_per_epoch: int
    resume_dir: Path | None = None
    saved: ckpt.Checkpoint | None = None
    model: Any = None
    data: Any = None
    resolved: Any = None
    params: dict | None = None
    optimizer: Any = None
    scheduler: Any = None
    unet: Any = None
    condition: Any = None  # the text (and SDXL size) conditioning of a micro-batch
    prediction: str = "epsilon"  # the training target: "epsilon" (noise) or "v_prediction" (velocity)
    wrapped: list | None = None
    start: int = 0
    bucket_metadata: dict | None = None  # the LoRA file's ss_*bucket* entries
    augment: Any = None  # captions and flips drawn per sample (lora_sched.train.augment), None without
    _permutation: tuple[int, Any] = (-1, None)  # (epoch, its data order): drawn once per epoch

    def permutation(self, epoch: int) -> Any:
        if self._permutation[0] != epoch:
            self._permutation = (epoch, self.order.permutation(epoch))
        return self._permutation[1]

    def state(self, epoch: int) -> dict:
        """The run's record in a checkpoint (state.json)."""
        return {
            "values": {k: _jsonable(x) for k, x in self.cfg.values.items()},
            "resolved": self.resolved.to_dict(),
            "steps_per_epoch": self.steps_per_epoch,
            "epoch": epoch,
        }

    def save_checkpoint(self, step: int, epoch: int) -> None:
        ckpt.save_checkpoint(
            self.accelerator,
            self.plan.output_dir,
            step,
            self.params,
            self.optimizer,
            self.scheduler,
            self.state(epoch),
        )


def _train(
    cfg: Any, resume: str | None, trust_scheduler_code: bool, allow_schedule_change: bool, held: Any
) -> TrainResult:
    plan = plan_run(cfg, resume)
    examples, images = load_images(plan.data.examples, plan.width, plan.height)
    run = _open_run(cfg, plan, examples, held)
    _build_model(run, examples, images)
    _build_training(run, trust_scheduler_code)
    if run.saved is not None:
        run.start = _resume(
            run.saved,
            run.accelerator,
            run.params,
            run.optimizer,
            run.scheduler,
            allow_schedule_change,
            run.resolved,
        )
        set_optimizer_mode(run.optimizer, "train")  # a schedule-free checkpoint holds its eval weights
    if run.start >= run.resolved.run_length:
        print(
            f"notice: the checkpoint is at step {run.start}: the run ({run.resolved.run_length} steps) is complete",
            file=sys.stderr,
        )
    if run.accelerator.is_main_process:  # only now, with every input checked and the resume accepted
        _set_aside_old_checkpoints(plan.output_dir, run.resume_dir)
        if run.saved is not None:
            _set_aside_later_checkpoints(plan.output_dir, run.saved)
    run.accelerator.wait_for_everyone()
    stopped, done, loss_value = _run_steps(run, held)
    return _finish(run, stopped, done, loss_value)


def _open_run(cfg: Any, plan: RunPlan, examples: list, held: Any) -> _Run:
    """The accelerator, the data order, the epoch check, the output folder's lock, the checkpoint to
    resume (read and checked) and the seeds: everything before the model is built."""
    import numpy as np
    import torch
    from accelerate import Accelerator

    _forget_previous_run()
    accelerator = Accelerator(
        cpu=_no_accelerator(),  # else accelerate ignores torchrun's processes on a CPU-only machine
        mixed_precision=plan.compute.mixed_precision,
        log_with=plan.tracker,
        project_dir=str(plan.log_dir) if plan.tracker else None,
    )
    procs = accelerator.num_processes
    order = sharded_order(examples, plan.batch_size, plan.seed, accelerator.process_index, procs)
    steps_per_epoch = order.updates_per_epoch(plan.accum)
    check_epoch_length(cfg, steps_per_epoch, procs)  # before the model is built: a refusal costs nothing
    # the lock creates output_dir: taken once every input is known good
    if _env_int("RANK", 0) == 0:  # one run per output folder (process 0 of a multi-process run holds it)
        held.enter_context(OutputLock(plan.output_dir))
    run = _Run(cfg, plan, accelerator, order, steps_per_epoch)
    resume, output_dir = plan.resume, plan.output_dir
    run.resume_dir = ckpt.find_resume_dir(str(resume), output_dir) if resume else None
    if resume and run.resume_dir is None:
        print(f"notice: resume = {resume!r}: no checkpoint in {output_dir} yet; starting from step 0", file=sys.stderr)
    run.saved = _read_resume(run.resume_dir, cfg) if run.resume_dir is not None else None
    random.seed(plan.seed)
    np.random.seed(plan.seed % 2**32)
    torch.manual_seed(plan.seed)
    return run


def _build_model(run: _Run, examples: list, images: Any) -> None:
    """Load the model, cache the latents (and frozen text embeddings), add the LoRA layers."""
    plan, v = run.plan, run.cfg.values
    model = _load_model(plan.model_name, plan.model_options)
    step_px = model.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    check_fitted(examples, step_px, plan.width, plan.height, v["resolution"])
    set_attention(model.unet, plan.compute.attention)
    for part in model.modules().values():
        part.to(run.accelerator.device)
    cache_text = not plan.train_te and not model.is_sdxl  # SDXL's two encoders: lora_sched.train.conditioning
    run.data = cache_data(model, examples, images, cache_text=cache_text, disk_cache=plan.cache_latents_to_disk)
    run.condition = conditioning(model, run.data, examples, plan.train_te)
    run.prediction = str(model.noise_scheduler.config.prediction_type)  # v_parameterization: set by the loader
    run.bucket_metadata = bucket_metadata(examples)
    run.augment = make_augmenter(model, examples, images, plan.seed, plan.train_te)  # while the VAE is loaded
    model.vae.to("cpu")  # only needed for caching
    add_lora(model, int(v["network_dim"]), float(v["network_alpha"]), plan.train_te, plan.seed)
    apply_compute(model, plan.compute, plan.train_te)
    assert run.order.num_samples == run.data.num_samples  # the cache holds exactly the examples counted above
    run.model = model


def _build_training(run: _Run, trust_scheduler_code: bool) -> None:
    """The schedule resolved with the real epoch, the optimizer over the LoRA parameters (by group),
    the models prepared by accelerate and the LR scheduler (never prepared: stepped once per update)."""
    from lora_sched.schedules import TrainingShape

    plan, model, accelerator = run.plan, run.model, run.accelerator
    samples_per_step = plan.batch_size * plan.accum * accelerator.num_processes
    resolved = run.cfg.resolve(TrainingShape(steps_per_epoch=run.steps_per_epoch, samples_per_step=samples_per_step))
    params = {f"unet.{k}": p for k, p in trainable(model.unet).items()}
    groups = [{"params": list(params.values()), "lr": float(plan.group_lrs["unet"]), "name": "unet"}]
    if plan.train_te:  # one group for every text encoder, as sd-scripts' networks.lora makes it
        te_params = {f"{n}.{k}": p for n, te in text_encoders(model).items() for k, p in trainable(te).items()}
        te_lr = float(plan.group_lrs["text_encoder"])
        groups.append({"params": list(te_params.values()), "lr": te_lr, "name": "text_encoder"})
        params.update(te_params)
    optimizer = build_optimizer(
        plan.optimizer_type, groups, plan.optimizer_args, relative_step=resolved.name == "adafactor"
    )
    if is_schedule_free(plan.optimizer_type) and resolved.name not in ("constant", "constant_with_warmup"):
        print(
            f"notice: {plan.optimizer_type} schedules its own LR: lr_scheduler {resolved.name} replaced by constant",
            file=sys.stderr,
        )
        resolved = _constant_like(resolved)
    run.unet, optimizer = accelerator.prepare(model.unet, optimizer)
    run.wrapped = [run.unet, *run.condition.wrap(accelerator.prepare)]
    run.scheduler = _build_scheduler(run.cfg, resolved, optimizer, trust_scheduler_code)
    run.resolved, run.params, run.optimizer = resolved, params, optimizer


def _run_steps(run: _Run, held: Any) -> tuple[int | None, int, float]:
    """Steps start .. run_length-1, each logged, with checkpoints every save_every_n_steps and at a
    stop signal. Returns (the signal that stopped the run or None, steps done, last loss)."""
    from tqdm.auto import tqdm

    plan, accelerator, resolved = run.plan, run.accelerator, run.resolved
    main = accelerator.is_main_process
    report = LrReport(plan.optimizer_type, [g["name"] for g in run.optimizer.param_groups])
    log = _CsvLog(plan.output_dir / LOG_NAME, report.columns(), run.start) if main else None
    if plan.tracker and main:
        accelerator.init_trackers("lora_sched")
    bar = tqdm(
        total=resolved.run_length,
        initial=run.start,
        desc="train",
        disable=not accelerator.is_local_main_process or os.environ.get("LORA_SCHED_NO_PROGRESS") == "1",  # notebook
        dynamic_ncols=True,
        file=sys.stderr,
    )
    loss_value = float("nan")
    stop = held.enter_context(_StopSignals())
    stopping, done = False, run.start
    if run.start == 0 and plan.samples and plan.samples.at_first:
        _draw_samples(run, "e000000")  # sd-scripts' name for the images before training
    for step in range(run.start, resolved.run_length):
        epoch = step // run.steps_per_epoch
        lrs = report.values(run.optimizer, _current_lrs(run.scheduler, run.optimizer))
        loss_value = _train_step(run, step)
        if log is not None:
            log.write(step, epoch, lrs, loss_value)
        if plan.tracker:
            accelerator.log(report.tracker(lrs, loss_value), step=step)
        bar.update(1)
        bar.set_postfix(report.postfix(step, lrs, loss_value), refresh=False)
        done = step + 1
        _save_and_sample(run, done)
        stopping = stop.requested(accelerator)
        if done < resolved.run_length and (stopping or (plan.save_every and done % plan.save_every == 0)):
            if log is not None:
                log.sync()  # the rows up to a checkpoint are on disk before it is
            with evaluation_weights(run.optimizer):
                run.save_checkpoint(done, epoch)
        if stopping:
            break
    bar.close()
    if log is not None:
        log.close()
    return (stop.signum if stopping else None), done, loss_value


def _train_step(run: _Run, step: int) -> float:
    """One optimizer update over the micro-batches of `step`'s window, then one scheduler step;
    returns the window's mean loss (over every process)."""
    import torch

    plan, accelerator, order = run.plan, run.accelerator, run.order
    epoch, window = divmod(step, run.steps_per_epoch)
    perm = run.permutation(epoch)
    positions = range(window * plan.accum, min((window + 1) * plan.accum, order.batches_per_process))
    noise_scheduler = run.model.noise_scheduler
    total = torch.zeros((), device=accelerator.device)
    for micro, position in enumerate(positions):
        samples = order.batch(epoch, position, perm)
        rows = [run.data.index[i] for i in samples]
        data, rows = run.augment(run.data, epoch, samples, rows) if run.augment else (run.data, rows)
        with contextlib.ExitStack() as stack:
            if micro != len(positions) - 1:  # DDP averages gradients on the window's last backward only
                for m in run.wrapped:
                    stack.enter_context(accelerator.no_sync(m))
            gen = step_generator(plan.seed, step, micro, accelerator.process_index)
            loss = _loss(
                run.unet,
                run.condition,
                noise_scheduler,
                data,
                rows,
                gen,
                int(noise_scheduler.config.num_train_timesteps),
                run.prediction,
                accelerator.device,
            )
            accelerator.backward(loss / len(positions))
        total += loss.detach()
    if plan.max_grad_norm > 0:
        accelerator.clip_grad_norm_(list(run.params.values()), plan.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if accelerator.num_processes > 1:
        loss_value = float(accelerator.reduce(total / len(positions), "mean"))
    else:
        loss_value = float(total) / len(positions)
    _step_scheduler(run.scheduler, loss_value)
    return loss_value


def _save_and_sample(run: _Run, done: int) -> None:
    """The LoRA files and sample images due after update `done` (both from the weights as they are now:
    a schedule-free optimizer's evaluation weights, as for checkpoints)."""
    plan, length = run.plan, run.resolved.run_length
    point = plan.samples.point_after(done, run.steps_per_epoch, length) if plan.samples else None
    files = files_due(plan.saves, done, run.steps_per_epoch, length)
    if point is None and not files:  # every process decides alike: the weights swap on all or none
        return
    with evaluation_weights(run.optimizer):
        if run.accelerator.is_main_process:
            save_files(plan.saves, files, lambda path: _save_lora(run, done, path))
        if point is not None:
            _draw_samples(run, point)


def _draw_samples(run: _Run, point: str) -> None:
    draw_samples(run.plan.samples, run.model, run.accelerator, point)
    run.accelerator.wait_for_everyone()


def _finish(run: _Run, stopped: int | None, done: int, loss_value: float) -> TrainResult:
    """The final checkpoint and the LoRA file (with kohya's metadata); a stop before the last step
    raises TrainingInterrupted (its checkpoint was saved by the loop)."""
    plan, accelerator, resolved = run.plan, run.accelerator, run.resolved
    checkpoints = ckpt.checkpoints_dir(plan.output_dir)
    if stopped is not None and done < resolved.run_length:
        raise TrainingInterrupted(stopped, done, checkpoints / f"step-{done:08d}")
    set_optimizer_mode(run.optimizer, "eval")  # schedule-free: save the averaged weights, as sd-scripts does
    final_step = max(run.start, resolved.run_length)
    if run.start < resolved.run_length:
        run.save_checkpoint(final_step, (final_step - 1) // run.steps_per_epoch)
    out_file, main = plan.out_file, accelerator.is_main_process
    if main and (run.start < resolved.run_length or not out_file.exists()):
        _save_lora(run, final_step, out_file)
        write_plot(plan.output_dir / LOG_NAME, plan.output_dir / PLOT_NAME)
    accelerator.wait_for_everyone()
    if plan.tracker:
        accelerator.end_training()
    if stopped is not None:  # the signal came during the last step: the run is complete, the exit still says stopped
        raise TrainingInterrupted(stopped, final_step, checkpoints / f"step-{final_step:08d}")
    return TrainResult(out_file, final_step, loss_value, main)


def _save_lora(run: _Run, step: int, path: Path) -> None:
    """The LoRA as it is after `step` updates, kohya keys and metadata, written atomically."""
    plan, model = run.plan, run.model
    facts = LoraRunFacts(
        cfg=run.cfg,
        resolved=run.resolved,
        group_lrs=plan.group_lrs,
        num_samples=run.data.num_samples,
        steps_per_epoch=run.steps_per_epoch,
        steps=step,
        optimizer_type=plan.optimizer_type,
        width=plan.width,
        height=plan.height,
        model_kind=model.kind,
        v_prediction=run.prediction == "v_prediction",
    )
    metadata = lora_metadata(facts)
    metadata.update(kohya_metadata(run.bucket_metadata or {}))
    sdxl_layers = int(model.unet.config.layers_per_block) if model.is_sdxl else None
    lora = to_kohya(lora_tensors(model, plan.train_te), float(run.cfg.values["network_alpha"]), sdxl_layers)
    save_safetensors_atomic(lora, path, metadata)


def check_epoch_length(cfg: Any, steps_per_epoch: int, procs: int) -> None:
    """Refuse, before the first step, an epoch-based run whose epoch is not the one the preview counts.

    The preview counts what the config names (lora_sched.config.dataset); training counts what it
    read. They differ when the config states a samples_per_epoch that is not the data's, or names no
    data at all (training then reads builtin:shapes, which an epoch count never assumes)."""
    if cfg.values.get("max_train_epochs") is None:
        return  # a run in steps does not depend on the epoch length
    counted = cfg.training_shape(num_processes=procs).steps_per_epoch
    if counted == steps_per_epoch:
        return
    found = cfg.data()
    source = getattr(found, "source", None) or "no data named"
    raise ConfigError(
        problem(
            "max_train_epochs",
            f"an epoch of the data training reads ({steps_per_epoch} steps with {procs} process(es))",
            raw(
                f"{counted} steps per epoch counted on {source}"
                if counted
                else f"an epoch of unknown length ({source})"
            ),
            "name the data training reads: train_data_dir (builtin:shapes for the built-in set) or dataset_config; "
            "remove samples_per_epoch when the data is here",
        )
    )


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the run after saving a checkpoint at step `step` (exit 128 + signum)."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class _StopSignals:
    """SIGINT and SIGTERM during the loop are noted, not acted on at once: the loop saves a checkpoint
    at the end of the current step, then stops. A second signal gets the previous behaviour back
    (an immediate stop; checkpoints are atomic, so even a kill mid-save loses nothing saved)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def requested(self, accelerator: Any) -> bool:
        """Whether to stop after this step (in a multi-process run: when any process got a signal)."""
        if accelerator.num_processes == 1:
            return self.signum is not None
        if self.signum is not None:
            accelerator.set_trigger()
        if accelerator.check_trigger():
            self.signum = self.signum or signal.SIGTERM
            return True
        return False


def _load_model(name: str, options: Any) -> Any:
    """load_model: a weights file that does not load (damaged, or a pickle holding more than
    tensors) is a ConfigError naming it (lora_sched.train.sources)."""
    return load_model(name, options=options)


def _forget_previous_run() -> None:
    """Let a second run in the same single process (a notebook) choose another mixed_precision.

    The one use of accelerate's private API, and unavoidable: accelerate keeps its settings in a
    process-wide singleton (AcceleratorState) that refuses a changed setting and offers no public way
    to clear it (its own tests call the same private `_reset_state`). Only a single-process run
    resets it; a torchrun process is one run and never gets here twice."""
    from accelerate.state import AcceleratorState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()


def _no_accelerator() -> bool:
    import torch

    if torch.cuda.is_available():
        return False
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return False
    return not torch.backends.mps.is_available()


def _loss(
    unet: Any,
    condition: Any,
    noise_scheduler: Any,
    data: CachedData,
    rows: list[int],
    gen: Any,
    noise_steps: int,
    prediction: str,
    device: Any,
) -> Any:
    """Denoising loss of one micro-batch: MSE between the UNet output and eps (or v) at random t."""
    import torch
    import torch.nn.functional as F

    latents = data.latents[rows]
    noise = torch.randn(latents.shape, generator=gen).to(device)
    timesteps = torch.randint(0, noise_steps, (latents.shape[0],), generator=gen).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    # a trained text encoder runs every step; a frozen one was run once, when the data was cached
    embeddings, extra = condition(data, rows, device)
    pred = unet(noisy, timesteps, embeddings, **extra).sample
    target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    return F.mse_loss(pred.float(), target.float())


def _build_scheduler(cfg: Any, resolved: Any, optimizer: Any, trust: bool) -> Any:
    """The scheduler over the schedule resolved with the real steps per epoch (torch's one factory)."""
    from lora_sched.torch import build_scheduler

    return build_scheduler(cfg, optimizer, resolved=resolved, trust_scheduler_code=trust)


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


def _constant_like(resolved: Any) -> Any:
    return resolved._replace(name="constant", params={}, warmup=0)


def _read_resume(folder: Path, cfg: Any) -> ckpt.Checkpoint:
    """Read and check a checkpoint before the model is built: intact files, the same run identity."""
    saved = ckpt.read_checkpoint(folder)
    problems = ckpt.identity_changes(saved.state["values"], {k: _jsonable(x) for k, x in cfg.values.items()})
    if problems:
        raise ConfigError([_resume_refused(folder), *problems])
    return saved


def _resume_refused(folder: Path) -> Any:
    return problem(
        "resume",
        "a checkpoint of the same run and schedule",
        raw(str(folder)),
        "the checkpoint was made with other settings (listed below); resuming would change the LR curve "
        "or the weights' meaning mid-run (--allow-schedule-change accepts a changed schedule)",
    )


def _resume(
    saved: ckpt.Checkpoint,
    accelerator: Any,
    params: dict,
    optimizer: Any,
    scheduler: Any,
    allow_change: bool,
    resolved: Any,
) -> int:
    """Load a checkpoint; refuse (ConfigError) when the schedule changed (unless allowed).

    The optimizer state goes first: it carries the LRs of the step it was saved at, and the
    scheduler then sets the LRs its (possibly changed, if allowed) curve gives for that step.
    """
    ckpt.load_checkpoint(saved, accelerator, params, optimizer)
    try:
        scheduler.load_state_dict(saved.scheduler, allow_schedule_change=allow_change)
    except ConfigError as exc:
        raise ConfigError([_resume_refused(saved.folder), *exc.problems]) from None
    except Exception as exc:  # a state of the wrong shape (written by hand, or by another class)
        what = f"it does not fit this run ({type(exc).__name__}: {exc})"
        raise ckpt.damaged(saved.folder / "scheduler.pt", what) from None
    state = saved.state
    if allow_change and accelerator.is_main_process:
        _notice_schedule_change(saved, resolved)
    if state["num_processes"] != accelerator.num_processes:
        print(
            f"notice: checkpoint made with {state['num_processes']} process(es), resumed with "
            f"{accelerator.num_processes}: the LR curve is the same, the data order per process is not",
            file=sys.stderr,
        )
    if accelerator.is_main_process:
        print(f"resumed from {saved.folder} at step {saved.step}", file=sys.stderr)
    return saved.step


def _notice_schedule_change(saved: ckpt.Checkpoint, resolved: Any) -> None:
    """Say so when an allowed resume continues a checkpoint made with another schedule."""
    from lora_sched.schedules import ResolvedSchedule

    try:
        changes = [str(c) for c in ResolvedSchedule.from_dict(saved.state["resolved"]).curve_changes(resolved)]
    except (KeyError, TypeError, ValueError):
        changes = ["(the checkpoint's schedule record is unreadable)"]
    if changes:
        print(
            f"notice: {saved.folder} was made with another schedule ({'; '.join(changes)}); "
            "continuing with the current one from its step (--allow-schedule-change)",
            file=sys.stderr,
        )


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _check_optimizer(name: str, args: dict, group_lrs: dict, train_te: bool, relative_step: bool) -> None:
    """Build the optimizer over one-element stand-in parameters: an unknown name, a missing package
    or arguments the class refuses are reported before the model is built."""
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": float(group_lrs["unet"]), "name": "unet"}]
    if train_te:
        groups.append(
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": float(group_lrs["text_encoder"]), "name": "te"}
        )
    build_optimizer(name, groups, args, relative_step=relative_step)


class _CsvLog:
    """step, epoch, lr_<group>... (and d*lr_<group>...), loss, seconds; on resume, rows from the resumed
    step on are dropped.

    seconds = wall time since this process opened the log, when the step's update finished
    (throughput per step without start-up; bench/bench_train.py reads it). The file is fsynced
    before every checkpoint, so the rows of the steps a checkpoint holds survive a power cut.
    """

    def __init__(self, path: Path, lr_columns: list[str], start: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ["step", "epoch", *lr_columns, "loss", "seconds"]
        kept = _rows_before(path, header, start) if start > 0 else []
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(kept)
        atomic_write_text(path, text.getvalue())
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self._writer = csv.writer(self._fh)
        self._t0 = time.perf_counter()

    def write(self, step: int, epoch: int, lrs: list[float], loss: float) -> None:
        seconds = f"{time.perf_counter() - self._t0:.6f}"
        self._writer.writerow([step, epoch, *(repr(lr) for lr in lrs), repr(loss), seconds])
        self._fh.flush()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.sync()
        self._fh.close()


def _rows_before(path: Path, header: list[str], start: int) -> list[list[str]]:
    """The earlier log's rows of steps 0 .. start-1, in order, as long as they are whole.

    Reading stops at the first row that is not a complete record of the next step: a row torn by a
    power cut (or zeros the file system left), a hand edit. Rows after the checkpoint's step are
    dropped anyway (the resumed run writes them again); a log cut short before it is said so.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        print(f"notice: {path}: cannot read the earlier log ({exc.strerror}); it starts afresh", file=sys.stderr)
        return []
    if not lines or _csv_row(lines[0]) != header:
        print(f"notice: {path} has another header (another run's log?): it starts afresh", file=sys.stderr)
        return []
    kept: list[list[str]] = []
    for line in lines[1:]:
        row = _csv_row(line)
        if len(kept) == start or not _is_log_row(row, len(header), len(kept)):
            break
        kept.append(row)
    if len(kept) < start:
        whole = f"steps 0-{len(kept) - 1}" if kept else "no step"
        print(
            f"notice: {path} held whole rows for {whole} only (the rest was cut or damaged); "
            f"the log continues at step {start}, without rows for steps {len(kept)}-{start - 1}",
            file=sys.stderr,
        )
    return kept


def _csv_row(line: str) -> list[str]:
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def _is_log_row(row: list[str], width: int, step: int) -> bool:
    """A whole row of the log for `step`: every field present and a number."""
    if len(row) != width or row[0] != str(step):
        return False
    try:
        int(row[1])
        for field in row[2:]:
            float(field)
    except ValueError:
        return False
    return all(field.strip() == field and field for field in row)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(x) for x in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(x) for k, x in value.items()}
    return str(value)
