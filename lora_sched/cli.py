"""`lora-sched` / `python -m lora_sched`: the command line.

Exit codes: 0 ok, 1 invalid config (message on stderr), 2 usage error. Each verb's handler lives
in the layer that owns it and is imported only when that verb runs, so `validate` and `preview`
start without torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, NamedTuple

from lora_sched.errors import ConfigError

if TYPE_CHECKING:
    import argparse

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2  # 3: preview / export cannot count the run length (no data here)
VALIDATE_HANDLER = "lora_sched.trainers.commands:cmd_validate"
#: The trainers whose files validate / preview read and export writes (lora_sched.trainers.TRAINER_NAMES;
#: listed here so that building the parser imports no trainer module).
TRAINERS = (
    "sd-scripts",
    "lora-easy",
    "onetrainer",
    "musubi-tuner",
    "simpletuner",
    "ai-toolkit",
    "diffusion-pipe",
    "diffusers",
)


def _handler(path: str):
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func)


class Verb(NamedTuple):
    """One verb of the command line: its handler ("module:function", imported only when it runs),
    its one-line help and the function that adds its options to its sub-parser."""

    name: str
    handler: str
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    examples: tuple[str, ...] = ()


def _no_options(p: argparse.ArgumentParser) -> None:
    pass


def _describe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="schedule name or alias")


def _from_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="trainer",
        choices=TRAINERS,
        metavar="TRAINER",
        help="the trainer whose file it is (default: recognised from the file): " + ", ".join(TRAINERS),
    )


def _trust_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-scheduler-code",
        action="store_true",
        help="allow lr_scheduler_type to import modules outside torch and lora_sched (importing runs their code)",
    )


def _validate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    _from_option(p)
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    _data_options(p)
    _count_options(p)
    _trust_option(p)


def _preview_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    _from_option(p)
    p.add_argument("--png", metavar="OUT", help="write a plot of the LR per group")
    p.add_argument("--csv", metavar="OUT", help="write step, then the LR of each param group, for every step")
    p.add_argument("--steps", action="store_true", help="print the LR of every step")
    _data_options(p)
    _count_options(p)
    _trust_option(p)


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", nargs="?", help="the config to export (any trainer's)")
    _from_option(p)
    p.add_argument("--to", choices=TRAINERS, metavar="TRAINER", help="the trainer to write for: " + ", ".join(TRAINERS))
    p.add_argument("--kohya", metavar="FILE", help="the same as FILE --to sd-scripts")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    _data_options(p)
    _count_options(p)
    _trust_option(p)


def _schema_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="OUT", help="write it to a file (e.g. lora_sched.schema.json)")


def _bound_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--D", type=float, default=1.0, help="distance from start to optimum (default 1)")
    p.add_argument("--G", type=float, default=1.0, help="gradient-norm bound (default 1)")
    p.add_argument("--png", metavar="OUT", help="plot the curves and the bound over steps")
    p.add_argument("--transfer", action="store_true", help="LR for the same schedule run for --steps steps")
    p.add_argument("--steps", type=int, metavar="N", help="run length to transfer the LR to (with --transfer)")
    _trust_option(p)


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", nargs="?", help="config (default: the built-in quick start)")
    p.add_argument("--resume", metavar="DIR", help="checkpoint directory, or 'latest'")
    p.add_argument("--output-dir", metavar="DIR", help="override output_dir")
    p.add_argument("--max-train-steps", type=int, metavar="N", help="override max_train_steps")
    p.add_argument(
        "--download",
        action="store_true",
        help="allow downloading a Hugging Face Hub model (sets allow_download = true)",
    )
    p.add_argument(
        "--allow-schedule-change",
        action="store_true",
        help="resume even though the schedule changed: keep the step, use the new curve from there",
    )
    p.add_argument(
        "--train-without",
        metavar="KEY",
        action="append",
        default=[],
        help="train although the file sets KEY, an sd-scripts option that changes what is learned and that "
        "lora-sched train does not apply (repeat for several; train refuses such a file otherwise)",
    )
    _data_options(p)
    _trust_option(p)


def _model_options(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_verb", metavar="ACTION", required=True)
    save = sub.add_parser(
        "save",
        help="write a built-in model as a diffusers folder",
        description="write a built-in model (builtin:tiny-sd, builtin:tiny-sdxl) as a diffusers folder",
    )
    save.add_argument("name", metavar="NAME", help="builtin:tiny-sd or builtin:tiny-sdxl")
    save.add_argument("dir", metavar="DIR", help="folder to create (a new or empty one)")


#: Every verb, in the order `--help` lists them; the parser is built from this table.
VERBS: tuple[Verb, ...] = (
    Verb(
        "list",
        "lora_sched.cli_catalogue:cmd_list",
        "list every schedule with its aliases and one-line doc",
        _no_options,
        ("lora-sched list",),
    ),
    Verb(
        "describe",
        "lora_sched.cli_catalogue:cmd_describe",
        "parameters, defaults, bounds, formula, reference and gotchas of one schedule",
        _describe_options,
        ("lora-sched describe cosine_with_restarts",),
    ),
    Verb(
        "validate",
        VALIDATE_HANDLER,
        "check config files of any trainer; exit 1 on any error",
        _validate_options,
        ("lora-sched validate my_lora.toml --strict", "lora-sched validate job.yaml --from ai-toolkit"),
    ),
    Verb(
        "preview",
        "lora_sched.trainers.commands:cmd_preview",
        "the LR curve of a config: key steps, a sparkline, optionally a PNG plot or a CSV",
        _preview_options,
        (
            "lora-sched preview my_lora.toml --png lr.png",
            "lora-sched preview config.json --steps-per-epoch 120 --csv lr.csv   # a OneTrainer file",
        ),
    ),
    Verb(
        "export",
        "lora_sched.trainers.commands:cmd_export",
        "write a config for a trainer (--to) that runs the same LR curve",
        _export_options,
        (
            "lora-sched export my_lora.toml --to sd-scripts -o for_sd_scripts.toml --num-processes 2",
            "lora-sched export config.json --to musubi-tuner -o musubi.toml",
        ),
    ),
    Verb(
        "schema",
        "lora_sched.config.commands:cmd_schema",
        "print the JSON Schema of the TOML dialect",
        _schema_options,
        ("lora-sched schema -o lora_sched.schema.json",),
    ),
    Verb(
        "bound",
        "lora_sched.analysis.commands:cmd_bound",
        "convex-optimization bound of schedules, their bound-optimal LR and LR transfer",
        _bound_options,
        ("lora-sched bound linear.toml wsd.toml", "lora-sched bound my_lora.toml --transfer --steps 8000"),
    ),
    Verb(
        "train",
        "lora_sched.train.commands:cmd_train",
        "run a LoRA fine-tune driven by the config",
        _train_options,
        (
            "lora-sched train",
            "lora-sched train my_lora.toml --resume latest",
            "lora-sched train my_lora.toml --train-without clip_skip",
        ),
    ),
    Verb(
        "model",
        "lora_sched.train.model_save:cmd_model",
        "model save NAME DIR: write a built-in model as a diffusers folder",
        _model_options,
        ("lora-sched model save builtin:tiny-sd tiny_sd",),
    ),
)
VERB_NAMES: frozenset[str] = frozenset(v.name for v in VERBS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only` (a verb name), just that verb's sub-parser is built, since argparse
    parsers are slow to build (a fast start for validate)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="lora-sched",
        description="Learning-rate schedules for LoRA fine-tuning: validate, preview, export, train.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        if only is None or verb.name == only:
            epilog = "examples:\n" + "\n".join(f"  {e}" for e in verb.examples) if verb.examples else None
            p = sub.add_parser(
                verb.name,
                help=verb.help,
                description=verb.help,
                epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            p.set_defaults(handler=verb.handler)
            verb.options(p)
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    """--dataset-config / --samples-per-epoch: the data an epoch-based run length is counted on."""
    p.add_argument(
        "--dataset-config",
        metavar="FILE",
        help="kohya dataset config (TOML/JSON) the run reads; replaces the config's dataset_config",
    )
    p.add_argument(
        "--samples-per-epoch",
        type=int,
        metavar="N",
        help="samples per epoch (images x repeats) of data not on this machine; replaces samples_per_epoch",
    )


def _count_options(p: argparse.ArgumentParser) -> None:
    """--steps-per-epoch / --num-processes: how the trainer counts a run whose data is not here."""
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        metavar="N",
        help="optimizer steps per epoch of one process, as the trainer's log shows it (replaces the count)",
    )
    p.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="processes (GPUs) the trainer runs with (default 1)",
    )


def _version() -> str:
    from lora_sched import __version__

    return f"lora-sched {__version__}"


def _plain_validate(argv: list[str]) -> SimpleNamespace | None:
    """`validate FILE... [--strict] [--trust-scheduler-code]` read without argparse, whose import and
    set-up cost more than validating a file (51.7 vs 58.6 ms for `validate configs/quickstart.toml`
    without and with `--from sd-scripts`, which goes through argparse; medians of 21 alternating
    runs on the 2-core development machine); None for anything else (help, other or abbreviated
    options, no file), which argparse then handles."""
    flags = {"--strict": "strict", "--trust-scheduler-code": "trust_scheduler_code"}
    if not argv or argv[0] != "validate":
        return None
    options = dict.fromkeys(flags.values(), False)
    files = []
    for arg in argv[1:]:
        if arg in flags:
            options[flags[arg]] = True
        elif arg.startswith("-"):
            return None
        else:
            files.append(arg)
    if not files:
        return None
    return SimpleNamespace(
        verb="validate",
        handler=VALIDATE_HANDLER,
        files=files,
        trainer=None,
        dataset_config=None,
        samples_per_epoch=None,
        steps_per_epoch=None,
        num_processes=None,
        **options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _plain_validate(argv)
    if args is None:
        first = argv[0] if argv and argv[0] in VERB_NAMES else None
        args = build_parser(only=first).parse_args(argv)  # an unknown verb: the full parser lists the valid ones
    try:
        return int(_handler(args.handler)(args) or EXIT_OK)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # an output path that cannot be written, a file that vanished: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lora-sched {getattr(args, 'verb', '')}: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
