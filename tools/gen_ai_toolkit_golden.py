"""Regenerate the ai-toolkit goldens from its own code (tests/data/trainers/ai-toolkit/).

    python tools/gen_ai_toolkit_golden.py AI_TOOLKIT_GIT_DIR [--check]

The argument is a checkout of ostris/ai-toolkit or its bare git dir (read at COMMIT). For every
corpus file (configs/), hand-written variant (variants/) and file lora_sched writes (written/, from
the kohya TOMLs in WRITTEN), this loads ai-toolkit's own config loader (toolkit/config.py),
TrainConfig (toolkit/config_modules.py, heavy imports stubbed) and get_lr_scheduler
(toolkit/scheduler.py), builds the scheduler as BaseSDTrainProcess does (lr_scheduler_params plus
total_iters = train.steps, every group at train.lr), calls step(0) as it does before the loop, then
runs its loop: each iteration the optimizer steps when the legacy accumulation counter says so
(SDTrainer), then the scheduler steps (P times for P processes: accelerate's prepared scheduler,
emulated). One CSV row per optimizer step: step,lr_<group>... A file ai-toolkit cannot start is
recorded with its exception. It also replays the UI's default job (ui/src/app/jobs/new/jobConfig.ts,
written as ui/cron/actions/startJob.ts writes .job_config.json) with node, when node is installed.
--check regenerates into a temporary folder and compares.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

COMMIT = "27a03a91f23eb1b757d5ec2e80ee3e129cfcc350"
REPO = "ostris/ai-toolkit"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "trainers" / "ai-toolkit"
TRAINER_TYPES = ("sd_trainer", "diffusion_trainer", "ui_trainer")
#: kohya TOMLs lora_sched writes as ai-toolkit jobs (written/NAME.yaml), run through ai-toolkit's code.
WRITTEN = {
    "cosine_floor": 'learning_rate = 2e-4\nlr_scheduler = "cosine"\nlr_scheduler_args = ["min_lr_ratio=0.1"]\n'
    "max_train_steps = 150\n",
    "linear_two_groups": 'learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 1e-4\nlr_scheduler = "linear"\n'
    "max_train_steps = 90\n",
    "constant_with_warmup": 'learning_rate = 5e-5\nlr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 25\n'
    "max_train_steps = 80\ngradient_accumulation_steps = 4\n",
    "restarts_one_cycle": 'learning_rate = 3e-4\nlr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 1\n'
    "max_train_steps = 64\n",
}
#: Extra runs of a file on P processes (the prepared scheduler steps P times per iteration).
PROCESSES = {"variants/constant_with_warmup.yaml": 2, "variants/cosine.yaml": 2}


def source(repo: Path, path: str) -> str:
    """A file of ai-toolkit at COMMIT (a checkout's working file, or `git show` from a bare dir)."""
    if (repo / path).is_file():
        return (repo / path).read_text(encoding="utf-8")
    git = ["git", f"--git-dir={repo}", "show", f"{COMMIT}:{path}"]
    return subprocess.run(git, check=True, capture_output=True, text=True).stdout


def module(name: str, text: str = "", **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    if text:
        exec(compile(text, name.replace(".", "/") + ".py", "exec"), mod.__dict__)
    return mod


def load_toolkit(repo: Path) -> types.SimpleNamespace:
    """ai-toolkit's get_config, TrainConfig and get_lr_scheduler (its heavy imports stubbed)."""
    import yaml

    stub = type("Stub", (), {})
    module("toolkit", __path__=[])
    module("toolkit.paths", TOOLKIT_ROOT=tempfile.gettempdir())
    module("oyaml", **{k: getattr(yaml, k) for k in dir(yaml) if not k.startswith("_")})
    for name in ("torchaudio", "toolkit.audio", "torchao", "torchao.quantization"):
        if name not in sys.modules:
            module(name, __path__=[])
    module("toolkit.audio.album_artwork", add_album_artwork=lambda *a, **k: None)
    module("toolkit.prompt_utils", PromptEmbeds=stub)
    module("torchao.quantization.quant_primitives", _DTYPE_TO_BIT_WIDTH={})
    config = module("toolkit.config", source(repo, "toolkit/config.py"))
    modules = module("toolkit.config_modules", source(repo, "toolkit/config_modules.py"))
    scheduler = module("toolkit.scheduler", source(repo, "toolkit/scheduler.py"))
    return types.SimpleNamespace(
        get_config=config.get_config, TrainConfig=modules.TrainConfig, get_lr_scheduler=scheduler.get_lr_scheduler
    )


def groups_of(process: dict, tc: object) -> list[str]:
    """Group roles in ai-toolkit's order: a network's text-encoder group first (kohya_lora.py), a
    fine-tune's unet group first (stable_diffusion_model.py); every group at train.lr."""
    order = [("text_encoder", tc.train_text_encoder), ("unet", tc.train_unet)]
    if process.get("network") is None:
        order.reverse()
    return [role for role, on in order if on]


def run_file(tk: types.SimpleNamespace, path: Path, processes: int) -> tuple[list[str], list[list[float]]]:
    """(groups, LR rows per optimizer step) of ai-toolkit's SDTrainer on `path`."""
    import torch

    config = tk.get_config(str(path))
    process = next(p for p in config["config"]["process"] if p.get("type") in TRAINER_TYPES)
    tc = tk.TrainConfig(**process.get("train", {}))
    roles = groups_of(process, tc)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in roles]
    optimizer = torch.optim.SGD([{"params": [p], "lr": tc.lr} for p in params], lr=tc.lr)
    scheduler_params = tc.lr_scheduler_params  # BaseSDTrainProcess.run, as it builds the scheduler
    if "max_iterations" not in scheduler_params:
        scheduler_params["total_iters"] = tc.steps
    scheduler = tk.get_lr_scheduler(tc.lr_scheduler, optimizer, **scheduler_params)
    for _ in range(processes):
        scheduler.step(0)  # self.lr_scheduler.step(self.step_num) before the loop
    rows, counter = [], 1  # self.grad_accumulation_step = 1
    for _ in range(tc.steps):
        is_optimizer_step = counter >= tc.gradient_accumulation_steps
        if is_optimizer_step:
            counter = 0
            rows.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
        for _ in range(processes):
            scheduler.step()
        counter += 1
    return roles, rows


def write_csv(path: Path, roles: list[str], rows: list[list[float]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *(f"lr_{r}" for r in roles)])
    for step, row in enumerate(rows):
        writer.writerow([step, *(repr(v) for v in row)])
    path.write_text(out.getvalue(), encoding="utf-8")


def write_written(out: Path) -> None:
    """written/NAME.yaml: lora_sched's ai-toolkit file for each kohya TOML of WRITTEN."""
    sys.path.insert(0, str(ROOT))
    from lora_sched.trainers import read_run, write_run

    (out / "written").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in WRITTEN.items():
            toml = Path(tmp) / f"{name}.toml"
            toml.write_text(text, encoding="utf-8")
            (out / "written" / f"{name}.yaml").write_text(
                write_run(read_run(str(toml), trainer="sd-scripts"), "ai-toolkit"), encoding="utf-8"
            )


def replay_ui(repo: Path, out: Path) -> bool:
    """configs/ui_default_job_config.json: the UI's default job as startJob.ts writes it (node needed).
    The TypeScript is only stripped of imports and type annotations before node evaluates it."""
    node = shutil.which("node")
    if node is None:
        return False
    samples = source(repo, "ui/src/helpers/defaultSamples.ts")
    job = source(repo, "ui/src/app/jobs/new/jobConfig.ts").split("export const migrateJobConfig")[0]
    js = "\n".join(
        re.sub(r"^export const (\w+)(?:: \w+)? =", r"const \1 =", line)
        for line in (samples + "\n" + job).splitlines()
        if not line.startswith(("import ", "'use client'"))
    )
    js += (
        "\nconst isMac = () => false;\nconst jobConfig = JSON.parse(JSON.stringify(defaultJobConfig));\n"
        "jobConfig.config.process[0].sqlite_db_path = require('path').join('/ai-toolkit', 'aitk_db.db');\n"
        "process.stdout.write(JSON.stringify(jobConfig, null, 2));\n"
    )
    done = subprocess.run([node, "-e", js], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"node could not replay the UI's job config: {done.stderr[-2000:]}")
    text = done.stdout
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "configs" / "ui_default_job_config.json").write_text(text, encoding="utf-8")
    return True


def generate(repo: Path, out: Path) -> None:
    """Every generated file under `out` (written/, golden/, manifest.json, the UI replay)."""
    import diffusers
    import torch

    write_written(out)
    replayed = replay_ui(repo, out)
    tk = load_toolkit(repo)
    (out / "golden").mkdir(parents=True, exist_ok=True)
    files = sorted(
        str(p.relative_to(DATA))
        for d in ("configs", "variants")
        for p in (DATA / d).iterdir()
        if p.suffix in (".yaml", ".json") and p.name != "PROVENANCE.json"
    )
    files += sorted(f"written/{name}.yaml" for name in WRITTEN)
    if replayed and "configs/ui_default_job_config.json" not in files:
        files.append("configs/ui_default_job_config.json")
    runs = [(f, 1) for f in files] + sorted(PROCESSES.items())
    cases = []
    for file, processes in runs:
        where = out if file.startswith("written/") or file.endswith("ui_default_job_config.json") else DATA
        name = file.rsplit(".", 1)[0].replace("/", "__") + ("" if processes == 1 else f"_x{processes}")
        case = {"name": name, "file": file, "num_processes": processes}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                roles, rows = run_file(tk, where / file, processes)
        except Exception as exc:  # ai-toolkit cannot start this file: record why
            case["raises"] = f"{type(exc).__name__}: {exc}"
        else:
            case.update(csv=f"golden/{name}.csv", groups=roles, optimizer_steps=len(rows))
            write_csv(out / case["csv"], roles, rows)
        if file.startswith("written/"):
            case["input_toml"] = WRITTEN[Path(file).stem]
        cases.append(case)
    manifest = {
        "repository": REPO,
        "commit": COMMIT,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "generated_by": "tools/gen_ai_toolkit_golden.py",
        "cases": cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def compare(new: Path) -> list[str]:
    """Generated files that differ from the committed ones."""
    bad = []
    for path in sorted(new.rglob("*")):
        if path.is_file():
            rel = path.relative_to(new)
            if not (DATA / rel).is_file() or not filecmp.cmp(path, DATA / rel, shallow=False):
                bad.append(str(rel))
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path, help="ai-toolkit checkout or bare git dir")
    parser.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare")
    args = parser.parse_args(argv)
    if not args.check:
        generate(args.repo, DATA)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.repo, Path(tmp))
        bad = compare(Path(tmp))
    for rel in bad:
        print(f"differs: {rel}", file=sys.stderr)
    print("goldens up to date" if not bad else f"{len(bad)} files differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
