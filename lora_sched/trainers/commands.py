"""`lora-sched validate`, `preview` and `export` for any trainer's file.

A file is recognised (or named with --from TRAINER), read by its trainer's module into the run
that trainer starts, and shown as that trainer runs it: its quirks are warnings that say what to
write instead. sd-scripts files print exactly what they always did. Exit codes: 0 ok, 1 invalid
config, 3 the run length is unknown here (give --samples-per-epoch, --steps-per-epoch or the data).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from lora_sched.config.commands import EXIT_NEEDS_DATA, needs_data, summary
from lora_sched.errors import ConfigError, problem
from lora_sched.trainers import get, read_run, write_run
from lora_sched.trainers.base import RunFacts, TrainerRun

if TYPE_CHECKING:
    import argparse


def facts_of(args: argparse.Namespace) -> RunFacts:
    """The run facts the command line gives (--samples-per-epoch, --steps-per-epoch, --num-processes ...)."""
    for flag in ("samples_per_epoch", "steps_per_epoch", "num_processes"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ConfigError(problem("--" + flag.replace("_", "-"), "an int >= 1", value))
    return RunFacts(
        samples_per_epoch=getattr(args, "samples_per_epoch", None),
        steps_per_epoch=getattr(args, "steps_per_epoch", None),
        num_processes=getattr(args, "num_processes", None),
        dataset_config=getattr(args, "dataset_config", None),
        trust_scheduler_code=getattr(args, "trust_scheduler_code", False),
    )


def read(args: argparse.Namespace, path: str) -> TrainerRun:
    return read_run(path, facts_of(args), getattr(args, "trainer", None))


def describe(run: TrainerRun) -> str:
    """One line about the run: sd-scripts' summary for its files, else the trainer's own words."""
    if run.trainer == "sd-scripts" and run.schedule is not None:
        return summary(run.schedule, run.resolved)
    title = get(run.trainer).title
    if run.run_length is None:
        return f"{title}: {run.summary}; run length unknown here ({run.counting})"
    lrs = ", ".join(f"{group.replace('_', ' ')} {lr:g}" for group, lr in run.groups.items())
    steps = f"{run.run_length} steps"
    said = run.summary if steps in run.summary else f"{run.summary}, {steps}"
    return f"{title}: {said}, LR {lrs}"


def _print(problems: Any) -> None:
    for p in problems:
        print(str(p), file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            run = read(args, path)
        except ConfigError as exc:
            _print(exc.problems)
            failed = True
            continue
        warnings = [p for p in run.warnings if p.severity == "warning"]
        if args.strict and warnings:
            _print([p._replace(severity="error") for p in warnings])
            _print([p for p in run.warnings if p.severity != "warning"])
            print(f"{path}: invalid (--strict: {len(warnings)} warning(s) count as errors)", file=sys.stderr)
            failed = True
            continue
        _print(run.warnings)
        print(f"{path}: ok ({describe(run)})")
    return 1 if failed else 0


def _unknown_length(run: TrainerRun, verb: str) -> str:
    if run.trainer == "sd-scripts" and run.schedule is not None:
        message = needs_data(run.schedule, verb)
        if message is not None:
            return message + "\n      or --steps-per-epoch N (optimizer steps per epoch, as sd-scripts' log shows it)"
    if "--samples-per-epoch" in run.counting or "--steps-per-epoch" in run.counting:
        return f"{run.source}: {verb}: the run length is unknown: {run.counting}"
    return (
        f"{run.source}: {verb}: the run length is unknown: {run.counting}.\n"
        "    Give --samples-per-epoch N (images x repeats) or --steps-per-epoch N (steps per epoch of one\n"
        "    process, as the trainer's progress bar shows it), with --num-processes N for a multi-GPU run."
    )


def curve_of(run: TrainerRun) -> Any:
    """The preview curve of a run: the trainer's groups, in its order."""
    from lora_sched.config import preview

    if run.own_lrs is not None and not (run.schedule is not None and run.schedule.scheduler_type):
        return preview.own_curve(run.run_length, run.lrs, dict(run.groups))
    return preview.curve(run.schedule, dict(run.groups), run.resolved)


def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before any work: a missing folder is reported at once (as the
    command line reports any path it cannot write), not after the table is printed."""
    import errno
    import os

    for flag in ("png", "csv", "output"):
        path = getattr(args, flag, None)
        if not path:
            continue
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "a folder, not a file", path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise FileNotFoundError(errno.ENOENT, "its folder does not exist (nothing was done)", path)


def cmd_preview(args: argparse.Namespace) -> int:
    from lora_sched.config import preview

    _check_outputs(args)
    run = read(args, args.file)
    _print(run.warnings)
    if run.run_length is None:
        print(_unknown_length(run, "preview"), file=sys.stderr)
        return EXIT_NEEDS_DATA
    c = curve_of(run)
    print(f"{args.file}: {describe(run)}")
    if run.counting and run.counting.startswith(tuple("0123456789")):
        print(f"run length: {run.counting}")
        if run.trainer == "sd-scripts" and run.schedule is not None and args.steps_per_epoch is None:
            from lora_sched.config.arithmetic import config_arithmetic

            for line in config_arithmetic(run.schedule, facts_of(args).processes):
                print(line)
    notes = [preview.sampling_note(c)]
    if run.schedule is not None:
        notes.append(preview.adaptive_lr_note(run.schedule))
    for note in notes:
        if note:
            print(note)
    print(preview.sparkline(c))
    print()
    if args.steps:
        for lines in preview.every_step_table(run.schedule, c):
            print(lines)
    else:
        print(preview.table(run.schedule, c, preview.key_steps(run.schedule, c)))
    if args.csv:
        preview.write_csv(run.schedule, c, args.csv)
        print(f"wrote {args.csv} ({c.covered} steps)")
    if args.png:
        title = f"{get(run.trainer).title}: {run.summary or (run.schedule.schedule_name if run.schedule else '')}"
        import os

        name = f"{title} ({os.path.basename(run.source)})"
        preview.write_png(run.schedule, c, args.png, name, dict(run.groups), _steps_per_epoch(run, args))
        print(f"wrote {args.png}")
    return 0


def _steps_per_epoch(run: TrainerRun, args: argparse.Namespace) -> int | None:
    """Optimizer steps per epoch of the run (for the PNG's epoch marks): --steps-per-epoch, else an
    sd-scripts config's count of its data on this machine; None when not known."""
    if args.steps_per_epoch is not None:
        return int(args.steps_per_epoch)
    if run.trainer != "sd-scripts" or run.schedule is None:
        return None
    return run.schedule.training_shape(num_processes=facts_of(args).processes).steps_per_epoch


def cmd_export(args: argparse.Namespace) -> int:
    """`export FILE --to TRAINER [-o OUT]` (`export --kohya FILE` = `--to sd-scripts`)."""
    from lora_sched.config.writer import atomic_write_text

    source = args.kohya or args.file
    target = "sd-scripts" if args.kohya else args.to
    if not source or not target:
        print("lora-sched export: give FILE and --to TRAINER (or --kohya FILE)", file=sys.stderr)
        return 2
    _check_outputs(args)
    facts = facts_of(args)
    run = read(args, source)
    if run.run_length is None:
        print(_unknown_length(run, "export"), file=sys.stderr)
        return EXIT_NEEDS_DATA
    text = write_run(run, target, facts)
    title = get(target).title
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output} ({title}, {facts.processes} process(es))", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
