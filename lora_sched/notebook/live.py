"""`lora-sched train` from a notebook cell, watched live: one progress bar updated in place, an LR +
loss plot redrawn every few steps, and the sample images as they are written.

Training runs in a subprocess of the kernel's own interpreter (as `run_cli`: the exit code is
checked, and the kernel holds no model). The view reads what the run writes anyway: each row of
``train_log.csv`` (step, LR per group, loss) and ``sample/OUTPUT_NAME_contact_sheet.png``, polled a
few times a second; the run's own text progress bar is turned off (LORA_SCHED_NO_PROGRESS) and its
other messages are printed below the view. Stopping the cell (Jupyter's interrupt) sends the run
SIGINT: it saves a checkpoint at the end of the current step, as on a terminal.
"""

from __future__ import annotations

import csv
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_sched.config.samplers import contact_sheet_path

LOG_NAME = "train_log.csv"
#: Set in the run's environment: no text progress bar (the view draws its own).
NO_PROGRESS_ENV = "LORA_SCHED_NO_PROGRESS"


@dataclass
class LogRows:
    """What train_log.csv holds so far: steps, the LR of each group, losses; with an LR-free optimizer
    (Prodigy, D-Adaptation) the effective LR d x lr of each group too."""

    steps: list[int] = field(default_factory=list)
    lrs: dict[str, list[float]] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    effective: dict[str, list[float]] = field(default_factory=dict)

    @property
    def shown(self) -> dict[str, list[float]]:
        """The LR that moves the weights: d x lr where the optimizer scales it, else lr."""
        return self.effective or self.lrs


def read_log(path: Path) -> LogRows:
    """The whole rows of the log (a row being written, or a file not there yet, is left out)."""
    rows = LogRows()
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return rows
    lines = text.splitlines(keepends=True)
    whole = [line for line in lines if line.endswith("\n")]
    reader = csv.DictReader(io.StringIO("".join(whole)))
    names = reader.fieldnames or []
    columns = {"lr_": rows.lrs, "d*lr_": rows.effective}
    series = [
        (name, columns[prefix].setdefault(name[len(prefix) :], []))
        for prefix in columns
        for name in names
        if name.startswith(prefix)
    ]
    for row in reader:
        try:
            step, values, loss = int(row["step"]), [float(row[name]) for name, _ in series], float(row["loss"])
        except (KeyError, TypeError, ValueError):
            break
        rows.steps.append(step)
        for (_, target), value in zip(series, values):
            target.append(value)
        rows.losses.append(loss)
    return rows


def plot_png(rows: LogRows, total: int | None, planned: dict[str, Any] | None = None) -> bytes:
    """The LR of each group (left axis; the planned curve dashed) and the loss (right axis) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.3), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if not rows.effective:  # an LR-free optimizer's plan is a multiplier of d, which the run finds
        for group, (steps, lrs) in (planned or {}).items():
            ax.plot(steps, lrs, linestyle="--", linewidth=0.8, color="lightgrey", label=f"planned {group}")
    label = "d*lr" if rows.effective else "lr"
    for group, lrs in rows.shown.items():
        ax.plot(rows.steps, lrs, linewidth=1.4, label=f"{label} {group}")
    ax.set_xlabel("step")
    ax.set_ylabel("effective learning rate (d x lr)" if rows.effective else "learning rate")
    ax.set_xlim(0, max(total or 0, (rows.steps[-1] + 1) if rows.steps else 1))
    loss_ax = ax.twinx()
    loss_ax.plot(rows.steps, rows.losses, color="tab:red", linewidth=0.6, alpha=0.6, label="loss")
    loss_ax.set_ylabel("loss", color="tab:red")
    done = len(rows.steps)
    ax.set_title(f"step {done} of {total}" if total else f"step {done}", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
    if handles:  # below the axes, in a row: inside them it covers the curves it names
        fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=min(len(handles), 5), frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
    else:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@dataclass
class RunFiles:
    """Where the run writes what the view shows, and what the config says it will do."""

    log: Path
    sheet: Path
    total: int | None
    planned: dict[str, Any] | None


def run_files(config: str | Path, args: tuple[str, ...] = ()) -> RunFiles:
    """The log and contact sheet the run of `config` writes (an --output-dir among `args` wins), its
    length and its planned LR curves when the config says (None when it cannot: the run reports why)."""
    from lora_sched.config import load_config
    from lora_sched.errors import ConfigError
    from lora_sched.torch.support import CUSTOM_CLASSES

    try:
        cfg = load_config(config, custom_classes=CUSTOM_CLASSES)
    except ConfigError:
        return RunFiles(Path(LOG_NAME), Path("-"), None, None)  # the run prints the problem and fails
    output_dir = _option(args, "--output-dir") or str(cfg.values["output_dir"])
    folder = Path(os.path.expanduser(output_dir))
    try:
        from lora_sched.notebook.translate import preview_sample

        steps, curves = preview_sample(cfg)
        total = cfg.resolve().run_length
        planned = {group: (steps, lrs) for group, lrs in curves.items()}
    except (ConfigError, ValueError):  # an epoch count with no data here: unknown until the run reads it
        total, planned = None, None
    return RunFiles(folder / LOG_NAME, contact_sheet_path(folder, str(cfg.values["output_name"])), total, planned)


def _option(args: tuple[str, ...], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class LiveView:
    """The progress bar, the plot and the samples, each displayed once and then updated in place."""

    def __init__(self, files: RunFiles, plot_every: int) -> None:
        from IPython.display import display
        from tqdm.auto import tqdm

        self.files, self.plot_every = files, max(1, plot_every)
        self.bar = tqdm(total=files.total, desc="train", unit="step", dynamic_ncols=True)
        self.plot = display(_image(plot_png(LogRows(), files.total, files.planned)), display_id=True)
        self.samples: Any = None  # displayed when the first contact sheet appears
        self._plotted, self._sheet_time = 0, 0.0

    def refresh(self, final: bool = False) -> None:
        rows = read_log(self.files.log)
        done = len(rows.steps)
        if done != self.bar.n:
            if self.bar.n == 0:  # the first step: rates count from here, not from the model's loading
                self.bar.reset(total=self.files.total)
            self.bar.n = done
            lr = next(iter(rows.shown.values()), [float("nan")])[-1]
            shown = {"d*lr" if rows.effective else "lr": f"{lr:.3g}"}
            self.bar.set_postfix(loss=f"{rows.losses[-1]:.4f}", **shown, refresh=False)
            self.bar.refresh()
        if done and (final or done - self._plotted >= self.plot_every):
            self.plot.update(_image(plot_png(rows, self.files.total, self.files.planned)))
            self._plotted = done
        self._show_samples()

    def _show_samples(self) -> None:
        from IPython.display import display

        try:
            changed = self.files.sheet.stat().st_mtime
            if changed == self._sheet_time:
                return
            image = _image(self.files.sheet.read_bytes())
        except OSError:
            return
        self._sheet_time = changed
        if self.samples is None:
            self.samples = display(image, display_id=True)
        else:
            self.samples.update(image)

    def close(self) -> None:
        self.refresh(final=True)
        self.bar.close()


def _image(png: bytes) -> Any:
    from IPython.display import Image

    return Image(data=png, format="png")


def train_live(config: str | Path, *args: str, plot_every: int = 10, poll_s: float = 0.5) -> None:
    """Run `lora-sched train CONFIG ARGS...` with the live view; RuntimeError on a non-zero exit."""
    files = run_files(config, args)
    view = LiveView(files, plot_every)
    command = [sys.executable, "-m", "lora_sched", "train", str(config), *map(str, args)]
    env = {**os.environ, NO_PROGRESS_ENV: "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        while proc.poll() is None:
            _print_ready(lines)
            view.refresh()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # the run checkpoints at the end of its current step
        proc.wait()
        raise
    finally:
        _print_ready(lines, until_end=True)
        view.close()
    if proc.returncode != 0:
        raise RuntimeError(f"`lora-sched train {config} {' '.join(args)}` exited with status {proc.returncode}")


def _read_lines(stream: Any, lines: queue.Queue) -> None:
    for raw_line in stream:
        lines.put(raw_line.decode("utf-8", errors="replace"))
    lines.put(None)


def _print_ready(lines: queue.Queue, until_end: bool = False) -> None:
    while True:
        try:
            line = lines.get(timeout=5 if until_end else 0)
        except queue.Empty:
            return
        if line is None:
            return
        print(line, end="", flush=True)
