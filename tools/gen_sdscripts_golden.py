"""Golden LR curves of tests/realworld/ computed by sd-scripts itself.

    SDSCRIPTS_VENV/bin/python tools/gen_sdscripts_golden.py SD_SCRIPTS_CHECKOUT \
        [--custom-scheduler LORA_EASY_BACKEND/custom_scheduler] [--only NAME ...]

Run it with a Python environment that can import sd-scripts' library (torch, transformers, diffusers,
accelerate, toml, voluptuous, imagesize, opencv, ...), never the project's own environment. For each
corpus config it:

1. builds the synthetic data set of manifest.json in a temporary folder and points the config (and its
   dataset config) at it;
2. reads the config exactly as sd-scripts does: the training script's ``setup_parser()`` and
   ``train_util.read_config_from_file(args, parser)``, with ``--dataset_config`` on the command line
   where the tool passes it there, then ``verify_training_args`` and ``prepare_dataset_args``;
3. counts the run like train_network.py: ``max_train_steps``, or for ``max_train_epochs`` the length
   of sd-scripts' own dataset group (``BlueprintGenerator`` + ``generate_dataset_group_by_blueprint``);
4. makes one torch optimizer with the param groups sd-scripts' LoRA networks create (text encoder
   group first, then the U-Net group; their LRs from text_encoder_lr / unet_lr / learning_rate; a
   list text_encoder_lr is cut to its first item for networks without per-encoder LRs; a group with
   LR 0 is left out; network_train_unet_only / _text_encoder_only / cached text encoder outputs
   drop the text encoder group);
5. steps ``train_util.get_scheduler_fix(args, optimizer, 1)`` through the run and writes
   golden/NAME.csv: ``step,lr_unet,lr_text_encoder`` (columns for the groups that exist), each LR as Python's
   shortest exact float repr.

sd-scripts imports torchvision only for image transforms that computing a schedule never calls; where
torchvision cannot be imported, a stand-in module is put on the path (and the CSV header says so).
A config sd-scripts refuses gets a golden file holding the error message and no rows.

With --verify-exports PYTHON it writes nothing: it runs `PYTHON -m lora_sched export --kohya` on each
config (PYTHON: an environment with lora_sched) and checks that sd-scripts, reading the exported file
(with lora_sched importable for a LoraSchedLR export), steps the golden curve.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
from realworld_support import CORPUS, relocate  # noqa: E402  (shared with the test: same data sets)

MULTI_TE_NETWORKS = ("networks.lora_flux", "networks.lora_sd3", "networks.lora_lumina", "networks.lora_anima")


def install_torchvision_stand_in(work: Path) -> bool:
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    stub = work / "stub" / "torchvision"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("from . import transforms  # noqa: F401\n")
    (stub / "transforms.py").write_text(
        "class _NotForSchedules:\n"
        "    def __init__(self, *args, **kwargs):\n        pass\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        raise RuntimeError('image transforms are not part of an LR schedule')\n"
        "Compose = ToTensor = Normalize = _NotForSchedules\n"
        "class functional:\n    pil_to_tensor = gaussian_blur = staticmethod(_NotForSchedules())\n"
    )
    sys.path.insert(0, str(stub.parent))
    return True


def read_args(script, config: Path, dataset: Path | None):
    from library import train_util

    argv = ["--config_file", str(config)] + (["--dataset_config", str(dataset)] if dataset else [])
    sys.argv = [script.__name__ + ".py", *argv]
    parser = script.setup_parser()
    args = parser.parse_args(argv)
    train_util.verify_command_line_training_args(args)
    args = train_util.read_config_from_file(args, parser)
    train_util.verify_training_args(args)
    train_util.prepare_dataset_args(args, True)
    return args


def trainer_of(script):
    for name in ("SdxlNetworkTrainer", "FluxNetworkTrainer", "NetworkTrainer"):
        if hasattr(script, name):
            return getattr(script, name)()
    raise RuntimeError(f"no trainer class in {script.__name__}")


def batches_per_epoch(script, args) -> int:
    """len(train_dataloader) as train_network.py builds it (the dataset yields whole batches)."""
    from library import config_util, strategy_base
    from library.config_util import BlueprintGenerator, ConfigSanitizer

    trainer = trainer_of(script)
    strategy_base.LatentsCachingStrategy._strategy = None  # one process, many configs: start each afresh
    strategy_base.LatentsCachingStrategy.set_strategy(trainer.get_latents_caching_strategy(args))
    if args.dataset_config is not None:
        user_config = config_util.load_user_config(args.dataset_config)
    else:
        subsets = config_util.generate_dreambooth_subsets_config_by_subdirs(args.train_data_dir, args.reg_data_dir)
        user_config = {"datasets": [{"subsets": subsets}]}
    blueprint = BlueprintGenerator(ConfigSanitizer(True, True, args.masked_loss, True)).generate(user_config, args)
    group, _ = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
    return len(group)


def run_length(script, args) -> int:
    if args.max_train_epochs is not None:
        per_epoch = math.ceil(batches_per_epoch(script, args) / 1 / args.gradient_accumulation_steps)
        args.max_train_steps = args.max_train_epochs * per_epoch
    return args.max_train_steps


def param_group_lrs(args) -> dict[str, float]:
    """{group: initial LR} in sd-scripts' order (text encoder, then U-Net)."""
    module = args.network_module or "networks.lora"
    te_lr = args.text_encoder_lr
    if isinstance(te_lr, list) and module not in MULTI_TE_NETWORKS:
        te_lr = te_lr[0] if te_lr else None
    if isinstance(te_lr, list):
        te_lr = te_lr[0] if te_lr else None  # one group per encoder, same schedule: the first is enough here
    te_lr = args.learning_rate if te_lr is None else te_lr
    unet_lr = args.learning_rate if args.unet_lr is None else args.unet_lr
    train_te = not args.network_train_unet_only and not getattr(args, "cache_text_encoder_outputs", False)
    train_unet = not getattr(args, "network_train_text_encoder_only", False)
    groups = {}
    if train_te and te_lr:
        groups["text_encoder"] = te_lr
    if train_unet and unet_lr:
        groups["unet"] = unet_lr
    return groups


def make_optimizer(args, groups: dict[str, float]):
    import torch

    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in groups.values()]
    if args.lr_scheduler.startswith("adafactor") or (args.optimizer_type or "").lower() == "adafactor":
        from library import train_util

        _name, _args, optimizer = train_util.get_optimizer(args, params)
        return optimizer, "sd-scripts get_optimizer (transformers Adafactor)"
    # lr=learning_rate as sd-scripts' get_optimizer passes it: polynomial's lr_end ratio is taken from it
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    return optimizer, f"torch.optim.AdamW(lr=learning_rate) standing in for {args.optimizer_type or 'AdamW'}"


def curve(script, args) -> tuple[list[str], list[list[float]], str]:
    from library import train_util

    steps = run_length(script, args)
    groups = param_group_lrs(args)
    optimizer, how = make_optimizer(args, groups)
    # torch < 2.2 gave every optimizer a _step_count when a scheduler was built; LoRA_Easy's
    # CosineAnnealingWarmRestarts still counts on it (its pinned torch is older than ours)
    optimizer._step_count = 0
    scheduler = train_util.get_scheduler_fix(args, optimizer, 1)
    names = list(groups)
    if type(scheduler).__name__ == "AdafactorSchedule":
        return (
            names,
            adafactor_steps(optimizer, steps),
            f"run length {steps} steps; groups {names}; optimizer: "
            + how
            + (
                "; LR = the optimizer's relative step size (Adafactor._get_lr at step k + 1 with scale_parameter off:"
                " the parameter-RMS factor it multiplies in is data-dependent)"
            ),
        )
    rows = []
    for _ in range(steps):
        rows.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    note = f"run length {steps} steps; groups (sd-scripts order) {names}; optimizer: {how}"
    return names, rows, note


def adafactor_steps(optimizer, steps: int) -> list[list[float]]:
    """With relative_step, AdafactorSchedule only reports what the optimizer computes once gradients
    exist; the schedule part of that is the relative step size, taken from the optimizer's own code."""
    return [
        [optimizer._get_lr({**group, "scale_parameter": False}, {"step": k + 1}) for group in optimizer.param_groups]
        for k in range(steps)
    ]


def write_golden(path: Path, header: list[str], names: list[str], rows: list[list[float]]) -> None:
    order = [n for n in ("unet", "text_encoder") if n in names]
    index = [names.index(n) for n in order]
    lines = [f"# {h}" for h in header]
    lines.append("step," + ",".join(f"lr_{n}" for n in order))
    for step, lrs in enumerate(rows):
        lines.append(f"{step}," + ",".join(repr(float(lrs[i])) for i in index))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def verify_export(python: str, script, entry: dict, config: Path, dataset: Path | None, work: Path) -> bool:
    """lora-sched's export of the config, read and stepped by sd-scripts, against the golden curve."""
    from realworld_support import read_golden

    exported = work / f"exported_{config.name}"
    argv = [python, "-m", "lora_sched", "export", "--kohya", str(config), "-o", str(exported)]
    done = subprocess.run(
        argv + (["--dataset-config", str(dataset)] if dataset else []), capture_output=True, text=True
    )
    _, golden, error = read_golden(entry["name"])
    if done.returncode:
        verdict = "refused, as sd-scripts" if error else "export failed"
        print(f"{entry['name']}: {verdict}: {done.stderr.strip().splitlines()[-1:]}")
        return bool(error)
    try:
        names, rows, _ = curve(script, read_args(script, exported, dataset))
    except BaseException as exc:
        print(f"{entry['name']}: sd-scripts refuses the export: {type(exc).__name__}: {exc}")
        return False
    if error:
        print(
            f"{entry['name']}: exported (sd-scripts runs the export, {len(rows)} steps),"
            f" but sd-scripts refuses the source: {error}"
        )
        return False
    got = {f"lr_{n}": [r[i] for r in rows] for i, n in enumerate(names)}
    want = {k: v for k, v in golden.items() if k != "step"}
    if sorted(got) != sorted(want) or any(len(got[k]) != len(want[k]) for k in want):
        print(
            f"{entry['name']}: export runs {len(rows)} steps of {sorted(got)},"
            f" golden {len(golden['step'])} of {sorted(want)}"
        )
        return False
    worst = max(abs(a - b) / abs(b) if b else abs(a) for k in want for a, b in zip(got[k], want[k]))
    print(f"{entry['name']}: export {'OK' if worst <= 1e-9 else 'DIFFERS'} (max relative difference {worst:.3g})")
    return worst <= 1e-9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sd_scripts", type=Path, help="a checkout of kohya-ss/sd-scripts")
    parser.add_argument("--custom-scheduler", type=Path, help="LoRA_Easy backend's custom_scheduler folder")
    parser.add_argument("--only", nargs="*", help="corpus names to regenerate (default: all)")
    parser.add_argument(
        "--verify-exports",
        metavar="PYTHON",
        help="instead of writing golden files: export each config with `PYTHON -m lora_sched export --kohya`"
        " and check that sd-scripts, reading the export, gives the golden curve",
    )
    opts = parser.parse_args(argv)

    commit = subprocess.run(
        ["git", "-C", str(opts.sd_scripts), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    sys.path.insert(0, str(opts.sd_scripts.resolve()))
    if opts.custom_scheduler:
        sys.path.insert(0, str(opts.custom_scheduler.resolve()))
    if opts.verify_exports:
        sys.path.append(str(HERE))  # a LoraSchedLR export names lora_sched.torch: sd-scripts imports it
    os.chdir(opts.sd_scripts)
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    out_dir = CORPUS / "golden"
    out_dir.mkdir(exist_ok=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = install_torchvision_stand_in(Path(tmp))
        for entry in manifest["files"]:
            if opts.only and entry["name"] not in opts.only:
                continue
            work = Path(tmp) / entry["name"]
            work.mkdir()
            config, dataset = relocate(entry, work)
            script = importlib.import_module(entry["script"])
            if opts.verify_exports:
                failures += not verify_export(opts.verify_exports, script, entry, config, dataset, work)
                continue
            header = [
                f"sd-scripts {commit}: library/train_util.py get_scheduler_fix via {entry['script']}.setup_parser()"
                " + read_config_from_file",
                f"config {entry['config']}" + (f", --dataset_config {entry['dataset_config']}" if dataset else ""),
            ]
            if stand_in:
                header.append("torchvision stand-in on the path (image transforms only; not used by schedules)")
            try:
                args = read_args(script, config, dataset)
                names, rows, note = curve(script, args)
            except BaseException as exc:  # sd-scripts refuses the file: record why
                message = "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " ")
                (out_dir / f"{entry['name']}.csv").write_text(
                    "\n".join(f"# {h}" for h in header) + f"\n# error: {message}\n", encoding="utf-8"
                )
                print(f"{entry['name']}: sd-scripts refuses it: {message}")
                continue
            header.append(note)
            write_golden(out_dir / f"{entry['name']}.csv", header, names, rows)
            print(f"{entry['name']}: {len(rows)} steps, groups {names}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
