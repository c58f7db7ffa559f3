"""Preview speed: the multipliers of a 1,000,000-step cosine schedule against
one `np.cos` over 1,000,000 values (target <= 2x) and against stepping the equivalent diffusers
LambdaLR 1,000,000 times (target >= 500x faster), with values equal to 1e-12.

All timings in this one process; medians of repeated runs. Run from the repository root:

    python bench/bench_preview.py [--steps 1000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lora_sched.config import loads_config

TARGET_COS, TARGET_DIFFUSERS = 2.0, 500.0


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    n, w, base = args.steps, args.warmup, 1e-4

    cfg = loads_config(
        f'lr_scheduler = "cosine"\nlearning_rate = {base}\nlr_warmup_steps = {w}\nmax_train_steps = {n}\n',
        source="bench",
    )
    rs = cfg.resolve()
    ours = rs.multipliers()
    t_ours = median_time(rs.multipliers, args.repeats)

    x = np.linspace(0.0, np.pi, n)
    t_cos = median_time(lambda: np.cos(x), args.repeats)

    import torch
    from diffusers.optimization import get_cosine_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=w, num_training_steps=n)  # num_cycles 0.5
    theirs = np.empty(n)
    start = time.perf_counter()
    for s in range(n):
        theirs[s] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    t_diffusers = time.perf_counter() - start

    diff = float(np.max(np.abs(ours * base - theirs)) / base)
    r_cos, r_diff = t_ours / t_cos, t_diffusers / t_ours
    print(f"cosine schedule, {n:,} steps, warmup {w:,} (numpy {np.__version__}, torch {torch.__version__})")
    print(f"  lora_sched multipliers      {t_ours * 1e3:9.2f} ms  (median of {args.repeats})")
    print(f"  one np.cos over {n:,}  {t_cos * 1e3:9.2f} ms  (median of {args.repeats})")
    print(f"  diffusers LambdaLR, stepped {t_diffusers * 1e3:9.0f} ms  (once)")
    print(f"  max |ours - diffusers| / base_lr = {diff:.2e} (must be <= 1e-12)")
    print(f"preview / np.cos: {r_cos:.2f}x (target <= {TARGET_COS:g}x) -> {'ok' if r_cos <= TARGET_COS else 'MISSED'}")
    print(
        f"diffusers / preview: {r_diff:.0f}x faster (target >= {TARGET_DIFFUSERS:g}x) -> "
        f"{'ok' if r_diff >= TARGET_DIFFUSERS else 'MISSED'}"
    )
    worst = every_schedule(n, w, t_cos, args.repeats)
    verdict = "ok" if worst <= TARGET_COS else "MISSED"
    print(f"worst schedule / np.cos: {worst:.2f}x (target <= {TARGET_COS:g}x) -> {verdict}")
    return 0 if diff <= 1e-12 else 1


#: Arguments that make each schedule draw a real curve over the run (the rest use their defaults).
EXAMPLE_ARGS = {
    "cosine_with_min_lr": {"min_lr_ratio": 0.1},
    "cosine_with_restarts": {"num_cycles": 3},
    "rex": {"num_cycles": 3, "cycle_warmup": 100},
    "cosine_annealing_warm_restarts": {"t_0": 1000, "t_mult": 2},
    "step": {"step_size": 1000},
    "multistep": {"milestones": [1000, 500_000]},
    "exponential": {"gamma": 0.999999},
    "piecewise_constant": {"step_rules": "1:1000,0.5:500000,0.1"},
}


def every_schedule(n: int, w: int, t_cos: float, repeats: int) -> float:
    """The preview of every catalogue schedule against the same np.cos; returns the worst ratio."""
    from lora_sched.schedules import ScheduleRequest, all_specs, resolve

    print(f"every schedule, {n:,} steps (warmup {w:,} where the schedule takes one):")
    worst = 0.0
    for spec in all_specs():
        request = ScheduleRequest(
            spec.name,
            args=EXAMPLE_ARGS.get(spec.name, {}),
            warmup=w if spec.accepts_warmup else 0,
            max_train_steps=n,
            base_lr=1e-3,
        )
        rs = resolve(request)
        ratio = median_time(rs.multipliers, repeats) / t_cos
        worst = max(worst, ratio)
        print(f"  {spec.name:32s} {ratio:5.2f}x np.cos")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
