"""The bound of a resolved schedule, its bound-optimal base LR, and LR transfer between run lengths.

The step sizes of a run are the LRs of its T = run_length updates: eta_t = base_lr * m(t - 1),
t = 1..T, i.e. `base_lr * resolved.multipliers()` (steps 0..T-1). With this convention, and no
warmup, the tuned bound times sqrt(T) at T = 4000, G = D = 1 is 2.00 (linear), 2.06 (cosine),
2.16 (WSD, 20% linear cooldown) and 3.14 (constant), as in Schaipp et al. 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_sched.analysis.bound import BoundTerms, bound_terms
from lora_sched.schedules import ResolvedSchedule, ScheduleRequest, TrainingShape, resolve


@dataclass(frozen=True)
class ScheduleBound:
    """Omega_T of one schedule at one base LR, and the base LR that minimises it."""

    steps: int
    base_lr: float
    terms: BoundTerms  # at base_lr
    unit_terms: BoundTerms  # at base LR 1 (gamma = 1)
    D: float
    G: Any
    zero_tail: int = 0  # final steps with LR 0 after a positive one (they make the bound infinite)

    @property
    def bound(self) -> float:
        return self.terms.total

    @property
    def optimal_base_lr(self) -> float:
        """gamma* = sqrt(t1 / (t2 + t3)), terms at base LR 1."""
        return self.unit_terms.optimal_scale

    @property
    def optimal_bound(self) -> float:
        """2 sqrt(t1 (t2 + t3)), terms at base LR 1."""
        return self.unit_terms.optimal_total

    @property
    def lr_factor(self) -> float:
        """What to multiply base_lr by to reach gamma*."""
        if self.base_lr <= 0 or not math.isfinite(self.optimal_base_lr):
            return math.nan
        return self.optimal_base_lr / self.base_lr


def step_sizes(resolved: ResolvedSchedule, base_lr: float = 1.0) -> np.ndarray:
    """eta_1..eta_T = base_lr * m(s), s = 0..run_length-1."""
    m = np.asarray(resolved.multipliers(), dtype=np.float64)
    return m if base_lr == 1.0 else base_lr * m


def flat_from(resolved: ResolvedSchedule) -> int:
    """The first step from which m(s) is one value to the end of the run (run_length if none known):
    the end of the warmup for a constant curve, the horizon for a run held beyond it."""
    start = resolved.run_length
    if resolved.spec.flat_curve:
        start = resolved.warmup
    if resolved.hold_after_horizon:
        start = min(start, resolved.horizon)
    return min(start, resolved.run_length)


def schedule_bound(
    resolved: ResolvedSchedule, base_lr: float | None = None, D: float = 1.0, G: Any = 1.0
) -> ScheduleBound:
    """Omega_T of the run at `base_lr` (default: the schedule's own base LR) and its optimum, in O(T)
    (in O(W) for a constant curve after a W-step warmup: its flat tail has closed-form sums)."""
    lr = resolved.base_lr if base_lr is None else float(base_lr)
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"base_lr must be finite and >= 0, got {base_lr!r}")
    flat = flat_from(resolved)
    if flat < resolved.run_length:
        head = np.asarray(resolved.multipliers(np.arange(flat)) if flat else np.empty(0), dtype=np.float64)
        value, count = resolved.multiplier(flat), resolved.run_length - flat
    else:
        head, value, count = step_sizes(resolved), 0.0, 0
    unit = bound_terms(head, D, G, flat_value=value, flat_steps=count)
    at_lr = unit.scaled(lr) if lr > 0 else BoundTerms(math.inf, 0.0, 0.0)
    g = G if np.ndim(G) == 0 else np.asarray(G)
    return ScheduleBound(resolved.run_length, lr, at_lr, unit, float(D), g, _zero_tail(head, value, count))


def _zero_tail(head: np.ndarray, value: float, count: int) -> int:
    """How many final step sizes are 0 after a positive one (0 if the last is positive or all are 0).
    Scans only when the last step size is 0: a full scan costs as much as the bound."""
    last = value if count else (head[-1] if head.size else 0.0)
    if last > 0:
        return 0
    positive = np.flatnonzero(head > 0)
    return int(head.size - 1 - positive[-1]) + count if positive.size else 0


def bound_summary(resolved: ResolvedSchedule, base_lr: float, D: float = 1.0, G: Any = 1.0) -> dict[str, Any]:
    """The bound of a schedule as a plain dict (for the notebook, beside the preview).

    Keys: steps, base_lr, bound, terms (t1, t2, t3 at base_lr), optimal_base_lr, optimal_bound,
    lr_factor (optimal_base_lr / base_lr), bound_x_sqrt_T (optimal_bound * sqrt(T), the paper's
    normalisation), note (why the bound is infinite, or '').
    """
    b = schedule_bound(resolved, base_lr, D, G)
    return {
        "steps": b.steps,
        "base_lr": b.base_lr,
        "bound": b.bound,
        "terms": (b.terms.t1, b.terms.t2, b.terms.t3),
        "optimal_base_lr": b.optimal_base_lr,
        "optimal_bound": b.optimal_bound,
        "lr_factor": b.lr_factor,
        "bound_x_sqrt_T": b.optimal_bound * math.sqrt(b.steps),
        "note": infinite_note(b),
    }


def infinite_note(b: ScheduleBound) -> str:
    """One line explaining an infinite bound, or ''."""
    if math.isfinite(b.bound):
        return ""
    if b.base_lr == 0 or math.isinf(b.unit_terms.t1):
        return "the LR is 0 on every step: the bound is infinite"
    if b.zero_tail:
        return (
            f"the last {b.zero_tail} step(s) have LR 0 after a positive LR: Theorem 1 divides by the LR still "
            "to come, so the bound is infinite (those updates do not move the weights)"
        )
    return "the bound is infinite"


def transfer_request(request: ScheduleRequest, resolved: ResolvedSchedule, steps: int) -> ScheduleRequest:
    """The same schedule for a run of `steps` steps (max_train_steps = steps).

    Durations written in steps stay in steps; fractions and "dur" follow the new run length. A
    horizon set with schedule_steps keeps its ratio to the run length.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    changes: dict[str, Any] = {"max_train_steps": steps, "max_train_epochs": None}
    if request.schedule_steps is not None:
        changes["schedule_steps"] = max(1, round(steps * resolved.horizon / resolved.run_length))
    return request.replace(**changes)


@dataclass(frozen=True)
class Transfer:
    """LR transfer of one schedule from its run length to another: new_lr = base_lr * gamma*(N) / gamma*(T)."""

    base_lr: float
    steps_from: int
    steps_to: int
    factor: float
    resolved_to: ResolvedSchedule

    @property
    def new_lr(self) -> float:
        return self.base_lr * self.factor


def transfer_lr(
    request: ScheduleRequest,
    steps: int,
    base_lr: float | None = None,
    shape: TrainingShape | None = None,
    D: float = 1.0,
    G: float = 1.0,
) -> Transfer:
    """The base LR for the same schedule run for `steps` steps: base_lr * gamma*(steps) / gamma*(T).

    G must be a scalar here (a per-step G cannot follow a different run length); the factor does
    not depend on D or G. Raises ConfigError when the schedule does not fit the new length (e.g. a
    warmup of 500 steps in a 300-step run).
    """
    if np.ndim(G) != 0:
        raise ValueError("LR transfer needs a scalar G")
    old = resolve(request, shape)
    new = resolve(transfer_request(request, old, steps), shape)
    lr = old.base_lr if base_lr is None else float(base_lr)
    g_old = bound_terms(step_sizes(old), D, G).optimal_scale
    g_new = bound_terms(step_sizes(new), D, G).optimal_scale
    factor = g_new / g_old if g_old > 0 and math.isfinite(g_old) else math.nan
    return Transfer(lr, old.run_length, new.run_length, factor, new)


__all__ = [
    "ScheduleBound",
    "Transfer",
    "bound_summary",
    "infinite_note",
    "schedule_bound",
    "step_sizes",
    "transfer_lr",
    "transfer_request",
]
