"""Every trainer's dialect: one module per trainer, each holding one `Trainer`.

    from lora_sched.trainers import read_run, write_run
    run = read_run("config.json")                 # recognised as OneTrainer's, say
    run.lrs(range(run.run_length))                # each group's LR as OneTrainer runs it
    text = write_run(run, "musubi-tuner")         # a musubi-tuner file running the same curve

A trainer module is imported only when it is asked for or a file needs recognising; recognising a
TOML file imports no JSON or YAML parser. Adding a trainer: one module here with its `TRAINER`,
its name in `MODULES` and `FORMATS`, and its goldens (docs: adding a trainer).
"""

from __future__ import annotations

import importlib
from typing import Any

from lora_sched.errors import ConfigError, Problem
from lora_sched.trainers.base import RunFacts, Trainer, TrainerRun

#: name -> module of this package
MODULES = {
    "sd-scripts": "sd_scripts",
    "lora-easy": "lora_easy",
    "onetrainer": "onetrainer",
    "musubi-tuner": "musubi_tuner",
    "simpletuner": "simpletuner",
    "ai-toolkit": "ai_toolkit",
    "diffusion-pipe": "diffusion_pipe",
    "diffusers": "diffusers_scripts",
}
#: The trainer names the command line takes (`--from`, `--to`), in the order `--help` lists them.
TRAINER_NAMES = tuple(MODULES)
#: name -> the kinds of file it reads (its Trainer.formats): recognising a file imports only the
#: modules of the trainers that read its kind.
FORMATS = {
    "sd-scripts": ("toml",),
    "lora-easy": ("toml",),
    "onetrainer": ("json",),
    "musubi-tuner": ("toml",),
    "simpletuner": ("json", "toml"),
    "ai-toolkit": ("yaml", "json"),
    "diffusion-pipe": ("toml",),
    "diffusers": ("args",),
}


def get(name: str) -> Trainer:
    """The trainer of a command-line name (`sd-scripts`, `onetrainer`, ...)."""
    if name not in MODULES:
        from lora_sched.errors import did_you_mean

        raise ConfigError(
            Problem("--from/--to", "one of " + ", ".join(TRAINER_NAMES), f'"{name}"', did_you_mean(name, MODULES))
        )
    return importlib.import_module(f"{__name__}.{MODULES[name]}").TRAINER


def available(kind: str | None = None) -> list[Trainer]:
    """Every trainer (that reads `kind` of file, if given), in TRAINER_NAMES order."""
    return [get(name) for name in TRAINER_NAMES if kind is None or kind in FORMATS[name]]


def read_document(path: str, kind: str | None = None) -> Any:
    """The parsed file at `path` (size and type checked as for any config)."""
    from lora_sched.config.toml_file import decode, read_config_bytes
    from lora_sched.trainers.documents import parse

    return parse(path, decode(read_config_bytes(path), path), kind)


def recognise(document: Any) -> Trainer:
    """The trainer whose file `document` is: the most certain of those that read its kind (a file in
    lora_sched's own keys is sd-scripts' without asking the others: sd_scripts.plain)."""
    if document.kind == "toml":
        from lora_sched.trainers import sd_scripts

        if sd_scripts.plain(document):
            return sd_scripts.TRAINER
    readers = available(document.kind)
    scores = [(score, t) for score, t in ((t.recognise(document), t) for t in readers) if score > 0]
    if not scores:
        raise ConfigError(
            Problem(
                "",
                "a file of a trainer lora_sched reads",
                f"a {document.kind.upper()} file none of them recognises",
                "name its trainer with --from " + " / ".join(t.name for t in readers or available()),
                file=document.source,
            )
        )
    best = max(score for score, _ in scores)
    top = [t for score, t in scores if score == best]
    if len(top) > 1:
        raise ConfigError(
            Problem(
                "",
                "a file one trainer recognises",
                "a file " + " and ".join(t.title for t in top) + " both could have written",
                "name its trainer with --from " + " / ".join(t.name for t in top),
                file=document.source,
            )
        )
    return top[0]


def read_run(path: str, facts: RunFacts | None = None, trainer: str | None = None) -> TrainerRun:
    """The run a trainer's file starts; `trainer` None: recognised from the file."""
    from lora_sched.trainers.documents import suffix_kind

    facts = facts or RunFacts()
    chosen = get(trainer) if trainer else None
    kind = None  # from the file's name (a .toml is TOML whatever --from says), else --from's one format
    if chosen is not None and suffix_kind(path) is None and len(chosen.formats) == 1:
        kind = chosen.formats[0]
    document = read_document(path, kind)
    if chosen is None:
        chosen = recognise(document)
    elif document.kind not in chosen.formats:
        raise ConfigError(
            Problem(
                "",
                f"a {' or '.join(f.upper() for f in chosen.formats)} file ({chosen.title})",
                f"a {document.kind.upper()} file",
                "check --from",
                file=path,
            )
        )
    return chosen.read(document, facts)


def write_run(run: TrainerRun, trainer: str, facts: RunFacts | None = None) -> str:
    """The text of a file for `trainer` that runs `run`'s curve, or a ConfigError saying why not."""
    return get(trainer).write(run, facts or RunFacts())


__all__ = [
    "FORMATS",
    "MODULES",
    "TRAINER_NAMES",
    "RunFacts",
    "Trainer",
    "TrainerRun",
    "get",
    "read_run",
    "recognise",
    "write_run",
]
