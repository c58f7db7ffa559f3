"""The LR curve of a config before paying for a GPU: key steps, a sparkline, a CSV, a PNG.

Key steps: 0, W - 1, W, the quarter points of the horizon, T - 1, the last step of the run, and
every restart (a step where the multiplier jumps back up after the warmup). The LR of a group at
step s is base_lr_group x m(s), exactly as the torch adapter computes it.
"""

from __future__ import annotations

import io
import os
from typing import Any

from lora_sched._lazy import np
from lora_sched.config.model import LoraConfig
from lora_sched.config.writer import atomic_write_bytes, atomic_write_text
from lora_sched.errors import ConfigError, problem

SPARK = "▁▂▃▄▅▆▇█"
MAX_RESTARTS_SHOWN = 24


def curve(cfg: LoraConfig) -> Any:
    """m(s) for every step of the run (a NumPy array); custom classes through the torch adapter."""
    if cfg.scheduler_type:
        try:
            from lora_sched.torch.custom import preview_multipliers  # type: ignore[attr-defined]
        except ImportError:
            raise ConfigError(
                cfg.locate(
                    [
                        problem(
                            "lr_scheduler_type",
                            "a catalogue schedule (lr_scheduler) to preview",
                            cfg.scheduler_type,
                            "a custom torch class has no closed form here; the torch adapter "
                            "(pip install 'lora_sched[train]') previews it by stepping the class",
                        )
                    ]
                )
            ) from None
        return np.asarray(preview_multipliers(cfg, trust=cfg.trust_scheduler_code), dtype=np.float64)
    return cfg.resolve().multipliers()


def restarts(m: Any, warmup: int) -> list[int]:
    """Steps after the warmup where the multiplier starts rising again after having fallen."""
    if m.size < 3:
        return []
    d = np.diff(m[warmup:])
    up, down = d > 1e-12, d < -1e-12
    fallen = np.maximum.accumulate(down)
    # d[i] compares steps W+i and W+i+1; a rise starting at i after some fall before it
    starts = np.flatnonzero(up[1:] & ~up[:-1] & fallen[:-1]) + 1
    return [int(warmup + i + 1) for i in starts]


def key_steps(cfg: LoraConfig, m: Any) -> list[tuple[int, str]]:
    """(step, why) for the steps worth printing, sorted and unique."""
    rs = cfg.resolve()
    n = int(m.size)
    horizon, warmup = rs.horizon, rs.warmup
    marks: dict[int, list[str]] = {}

    def mark(step: int, why: str) -> None:
        if 0 <= step < n:
            marks.setdefault(step, []).append(why)

    mark(0, "first step")
    if warmup > 0:
        mark(warmup - 1, "last warmup step")
        mark(warmup, "warmup done")
    for q, label in ((1, "T/4"), (2, "T/2"), (3, "3T/4")):
        mark(horizon * q // 4, label)
    mark(horizon - 1, "T-1 (last step of the horizon)")
    mark(n - 1, "last step of the run")
    for s in restarts(m, warmup)[:MAX_RESTARTS_SHOWN]:
        mark(s, "restart (the LR rises again)")
    return [(s, ", ".join(marks[s])) for s in sorted(marks)]


def sparkline(m: Any, width: int = 64) -> str:
    """One line of block characters, each the mean multiplier over its share of the steps."""
    if m.size == 0:
        return ""
    width = min(width, int(m.size))
    edges = np.linspace(0, m.size, width + 1).astype(int)
    means = np.add.reduceat(m, edges[:-1]) / np.diff(edges)
    top = float(means.max()) or 1.0
    levels = np.clip((means / top * (len(SPARK) - 1)).round().astype(int), 0, len(SPARK) - 1)
    return "".join(SPARK[i] for i in levels)


def table(cfg: LoraConfig, m: Any, steps: list[tuple[int, str]]) -> str:
    lrs = cfg.group_lrs()
    head = f"{'step':>9}  {'multiplier':>12}  {'unet LR':>12}  {'text enc. LR':>12}  note"
    rows = [head, "-" * len(head)]
    for s, why in steps:
        x = float(m[s])
        rows.append(f"{s:>9}  {x:>12.6g}  {lrs['unet'] * x:>12.6g}  {lrs['text_encoder'] * x:>12.6g}  {why}")
    return "\n".join(rows)


def csv_text(cfg: LoraConfig, m: Any) -> str:
    """step,multiplier,lr_unet,lr_text_encoder for every step; floats in repr form (exact round trip)."""
    lrs = cfg.group_lrs()
    unet = (m * lrs["unet"]).tolist()
    te = (m * lrs["text_encoder"]).tolist()
    out = io.StringIO()
    out.write("step,multiplier,lr_unet,lr_text_encoder\n")
    for s, (x, u, t) in enumerate(zip(m.tolist(), unet, te)):
        out.write(f"{s},{x!r},{u!r},{t!r}\n")
    return out.getvalue()


def write_csv(cfg: LoraConfig, m: Any, path: str) -> None:
    atomic_write_text(path, csv_text(cfg, m))


def write_png(cfg: LoraConfig, m: Any, path: str) -> None:
    """A plot of the LR per group over the run (matplotlib, Agg backend, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    lrs = cfg.group_lrs()
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    steps = np.arange(m.size)
    ax.plot(steps, m * lrs["unet"], label=f"unet (base {lrs['unet']:g})")
    if lrs["text_encoder"] != lrs["unet"]:
        ax.plot(steps, m * lrs["text_encoder"], label=f"text encoder (base {lrs['text_encoder']:g})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{cfg.schedule_name} ({os.path.basename(cfg.path or '')})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
