"""The arguments of ``cls(optimizer, **lr_scheduler_args)`` against the class's signature: missing,
unknown (with did-you-mean) and mistyped against the annotation or the default."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from lora_sched.errors import Problem, did_you_mean, problem, raw
from lora_sched.torch.custom.annotations import expected_text, fits
from lora_sched.torch.custom.policy import KEY

#: torch classes that take Python objects (functions, schedulers) a TOML file cannot express.
NEEDS_PYTHON = {
    "LambdaLR": "a Python function",
    "MultiplicativeLR": "a Python function",
    "SequentialLR": "scheduler objects",
    "ChainedScheduler": "scheduler objects",
    "LRScheduler": "a subclass (it is the abstract base class)",
    "_LRScheduler": "a subclass (it is the abstract base class)",
}


def _check_value(name: str, value: Any, param: inspect.Parameter) -> Problem | None:
    ann = param.annotation if isinstance(param.annotation, str) else None
    if ann is None and param.annotation is not inspect.Parameter.empty:
        ann = getattr(param.annotation, "__name__", None) or str(param.annotation)
    key = f"lr_scheduler_args.{name}"
    if ann:
        ok = fits(value, ann)
    elif param.default is not inspect.Parameter.empty and param.default is not None:
        default = param.default
        ok = fits(value, "float" if isinstance(default, float) else type(default).__name__)
    else:
        ok = None
    if ok is False:
        hint = ""
        if isinstance(value, float) and value.is_integer() and ann and "int" in ann and "float" not in ann:
            hint = f"write {int(value)}: torch needs an int here"
        elif isinstance(value, str) and ann and ("float" in ann or "int" in ann):
            hint = "remove the quotes"
        return problem(key, f"{expected_text(ann, param.default)} (torch's signature)", value, hint)
    if isinstance(value, float) and not math.isfinite(value):
        return problem(key, "a finite number", value, "NaN and infinity are not allowed")
    return None


def check_signature(cls: type, args: Mapping[str, Any], type_path: str) -> list[Problem]:
    """Missing, unknown and mistyped arguments of `cls(optimizer, **args)`."""
    name = getattr(cls, "__name__", type_path)
    if name in NEEDS_PYTHON and cls.__module__.startswith("torch."):
        return [
            problem(
                KEY,
                "a scheduler class whose arguments a TOML file can express",
                type_path,
                f"{name} needs {NEEDS_PYTHON[name]}; use a catalogue schedule (`lora-sched list`) instead",
            )
        ]
    params = list(inspect.signature(cls).parameters.values())
    if params and params[0].name == "optimizer":
        params = params[1:]
    by_name = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    problems: list[Problem] = []
    for arg, value in args.items():
        key = f"lr_scheduler_args.{arg}"
        if arg == "last_epoch":
            problems.append(
                problem(key, "no last_epoch", value, "resuming restores the step from the checkpoint; remove it")
            )
            continue
        if arg not in by_name:
            if takes_any:
                continue
            hint = did_you_mean(arg, by_name) or f"{name} takes: " + ", ".join(n for n in by_name if n != "last_epoch")
            problems.append(problem(key, f"an argument of {name}", raw(f"`{arg}` = {value!r}"), hint))
            continue
        found = _check_value(arg, value, by_name[arg])
        if found is not None:
            problems.append(found)
    for p in by_name.values():
        if p.default is inspect.Parameter.empty and p.name not in args:
            ann = p.annotation if isinstance(p.annotation, str) else ""
            problems.append(
                problem(f"lr_scheduler_args.{p.name}", f"{name} needs `{p.name}` ({ann or 'a value'})", raw("nothing"))
            )
    return problems

