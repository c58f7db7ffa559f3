"""Optimizers by kohya name (AdamW, SGD, SGDNesterov, Adafactor, schedule-free, any torch.optim class)
with kohya's ``optimizer_args`` ("key=value" strings, values read as Python literals, never eval'd)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from lora_sched.config.args import parse_kv_list
from lora_sched.config.keys import unusable_optimizer
from lora_sched.errors import ConfigError, did_you_mean, problem, raw

#: Schedule-free optimizers (the `schedulefree` package): they need a constant LR schedule.
SCHEDULE_FREE = {
    "adamwschedulefree": "AdamWScheduleFree",
    "sgdschedulefree": "SGDScheduleFree",
    "radamschedulefree": "RAdamScheduleFree",
}
#: kohya optimizer names from other packages: lowercase name -> (pip package, module, class).
_NEEDS_PACKAGE = {
    "adamw8bit": ("bitsandbytes", "bitsandbytes.optim", "AdamW8bit"),
    "pagedadamw8bit": ("bitsandbytes", "bitsandbytes.optim", "PagedAdamW8bit"),
    "lion8bit": ("bitsandbytes", "bitsandbytes.optim", "Lion8bit"),
    "lion": ("lion-pytorch", "lion_pytorch", "Lion"),
    "dadaptation": ("dadaptation", "dadaptation", "DAdaptAdam"),
    "dadaptadam": ("dadaptation", "dadaptation", "DAdaptAdam"),
    "prodigy": ("prodigyopt", "prodigyopt", "Prodigy"),
}


def parse_optimizer_args(
    items: Sequence[str] | Mapping[str, Any] | None, key: str = "optimizer_args"
) -> dict[str, Any]:
    """kohya's ``["weight_decay=0.1", "betas=(0.9,0.99)"]`` (or a table) -> keyword arguments."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    values, problems, _ = parse_kv_list(items, key)  # the config layer's parser: one set of rules
    if problems:
        raise ConfigError(problems)
    return values


def is_schedule_free(name: str) -> bool:
    return name.lower() in SCHEDULE_FREE


def build_optimizer(name: str, groups: list[dict[str, Any]], args: Mapping[str, Any], relative_step: bool) -> Any:
    """The optimizer `name` over param `groups`; `relative_step` = the `adafactor` schedule is chosen."""
    import torch

    unusable = unusable_optimizer(name)  # the rule validate applies: both accept the same set
    if unusable:
        raise ConfigError(unusable)
    lowered = name.lower()
    kwargs = dict(args)
    if lowered in _NEEDS_PACKAGE:
        cls = _from_package(name, *_NEEDS_PACKAGE[lowered])
    elif lowered in SCHEDULE_FREE:
        cls = _from_package(name, "schedulefree", "schedulefree", SCHEDULE_FREE[lowered])
    elif lowered == "adafactor":
        from transformers.optimization import Adafactor

        cls = Adafactor
        kwargs.setdefault("relative_step", relative_step)
        kwargs.setdefault("scale_parameter", relative_step)
        kwargs.setdefault("warmup_init", False)
        if kwargs["relative_step"]:
            for group in groups:
                group["initial_lr"] = group["lr"]  # the adafactor schedule reports LRs relative to this
                group["lr"] = None
    elif lowered == "sgdnesterov":
        cls = torch.optim.SGD
        kwargs.setdefault("momentum", 0.9)
        kwargs.setdefault("nesterov", True)
    else:
        attr = name.removeprefix("torch.optim.")
        cls = getattr(torch.optim, attr, None)
        if cls is None:
            for candidate in dir(torch.optim):
                if candidate.lower() == attr.lower():
                    cls = getattr(torch.optim, candidate)
        if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
            names = [n for n in dir(torch.optim) if inspect.isclass(getattr(torch.optim, n)) and n[0].isupper()]
            hint = did_you_mean(name, [*names, "Adafactor", "SGDNesterov", *SCHEDULE_FREE.values()])
            raise ConfigError(
                problem("optimizer_type", "AdamW, SGD, SGDNesterov, Adafactor or a torch.optim class", name, hint)
            )
    try:
        return cls(groups, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            problem(
                "optimizer_args", f"arguments {getattr(cls, '__name__', name)} accepts", raw(repr(kwargs)), str(exc)
            )
        ) from None


def _from_package(name: str, package: str, module: str, attr: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            problem(
                "optimizer_type",
                f"an optimizer whose package is installed ({package})",
                name,
                f"pip install {package}, or use AdamW",
            )
        ) from None
    cls = getattr(mod, attr, None)
    if cls is None:
        raise ConfigError(problem("optimizer_type", f"{module}.{attr} (not in the installed {package})", name))
    return cls
