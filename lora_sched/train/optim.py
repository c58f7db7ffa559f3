"""Optimizers by kohya name (the shared table in lora_sched.config.optimizers: sd-scripts' names,
torch.optim classes, ``module.Class`` paths) with kohya's ``optimizer_args`` ("key=value" strings,
values read as Python literals, never eval'd)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from lora_sched.config import optimizers
from lora_sched.config.keys import unusable_optimizer
from lora_sched.dependencies import installed_version
from lora_sched.errors import ConfigError, did_you_mean, problem, raw


def takes_relative_step(name: str) -> bool:
    """Whether the optimizer can set its own LR relative to the step (sd-scripts' Adafactor)."""
    spec = optimizers.lookup(name)
    return spec is not None and spec.relative_step


def is_schedule_free(name: str) -> bool:
    spec = optimizers.lookup(name)
    return spec is not None and spec.schedule_free


def optimizer_class(name: str) -> tuple[Any, dict[str, Any]]:
    """The optimizer class `name` stands for and the keyword arguments sd-scripts adds for it."""
    unusable = unusable_optimizer(name)  # the rule validate applies: both accept the same set
    if unusable:
        raise ConfigError(unusable)
    spec = optimizers.lookup(name)
    if spec is None:
        hint = did_you_mean(name, optimizers.known_names()) or "or a dotted path like pytorch_optimizer.CAME"
        raise ConfigError(problem("optimizer_type", optimizers.EXPECTED, name, hint))
    cls = getattr(_import(name, spec), spec.attr, None)
    if cls is None:
        version = installed_version(spec.package)
        raise ConfigError(
            problem(
                "optimizer_type",
                f"a class {spec.attr} in {spec.module}",
                name,
                f"{spec.package} {version} has no {spec.module}.{spec.attr}: a newer release may; "
                f"check the spelling (class names are case-sensitive)",
            )
        )
    import torch

    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(
            problem("optimizer_type", "a torch optimizer class", name, f"{spec.module}.{spec.attr} is not one")
        )
    return cls, dict(spec.defaults)


def _import(name: str, spec: optimizers.OptimizerSpec) -> Any:
    try:
        return importlib.import_module(spec.module)
    except ImportError as exc:
        version = installed_version(spec.package)
        if version is None:
            hint = f"the package {spec.package} is not installed: pip install {spec.package} (or pick AdamW)"
        else:  # installed, yet the import fails: usually a release built for another torch
            hint = f"{spec.package} {version} is installed but importing {spec.module} failed: {exc}"
        expected = f"an optimizer whose package is installed ({spec.package})"
        raise ConfigError(problem("optimizer_type", expected, name, hint)) from None


def build_optimizer(name: str, groups: list[dict[str, Any]], args: Mapping[str, Any], relative_step: bool) -> Any:
    """The optimizer `name` over param `groups`; `relative_step`: the schedule leaves the LR to the
    optimizer (its spec's optimizer_sets_lr), for an optimizer that can set it (OptimizerSpec.relative_step).

    As in sd-scripts, the first group's LR is also passed as ``lr`` (some classes require it).
    """
    cls, defaults = optimizer_class(name)
    _check_one_lr(name, groups)
    kwargs = {"lr": groups[0]["lr"], **defaults, **args}
    if takes_relative_step(name):  # sd-scripts' Adafactor: transformers', LR relative to the step
        kwargs.setdefault("relative_step", relative_step)
        kwargs.setdefault("scale_parameter", relative_step)
        kwargs.setdefault("warmup_init", False)
        if kwargs["relative_step"]:
            kwargs["lr"] = None
            for group in groups:
                group["initial_lr"] = group["lr"]  # the adafactor schedule reports LRs relative to this
                group["lr"] = None
    try:
        optimizer = cls(groups, **kwargs)
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # betas=(0.9,) is an IndexError in torch
        expected = f"arguments {getattr(cls, '__name__', name)} accepts"
        shown = {k: x for k, x in kwargs.items() if k in args or k in defaults}
        raise ConfigError(problem("optimizer_args", expected, raw(repr(shown)), str(exc))) from None
    set_optimizer_mode(optimizer, "train")  # schedule-free optimizers step only in train mode
    return optimizer


def _check_one_lr(name: str, groups: list[dict[str, Any]]) -> None:
    """D-Adaptation and Prodigy adapt one LR for all groups: they refuse different group LRs at the
    first step (a traceback mid-run); say so before training starts."""
    spec = optimizers.lookup(name)
    lrs = {g["name"]: g["lr"] for g in groups if g.get("lr")}
    if spec is None or not spec.one_lr or len(set(lrs.values())) < 2:
        return
    raise ConfigError(
        problem(
            "text_encoder_lr",
            f"the UNet's LR ({lrs.get('unet')}) or 0 with {spec.name}, which adapts one LR for every part",
            lrs.get("text_encoder"),
            "set text_encoder_lr = unet_lr (1.0 is the usual value for D-Adaptation and Prodigy), "
            "or 0 to train the UNet only",
        )
    )


def set_optimizer_mode(optimizer: Any, mode: str) -> None:
    """train() / eval() on a schedule-free optimizer (its param groups carry "train_mode"); others: nothing.

    Schedule-free optimizers step one sequence of weights and evaluate another (an average of it):
    sd-scripts saves in eval mode and trains in train mode.
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    if inner.param_groups and "train_mode" in inner.param_groups[0]:
        getattr(inner, mode)()


@contextlib.contextmanager
def evaluation_weights(optimizer: Any) -> Iterator[None]:
    """The model holds a schedule-free optimizer's eval weights inside the block (for saving)."""
    set_optimizer_mode(optimizer, "eval")
    try:
        yield
    finally:
        set_optimizer_mode(optimizer, "train")
