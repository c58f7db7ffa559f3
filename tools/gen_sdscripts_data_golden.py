"""Golden regularisation fills, validation splits and validation timing computed by sd-scripts' own
code: tests/data/sdscripts_data/goldens.json.

    python tools/gen_sdscripts_data_golden.py SD_SCRIPTS_CHECKOUT_OR_GIT_DIR [--output PATH] [--check]

Only the standard library and numpy are needed. The checkout may be a work tree or a bare git
directory (its HEAD is read with ``git show``). Nothing of sd-scripts is imported: the pieces below
are parsed with ``ast`` from its source and run on their own, with stand-ins for what they touch.

* ``split_train_val`` (library/train_util.py): the images a validation_split trains and holds out;
* the regularisation fill of ``DreamBoothDataset.__init__`` (the ``else`` branch of
  ``if num_reg_images == 0``): the repeats each regularisation image ends with (0: not registered);
* ``LossRecorder`` (library/train_util.py): the averages it reports for a sequence of losses;
* train_network.py's ``validation_timesteps`` statements and its ``should_validate_step`` /
  ``should_validate_epoch`` conditions: the fixed timesteps and which steps and epochs validate.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import random
import sys
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from golden_cli import checkout_commit, checkout_file, run_golden

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "data" / "sdscripts_data" / "goldens.json"

#: (images in the folder, validation_split, validation_seed)
SPLITS = [(n, split, seed) for n in (1, 2, 5, 7, 10, 13) for split in (0.1, 0.25, 0.35, 0.5) for seed in (0, 42, 1234)]
#: (training samples, repeats of each regularisation image)
FILLS = [
    (12, [1, 1, 1]),
    (6, [1, 1, 1, 1, 1, 1, 1, 1]),
    (10, [3, 3]),
    (7, [2, 5, 1]),
    (1, [4, 4]),
    (100, [1]),
    (9, [10]),
    (20, [2, 1, 3]),
]
#: (epoch, index, loss) sequences fed to a LossRecorder: two validations of 3 losses in epoch 0, then two in epoch 1
RECORDER_FEED = [(0, i, 1.0 + 0.25 * i) for i in range(3)] + [(0, i, 2.0 - 0.5 * i) for i in range(3)]
RECORDER_FEED += [(1, i, 0.5 + 0.125 * i) for i in range(3)] + [(1, i, 0.75) for i in range(3)]
#: (num_train_timesteps, min_timestep, max_timestep)
TIMESTEPS = [(1000, None, None), (1000, 100, 900), (1000, 0, 999), (500, None, None), (1000, 3, 17)]
#: (validate_every_n_steps, validate_every_n_epochs) and the global steps / epochs asked about
TIMING = [(None, None), (2, None), (3, 2), (None, 3), (5, 1)]


def _namespace() -> dict[str, Any]:
    """What the extracted code names: the standard modules and typing's names."""
    names: dict[str, Any] = {"random": random, "math": math, "logging": logging, "np": np, "typing": typing}
    names.update({n: getattr(typing, n) for n in ("Any", "Dict", "List", "Optional", "Tuple", "Union", "Sequence")})
    return names


def _run(nodes: list[ast.stmt], namespace: dict[str, Any]) -> dict[str, Any]:
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "sd-scripts", "exec"), namespace)
    return namespace


def _top(tree: ast.Module, kind: type, name: str) -> Any:
    return next(n for n in tree.body if isinstance(n, kind) and n.name == name)


def reg_fill_nodes(train_util: ast.Module) -> list[ast.stmt]:
    """The fill loop: the else branch of `if num_reg_images == 0` in DreamBoothDataset.__init__."""
    dataset = _top(train_util, ast.ClassDef, "DreamBoothDataset")
    init = next(n for n in dataset.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    for node in ast.walk(init):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "num_reg_images == 0":
            return node.orelse
    raise LookupError("the regularisation fill was not found in DreamBoothDataset.__init__")


def assignments(function: ast.FunctionDef, names: set[str]) -> list[ast.stmt]:
    """The assignments to `names` in `function`, in source order."""
    found = [
        n
        for n in ast.walk(function)
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in n.targets)
    ]
    return sorted(found, key=lambda n: n.lineno)


def splits(train_util: ast.Module) -> list[list[Any]]:
    split_train_val = _run([_top(train_util, ast.FunctionDef, "split_train_val")], _namespace())["split_train_val"]
    rows = []
    for n, split, seed in SPLITS:
        paths = [f"img{i:02d}.png" for i in range(n)]
        trained, _ = split_train_val(paths, [None] * n, True, split, seed)
        held_out, _ = split_train_val(paths, [None] * n, False, split, seed)
        rows.append([n, split, seed, [paths.index(p) for p in trained], [paths.index(p) for p in held_out]])
    return rows


def fills(train_util: ast.Module) -> list[list[Any]]:
    nodes = reg_fill_nodes(train_util)
    rows = []
    for train_samples, repeats in FILLS:
        registered: list[Any] = []
        infos = [(SimpleNamespace(num_repeats=r), None) for r in repeats]
        dataset = SimpleNamespace(register_image=lambda info, subset, into=registered: into.append(info))
        _run(nodes, {**_namespace(), "self": dataset, "num_train_images": train_samples, "reg_infos": infos})
        given = [info.num_repeats if any(info is r for r in registered) else 0 for info, _ in infos]
        rows.append([train_samples, repeats, given])
    return rows


def recorder(train_util: ast.Module) -> list[float]:
    recorder_class = _run([_top(train_util, ast.ClassDef, "LossRecorder")], _namespace())["LossRecorder"]
    losses = recorder_class()
    averages = []
    for epoch, step, loss in RECORDER_FEED:
        losses.add(epoch=epoch, step=step, loss=loss)
        averages.append(losses.moving_average)
    return averages


def timing(train_network: ast.Module) -> dict[str, Any]:
    trainer = _top(train_network, ast.ClassDef, "NetworkTrainer")
    train = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    timestep_nodes = assignments(train, {"NUM_VALIDATION_TIMESTEPS", "min_timestep", "max_timestep"})
    timestep_nodes = timestep_nodes[:3] + assignments(train, {"validation_timesteps"})
    steps_node = assignments(train, {"should_validate_step"})
    epoch_node = assignments(train, {"should_validate_epoch"})
    timesteps = []
    for total, low, high in TIMESTEPS:
        args = SimpleNamespace(min_timestep=low, max_timestep=high)
        scheduler = SimpleNamespace(config=SimpleNamespace(num_train_timesteps=total))
        found = _run(timestep_nodes, {**_namespace(), "args": args, "noise_scheduler": scheduler})
        timesteps.append([total, low, high, [int(t) for t in found["validation_timesteps"]]])
    due = []
    for every_steps, every_epochs in TIMING:
        args = SimpleNamespace(validate_every_n_steps=every_steps, validate_every_n_epochs=every_epochs)
        step_due = [
            s for s in range(1, 13) if _run(steps_node, {"args": args, "global_step": s})["should_validate_step"]
        ]
        epoch_due = [e for e in range(6) if _run(epoch_node, {"args": args, "epoch": e})["should_validate_epoch"]]
        due.append([every_steps, every_epochs, step_due, epoch_due])
    return {"timesteps": timesteps, "due": due}


def generate(checkout: Path) -> dict[str, Any]:
    train_util = ast.parse(checkout_file(checkout, "library/train_util.py"))
    train_network = ast.parse(checkout_file(checkout, "train_network.py"))
    return {
        "provenance": {
            "repository": "kohya-ss/sd-scripts",
            "commit": checkout_commit(checkout),
            "paths": [
                "library/train_util.py (split_train_val, LossRecorder, DreamBoothDataset.__init__'s reg fill)",
                "train_network.py (NetworkTrainer.train: validation_timesteps, should_validate_step/epoch)",
            ],
            "generator": "tools/gen_sdscripts_data_golden.py",
        },
        "splits": {"row": "[images, validation_split, validation_seed, trained indices, held-out indices]"},
        "split_rows": splits(train_util),
        "fills": {"row": "[training samples, repeats of each reg image, repeats given (0: not registered)]"},
        "fill_rows": fills(train_util),
        "recorder_feed": RECORDER_FEED,
        "recorder_averages": recorder(train_util),
        **timing(train_network),
        "due_row": "[validate_every_n_steps, validate_every_n_epochs, global steps 1-12 that validate, epochs 0-5]",
    }


def dumps(golden: dict[str, Any]) -> str:
    return json.dumps(golden, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_golden(__doc__, OUTPUT, generate, dumps, argv)


if __name__ == "__main__":
    sys.exit(main())
