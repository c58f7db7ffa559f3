"""LoRA_Easy's scheduler classes, read as catalogue schedules (kohya-colab's "rex" is one of them).

LoRA_Easy_Training_scripts_Backend ships two torch classes that sd-scripts builds through
``lr_scheduler_type`` (``LoraEasyCustomOptimizer.<Module>.<Class>``): RexAnnealingWarmRestarts and
CosineAnnealingWarmRestarts (not torch's class of that name). Both run whole-step cycles with a
per-cycle warmup, peaks ``lr x gamma^k`` and an absolute floor ``min_lr`` in every param group;
`rex` and `cosine_warmup_restarts` reproduce them step for step. The class's own signature is
what a file may pass: an argument it does not take, or a missing ``gamma``, makes sd-scripts fail
(TypeError), so it is an error here too; an argument left out takes the class's default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lora_sched.errors import Problem, did_you_mean, problem, raw


class LoraEasyClass(NamedTuple):
    schedule: str
    #: class argument -> our parameter
    names: dict[str, str]
    #: the class's defaults (gamma has none: the class requires it)
    defaults: dict[str, Any]


_CYCLES = {
    "gamma": "restart_decay",
    "cycle_multiplier": "cycle_multiplier",
    "first_cycle_max_steps": "cycle_steps",
    "min_lr": "min_lr",
    "warmup_steps": "cycle_warmup",
}
_CYCLE_DEFAULTS = {"cycle_multiplier": 1.0, "first_cycle_max_steps": 1, "min_lr": 1e-6, "warmup_steps": 0}

CLASSES = {
    "RexAnnealingWarmRestarts": LoraEasyClass("rex", {**_CYCLES, "d": "d"}, {**_CYCLE_DEFAULTS, "d": 0.9}),
    "CosineAnnealingWarmRestarts": LoraEasyClass("cosine_warmup_restarts", dict(_CYCLES), dict(_CYCLE_DEFAULTS)),
}
PACKAGE = "LoraEasyCustomOptimizer"


def lora_easy_class(type_path: Any) -> str | None:
    """The LoRA_Easy class an lr_scheduler_type names, or None. The REX class is recognised by its
    name alone (no other library has one); CosineAnnealingWarmRestarts only inside LoRA_Easy's package
    (a bare name is torch's class)."""
    if not isinstance(type_path, str):
        return None
    *modules, name = type_path.strip().split(".")
    if name == "RexAnnealingWarmRestarts" or (name in CLASSES and PACKAGE in modules):
        return name
    return None


def map_class(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str], list[Problem], Problem]:
    """(schedule, its args, arg -> config key, problems, the notice) for `name`(optimizer, **args)."""
    cls = CLASSES[name]
    mapped: dict[str, Any] = {}
    keys: dict[str, str] = {}
    problems: list[Problem] = []
    for arg, value in args.items():
        key = f"lr_scheduler_args.{arg}"
        if arg == "last_epoch":
            problems.append(problem(key, "no last_epoch", value, "resuming restores the step; remove it"))
        elif arg not in cls.names:
            hint = did_you_mean(arg, cls.names) or f"{name} takes: " + ", ".join(cls.names)
            problems.append(problem(key, f"an argument of LoRA_Easy's {name}", raw(f"`{arg}` = {value!r}"), hint))
        else:
            mapped[cls.names[arg]], keys[cls.names[arg]] = value, key
    if "gamma" not in args:
        problems.append(
            problem("lr_scheduler_args.gamma", f"{name} needs `gamma` (the peak factor per restart)", raw("nothing"))
        )
    for arg, value in cls.defaults.items():
        mapped.setdefault(cls.names[arg], value)
    renamed = ", ".join(f"{arg} -> {ours}" for arg, ours in cls.names.items() if arg != ours)
    defaults = ", ".join(f"{arg} = {value!r}" for arg, value in cls.defaults.items() if arg not in args)
    notice = problem(
        "lr_scheduler_type",
        "a catalogue schedule",
        raw(f"LoRA_Easy's {name}, read as lora_sched's `{cls.schedule}`"),
        f"{renamed}; min_lr is an absolute LR in every param group"
        + (f"; the class's defaults: {defaults}" if defaults else ""),
        severity="notice",
    )
    return cls.schedule, mapped, keys, problems, notice
