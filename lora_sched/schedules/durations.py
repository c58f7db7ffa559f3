"""Durations: how long a warmup, a decay or a cycle lasts, in the forms users write.

Accepted forms:

* ``100`` (int): steps.
* ``0.05`` (float in [0, 1)): fraction of the horizon (kohya's convention).
* ``"5%"``: fraction of the horizon.
* Composer time strings: ``"100ba"`` steps, ``"2ep"`` epochs, ``"512sp"`` samples, ``"0.3dur"``
  fraction of the horizon. ``"tok"`` is rejected: tokens mean nothing for image training.

A float >= 1 is an error: kohya reads ``lr_warmup_steps = 50.0`` as 50 x the whole run.
Resolution turns a `Duration` into integer steps, floored, after the scale schedule ratio.
"""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple

from lora_sched.errors import ConfigError, FieldError, problem

Unit = Literal["ba", "ep", "sp", "dur"]

#: Largest step count accepted anywhere: a billion updates is far beyond any LoRA run.
MAX_STEPS = 1_000_000_000
#: Most items of any list argument (milestones, step_rules, "key=value" lists): real ones have a few;
#: the cap bounds the time and memory a hostile config can cost.
MAX_LIST_ITEMS = 10_000

DURATION_EXPECTED = (
    'steps (an int), a fraction in [0, 1), "5%", or a time string like "100ba", "2ep", "512sp", "0.3dur"'
)

#: compiled on first use (re caches it): a duration given as a number never needs it
_TIME_RE = r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(ba|ep|sp|dur|tok|%)\s*$"


class Duration(NamedTuple):
    """A parsed duration: a value and its unit (fractions of the horizon use ``dur``)."""

    value: float | int
    unit: Unit

    def __str__(self) -> str:
        if self.unit == "dur":
            return f"{self.value:g}dur"
        return f"{self.value}{self.unit}"


class TimeContext(NamedTuple):
    """What resolution needs to turn durations into steps.

    horizon: the (already scaled) number of steps the schedule is drawn over.
    ssr: Composer's scale schedule ratio; multiplies every non-``dur`` duration.
    scale_warmup: whether warmup durations are scaled by ``ssr`` too.
    steps_per_epoch: optimizer updates per epoch (needed for ``ep``).
    samples_per_step: samples consumed per update, batch x accumulation x processes (for ``sp``).
    """

    horizon: int
    ssr: float = 1.0
    scale_warmup: bool = False
    steps_per_epoch: int | None = None
    samples_per_step: int | None = None


def parse_duration(value: object, key: str, *, allow_fraction: bool = True) -> Duration:
    """Parse a user-written duration; raise ConfigError naming `key` on anything else."""
    try:
        return read_duration(value, allow_fraction=allow_fraction)
    except FieldError as exc:
        raise ConfigError(exc.problem_at(key)) from None


def read_duration(value: object, *, allow_fraction: bool = True) -> Duration:
    """Parse a user-written duration; raise FieldError on anything else."""
    expected = DURATION_EXPECTED if allow_fraction else 'steps (an int) or a time string like "100ba", "2ep", "512sp"'
    if isinstance(value, bool):
        raise FieldError(expected, value)
    if isinstance(value, int):
        if value < 0:
            raise FieldError(expected, value, "a duration cannot be negative")
        if value > MAX_STEPS:
            raise FieldError(f"at most {MAX_STEPS:,} steps", value)
        return Duration(value, "ba")
    if isinstance(value, float):
        return Duration(_fraction(value, expected, allow_fraction), "dur")
    if isinstance(value, str):
        return _parse_time_string(value, expected, allow_fraction)
    raise FieldError(expected, value)


def _fraction(value: float, expected: str, allow_fraction: bool) -> float:
    if not math.isfinite(value):
        raise FieldError(expected, value, "NaN and infinity are not durations")
    if value < 0:
        raise FieldError(expected, value, "a duration cannot be negative")
    if value >= 1:
        whole = int(value) if value.is_integer() and value < 1e15 else value
        hint = (
            f"write {whole} for {whole} steps or {value / 100:g} for a fraction of the run; "
            "kohya reads a float >= 1 as that many times the whole run"
        )
        raise FieldError(expected, value, hint)
    if not allow_fraction and value != 0:
        raise FieldError(expected, value, "a fraction has no meaning here: give steps")
    return value


def _parse_time_string(text: str, expected: str, allow_fraction: bool) -> Duration:
    match = re.match(_TIME_RE, text)
    if match is None:
        hint = ""
        try:
            float(text)
            hint = f"remove the quotes: {text.strip()}"
        except ValueError:
            pass
        raise FieldError(expected, text, hint)
    number, unit = float(match.group(1)), match.group(2)
    if unit == "tok":
        raise FieldError(expected, text, 'tokens ("tok") have no meaning for image training; use "ba", "ep" or "sp"')
    if number < 0:
        raise FieldError(expected, text, "a duration cannot be negative")
    if unit in ("%", "dur"):
        fraction = number / 100 if unit == "%" else number
        if fraction > 1:
            raise FieldError("a fraction of the horizon between 0 and 1 (0% to 100%)", text)
        if not allow_fraction:
            raise FieldError(expected, text, "a fraction has no meaning here: give steps")
        return Duration(fraction, "dur")
    if number > MAX_STEPS:  # before is_integer: "1e400ba" parses to inf
        raise FieldError(f"at most {MAX_STEPS:,}", text)
    if not number.is_integer():
        names = {"ba": "steps", "ep": "epochs", "sp": "samples"}
        raise FieldError(f"a whole number of {names[unit]}", text, f'write "{math.floor(number)}{unit}" or use steps')
    return Duration(int(number), unit)  # type: ignore[arg-type]


def resolve_duration(duration: Duration, ctx: TimeContext, key: str, *, is_warmup: bool = False) -> int:
    """Integer steps for `duration`; ``dur`` follows the scaled horizon, other units scale by SSR."""
    if duration.unit == "dur":
        return math.floor(duration.value * ctx.horizon)
    if duration.unit == "ba":
        steps = int(duration.value)
    elif duration.unit == "ep":
        if ctx.steps_per_epoch is None:
            raise ConfigError(
                problem(
                    key,
                    "a duration in steps (epochs need the dataset size)",
                    str(duration),
                    "give the data an epoch is counted on (train_data_dir, dataset_config or --dataset-config) "
                    "or its size (samples_per_epoch / --samples-per-epoch), or write the duration in steps",
                )
            )
        steps = int(duration.value) * ctx.steps_per_epoch
    else:  # samples
        if ctx.samples_per_step is None:
            raise ConfigError(
                problem(
                    key,
                    "a duration in steps (samples need the batch size)",
                    str(duration),
                    "set train_batch_size, or write the duration in steps",
                )
            )
        steps = int(duration.value) // ctx.samples_per_step
    if is_warmup and not ctx.scale_warmup:
        return steps
    return math.floor(steps * ctx.ssr)


def steps_per_epoch(num_samples: int, batch_size: int, grad_accum: int = 1, num_processes: int = 1) -> int:
    """Optimizer updates per epoch of `num_samples` samples in batches of `batch_size` (see `updates_per_epoch`)."""
    return updates_per_epoch(math.ceil(num_samples / batch_size), grad_accum, num_processes)


def updates_per_epoch(batches: int, grad_accum: int = 1, num_processes: int = 1) -> int:
    """Optimizer updates per epoch of `batches` batches, counted the way a sharded accelerate dataloader yields them.

    Each process sees ceil(batches / processes) batches (accelerate pads to even batches), and a
    partial accumulation window at the end of an epoch still ends in an update: sd-scripts'
    ceil(len(train_dataloader) / num_processes / gradient_accumulation_steps).
    """
    per_process = math.ceil(batches / num_processes)
    return max(1, math.ceil(per_process / grad_accum))
