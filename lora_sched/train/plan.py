"""The plan of a run: everything the config decides, computed and checked once, before any model is
built or anything is written (a refusal costs nothing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem, raw
from lora_sched.schedules.fields import resolution_size
from lora_sched.schedules.spec import lookup
from lora_sched.train import checkpoint as ckpt
from lora_sched.train.buckets import check_sizes
from lora_sched.train.compute import ComputeOptions, compute_options, no_accelerator
from lora_sched.train.csv_log import LOG_NAME
from lora_sched.train.data import TrainingData, training_data
from lora_sched.train.lr_log import PLOT_NAME
from lora_sched.train.memory import check_memory
from lora_sched.train.network import NetworkSettings, network_settings
from lora_sched.train.objective import Objective, objective_from_values
from lora_sched.train.optim import build_optimizer
from lora_sched.train.options import check_applied, check_network_module, tracker_settings
from lora_sched.train.sampling import SamplePlan, sample_plan
from lora_sched.train.saving import SavePlan, save_plan
from lora_sched.train.sources import SourceOptions, check_model_source, check_vae
from lora_sched.train.text_encoding import TextOptions, text_options
from lora_sched.train.validation import ValidationPlan, validation_plan


class RunPlan(NamedTuple):
    """Everything a run needs that the config decides."""

    output_dir: Path
    out_file: Path  #: the LoRA file the run ends with
    resume: str | None  #: a checkpoint folder, "latest", or None
    model_name: str
    model_options: SourceOptions  #: downloads, tokenizers, v-prediction
    tracker: str | None  #: log_with: "tensorboard", "wandb" or None
    log_dir: Path | None
    data: TrainingData
    width: int
    height: int
    resolution_key: Any  #: the config's resolution as written (what a refusal quotes)
    network_dim: int
    network_alpha: float
    network: NetworkSettings  #: the LoRA modules' ranks, alphas and dropouts (network_args read once)
    optimizer_type: str
    optimizer_args: dict[str, Any]
    group_lrs: dict[str, float]
    train_te: bool
    seed: int
    batch_size: int
    accum: int  #: gradient_accumulation_steps
    compute: ComputeOptions
    text: TextOptions  #: clip_skip, max_token_length
    cache_latents_to_disk: bool
    max_grad_norm: float
    save_every: int | None  #: a checkpoint every N steps
    samples: SamplePlan | None  #: sample images (sample_prompts and its timing keys)
    saves: SavePlan  #: LoRA files every N epochs / steps (save_every_n_*, save_last_n_*)
    objective: Objective  #: noise, timesteps, loss and weight-norm options (lora_sched.train.objective)
    validation: ValidationPlan | None = None  #: the held-out images' loss (lora_sched.train.validation)


def plan_run(cfg: Any, resume: str | None = None, train_without: frozenset[str] = frozenset()) -> RunPlan:
    """The run `cfg` describes; every input is checked here (the sd-scripts options train does not
    apply, output folder, model source, network module, tracker, data, resolution, memory,
    optimizer, in that order)."""
    values = cfg.values
    check_applied(cfg, train_without)
    output_dir = Path(os.path.expanduser(str(values["output_dir"])))
    check_output_dir(output_dir, f"{values['output_name']}.safetensors")
    model_options = SourceOptions.from_values(values)
    model_name = check_model_source(str(values["pretrained_model_name_or_path"]), options=model_options)
    check_vae(model_options.vae)
    check_network_module(cfg)
    tracker, log_dir = tracker_settings(cfg, output_dir)
    data = training_data(cfg)  # the same walk that counted the preview's epochs
    width, height = parse_resolution(data.resolution)
    check_sizes(model_name, data.examples, width, height, data.resolution)
    check_memory(model_name, len(data.examples), width, height, env_int("LOCAL_WORLD_SIZE", 1))
    optimizer_type = str(values.get("optimizer_type") or "AdamW")
    optimizer_args = cfg.optimizer_kwargs()
    group_lrs = cfg.group_lrs()
    train_te = float(group_lrs.get("text_encoder", 0.0)) > 0
    _check_optimizer(optimizer_type, optimizer_args, group_lrs, train_te, _optimizer_sets_lr(cfg))
    save_every = values.get("save_every_n_steps")
    objective = objective_from_values(values)
    return RunPlan(
        output_dir=output_dir,
        out_file=output_dir / f"{values['output_name']}.safetensors",
        resume=resume if resume is not None else values.get("resume"),
        model_name=model_name,
        model_options=model_options,
        tracker=tracker,
        log_dir=log_dir,
        data=data,
        width=width,
        height=height,
        resolution_key=values["resolution"],
        network_dim=int(values["network_dim"]),
        network_alpha=float(values["network_alpha"]),
        network=network_settings(values),
        optimizer_type=optimizer_type,
        optimizer_args=optimizer_args,
        group_lrs=group_lrs,
        train_te=train_te,
        seed=int(values["seed"]),
        batch_size=data.batch_size,
        accum=int(values["gradient_accumulation_steps"]),
        compute=compute_options(values, on_cpu=no_accelerator()),
        text=text_options(values),
        cache_latents_to_disk=bool(values.get("cache_latents_to_disk")),
        max_grad_norm=float(values.get("max_grad_norm") or 0.0),
        save_every=int(save_every) if save_every else None,
        samples=sample_plan(values, output_dir),
        saves=save_plan(values, output_dir),
        objective=objective,
        validation=validation_plan(values, data.validation, data.examples),
    )


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
        _check_inside(output_dir, path, kind)


def _check_inside(output_dir: Path, path: Path, kind: str) -> None:
    """Refuse `path` inside the output folder when it exists and is not `kind` (or is a link)."""
    try:
        wrong = path.exists() and (path.is_dir() != (kind == "a folder") or path.is_symlink())
    except (OSError, ValueError):  # a name the OS cannot take is the config layer's to report
        return
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


def env_int(name: str, default: int) -> int:
    """An integer environment variable (torchrun's RANK, LOCAL_WORLD_SIZE), `default` when unset or not one."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _optimizer_sets_lr(cfg: Any) -> bool:
    """Whether the chosen schedule leaves the LR to the optimizer (Adafactor's relative step). By its
    spec, not the resolved curve: an epoch count is checked later, against the data training reads."""
    return cfg.scheduler_type is None and lookup(cfg.schedule_name)[0].optimizer_sets_lr


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
