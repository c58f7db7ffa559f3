"""Regenerate tests/data/trainers/onetrainer/ from a OneTrainer snapshot by running OneTrainer's own code.

    python tools/gen_onetrainer_golden.py ONETRAINER_GIT_DIR [--check]

The snapshot (a bare git dir or a checkout) is read at COMMIT: `modules/` and `training_presets/` are
extracted to a temp dir. The corpus is (1) shipped LoRA presets, copied byte for byte, (2) configs
written by OneTrainer's own saving code (TrainConfig.default_values(), settings changed as the UI
does, to_settings_dict(secrets=False), json.dump(indent=4) as path_util.write_json_atomic), and
(3) files lora_sched's onetrainer writer produces from small sd-scripts TOMLs. Each golden is the LR
of every param group at every optimizer update: the config loaded by TrainConfig.from_dict, the
groups built by NamedParameterGroupCollection.parameters_for_optimizer (text encoders, then the
denoiser, as the model setups add them), the scheduler by create_lr_scheduler (its source exec'd from
modules/util/create.py), stepped as GenericTrainer does (optimizer.step then scheduler.step on every
accumulation boundary of epochs x batches-per-epoch micro steps). --check regenerates to a temp dir
and compares. The tool is for humans; CI runs only the tests.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any

COMMIT = "23df3832e8f213d64c337e39f9365ba46e99fed0"
REPO = "Nerogar/OneTrainer"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "trainers", "onetrainer")
#: model types whose LoRA / fine-tune setups give no text encoder a param group (their create_parameters)
NO_TE_GROUPS = ("FLUX_2", "ANIMA", "ERNIE", "IDEOGRAM_4", "KREA_2", "Z_IMAGE")

#: (corpus name, preset path, steps per epoch given as the fact)
PRESETS = [
    ("preset_sd15_lora.json", "training_presets/SD1.5/#sd 1.5 LoRA.json", 10),
    ("preset_sdxl_lora.json", "training_presets/SDXL/#sdxl 1.0 LoRA.json", 7),
    ("preset_flux_lora.json", "training_presets/Flux Dev.1/#flux LoRA.json", 5),
    ("preset_wuerstchen2_lora.json", "training_presets/Wuerstchen v2/#wuerstchen 2.0 LoRA.json", 4),
    ("preset_pixart_sigma_lora.json", "training_presets/PixArt Sigma/#pixart sigma 1.0 LoRA.json", 6),
    ("preset_sd15_embedding.json", "training_presets/SD1.5/#sd 1.5 embedding.json", 3),
]
_SDXL = {"model_type": "STABLE_DIFFUSION_XL_10_BASE", "training_method": "LORA", "epochs": 10}
#: (corpus name, settings as the UI sets them, steps per epoch)
REPLAYED = [
    (
        "ui_cosine_accum.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "COSINE",
            "learning_rate": 1e-4,
            "learning_rate_warmup_steps": 100.0,
            "gradient_accumulation_steps": 4,
            "learning_rate_min_factor": 0.1,
            "text_encoder.learning_rate": 5e-5,
            "text_encoder_2.train": False,
        },
        48,
    ),
    (
        "ui_cosine_restarts.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "COSINE_WITH_RESTARTS",
            "learning_rate_cycles": 2.0,
            "learning_rate_warmup_steps": 0.1,
            "text_encoder.train": False,
            "text_encoder_2.train": False,
        },
        12,
    ),
    (
        "ui_hard_restarts.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "COSINE_WITH_HARD_RESTARTS",
            "learning_rate_cycles": 3.0,
            "learning_rate_warmup_steps": 50.0,
            "text_encoder.train": False,
            "text_encoder_2.train": False,
        },
        30,
    ),
    (
        "ui_hard_restarts_fractional.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "COSINE_WITH_HARD_RESTARTS",
            "learning_rate_cycles": 1.5,
            "learning_rate_warmup_steps": 10.0,
            "text_encoder.train": False,
            "text_encoder_2.train": False,
        },
        20,
    ),
    (
        "ui_rex_scaler.json",
        {
            "model_type": "STABLE_DIFFUSION_15",
            "training_method": "LORA",
            "epochs": 8,
            "learning_rate_scheduler": "REX",
            "learning_rate_warmup_steps": 0.0,
            "batch_size": 4,
            "learning_rate_scaler": "BATCH",
            "text_encoder.stop_training_after_unit": "NEVER",
        },
        25,
    ),
    (
        "ui_linear_floor.json",
        {
            "model_type": "FLUX_DEV_1",
            "training_method": "LORA",
            "epochs": 5,
            "learning_rate_scheduler": "LINEAR",
            "learning_rate_min_factor": 0.05,
            "learning_rate_warmup_steps": 20.0,
            "text_encoder.train": False,
            "text_encoder_2.train": False,
        },
        40,
    ),
    (
        "ui_custom_cosine_annealing.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "CUSTOM",
            "custom_learning_rate_scheduler": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "scheduler_params": [{"key": "T_max", "value": "%SCHEDULER_STEPS%"}, {"key": "eta_min", "value": "1e-06"}],
            "learning_rate_warmup_steps": 30.0,
            "text_encoder.learning_rate": 2e-5,
            "text_encoder_2.train": False,
        },
        15,
    ),
    (
        "ui_schedule_free.json",
        {
            **_SDXL,
            "learning_rate_scheduler": "COSINE",
            "optimizer.optimizer": "SCHEDULE_FREE_ADAMW",
            "text_encoder.train": False,
            "text_encoder_2.train": False,
        },
        9,
    ),
]
_TOML = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\nmax_train_steps = 120\nlr_warmup_steps = 12\n"
#: (written name, sd-scripts TOML lora_sched reads, steps per epoch)
WRITTEN = [
    ("written_cosine.json", _TOML + 'lr_scheduler = "cosine"\n', 12),
    ("written_restarts.json", _TOML + 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n', 10),
    ("written_rex.json", _TOML + 'lr_scheduler = "rex"\n', 8),
    ("written_polynomial.json", _TOML + 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\n', 12),
    ("written_wsd.json", _TOML + 'lr_scheduler = "warmup_stable_decay"\nlr_scheduler_args = ["decay=0.3"]\n', 6),
]


def extract(repo: str) -> str:
    """modules/ and training_presets/ of the snapshot at COMMIT, in a temp dir."""
    git_dir = repo if os.path.exists(os.path.join(repo, "HEAD")) else os.path.join(repo, ".git")
    data = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", COMMIT, "modules", "training_presets"],
        check=True,
        capture_output=True,
    ).stdout
    root = tempfile.mkdtemp(prefix="onetrainer-")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(root, filter="data")
    return root


def load_onetrainer(root: str) -> types.SimpleNamespace:
    """OneTrainer's config classes, enums and create_lr_scheduler, with stubs for its heavy imports."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR, LRScheduler, SequentialLR

    sys.path.insert(0, root)
    stub = types.ModuleType("modules.util.torch_util")
    stub.default_device = torch.device("cpu")
    multi = types.ModuleType("modules.util.multi_gpu_util")
    multi.world_size = lambda: 1
    sys.modules.update({"modules.util.torch_util": stub, "modules.util.multi_gpu_util": multi})
    from modules.util import lr_scheduler_util
    from modules.util.config.TrainConfig import TrainConfig
    from modules.util.enum.LearningRateScheduler import LearningRateScheduler
    from modules.util.NamedParameterGroup import NamedParameterGroup, NamedParameterGroupCollection

    source = Path(root, "modules/util/create.py").read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body if getattr(n, "name", "") == "create_lr_scheduler")
    namespace: dict[str, Any] = {"ast": ast, "importlib": __import__("importlib"), "torch": torch}
    namespace.update(LambdaLR=LambdaLR, SequentialLR=SequentialLR, LRScheduler=LRScheduler, TrainConfig=TrainConfig)
    namespace.update(LearningRateScheduler=LearningRateScheduler)
    namespace.update({k: v for k, v in vars(lr_scheduler_util).items() if k.startswith("lr_lambda")})
    exec(compile(ast.Module([node], []), "modules/util/create.py", "exec"), namespace)
    return types.SimpleNamespace(
        TrainConfig=TrainConfig,
        Group=NamedParameterGroup,
        Collection=NamedParameterGroupCollection,
        create_lr_scheduler=namespace["create_lr_scheduler"],
    )


def replay(ot: Any, settings: dict[str, Any]) -> str:
    """A config as OneTrainer's UI saves it: defaults, the settings changed, to_settings_dict, json.dump.
    uuid.uuid4 (the embedding's uuid) is drawn from a seeded generator so the files are reproducible."""
    import random
    import uuid

    draw = random.Random(json.dumps(settings, sort_keys=True))
    real, uuid.uuid4 = uuid.uuid4, lambda: uuid.UUID(int=draw.getrandbits(128), version=4)
    try:
        config = ot.TrainConfig.default_values()
        return _replayed(config, settings)
    finally:
        uuid.uuid4 = real


def _replayed(config: Any, settings: dict[str, Any]) -> str:
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        target = config
        for parent in parents:
            target = getattr(target, parent)
        target.from_dict({leaf: value}, migrate=False)  # as scripts/train.py sets --config-value items
    return json.dumps(config.to_settings_dict(secrets=False), indent=4)


def groups_of(ot: Any, config: Any) -> list[tuple[str, Any]]:
    """(role, NamedParameterGroup) in the order the model setups add them."""
    import torch

    def group(name: str, lr: Any) -> Any:
        return ot.Group(name, [torch.nn.Parameter(torch.zeros(1))], lr)

    if str(config.training_method) == "EMBEDDING":
        return [("embedding", group("embeddings", config.embedding_learning_rate))]
    model = config.model_type
    out = []
    if str(model) not in NO_TE_GROUPS:
        for part in model.text_encoder_parts():
            if getattr(config, part).train:
                out.append((part, group(part, getattr(config, part).learning_rate)))
    denoiser = model.denoising_model_part()
    if getattr(config, denoiser).train:
        out.append(("unet", group(denoiser, getattr(config, denoiser).learning_rate)))
    return out


def golden(ot: Any, text: str, batches: int) -> tuple[list[str], list[list[float]]]:
    """Every update's LR per group, as GenericTrainer steps OneTrainer's scheduler."""
    import torch

    data = json.loads(text)
    config = ot.TrainConfig.default_values().from_dict(data, migrate="__version" in data)
    roles = groups_of(ot, config)
    collection = ot.Collection()
    for _, g in roles:
        collection.add_group(g)
    optimizer = torch.optim.SGD(collection.parameters_for_optimizer(config), lr=1.0)
    scheduler = ot.create_lr_scheduler(
        config=config,
        optimizer=optimizer,
        learning_rate_scheduler=config.learning_rate_scheduler,
        warmup_steps=config.learning_rate_warmup_steps,
        num_cycles=config.learning_rate_cycles,
        min_factor=config.learning_rate_min_factor,
        num_epochs=config.epochs,
        batch_size=config.batch_size,
        approximate_epoch_length=batches,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        global_step=0,
    )
    rows = []
    for global_step in range(config.epochs * batches):
        if (global_step + 1) % config.gradient_accumulation_steps == 0:  # GenericTrainer.__is_update_step
            rows.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
    return [role for role, _ in roles], rows


def write_csv(path: str, roles: list[str], rows: list[list[float]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("step," + ",".join(f"lr_{r}" for r in roles) + "\n")
        for step, row in enumerate(rows):
            f.write(f"{step}," + ",".join(repr(v) for v in row) + "\n")


def written_file(name: str, toml: str, batches: int) -> str:
    """lora_sched's onetrainer writer run on a small sd-scripts TOML."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    from lora_sched.trainers import RunFacts, read_run, write_run

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name.replace(".json", ".toml"))
        with open(path, "w", encoding="utf-8") as f:
            f.write(toml)
        return write_run(read_run(path, trainer="sd-scripts"), "onetrainer", RunFacts(steps_per_epoch=batches))


def generate(repo: str, out: str) -> None:
    import torch

    root = extract(repo)
    ot = load_onetrainer(root)
    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
    os.makedirs(os.path.join(out, "written"), exist_ok=True)
    provenance: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    files: list[tuple[str, str, int]] = []
    for name, path, batches in PRESETS:
        data = Path(root, path).read_bytes()
        with open(os.path.join(out, "configs", name), "wb") as f:
            f.write(data)
        provenance[name] = {"repository": REPO, "path": path, "commit": COMMIT, "produced": "copied byte for byte"}
        files.append((f"configs/{name}", data.decode("utf-8"), batches))
    for name, settings, batches in REPLAYED:
        text = replay(ot, settings)
        with open(os.path.join(out, "configs", name), "w", encoding="utf-8") as f:
            f.write(text)
        how = "TrainConfig.default_values(), from_dict of each setting, to_settings_dict(secrets=False)"
        how += ", json.dump indent 4 (path_util.write_json_atomic)"
        provenance[name] = {"repository": REPO, "path": "modules/util/config/TrainConfig.py", "commit": COMMIT}
        provenance[name].update(produced=how, settings=settings)
        files.append((f"configs/{name}", text, batches))
    for name, toml, batches in WRITTEN:
        text = written_file(name, toml, batches)
        with open(os.path.join(out, "written", name), "w", encoding="utf-8") as f:
            f.write(text)
        files.append((f"written/{name}", text, batches))
        cases_extra = {"source_toml": toml}
        cases[f"written/{name}"] = cases_extra
    for rel, text, batches in files:
        roles, rows = golden(ot, text, batches)
        csv = rel.replace("/", "__").replace(".json", ".csv")
        write_csv(os.path.join(out, csv), roles, rows)
        cases.setdefault(rel, {}).update(csv=csv, steps_per_epoch=batches, groups=roles, run_length=len(rows))
    manifest = {"repository": REPO, "commit": COMMIT, "torch": torch.__version__, "cases": cases}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "configs", "PROVENANCE.json"), "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=2, sort_keys=True)
        f.write("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", help="OneTrainer snapshot: a bare git dir or a checkout")
    parser.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare")
    args = parser.parse_args()
    if not args.check:
        generate(args.repo, OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.repo, tmp)
        differ = []
        for dirpath, _, names in os.walk(tmp):
            for n in names:
                rel = os.path.relpath(os.path.join(dirpath, n), tmp)
                theirs = os.path.join(OUT, rel)
                if rel == "manifest.json":
                    continue  # records the torch version
                if not os.path.exists(theirs) or not filecmp.cmp(os.path.join(dirpath, n), theirs, shallow=False):
                    differ.append(rel)
        print("differ: " + ", ".join(differ) if differ else "goldens match")
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
