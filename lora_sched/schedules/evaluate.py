"""Evaluate a resolved schedule over an array of steps (vectorised, NumPy imported lazily).

The shared concerns live here so that each catalogue curve is only its shape:

* beyond the horizon (s > T, reachable with hold_after_horizon) m holds its value at T;
* during warmup (s < W) m rises from warmup_start to the curve's value at W, linearly or along a
  half cosine;
* progress p = (s - W) / max(1, T - W), clipped to [0, 1], for curves drawn after the warmup.
"""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np

# `rs` below is a lora_sched.schedules.resolve.ResolvedSchedule, typed Any: resolve imports this
# module to evaluate its curves, and this one does not import it back (no import circle).


def progress(s: Any, rs: Any) -> Any:
    """p = (s - W) / max(1, T - W), clipped to [0, 1] (a new array)."""
    p = s - rs.warmup
    p /= max(1, rs.horizon - rs.warmup)
    return np.clip(p, 0.0, 1.0, out=p)


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


def multipliers(rs: Any, steps: Any = None) -> Any:
    """m(s) for `steps` (default 0..run_length-1) as a float64 array."""
    if steps is None:
        s = np.arange(rs.run_length, dtype=np.float64)
        clipped = rs.run_length > rs.horizon + 1
    else:
        s = np.array(steps, dtype=np.float64, ndmin=1)
        if s.size and (not np.all(np.isfinite(s)) or s.min() < 0):
            raise ValueError("steps must be finite and >= 0")
        clipped = bool(s.size) and s.max() > rs.horizon
    if clipped:
        np.minimum(s, rs.horizon, out=s)
    m = np.asarray(rs.spec.curve(s, rs), dtype=np.float64)
    if m.shape != s.shape:  # constant curves may return a scalar
        m = np.broadcast_to(m, s.shape).copy()
    if rs.warmup > 0:
        _apply_warmup(m, s, rs, from_zero=steps is None)
    return m


def _apply_warmup(m: Any, s: Any, rs: Any, from_zero: bool) -> None:
    """Overwrite the warmup steps; `from_zero`: s is 0, 1, 2, ... so the warmup is a prefix (a slice,
    not a boolean mask over every step: the mask costs as much as a whole simple curve)."""
    if from_zero:
        in_warmup: Any = slice(0, min(rs.warmup, s.size))
    else:
        in_warmup = s < rs.warmup
        if not in_warmup.any():
            return
    target = float(np.asarray(rs.spec.curve(np.array([float(rs.warmup)]), rs)).reshape(-1)[0])
    ramp = s[in_warmup] / rs.warmup
    if rs.warmup_type == "cosine":
        ramp = 0.5 * (1.0 - np.cos(np.pi * ramp))
    m[in_warmup] = rs.warmup_start + (target - rs.warmup_start) * ramp
