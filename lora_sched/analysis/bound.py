"""The convex-optimization bound of a step-size sequence (Schaipp et al. 2025, Thm. 1), in O(T).

For step sizes eta_1..eta_T >= 0, gradient-norm bounds G_t and D = ||x_1 - x*||, the last iterate
of SGD on a convex G-Lipschitz problem satisfies E f(x_T) - f* <= Omega_T with

    Omega_T = D^2 / (2 S)                                                       (term 1)
            + sum_t eta_t^2 G_t^2 / (2 S)                                       (term 2)
            + 1/2 sum_{k=1}^{T-1} [eta_k / A_k] [Q_k / B_k]                     (term 3)

    S = sum_{t=1}^T eta_t,  A_k = sum_{t=k+1}^T eta_t,  B_k = sum_{t=k}^T eta_t,
    Q_k = sum_{t=k}^T eta_t^2 G_t^2.

A_k, B_k and Q_k are suffix sums, so the whole bound is a handful of passes over the array.
Suffix sums are accumulated from the end (not as S minus a prefix sum): a tail of exact zeros then
gives exact zeros, and the small sums near the end keep their relative accuracy.

Writing eta_t = gamma m_t, term 1 scales as 1/gamma and terms 2 and 3 as gamma, so with t1, t2, t3
computed at gamma = 1 the bound-optimal base LR is gamma* = sqrt(t1 / (t2 + t3)) and the optimal
bound is 2 sqrt(t1 (t2 + t3)). With a scalar G, gamma* is proportional to D / G: ratios of gamma*
between schedules (the LR transfer) do not depend on D or G.

Conventions at the edges: a term with eta_k = 0 contributes 0 (a warmup starting at LR 0 is
fine); eta_k > 0 followed only by zero step sizes (A_k = 0) makes term 3, hence the bound, +inf;
an all-zero sequence has t1 = +inf, t2 = t3 = 0 and no optimal LR (nan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BoundTerms:
    """The three terms of Omega_T for one step-size sequence."""

    t1: float
    t2: float
    t3: float

    @property
    def total(self) -> float:
        """Omega_T = t1 + t2 + t3."""
        return self.t1 + self.t2 + self.t3

    def scaled(self, gamma: float) -> BoundTerms:
        """The terms for step sizes gamma * eta (t1 / gamma, gamma t2, gamma t3)."""
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        return BoundTerms(self.t1 / gamma, self.t2 * gamma, self.t3 * gamma)

    @property
    def optimal_scale(self) -> float:
        """gamma* = sqrt(t1 / (t2 + t3)): the factor on eta that minimises the bound (nan if none)."""
        rest = self.t2 + self.t3
        if math.isinf(self.t1) or (rest == 0 and self.t1 == 0):
            return math.nan
        if rest == 0:
            return math.inf
        return math.sqrt(self.t1 / rest)

    @property
    def optimal_total(self) -> float:
        """min over gamma of Omega_T(gamma eta) = 2 sqrt(t1 (t2 + t3))."""
        if math.isinf(self.t1):
            return math.inf
        return 2.0 * math.sqrt(self.t1 * (self.t2 + self.t3))


def _as_steps(etas: Any) -> tuple[np.ndarray, float]:
    """The step sizes as a float64 array, and their sum S."""
    eta = np.asarray(etas, dtype=np.float64)
    if eta.ndim != 1 or eta.size == 0:
        raise ValueError(f"step sizes must be a non-empty 1-D array, got shape {eta.shape}")
    eta = np.ascontiguousarray(eta)
    total = float(eta.sum())
    if not math.isfinite(total) or eta.min() < 0:  # a nan or inf anywhere makes the sum non-finite
        raise ValueError("step sizes must be finite and >= 0")
    return eta, total


def _grad_sq(G: Any, n: int) -> tuple[float, np.ndarray | None]:
    """G^2 as a scalar, or as an array of length n (then the scalar is 1)."""
    g = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(g)) or (g.size and g.min() < 0):
        raise ValueError("G must be finite and >= 0")
    if g.ndim == 0:
        return float(g) ** 2, None
    if g.shape != (n,):
        raise ValueError(f"G must be a scalar or an array of the {n} step sizes' length, got shape {g.shape}")
    return 1.0, g * g


def _check_D(D: float) -> float:
    if isinstance(D, bool) or not isinstance(D, (int, float, np.floating)) or not math.isfinite(D) or D <= 0:
        raise ValueError(f"D must be a finite number > 0, got {D!r}")
    return float(D)


def suffix_sums(x: np.ndarray, out: np.ndarray, width: int = 16) -> np.ndarray:
    """out[k] = sum_{t >= k} x[t] (out may be x itself). Returns out.

    One cumulative sum from the end (a reversed view, no copy). `width` is accepted for callers of
    the former row layout (rows of `width` entries summed column by column); it no longer matters:
    the column passes read every cache line `width` times and, on a loaded machine, cost 3x a plain
    cumulative sum. Sums of exact zeros stay exact zeros (a tail of LR 0 is recognised exactly).
    """
    if not out.flags.c_contiguous or out.shape != x.shape:
        raise ValueError("out must be a contiguous array of x's shape")
    np.cumsum(x[::-1], out=out[::-1])
    return out


def bound_terms(etas: Any, D: float = 1.0, G: Any = 1.0) -> BoundTerms:
    """t1, t2, t3 of Omega_T for the step sizes eta_1..eta_T (see the module docstring), O(T).

    G is a scalar or an array G_1..G_T.
    """
    eta, total = _as_steps(etas)
    D = _check_D(D)
    g2, g2_array = _grad_sq(G, eta.size)
    if total == 0.0:
        return BoundTerms(math.inf, 0.0, 0.0)
    # The two suffix sums dominate; the term-3 products reuse the Q buffer (no extra allocation).
    q = np.multiply(eta, eta)
    if g2_array is not None:
        q *= g2_array
    t1 = D * D / (2.0 * total)
    t2 = g2 * float(q.sum()) / (2.0 * total)
    if eta.size == 1:
        return BoundTerms(t1, t2, 0.0)
    after = suffix_sums(eta, np.empty_like(eta))  # B_k = sum_{t>=k} eta_t
    suffix_sums(q, q)  # Q_k = sum_{t>=k} eta_t^2 G_t^2, in place
    ratio = q[:-1]
    head = eta[:-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio /= after[:-1]  # Q_k / B_k
        ratio /= after[1:]  # ... / A_k
        # sum_k eta_k Q_k / (A_k B_k); einsum, not np.dot, whose threaded BLAS stalls on a loaded machine
        t3 = float(np.einsum("i,i->", ratio, head))
        if math.isnan(t3):
            # A positive step followed only by zero steps (A_k = 0) makes the bound infinite, even
            # when Q_k = 0 too (0/0); a zero step (eta_k = 0) contributes 0 whatever follows.
            if np.any((head > 0) & (after[1:] == 0)):
                t3 = math.inf
            else:
                t3 = float(np.where(head > 0, ratio * head, 0.0).sum())
    return BoundTerms(t1, t2, 0.5 * g2 * t3)


def bound(etas: Any, D: float = 1.0, G: Any = 1.0) -> float:
    """Omega_T for the step sizes eta_1..eta_T."""
    return bound_terms(etas, D, G).total


def optimal_scale(multipliers: Any, D: float = 1.0, G: Any = 1.0) -> tuple[float, float]:
    """(gamma*, optimal bound) for step sizes gamma * m_t: sqrt(t1 / (t2 + t3)), 2 sqrt(t1 (t2 + t3))."""
    terms = bound_terms(multipliers, D, G)
    return terms.optimal_scale, terms.optimal_total


def bound_over_time(etas: Any, ts: Any, D: float = 1.0, G: Any = 1.0) -> np.ndarray:
    """Omega_t of the prefix eta_1..eta_t for each t in ts (1 <= t <= T): the bound had the run stopped at t.

    Each value costs O(t): pass a subsample of t for long runs (see `sample_steps`).
    """
    eta, _ = _as_steps(etas)
    g = np.asarray(G, dtype=np.float64)
    if g.ndim == 1 and g.shape != eta.shape:
        raise ValueError(f"G must be a scalar or an array of the {eta.size} step sizes' length, got shape {g.shape}")
    out = []
    for t in np.asarray(ts, dtype=np.int64).reshape(-1):
        if not 1 <= t <= eta.size:
            raise ValueError(f"t must be in [1, {eta.size}], got {t}")
        out.append(bound_terms(eta[:t], D, g if g.ndim == 0 else g[:t]).total)
    return np.array(out, dtype=np.float64)


def sample_steps(n: int, points: int = 200) -> np.ndarray:
    """About `points` values of t in [1, n], denser at the end where schedules change fastest, always with n."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n <= points:
        return np.arange(1, n + 1)
    uniform = np.linspace(1, n, points // 2)
    tail = n - np.geomspace(1, n * 0.5, points - points // 2) + 1
    return np.unique(np.concatenate([uniform, tail, [n]]).round().astype(np.int64).clip(1, n))
