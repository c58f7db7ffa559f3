"""The live objects of a run, each group made in one go and never changed after: the processes
(accelerator, data order), the model with its data cache and LoRA layers, and what trains it
(schedule, optimizer, LR scheduler)."""

from __future__ import annotations

import logging
import random
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem
from lora_sched.schedules import ResolvedSchedule, TrainingShape
from lora_sched.train.augment import Augmenter, make_augmenter
from lora_sched.train.buckets import bucket_metadata, check_fitted
from lora_sched.train.compute import apply_compute, cast_vae, no_accelerator, prepare_accelerator, set_attention
from lora_sched.train.conditioning import SdxlConditioning, TextConditioning, conditioning, model_text_options
from lora_sched.train.data import CachedData, Example, ShardedOrder, cache_data, sharded_order
from lora_sched.train.lora import add_lora, text_encoders, trainable
from lora_sched.train.model import SDModel
from lora_sched.train.objective import prepare_noise_scheduler
from lora_sched.train.optim import build_optimizer, is_schedule_free
from lora_sched.train.plan import RunPlan, check_epoch_length
from lora_sched.train.sources import load_model
from lora_sched.train.validation import ValidationSet, build_validation_set

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)


class Processes(NamedTuple):
    """The accelerator and this process's share of the data."""

    accelerator: Any  #: accelerate.Accelerator
    order: ShardedOrder  #: the batches of each epoch, this process's shard
    steps_per_epoch: int  #: optimizer updates per epoch


class Built(NamedTuple):
    """The model with its LoRA layers and the cached training data."""

    model: SDModel
    data: CachedData
    condition: TextConditioning | SdxlConditioning  #: the text (and SDXL size) conditioning of a micro-batch
    prediction: str  #: the training target: "epsilon" (noise) or "v_prediction" (velocity)
    bucket_metadata: dict[str, Any]  #: the LoRA file's ss_*bucket* entries
    augment: Augmenter | None  #: captions and flips drawn per sample (lora_sched.train.augment)
    validation: ValidationSet | None = None  #: the held-out images (validation_split), cached


class Training(NamedTuple):
    """The schedule, the optimizer over the LoRA parameters and the LR scheduler."""

    resolved: ResolvedSchedule  #: the schedule resolved with the real steps per epoch
    params: dict[str, Any]  #: the trained parameters by name ("unet.…", "text_encoder.…")
    optimizer: Any  #: as accelerate prepared it
    scheduler: Any  #: never prepared: stepped once per update
    unet: Any  #: as accelerate prepared it
    wrapped: list[Any]  #: the modules DDP syncs (the UNet, a trained text encoder)


class Run(NamedTuple):
    """A run ready to step: the config, its plan, the built parts and the step it starts at."""

    cfg: Any
    plan: RunPlan
    processes: Processes
    built: Built
    training: Training
    start: int  #: 0, or the step of the checkpoint resumed


#: The mixed precision of this process's first run (None before it): accelerate keeps it in a
#: process-wide singleton that refuses a change and has no public way to clear it.
_process_precision: str | None = None


def _check_precision(cfg: Any, mixed_precision: str) -> None:
    """Refuse a run whose mixed precision differs from an earlier run's in this process, before anything
    is written (each `lora-sched train` and each notebook run is a process of its own)."""
    if _process_precision is not None and mixed_precision != _process_precision:
        expected = f'"{_process_precision}", as the run before it in this Python process'
        hint = (
            "accelerate fixes the mixed precision for the life of a process: run this config as its own "
            "process (`lora-sched train CONFIG`, or the notebook's train_live), or restart the kernel"
        )
        raise ConfigError(cfg.locate([problem("mixed_precision", expected, mixed_precision, hint)]))


def start_processes(cfg: Any, plan: RunPlan, examples: list[Example]) -> Processes:
    """The accelerator and the data order; an epoch-based run whose epoch differs from the preview's
    is refused here, before the output folder is touched."""
    from accelerate import Accelerator

    global _process_precision
    _check_precision(cfg, plan.compute.mixed_precision)
    accelerator = Accelerator(
        cpu=no_accelerator(),  # else accelerate ignores torchrun's processes on a CPU-only machine
        mixed_precision=plan.compute.mixed_precision,
        log_with=plan.tracker,
        project_dir=str(plan.log_dir) if plan.tracker else None,
    )
    _process_precision = plan.compute.mixed_precision
    prepare_accelerator(accelerator, plan.compute)  # full_fp16: the scaler unscales fp16 gradients
    procs = accelerator.num_processes
    order = sharded_order(examples, plan.batch_size, plan.seed, accelerator.process_index, procs)
    steps_per_epoch = order.updates_per_epoch(plan.accum)
    check_epoch_length(cfg, steps_per_epoch, procs)
    return Processes(accelerator, order, steps_per_epoch)


def build_model(plan: RunPlan, processes: Processes, examples: list[Example], images: list) -> Built:
    """Seed, load the model, cache the latents (and frozen text embeddings), add the LoRA layers."""
    _seed_everything(plan.seed)
    model = load_model(plan.model_name, options=plan.model_options)  # a damaged file: ConfigError naming it
    prepare_noise_scheduler(model.noise_scheduler, plan.objective)  # SNR table; zero_terminal_snr's betas
    step_px = model.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    check_fitted(examples, step_px, plan.width, plan.height, plan.resolution_key)
    set_attention(model.unet, plan.compute.attention)
    for part in model.modules().values():
        part.to(processes.accelerator.device)
    cast_vae(model.vae, plan.compute)  # sd-scripts' weight type, float32 with no_half_vae
    text = model_text_options(model, plan.text)  # clip_skip, max_token_length
    cache_text = not plan.train_te and not model.is_sdxl  # SDXL's two encoders: lora_sched.train.conditioning
    data = cache_data(model, examples, images, cache_text=cache_text, disk_cache=plan.cache_latents_to_disk, text=text)
    condition = conditioning(model, data, examples, plan.train_te, text)
    prediction = str(model.noise_scheduler.config.prediction_type)  # v_parameterization: set by the loader
    buckets = bucket_metadata(examples)
    augment = make_augmenter(model, examples, images, plan.seed, plan.train_te, text)  # while the VAE is loaded
    validation = None
    if plan.validation is not None:  # cached as the training data, before the LoRA layers
        size, disk = (plan.width, plan.height), plan.cache_latents_to_disk
        held_out = plan.data.validation
        validation = build_validation_set(model, held_out, size, plan.batch_size, (plan.train_te, disk), text)
    model.vae.to("cpu")  # only needed for caching
    add_lora(model, plan.network, plan.train_te, plan.seed)
    apply_compute(model, plan.compute, plan.train_te)
    assert processes.order.num_samples == data.num_samples  # the cache holds exactly the examples counted
    return Built(model, data, condition, prediction, buckets, augment, validation)


def build_training(cfg: Any, plan: RunPlan, processes: Processes, built: Built, trust_scheduler_code: bool) -> Training:
    """The schedule resolved with the real epoch, the optimizer over the LoRA parameters (by group),
    the models prepared by accelerate and the LR scheduler (never prepared: stepped once per update)."""
    accelerator = processes.accelerator
    samples_per_step = plan.batch_size * plan.accum * accelerator.num_processes
    resolved = cfg.resolve(TrainingShape(steps_per_epoch=processes.steps_per_epoch, samples_per_step=samples_per_step))
    params, groups = _parameter_groups(plan, built.model)
    optimizer = build_optimizer(
        plan.optimizer_type, groups, plan.optimizer_args, relative_step=resolved.spec.optimizer_sets_lr
    )
    if is_schedule_free(plan.optimizer_type) and resolved.name not in ("constant", "constant_with_warmup"):
        log.warning(
            f"notice: {plan.optimizer_type} schedules its own LR: lr_scheduler {resolved.name} replaced by constant",
        )
        resolved = resolved._replace(name="constant", params={}, warmup=0)
    unet, optimizer = accelerator.prepare(built.model.unet, optimizer)
    wrapped = [unet, *built.condition.wrap(accelerator.prepare)]
    scheduler = _build_scheduler(cfg, resolved, optimizer, trust_scheduler_code)
    return Training(resolved, params, optimizer, scheduler, unet, wrapped)


def _parameter_groups(plan: RunPlan, model: SDModel) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trained parameters by name, and the optimizer's groups: the UNet's, and (when trained) one
    for every text encoder, as sd-scripts' networks.lora makes it."""
    params = {f"unet.{k}": p for k, p in trainable(model.unet).items()}
    groups = [{"params": list(params.values()), "lr": float(plan.group_lrs["unet"]), "name": "unet"}]
    if plan.train_te:
        te_params = {f"{n}.{k}": p for n, te in text_encoders(model).items() for k, p in trainable(te).items()}
        te_lr = float(plan.group_lrs["text_encoder"])
        groups.append({"params": list(te_params.values()), "lr": te_lr, "name": "text_encoder"})
        params.update(te_params)
    return params, groups


def _build_scheduler(cfg: Any, resolved: ResolvedSchedule, optimizer: Any, trust: bool) -> Any:
    """The scheduler over the schedule resolved with the real steps per epoch (torch's one factory)."""
    from lora_sched.torch import build_scheduler

    return build_scheduler(cfg, optimizer, resolved=resolved, trust_scheduler_code=trust)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
