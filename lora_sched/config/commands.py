"""The config layer's part of the command line: `schema`, and what `validate`, `preview` and
`export` (lora_sched.trainers.commands) say about an sd-scripts config: its one-line summary and
the message when its run length cannot be counted here (exit code 3)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from lora_sched.config.model import LoraConfig

#: Exit code of preview / export when an epoch-based run length cannot be counted here.
EXIT_NEEDS_DATA = 3

if TYPE_CHECKING:
    import argparse

    from lora_sched.schedules.resolve import ResolvedSchedule


def data_options(args: argparse.Namespace) -> dict:
    """The command line's data keys (--dataset-config, --samples-per-epoch), which replace the file's."""
    return {
        "dataset_config": getattr(args, "dataset_config", None),
        "samples_per_epoch": getattr(args, "samples_per_epoch", None),
    }


def needs_data(cfg: LoraConfig, verb: str) -> str | None:
    """The message a verb prints when the run length is unknown here, or None when it is known."""
    why = cfg.unknown_run_length()
    if why is None:
        return None
    where = f"{cfg.path}: " if cfg.path else ""
    return (
        f"{where}{verb}: the run length is unknown: {cfg.values['max_train_epochs']} epochs of data that cannot "
        f"be counted here ({why}).\n"
        "    Give the data set, or its size in samples per epoch (images x repeats):\n"
        "      --dataset-config FILE  or  --samples-per-epoch N\n"
        "    (in the file: dataset_config, train_data_dir or samples_per_epoch)"
    )


def summary(cfg: LoraConfig, resolved: ResolvedSchedule | None = None) -> str:
    """One line about the schedule a config runs: name, steps, warmup, base LRs (`resolved`: the schedule resolved for
    another run shape than the config's own data and one process)."""
    why = cfg.unknown_run_length()
    if why is not None and resolved is None:
        return f"{cfg.schedule_name}, {cfg.values['max_train_epochs']} epochs: run length unknown here ({why})"
    resolved = cfg.resolve() if resolved is None else resolved
    lrs = cfg.group_lrs()
    name = f"custom {cfg.scheduler_type}" if cfg.scheduler_type else resolved.name
    if resolved.requested_name and resolved.requested_name != resolved.name and not cfg.scheduler_type:
        name += f" (as {resolved.requested_name})"
    parts = [name, f"{resolved.run_length} steps"]
    if resolved.horizon != resolved.run_length:
        parts.append(f"horizon {resolved.horizon}")
    parts.append(f"warmup {resolved.warmup}")
    lr = f"LR {lrs['unet']:g}"
    if lrs["text_encoder"] != lrs["unet"]:
        lr = f"LR unet {lrs['unet']:g}, text encoder {lrs['text_encoder']:g}"
    parts.append(lr)
    return ", ".join(parts)


def cmd_schema(args: argparse.Namespace) -> int:
    from lora_sched.config.schema import schema_text

    text = schema_text()
    output = getattr(args, "output", None)
    if output:
        from lora_sched.config.writer import atomic_write_text

        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)
    return 0
