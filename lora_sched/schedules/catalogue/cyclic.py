"""Schedules that restart: cosine with hard restarts, REX with restarts, torch's warm restarts."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import Problem, problem
from lora_sched.schedules.catalogue._params import cycle_warmup, min_lr_ratio, num_cycles_int, restart_decay
from lora_sched.schedules.evaluate import floor_scale, progress
from lora_sched.schedules.spec import REQUIRED, Param, ScheduleSpec, register


def _cycle_value(shape: Any, offset: Any, k: Any, rs: Any, *, peak_above_floor: bool = False) -> Any:
    """r + span * (warmup ramp over the first cycle_warmup steps of a cycle, else shape), where
    span = (1 - r) g^k (the floor scales with the peak), or with peak_above_floor
    span = max(g^k - r, 0) (the cycle falls from its own peak g^k to the same floor r).
    Works in place on `shape` (a fresh array the caller owns)."""
    prm = rs.params
    cw = prm["cycle_warmup"]
    if cw > 0:
        shape = np.where(offset < cw, offset / cw, shape)
    r, g = prm["min_lr_ratio"], prm["restart_decay"]
    peak = g**k if g != 1.0 else 1.0
    shape *= np.maximum(peak - r, 0.0) if peak_above_floor else (1.0 - r) * peak
    if r:
        shape += r
    return shape


def cosine_with_restarts_curve(s: Any, rs: Any) -> Any:
    """m(s) = r + (1 - r) g^k 0.5 (1 + cos(pi u)) for p < 1, and r at p >= 1, where
    k = floor(n p) is the cycle index, u = (n p) mod 1 the position in the cycle (after the cycle's
    own warmup of cycle_warmup steps, if any), g = restart_decay, n = num_cycles"""
    prm = rs.params
    n = prm["num_cycles"]
    x = progress(s, rs)
    ended = x >= 1.0
    x *= n
    k = np.floor(x)
    x -= k  # u = (n p) mod 1, exactly (x >= 0)
    length = (rs.horizon - rs.warmup) / n
    cw = prm["cycle_warmup"]
    offset = x
    if cw > 0:
        offset = x * length
        x = np.clip((offset - cw) / (length - cw), 0.0, 1.0)
    x *= np.pi
    np.cos(x, out=x)
    x += 1.0
    x *= 0.5
    m = _cycle_value(x, offset, k, rs)
    m[ended] = prm["min_lr_ratio"]
    return m


def _check_cycle_warmup(params: dict, rs: Any) -> list[Problem]:
    """cycle_warmup must leave each cycle a decay (cycle lengths as each curve computes them)."""
    length = _rex_length(params, rs) if "d" in params else (rs.horizon - rs.warmup) / params["num_cycles"]
    if params["cycle_warmup"] >= length and params["cycle_warmup"] > 0:
        return [problem("cycle_warmup", f"fewer steps than one cycle ({length:g})", params["cycle_warmup"])]
    if length < 1:
        return [problem("num_cycles", f"at most {rs.horizon - rs.warmup} cycles (one step each)", params["num_cycles"])]
    return []


register(
    ScheduleSpec(
        name="cosine_with_restarts",
        summary="num_cycles cosine decays with hard restarts to the peak",
        params=(
            num_cycles_int("number of cosine cycles (3 cycles = 2 restarts)", kohya=True),
            min_lr_ratio(),
            restart_decay(),
            cycle_warmup(),
        ),
        curve=cosine_with_restarts_curve,
        reference="diffusers get_cosine_with_hard_restarts_schedule_with_warmup (restart_decay = 1, min_lr_ratio = 0)",
        gotchas=(
            "num_cycles = 3 means three cosine cycles, i.e. two restarts, not three.",
            "diffusers drops to 0 after the horizon; here the final value (the floor) holds.",
        ),
        check=_check_cycle_warmup,
        kohya_name="cosine_with_restarts",
        family="cyclic",
    )
)


def _rex_length(params: Any, rs: Any) -> int:
    """REX cycles are whole steps: cycle_steps, or floor((T - W) / num_cycles) (at least 1)."""
    return params["cycle_steps"] or max(1, (rs.horizon - rs.warmup) // params["num_cycles"])


def rex_curve(s: Any, rs: Any) -> Any:
    """m(s) = r + max(g^k - r, 0) (1 - q) / ((1 - d) + d (1 - q)) for W <= s < T, r at s >= T, where
    cycles last L = cycle_steps or floor((T - W) / num_cycles) steps, k = floor((s - W) / L),
    q = progress through cycle k after its own warmup of cycle_warmup steps (a linear rise from r
    to the peak g^k), g = restart_decay; every cycle falls to the same floor r, as LoRA_Easy's
    RexAnnealingWarmRestarts does (r + (1 - r) g^k ... when g = 1 or r = 0)"""
    prm = rs.params
    d = prm["d"]
    length = _rex_length(prm, rs)
    j = np.maximum(s - rs.warmup, 0.0)
    k = np.floor(j / length)
    offset = j - k * length
    cw = prm["cycle_warmup"]
    q = np.clip((offset - cw) / max(1, length - cw), 0.0, 1.0)
    left = 1.0 - q
    m = _cycle_value(left / ((1.0 - d) + d * left), offset, k, rs, peak_above_floor=True)
    m[s >= rs.horizon] = prm["min_lr_ratio"]
    return m


register(
    ScheduleSpec(
        name="rex",
        summary="REX decay (reflected exponential), optionally in restarting cycles with per-cycle warmup",
        params=(
            Param(
                "d",
                "float",
                "curvature: 0 is linear, towards 1 holds high then drops",
                default=0.9,
                low=0.0,
                high=1.0,
                high_open=True,
            ),
            min_lr_ratio(),
            num_cycles_int("number of REX cycles (3 cycles = 2 restarts)"),
            restart_decay(),
            cycle_warmup(),
            Param(
                "cycle_steps",
                "duration",
                "length of each cycle in steps (overrides num_cycles)",
                default=None,
                aliases=("first_cycle_max_steps",),
                default_doc="(T - W) // num_cycles",
            ),
        ),
        curve=rex_curve,
        reference='REX, arXiv 2107.04197; LoRA_Easy RexAnnealingWarmRestarts (kohya-colab\'s "rex"); '
        "pytorch_optimizer REXScheduler (d = 0.5)",
        gotchas=(
            'kohya-colab\'s "rex" is num_cycles = 3, restart_decay = 0.9, d = 0.9, min_lr 1e-9 (absolute: '
            "min_lr_ratio = 1e-9 / learning_rate) and a per-cycle warmup of round(steps x warmup ratio) // 3 "
            "steps (16 for 1000 steps at 5%); its integer cycles can start a short extra cycle in the last "
            "steps, as that class does.",
            "Every cycle falls to the same floor r from its own peak restart_decay^k (LoRA_Easy's class).",
        ),
        check=_check_cycle_warmup,
        family="cyclic",
    )
)


def cosine_annealing_warm_restarts_curve(s: Any, rs: Any) -> Any:
    """m(s) = r + (1 - r) 0.5 (1 + cos(pi t_cur / t_i)), with cycle lengths t_i = t_0 t_mult^i
    counted from the end of the warmup and t_cur the steps into the current cycle"""
    prm = rs.params
    t0, tm = prm["t_0"], prm["t_mult"]
    j = s - rs.warmup
    np.maximum(j, 0.0, out=j)
    if tm == 1:
        x = np.mod(j, t0, out=j)
        x *= np.pi / t0
    else:
        # Only about log(T) cycles: list their integer starts and lengths in Python (exact, no
        # log rounding), then find each step's cycle with one binary search.
        starts, lengths = [0], [t0]
        top = float(j.max()) if j.size else 0.0
        while starts[-1] + lengths[-1] <= top:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * tm)
        k = np.searchsorted(np.asarray(starts, dtype=np.float64), j, side="right")
        k -= 1
        x = j - np.take(np.asarray(starts, dtype=np.float64), k)  # t_cur
        x /= np.take(np.asarray(lengths, dtype=np.float64), k)  # / t_i
        x *= np.pi
    np.cos(x, out=x)
    x += 1.0
    x *= 0.5
    m = x
    return floor_scale(m, prm["min_lr_ratio"])


def _check_t0(params: dict, rs: Any) -> list[Problem]:
    if params["t_0"] < 1:
        return [problem("t_0", "a first cycle of at least 1 step", params["t_0"], "it resolved to 0 steps")]
    return []


register(
    ScheduleSpec(
        name="cosine_annealing_warm_restarts",
        summary="cosine cycles of length t_0, t_0 t_mult, ... (SGDR)",
        params=(
            Param("t_0", "duration", "length of the first cycle", default=REQUIRED, aliases=("T_0",)),
            Param(
                "t_mult",
                "int",
                "growth factor of each next cycle (an int, as torch requires)",
                default=1,
                low=1,
                high=1000,
                aliases=("T_mult",),
            ),
            min_lr_ratio(doc="floor as a fraction of the base LR (torch's eta_min / base LR)"),
        ),
        curve=cosine_annealing_warm_restarts_curve,
        reference="torch CosineAnnealingWarmRestarts; Composer CosineAnnealingWarmRestartsScheduler",
        gotchas=(
            "t_mult must be an int (torch rejects 1.5 at runtime: pytorch #95122); here it is checked up front.",
            "The floor is a ratio of the base LR, not torch's absolute eta_min.",
        ),
        check=_check_t0,
        family="cyclic",
    )
)
