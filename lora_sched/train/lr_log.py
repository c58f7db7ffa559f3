"""What a run reports of its LR and loss: the log's LR columns, the TensorBoard tags, the progress
bar's text, and the loss + LR plot written at the end.

LR-free optimizers (D-Adaptation, Prodigy) scale every update by an estimate d they adapt: the
step they take is d x lr, where lr is the schedule's value. For them each group also gets its
effective LR ``d*lr_<group>`` (a log column) and ``lr/d*lr/<group>`` (a TensorBoard tag, sd-scripts'
name), read before the update, so a row's d x lr is what that row's update used.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from lora_sched.config import optimizers
from lora_sched.config.writer import atomic_write_bytes

PLOT_NAME = "train_plot.png"


def adapts_lr(optimizer_type: str) -> bool:
    """Whether the optimizer scales the schedule's LR by an adapted d (D-Adaptation, Prodigy)."""
    spec = optimizers.lookup(optimizer_type)
    return spec is not None and spec.one_lr


class LrReport:
    """The LR values a step reports: each group's scheduled LR, then (LR-free optimizers) each d x lr."""

    def __init__(self, optimizer_type: str, group_names: list[str]) -> None:
        self.groups = list(group_names)
        self.adaptive = adapts_lr(optimizer_type)

    def columns(self) -> list[str]:
        """The log's LR columns, in the order `values` gives them."""
        effective = [f"d*lr_{g}" for g in self.groups] if self.adaptive else []
        return [f"lr_{g}" for g in self.groups] + effective

    def values(self, optimizer: Any, lrs: list[float]) -> list[float]:
        """`lrs` (one per group), then d x lr per group from the optimizer's groups (before its step)."""
        if not self.adaptive:
            return list(lrs)
        return list(lrs) + [float(g["d"]) * lr for g, lr in zip(optimizer.param_groups, lrs)]

    def tracker(self, values: list[float], loss: float) -> dict[str, float]:
        """TensorBoard scalars: loss, lr/<group> and (LR-free optimizers) lr/d*lr/<group>."""
        logs = {"loss": loss}
        for column, value in zip(self.columns(), values):
            logs[column.replace("d*lr_", "lr/d*lr/", 1) if column.startswith("d*lr_") else f"lr/{column[3:]}"] = value
        return logs

    def postfix(self, step: int, values: list[float], loss: float) -> dict[str, str]:
        """The progress bar's text: the first group's LR, and its d x lr for an LR-free optimizer."""
        shown = {"step": str(step), "loss": f"{loss:.4f}", "lr": f"{values[0]:.3g}"}
        if self.adaptive:
            shown["d*lr"] = f"{values[len(self.groups)]:.3g}"
        return shown


def write_plot(log_path: Path, png_path: Path) -> bool:
    """The loss and LR curves of a run's log as a PNG (matplotlib's Agg, written atomically); False when
    matplotlib is not installed or the log holds no step (nothing is written then)."""
    try:  # a bare Figure renders with Agg: pyplot (and the caller's backend) is never touched
        from matplotlib.figure import Figure
    except ImportError:
        return False
    rows = _read_log(log_path)
    if not rows:
        return False
    figure = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True)
    steps = [int(r["step"]) for r in rows]
    loss_axes.plot(steps, [float(r["loss"]) for r in rows], lw=0.8, color="tab:gray", label="loss")
    for column in [c for c in rows[0] if c.startswith("val_")]:  # the validation loss, where measured
        points = [(int(r["step"]), float(r[column])) for r in rows if r[column]]
        if points:
            loss_axes.plot(*zip(*points), marker="o", markersize=3, lw=1, label=column)
    loss_axes.set_ylabel("loss")
    loss_axes.legend(loc="upper right")
    for column in [c for c in rows[0] if c.startswith(("lr_", "d*lr_"))]:
        lr_axes.plot(steps, [float(r[column]) for r in rows], lw=1.2, label=column)
    lr_axes.set_xlabel("step")
    lr_axes.set_ylabel("learning rate")
    lr_axes.legend(loc="upper right")
    _save_atomic(figure, png_path)
    return True


def _read_log(path: Path) -> list[dict[str, str]]:
    """The log's whole rows (a row with a field that is not a finite number is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            if all(math.isfinite(float(v)) for k, v in row.items() if not k.startswith("val_")):  # may be empty
                rows.append(row)
        except (TypeError, ValueError):
            continue
    return rows


def _save_atomic(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
