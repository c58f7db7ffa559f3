"""Monotone decays: constant, linear, polynomial, inverse square root, sqrt, warmup-stable-decay."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import Problem, problem
from lora_sched.schedules.catalogue._kohya import plain_warmup, with_warmup
from lora_sched.schedules.catalogue._params import decay_type, min_lr_ratio
from lora_sched.schedules.evaluate import decay_shape, floor_scale, progress
from lora_sched.schedules.fields import Duration, Float, Int
from lora_sched.schedules.spec import Param, ScheduleSpec, register


def constant_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = 1"""
    return np.ones_like(steps)


def _constant_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    """sd-scripts refuses a warmup with `constant`: a warmup is written as constant_with_warmup."""
    if not plain_warmup(resolved):
        return None
    return {
        "lr_scheduler": "constant_with_warmup" if resolved.warmup else "constant",
        "lr_warmup_steps": resolved.warmup * n,
    }


register(
    ScheduleSpec(
        name="constant",
        summary="the base LR throughout (a warmup makes it constant_with_warmup)",
        params=(),
        curve=constant_curve,
        reference="diffusers get_constant_schedule; SambaFlow fixed_lr",
        aliases={"fixed_lr": {}},
        gotchas=("sd-scripts refuses a warmup with `constant`: the kohya export writes constant_with_warmup instead.",),
        to_kohya=_constant_to_kohya,
        flat_curve=True,
    )
)

register(
    ScheduleSpec(
        name="constant_with_warmup",
        summary="linear warmup, then the base LR",
        params=(),
        curve=constant_curve,
        reference="diffusers get_constant_schedule_with_warmup",
        to_kohya=_constant_to_kohya,
        flat_curve=True,
    )
)


def linear_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + (1 - r)(1 - p)"""
    left = np.subtract(1.0, progress(steps, resolved, out=steps), out=steps)
    return floor_scale(left, resolved.params["min_lr_ratio"])


def _linear_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    if not plain_warmup(resolved) or resolved.params["min_lr_ratio"] != 0.0:
        return None
    return with_warmup(resolved, n, lr_scheduler="linear")


register(
    ScheduleSpec(
        name="linear",
        summary="linear decay from the base LR to the floor at the horizon",
        params=(min_lr_ratio(doc="end value as a fraction of the base LR"),),
        curve=linear_curve,
        reference="diffusers get_linear_schedule_with_warmup; SambaFlow polynomial_decay_schedule_with_warmup",
        aliases={"polynomial_decay_schedule_with_warmup": {}},
        gotchas=("SambaFlow calls this 'polynomial' decay although it is linear.",),
        to_kohya=_linear_to_kohya,
    )
)


def polynomial_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = ((lr0 - lr_end)(1 - p)^power + lr_end) / lr0, lr0 = learning_rate"""
    lr0, lr_end = resolved.base_lr, resolved.params["lr_end"]
    m = np.subtract(1.0, progress(steps, resolved, out=steps), out=steps)
    m **= resolved.params["power"]
    m *= lr0 - lr_end
    m += lr_end
    m /= lr0
    return m


def _check_polynomial(params: dict, resolved: Any) -> list[Problem]:
    if params["lr_end"] >= resolved.base_lr:
        return [
            problem(
                "lr_end",
                f"an absolute LR below learning_rate ({resolved.base_lr:g})",
                params["lr_end"],
                "lr_end is an absolute LR, not a ratio",
            )
        ]
    return []


def _polynomial_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    if not plain_warmup(resolved):
        return None
    return with_warmup(
        resolved,
        n,
        lr_scheduler="polynomial",
        lr_scheduler_power=resolved.params["power"],
        lr_scheduler_args={"lr_end": resolved.params["lr_end"]},
    )


register(
    ScheduleSpec(
        name="polynomial",
        summary="polynomial decay from the base LR to an absolute end LR",
        params=(
            Param(
                "power",
                Float(low=0.0, high=1000.0, low_open=True),
                "exponent of the decay (1 = linear)",
                default=1.0,
                kohya_key="lr_scheduler_power",
            ),
            Param("lr_end", Float(low=0.0), "absolute LR reached at the horizon", default=1e-7),
        ),
        curve=polynomial_curve,
        reference="diffusers get_polynomial_decay_schedule_with_warmup (as sd-scripts calls it)",
        gotchas=(
            "lr_end is an absolute LR (not a ratio) and must be below learning_rate.",
            "In kohya GUIs the same number field means `power` here and cycles elsewhere.",
        ),
        check=_check_polynomial,
        to_kohya=_polynomial_to_kohya,
    )
)


def composer_polynomial_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = alpha_f + (1 - alpha_f)(1 - p)^power"""
    m = np.subtract(1.0, progress(steps, resolved, out=steps), out=steps)
    m **= resolved.params["power"]
    return floor_scale(m, resolved.params["alpha_f"])


register(
    ScheduleSpec(
        name="composer_polynomial",
        summary="Composer's polynomial decay to a floor ratio alpha_f",
        params=(
            Param("power", Float(low=0.0, high=1000.0, low_open=True), "exponent of the decay", default=2.0),
            Param(
                "alpha_f",
                Float(low=0.0, high=1.0, high_open=True),
                "final value as a fraction of the base LR",
                default=0.0,
            ),
        ),
        curve=composer_polynomial_curve,
        reference="Composer PolynomialWithWarmupScheduler",
    )
)


def inverse_sqrt_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = 1 / sqrt((s + timescale - W) / timescale)"""
    timescale = resolved.params["timescale"]
    shifted = np.add(steps, timescale - resolved.warmup, out=steps)
    shifted /= timescale
    m = np.sqrt(np.maximum(shifted, 1e-300, out=shifted), out=shifted)
    return np.divide(1.0, m, out=m)


def _default_timescale(params: dict, resolved: Any) -> list[Problem]:
    if params["timescale"] is None:
        params["timescale"] = resolved.warmup or 10_000
    return []


def _inverse_sqrt_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    if not plain_warmup(resolved):
        return None
    return with_warmup(
        resolved, n, lr_scheduler="inverse_sqrt", lr_scheduler_timescale=resolved.params["timescale"] * n
    )


register(
    ScheduleSpec(
        name="inverse_sqrt",
        summary="inverse square-root decay after the warmup (never reaches zero)",
        params=(
            Param(
                "timescale",
                Int(low=1, high=1_000_000_000),
                "steps over which the LR halves by a factor sqrt(2)",
                default=None,
                kohya_key="lr_scheduler_timescale",
                default_doc="the warmup steps, or 10000 without warmup",
            ),
        ),
        curve=inverse_sqrt_curve,
        reference="transformers get_inverse_sqrt_schedule",
        check=_default_timescale,
        to_kohya=_inverse_sqrt_to_kohya,
    )
)


def _cooldown(m: Any, steps: Any, resolved: Any, start_value: Any) -> Any:
    """Replace m on the last `decay` steps by a decay from start_value to the floor r.

    q = (s - (T - D)) / D; with D = 0 the decay is a drop to r at s = T (as transformers' WSD does).
    """
    decay, r = resolved.params["decay"], resolved.params["min_lr_ratio"]
    begin = resolved.horizon - decay
    in_decay = steps >= begin
    if in_decay.any():
        q = (steps[in_decay] - begin) / decay if decay > 0 else np.ones(int(in_decay.sum()))
        m[in_decay] = r + (start_value - r) * decay_shape(q, resolved.params["decay_type"])
    return m


def _check_decay_fits(params: dict, resolved: Any) -> list[Problem]:
    room = resolved.horizon - resolved.warmup
    if params["decay"] > room:
        return [problem("decay", f"at most the {room} steps between warmup and horizon", params["decay"])]
    return []


def wsd_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = 1 for s < T - D, then r + (1 - r) f(q), q = (s - (T - D)) / D (q = 1 at s = T if D = 0),
    f = 1 - q (linear), 0.5 (1 + cos pi q) (cosine) or 1 - sqrt(q) (1-sqrt)"""
    return _cooldown(np.ones_like(steps), steps, resolved, 1.0)


_DECAY = Param("decay", Duration(), "length D of the final decay", default=0.2, kohya_key="lr_decay_steps")


def _wsd_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    """transformers' WSD warmup starts at min_lr_ratio and knows linear and cosine warmups."""
    p = resolved.params
    if resolved.warmup and resolved.warmup_start != p["min_lr_ratio"]:
        return None
    return with_warmup(
        resolved,
        n,
        lr_scheduler="warmup_stable_decay",
        lr_decay_steps=p["decay"] * n,
        lr_scheduler_num_cycles=1,  # sd-scripts passes num_cycles / 2 = 0.5: one half-cosine
        lr_scheduler_min_lr_ratio=p["min_lr_ratio"],
        lr_scheduler_args={"decay_type": p["decay_type"], "warmup_type": resolved.warmup_type},
    )


register(
    ScheduleSpec(
        name="warmup_stable_decay",
        summary="warmup, hold the base LR, then decay over the last D steps",
        params=(_DECAY, decay_type("cosine"), min_lr_ratio(kohya=True)),
        curve=wsd_curve,
        reference="transformers get_wsd_schedule; the `scheduled` package's WSDSchedule",
        aliases={"wsd": {"decay_type": "linear"}},
        gotchas=(
            "The default decay is the last 20% of the horizon (a fraction, like every float duration).",
            "warmup_stable_decay is sd-scripts' (transformers' get_wsd_schedule): a cosine decay, and in a "
            "config file its warmup starts at min_lr_ratio unless warmup_start is given; the alias wsd "
            "decays linearly (the `scheduled` package's WSD) and warms up from warmup_start (0).",
        ),
        check=_check_decay_fits,
        to_kohya=_wsd_to_kohya,
    )
)


def sqrt_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = 1 / sqrt(s - W + 1), then over the last D steps (if decay > 0) a cooldown
    r + (m(T - D) - r) f(q), q = (s - (T - D)) / D, f linear 1 - q or 1-sqrt"""
    m = 1.0 / np.sqrt(np.maximum(steps - resolved.warmup, 0.0) + 1.0)
    if resolved.params["decay"] > 0:
        start = 1.0 / np.sqrt(resolved.horizon - resolved.params["decay"] - resolved.warmup + 1.0)
        m = _cooldown(m, steps, resolved, start)
    return m


register(
    ScheduleSpec(
        name="sqrt",
        summary="1/sqrt(t) decay after the warmup, with an optional cooldown",
        params=(
            Param("decay", Duration(), "length D of the final cooldown (0 = none)", default=0),
            decay_type("linear", ("linear", "1-sqrt")),
            min_lr_ratio(),
        ),
        curve=sqrt_curve,
        reference="the `scheduled` package's SqrtSchedule",
        check=_check_decay_fits,
    )
)
