"""Importing the scheduler class ``lr_scheduler_type`` names, once the import policy
(lora_sched.config.class_policy) lets it: the target must be a torch LR scheduler class."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lora_sched.config.class_policy import EXPECTED, KEY, import_refusal, split_path
from lora_sched.errors import Problem, did_you_mean, problem

__all__ = ["KEY", "resolve_class", "split_path"]


def resolve_class(type_path: Any, trust: bool = False) -> tuple[type | None, list[Problem]]:
    """The scheduler class a path names, or the problems that stop it (nothing imported then)."""
    refused = import_refusal(type_path, trust)
    if refused:
        return None, refused
    module_name, attr = split_path(type_path.strip())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, [problem(KEY, EXPECTED, type_path, f"cannot import `{module_name}`: {exc}")]
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = did_you_mean(attr, names) or f"`{module_name}` has no `{attr}`"
        return None, [problem(KEY, EXPECTED, type_path, hint)]
    target = getattr(module, attr)
    if not (inspect.isclass(target) and issubclass(target, (LRScheduler, ReduceLROnPlateau))):
        kind = "a class" if inspect.isclass(target) else type(target).__name__
        return None, [
            problem(KEY, EXPECTED, type_path, f"`{type_path}` is {kind}, not a subclass of torch's LRScheduler")
        ]
    return target, []
