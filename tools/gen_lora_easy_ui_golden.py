"""Regenerate tests/data/trainers/lora-easy/: LoRA_Easy UI TOML files and what its backend runs.

    PYTHONPATH=DIR_WITH_toml python tools/gen_lora_easy_ui_golden.py \
        UI_GIT_DIR --backend BACKEND_GIT_DIR --sd-scripts SD_SCRIPTS_GIT_DIR [--out DIR] [--check]

The three paths are bare git dirs (or checkouts); the files are read at the commits below with `git
show`. Needs the `toml` package (the UI's own writer) besides the project's environment.

1. configs/: each CASES entry is a UI state (the widgets' arg dicts, built by hand following each
   widget's defaults in main_ui_files/*.py) saved by the UI's own code: MainWidget.save_toml
   (main_ui_files/MainUI.py) and modules/TomlFunctions.save_toml (toml.dumps), exec'd from the
   snapshot with a stand-in for PySide6's file dialog. PROVENANCE.json says how each was made.
2. golden/NAME.json: the backend's own mapping run on the file as the UI sends it (MainWidget's
   process_toml + perform_name_replace, then utils/validation.py validate and utils/process.py
   process_args), on synthetic images (CASES' data) in a temporary folder; calculate_steps uses
   sd-scripts' BucketManager (library/train_util.py at the backend's sd_scripts submodule commit):
   the flat sd-scripts args of runtime_store/config.toml, paths replaced by placeholders.
3. golden/NAME.csv: sd-scripts' get_scheduler_fix (exec'd from that train_util.py) on those args,
   with one torch param group per trained group (text encoder, then U-Net), stepped as
   train_network.py does (LR, optimizer.step(), scheduler.step()) for max_train_steps, or for
   max_train_epochs x the backend's count of an epoch (sd-scripts counts the same batches here:
   one dataset, no regularisation images, one process).
4. written/: files lora_sched's writer makes for WRITE_CASES, completed with a model, an output
   folder and a subset as a user does in the UI, then 2. and 3. again (golden/written_NAME.*).
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parents[1]
UI = ("derrian-distro/LoRA_Easy_Training_Scripts", "ae5ce073756dcc7603245ec3d9e0a650503f3301")
BACKEND = ("derrian-distro/LoRA_Easy_Training_scripts_Backend", "162e56de18e4d4ab96b066380606d657a68c66fa")
SD_SCRIPTS = ("kohya-ss/sd-scripts", None)  # the backend's sd_scripts submodule commit
MODEL, OUTPUT, IMAGES = "<model>", "<output_dir>", "<image_dir_{}>"

# ---- UI states (each widget's args as its code builds them) ------------------------------------
GENERAL = {
    "pretrained_model_name_or_path": MODEL,
    "mixed_precision": "fp16",
    "seed": 23,
    "clip_skip": 2,
    "max_train_epochs": 1,
    "max_data_loader_n_workers": 1,
    "persistent_data_loader_workers": True,
    "max_token_length": 225,
    "prior_loss_weight": 1.0,
}
NETWORK = {"network_dim": 32, "network_alpha": 16.0, "min_timestep": 0, "max_timestep": 1000}
OPTIMIZER = {
    "optimizer_type": "AdamW",
    "lr_scheduler": "cosine",
    "learning_rate": 1e-4,
    "max_grad_norm": 1.0,
    "loss_type": "l2",
    "optimizer_args": {"weight_decay": "0.1"},
}
SAVING = {"save_precision": "fp16", "save_model_as": "safetensors", "output_dir": OUTPUT}
BUCKETS = {"enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024, "bucket_reso_steps": 64}
REX = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"
CAWR = "LoraEasyCustomOptimizer.CosineAnnealingWarmRestarts.CosineAnnealingWarmRestarts"


def state(general=None, optimizer=None, network=None, extra=None, batch=1, drop=(), subsets=((10, 1),), only=None):
    """(widgets {name: {"args", "dataset_args"}}, subsets): the UI's defaults updated; `drop` removes
    keys (a widget left off), `only` keeps just those widgets; subsets: (images, repeats) each."""
    g = {k: v for k, v in {**GENERAL, **(general or {})}.items() if k not in drop}
    o = {k: v for k, v in {**OPTIMIZER, **(optimizer or {})}.items() if k not in drop}
    widgets = {
        "general_args": {"args": g, "dataset_args": {"resolution": 512, "batch_size": batch}},
        "network_args": {"args": {**NETWORK, **(network or {})}},
        "optimizer_args": {"args": o},
        "saving_args": {"args": dict(SAVING)},
        "bucket_args": {"dataset_args": dict(BUCKETS)},
    }
    if extra:
        widgets["extra_args"] = {"args": extra}
    if only:
        widgets = {k: v for k, v in widgets.items() if k in only}
    subs = [
        {"num_repeats": r, "caption_extension": ".txt", "name": f"subset {i + 1}", "image_dir": IMAGES.format(i)}
        for i, (_, r) in enumerate(subsets)
    ]
    return widgets, subs


#: name -> (what it shows, UI state, data: per subset a list of (count, width, height))
CASES = {
    "defaults_cosine_epochs": (
        "the UI's defaults (cosine, no warmup) for 10 epochs, 20 images x 2 repeats, batch 2",
        state(general={"max_train_epochs": 10}, batch=2, subsets=((20, 2),)),
        [[(20, 512, 512)]],
    ),
    "cosine_warmup_steps": (
        "cosine, warmup ratio 0.05 of 800 steps, U-Net and text encoder LRs",
        state(
            general={"max_train_steps": 800},
            drop=("max_train_epochs",),
            optimizer={"warmup_ratio": 0.05, "unet_lr": 3e-4, "text_encoder_lr": 6e-5},
        ),
        [[(10, 512, 512)]],
    ),
    "restarts_buckets_epochs": (
        "cosine with restarts, 3 cycles, warmup ratio 0.1, 6 epochs, two subsets in three buckets, batch 2, accum. 2",
        state(
            general={"max_train_epochs": 6, "gradient_accumulation_steps": 2},
            optimizer={"lr_scheduler": "cosine_with_restarts", "lr_scheduler_num_cycles": 3, "warmup_ratio": 0.1},
            batch=2,
            subsets=((9, 3), (5, 2)),
        ),
        [[(5, 512, 512), (4, 768, 512)], [(5, 512, 768)]],
    ),
    "rex_cycles_steps": (
        "REX (RAWR): 3 cycles of 1000 steps (a 1-step fourth cycle), warmup ratio 0.05 split per cycle",
        state(
            general={"max_train_steps": 1000},
            drop=("max_train_epochs",),
            optimizer={
                "lr_scheduler_type": REX,
                "lr_scheduler_args": {"min_lr": 1e-6, "gamma": 0.9, "d": 0.9},
                "lr_scheduler_num_cycles": 3,
                "warmup_ratio": 0.05,
                "unet_lr": 3e-4,
                "text_encoder_lr": 6e-5,
            },
        ),
        [[(10, 512, 512)]],
    ),
    "cawr_epochs": (
        "cosine annealing warm restarts (CAWR): 4 cycles, gamma 0.85, warmup ratio 0.1, 5 epochs",
        state(
            general={"max_train_epochs": 5},
            optimizer={
                "lr_scheduler_type": CAWR,
                "lr_scheduler_args": {"min_lr": 1e-6, "gamma": 0.85},
                "lr_scheduler_num_cycles": 4,
                "warmup_ratio": 0.1,
            },
            subsets=((16, 5),),
        ),
        [[(16, 512, 512)]],
    ),
    "rex_no_cycles": (
        "REX with no lr_scheduler_num_cycles (removed by hand): the class's 1-step cycles",
        state(
            general={"max_train_steps": 200},
            drop=("max_train_epochs",),
            optimizer={"lr_scheduler_type": REX, "lr_scheduler_args": {"min_lr": 1e-6, "gamma": 0.98, "d": 0.9}},
        ),
        [[(10, 512, 512)]],
    ),
    "polynomial_te_zero": (
        "polynomial power 2, warmup ratio 0.1 of 500 steps; text encoder LR typed as 0 (dropped by the backend)",
        state(
            general={"max_train_steps": 500},
            drop=("max_train_epochs",),
            optimizer={
                "lr_scheduler": "polynomial",
                "lr_scheduler_power": 2.0,
                "warmup_ratio": 0.1,
                "unet_lr": 2e-4,
                "text_encoder_lr": 0.0,
            },
        ),
        [[(10, 512, 512)]],
    ),
    "constant_warmup_unet_only": (
        "constant with warmup, ratio 0.02 of 600 steps, U-Net only",
        state(
            general={"max_train_steps": 600},
            drop=("max_train_epochs",),
            optimizer={"lr_scheduler": "constant_with_warmup", "warmup_ratio": 0.02},
            network={"network_train_unet_only": True},
        ),
        [[(10, 512, 512)]],
    ),
    "extra_args_linear": (
        "cosine in the optimizer widget, lr_scheduler = linear in Extra Args (a later table wins), 300 steps",
        state(
            general={"max_train_steps": 300},
            drop=("max_train_epochs",),
            optimizer={"warmup_ratio": 0.1},
            extra={"lr_scheduler": "linear"},
        ),
        [[(10, 512, 512)]],
    ),
    "optimizer_only": (
        "only the optimizer widget (constant, 1e-4): a partial file the backend refuses",
        state(optimizer={"lr_scheduler": "constant"}, only=("optimizer_args",)),
        None,
    ),
}

#: name -> (lora_sched sd-scripts TOML of the run to write)
WRITE_CASES = {
    "cosine_warmup": 'learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\nlr_scheduler = "cosine"\n'
    "lr_warmup_steps = 10\nmax_train_steps = 100\n",
    "restarts_3": 'learning_rate = 2e-4\ntext_encoder_lr = 5e-5\nlr_scheduler = "cosine_with_restarts"\n'
    "lr_scheduler_num_cycles = 3\nlr_warmup_steps = 12\nmax_train_steps = 150\n",
    "polynomial_2": 'learning_rate = 1e-4\nunet_lr = 3e-4\nlr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\n'
    "lr_warmup_steps = 7\nmax_train_steps = 120\n",
    "rex_lora_sched": 'learning_rate = 1e-4\ntext_encoder_lr = 3e-5\nlr_scheduler = "rex"\nlr_warmup_steps = 10\n'
    "max_train_steps = 100\n",
}


# ---- snapshots ---------------------------------------------------------------------------------
def git_show(repo: Path, commit: str, path: str) -> str:
    git_dir = repo if (repo / "HEAD").exists() and not (repo / ".git").exists() else repo / ".git"
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def submodule_commit(repo: Path, commit: str, path: str) -> str:
    git_dir = repo if (repo / "HEAD").exists() and not (repo / ".git").exists() else repo / ".git"
    out = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", commit, path], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[2]


def functions(source: str, names: set[str], cls: str | None = None) -> str:
    """The source of the named top-level functions (or methods of `cls`), dedented."""
    tree = ast.parse(source)
    body = tree.body
    if cls:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    found = [ast.get_source_segment(source, n) for n in body if getattr(n, "name", None) in names]
    import textwrap

    return "\n\n".join(textwrap.dedent("    " + f if cls else f) for f in found)


class Sources:
    """The snapshot code the generation runs, loaded once."""

    def __init__(self, ui: Path, backend: Path, sd: Path) -> None:
        self.sd_commit = submodule_commit(backend, BACKEND[1], "sd_scripts")
        self.work = Path(tempfile.mkdtemp(prefix="lora_easy_gen_"))
        self.ui = self._ui(ui)
        self.backend = self._backend(backend, sd)
        self.scheduler = self._scheduler(sd)

    def _ui(self, repo: Path) -> dict:
        pyside = types.ModuleType("PySide6")
        widgets = types.ModuleType("PySide6.QtWidgets")
        widgets.QFileDialog = object  # save_toml is always given a path here: no dialog opens
        pyside.QtWidgets = widgets
        sys.modules.setdefault("PySide6", pyside)
        sys.modules.setdefault("PySide6.QtWidgets", widgets)
        toml_functions = types.ModuleType("TomlFunctions")
        exec(
            compile(git_show(repo, UI[1], "modules/TomlFunctions.py"), "TomlFunctions.py", "exec"), vars(toml_functions)
        )
        enums: dict = {}
        exec(git_show(repo, UI[1], "modules/Enums.py"), enums)
        space = {"TomlFunctions": toml_functions, "TrainingModes": enums["TrainingModes"], "Path": Path}
        main_ui = git_show(repo, UI[1], "main_ui_files/MainUI.py")
        exec(functions(main_ui, {"save_toml", "process_toml", "perform_name_replace"}, "MainWidget"), space)
        space["modes"] = enums["TrainingModes"]
        return space

    def _backend(self, repo: Path, sd: Path) -> dict:
        import random

        import numpy as np

        train_util = git_show(sd, self.sd_commit, "library/train_util.py")
        model_util = types.SimpleNamespace()
        space = {"math": math, "np": np}
        exec(functions(git_show(sd, self.sd_commit, "library/model_util.py"), {"make_bucket_resolutions"}), space)
        model_util.make_bucket_resolutions = space["make_bucket_resolutions"]
        bucket_space = {"np": np, "math": math, "random": random, "model_util": model_util, "Tuple": tuple}
        exec(functions(train_util, {"BucketManager"}), bucket_space)
        library = types.ModuleType("library")
        stub = types.ModuleType("library.train_util")
        stub.BucketManager = bucket_space["BucketManager"]
        library.train_util = stub
        sys.modules["library"], sys.modules["library.train_util"] = library, stub
        out: dict = {}
        exec(compile(git_show(repo, BACKEND[1], "utils/validation.py"), "validation.py", "exec"), out)
        exec(compile(git_show(repo, BACKEND[1], "utils/process.py"), "process.py", "exec"), out)
        custom = self.work / "custom_scheduler" / "LoraEasyCustomOptimizer"
        custom.mkdir(parents=True)
        for name in ("__init__", "RexAnnealingWarmRestarts", "CosineAnnealingWarmRestarts"):
            path = f"custom_scheduler/LoraEasyCustomOptimizer/{name}.py"
            (custom / f"{name}.py").write_text(git_show(repo, BACKEND[1], path))
        sys.path.insert(0, str(custom.parent))
        return out

    def _scheduler(self, sd: Path) -> dict:
        import ast as ast_module
        import importlib
        import logging

        import torch
        from diffusers.optimization import TYPE_TO_SCHEDULER_FUNCTION as DIFFUSERS_FUNCTIONS
        from diffusers.optimization import SchedulerType as DiffusersSchedulerType
        from transformers import optimization
        from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType

        source = git_show(sd, self.sd_commit, "library/train_util.py")
        space = {
            "ast": ast_module,
            "importlib": importlib,
            "torch": torch,
            "transformers": types.SimpleNamespace(optimization=optimization),
            "logger": logging.getLogger("sd-scripts"),
            "Optimizer": torch.optim.Optimizer,
            "Optional": object,
            "Any": object,
            "argparse": argparse,
            "SchedulerType": SchedulerType,
            "TYPE_TO_SCHEDULER_FUNCTION": TYPE_TO_SCHEDULER_FUNCTION,
            "DiffusersSchedulerType": DiffusersSchedulerType,
            "DIFFUSERS_TYPE_TO_SCHEDULER_FUNCTION": DIFFUSERS_FUNCTIONS,
        }
        names = {"get_scheduler_fix", "is_schedulefree_optimizer", "get_dummy_scheduler"}
        exec(functions(source, names), space)
        return space


# ---- generating ----------------------------------------------------------------------------------
def save_ui(sources: Sources, widgets: dict, subsets: list, path: Path) -> None:
    """MainWidget.save_toml with the widgets' state (self.get_args / subset_widget / train_mode)."""
    args = {name: w["args"] for name, w in widgets.items() if w.get("args")}
    dataset = {name: w["dataset_args"] for name, w in widgets.items() if w.get("dataset_args")}
    fake = types.SimpleNamespace(
        get_args=lambda: ({"args": args, "dataset": dataset}, {s["name"]: s for s in subsets}),
        train_mode=sources.ui["modes"].LORA,
    )
    sources.ui["save_toml"](fake, path)


def make_images(folder: Path, data: list[tuple[int, int, int]]) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    n = 0
    for count, width, height in data:
        for _ in range(count):
            Image.new("RGB", (width, height)).save(folder / f"{n:03d}.png")
            (folder / f"{n:03d}.txt").write_text("a, b")
            n += 1


def backend_args(sources: Sources, path: Path, data: list | None, complete: bool = False) -> tuple[dict, dict]:
    """(golden JSON, the flat args as sd-scripts reads them) of the UI file at `path`."""
    work = Path(tempfile.mkdtemp(dir=sources.work))
    (work / "config.json").write_text("{}")
    (work / "runtime_store").mkdir()
    (work / "model.safetensors").write_bytes(b"")
    (work / "out").mkdir()
    places = {MODEL: str(work / "model.safetensors"), OUTPUT: str(work / "out")}
    for i, subset in enumerate(data or []):
        make_images(work / f"images{i}", subset)
        places[IMAGES.format(i)] = str(work / f"images{i}")
    args, dataset, _mode = sources.ui["process_toml"](None, path)
    if complete:  # what a user fills in the UI around a written file
        args.setdefault("general_args", {})["pretrained_model_name_or_path"] = MODEL
        args.setdefault("saving_args", {})["output_dir"] = OUTPUT
        dataset.setdefault("general_args", {"resolution": 512, "batch_size": 1})
        dataset["subsets"] = [{"num_repeats": 1, "caption_extension": ".txt", "image_dir": IMAGES.format(0)}]
    text = json.dumps({"args": sources.ui["perform_name_replace"](None, args), "dataset": dataset})
    for placeholder, real in places.items():
        text = text.replace(placeholder, real)
    body = json.loads(text)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        try:
            result = sources.backend["validate"](body)
        except Exception as exc:  # the backend's own failure (a KeyError on a partial file)
            return {"backend": f"{type(exc).__name__}: {exc}"}, {}
        passed, _sdxl, errors, flat, dataset_out = result[:5]
        if not passed:
            return {"backend": "refused", "errors": errors}, {}
        sources.backend["process_args"](flat)
        config = tomllib.loads((work / "runtime_store" / "config.toml").read_text())
        per_epoch = None
        if "max_train_epochs" in config:
            per_epoch = sources.backend["calculate_steps"](dataset_out, 1, config.get("gradient_accumulation_steps", 1))
    finally:
        os.chdir(cwd)
    shown = json.loads(
        json.dumps(config).replace(str(work / "model.safetensors"), MODEL).replace(str(work / "out"), OUTPUT)
    )
    return {"backend": "ok", "config_toml": shown, "steps_per_epoch": per_epoch}, config


def curve(sources: Sources, config: dict, per_epoch: int | None) -> tuple[list[str], list[list[float]], int]:
    """sd-scripts' get_scheduler_fix on the backend's args, stepped through the run."""
    import torch

    defaults = {
        "lr_scheduler": "constant", "lr_warmup_steps": 0, "lr_decay_steps": 0, "lr_scheduler_num_cycles": 1,
        "lr_scheduler_power": 1.0, "lr_scheduler_timescale": None, "lr_scheduler_min_lr_ratio": None,
        "lr_scheduler_args": None, "lr_scheduler_type": "", "learning_rate": 2e-6, "max_train_steps": 1600,
        "max_train_epochs": None, "optimizer_type": "", "unet_lr": None, "text_encoder_lr": None,
    }  # fmt: skip
    args = argparse.Namespace(**{**defaults, **config})
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * per_epoch
    groups = {
        "text_encoder": 0.0 if config.get("network_train_unet_only") else (args.text_encoder_lr or args.learning_rate),
        "unet": 0.0 if config.get("network_train_text_encoder_only") else (args.unet_lr or args.learning_rate),
    }
    groups = {k: v for k, v in groups.items() if v}
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in groups.values()]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    optimizer._step_count = 0  # torch < 2.2 set it; LoRA_Easy's cosine class reads it
    scheduler = sources.scheduler["get_scheduler_fix"](args, optimizer, 1)
    rows = []
    for _ in range(args.max_train_steps):
        rows.append([float(g["lr"]) for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return list(groups), rows, args.max_train_steps


def write_golden(out: Path, name: str, info: dict, config: dict, sources: Sources) -> dict:
    golden = out / "golden"
    (golden / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if info["backend"] != "ok":
        return {"backend": info["backend"]}
    names, rows, steps = curve(sources, config, info["steps_per_epoch"])
    lines = ["step," + ",".join(f"lr_{n}" for n in names)]
    lines += [f"{s}," + ",".join(repr(v) for v in row) for s, row in enumerate(rows)]
    (golden / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return {"run_length": steps, "groups": names, "steps_per_epoch": info["steps_per_epoch"]}


def generate(out: Path, sources: Sources) -> None:
    import torch

    from lora_sched.trainers import lora_easy, read_document, sd_scripts
    from lora_sched.trainers.base import RunFacts

    for sub in ("configs", "golden", "written"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    provenance, cases = {}, {}
    for name, (what, (widgets, subsets), data) in CASES.items():
        path = out / "configs" / f"{name}.toml"
        save_ui(sources, widgets, subsets, path)
        provenance[path.name] = {
            "repository": UI[0], "commit": UI[1], "path": "main_ui_files/MainUI.py",
            "produced": "MainWidget.save_toml + modules/TomlFunctions.save_toml (toml.dumps) replayed on a "
            "hand-built UI state: " + what,
        }  # fmt: skip
        info, config = backend_args(sources, path, data)
        cases[name] = {"file": f"configs/{name}.toml", "what": what, "data": data,
                       **write_golden(out, name, info, config, sources)}  # fmt: skip
    for name, source in WRITE_CASES.items():
        src = sources.work / f"{name}.toml"
        src.write_text(source)
        run = sd_scripts.read(read_document(str(src)), RunFacts())
        path = out / "written" / f"{name}.toml"
        path.write_text(lora_easy.write(run, RunFacts()))
        info, config = backend_args(sources, path, [[(4, 512, 512)]], complete=True)
        cases[f"written_{name}"] = {"file": f"written/{name}.toml", "from": source,
                                    **write_golden(out, f"written_{name}", info, config, sources)}  # fmt: skip
    (out / "configs" / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    manifest = {
        "repositories": {"ui": list(UI), "backend": list(BACKEND), "sd-scripts": [SD_SCRIPTS[0], sources.sd_commit]},
        "torch": torch.__version__,
        "cases": cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ui", type=Path, help="a LoRA_Easy_Training_Scripts git dir or checkout")
    parser.add_argument("--backend", type=Path, required=True)
    parser.add_argument("--sd-scripts", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE / "tests/data/trainers/lora-easy")
    parser.add_argument("--check", action="store_true", help="regenerate to a temporary folder and compare")
    opts = parser.parse_args(argv)
    sources = Sources(opts.ui, opts.backend, opts.sd_scripts)
    try:
        if not opts.check:
            generate(opts.out, sources)
            print(f"wrote {len(CASES)} configs and {len(WRITE_CASES)} written files to {opts.out}")
            return 0
        fresh = sources.work / "fresh"
        generate(fresh, sources)
        differ = [str(p.relative_to(fresh)) for p in sorted(fresh.rglob("*")) if p.is_file()
                  and not filecmp.cmp(p, opts.out / p.relative_to(fresh), shallow=False)
                  if (opts.out / p.relative_to(fresh)).exists()]  # fmt: skip
        missing = [
            str(p.relative_to(fresh)) for p in fresh.rglob("*") if not (opts.out / p.relative_to(fresh)).exists()
        ]
        print("\n".join(f"differs: {d}" for d in differ + missing) or "goldens are up to date")
        return 1 if differ or missing else 0
    finally:
        shutil.rmtree(sources.work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
