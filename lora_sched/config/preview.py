"""The LR curve of a config before paying for a GPU: key steps, a sparkline, a CSV, a PNG.

Key steps: 0, W - 1, W, the quarter points of the horizon, T - 1, the last step of the run, and
every restart (a step where the multiplier jumps back up after the warmup). The LR of a group at
step s is base_lr_group x m(s), exactly as the torch adapter computes it; with an absolute floor
(REX's min_lr) m is drawn per group from the group's own base LR, and a custom class is stepped with
every group's base LR.

Memory is bounded for any run length: a run of up to DENSE_STEPS steps is evaluated at every step;
a longer one (up to a billion steps) on an even sample of DENSE_STEPS steps plus every key step,
which the sparkline, the PNG and the restart search use (a restart seen between two samples is
then located exactly). The table's values are exact at their steps, and `--csv` / `--steps`
evaluate every step in blocks of BLOCK_STEPS.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from lora_sched._lazy import np
from lora_sched.config.model import LoraConfig
from lora_sched.config.writer import atomic_open, atomic_write_bytes
from lora_sched.errors import ConfigError, problem

SPARK = "▁▂▃▄▅▆▇█"
MAX_RESTARTS_SHOWN = 24
#: Runs up to this many steps are previewed at every step; longer ones on a sample of this many.
DENSE_STEPS = 1 << 22
#: Steps evaluated at a time when every step is written (--csv, --steps).
BLOCK_STEPS = 1 << 18
#: A custom torch class is stepped one update at a time (0.1-0.2 ms each): its preview covers at most
#: this many steps.
CUSTOM_STEPS = 200_000
#: Differences below this are flat, not a rise or a fall.
_FLAT = 1e-12


class Curve(NamedTuple):
    """m at `steps`: every step of the previewed range, or an even sample of it (int64, increasing,
    first and last step included). `at(steps)` gives m exactly at any steps of the range."""

    steps: Any
    m: Any
    run_length: int  #: steps in the run
    covered: int  #: steps the preview covers: the run, unless a custom class was cut at CUSTOM_STEPS
    at: Callable[[Any], Any]
    #: LR of each param group (`LoraConfig.group_lrs`) at given steps, with m the multipliers there
    lrs: Callable[[Any, Any], dict[str, Any]]
    resolved: Any  #: the resolved schedule the curve was drawn from (resolved once per preview)

    @property
    def dense(self) -> bool:
        return int(self.steps.size) == self.covered

    def blocks(self, size: int = BLOCK_STEPS) -> Iterator[tuple[Any, Any]]:
        """(steps, m) for every step of the covered range, `size` steps at a time."""
        for start in range(0, self.covered, size):
            steps = np.arange(start, min(start + size, self.covered), dtype=np.int64)
            yield steps, (self.m[start : start + steps.size] if self.dense else self.at(steps))


def curve(cfg: LoraConfig, bases: dict[str, float] | None = None, resolved: Any = None) -> Curve:
    """The multiplier over the run (sampled past DENSE_STEPS); custom classes through the torch adapter.

    bases: each param group's base LR, in the order to show them (default: the config's groups);
    resolved: the resolved schedule (default: resolved on the config's own data, one process)."""
    resolved = cfg.resolve() if resolved is None else resolved
    n = int(resolved.run_length)
    bases = cfg.group_lrs() if bases is None else bases
    if cfg.scheduler_type:
        covered = min(n, CUSTOM_STEPS)
        m, by_group = _custom_lrs(cfg, resolved, covered)

        def custom_lrs(steps: Any, _m: Any) -> dict[str, Any]:
            return {group: lrs[np.asarray(steps)] for group, lrs in by_group.items()}

        every = np.arange(covered, dtype=np.int64)
        return Curve(every, m, n, covered, lambda steps: m[np.asarray(steps)], custom_lrs, resolved)
    steps, m = sample(resolved)

    def lrs(wanted: Any, m_there: Any) -> dict[str, Any]:
        return group_lrs_at(resolved, bases, wanted, m_there)

    if steps.size == n:
        return Curve(steps, m, n, n, lambda wanted: m[np.asarray(wanted)], lrs, resolved)
    return Curve(
        steps, m, n, n, lambda wanted: resolved.multipliers(np.asarray(wanted, dtype=np.float64)), lrs, resolved
    )


def own_curve(run_length: int, group_lrs: Callable[[Any], dict[str, Any]], bases: dict[str, float]) -> Curve:
    """The curve of a trainer's own LR function (no catalogue schedule expresses it): m is the first
    group's LR over its base LR (a group with base 0 shows 0)."""
    n = int(run_length)
    steps = np.arange(n, dtype=np.int64) if n <= DENSE_STEPS else np.linspace(0, n - 1, DENSE_STEPS).astype(np.int64)
    lead = next((g for g, base in bases.items() if base), next(iter(bases)))

    def at(wanted: Any) -> Any:
        base = bases[lead] or 1.0
        return group_lrs(np.asarray(wanted, dtype=np.int64))[lead] / base

    def lrs(wanted: Any, _m: Any) -> dict[str, Any]:
        return group_lrs(np.asarray(wanted, dtype=np.int64))

    return Curve(steps, at(steps), n, n, at, lrs, None)


def group_lrs_at(resolved: Any, bases: dict[str, float], steps: Any, m: Any) -> dict[str, Any]:
    """LR of each group at `steps` (m: the multipliers there): base x m, or under an absolute floor
    (REX's min_lr) each group's own curve (`ResolvedSchedule.group_lrs`)."""
    if not resolved.per_group:
        return {group: m * base for group, base in bases.items()}
    wanted = np.asarray(steps, dtype=np.float64)
    return {group: resolved.group_lrs(base, wanted) for group, base in bases.items()}


def sample(resolved: Any) -> tuple[Any, Any]:
    """(steps, m) of a resolved schedule: every step of a run of up to DENSE_STEPS steps, else an even
    sample of DENSE_STEPS steps plus the key steps (warmup ends, quarter points, T - 1, the last)."""
    n = int(resolved.run_length)
    if n <= DENSE_STEPS:
        return np.arange(n, dtype=np.int64), resolved.multipliers()
    grid = np.linspace(0, n - 1, DENSE_STEPS).astype(np.int64)  # increasing: n > DENSE_STEPS
    marks = np.array(sorted(set(_marked_steps(resolved, n))), dtype=np.int64)
    at = np.searchsorted(grid, marks)
    new = grid[np.minimum(at, grid.size - 1)] != marks
    steps = np.insert(grid, at[new], marks[new])  # (np.union1d hashes every step: seconds)
    return steps, resolved.multipliers(steps.astype(np.float64))


def envelope(x: Any, y: Any, points: int = 2000) -> tuple[Any, Any]:
    """(x, y) to draw: every point of a short curve, else a min/max envelope over `points` // 2
    buckets (a restart or a spike stays visible; a plot of millions of points takes seconds)."""
    n = len(y)
    if n <= points:
        return x, y
    edges = np.linspace(0, n, points // 2 + 1).astype(np.int64)
    lo = np.minimum.reduceat(y, edges[:-1])
    hi = np.maximum.reduceat(y, edges[:-1])
    first_max = y[edges[:-1]] >= y[np.minimum(edges[1:] - 1, n - 1)]  # falling bucket: max first
    pairs = np.where(first_max[:, None], np.stack([hi, lo], 1), np.stack([lo, hi], 1))
    return np.repeat(np.asarray(x)[edges[:-1]], 2), pairs.reshape(-1)


def _custom_lrs(cfg: LoraConfig, resolved: Any, steps: int) -> tuple[Any, dict[str, Any]]:
    """m (the LR of a group at learning_rate / learning_rate) and each param group's LRs, from one
    pass of the class over a dummy optimizer holding all of them (a class with absolute LR
    arguments, such as OneCycleLR's max_lr, gives each group the LR it really gets)."""
    support = cfg.custom_classes
    base = float(resolved.base_lr)
    bases = cfg.group_lrs()
    args = (resolved.warmup, resolved.warmup_start, resolved.warmup_type, cfg.trust_scheduler_code)
    try:
        if support is None:
            raise ImportError("the config was loaded without custom class support")
        lrs = support.preview_lrs(cfg.scheduler_type, cfg.scheduler_type_args, [base, *bases.values()], steps, *args)
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
    lrs = np.asarray(lrs)
    return lrs[:, 0] / base, {group: lrs[:, i + 1] for i, group in enumerate(bases)}


def restarts(m: Any, warmup: int) -> list[int]:
    """Steps after the warmup where the multiplier starts rising again after having fallen."""
    return [int(warmup + i) for i in _rise_starts(m[warmup:])]


def _rise_starts(m: Any, fallen_before: bool = False) -> Any:
    """Indexes i where m rises from i - 1 to i, did not rise just before, and has fallen somewhere before."""
    if m.size < 3 - fallen_before:
        return np.empty(0, dtype=np.int64)
    d = np.diff(m)
    up, down = d > _FLAT, d < -_FLAT
    fallen = np.maximum.accumulate(down) | fallen_before
    # d[i] compares i and i + 1; a rise starting at i after some fall before it
    starts = np.flatnonzero(up[1:] & ~up[:-1] & fallen[:-1]) + 1
    if fallen_before and up.size and up[0]:
        starts = np.concatenate(([0], starts))
    return starts + 1


def curve_restarts(c: Curve, warmup: int, limit: int = MAX_RESTARTS_SHOWN) -> list[int]:
    """The first `limit` restarts: exact on a dense curve. On a sample, a rise seen from sample j - 1
    to j started after the lowest point, somewhere after sample j - 2: every step from there to j is
    evaluated to find it (restarts closer together than the sampling interval can be missed)."""
    if c.dense:
        return restarts(c.m, warmup)[:limit]
    after = int(np.searchsorted(c.steps, warmup))
    found: list[int] = []
    for i in _rise_starts(c.m[after:])[:limit]:
        left, right = int(c.steps[after + i - 2]), int(c.steps[after + i])
        start = max(left - 1, warmup)  # one step before the window: a rise at its first step is seen
        window = c.at(np.arange(start, right + 1))
        exact = [start + int(j) for j in _rise_starts(window, fallen_before=True) if start + j > left]
        found.append(exact[0] if exact else right)
    return found


def _marked_steps(resolved: Any, n: int) -> list[int]:
    if resolved is None:
        return [0, n - 1, *(n * q // 4 for q in (1, 2, 3))]
    steps = [0, n - 1, resolved.horizon - 1, *(resolved.horizon * q // 4 for q in (1, 2, 3))]
    if resolved.warmup > 0:
        steps += [resolved.warmup - 1, resolved.warmup]
    return [s for s in steps if 0 <= s < n]


def key_steps(cfg: LoraConfig, c: Curve) -> list[tuple[int, str]]:
    """(step, why) for the steps worth printing, sorted and unique."""
    resolved = c.resolved
    n = c.covered
    horizon, warmup = (resolved.horizon, resolved.warmup) if resolved is not None else (c.run_length, 0)
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
    mark(n - 1, "last step of the run" if n == c.run_length else "last step previewed")
    for s in curve_restarts(c, warmup):
        mark(s, "restart (the LR rises again)")
    return [(s, ", ".join(marks[s])) for s in sorted(marks)]


def sampling_note(c: Curve) -> str | None:
    """One line saying how a long run was previewed, or None when every step was."""
    if c.covered < c.run_length:
        return (
            f"(a custom class is stepped one update at a time: the preview covers its first {c.covered:,} "
            f"of {c.run_length:,} steps)"
        )
    if not c.dense:
        every = c.run_length / DENSE_STEPS
        return (
            f"(a {c.run_length:,}-step run: the sparkline, the restarts and the PNG use {c.steps.size:,} "
            f"sampled steps, about one every {every:,.0f}; the table's values are exact)"
        )
    return None


def adaptive_lr_note(cfg: LoraConfig) -> str | None:
    """One line for an LR-free optimizer (D-Adaptation, Prodigy): the curve is the schedule's lr,
    and each update steps d x lr, d the optimizer's own estimate (None for other optimizers)."""
    from lora_sched.config import optimizers

    spec = optimizers.lookup(str(cfg.values.get("optimizer_type") or ""))
    if spec is None or not spec.one_lr:
        return None
    return (
        f"({spec.name} adapts its step size: each update uses d x lr, with d its own estimate; the LRs below are "
        "lr, whose curve d x lr follows in shape; `train` logs d*lr per group next to lr)"
    )


def sparkline(c: Curve, width: int = 64) -> str:
    """One line of block characters, each the mean multiplier over its share of the steps (of the sample)."""
    if c.covered == 0:
        return ""
    width = min(width, c.covered)
    edges = np.searchsorted(c.steps, np.linspace(0, c.covered, width + 1).astype(np.int64))
    means = np.add.reduceat(c.m, edges[:-1]) / np.diff(edges)
    top = float(means.max()) or 1.0
    levels = np.clip((means / top * (len(SPARK) - 1)).round().astype(int), 0, len(SPARK) - 1)
    return "".join(SPARK[i] for i in levels)


#: How the table heads a group's column (other groups: their role name).
_GROUP_LABELS = {"unet": "unet LR", "text_encoder": "text enc. LR"}


def _rows(c: Curve, steps: Any, m: Any, notes: list[str] | None = None) -> Iterator[str]:
    columns = [lrs.tolist() for lrs in c.lrs(steps, m).values()]
    for i, (s, x) in enumerate(zip(steps.tolist(), m.tolist())):
        note = notes[i] if notes else ""
        cells = "".join(f"  {column[i]:>12.6g}" for column in columns)
        yield f"{s:>9}  {x:>12.6g}{cells}  {note}"


def table_head(groups: Iterable[str] = ("unet", "text_encoder")) -> str:
    labels = "".join(f"  {_GROUP_LABELS.get(g, g + ' LR'):>12}" for g in groups)
    head = f"{'step':>9}  {'multiplier':>12}{labels}  note"
    return f"{head}\n{'-' * len(head)}"


def _groups(c: Curve) -> list[str]:
    first = np.zeros(1, dtype=np.int64)
    return list(c.lrs(first, c.at(first)))


def table(cfg: LoraConfig | None, c: Curve, steps: list[tuple[int, str]]) -> str:
    """The multiplier and each group's LR at `steps` ((step, note) pairs), exact at each step."""
    at = np.array([s for s, _ in steps], dtype=np.int64)
    return "\n".join([table_head(_groups(c)), *_rows(c, at, c.at(at), [why for _, why in steps])])


def every_step_table(cfg: LoraConfig | None, c: Curve) -> Iterator[str]:
    """The table at every step, a block of lines at a time (a billion steps never sit in memory)."""
    yield table_head(_groups(c))
    for steps, m in c.blocks():
        yield "\n".join(_rows(c, steps, m))


def csv_blocks(cfg: LoraConfig | None, c: Curve) -> Iterator[str]:
    """step, then lr_<group> for each param group in its order, for every step; floats in repr form
    (an exact round trip)."""
    yield ",".join(["step", *(f"lr_{g}" for g in _groups(c))]) + "\n"
    for steps, m in c.blocks():
        columns = [lrs.tolist() for lrs in c.lrs(steps, m).values()]
        yield "".join(
            ",".join([str(s), *(repr(column[i]) for column in columns)]) + "\n" for i, s in enumerate(steps.tolist())
        )


def csv_text(cfg: LoraConfig | None, c: Curve) -> str:
    return "".join(csv_blocks(cfg, c))


def write_csv(cfg: LoraConfig, c: Curve, path: str) -> None:
    """The CSV of every step, written block by block into a temporary file that replaces `path`."""
    with atomic_open(path) as f:
        for text in csv_blocks(cfg, c):
            f.write(text.encode("utf-8"))


#: At most this many epoch boundaries are drawn (a longer run draws every k-th), and this many labelled.
MAX_EPOCH_LINES, MAX_EPOCH_LABELS = 100, 8
#: The gid of the marks `lr_figure` draws (tests and tools find them by it).
EPOCH_GID, RESTART_GID = "epoch-boundary", "restart"


def epoch_marks(run_length: int, steps_per_epoch: int | None) -> list[tuple[int, str]]:
    """(first step of an epoch, its label or '') for every epoch after the first, thinned to at most
    MAX_EPOCH_LINES lines and MAX_EPOCH_LABELS labels (a label on each line would overlap)."""
    if not steps_per_epoch or steps_per_epoch >= run_length:
        return []
    starts = list(range(steps_per_epoch, run_length, steps_per_epoch))
    every = -(-len(starts) // MAX_EPOCH_LINES)
    shown = starts[every - 1 :: every]
    label_every = -(-len(shown) // MAX_EPOCH_LABELS)
    return [(s, f"epoch {s // steps_per_epoch + 1}" if i % label_every == 0 else "") for i, s in enumerate(shown)]


def _draw_marks(ax: Any, marks: list[tuple[int, str]], gid: str, color: str, ls: str, above: bool) -> None:
    """Light vertical lines at `marks`, each label written small: above the plot (`above`, epochs),
    else up the line from the bottom (restarts), so the two never overlap where they coincide."""
    transform = ax.get_xaxis_transform()  # x in steps, y in axes fraction
    for step, label in marks:
        ax.axvline(step, color=color, lw=0.8, ls=ls, alpha=0.6, zorder=0, gid=gid)
        if label and above:
            ax.text(step, 1.01, label, transform=transform, fontsize=7, color=color, ha="center", va="bottom", gid=gid)
        elif label:
            ax.text(step, 0.02, f" {label}", transform=transform, fontsize=7, color=color, rotation=90, gid=gid)


def _lr_axis(ax: Any, top: float) -> None:
    """The LR axis in units of a power of ten written in its label ("learning rate (x 1e-04)"): the
    offset text matplotlib would write at the top corner collides with the epoch labels."""
    from matplotlib.ticker import FuncFormatter

    exponent = int(np.floor(np.log10(top))) if top > 0 and np.isfinite(top) else 0
    if -3 <= exponent <= 3:
        ax.set_ylabel("learning rate")
        return
    scale = 10.0**exponent
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value / scale:.3g}"))
    ax.set_ylabel(f"learning rate (x 1e{exponent:+03d})")


def lr_figure(
    cfg: LoraConfig | None,
    c: Curve,
    title: str | None = None,
    bases: dict[str, float] | None = None,
    steps_per_epoch: int | None = None,
) -> Any:
    """The LR of every param group over the run (a matplotlib Figure, Agg backend, imported only
    here): a group whose curve coincides with an earlier one's is drawn dashed on top of it; the LR
    holds for a whole step, so a dense curve is drawn as steps; light vertical lines mark where each
    epoch starts (grey, dotted) and each restart (red, dashed)."""
    from lora_sched.dependencies import import_optional

    import_optional("matplotlib", "matplotlib", "plot").use("Agg")
    from matplotlib.figure import Figure

    lrs = c.lrs(c.steps, c.m)
    fig = Figure(figsize=(8, 4.4), dpi=100)
    ax = fig.add_subplot()
    if bases is None:
        bases = cfg.group_lrs() if cfg is not None else {}
    drawn: list[Any] = []
    as_steps = c.dense and c.covered <= 2000  # each step's LR drawn over the whole step
    for group, values in lrs.items():
        same = any(np.array_equal(values, other) for other in drawn)
        label = group.replace("_", " ") + (f" (base {bases[group]:g})" if group in bases else "")
        x, y = (np.append(c.steps, c.covered), np.append(values, values[-1:])) if as_steps else (c.steps, values)
        ax.plot(
            *envelope(x, y),
            label=label + (" (same curve)" if same else ""),
            ls="--" if same else "-",
            drawstyle="steps-post" if as_steps else "default",
        )
        drawn.append(values)
    _draw_marks(ax, epoch_marks(c.covered, steps_per_epoch), EPOCH_GID, "0.4", ":", above=True)
    warmup = c.resolved.warmup if c.resolved is not None else 0
    found = curve_restarts(c, warmup)
    labelled = [(s, "restart" if len(found) <= MAX_EPOCH_LABELS else "") for s in found]
    _draw_marks(ax, labelled, RESTART_GID, "C3", "--", above=False)
    ax.set_xlim(0, max(c.covered if as_steps else c.covered - 1, 1))
    ax.set_xlabel("optimizer step")
    _lr_axis(ax, max((float(np.max(v)) for v in lrs.values() if np.size(v)), default=0.0))
    if title is None and cfg is not None:
        title = f"{cfg.schedule_name} ({os.path.basename(cfg.path or '')})"
    ax.set_title(title or "", pad=14)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(lrs), 3), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def write_png(
    cfg: LoraConfig | None,
    c: Curve,
    path: str,
    title: str | None = None,
    bases: dict[str, float] | None = None,
    steps_per_epoch: int | None = None,
) -> None:
    """`lr_figure` written as a PNG (atomically)."""
    fig = lr_figure(cfg, c, title, bases, steps_per_epoch)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
