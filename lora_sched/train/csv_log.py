"""The run's CSV log (train_log.csv): one row per step, and its repair when a resumed run finds it cut
short or torn by a kill or a power cut."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from lora_sched.config.writer import atomic_write_text

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)

LOG_NAME = "train_log.csv"


class CsvLog:
    """step, epoch, lr_<group>... (and d*lr_<group>...), loss, seconds; on resume, rows from the resumed
    step on are dropped.

    seconds = wall time of the training since the log was first opened, when the step's update
    finished (throughput per step without start-up; bench/bench_train.py reads it). A resumed run's
    clock goes on from the last kept row's seconds, so the column never runs backwards (the time
    between the kill and the resume is not counted). The file is fsynced before every checkpoint,
    so the rows of the steps a checkpoint holds survive a power cut.
    """

    def __init__(self, path: Path, lr_columns: list[str], start: int, optional: tuple[str, ...] = ()) -> None:
        """optional: columns after seconds that a step may leave empty (the validation loss)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ["step", "epoch", *lr_columns, "loss", "seconds", *optional]
        kept = _rows_before(path, header, start, len(optional)) if start > 0 else []
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(kept)
        atomic_write_text(path, text.getvalue())
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self._writer = csv.writer(self._fh)
        self._t0 = time.perf_counter() - _last_seconds(kept, header.index("seconds"))

    def write(self, step: int, epoch: int, lrs: list[float], loss: float, extra: Sequence[float | None] = ()) -> None:
        seconds = f"{time.perf_counter() - self._t0:.6f}"
        cells = ["" if value is None else repr(value) for value in extra]  # empty: not measured
        self._writer.writerow([step, epoch, *(repr(lr) for lr in lrs), repr(loss), seconds, *cells])
        self._fh.flush()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.sync()
        self._fh.close()


def _rows_before(path: Path, header: list[str], start: int, optional: int = 0) -> list[list[str]]:
    """The earlier log's rows of steps 0 .. start-1, in order, as long as they are whole.

    Reading stops at the first row that is not a complete record of the next step: a row torn by a
    power cut (or zeros the file system left), a hand edit. Rows after the checkpoint's step are
    dropped anyway (the resumed run writes them again); a log cut short before it is said so.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning(f"notice: {path}: cannot read the earlier log ({exc.strerror}); it starts afresh")
        return []
    if not lines or _csv_row(lines[0]) != header:
        log.warning(f"notice: {path} has another header (another run's log?): it starts afresh")
        return []
    kept: list[list[str]] = []
    for line in lines[1:]:
        row = _csv_row(line)
        if len(kept) == start or not _is_log_row(row, len(header), len(kept), optional):
            break
        kept.append(row)
    if len(kept) < start:
        whole = f"steps 0-{len(kept) - 1}" if kept else "no step"
        log.warning(
            f"notice: {path} held whole rows for {whole} only (the rest was cut or damaged); "
            f"the log continues at step {start}, without rows for steps {len(kept)}-{start - 1}",
        )
    return kept


def _last_seconds(rows: list[list[str]], column: int = -1) -> float:
    """The seconds column of the last kept row (0 for a fresh log): where a resumed run's clock starts."""
    return float(rows[-1][column]) if rows else 0.0


def _csv_row(line: str) -> list[str]:
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def _is_log_row(row: list[str], width: int, step: int, optional: int = 0) -> bool:
    """A whole row of the log for `step`: every field present and a number (the last `optional`
    ones may be empty)."""
    if len(row) != width or row[0] != str(step):
        return False
    required = width - optional
    try:
        int(row[1])
        for i, field in enumerate(row[2:], start=2):
            if field or i < required:
                float(field)
    except ValueError:
        return False
    return all(field.strip() == field and (field or i >= required) for i, field in enumerate(row))
