"""Golden LR curves of diffusion-pipe's files, computed by diffusion-pipe's own code.

    python tools/gen_diffusion_pipe_golden.py DIFFUSION_PIPE_GIT_DIR [--check]

The argument is a checkout or a bare git dir of tdrussell/diffusion-pipe; the sources are read at
COMMIT with `git show`. Runs in the project's environment (torch on CPU; nothing else of
diffusion-pipe is imported: deepspeed and the models are not needed). For each case it

1. reads the TOML with tomllib (as train.py's `toml.load`);
2. builds the param groups with the model's own `get_param_groups` (models/base.py, or SDXL's /
   Cosmos-Predict2's, exec'd from the snapshot on stand-in LoRA weights named as the model names
   them) and the weight-decay split of train.py's `get_optimizer`, then torch.optim.AdamW with the
   file's `lr`;
3. runs train.py's lines for steps_per_epoch (a stand-in loader whose len() is the case's steps per
   epoch x gradient_accumulation_steps, as PipelineDataLoader's), the scheduler (lr_scheduler,
   warmup_steps) and force_constant_lr;
4. steps it as DeepSpeed does (optimizer.step, then lr_scheduler.step, once per train_batch) for the
   run train.py's loop makes (epochs x steps per epoch, or max_steps if fewer), writing
   golden/NAME.csv: `step,lr_<group>...` (Python float repr).

Cases: every file of configs/ (their steps per epoch in MANIFEST_CASES) and files written by
lora_sched's own writer from small sd-scripts runs (written/NAME.toml, regenerated here too).
--check regenerates into a temporary folder and compares with what is committed.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import types
import warnings
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / "tests" / "data" / "trainers" / "diffusion-pipe"
REPO = "tdrussell/diffusion-pipe"
COMMIT = "8f83dbf25d03219df705570ec03e62be04bc402f"

#: train.py line ranges run (1-based, inclusive) and the text each must start with
TRAIN_LINES = {
    "steps_per_epoch": (847, 847, "steps_per_epoch = len(train_dataloader)"),
    "wd_split": (790, 813, "new_param_groups = []"),
    "scheduler": (849, 861, "scheduler_type = config.get('lr_scheduler', 'constant')"),
    "force": (893, 896, "if 'force_constant_lr' in config:"),
}
#: corpus file -> steps per epoch of one process (the data is not here)
CORPUS_CASES = {
    "main_example.toml": 3,
    "minimax_h3_example.toml": 2,
    "wan_14b_min_vram.toml": 1,
    "hunyuan_video_407c04f.toml": 2,
}
#: written cases: sd-scripts values of the run, facts for the writer (steps per epoch)
WRITTEN_CASES = {
    "w_constant_groups": (
        {"learning_rate": 1e-4, "unet_lr": 1e-4, "text_encoder_lr": 5e-5, "lr_scheduler": "constant"},
        {"max_train_steps": 50},
        None,
    ),
    "w_constant_warmup": (
        {
            "learning_rate": 3e-4,
            "network_train_unet_only": True,
            "lr_scheduler": "constant_with_warmup",
            "lr_warmup_steps": 10,
            "warmup_start": 0.1,
        },
        {"max_train_steps": 60},
        None,
    ),
    "w_linear_warmup_groups": (
        {
            "learning_rate": 1e-4,
            "unet_lr": 1e-4,
            "text_encoder_lr": 5e-5,
            "lr_scheduler": "linear",
            "lr_warmup_steps": 8,
            "warmup_start": 0.125,
            "schedule_steps": 48,
        },
        {"max_train_steps": 40},
        5,
    ),
    "w_cosine_floor": (
        {
            "learning_rate": 2e-4,
            "network_train_unet_only": True,
            "lr_scheduler": "cosine",
            "lr_scheduler_args": {"min_lr_ratio": 0.005},
        },
        {"max_train_steps": 30},
        6,
    ),
    "w_cosine_warmup_max_steps": (
        {
            "learning_rate": 1e-4,
            "network_train_unet_only": True,
            "lr_scheduler": "cosine",
            "lr_warmup_steps": 4,
            "warmup_start": 0.25,
            "schedule_steps": 40,
            "lr_scheduler_args": {"min_lr_ratio": 0.01},
        },
        {"max_train_steps": 20},
        6,
    ),
}


def source(repo: str, path: str) -> str:
    git = ["git", f"--git-dir={repo}"] if not (Path(repo) / ".git").exists() else ["git", "-C", repo]
    return subprocess.run([*git, "show", f"{COMMIT}:{path}"], check=True, capture_output=True, text=True).stdout


def lines_of(text: str, key: str) -> str:
    first, last, head = TRAIN_LINES[key]
    block = textwrap.dedent("\n".join(text.splitlines()[first - 1 : last]))
    if not block.startswith(head):
        raise SystemExit(f"train.py:{first} is not `{head}` at {COMMIT}: the line numbers moved")
    return block


def method(text: str, cls_name: str, name: str) -> types.FunctionType:
    """A method of a class in `text`, exec'd alone (its module's other imports are not needed)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    scope = {"is_main_process": lambda: False}
                    exec(compile(ast.Module([item], []), cls_name, "exec"), scope)
                    return scope[name]
    raise SystemExit(f"{cls_name}.{name} not found at {COMMIT}")


def param_groups(repo: str, config: dict) -> tuple[list, list[str]]:
    """The model's param groups on stand-in weights, and each group's role."""
    import torch

    model = config.get("model", {})
    kind = model.get("type")
    names = {"sdxl": [("unet", "unet.x"), ("text_encoder", "text_encoder.x"), ("text_encoder_2", "text_encoder_2.x")]}
    cosmos = [("unet", "blocks.0.x")] + [
        (key[:-3], f"blocks.0.{part}.x")
        for key, part in (
            ("self_attn_lr", "self_attn"),
            ("cross_attn_lr", "cross_attn"),
            ("mlp_lr", "mlp"),
            ("mod_lr", "adaln_modulation"),
            ("llm_adapter_lr", "llm_adapter"),
        )
        if key in model
    ]
    roles = names.get(kind) or (cosmos if kind in ("cosmos_predict2", "anima") else [("unet", "blocks.0.x")])
    params = []
    for _, name in roles:
        p = torch.nn.Parameter(torch.zeros(2, 2))
        p.original_name = name
        params.append(p)
    this = types.SimpleNamespace(config=config, model_config=model)
    if kind == "sdxl":
        groups = method(source(repo, "models/sdxl.py"), "SDXLPipeline", "get_param_groups")(this, params)
    elif kind in ("cosmos_predict2", "anima"):
        text = source(repo, "models/cosmos_predict2.py")
        groups = method(text, "CosmosPredict2Pipeline", "get_param_groups")(this, params)
    else:
        groups = method(source(repo, "models/base.py"), "BasePipeline", "get_param_groups")(this, params)
    kept = [role for role, name in roles if any(p.original_name == name for g in groups for p in g["params"])]
    return groups, kept


def trainer_curve(repo: str, config: dict, per_epoch: int) -> tuple[list[str], list[list[float]]]:
    """Each group's LR at every step of the run, from diffusion-pipe's own lines."""
    import torch

    train = source(repo, "train.py")
    config.setdefault("warmup_steps", 0)  # set_config_defaults (train.py:102)
    groups, roles = param_groups(repo, config)
    scope = {"param_groups": groups, "optim_type_lower": str(config["optimizer"]["type"]).lower()}
    exec(lines_of(train, "wd_split"), scope)
    optimizer = torch.optim.AdamW(scope["param_groups"], lr=config["optimizer"].get("lr", 1e-3))
    gas = config.get("gradient_accumulation_steps", 1)
    engine = types.SimpleNamespace(gradient_accumulation_steps=lambda: gas, lr_scheduler=None)
    scope = {"torch": torch, "config": config, "optimizer": optimizer, "model_engine": engine}
    scope["train_dataloader"] = type("Loader", (), {"__len__": lambda self: per_epoch * gas})()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation notice
        for key in ("steps_per_epoch", "scheduler"):
            exec(lines_of(train, key), scope)
        engine.lr_scheduler = scope["lr_scheduler"]
        exec(lines_of(train, "force"), scope)
        rows = []
        for _ in range(run_length(config, scope["steps_per_epoch"])):
            rows.append([g["lr"] for g in optimizer.param_groups])
            optimizer.step()
            engine.lr_scheduler.step()
    return roles, rows


def run_length(config: dict, per_epoch: int) -> int:
    """train.py's loop (lines 905-966): an epoch ends after per_epoch steps; the run after `epochs`
    of them, or once step >= max_steps."""
    step, epoch = 1, 1
    while True:
        if step % per_epoch == 0:
            epoch += 1
            if epoch > config["epochs"]:
                return step
        if "max_steps" in config and step >= config["max_steps"]:
            return step
        step += 1


def write_csv(path: Path, roles: list[str], rows: list[list[float]]) -> None:
    lines = ["step," + ",".join(f"lr_{r}" for r in roles)]
    lines += [f"{s}," + ",".join(repr(float(v)) for v in row) for s, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def written_file(name: str, work: Path) -> str:
    """lora_sched's diffusion-pipe file for a written case (from an sd-scripts run of its values)."""
    sys.path.insert(0, str(HERE))
    import tomli_w

    from lora_sched.trainers import diffusion_pipe, sd_scripts
    from lora_sched.trainers.base import RunFacts
    from lora_sched.trainers.documents import parse

    values, length, per_epoch = WRITTEN_CASES[name]
    text = tomli_w.dumps({**values, **length})
    run = sd_scripts.read(parse(str(work / f"{name}.sd.toml"), text), RunFacts())
    return diffusion_pipe.write(run, RunFacts(steps_per_epoch=per_epoch))


def generate(repo: str, out: Path) -> None:
    import torch

    (out / "golden").mkdir(parents=True, exist_ok=True)
    (out / "written").mkdir(parents=True, exist_ok=True)
    cases = {}
    for name, per_epoch in CORPUS_CASES.items():
        config = tomllib.loads((DATA / "configs" / name).read_text())
        cases[name] = {"file": f"configs/{name}", "steps_per_epoch": per_epoch}
    for name, (_, _, per_epoch) in WRITTEN_CASES.items():
        (out / "written" / f"{name}.toml").write_text(written_file(name, out))
        cases[name] = {"file": f"written/{name}.toml", "steps_per_epoch": per_epoch or 1}
    for name, case in cases.items():
        base = out if case["file"].startswith("written/") else DATA
        config = tomllib.loads((base / case["file"]).read_text())
        roles, rows = trainer_curve(repo, config, case["steps_per_epoch"])
        case["csv"] = f"golden/{Path(name).stem}.csv"
        case["run_length"] = len(rows)
        write_csv(out / case["csv"], roles, rows)
    executed = {"train.py": [[a, b] for a, b, _ in TRAIN_LINES.values()]}
    executed["models"] = "get_param_groups of models/base.py, models/sdxl.py, models/cosmos_predict2.py"
    manifest = {"repository": REPO, "commit": COMMIT, "torch": torch.__version__, "executed": executed}
    manifest["cases"] = cases
    (out / "golden" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", help="diffusion-pipe checkout or bare git dir")
    parser.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare")
    args = parser.parse_args()
    if not args.check:
        generate(args.repo, DATA)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.repo, Path(tmp))
        bad = []
        for sub in ("golden", "written"):
            for path in sorted((Path(tmp) / sub).iterdir()):
                mine = DATA / sub / path.name
                if not mine.exists() or not filecmp.cmp(path, mine, shallow=False):
                    bad.append(f"{sub}/{path.name}")
        print("differs: " + ", ".join(bad) if bad else "goldens match")
        return 1 if bad else 0


if __name__ == "__main__":
    shutil.which("git") or sys.exit("git is needed")
    sys.exit(main())
