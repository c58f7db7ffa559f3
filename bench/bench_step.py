"""Bench: per-step cost of LoraSchedLR.step() against diffusers' LambdaLR for the same schedule.

Target: LoraSchedLR.step() <= 0.35x the step of diffusers' scheduler that
draws the same curve (diffusers' get_scheduler, a torch LambdaLR), on an optimizer with two param
groups (UNet and text encoder). Both are measured here, in this process, interleaved; the ratio
is printed per schedule and the script exits 1 when any ratio misses the target.

    python bench/bench_step.py [--steps 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from diffusers.optimization import get_scheduler

from lora_sched.schedules import ScheduleRequest, resolve
from lora_sched.torch import LoraSchedLR

TARGET = 0.35
#: (our name, our args, diffusers name, diffusers kwargs): the same curve in both.
CASES = [
    ("cosine", {}, "cosine", {}),
    ("linear", {}, "linear", {}),
    ("cosine_with_restarts", {"num_cycles": 3}, "cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {"power": 2.0}, "polynomial", {"power": 2.0}),
    ("constant_with_warmup", {}, "constant_with_warmup", {}),
]


def _optimizer() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (1e-4, 5e-5)]
    opt = torch.optim.SGD(groups, lr=1e-4)
    opt.step()  # both schedulers then see a stepped optimizer (no warning path)
    return opt


def run_steps(make, steps: int) -> tuple[float, list[float]]:
    """Seconds for `steps` calls of step() on a fresh scheduler, and the LRs it ended with."""
    opt = _optimizer()
    sched = make(opt)
    step = sched.step
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return elapsed, [g["lr"] for g in opt.param_groups]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    total, warmup = args.steps + 1, max(1, args.steps // 20)
    worst = 0.0
    print(f"{'schedule':<22} {'LoraSchedLR':>12} {'diffusers':>12} {'ratio':>7}   (ns per step, best of {args.repeat})")
    for name, ours_args, theirs, theirs_args in CASES:
        rs = resolve(ScheduleRequest(name, args=ours_args, warmup=warmup, max_train_steps=total, base_lr=1e-4))

        def ours(opt, rs=rs):
            return LoraSchedLR(opt, resolved=rs)

        def diffusers(opt, theirs=theirs, theirs_args=theirs_args):
            return get_scheduler(theirs, opt, num_warmup_steps=warmup, num_training_steps=total, **theirs_args)

        best_ours = best_theirs = float("inf")
        for _ in range(args.repeat):
            t_ours, lr_ours = run_steps(ours, args.steps)
            t_theirs, lr_theirs = run_steps(diffusers, args.steps)
            best_ours, best_theirs = min(best_ours, t_ours), min(best_theirs, t_theirs)
        if not np.allclose(lr_ours, lr_theirs, rtol=1e-9, atol=1e-20):
            raise SystemExit(f"{name}: final LRs differ ({lr_ours} vs {lr_theirs}): not the same schedule")
        ratio = best_ours / best_theirs
        worst = max(worst, ratio)
        print(
            f"{name:<22} {1e9 * best_ours / args.steps:>12.0f} {1e9 * best_theirs / args.steps:>12.0f} {ratio:>6.2f}x"
        )
    verdict = "meets" if worst <= TARGET else "MISSES"
    print(f"worst ratio {worst:.2f}x: {verdict} the target of <= {TARGET:.2f}x")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raise SystemExit(main())
