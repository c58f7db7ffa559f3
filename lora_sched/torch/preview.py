"""LR curves of a custom class, by stepping the scheduler training builds over a dummy optimizer."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from lora_sched.errors import ConfigError, problem, raw
from lora_sched.torch.custom.checks import dummy_optimizer
from lora_sched.torch.factory import build_scheduler_class


def preview_lrs(
    scheduler_type: str,
    scheduler_args: Mapping[str, Any] | None,
    group_lrs: list[float],
    steps: int,
    warmup: int = 0,
    warmup_start: float = 0.0,
    warmup_type: str = "linear",
    trust: bool = False,
) -> Any:
    """LR per step (rows) and group (columns) of a custom class, by stepping it on a dummy optimizer.

    ReduceLROnPlateau depends on the loss: its preview is the warmup, then the base LR held (no
    reduction can be foreseen).
    """
    import numpy as np

    opt = dummy_optimizer(list(group_lrs))
    sched = build_scheduler_class(scheduler_type, scheduler_args, opt, warmup, warmup_start, warmup_type, trust=trust)
    out = np.empty((steps, len(group_lrs)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no optimizer step needed
        for s in range(steps):
            out[s] = [float(g["lr"]) for g in opt.param_groups]
            try:
                sched.step()
            except Exception as exc:  # a class that raises mid-run: an error naming the update, not a traceback
                name = scheduler_type.rpartition(".")[2]
                raise ConfigError(
                    problem(
                        "lr_scheduler_args",
                        f"arguments {name} runs with for all {steps:,} updates of the run",
                        raw(
                            f"{dict(scheduler_args or {})!r}, with which {name} raises after update {s:,}: "
                            f"{type(exc).__name__}: {exc}"
                        ),
                        "training (and sd-scripts) would stop there",
                    )
                ) from None
    return out


def preview_multipliers(cfg: Any, trust: bool = False) -> Any:
    """m(s) = LR of the first param group / its base LR, s = 0..run_length-1, for a custom class.

    Classes with absolute LR arguments (CyclicLR's base_lr / max_lr, OneCycleLR's max_lr) give the
    same absolute LRs to every group; use `preview_lrs` with the config's group LRs for exact
    per-group values.
    """
    trust = trust or bool(getattr(cfg, "trust_scheduler_code", False))
    resolved = cfg.resolve()
    base = float(resolved.base_lr)
    lrs = preview_lrs(
        cfg.scheduler_type,
        cfg.scheduler_type_args,
        [base],
        resolved.run_length,
        resolved.warmup,
        resolved.warmup_start,
        resolved.warmup_type,
        trust,
    )
    return lrs[:, 0] / base
