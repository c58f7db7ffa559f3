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


def _as_steps(etas: Any, allow_empty: bool = False) -> tuple[np.ndarray, float]:
    """The step sizes as a float64 array, and their sum S."""
    eta = np.asarray(etas, dtype=np.float64)
    if eta.ndim != 1 or (eta.size == 0 and not allow_empty):
        raise ValueError(f"step sizes must be a non-empty 1-D array, got shape {eta.shape}")
    eta = np.ascontiguousarray(eta)
    total = float(eta.sum())
    if not math.isfinite(total) or (eta.size and eta.min() < 0):  # a nan or inf anywhere makes the sum non-finite
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


def bound_terms(etas: Any, D: float = 1.0, G: Any = 1.0, flat_value: float = 0.0, flat_steps: int = 0) -> BoundTerms:
    """t1, t2, t3 of Omega_T for the step sizes eta_1..eta_T (see the module docstring), O(T).

    G is a scalar or an array G_1..G_T. `flat_steps` more step sizes, each `flat_value`, follow
    `etas` (a constant tail: a constant schedule after its warmup, a run held after its horizon).
    With a scalar G the tail costs O(1): its sums are c n and c^2 n, and its own term-3 sum is
    c H_{n-1} (each tail step k, r steps from the end, adds c (c^2 r) / (c (r-1) c r) = c / (r-1)).
    """
    if isinstance(flat_steps, bool) or not isinstance(flat_steps, int) or flat_steps < 0:
        raise ValueError(f"flat_steps must be an int >= 0, got {flat_steps!r}")
    if flat_steps and np.ndim(G) != 0:  # per-step G: the tail's sums are no longer closed forms
        etas = np.concatenate([np.asarray(etas, dtype=np.float64).reshape(-1), np.full(flat_steps, flat_value)])
        flat_steps = 0
    eta, total = _as_steps(etas, allow_empty=flat_steps > 0)
    c, n = float(flat_value), flat_steps
    if n and (not math.isfinite(c) or c < 0):
        raise ValueError("step sizes must be finite and >= 0")
    total += c * n
    D = _check_D(D)
    g2, g2_array = _grad_sq(G, eta.size)
    if total == 0.0:
        return BoundTerms(math.inf, 0.0, 0.0)
    w = eta.size
    # q[:w] holds eta_t^2 G_t^2, then its suffix sums Q_k, then the term-3 ratios (no extra allocation);
    # after[k] = B_k = sum_{t>=k} eta_t, one entry longer than eta so that after[k + 1] is A_k.
    q = np.multiply(eta, eta)
    if g2_array is not None:
        q *= g2_array
    tail_sq = c * c * n
    t1 = D * D / (2.0 * total)
    t2 = g2 * (float(q.sum()) + tail_sq) / (2.0 * total)
    terms = w if n else w - 1  # the last step of the run has no term
    t3 = c * harmonic(n - 1) if n > 1 and c > 0 else 0.0
    if terms > 0:
        after = np.empty(w + 1)
        after[w] = c * n
        suffix_sums(eta, after[:w])
        suffix_sums(q, q)
        if n:
            after[:w] += c * n
            q += tail_sq
        ratio = q[:terms]
        head = eta[:terms]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio /= after[:terms]  # Q_k / B_k
            ratio /= after[1 : terms + 1]  # ... / A_k
            # sum_k eta_k Q_k / (A_k B_k); einsum, not np.dot, whose threaded BLAS stalls on a loaded machine
            head_sum = float(np.einsum("i,i->", ratio, head))
            if math.isnan(head_sum):
                # A positive step followed only by zero steps (A_k = 0) makes the bound infinite, even
                # when Q_k = 0 too (0/0); a zero step (eta_k = 0) contributes 0 whatever follows.
                if np.any((head > 0) & (after[1 : terms + 1] == 0)):
                    head_sum = math.inf
                else:
                    head_sum = float(np.where(head > 0, ratio * head, 0.0).sum())
        t3 += head_sum
    return BoundTerms(t1, t2, 0.5 * g2 * t3)


#: Below this n, H_n is summed term by term; above, its asymptotic series is exact to double precision.
_HARMONIC_SUMMED = 1000


def harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n (0 for n <= 0)."""
    if n <= _HARMONIC_SUMMED:
        return math.fsum(1.0 / j for j in range(1, n + 1))
    # ln n + gamma + 1/(2n) - 1/(12n^2) + 1/(120n^4) - 1/(252n^6); the next term is below 1e-27 here
    inv2 = 1.0 / (n * n)
    series = 1.0 / (2 * n) - inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 / 252))
    return math.log(n) + 0.57721566490153286061 + series


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
