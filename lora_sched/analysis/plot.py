"""PNG plot for `lora-sched bound --png`: LR curves and the bound over steps (matplotlib imported lazily, Agg)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lora_sched.analysis.bound import bound_over_time, sample_steps
from lora_sched.config.writer import atomic_write_bytes


@dataclass(frozen=True)
class Curve:
    """One schedule to draw: its label, step sizes at base LR 1, its base LR and its bound-optimal one."""

    label: str
    multipliers: np.ndarray
    base_lr: float
    optimal_lr: float


def plot_bounds(curves: Sequence[Curve], out: str | os.PathLike[str], D: float = 1.0, G: Any = 1.0) -> Path:
    """Top: LR per step. Bottom: Omega_t (bound had the run stopped at t) at the configured LR (solid) and
    at the bound-optimal LR (dashed), on about 150 values of t. Written atomically; returns the path."""
    from lora_sched.dependencies import import_optional

    import_optional("matplotlib", "matplotlib", "plot").use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_bound) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for i, c in enumerate(curves):
        color = f"C{i}"
        stride = max(1, c.multipliers.size // 20_000)  # enough points for a 7-inch plot
        steps = np.unique(np.append(np.arange(0, c.multipliers.size, stride), c.multipliers.size - 1))
        ax_lr.plot(steps, c.base_lr * c.multipliers[steps], color=color, label=c.label)
        ts = sample_steps(c.multipliers.size, 150)
        if c.base_lr > 0:
            ax_bound.plot(ts - 1, bound_over_time(c.base_lr * c.multipliers, ts, D, G), color=color, label=c.label)
        if np.isfinite(c.optimal_lr) and c.optimal_lr > 0:
            ax_bound.plot(
                ts - 1,
                bound_over_time(c.optimal_lr * c.multipliers, ts, D, G),
                color=color,
                ls="--",
                label=f"{c.label} at bound-optimal LR {c.optimal_lr:.3g}",
            )
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_ylim(bottom=0)
    ax_lr.legend(fontsize="small")
    ax_lr.grid(lw=0.3, ls="--")
    ax_bound.set_yscale("log")
    ax_bound.set_xlabel("step")
    ax_bound.set_ylabel(f"bound if stopped here (D={D:g}, G={f'{G:g}' if np.ndim(G) == 0 else 'per step'})")
    ax_bound.legend(fontsize="small")
    ax_bound.grid(which="both", lw=0.3, ls="--")
    fig.suptitle("Convex-optimization bound (Schaipp et al. 2025, Thm. 1)")
    fig.tight_layout()

    path = Path(out)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
