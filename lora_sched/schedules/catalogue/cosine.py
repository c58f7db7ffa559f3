"""Cosine decays and the one-cycle policy."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.schedules.catalogue._kohya import plain_warmup, with_warmup
from lora_sched.schedules.catalogue._params import min_lr_ratio, num_cycles_float
from lora_sched.schedules.evaluate import ascending_steps, progress
from lora_sched.schedules.fields import Choice, Float
from lora_sched.schedules.spec import REQUIRED, Param, ScheduleSpec, register


def cosine_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + (1 - r) 0.5 (1 + cos(pi n p)), n = num_cycles"""
    x = progress(steps, resolved, out=steps)
    x *= np.pi * resolved.params["num_cycles"]
    np.cos(x, out=x)
    x += 1.0
    r = resolved.params["min_lr_ratio"]
    x *= 0.5 * (1.0 - r)  # one product: (c + 1) (0.5 (1 - r)) == ((c + 1) 0.5) (1 - r) exactly
    if r:
        x += r
    return x


def _cosine_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    """sd-scripts' cosine is diffusers' (num_cycles halved, no floor); with a floor, cosine_with_min_lr."""
    if not plain_warmup(resolved):
        return None
    p = resolved.params
    if p["min_lr_ratio"] == 0.0 and resolved.name == "cosine":
        args = {} if p["num_cycles"] == 1.0 else {"num_cycles": p["num_cycles"] / 2}
        return with_warmup(resolved, n, lr_scheduler="cosine", lr_scheduler_args=args)
    return with_warmup(
        resolved,
        n,
        lr_scheduler="cosine_with_min_lr",
        lr_scheduler_num_cycles=p["num_cycles"],
        lr_scheduler_min_lr_ratio=p["min_lr_ratio"],
    )


_CYCLES_GOTCHA = (
    "num_cycles counts half-cosine decays as sd-scripts does: 1 is one decay; "
    "diffusers' and transformers' own num_cycles is half of it (0.5)."
)

register(
    ScheduleSpec(
        name="cosine",
        summary="half-cosine decay from the base LR to the floor at the horizon",
        params=(num_cycles_float(), min_lr_ratio()),
        curve=cosine_curve,
        reference="diffusers get_cosine_schedule_with_warmup (num_cycles = n / 2); transformers cosine_with_min_lr",
        aliases={"cosine_schedule_with_warmup": {"min_lr_ratio": 0.1}},
        gotchas=(
            _CYCLES_GOTCHA,
            "diffusers' cosine climbs back up after the horizon; here it holds its final value.",
            "kohya-colab's XL notebook drops the warmup for cosine; here the warmup always applies.",
            "The SambaFlow alias cosine_schedule_with_warmup ends at 0.1 x the base LR by default.",
            "sd-scripts ignores lr_scheduler_num_cycles and lr_scheduler_min_lr_ratio for cosine (a value other "
            "than the default loads with a warning); set num_cycles / min_lr_ratio in lr_scheduler_args.",
        ),
        to_kohya=_cosine_to_kohya,
    )
)

register(
    ScheduleSpec(
        name="cosine_with_min_lr",
        summary="cosine decay to a required floor ratio",
        params=(num_cycles_float(kohya=True), min_lr_ratio(default=REQUIRED, kohya=True)),
        curve=cosine_curve,
        reference="transformers get_cosine_with_min_lr_schedule_with_warmup (num_cycles = n / 2, as sd-scripts passes)",
        gotchas=(_CYCLES_GOTCHA, "min_lr_ratio is required."),
        to_kohya=_cosine_to_kohya,
        example={"min_lr_ratio": 0.1},
    )
)


@ascending_steps
def one_cycle_curve(steps: Any, resolved: Any) -> Any:
    """Two phases (torch OneCycleLR, three_phase = False), with a = pct_start T - 1:
    s <= a: anneal from 1 / div_factor to 1 over s / a;
    s > a: anneal from 1 to 1 / (div_factor final_div_factor) over (s - a) / (T - 1 - a), clipped at 1.
    anneal = cos: end + (start - end) 0.5 (1 + cos(pi x)); linear: start + (end - start) x"""
    params = resolved.params
    initial = 1.0 / params["div_factor"]
    final = initial / params["final_div_factor"]
    a = params["pct_start"] * resolved.horizon - 1.0
    b = resolved.horizon - 1.0
    top = int(np.searchsorted(steps, a, side="right"))  # s[:top] rise (s <= a), s[top:] fall
    x = steps  # progress through each phase, in s's place (zero-length phase: its end value)
    rise, fall = x[:top], x[top:]
    if a > 0:
        rise /= a  # in [0, 1]: 0 <= s <= a
    else:
        rise.fill(1.0)
    if b > a:
        fall -= a  # > 0: s > a
        fall /= b - a
        np.minimum(fall, 1.0, out=fall)
    else:
        fall.fill(1.0)
    half = 1.0
    if params["anneal_strategy"] == "cos":  # x -> 0.5 (1 + cos(pi x)): from 1 at the phase start to 0 at its end
        x *= np.pi
        np.cos(x, out=x)
        x += 1.0
        half = 0.5  # the 0.5 goes into the scale below: (c + 1) (0.5 k) == ((c + 1) 0.5) k exactly
    else:
        np.subtract(1.0, x, out=x)
    rise *= half * (initial - 1.0)  # end + (start - end) * shape
    rise += 1.0
    fall *= half * (1.0 - final)
    fall += final
    return x


register(
    ScheduleSpec(
        name="one_cycle",
        summary="one cycle: rise from base/div_factor to the base LR, then anneal far below it",
        params=(
            Param(
                "pct_start",
                Float(low=0.0, high=1.0, low_open=True, high_open=True),
                "fraction of the horizon spent rising",
                default=0.3,
            ),
            Param("div_factor", Float(low=1.0), "the cycle starts at base LR / div_factor", default=25.0),
            Param(
                "final_div_factor",
                Float(low=1.0),
                "the cycle ends at base LR / (div_factor x final_div_factor)",
                default=1e4,
            ),
            Param("anneal_strategy", Choice("cos", "linear"), "shape of both phases", default="cos"),
        ),
        curve=one_cycle_curve,
        reference="torch OneCycleLR (max_lr = the base LR, three_phase = False)",
        accepts_warmup=False,
        warmup_note="one_cycle warms up by itself over pct_start; set lr_warmup_steps = 0",
        gotchas=(
            "The base LR is the peak (torch's max_lr); the run starts 25x lower by default.",
            "torch raises past total_steps; here the final value holds.",
        ),
    )
)
