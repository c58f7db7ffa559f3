"""Regenerate musubi-tuner's corpus and goldens from its own code (for humans; CI only reads the results).

    python tools/gen_musubi_tuner_golden.py MUSUBI_TUNER_GIT_DIR [--check]

The argument is a bare git dir (the files are taken at COMMIT with `git archive`) or a checkout.
What it writes under tests/data/trainers/musubi-tuner/:

* configs/: TOML blocks of musubi's docs, byte for byte; files replayed from the training commands in
  its docs through its own argparse (parser_common.setup_parser_common; flags of the per-model parsers
  are dropped and listed), with other schedules swapped in; PROVENANCE.json says which is which;
* written/: files lora_sched's musubi writer produces for a grid of lora_sched schedules;
* one CSV per case (step,lr_unet[,lr_unet_plus]) and manifest.json: each config read by musubi's
  read_config_from_file, its optimizer and scheduler built by NetworkTrainer.get_optimizer and
  get_lr_scheduler (trainer_base.py, executed from the snapshot), then per update: the LR of every
  param group, optimizer.step(), and scheduler.step() N times (accelerate's AcceleratedScheduler
  steps a prepared scheduler once per process, accelerate/scheduler.py).

--check regenerates into a temporary directory and compares every file.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import types
from typing import Any

REPO = "kohya-ss/musubi-tuner"
COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(HERE, "tests", "data", "trainers", "musubi-tuner")

#: Doc blocks copied byte for byte: name -> (doc path, first line, last line) of the block's content.
BLOCKS = {
    "advanced_config_example.toml": ("docs/advanced_config.md", 84, 103),
    "dataset_config_example.toml": ("docs/dataset_config.md", 27, 44),
}
#: Training commands in the docs: name -> (doc path, line of `accelerate launch`).
COMMANDS = {
    "wan_t2v_lora.toml": ("docs/wan.md", 170),
    "kandinsky5_lora.toml": ("docs/kandinsky5.md", 216),
    "zimage_lora.toml": ("docs/zimage.md", 139),
}
#: Replays of a doc command with other schedule flags: name -> (base command, flags removed, flags added).
EPOCHS = ["--max_train_epochs"]
VARIANTS = {
    "wan_cosine_warmup.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        "--lr_scheduler cosine --lr_warmup_steps 30 --max_train_steps 240",
    ),
    "wan_restarts_ratio.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        "--lr_scheduler cosine_with_restarts --lr_scheduler_num_cycles 3 --lr_warmup_steps 0.05 --max_train_steps 300",
    ),
    "wan_polynomial.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        "--lr_scheduler polynomial --lr_scheduler_power 2 --lr_warmup_steps 20 --max_train_steps 200",
    ),
    "wan_cosine_min_lr.toml": (
        "wan_t2v_lora.toml",
        [],
        "--lr_scheduler cosine_with_min_lr --lr_scheduler_min_lr_ratio 0.1 --lr_warmup_steps 0.1",
    ),
    "wan_wsd.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        "--lr_scheduler warmup_stable_decay --lr_warmup_steps 0.1 --lr_decay_steps 0.3 "
        "--lr_scheduler_min_lr_ratio 0.1 --max_train_steps 200",
    ),
    "wan_rex.toml": ("wan_t2v_lora.toml", EPOCHS, "--lr_scheduler rex --max_train_steps 200"),
    "wan_rex_paper.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        # the flags of docs/advanced_config.md:862, with the paper's values it names
        '--lr_scheduler rex --lr_scheduler_args "rex_alpha=0.5" "rex_beta=0.5" --max_train_steps 200',
    ),
    "wan_rex_warmup_loraplus.toml": (
        "wan_t2v_lora.toml",
        EPOCHS,
        "--lr_scheduler rex --lr_warmup_steps 20 --lr_scheduler_min_lr_ratio 0.0 --max_train_steps 200 "
        "--network_args loraplus_lr_ratio=4",
    ),
    "zimage_custom_cosine_annealing.toml": (
        "zimage_lora.toml",
        EPOCHS,
        "--lr_scheduler_type CosineAnnealingLR --lr_scheduler_args T_max=150 eta_min=1e-6 --lr_warmup_steps 20 "
        "--max_train_steps 150",
    ),
}
#: Golden cases of the corpus: name -> (config, facts).
CORPUS_CASES = {
    "advanced_config_example": ("advanced_config_example.toml", {"steps_per_epoch": 20}),
    "wan_t2v_lora": ("wan_t2v_lora.toml", {"steps_per_epoch": 10}),
    "kandinsky5_lora": ("kandinsky5_lora.toml", {"steps_per_epoch": 4}),
    "zimage_lora": ("zimage_lora.toml", {"steps_per_epoch": 10}),
    "wan_cosine_warmup": ("wan_cosine_warmup.toml", {}),
    "wan_cosine_warmup_2gpu": ("wan_cosine_warmup.toml", {"num_processes": 2}),
    "wan_cosine_warmup_4gpu": ("wan_cosine_warmup.toml", {"num_processes": 4}),
    "wan_restarts_ratio": ("wan_restarts_ratio.toml", {}),
    "wan_polynomial": ("wan_polynomial.toml", {}),
    "wan_cosine_min_lr": ("wan_cosine_min_lr.toml", {"steps_per_epoch": 12}),
    "wan_wsd": ("wan_wsd.toml", {}),
    "wan_rex": ("wan_rex.toml", {}),
    "wan_rex_2gpu": ("wan_rex.toml", {"num_processes": 2}),
    "wan_rex_paper": ("wan_rex_paper.toml", {}),
    "wan_rex_warmup_loraplus": ("wan_rex_warmup_loraplus.toml", {}),
    "wan_rex_warmup_loraplus_2gpu": ("wan_rex_warmup_loraplus.toml", {"num_processes": 2}),
    "zimage_custom_cosine_annealing": ("zimage_custom_cosine_annealing.toml", {}),
}
_SD = "learning_rate = 1e-4\nnetwork_train_unet_only = true\nmax_train_steps = 120\nlr_warmup_steps = 12\n"
#: Written cases: name -> (source text, its reader ("sd-scripts" or "musubi-tuner"), processes).
WRITTEN = {
    "cosine_warmup": (_SD + 'lr_scheduler = "cosine"\n', "sd-scripts", 1),
    "cosine_warmup_2gpu": (_SD + 'lr_scheduler = "cosine"\n', "sd-scripts", 2),
    "restarts3": (_SD + 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n', "sd-scripts", 1),
    "rex_floor": (
        'learning_rate = 1e-4\nnetwork_train_unet_only = true\nmax_train_steps = 120\nlr_scheduler = "rex"\n'
        'lr_scheduler_args = ["min_lr_ratio=0.05"]\n',
        "sd-scripts",
        1,
    ),
    "rex_warmup_2gpu": (_SD + 'lr_scheduler = "rex"\n', "sd-scripts", 2),
    "wsd": (
        _SD + 'lr_scheduler = "warmup_stable_decay"\nlr_decay_steps = 40\nlr_scheduler_min_lr_ratio = 0.1\n',
        "sd-scripts",
        1,
    ),
    "loraplus_rex_warmup": (
        'dit = "x"\nlearning_rate = 1e-4\nmax_train_steps = 120\nlr_warmup_steps = 12\n'
        'lr_scheduler = "cosine"\nnetwork_args = ["loraplus_lr_ratio=4"]\n',
        "musubi-tuner",
        1,
    ),
}


# ---- the snapshot ---------------------------------------------------------------------------------
def checkout(path: str, into: str) -> str:
    """A directory holding the snapshot's files at COMMIT (git archive from a bare git dir)."""
    if os.path.isdir(os.path.join(path, "src", "musubi_tuner")):
        return path
    archive = subprocess.run(["git", "--git-dir", path, "archive", COMMIT], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def load(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def toml_shim() -> None:
    """musubi reads its config with the `toml` package; tomllib where that is not installed."""
    try:
        import toml  # noqa: F401
    except ImportError:
        import tomllib

        shim = types.ModuleType("toml")
        shim.load = lambda f: tomllib.loads(f.read())
        sys.modules["toml"] = shim


def trainer_methods(root: str) -> type:
    """NetworkTrainer's get_optimizer, is_schedulefree_optimizer, get_dummy_scheduler and
    get_lr_scheduler, executed from trainer_base.py with only the names they use."""
    import torch
    import transformers
    from diffusers.optimization import TYPE_TO_SCHEDULER_FUNCTION as DIFFUSERS_FUNCTIONS
    from diffusers.optimization import SchedulerType as DiffusersSchedulerType
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType

    rex = load("musubi_lr_schedulers", os.path.join(root, "src/musubi_tuner/modules/lr_schedulers.py"))
    with open(os.path.join(root, "src/musubi_tuner/training/trainer_base.py"), encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NetworkTrainer")
    wanted = ("get_optimizer", "is_schedulefree_optimizer", "get_dummy_scheduler", "get_lr_scheduler")
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    module = ast.Module(body=[ast.ClassDef("Trainer", [], [], methods, [])], type_ignores=[])
    namespace: dict[str, Any] = {
        "ast": ast, "importlib": importlib, "torch": torch, "transformers": transformers, "Any": Any,
        "Optional": __import__("typing").Optional, "logger": logging.getLogger("musubi"), "RexLR": rex.RexLR,
        "SchedulerType": SchedulerType, "TYPE_TO_SCHEDULER_FUNCTION": TYPE_TO_SCHEDULER_FUNCTION,
        "DiffusersSchedulerType": DiffusersSchedulerType, "DIFFUSERS_TYPE_TO_SCHEDULER_FUNCTION": DIFFUSERS_FUNCTIONS,
    }  # fmt: skip
    exec(compile(ast.fix_missing_locations(module), "trainer_base.py", "exec"), namespace)
    return namespace["Trainer"]


# ---- the corpus -----------------------------------------------------------------------------------
def doc_lines(root: str, path: str) -> list[bytes]:
    with open(os.path.join(root, path), "rb") as f:
        return f.read().split(b"\n")


def command_at(root: str, path: str, line: int) -> tuple[list[str], int]:
    """The arguments after the script of the command starting at `line` (its continued lines), and its last line."""
    lines = doc_lines(root, path)
    end = line
    while lines[end - 1].rstrip().endswith(b"\\"):
        end += 1
    text = b" ".join(x.rstrip().rstrip(b"\\") for x in lines[line - 1 : end]).decode("utf-8")
    words = shlex.split(text)
    start = next(i for i, w in enumerate(words) if w.endswith(".py")) + 1
    return words[start:], end


def without(words: list[str], flags: list[str]) -> list[str]:
    out, skip = [], False
    for word in words:
        if word.startswith("--"):
            skip = word in flags
        if not skip:
            out.append(word)
    return out


def replay(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, list[str]]:
    """TOML of the values musubi's common parser gives `words` that differ from its defaults, and the
    flags it does not know (the per-model parsers' own)."""
    import tomli_w

    args, unknown = parser.parse_known_args(words)
    values = {k: v for k, v in vars(args).items() if v is not None and v != parser.get_default(k)}
    values = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in values.items()}
    return tomli_w.dumps(values), [w for w in unknown if w.startswith("--")]


def build_corpus(root: str, parser: argparse.ArgumentParser, out: str) -> dict[str, Any]:
    configs = os.path.join(out, "configs")
    os.makedirs(configs, exist_ok=True)
    provenance: dict[str, Any] = {}
    for name, (path, first, last) in BLOCKS.items():
        block = b"\n".join(doc_lines(root, path)[first - 1 : last]) + b"\n"
        with open(os.path.join(configs, name), "wb") as f:
            f.write(block)
        provenance[name] = {"repository": REPO, "path": path, "commit": COMMIT, "lines": f"{first}-{last}",
                            "how": "the TOML code block's lines, copied byte for byte"}  # fmt: skip
    commands = {}
    for name, (path, line) in COMMANDS.items():
        words, end = command_at(root, path, line)
        commands[name] = words
        text, dropped = replay(parser, words)
        write_text(os.path.join(configs, name), text)
        provenance[name] = {"repository": REPO, "path": path, "commit": COMMIT, "lines": f"{line}-{end}",
                            "how": "the command's flags parsed by musubi's setup_parser_common (parser_common.py); "
                                   "the values that differ from its defaults written with tomli_w",
                            "dropped_flags": dropped}  # fmt: skip
    for name, (base, removed, added) in VARIANTS.items():
        words = without(commands[base], removed) + shlex.split(added)
        text, dropped = replay(parser, words)
        write_text(os.path.join(configs, name), text)
        origin = provenance[base]
        provenance[name] = {"repository": REPO, "path": origin["path"], "commit": COMMIT, "lines": origin["lines"],
                            "how": f"replayed as {base}, flags {removed} removed and `{added}` added",
                            "dropped_flags": dropped}  # fmt: skip
    write_text(os.path.join(configs, "PROVENANCE.json"), json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return provenance


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ---- running musubi's scheduler ----------------------------------------------------------------------
#: Optimizers whose package is not needed for the LR (their LR handling is AdamW's): substituted. The
#: default "" fails in get_optimizer (getattr(torch.optim, "")): a run gives optimizer_type elsewhere.
SUBSTITUTE = {"adamw8bit": "AdamW", "": "AdamW"}


def musubi_lrs(trainer: type, parser: argparse.ArgumentParser, common: Any, config: str, facts: dict) -> dict:
    """Every param group's LR per optimizer update of the run `config` starts, by musubi's own code."""
    import torch

    saved, sys.argv = sys.argv, ["musubi", "--config_file", config]  # as `--config_file` on its command line
    try:
        args = common.read_config_from_file(argparse.Namespace(config_file=config), parser)
    finally:
        sys.argv = saved
    n = facts.get("num_processes", 1)
    if args.max_train_epochs is not None:  # trainer_base.py:1640: epochs x steps per epoch
        args.max_train_steps = args.max_train_epochs * facts["steps_per_epoch"]
    substituted = SUBSTITUTE.get(args.optimizer_type.lower())
    if substituted:
        substituted, args.optimizer_type = f"{args.optimizer_type!r} -> {substituted}", substituted
    ratio = dict(a.split("=") for a in (args.network_args or [])).get("loraplus_lr_ratio")
    # networks/lora.py prepare_optimizer_params: the LoRA group, then LoRA+'s lora_up group
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": args.learning_rate}]
    if ratio is not None:
        groups.append({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": args.learning_rate * float(ratio)})
    self = trainer()
    _, _, optimizer, _, _ = self.get_optimizer(args, groups)
    scheduler = self.get_lr_scheduler(args, optimizer, n)
    rows = []
    for _ in range(args.max_train_steps):
        rows.append([float(g["lr"]) for g in optimizer.param_groups])
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        for _ in range(n):  # accelerate: one scheduler call per process
            scheduler.step()
    names = ["unet", "unet_plus"][: len(groups)]
    return {"groups": names, "rows": rows, "substituted_optimizer": substituted, "steps": args.max_train_steps}


def write_csv(path: str, names: list[str], rows: list[list[float]]) -> None:
    lines = ["step," + ",".join(f"lr_{g}" for g in names)]
    lines += [f"{i}," + ",".join(repr(v) for v in row) for i, row in enumerate(rows)]
    write_text(path, "\n".join(lines) + "\n")


def write_grid(out: str) -> None:
    """written/NAME.toml: lora_sched's musubi writer on each WRITTEN source."""
    sys.path.insert(0, HERE)
    from lora_sched.trainers import RunFacts, read_run, write_run

    os.makedirs(os.path.join(out, "written"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, reader, n) in WRITTEN.items():
            source = os.path.join(tmp, name + ".toml")
            write_text(source, text)
            run = read_run(source, RunFacts(), reader)
            write_text(
                os.path.join(out, "written", name + ".toml"), write_run(run, "musubi-tuner", RunFacts(num_processes=n))
            )


def generate(snapshot: str, out: str) -> None:
    import diffusers
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        root = checkout(snapshot, tmp)
        toml_shim()
        common = load("musubi_parser_common", os.path.join(root, "src/musubi_tuner/training/parser_common.py"))
        parser = common.setup_parser_common()
        trainer = trainer_methods(root)
        build_corpus(root, parser, out)
        write_grid(out)
        cases: dict[str, Any] = {}
        todo = [(k, "configs/" + c, f) for k, (c, f) in CORPUS_CASES.items()]
        todo += [("written_" + k, f"written/{k}.toml", {"num_processes": n}) for k, (_, _, n) in WRITTEN.items()]
        for name, config, facts in todo:
            got = musubi_lrs(trainer, parser, common, os.path.join(out, config), facts)
            write_csv(os.path.join(out, name + ".csv"), got["groups"], got["rows"])
            case = {
                "config": config,
                "facts": facts,
                "groups": got["groups"],
                "steps": got["steps"],
                "csv": name + ".csv",
            }
            if got["substituted_optimizer"]:
                case["optimizer_substituted"] = got["substituted_optimizer"] + " (the LR does not depend on it)"
            if name.startswith("written_"):
                text, reader, _ = WRITTEN[name[len("written_") :]]
                case |= {"source": text, "source_trainer": reader}
            cases[name] = case
    manifest = {
        "repository": REPO, "commit": COMMIT, "torch": torch.__version__, "transformers": transformers.__version__,
        "diffusers": diffusers.__version__, "generated_by": "tools/gen_musubi_tuner_golden.py", "cases": cases,
    }  # fmt: skip
    write_text(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def compare(a: str, b: str) -> list[str]:
    """Files that differ or are missing between two trees."""
    cmp = filecmp.dircmp(a, b)
    out = [os.path.join(a, f) for f in cmp.diff_files + cmp.left_only + cmp.right_only]
    for sub in cmp.common_dirs:
        out += compare(os.path.join(a, sub), os.path.join(b, sub))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshot", help="musubi-tuner's bare git dir or checkout")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare")
    opts = ap.parse_args()
    if not opts.check:
        generate(opts.snapshot, OUT)
        print(f"wrote {OUT}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(opts.snapshot, tmp)
        differ = compare(OUT, tmp)
    for path in differ:
        print(f"differs: {path}")
    print("goldens up to date" if not differ else f"{len(differ)} file(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
