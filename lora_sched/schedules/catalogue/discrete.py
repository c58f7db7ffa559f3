"""Piecewise constant and exponential decays. Their boundaries are absolute steps, not shifted by warmup."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import FieldError
from lora_sched.schedules.catalogue._params import gamma
from lora_sched.schedules.durations import MAX_LIST_ITEMS
from lora_sched.schedules.evaluate import ascending_steps, run_lengths
from lora_sched.schedules.fields import Duration, Durations, Str
from lora_sched.schedules.spec import REQUIRED, Param, ScheduleSpec, register


def parse_step_rules(text: str) -> tuple[list[int], list[float], float]:
    """diffusers' step_rules "v1:b1,v2:b2,...,v_last" -> (boundaries, values, last value)."""
    items = [item.strip() for item in text.split(",")]
    bounds, values = [], []
    for item in items[:-1]:
        if item.count(":") != 1:
            raise ValueError(f'"{item}" is not "value:step"')
        value_text, step_text = item.split(":")
        bounds.append(int(step_text))
        values.append(float(value_text))
    return bounds, values, float(items[-1])


def _check_step_rules(text: str) -> None:
    problem = _step_rules_problem(text)
    if problem:
        raise FieldError("a string", text, problem)


def _step_rules_problem(text: str) -> str | None:
    if text.count(",") >= MAX_LIST_ITEMS:
        return f"step_rules holds at most {MAX_LIST_ITEMS:,} rules (found {text.count(',') + 1:,})"
    try:
        bounds, values, last = parse_step_rules(text)
    except ValueError as exc:
        return f'step_rules is "value:step,...,last_value", e.g. "1:100,0.1:200,0.01" ({exc})'
    if any(b < 0 for b in bounds):
        return "steps in step_rules cannot be negative"
    if len(set(bounds)) != len(bounds):
        return "each step in step_rules may appear once"
    if any(not (0 <= v < float("inf")) for v in (*values, last)):
        return "values in step_rules must be finite and >= 0"
    return None


def _piecewise_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    """diffusers' piecewise_constant, its step bounds x n processes; sd-scripts gives it no warmup."""
    if resolved.warmup:
        return None
    bounds, values, last = parse_step_rules(resolved.params["step_rules"])
    rules = ",".join(f"{v!r}:{b * n}" for v, b in zip(values, bounds)) + f",{last!r}"
    return {"lr_scheduler": "piecewise_constant", "lr_warmup_steps": 0, "lr_scheduler_args": {"step_rules": rules}}


def piecewise_constant_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = value of the first rule (sorted by step) whose step > s, else the last value"""
    bounds, values, last = parse_step_rules(resolved.params["step_rules"])
    order = np.argsort(bounds, kind="stable")
    table = np.append(np.asarray(values, dtype=np.float64)[order], last)
    return table[np.searchsorted(np.asarray(bounds, dtype=np.float64)[order], steps, side="right")]


register(
    ScheduleSpec(
        name="piecewise_constant",
        summary='piecewise constant multipliers from rules "value:step,...,last_value"',
        params=(
            Param(
                "step_rules",
                Str(rule=_check_step_rules),
                'rules "value:until_step,...,final_value", steps absolute',
                default="1",
            ),
        ),
        curve=piecewise_constant_curve,
        reference="diffusers get_piecewise_constant_schedule",
        gotchas=("Each rule's value holds until (not including) its step; steps count from 0, warmup included.",),
        to_kohya=_piecewise_to_kohya,
    )
)


#: Exponents per chunk of the running product: the table of gamma^k never holds more than this many.
POWER_CHUNK = 1 << 22


@ascending_steps
def step_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = gamma^floor(s / step_size)"""
    size, gamma = resolved.params["step_size"], resolved.params["gamma"]
    first, last = (int(steps[0] // size), int(steps[-1] // size)) if steps.size else (0, 0)
    if last - first < steps.size:  # one value per plateau, repeated over the steps in it
        powers = repeated_powers(gamma, np.arange(first, last + 1))
        return np.repeat(powers, run_lengths(steps, size * np.arange(first + 1, last + 1, dtype=np.float64)))
    return repeated_powers(gamma, np.floor_divide(steps, size).astype(np.intp))  # more plateaus than steps


def repeated_powers(gamma: float, k: Any) -> Any:
    """gamma^k for an int array k >= 0, by repeated multiplication as StepLR does (element-wise power
    is ten times slower than np.cos, and rounds differently). Memory is bounded: exponents past
    POWER_CHUNK (step_size 1 in a run of a billion steps) are reached chunk by chunk."""
    top = int(k.max()) if k.size else 0
    if top < POWER_CHUNK:
        powers = np.empty(top + 1)
        powers[0] = 1.0
        np.cumprod(np.full(top, gamma), out=powers[1:])
        return powers[k]
    order = np.argsort(k, axis=None, kind="stable")
    wanted = k.reshape(-1)[order]
    values = np.empty(wanted.size)
    chunk = np.empty(POWER_CHUNK)
    start, running, done = 0, 1.0, 0  # running = gamma^start, computed by the same repeated product
    while done < wanted.size:
        chunk.fill(gamma)
        chunk[0] = running
        np.cumprod(chunk, out=chunk)  # gamma^start .. gamma^(start + POWER_CHUNK - 1)
        stop = start + POWER_CHUNK
        upto = int(np.searchsorted(wanted, stop))
        values[done:upto] = chunk[wanted[done:upto] - start]
        done, start, running = upto, stop, float(chunk[-1] * gamma)
        if running == chunk[-1]:  # 0 (underflow) or a fixed point: every later power is the same
            values[done:] = running
            break
    out = np.empty(wanted.size)
    out[order] = values
    return out.reshape(k.shape)


def _check_positive(name: str):
    def check(params: dict, resolved: Any) -> list:
        from lora_sched.errors import problem

        if params[name] < 1:
            return [problem(name, "a duration of at least 1 step", params[name], "it resolved to 0 steps")]
        return []

    return check


register(
    ScheduleSpec(
        name="step",
        summary="multiply the LR by gamma every step_size steps",
        params=(Param("step_size", Duration(), "steps between decays", default=REQUIRED), gamma()),
        curve=step_curve,
        reference="torch StepLR; Composer StepScheduler",
        check=_check_positive("step_size"),
        example={"step_size": 50, "gamma": 0.5},
    )
)


@ascending_steps
def multistep_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = gamma^(number of milestones <= s)"""
    milestones = np.asarray(resolved.params["milestones"], dtype=np.float64)
    powers = resolved.params["gamma"] ** np.arange(milestones.size + 1, dtype=np.float64)
    return np.repeat(powers, run_lengths(steps, milestones))


register(
    ScheduleSpec(
        name="multistep",
        summary="multiply the LR by gamma at each milestone",
        params=(
            Param(
                "milestones",
                Durations(),
                "steps at which the LR drops (absolute, not shifted by warmup)",
                default=REQUIRED,
            ),
            gamma(),
        ),
        curve=multistep_curve,
        reference="torch MultiStepLR; Composer MultiStepScheduler / MultiStepWithWarmupScheduler",
        example={"milestones": ["0.5dur", "0.75dur"]},
    )
)


def exponential_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = gamma^(s / decay_period)"""
    x = np.divide(steps, resolved.params["decay_period"], out=steps)
    return np.power(resolved.params["gamma"], x, out=x)


register(
    ScheduleSpec(
        name="exponential",
        summary="multiply the LR by gamma every decay_period steps, continuously",
        params=(
            gamma(REQUIRED, "decay factor per decay_period"),
            Param("decay_period", Duration(), "steps per factor of gamma", default=1),
        ),
        curve=exponential_curve,
        reference="torch ExponentialLR; Composer ExponentialScheduler",
        check=_check_positive("decay_period"),
        example={"gamma": 0.5, "decay_period": 100},
    )
)
