"""Specs and closed forms of every schedule (no torch; NumPy only when a curve is evaluated).

>>> from lora_sched.schedules import ScheduleRequest, resolve
>>> resolved = resolve(ScheduleRequest("cosine", warmup=10, max_train_steps=100))
>>> resolved.multipliers()          # m(s) for s = 0..99, as a NumPy array
"""

from lora_sched.schedules.durations import Duration, TimeContext, parse_duration, resolve_duration, steps_per_epoch
from lora_sched.schedules.resolve import ResolvedSchedule, ScheduleRequest, TrainingShape, resolve
from lora_sched.schedules.spec import REQUIRED, Param, ScheduleSpec, all_names, all_specs, get_spec, lookup, register

__all__ = [
    "REQUIRED",
    "Duration",
    "Param",
    "ResolvedSchedule",
    "ScheduleRequest",
    "ScheduleSpec",
    "TimeContext",
    "TrainingShape",
    "all_names",
    "all_specs",
    "get_spec",
    "lookup",
    "parse_duration",
    "register",
    "resolve",
    "resolve_duration",
    "steps_per_epoch",
]
