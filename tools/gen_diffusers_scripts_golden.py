"""Corpus and goldens of lora_sched.trainers.diffusers_scripts, from a diffusers snapshot.

    python tools/gen_diffusers_scripts_golden.py DIFFUSERS_GIT_DIR [--check]   (a clone of huggingface/diffusers)

1. copies each README launch command of CORPUS byte for byte (git show COMMIT:path, lines a-b) into
   tests/data/trainers/diffusers/configs/ with PROVENANCE.json;
2. runs diffusers' own get_scheduler (src/diffusers/optimization.py exec'd alone with torch, its
   `from .utils import logging` given a stand-in) over a torch AdamW holding the script's param groups,
   stepped as accelerate steps it: optimizer.step(), then scheduler.step() N times per update (N
   processes); the script's W' and T' (lr_warmup_steps / max_train_steps x N, or x accumulation in
   train_text_to_image_lora_sdxl.py) and whether it passes num_cycles / power are read from the script's
   own source (ast) at the snapshot; flag defaults too. Writes golden/CASE.csv (step,lr_<group>...) and
   manifest.json. --check regenerates into a temporary folder and compares.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import json
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "tests" / "data" / "trainers" / "diffusers"
COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"

#: file name -> (README path, first line, last line) of one fenced launch command
CORPUS = {
    "t2i_lora_readme.sh": ("examples/text_to_image/README.md", 224, 233),
    "t2i_lora_sdxl_steps.sh": ("examples/text_to_image/README_sdxl.md", 220, 241),
    "t2i_lora_sdxl_te.sh": ("examples/text_to_image/README_sdxl.md", 254, 265),
    "dreambooth_lora.sh": ("examples/dreambooth/README.md", 340, 357),
    "dreambooth_lora_sdxl.sh": ("examples/dreambooth/README_sdxl.md", 74, 97),
    "dreambooth_lora_flux_te.sh": ("examples/dreambooth/README_flux.md", 218, 240),
    "flux_kontext_warmup.sh": ("examples/dreambooth/README_flux.md", 315, 334),
    "flux2_constant_warmup.sh": ("examples/dreambooth/README_flux2.md", 158, 185),
    "flux2_constant_with_warmup.sh": ("examples/dreambooth/README_flux2.md", 299, 325),
    "hidream_constant_with_warmup.sh": ("examples/dreambooth/README_hidream.md", 66, 92),
    "z_image_constant_with_warmup.sh": ("examples/dreambooth/README_z_image.md", 231, 256),
    "sd3_te.sh": ("examples/dreambooth/README_sd3.md", 194, 215),
}
#: facts for corpus files counted in epochs (the data is not here): samples per epoch
SAMPLES = {"t2i_lora_readme.sh": 40, "t2i_lora_sdxl_te.sh": 40}
#: script -> (its path, the param groups' roles with --train_text_encoder, optimizer built with lr=)
SCRIPTS = {
    "train_text_to_image_lora.py": ("examples/text_to_image/train_text_to_image_lora.py", ("unet",), True),
    "train_text_to_image_lora_sdxl.py": ("examples/text_to_image/train_text_to_image_lora_sdxl.py", ("unet",), True),
    "train_dreambooth_lora.py": ("examples/dreambooth/train_dreambooth_lora.py", ("unet",), True),
    "train_dreambooth_lora_sdxl.py": (
        "examples/dreambooth/train_dreambooth_lora_sdxl.py",
        ("unet", "text_encoder", "text_encoder_2"),
        False,
    ),
    "train_dreambooth_lora_flux.py": (
        "examples/dreambooth/train_dreambooth_lora_flux.py",
        ("unet", "text_encoder"),
        False,
    ),
    "train_dreambooth_lora_flux_kontext.py": (
        "examples/dreambooth/train_dreambooth_lora_flux_kontext.py",
        ("unet", "text_encoder"),
        False,
    ),
    "train_dreambooth_lora_sd3.py": (
        "examples/dreambooth/train_dreambooth_lora_sd3.py",
        ("unet", "text_encoder", "text_encoder_2"),
        False,
    ),
    "train_dreambooth_lora_flux2.py": ("examples/dreambooth/train_dreambooth_lora_flux2.py", ("unet",), False),
    "train_dreambooth_lora_flux2_klein.py": (
        "examples/dreambooth/train_dreambooth_lora_flux2_klein.py",
        ("unet",),
        False,
    ),
    "train_dreambooth_lora_z_image.py": ("examples/dreambooth/train_dreambooth_lora_z_image.py", ("unet",), False),
    "train_dreambooth_lora_hidream.py": ("examples/dreambooth/train_dreambooth_lora_hidream.py", ("unet",), False),
}
#: written files checked against diffusers' code: name -> (lora_sched TOML, processes)
WRITTEN = {
    "written_cosine_warmup.sh": ('lr_scheduler = "cosine"\nlr_warmup_steps = 10\n', 1),
    "written_restarts_2gpu.sh": (
        'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nlr_warmup_steps = 5\n',
        2,
    ),
    "written_two_groups_linear.sh": ('lr_scheduler = "linear"\nlr_warmup_steps = 8\ntext_encoder_lr = 5e-5\n', 1),
}
WRITTEN_BASE = "learning_rate = 1e-4\nmax_train_steps = 60\n"


def git_show(repo: str, path: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", "show", f"{COMMIT}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def load_optimization(repo: str) -> types.ModuleType:
    """src/diffusers/optimization.py alone, its one relative import given a stand-in logger."""
    import logging

    source = git_show(repo, "src/diffusers/optimization.py").replace("from .utils import logging\n", "")
    module = types.ModuleType("diffusers_optimization")
    module.logging = types.SimpleNamespace(get_logger=logging.getLogger)
    exec(compile(source, "optimization.py", "exec"), module.__dict__)
    return module


def script_facts(repo: str, path: str) -> dict:
    """Flag defaults and the get_scheduler keywords of a script, read from its source."""
    tree = ast.parse(git_show(repo, path))
    facts: dict = {"defaults": {}}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if getattr(node.func, "attr", "") == "add_argument" and node.args and isinstance(node.args[0], ast.Constant):
            for kw in node.keywords:
                if kw.arg == "default":
                    facts["defaults"][node.args[0].value.lstrip("-")] = ast.literal_eval(kw.value)
        if getattr(node.func, "id", "") == "get_scheduler":
            facts["scheduler"] = {kw.arg: ast.unparse(kw.value) for kw in node.keywords}
    return facts


def inputs_of(text: str, name: str, repo: str, processes: int, samples: int | None) -> dict:
    """What the script computes from its flags: groups, W', T', run length, num_cycles / power."""
    from lora_sched.trainers.documents import parse_args

    data = parse_args(name, text).data
    words = [*data.get("__command__", []), *(w for v in data.values() if isinstance(v, list) for w in v)]
    script = next(Path(str(w)).name for w in words if Path(str(w)).name in SCRIPTS)
    path, roles, lr_kw = SCRIPTS[script]
    facts = script_facts(repo, path)
    d, call = facts["defaults"], facts["scheduler"]

    def get(flag: str, kind: type):
        value = data.get(flag, d.get(flag))
        return None if value is None else kind(value)

    n, accum, batch = processes, get("gradient_accumulation_steps", int), get("train_batch_size", int)
    lr = get("learning_rate", float)
    mult = accum if "gradient_accumulation_steps" in call["num_warmup_steps"] else n
    steps = get("max_train_steps", int)
    scheduler_total = None
    if steps is None:  # epochs: the run after sharding; the scheduler as each script counts it
        epochs = get("num_train_epochs", int)
        steps = epochs * math.ceil(math.ceil(math.ceil(samples / batch) / n) / accum)
        sharded = "for_scheduler" in call["num_training_steps"]
        scheduler_total = steps * mult if sharded else epochs * math.ceil(math.ceil(samples / batch) / accum) * mult
    roles = roles if data.get("train_text_encoder") is True else roles[:1]
    te_lr = get("text_encoder_lr", float) if "text_encoder_lr" in d else lr
    prodigy = not lr_kw and str(data.get("optimizer", d.get("optimizer"))).lower() == "prodigy"
    groups = {role: (lr if i == 0 or prodigy else (te_lr or lr)) for i, role in enumerate(roles)}
    return {
        "script": path,
        "name": get("lr_scheduler", str),
        "groups": groups,
        "optimizer_lr": lr if lr_kw else (1.0 if prodigy else None),  # Prodigy's default lr is 1.0
        "processes": n,
        "run_length": steps,
        "num_warmup_steps": get("lr_warmup_steps", int) * mult,
        "num_training_steps": scheduler_total if scheduler_total is not None else steps * mult,
        "num_cycles": get("lr_num_cycles", int) if "num_cycles" in call else None,
        "power": get("lr_power", float) if "power" in call else None,
        "samples_per_epoch": samples,
    }


def run_case(opt_module: types.ModuleType, case: dict) -> list[list[float]]:
    """LR of every group at every update: optimizer.step(), then the scheduler N times (accelerate)."""
    import torch

    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in case["groups"].values()]
    kw = {} if case["optimizer_lr"] is None else {"lr": case["optimizer_lr"]}
    optimizer = torch.optim.AdamW(params, **kw)
    extra = {k: case[k] for k in ("num_cycles", "power") if case[k] is not None}
    scheduler = opt_module.get_scheduler(
        case["name"],
        optimizer=optimizer,
        num_warmup_steps=case["num_warmup_steps"],
        num_training_steps=case["num_training_steps"],
        **extra,
    )
    rows = []
    for step in range(case["run_length"]):
        rows.append([step, *(g["lr"] for g in optimizer.param_groups)])
        optimizer.step()
        for _ in range(case["processes"]):
            scheduler.step()
    return rows


def write_csv(path: Path, groups: list[str], rows: list[list[float]]) -> None:
    lines = ["step," + ",".join(f"lr_{g}" for g in groups)]
    lines += [",".join([str(r[0]), *(repr(float(v)) for v in r[1:])]) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def written_files() -> dict[str, tuple[str, int]]:
    """The files lora_sched writes for WRITTEN's schedules (its own writer), with their processes."""
    from lora_sched.trainers import read_run, write_run
    from lora_sched.trainers.base import RunFacts

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (toml, n) in WRITTEN.items():
            src = Path(tmp) / (name + ".toml")
            src.write_text(WRITTEN_BASE + toml)
            out[name] = (write_run(read_run(str(src), trainer="sd-scripts"), "diffusers", RunFacts(num_processes=n)), n)
    return out


def generate(repo: str, out: Path) -> None:
    import torch

    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "golden").mkdir(parents=True, exist_ok=True)
    module = load_optimization(repo)
    provenance, cases = {}, {}
    files = {}
    for name, (path, first, last) in CORPUS.items():
        text = "\n".join(git_show(repo, path).split("\n")[first - 1 : last]) + "\n"
        (out / "configs" / name).write_text(text)
        provenance[name] = {
            "repository": "huggingface/diffusers",
            "path": path,
            "lines": [first, last],
            "commit": COMMIT,
        }
        files[name] = (text, 1)
    for name, (text, n) in written_files().items():
        (out / "golden" / name).write_text(text)
        files[name] = (text, n)
    for name, (text, n) in files.items():
        case = inputs_of(text, name, repo, n, SAMPLES.get(name))
        rows = run_case(module, case)
        write_csv(out / "golden" / (name.rsplit(".", 1)[0] + ".csv"), list(case["groups"]), rows)
        cases[name] = case
    (out / "configs" / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    manifest = {"repository": "huggingface/diffusers", "commit": COMMIT, "torch": torch.__version__, "cases": cases}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", help="the diffusers git dir (bare mirror)")
    parser.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare")
    args = parser.parse_args()
    if not args.check:
        generate(args.repo, OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.repo, Path(tmp))
        bad = []
        for path in Path(tmp).rglob("*"):
            if path.is_file():
                mine = OUT / path.relative_to(tmp)
                if not mine.exists() or not filecmp.cmp(path, mine, shallow=False):
                    bad.append(str(mine))
        print("\n".join(bad) or "goldens up to date")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
