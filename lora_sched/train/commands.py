"""`lora-sched train [CONFIG] [--resume DIR|latest] [--output-dir DIR] [--max-train-steps N] [--download]`."""

from __future__ import annotations

import logging
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from lora_sched.errors import ConfigError, problem
from lora_sched.torch.support import CUSTOM_CLASSES

QUICKSTART = Path(__file__).resolve().parent.parent / "data" / "quickstart.toml"


def load_train_config(args: Namespace) -> Any:
    """The config named on the command line (default: the packaged quick start), with overrides applied."""
    from lora_sched.config import load_config
    from lora_sched.config.commands import data_options

    path = Path(args.file) if args.file else QUICKSTART
    trust = bool(getattr(args, "trust_scheduler_code", False))
    cfg = load_config(path, trust_scheduler_code=trust, data=data_options(args), custom_classes=CUSTOM_CLASSES)
    overrides: dict[str, Any] = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = str(args.output_dir)
    if getattr(args, "max_train_steps", None) is not None:
        if args.max_train_steps < 1:
            raise ConfigError(problem("--max-train-steps", "an int >= 1", args.max_train_steps))
        overrides["max_train_steps"] = args.max_train_steps
        overrides["max_train_epochs"] = None  # the flag names the run length: epochs would override it
    if getattr(args, "download", False):
        overrides["allow_download"] = True
    if overrides:
        cfg = _with_overrides(cfg, overrides, trust)
    return cfg


#: The command-line flag each overridden key comes from.
FLAG_OF = {
    "output_dir": "--output-dir",
    "max_train_steps": "--max-train-steps",
    "max_train_epochs": "--max-train-steps",
    "allow_download": "--download",
}


def _with_overrides(cfg: Any, overrides: dict[str, Any], trust: bool) -> Any:
    """Re-validate the config with some values replaced (through the same loader, so every check runs).

    Problems found then, or later in training, still point into the user's file: a key from the
    file at its line there, an overridden key at the flag it came from.
    """
    from lora_sched.config import loads_values

    # only what the file sets (and its sd-scripts keys): a default written out would count as given
    values = {k: x for k, x in cfg.values.items() if x is not None and k in cfg.sections}
    values.update({k: x for k, (_, x) in cfg.extras.items() if x is not None})
    for key, value in overrides.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    located = _override_locations(cfg, overrides)
    try:
        new = loads_values(values, source=str(cfg.path), trust_scheduler_code=trust, custom_classes=CUSTOM_CLASSES)
    except ConfigError as exc:
        raise ConfigError(located.locate([_unlocated(p) for p in exc.problems])) from None
    # the warnings were found in the user's file and are located there; the extras are the sd-scripts
    # keys training checks (network_module, log_with, ...)
    return new.replace(locations=located, warnings=cfg.warnings, extras=cfg.extras)


def _override_locations(cfg: Any, overridden: dict[str, Any]) -> Any:
    """Where the file's keys were read, each overridden key shown as the flag it came from."""
    from lora_sched.config.places import DocLines, Locations

    base = cfg.locations or Locations(str(cfg.path), DocLines(""), {})
    return base.with_overrides({key: FLAG_OF[key] for key in overridden})


def _unlocated(p: Any) -> Any:
    """A problem located in the re-validated text, back to its flat key (``section.key`` -> ``key``)."""
    from lora_sched.config.keys import SECTIONS

    section, _, rest = p.key.partition(".")
    return p._replace(file=None, line=None, key=rest if section in SECTIONS and rest else p.key)


def cmd_train(args: Namespace) -> int:
    cfg = load_train_config(args)
    for warning in getattr(cfg, "warnings", []):
        print(str(warning), file=sys.stderr)
    from lora_sched.dependencies import check_train_dependencies, quiet_optional_imports

    check_train_dependencies()
    quiet_optional_imports()
    from lora_sched.train.loop import train
    from lora_sched.train.signals import TrainingInterrupted

    _show_progress_lines()
    try:
        result = train(
            cfg,
            resume=args.resume,
            trust_scheduler_code=bool(getattr(args, "trust_scheduler_code", False)),
            allow_schedule_change=bool(getattr(args, "allow_schedule_change", False)),
            train_without=frozenset(getattr(args, "train_without", None) or ()),
        )
    except TrainingInterrupted as stop:
        print(
            f"lora-sched train: {stop}; checkpoint {stop.checkpoint} saved (continue with --resume latest)",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except OSError as exc:
        print(f"lora-sched train: cannot write the output: {exc}", file=sys.stderr)
        return 1
    if result.is_main_process and not result.written:
        print(f"{result.output}: the run is already complete ({result.steps} steps); nothing was written")
    elif result.is_main_process:
        print(f"wrote {result.output} ({result.steps} steps, last loss {result.last_loss:.5f})")
    return 0


class _ToStderr(logging.Handler):
    """Each record on a line of the stderr of the moment (a test's captured stream included), through
    tqdm.write: a line printed while the progress bar is drawn would land in the middle of it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _show_progress_lines() -> None:
    """`train` says what it is doing from its first second: lora_sched.train's INFO records as
    "lora-sched: ..." lines (one handler, however many runs a process makes; no "train:" prefix,
    which the notebook's live view takes for the text progress bar)."""
    import os

    logger = logging.getLogger("lora_sched.train")
    if os.environ.get("RANK", "0") != "0":  # one voice in a multi-process run: process 0's
        logger.setLevel(logging.WARNING)
        return
    if not any(isinstance(h, _ToStderr) for h in logger.handlers):
        handler = _ToStderr()
        handler.setFormatter(logging.Formatter("lora-sched: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
