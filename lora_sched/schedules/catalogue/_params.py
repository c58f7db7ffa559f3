"""Parameter definitions shared by several schedules (one definition, one doc text).

`kohya=True` lets sd-scripts' global key (lr_scheduler_num_cycles, lr_scheduler_min_lr_ratio) feed
the parameter. It is set only where sd-scripts' get_scheduler_fix passes that key to the same
schedule, so a kohya file trains the same curve here as in sd-scripts; elsewhere the global key
loads with a warning and the parameter is set through lr_scheduler_args.
"""

from __future__ import annotations

from lora_sched.schedules.fields import Choice, Duration, Float, Int
from lora_sched.schedules.spec import Param


def min_lr_ratio(
    default: float | object = 0.0, doc: str = "floor as a fraction of the base LR", *, kohya: bool = False
) -> Param:
    return Param(
        "min_lr_ratio",
        Float(low=0.0, high=1.0, high_open=True),
        doc,
        default=default,
        kohya_key="lr_scheduler_min_lr_ratio" if kohya else None,
        aliases=("min_lr_rate", "end_lr_ratio"),
    )


def min_lr() -> Param:
    return Param(
        "min_lr",
        Float(low=0.0),
        "absolute floor LR for every param group (instead of min_lr_ratio): each falls to it from its own base LR",
        default=None,
        default_doc="unset (min_lr_ratio)",
    )


def num_cycles_float(
    doc: str = "number of half-cosine decays (1 = one decay to the floor)", *, kohya: bool = False
) -> Param:
    return Param(
        "num_cycles",
        Float(low=0.0, high=10_000.0, low_open=True),
        doc,
        default=1.0,
        kohya_key="lr_scheduler_num_cycles" if kohya else None,
    )


def num_cycles_int(doc: str, *, kohya: bool = False) -> Param:
    key = "lr_scheduler_num_cycles" if kohya else None
    return Param("num_cycles", Int(low=1, high=100_000), doc, default=1, kohya_key=key)


def restart_decay() -> Param:
    return Param(
        "restart_decay",
        Float(low=0.0, high=1.0, low_open=True),
        "peak multiplier per restart: cycle k peaks at restart_decay^k",
        default=1.0,
        aliases=("gamma",),
    )


def cycle_warmup() -> Param:
    return Param(
        "cycle_warmup",
        Duration(is_warmup=True),
        "linear warmup from the floor at the start of every cycle",
        default=0,
        aliases=("warmup_steps",),
    )


def gamma(default: float | object = 0.1, doc: str = "multiplicative decay factor") -> Param:
    return Param("gamma", Float(low=0.0, high=1.0, low_open=True), doc, default=default)


def decay_type(default: str, choices: tuple[str, ...] = ("linear", "cosine", "1-sqrt")) -> Param:
    return Param("decay_type", Choice(*choices), "shape of the final decay", default=default)
