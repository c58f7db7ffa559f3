"""The run's output folder: its lock, the checkpoint to resume (read and checked before the model is
built, loaded after), and other runs' checkpoints set aside so `--resume latest` never mixes runs."""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem, raw
from lora_sched.schedules import ResolvedSchedule
from lora_sched.train import checkpoint as ckpt
from lora_sched.train.build import Processes, Training
from lora_sched.train.lock import OutputLock
from lora_sched.train.optim import set_optimizer_mode
from lora_sched.train.plan import RunPlan, env_int

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)


class RunFolder(NamedTuple):
    """The output folder, locked, and the checkpoint the run resumes (None: it starts at step 0)."""

    output_dir: Path
    resume_dir: Path | None
    saved: ckpt.Checkpoint | None


def open_run_folder(cfg: Any, plan: RunPlan, held: contextlib.ExitStack) -> RunFolder:
    """Take the folder's lock (it creates output_dir: taken once every input is known good), find the
    checkpoint to resume and read it: intact files, the same run identity."""
    if env_int("RANK", 0) == 0:  # one run per output folder (process 0 of a multi-process run holds it)
        held.enter_context(OutputLock(plan.output_dir))
    resume, output_dir = plan.resume, plan.output_dir
    resume_dir = ckpt.find_resume_dir(str(resume), output_dir) if resume else None
    if resume and resume_dir is None:
        log.warning(f"notice: resume = {resume!r}: no checkpoint in {output_dir} yet; starting from step 0")
    saved = _read_resume(resume_dir, cfg) if resume_dir is not None else None
    return RunFolder(output_dir, resume_dir, saved)


def _read_resume(folder: Path, cfg: Any) -> ckpt.Checkpoint:
    """Read and check a checkpoint before the model is built: intact files, the same run identity."""
    saved = ckpt.read_checkpoint(folder)
    problems = ckpt.identity_changes(saved.state["values"], {k: ckpt.jsonable(x) for k, x in cfg.values.items()})
    if problems:
        raise ConfigError([_resume_refused(folder), *problems])
    return saved


def _resume_refused(folder: Path) -> Any:
    return problem(
        "resume",
        "a checkpoint of the same run and schedule",
        raw(str(folder)),
        "the checkpoint was made with other settings (listed below); resuming would change the LR curve "
        "or the weights' meaning mid-run (--allow-schedule-change accepts a changed schedule)",
    )


def resume_training(folder: RunFolder, processes: Processes, training: Training, allow_change: bool) -> int:
    """Load the checkpoint (if any) into the built run; return the step the run starts at."""
    start = 0
    if folder.saved is not None:
        start = _load_resume(folder.saved, processes.accelerator, training, allow_change)
        set_optimizer_mode(training.optimizer, "train")  # a schedule-free checkpoint holds its eval weights
    if start >= training.resolved.run_length:
        log.warning(
            f"notice: the checkpoint is at step {start}: the run ({training.resolved.run_length} steps) is complete",
        )
    return start


def _load_resume(saved: ckpt.Checkpoint, accelerator: Any, training: Training, allow_change: bool) -> int:
    """Load a checkpoint; refuse (ConfigError) when the schedule changed (unless allowed).

    The optimizer state goes first: it carries the LRs of the step it was saved at, and the
    scheduler then sets the LRs its (possibly changed, if allowed) curve gives for that step.
    """
    ckpt.load_checkpoint(saved, accelerator, training.params, training.optimizer)
    try:
        training.scheduler.load_state_dict(saved.scheduler, allow_schedule_change=allow_change)
    except ConfigError as exc:
        raise ConfigError([_resume_refused(saved.folder), *exc.problems]) from None
    except Exception as exc:  # a state of the wrong shape (written by hand, or by another class)
        what = f"it does not fit this run ({type(exc).__name__}: {exc})"
        raise ckpt.damaged(saved.folder / "scheduler.pt", what) from None
    if allow_change and accelerator.is_main_process:
        _notice_schedule_change(saved, training.resolved)
    saved_processes = saved.state["num_processes"]
    if saved_processes != accelerator.num_processes:
        log.warning(
            f"notice: checkpoint made with {saved_processes} process(es), resumed with "
            f"{accelerator.num_processes}: the LR curve is the same, the data order per process is not",
        )
    if accelerator.is_main_process:
        log.info(f"resumed from {saved.folder} at step {saved.step}")
    return saved.step


def _notice_schedule_change(saved: ckpt.Checkpoint, resolved: ResolvedSchedule) -> None:
    """Say so when an allowed resume continues a checkpoint made with another schedule."""
    try:
        changes = [str(c) for c in ResolvedSchedule.from_dict(saved.state["resolved"]).curve_changes(resolved)]
    except (KeyError, TypeError, ValueError):
        changes = ["(the checkpoint's schedule record is unreadable)"]
    if changes:
        log.warning(
            f"notice: {saved.folder} was made with another schedule ({'; '.join(changes)}); "
            "continuing with the current one from its step (--allow-schedule-change)",
        )


def set_aside_checkpoints(folder: RunFolder, accelerator: Any) -> None:
    """Only now, with every input checked and the resume accepted: other runs' checkpoints (and those
    after the resumed step) move out of `--resume latest`'s way; every process waits for it."""
    if accelerator.is_main_process:
        _set_aside_old_checkpoints(folder.output_dir, folder.resume_dir)
        if folder.saved is not None:
            _set_aside_later_checkpoints(folder.output_dir, folder.saved)
    accelerator.wait_for_everyone()


def _set_aside_old_checkpoints(output_dir: Path, resume_dir: Path | None) -> None:
    """A fresh run into a folder holding another run's checkpoints renames them (kept, never mixed:
    a later `--resume latest` must not pick up a checkpoint of the earlier run)."""
    root = ckpt.checkpoints_dir(output_dir)
    if resume_dir is not None and resume_dir.resolve().parent == root.resolve():
        return
    if not ckpt.list_checkpoints(output_dir):
        return
    target = _free_name(root, "previous")
    os.replace(root, target)
    log.warning(f"notice: {root} held another run's checkpoints: moved to {target.name}")


def _set_aside_later_checkpoints(output_dir: Path, saved: ckpt.Checkpoint) -> None:
    """Resuming at step k continues a new line of the run: checkpoints after k (of the run that made
    them, maybe another schedule, maybe damaged) move to checkpoints.superseded-*/, so a later
    `--resume latest` picks this run's checkpoints, never theirs."""
    root = ckpt.checkpoints_dir(output_dir)
    if saved.folder.resolve().parent != root.resolve():
        return
    later = [folder for step, folder in ckpt.list_checkpoints(output_dir) if step > saved.step]
    if not later:
        return
    target = _free_name(root, "superseded")
    target.mkdir()
    for folder in later:
        os.replace(folder, target / folder.name)
    names = ", ".join(f.name for f in later)
    log.warning(
        f"notice: resuming at step {saved.step}: the later checkpoints ({names}) moved to {target.name}",
    )


def _free_name(root: Path, label: str) -> Path:
    """checkpoints.<label>-<time stamp>[-n]: a name next to `root` that is not taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = root.with_name(f"{root.name}.{label}-{stamp}")
    number = 1
    while target.exists():
        target, number = root.with_name(f"{root.name}.{label}-{stamp}-{number}"), number + 1
    return target
