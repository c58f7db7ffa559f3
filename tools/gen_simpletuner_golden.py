"""Regenerate the SimpleTuner goldens by running SimpleTuner's own code from a snapshot, on CPU.

    python tools/gen_simpletuner_golden.py SIMPLETUNER_GIT_DIR [--check]

Every case goes through SimpleTuner's own pipeline, loaded from the snapshot at COMMIT (a bare git
dir is read with `git show`; a checkout directory is read as files):

* the file's keys become flags by its `mapping_to_cli_args` (helpers/configuration/cli_utils.py),
  `lr_scheduler` is normalised by its `normalize_lr_scheduler_value` before and after parsing (as
  cmd_args.parse_cmdline_args does), and they are parsed by an argparse parser built by its own
  `_add_argument_from_field` (cmd_args.py) from its training and advanced field definitions;
* the scheduler is built by its `get_lr_scheduler` (helpers/training/custom_schedule.py) with an
  accelerator of N processes, `last_step` set as trainer.py:4288 sets it, wrapped in accelerate's
  AcceleratedScheduler (N scheduler steps per update), and stepped after each optimizer.step();
  the LR of every param group is recorded before each update.

Heavy imports of those files (the model registry, fastapi, the StateTracker) are stubbed. The
run length follows trainer.py:3850-3853 (max_train_steps, else ceil(epochs x steps per epoch)).
Cases: every file of configs/, inline configs (sine, cosine_with_restarts, N processes, ...), and
files written by lora_sched's SimpleTuner writer (their text is stored in the manifest).
--check regenerates into a temporary directory and compares with the committed goldens.
"""

from __future__ import annotations

import argparse
import ast
import csv
import filecmp
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "trainers" / "simpletuner"
COMMIT = "bc8e6ab7738ce457a2ed8eb2d26cadd91c6442cb"
SECTIONS = "simpletuner/simpletuner_sdk/server/services/field_registry"

#: what every inline config carries (--optimizer is required by SimpleTuner's parser)
BASE = {"optimizer": "adamw_bf16", "model_family": "flux", "learning_rate": 1e-4}


def _cfg(**keys: object) -> dict:
    return {**BASE, **keys}


#: inline SimpleTuner configs (name -> (config, processes, steps_per_epoch))
INLINE = {
    "sine": (_cfg(lr_scheduler="sine", lr_warmup_steps=25, lr_end=1e-6, max_train_steps=120), 1, None),
    "cosine_with_restarts": (
        _cfg(lr_scheduler="cosine_with_restarts", lr_warmup_steps=10, lr_num_cycles=3, max_train_steps=60),
        1,
        None,
    ),
    "cosine_no_warmup": (_cfg(lr_scheduler="cosine", learning_rate=2e-4, max_train_steps=300), 1, None),
    "cosine_alias_te": (
        _cfg(
            lr_scheduler="cosine_with_warmup",
            train_text_encoder=True,
            text_encoder_lr=0,
            lr_warmup_steps=20,
            max_train_steps=90,
        ),
        1,
        None,
    ),
    "restarts_te": (
        _cfg(
            lr_scheduler="cosine_with_restarts",
            train_text_encoder=True,
            text_encoder_lr=2,
            lr_warmup_steps=5,
            max_train_steps=30,
        ),
        1,
        None,
    ),
    "sine_te": (
        _cfg(lr_scheduler="sine", train_text_encoder=True, text_encoder_lr=1, lr_warmup_steps=9, max_train_steps=40),
        1,
        None,
    ),
    "cosine_2proc": (_cfg(lr_scheduler="cosine", learning_rate=5e-5, lr_warmup_steps=30, max_train_steps=150), 2, None),
    "polynomial_3proc": (
        {
            "--optimizer": "adamw_bf16",
            "--model_family": "sd3",
            "--lr_scheduler": "polynomial",
            "--learning_rate": "3e-4",
            "--lr_warmup_steps": 7,
            "--lr_power": 2.0,
            "--lr_end": 1e-6,
            "--max_train_steps": 90,
        },
        3,
        None,
    ),
    "linear_te_2proc": (
        _cfg(
            lr_scheduler="linear",
            learning_rate=0.5,
            train_text_encoder=True,
            text_encoder_lr=1,
            lr_warmup_steps=10,
            max_train_steps=80,
        ),
        2,
        None,
    ),
    "constant_warmup_renamed": (_cfg(lr_scheduler="constant", lr_warmup_steps=15, max_train_steps=50), 1, None),
    "linear_epochs": (_cfg(lr_scheduler="linear", lr_warmup_steps=5, num_train_epochs=3), 1, 17),
}

#: lora_sched runs (sd-scripts TOML) written by lora_sched's SimpleTuner writer
WRITTEN = {
    "written_linear": 'lr_scheduler = "linear"\nlr_warmup_steps = 12\n',
    "written_constant_with_warmup": 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 20\n',
    "written_polynomial_p2": 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_warmup_steps = 8\n'
    "lr_scheduler_args = { lr_end = 1e-6 }\n",
    "written_linear_floor": 'lr_scheduler = "linear"\nlr_warmup_steps = 10\n'
    "lr_scheduler_args = { min_lr_ratio = 0.1 }\n",
    "written_constant": 'lr_scheduler = "constant"\n',
}
WRITTEN_BASE = "learning_rate = 1e-4\nunet_lr = 1e-4\nmax_train_steps = 100\n"


class Snapshot:
    """Files of the snapshot: a bare git dir (git show COMMIT:path) or a checkout."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.bare = not (Path(where) / "simpletuner").is_dir()

    def text(self, path: str) -> str:
        if not self.bare:
            return (Path(self.where) / path).read_text(encoding="utf-8")
        run = ["git", "--git-dir", self.where, "show", f"{COMMIT}:{path}"]
        return subprocess.run(run, capture_output=True, text=True, check=True).stdout


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _exec(snap: Snapshot, path: str, name: str, replace: tuple[str, str] | None = None) -> types.ModuleType:
    source = snap.text(path)
    if replace:
        source = source.replace(*replace)
    mod = _module(name)
    exec(compile(source, path, "exec"), mod.__dict__)  # the snapshot's own code, by design
    return mod


def load(snap: Snapshot) -> types.SimpleNamespace:
    """SimpleTuner's parser pieces and its scheduler module, with stubs for their heavy imports."""
    for pkg in (
        "simpletuner",
        "simpletuner.helpers",
        "simpletuner.helpers.training",
        "simpletuner.helpers.configuration",
    ):
        _module(pkg, __path__=[])
    _module("simpletuner.helpers.training.multi_process", should_log=lambda: False)
    _module("simpletuner.helpers.training.state_tracker", StateTracker=type("StateTracker", (), {}))
    _module("simpletuner.helpers.training.optimizer_param", available_optimizer_keys=lambda: ["adamw_bf16"])
    _exec(snap, "simpletuner/helpers/configuration/template_vars.py", "simpletuner.helpers.configuration.template_vars")
    cli = _exec(snap, "simpletuner/helpers/configuration/cli_utils.py", "simpletuner.helpers.configuration.cli_utils")
    ftypes = _exec(snap, f"{SECTIONS}/types.py", "st_field_types")
    fix = ("from ..types import", "from st_field_types import")
    training = _exec(snap, f"{SECTIONS}/sections/training.py", "st_training_fields", fix)
    advanced = _exec(snap, f"{SECTIONS}/sections/advanced.py", "st_advanced_fields", fix)
    registry = types.SimpleNamespace(_fields={})
    registry._add_field = lambda field: registry._fields.setdefault(field.name, field)
    training.register_training_fields(registry)
    advanced.register_advanced_fields(registry)
    tree = ast.parse(snap.text("simpletuner/helpers/configuration/cmd_args.py"))
    wanted = [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and n.name.startswith(
            (
                "_infer",
                "_determine",
                "_extract",
                "_parse_bool",
                "_parse_validation_prompt",
                "_is_required",
                "_add_argument_from_field",
            )
        )
    ]
    wanted += [n for n in tree.body if isinstance(n, ast.Assign) and "BOOL_" in ast.unparse(n.targets[0])]
    env = {"argparse": argparse, "Mapping": dict, "Any": object, "List": list, "Dict": dict, **ftypes.__dict__}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "cmd_args.py", "exec"), env)
    parser = argparse.ArgumentParser(exit_on_error=False)
    seen: set[str] = set()
    for field in registry._fields.values():
        if field.arg_name and field.arg_name.startswith("--") and field.arg_name not in seen:
            seen.add(field.arg_name)
            env["_add_argument_from_field"](parser, field)
    _module("simpletuner.helpers.models", __path__=[])
    schedules = _exec(
        snap, "simpletuner/helpers/training/custom_schedule.py", "simpletuner.helpers.training.custom_schedule"
    )
    return types.SimpleNamespace(cli=cli, parser=parser, schedules=schedules, env=env, fields=registry._fields)


def parse(st: types.SimpleNamespace, config: dict) -> argparse.Namespace:
    """The args SimpleTuner parses from a config mapping (cmd_args.parse_cmdline_args' steps)."""
    flags = st.cli.mapping_to_cli_args(config)
    normal = []
    for flag in flags:
        if flag.startswith(("--lr_scheduler=", "--lr-scheduler=")):
            prefix, value = flag.split("=", 1)
            flag = f"{prefix}={st.cli.normalize_lr_scheduler_value(value)}"
        normal.append(flag)
    args, _ = st.parser.parse_known_args(normal)
    args.lr_scheduler = st.cli.normalize_lr_scheduler_value(args.lr_scheduler, args.lr_warmup_steps)
    return args


def run_case(st: types.SimpleNamespace, config: dict, processes: int, steps_per_epoch: int | None) -> tuple:
    """(group names, rows) of SimpleTuner's LRs at every optimizer update."""
    import torch
    from accelerate import scheduler as acc_scheduler

    args = parse(st, config)
    if not args.max_train_steps:  # trainer.py:3850-3853
        args.max_train_steps = math.ceil(float(args.num_train_epochs) * steps_per_epoch)
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]}]
    names = ["unet"]
    if args.train_text_encoder and args.text_encoder_lr is not None:  # trainer.py:4095-4099
        groups.append({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": float(args.text_encoder_lr)})
        names.append("text_encoder")
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
    accelerator = types.SimpleNamespace(num_processes=processes)
    sched = st.schedules.get_lr_scheduler(args, optimizer, accelerator, logging.getLogger("st"), global_step=0)
    if hasattr(sched, "last_step"):  # trainer.py:4287-4288
        sched.last_step = 0
    acc_scheduler.AcceleratorState = lambda: types.SimpleNamespace(num_processes=processes)
    stepped = acc_scheduler.AcceleratedScheduler(sched, [types.SimpleNamespace(step_was_skipped=False)])
    rows = []
    for step in range(args.max_train_steps):
        rows.append([step, *(group["lr"] for group in optimizer.param_groups)])
        optimizer.step()
        stepped.step()
    return names, rows


def written_cases() -> dict[str, dict]:
    """The SimpleTuner configs lora_sched's writer makes from the WRITTEN runs."""
    sys.path.insert(0, str(ROOT))
    from lora_sched.trainers import read_run, write_run

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in WRITTEN.items():
            path = Path(tmp) / f"{name}.toml"
            path.write_text(WRITTEN_BASE + text, encoding="utf-8")
            out[name] = json.loads(write_run(read_run(str(path), trainer="sd-scripts"), "simpletuner"))
    return out


def generate(snap: Snapshot, out: Path) -> None:
    import accelerate
    import diffusers
    import torch

    st = load(snap)
    cases = []
    configs = sorted(p for p in (DATA / "configs").iterdir() if p.name != "PROVENANCE.json")
    todo = [(p.stem, {"file": f"configs/{p.name}"}, json.loads(p.read_text()), 1, None) for p in configs]
    todo += [(n, {"config": c}, c, procs, spe) for n, (c, procs, spe) in INLINE.items()]
    todo += [
        (n, {"config": c, "written_from": WRITTEN_BASE + WRITTEN[n]}, c, 1, None) for n, c in written_cases().items()
    ]
    (out / "goldens").mkdir(parents=True, exist_ok=True)
    for name, source, config, processes, steps_per_epoch in todo:
        groups, rows = run_case(st, config, processes, steps_per_epoch)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["step", *(f"lr_{g}" for g in groups)])
        writer.writerows([[row[0], *(repr(float(v)) for v in row[1:])] for row in rows])
        (out / "goldens" / f"{name}.csv").write_text(text.getvalue(), encoding="utf-8")
        case = {"name": name, **source, "processes": processes, "steps_per_epoch": steps_per_epoch}
        cases.append({**case, "groups": groups, "run_length": len(rows), "csv": f"goldens/{name}.csv"})
    manifest = {
        "repository": "bghira/SimpleTuner",
        "commit": COMMIT,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "parser_types": {
            k: _type_name(st, k)
            for k in ("learning_rate", "lr_warmup_steps", "text_encoder_lr", "lr_end", "lr_power", "max_train_steps")
        },
        "cases": cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _type_name(st: types.SimpleNamespace, key: str) -> str:
    field = st.fields[key]
    return st.env["_determine_cli_type"](field, st.env["_extract_choice_values"](field)).__name__


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshot", help=f"SimpleTuner checkout or bare git dir (at {COMMIT[:10]})")
    ap.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare")
    opts = ap.parse_args(argv)
    snap = Snapshot(opts.snapshot)
    if not opts.check:
        generate(snap, DATA)
        print(f"wrote {DATA / 'manifest.json'}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(snap, Path(tmp))
        names = ["manifest.json", *(f"goldens/{p.name}" for p in (Path(tmp) / "goldens").iterdir())]
        bad = [n for n in names if not (DATA / n).exists() or not filecmp.cmp(Path(tmp) / n, DATA / n, shallow=False)]
    print("goldens up to date" if not bad else "differ: " + ", ".join(sorted(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
