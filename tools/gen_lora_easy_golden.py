"""Regenerate tests/data/lora_easy/: LRs stepped from LoRA_Easy's own scheduler classes.

    python tools/gen_lora_easy_golden.py /path/to/LoRA_Easy_Training_scripts_Backend [--out DIR]

The checkout is derrian-distro/LoRA_Easy_Training_scripts_Backend; its classes live in
custom_scheduler/LoraEasyCustomOptimizer/{RexAnnealingWarmRestarts,CosineAnnealingWarmRestarts}.py
and need only torch. Each case builds the class on an optimizer with one param group per base LR
and steps it as sd-scripts does (the LR an update uses, then optimizer.step(), then
scheduler.step()); the CSV holds step and one column per group (floats in repr form), and
manifest.json the class, its arguments, the group LRs, the checkout's commit and torch's version.
tests/test_rex.py compares lora_sched's curves with these files (CI has no network).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

CLASS_FILES = {
    "RexAnnealingWarmRestarts": "custom_scheduler/LoraEasyCustomOptimizer/RexAnnealingWarmRestarts.py",
    "CosineAnnealingWarmRestarts": "custom_scheduler/LoraEasyCustomOptimizer/CosineAnnealingWarmRestarts.py",
}
#: name -> (class, arguments as sd-scripts passes them, group base LRs, steps)
CASES = {
    # kohya-colab's XL notebook, "rex", 1000 steps, 5% warmup ratio: unet 3e-4, text encoder 6e-5
    "kohya_colab_rex": (
        "RexAnnealingWarmRestarts",
        {"min_lr": 1e-9, "gamma": 0.9, "d": 0.9, "first_cycle_max_steps": 333, "warmup_steps": 16},
        [3e-4, 6e-5],
        1000,
    ),
    # growing cycles; the second group's LR is below min_lr: the REX class gives it no floor
    "rex_cycle_multiplier": (
        "RexAnnealingWarmRestarts",
        {
            "min_lr": 1e-5,
            "gamma": 0.7,
            "d": 0.8,
            "first_cycle_max_steps": 40,
            "warmup_steps": 5,
            "cycle_multiplier": 1.5,
        },
        [1e-4, 5e-6],
        400,
    ),
    # no first_cycle_max_steps: the class's 1-step cycles, i.e. lr x gamma^s down to min_lr (default 1e-6)
    "rex_class_defaults": ("RexAnnealingWarmRestarts", {"gamma": 0.98}, [1e-4, 2e-5], 300),
    # LoRA_Easy's cosine class: 3 cycles with 10% warmup; the third group's LR is below min_lr,
    # which the cosine class holds anyway
    "cosine_three_cycles": (
        "CosineAnnealingWarmRestarts",
        {"min_lr": 1e-5, "gamma": 0.8, "first_cycle_max_steps": 100, "warmup_steps": 10},
        [1e-3, 2e-4, 5e-6],
        301,
    ),
    # shrinking cycles down to their warmup length
    "cosine_shrinking_cycles": (
        "CosineAnnealingWarmRestarts",
        {"min_lr": 1e-7, "gamma": 0.95, "first_cycle_max_steps": 64, "warmup_steps": 3, "cycle_multiplier": 0.6},
        [1e-4, 3e-5],
        500,
    ),
}


def step_class(cls: type, args: dict, lrs: list[float], steps: int) -> list[list[float]]:
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    optimizer = torch.optim.AdamW(groups, lr=lrs[0])
    # The cosine class wraps optimizer.step with a counter kept on the optimizer, which torch set
    # before 2.2 and no longer does; the counter only feeds torch's order warning, never an LR.
    optimizer._step_count = 0
    scheduler = cls(optimizer, **args)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            rows.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a LoRA_Easy_Training_scripts_Backend checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/lora_easy")
    opts = parser.parse_args(argv)
    sys.path.insert(0, str(opts.checkout / "custom_scheduler"))
    import importlib

    import torch

    commit = subprocess.run(
        ["git", "-C", str(opts.checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    opts.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": "github.com/derrian-distro/LoRA_Easy_Training_scripts_Backend",
        "commit": commit,
        "files": CLASS_FILES,
        "torch": torch.__version__,
        "cases": {},
    }
    for name, (class_name, args, lrs, steps) in CASES.items():
        module = importlib.import_module(f"LoraEasyCustomOptimizer.{class_name}")
        rows = step_class(getattr(module, class_name), args, lrs, steps)
        header = "step," + ",".join(f"lr_group{i}" for i in range(len(lrs)))
        lines = [header] + [f"{s}," + ",".join(repr(v) for v in row) for s, row in enumerate(rows)]
        (opts.out / f"{name}.csv").write_text("\n".join(lines) + "\n")
        manifest["cases"][name] = {"class": class_name, "args": args, "group_lrs": lrs, "steps": steps}
    (opts.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(CASES)} cases to {opts.out} (commit {commit}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
