"""Schedules that restart: cosine with hard restarts, REX and cosine in whole-step cycles, torch's warm restarts."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import Problem, problem
from lora_sched.schedules.catalogue._kohya import plain_warmup, with_warmup
from lora_sched.schedules.catalogue._params import cycle_warmup, min_lr, min_lr_ratio, num_cycles_int, restart_decay
from lora_sched.schedules.evaluate import ascending_steps, per_run, run_lengths
from lora_sched.schedules.fields import Duration, Float, Int
from lora_sched.schedules.spec import REQUIRED, Check, Param, ScheduleSpec, register


def _cycle_factors(params: Any, n: int) -> Any:
    """(1 - r) g^k for the cycles k = 0..n: the scale of cycle k's shape (a scalar when g = 1)."""
    g = params["restart_decay"]
    return (1.0 - params["min_lr_ratio"]) * (g ** np.arange(n + 1, dtype=np.float64) if g != 1.0 else 1.0)


@ascending_steps
def cosine_with_restarts_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + (1 - r) g^k 0.5 (1 + cos(pi u)) for p < 1, and r at p >= 1, where
    k = floor(n p) is the cycle index, u = (n p) mod 1 the position in the cycle (after the cycle's
    own warmup of cycle_warmup steps, if any), g = restart_decay, n = num_cycles"""
    params = resolved.params
    n, r, cw = params["num_cycles"], params["min_lr_ratio"], params["cycle_warmup"]
    m = steps  # computed in s's place
    start = int(np.searchsorted(steps, resolved.warmup))  # before W, p = 0: the value at W
    if start:
        m[:start] = cosine_with_restarts_curve(np.array([float(resolved.warmup)]), resolved)[0]
    x = np.subtract(steps[start:], resolved.warmup, out=m[start:])
    x /= max(1, resolved.horizon - resolved.warmup)  # p, ascending
    end = int(np.searchsorted(x, 1.0))
    x[end:] = r  # p >= 1: the floor
    x = x[:end]
    x *= n
    runs = run_lengths(x, np.arange(1, n + 1, dtype=np.float64))  # k = floor(n p) in 0..n
    per_run(np.subtract, x, np.arange(n + 1, dtype=np.float64), runs)  # u = (n p) mod 1, exactly
    length = (resolved.horizon - resolved.warmup) / n
    if cw > 0:
        offset = x * length
        np.subtract(offset, cw, out=x)
        x /= length - cw
        np.clip(x, 0.0, 1.0, out=x)
    x *= np.pi
    np.cos(x, out=x)
    x += 1.0
    factor = _cycle_factors(params, n)
    if cw > 0:  # the rise offset / cw where offset < cw (there the shape is 1, elsewhere offset / cw >= 1)
        x *= 0.5
        np.minimum(x, offset / cw, out=x)
    else:
        factor = 0.5 * factor  # (c + 1) (0.5 f) == ((c + 1) 0.5) f exactly
    per_run(np.multiply, x, factor, runs)
    if r:
        x += r
    return m


def _check_cycle_warmup(params: dict, resolved: Any) -> list[Problem]:
    """cycle_warmup must leave each cycle a decay."""
    length = (resolved.horizon - resolved.warmup) / params["num_cycles"]
    if params["cycle_warmup"] >= length and params["cycle_warmup"] > 0:
        return [problem("cycle_warmup", f"fewer steps than one cycle ({length:g})", params["cycle_warmup"])]
    if length < 1:
        return [
            problem(
                "num_cycles",
                f"at most {resolved.horizon - resolved.warmup} cycles (one step each)",
                params["num_cycles"],
            )
        ]
    return []


def _restarts_to_kohya(resolved: Any, n: int) -> dict[str, Any] | None:
    """diffusers' hard restarts: no floor, no decay of the peaks, no warmup in each cycle."""
    p = resolved.params
    if not plain_warmup(resolved) or p["min_lr_ratio"] != 0.0 or p["restart_decay"] != 1.0 or p["cycle_warmup"] != 0:
        return None
    return with_warmup(resolved, n, lr_scheduler="cosine_with_restarts", lr_scheduler_num_cycles=p["num_cycles"])


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
        to_kohya=_restarts_to_kohya,
    )
)


def _rex_length(params: Any, resolved: Any) -> int:
    """Whole-step cycles: the first lasts cycle_steps, or floor((T - W) / num_cycles) (at least 1)."""
    return params["cycle_steps"] or max(1, (resolved.horizon - resolved.warmup) // params["num_cycles"])


def cycle_table(first: int, warmup: int, multiplier: float, top: float) -> tuple[list[int], list[int]]:
    """Starts and lengths of the cycles beginning at or before `top` (steps after W), where
    L_(i+1) = round((L_i - cycle_warmup) x cycle_multiplier) + cycle_warmup (Python's round, as
    LoRA_Easy's classes compute it). The list stops at a fixed point (the last length then repeats
    forever) or at a cycle of 0 steps (which those classes cannot step: the checks reject it)."""
    starts, lengths = [0], [first]
    while starts[-1] + lengths[-1] <= top and lengths[-1] > 0:
        following = round((lengths[-1] - warmup) * multiplier) + warmup
        if following == lengths[-1]:
            break
        starts.append(starts[-1] + lengths[-1])
        lengths.append(following)
    return starts, lengths


def _whole_step_cycles(j: Any, params: Any, resolved: Any) -> tuple[Any, Any, Any]:
    """(k, offset, length) for steps j after the warmup: cycle index, steps into the cycle, its length."""
    first = _rex_length(params, resolved)
    if params["cycle_multiplier"] == 1.0:
        k = np.floor(j / first)
        return k, j - k * first, first
    top = float(j.max()) if j.size else 0.0
    starts, lengths = cycle_table(first, params["cycle_warmup"], params["cycle_multiplier"], top)
    k = np.searchsorted(np.asarray(starts, dtype=np.float64), j, side="right") - 1.0
    index = k.astype(np.intp)
    offset = j - np.take(np.asarray(starts, dtype=np.float64), index)
    length = np.maximum(np.take(np.asarray(lengths, dtype=np.float64), index), 1.0)
    repeats = np.floor(offset / length)  # past the last listed cycle, its length repeats
    return k + repeats, offset - repeats * length, length


def floor_ratio(params: Any, resolved: Any, *, none_at_or_above_base: bool) -> float:
    """r: min_lr_ratio, or the absolute min_lr over this param group's base LR (every group falls to
    the same LR); with none_at_or_above_base a group whose base LR is at or below min_lr has no floor,
    as LoRA_Easy's REX class sets it."""
    min_lr = params.get("min_lr")
    if min_lr is None:
        return float(params["min_lr_ratio"])
    if resolved.base_lr <= 0.0 or (none_at_or_above_base and min_lr >= resolved.base_lr):
        return 0.0  # (a group with base LR 0 trains nothing: base x m is 0 whatever m)
    return float(min_lr / resolved.base_lr)


def _cycles(j: Any, params: Any, resolved: Any) -> tuple[Any, Any, Any, Any]:
    """(k, start, length) of each cycle that the ascending steps j >= 0 after the warmup reach, as
    float arrays, and how many of the steps fall in each."""
    first, cw = _rex_length(params, resolved), params["cycle_warmup"]
    top = float(j[-1])
    starts, lengths = cycle_table(first, cw, params["cycle_multiplier"], top)
    last = max(lengths[-1], 1)  # past the last listed cycle, its length (at least 1 step) repeats
    extra = int((top - starts[-1]) // last)
    if len(starts) + extra <= j.size:  # a table of every cycle, no larger than the steps
        start = np.concatenate([starts, starts[-1] + last * np.arange(1, extra + 1)]).astype(np.float64)
        length = np.concatenate([lengths[:-1], np.full(extra + 1, last)]).astype(np.float64)
        return np.arange(start.size, dtype=np.float64), start, length, run_lengths(j, start[1:])
    k, offset, length = _whole_step_cycles(j, params, resolved)  # more cycles than steps: a sampled long run
    first_steps = np.flatnonzero(np.diff(k, prepend=-1.0))
    runs = np.diff(first_steps, append=j.size)
    return k[first_steps], (j - offset)[first_steps], np.broadcast_to(length, j.shape)[first_steps], runs


def _rise_steps(j: Any, start: Any, runs: Any, cw: int) -> tuple[Any, Any]:
    """The positions of the ascending steps j in the first cw steps of their cycle (offset < cw), and
    the number of them in each cycle."""
    begins = np.cumsum(runs) - runs
    count = np.minimum(np.searchsorted(j, start + cw) - begins, runs)
    total = int(count.sum())
    return np.repeat(begins - (np.cumsum(count) - count), count) + np.arange(total), count


def _falling_cycles(steps: Any, resolved: Any, shape: Any, r: float) -> Any:
    """r + max(g^k - r, 0) x (a linear rise over cycle_warmup steps, else shape(q)) for W <= s < T, r at
    s >= T, and before W the value at W; s ascending (see ascending_steps), `shape` works in place."""
    params, w = resolved.params, resolved.warmup
    cw, g = params["cycle_warmup"], params["restart_decay"]
    m = steps  # computed in s's place
    lo, hi = (int(i) for i in np.searchsorted(steps, [w, resolved.horizon]))
    if lo:
        m[:lo] = _falling_cycles(np.array([float(w)]), resolved, shape, r)[0]
    if hi > lo:
        j = np.subtract(steps[lo:hi], w, out=m[lo:hi])  # steps after W (exact)
        k, start, length, runs = _cycles(j, params, resolved)
        if cw > 0:  # offset / cw in the first cw steps of each cycle
            rise, count = _rise_steps(j, start, runs, cw)
            rising = (j[rise] - np.repeat(start, count)) / cw
        per_run(np.subtract, j, start + cw, runs)  # offset - cw
        den = np.maximum(1.0, length - cw)
        per_run(np.divide, j, den[0] if np.all(den == den[0]) else den, runs)
        np.clip(j, 0.0, 1.0, out=j)  # q
        value = shape(j)
        if cw > 0:
            value[rise] = rising
        peak = np.maximum((g**k if g != 1.0 else 1.0) - r, 0.0)
        if np.ndim(peak) or peak != 1.0:
            per_run(np.multiply, value, peak, runs)
        if r:
            value += r
    m[hi:] = r
    return m


@ascending_steps
def rex_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + max(g^k - r, 0) (1 - q) / ((1 - d) + d (1 - q)) for W <= s < T, r at s >= T, where
    cycle k lasts L_k steps (L_0 = cycle_steps or floor((T - W) / num_cycles), L_(k+1) =
    round((L_k - cycle_warmup) cycle_multiplier) + cycle_warmup), q = progress through cycle k after its
    own warmup of cycle_warmup steps (a linear rise from r to the peak g^k), g = restart_decay; every
    cycle falls to the same floor r, as LoRA_Easy's RexAnnealingWarmRestarts does. r = min_lr_ratio,
    or with an absolute min_lr, min_lr / (the param group's base LR), 0 for a group whose base LR is at
    or below min_lr"""
    d = resolved.params["d"]

    def shape(q: Any) -> Any:  # in place: q becomes 1 - q, then (1 - q) / ((1 - d) + d (1 - q))
        np.subtract(1.0, q, out=q)
        den = q * d
        den += 1.0 - d
        q /= den
        return q

    return _falling_cycles(steps, resolved, shape, floor_ratio(resolved.params, resolved, none_at_or_above_base=True))


def _cycles_check(none_at_or_above_base: bool) -> Check:
    """The check of whole-step cycles, with the schedule's floor rule (see floor_ratio)."""

    def check(params: dict, resolved: Any) -> list[Problem]:
        """Cycles LoRA_Easy's classes can step: a first cycle longer than its warmup, one floor (min_lr
        or min_lr_ratio), and no cycle of 0 steps whose peak is above the floor (those classes divide
        by zero there; below the floor they hold it) up to the step after the horizon, which sd-scripts
        computes after its last update. The floor is that of a group at the base LR."""
        if params.get("min_lr") is not None and params["min_lr_ratio"] != 0.0:
            return [problem("min_lr", "min_lr or min_lr_ratio, not both", params["min_lr"])]
        first = _rex_length(params, resolved)
        if params["cycle_warmup"] >= first and params["cycle_warmup"] > 0:
            return [problem("cycle_warmup", f"fewer steps than one cycle ({first})", params["cycle_warmup"])]
        if params["cycle_multiplier"] == 1.0:
            return []
        span = resolved.horizon - resolved.warmup
        starts, lengths = cycle_table(first, params["cycle_warmup"], params["cycle_multiplier"], span)
        k = len(lengths) - 1
        r = floor_ratio(params, resolved, none_at_or_above_base=none_at_or_above_base)
        if lengths[-1] == 0 and starts[-1] <= span and params["restart_decay"] ** k > r:
            return [
                problem(
                    "cycle_multiplier",
                    "a multiplier that keeps every cycle at least 1 step long",
                    params["cycle_multiplier"],
                    f"cycle {k} (from step {resolved.warmup + starts[-1]}) would last 0 steps",
                )
            ]
        return []

    return check


def _cycle_params(cycles_doc: str) -> tuple[Param, ...]:
    """The whole-step cycle parameters REX and cosine_warmup_restarts share (LoRA_Easy's argument names as aliases)."""
    return (
        min_lr_ratio(),
        min_lr(),
        num_cycles_int(cycles_doc),
        restart_decay(),
        cycle_warmup(),
        Param(
            "cycle_steps",
            Duration(),
            "length of the first cycle in steps (overrides num_cycles)",
            default=None,
            aliases=("first_cycle_max_steps",),
            default_doc="(T - W) // num_cycles",
        ),
        Param(
            "cycle_multiplier",
            Float(low=0.0, high=1000.0, low_open=True),
            "each next cycle lasts round((L - cycle_warmup) x cycle_multiplier) + cycle_warmup steps",
            default=1.0,
        ),
    )


register(
    ScheduleSpec(
        name="rex",
        summary="REX decay (reflected exponential), optionally in restarting cycles with per-cycle warmup",
        params=(
            Param(
                "d",
                Float(low=0.0, high=1.0, high_open=True),
                "curvature: 0 is linear, towards 1 holds high then drops",
                default=0.9,
            ),
            *_cycle_params("number of REX cycles (3 cycles = 2 restarts)"),
        ),
        curve=rex_curve,
        reference='REX, arXiv 2107.04197; LoRA_Easy RexAnnealingWarmRestarts (kohya-colab\'s "rex"); '
        "pytorch_optimizer REXScheduler (d = 0.5)",
        gotchas=(
            'kohya-colab\'s "rex" is num_cycles = 3, restart_decay = 0.9, d = 0.9, min_lr = 1e-9 (an absolute '
            "LR: every param group falls to 1e-9 from its own base LR) and a per-cycle warmup of "
            "round(steps x warmup ratio) // 3 steps (16 for 1000 steps at 5%); its integer cycles can start "
            "a short extra cycle in the last steps, as that class does.",
            "Every cycle falls to the same floor r from its own peak restart_decay^k (LoRA_Easy's class).",
            "min_lr is an absolute LR; a param group whose base LR is at or below it gets no floor (0), "
            "as in LoRA_Easy's class.",
        ),
        check=_cycles_check(none_at_or_above_base=True),
        absolute_lr_param="min_lr",
    )
)


@ascending_steps
def cosine_warmup_restarts_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + max(g^k - r, 0) 0.5 (1 + cos(pi q)) for W <= s < T, r at s >= T, with the cycles of
    rex (lengths L_k from cycle_steps or num_cycles and cycle_multiplier, a linear rise from r to the
    peak g^k over the first cycle_warmup steps of each, q the progress after it); r = min_lr_ratio,
    or with an absolute min_lr, min_lr / (the param group's base LR), also above 1 (LoRA_Easy's
    CosineAnnealingWarmRestarts holds min_lr even in a group whose base LR is below it)"""
    r = floor_ratio(resolved.params, resolved, none_at_or_above_base=False)
    return _falling_cycles(steps, resolved, _half_cosine, r)


def _half_cosine(q: Any) -> Any:
    """0.5 (1 + cos(pi q)), in place."""
    q *= np.pi
    np.cos(q, out=q)
    q += 1.0
    q *= 0.5
    return q


register(
    ScheduleSpec(
        name="cosine_warmup_restarts",
        summary="whole-step cosine cycles with per-cycle warmup, decaying peaks and a floor (LoRA_Easy's CAWR)",
        params=_cycle_params("number of cosine cycles (3 cycles = 2 restarts)"),
        curve=cosine_warmup_restarts_curve,
        reference="LoRA_Easy CosineAnnealingWarmRestarts (LoraEasyCustomOptimizer, not torch's class of that name)",
        gotchas=(
            "Not torch's CosineAnnealingWarmRestarts (that is cosine_annealing_warm_restarts): each cycle "
            "has its own warmup, peaks decay by restart_decay, and the last step of a cycle stays above the floor.",
            "min_lr is an absolute LR held in every param group, even one whose base LR is below it.",
        ),
        check=_cycles_check(none_at_or_above_base=False),
        absolute_lr_param="min_lr",
    )
)


@ascending_steps
def cosine_annealing_warm_restarts_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = r + (1 - r) 0.5 (1 + cos(pi t_cur / t_i)), with cycle lengths t_i = t_0 t_mult^i
    counted from the end of the warmup and t_cur the steps into the current cycle"""
    params, w = resolved.params, resolved.warmup
    t0, tm, r = params["t_0"], params["t_mult"], params["min_lr_ratio"]
    m = steps  # computed in s's place
    lo = int(np.searchsorted(steps, w))  # before W, t_cur = 0: the value at W
    if lo:
        m[:lo] = cosine_annealing_warm_restarts_curve(np.array([float(w)]), resolved)[0]
    x = np.subtract(steps[lo:], w, out=m[lo:])
    if tm == 1:
        cycles = np.floor(x / t0)
        cycles *= t0
        x -= cycles  # t_cur = (s - W) mod t_0, exactly
        x *= np.pi / t0
    elif x.size:
        # Only about log(T) cycles: list their integer starts and lengths in Python (exact, no
        # log rounding), then cut the ascending steps at the restarts.
        starts, lengths = [0], [t0]
        while starts[-1] + lengths[-1] <= x[-1]:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * tm)
        runs = run_lengths(x, np.asarray(starts[1:], dtype=np.float64))
        per_run(np.subtract, x, np.asarray(starts, dtype=np.float64), runs)  # t_cur
        per_run(np.divide, x, np.asarray(lengths, dtype=np.float64), runs)  # / t_i
        x *= np.pi
    np.cos(x, out=x)
    x += 1.0
    x *= 0.5 * (1.0 - r)  # one product: (c + 1) (0.5 (1 - r)) == ((c + 1) 0.5) (1 - r) exactly
    if r:
        x += r
    return m


def _check_t0(params: dict, resolved: Any) -> list[Problem]:
    if params["t_0"] < 1:
        return [problem("t_0", "a first cycle of at least 1 step", params["t_0"], "it resolved to 0 steps")]
    return []


register(
    ScheduleSpec(
        name="cosine_annealing_warm_restarts",
        summary="cosine cycles of length t_0, t_0 t_mult, ... (SGDR)",
        params=(
            Param("t_0", Duration(), "length of the first cycle", default=REQUIRED, aliases=("T_0",)),
            Param(
                "t_mult",
                Int(low=1, high=1000),
                "growth factor of each next cycle (an int, as torch requires)",
                default=1,
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
        example={"t_0": 50, "t_mult": 2, "min_lr_ratio": 0.01},
    )
)
