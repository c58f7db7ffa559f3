"""`lora-sched model save NAME DIR`: a built-in model written as a diffusers folder.

The folder is what `StableDiffusionPipeline.save_pretrained` (SDXL: `StableDiffusionXLPipeline`)
writes: model_index.json, unet/, vae/, text_encoder/ and tokenizer/ (SDXL also text_encoder_2/ and
tokenizer_2/), scheduler/, weights as safetensors. So standard tools (diffusers' loaders and
conversion scripts) can read the built-in models, and training can be tried on a folder and on the
single-file checkpoints converted from it. It is written into a temporary sibling folder first and
renamed into place at the end: DIR never holds half a model.
"""

from __future__ import annotations

import os
import shutil
import sys
from argparse import Namespace
from pathlib import Path

from lora_sched.errors import ConfigError, problem, raw


def check_target(folder: Path) -> None:
    """DIR must not exist, or be an empty folder; its parent must be (or become) a folder."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(problem("DIR", "a new or empty folder", str(folder), "a file of that name exists"))
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(
            problem("DIR", "a new or empty folder", str(folder), "it is not empty: choose another folder or empty it")
        )
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    problem("DIR", "a path whose parents are folders", str(folder), f"{parent} is a file")
                )
            break


def save_builtin(name: str, folder: Path) -> None:
    """Build the built-in model `name` and write it to `folder` as a diffusers folder."""
    from lora_sched.train.model import build_builtin, check_builtin_name

    check_builtin_name(name, "NAME")
    folder = Path(os.path.expanduser(str(folder)))
    check_target(folder)
    pipeline = build_builtin(name).pipeline()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        pipeline.save_pretrained(str(staging), safe_serialization=True)
        if folder.is_dir():
            folder.rmdir()  # empty (checked above): the rename below needs the name free
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cmd_model(args: Namespace) -> int:
    from lora_sched.dependencies import check_train_dependencies, quiet_optional_imports

    if args.model_verb != "save":  # argparse only lets "save" through; a guard for direct calls
        raise ConfigError(problem("model", "save", raw(str(args.model_verb))))
    check_train_dependencies()
    quiet_optional_imports()
    try:
        save_builtin(args.name, Path(args.dir))
    except OSError as exc:
        print(f"lora-sched model save: cannot write {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.dir} ({args.name} as a diffusers folder)")
    return 0
