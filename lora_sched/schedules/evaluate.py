"""Evaluate a resolved schedule over an array of steps (vectorised, NumPy imported lazily).

The shared concerns live here so that each catalogue curve is only its shape:

* beyond the horizon (s > T, reachable with hold_after_horizon) m holds its value at T;
* during warmup (s < W) m rises from warmup_start to the curve's value at W, linearly or along a
  half cosine;
* progress p = (s - W) / max(1, T - W), clipped to [0, 1], for curves drawn after the warmup.

A curve gets its steps s as a float64 array of its own (a scratch copy, never the caller's): it may
compute m in s's place. Each extra array of a million steps costs its page faults, about as much as
two passes of arithmetic over it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lora_sched._lazy import np

# `resolved` below is a lora_sched.schedules.resolve.ResolvedSchedule, typed Any: resolve imports this
# module to evaluate its curves, and this one does not import it back (no import circle).


def progress(steps: Any, resolved: Any, out: Any = None) -> Any:
    """p = (s - W) / max(1, T - W), clipped to [0, 1] (a new array, or in `out`, which may be s)."""
    p = np.subtract(steps, resolved.warmup, out=out)
    p /= max(1, resolved.horizon - resolved.warmup)
    return np.clip(p, 0.0, 1.0, out=p)


def ascending_steps(curve: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Decorator for curves that cut the steps into runs (cycles, phases, plateaus) by slicing: they
    are written for ascending steps, as the preview's 0, 1, 2, ... are; other steps are sorted first
    and the values put back in their order (each value is computed as it would be in order)."""

    @functools.wraps(curve)
    def in_order(steps: Any, resolved: Any) -> Any:
        if is_ascending(steps):
            return curve(steps, resolved)
        order = np.argsort(steps, kind="stable")
        m = np.empty_like(steps)
        m[order] = curve(steps[order], resolved)
        return m

    return in_order


#: Steps compared per block by is_ascending (a small reused buffer instead of one bool per step).
ORDER_BLOCK = 1 << 16


def is_ascending(steps: Any) -> bool:
    """Whether s[i] <= s[i + 1] throughout, block by block (a fresh array per step costs more than the check)."""
    below = np.empty(min(ORDER_BLOCK, max(steps.size - 1, 0)), dtype=bool)
    for i in range(0, steps.size - 1, ORDER_BLOCK):
        part = steps[i : i + ORDER_BLOCK + 1]
        found = below[: part.size - 1]
        if np.less(part[1:], part[:-1], out=found).any():
            return False
    return True


#: Up to this many runs, per_run works on slices (in place); beyond, through one np.repeat.
SLICED_RUNS = 128


def per_run(ufunc: Any, x: Any, table: Any, runs: Any) -> Any:
    """x = ufunc(x, table[i]) in place over each run i of runs[i] consecutive values (see run_lengths); a
    scalar table applies to all of x. Slice by slice for a few runs: no temporary array as large as x
    (allocating one costs more than the arithmetic)."""
    if np.ndim(table) == 0:
        return ufunc(x, table, out=x)
    if len(runs) > SLICED_RUNS:
        return ufunc(x, np.repeat(table, runs), out=x)
    at = 0
    for value, count in zip(np.asarray(table).tolist(), np.asarray(runs).tolist()):
        if count:
            part = x[at : at + count]
            ufunc(part, value, out=part)
            at += count
    return x


def run_lengths(steps: Any, edges: Any) -> Any:
    """How many of the ascending steps s fall in each of (-inf, e_0), [e_0, e_1), ..., [e_last, inf)
    (edges ascending): np.repeat(table, run_lengths(s, edges)) is table[number of edges <= s], per step,
    with one binary search per edge instead of one per step."""
    return np.diff(np.searchsorted(steps, edges, side="left"), prepend=0, append=steps.size)


def decay_shape(q: Any, kind: str) -> Any:
    """Shapes that fall from 1 at q = 0 to 0 at q = 1: linear 1 - q, cosine 0.5 (1 + cos pi q), 1-sqrt."""
    if kind == "linear":
        return 1.0 - q
    if kind == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * q))
    if kind == "1-sqrt":
        return 1.0 - np.sqrt(q)
    raise ValueError(f"unknown decay shape {kind!r}")


def floor_scale(shape: Any, floor: float) -> Any:
    """r + (1 - r) * shape, in place when shape is an array."""
    if floor == 0.0:
        return shape
    shape *= 1.0 - floor
    shape += floor
    return shape


def multipliers(resolved: Any, steps: Any = None) -> Any:
    """m(s) for `steps` (default 0..run_length-1) as a float64 array."""
    if steps is None:
        step_array = np.arange(resolved.run_length, dtype=np.float64)
        clipped = resolved.run_length > resolved.horizon + 1
    else:
        step_array = np.array(steps, dtype=np.float64, ndmin=1)
        if step_array.size and (not np.all(np.isfinite(step_array)) or step_array.min() < 0):
            raise ValueError("steps must be finite and >= 0")
        clipped = bool(step_array.size) and step_array.max() > resolved.horizon
    if clipped:
        np.minimum(step_array, resolved.horizon, out=step_array)
    warmup = _warmup_steps(step_array, resolved, from_zero=steps is None) if resolved.warmup > 0 else None
    m = np.asarray(resolved.spec.curve(step_array, resolved), dtype=np.float64)  # may overwrite s
    if m.shape != step_array.shape:  # constant curves may return a scalar
        m = np.broadcast_to(m, step_array.shape).copy()
    if warmup is not None:
        _apply_warmup(m, resolved, *warmup)
    return m


def _warmup_steps(steps: Any, resolved: Any, from_zero: bool) -> tuple[Any, Any] | None:
    """Where the warmup steps are and a copy of them (taken before the curve, which may reuse s), or None.
    `from_zero`: s is 0, 1, 2, ... so the warmup is a prefix (a slice, not a boolean mask over every
    step: the mask costs as much as a whole simple curve)."""
    if from_zero:
        in_warmup: Any = slice(0, min(resolved.warmup, steps.size))
    else:
        in_warmup = steps < resolved.warmup
        if not in_warmup.any():
            return None
    return in_warmup, steps[in_warmup].copy()


def _apply_warmup(m: Any, resolved: Any, in_warmup: Any, steps: Any) -> None:
    """Overwrite the warmup steps `steps` (at `in_warmup` in m)."""
    target = float(np.asarray(resolved.spec.curve(np.array([float(resolved.warmup)]), resolved)).reshape(-1)[0])
    ramp = steps / resolved.warmup
    if resolved.warmup_type == "cosine":
        ramp = 0.5 * (1.0 - np.cos(np.pi * ramp))
    m[in_warmup] = resolved.warmup_start + (target - resolved.warmup_start) * ramp
