"""`lora-sched validate`, `preview` and `schema`.

validate imports neither NumPy nor torch (unless lr_scheduler_type names a custom class);
preview needs NumPy only. Exit codes: 0 ok, 1 invalid config (messages on stderr), 3 the run
length is unknown here (epochs, and the data is not on this machine): give it or its size.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from lora_sched.config.loader import load_config
from lora_sched.config.model import LoraConfig
from lora_sched.errors import ConfigError, Problem

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


def load(args: argparse.Namespace, path: str) -> LoraConfig:
    """The config at `path` with the command line's data keys and trust flag."""
    trust = getattr(args, "trust_scheduler_code", False)
    return load_config(path, trust_scheduler_code=trust, data=data_options(args))


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


def summary(cfg: LoraConfig, rs: ResolvedSchedule | None = None) -> str:
    """One line about the schedule a config runs: name, steps, warmup, base LRs (rs: resolved for
    another run shape than the config's own data and one process)."""
    why = cfg.unknown_run_length()
    if why is not None and rs is None:
        return f"{cfg.schedule_name}, {cfg.values['max_train_epochs']} epochs: run length unknown here ({why})"
    rs = cfg.resolve() if rs is None else rs
    lrs = cfg.group_lrs()
    name = f"custom {cfg.scheduler_type}" if cfg.scheduler_type else rs.name
    if rs.requested_name and rs.requested_name != rs.name and not cfg.scheduler_type:
        name += f" (as {rs.requested_name})"
    parts = [name, f"{rs.run_length} steps"]
    if rs.horizon != rs.run_length:
        parts.append(f"horizon {rs.horizon}")
    parts.append(f"warmup {rs.warmup}")
    lr = f"LR {lrs['unet']:g}"
    if lrs["text_encoder"] != lrs["unet"]:
        lr = f"LR unet {lrs['unet']:g}, text encoder {lrs['text_encoder']:g}"
    parts.append(lr)
    return ", ".join(parts)


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        print(str(p), file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            cfg = load(args, path)
        except ConfigError as exc:
            _print_problems(exc.problems)
            failed = True
            continue
        warnings = [p for p in cfg.warnings if p.severity == "warning"]
        if args.strict and warnings:
            _print_problems([p._replace(severity="error") for p in warnings])
            _print_problems([p for p in cfg.warnings if p.severity != "warning"])
            print(f"{path}: invalid (--strict: {len(warnings)} warning(s) count as errors)", file=sys.stderr)
            failed = True
            continue
        _print_problems(cfg.warnings)
        print(f"{path}: ok ({summary(cfg)})")
    return 1 if failed else 0


def cmd_preview(args: argparse.Namespace) -> int:
    from lora_sched.config import preview

    cfg = load(args, args.file)
    _print_problems(cfg.warnings)
    message = needs_data(cfg, "preview")
    if message is not None:
        print(message, file=sys.stderr)
        return EXIT_NEEDS_DATA
    c = preview.curve(cfg)
    print(f"{args.file}: {summary(cfg)}")
    for note in (preview.sampling_note(c), preview.adaptive_lr_note(cfg)):
        if note:
            print(note)
    print(preview.sparkline(c))
    print()
    if args.steps:
        for lines in preview.every_step_table(cfg, c):
            print(lines)
    else:
        print(preview.table(cfg, c, preview.key_steps(cfg, c)))
    if args.csv:
        preview.write_csv(cfg, c, args.csv)
        print(f"wrote {args.csv} ({c.covered} steps)")
    if args.png:
        preview.write_png(cfg, c, args.png)
        print(f"wrote {args.png}")
    return 0


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
