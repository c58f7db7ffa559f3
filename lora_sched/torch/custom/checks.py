"""Every problem of a custom class with its arguments: the class is imported (see `policy`), its
signature checked, then it is built once, and stepped through the run, on a dummy optimizer, so its
own value checks and mid-run failures (OneCycleLR past total_steps) surface before any model loads."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lora_sched.errors import ConfigError, Problem, problem, raw
from lora_sched.torch.custom.policy import resolve_class
from lora_sched.torch.custom.signature import check_signature
from lora_sched.torch.scheduler import LoraSchedLR


def dummy_optimizer(lrs: list[float]) -> Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, lr=lrs[0])


def check_scheduler_type(type_path: Any, args: Mapping[str, Any] | None, trust: bool = False) -> list[Problem]:
    """Every problem with ``lr_scheduler_type`` + ``lr_scheduler_args`` (empty when it builds).

    Called by the config layer at validation time; imports torch (and only the allowed module).
    """
    args = dict(args or {})
    cls, problems = resolve_class(type_path, trust)
    if cls is None:
        return problems
    problems = check_signature(cls, args, str(type_path))
    if problems:
        return problems
    try:  # the class's own value checks (e.g. OneCycleLR's total_steps, CyclicLR's momentum)
        cls(dummy_optimizer([1e-3]), **args)
    except ConfigError as exc:
        return exc.problems
    except (ValueError, TypeError, KeyError, ZeroDivisionError, AssertionError) as exc:
        return [
            problem(
                "lr_scheduler_args",
                f"arguments {cls.__name__} accepts",
                raw(f"{args!r}, which {cls.__name__} rejects: {exc}"),
            )
        ]
    return []


#: validate steps a custom class through the whole run when the class is stepped at most this many
#: times (about 0.2 s for torch's classes); a longer run is stepped this far, after the known limits
#: (OneCycleLR's total_steps) are checked against the whole run, and a notice says so.
DRY_RUN_STEPS = 20_000
#: export refuses a file whose class raises anywhere in a run of up to this many steps (seconds).
EXPORT_DRY_RUN_STEPS = 1_000_000


def class_steps(run_length: int, warmup: int) -> int:
    """How many times a run calls the class's step(): once per update after the warmup, the last
    update too (sd-scripts and lora-sched train step the scheduler after every optimizer update)."""
    return max(0, run_length - warmup)


def _one_cycle_limit(args: Mapping[str, Any], steps: int) -> list[Problem]:
    """OneCycleLR raises ValueError once stepped past total_steps (or epochs x steps_per_epoch)."""
    if "total_steps" in args and args["total_steps"] is not None:
        key, total = "lr_scheduler_args.total_steps", args["total_steps"]
    else:
        key, total = "lr_scheduler_args.epochs", args.get("epochs", 0) * args.get("steps_per_epoch", 0)
    if not isinstance(total, int) or total >= steps:
        return []
    return [
        problem(
            key,
            f"a OneCycleLR cycle of at least {steps:,} steps (the class is stepped once per update)",
            args[key.rpartition(".")[2]],
            f"OneCycleLR raises ValueError when stepped past its {total:,} total steps; "
            f"set total_steps = {steps}, or use the catalogue's one_cycle",
        )
    ]


KNOWN_LIMITS = {"OneCycleLR": _one_cycle_limit}


def check_run(
    type_path: str,
    args: Mapping[str, Any] | None,
    run_length: int,
    warmup: int = 0,
    *,
    budget: int | None = None,
    trust: bool = False,
) -> list[Problem]:
    """Problems of stepping the class through the run (call after `check_scheduler_type` found none).

    The known limits of torch's classes are checked against the whole run, then the class is built
    on a dummy optimizer and stepped min(run, budget) times (budget: DRY_RUN_STEPS unless given); an
    exception at any step is an error naming the step. When the run is longer than the budget, a
    notice says how far it was stepped. ReduceLROnPlateau (it depends on the loss) and LoraSchedLR
    (a closed form) are not stepped.
    """
    args = dict(args or {})
    cls, problems = resolve_class(type_path, trust)
    if cls is None or issubclass(cls, (ReduceLROnPlateau, LoraSchedLR)):
        return []
    steps = class_steps(run_length, warmup)
    module = getattr(cls, "__module__", "")
    limit = KNOWN_LIMITS.get(cls.__name__) if module.startswith("torch.") else None
    if limit is not None:
        problems = limit(args, steps)
        if problems:
            return problems
    budget = DRY_RUN_STEPS if budget is None else budget
    stepped = min(steps, budget)
    failure = _first_failure(cls, args, stepped)
    if failure is not None:
        step, exc = failure
        return [
            problem(
                "lr_scheduler_args",
                f"arguments {cls.__name__} runs with for all {steps:,} steps of the run",
                raw(f"{args!r}, with which {cls.__name__} raises at its step {step:,}: {type(exc).__name__}: {exc}"),
                "training (and sd-scripts) would stop there",
            )
        ]
    if stepped < steps:
        return [
            problem(
                "lr_scheduler_type",
                f"a class stepped through the whole run ({steps:,} steps)",
                raw(f"{cls.__name__} stepped {stepped:,} times without an error"),
                "validate steps a custom class at most "
                f"{budget:,} times; `lora-sched preview` and `export --kohya` step it through the whole run",
                severity="notice",
            )
        ]
    return []


def _first_failure(cls: type, args: Mapping[str, Any], steps: int) -> tuple[int, Exception] | None:
    """(step, exception) of the first step() of `cls` on a dummy optimizer that raises, or None."""
    scheduler = cls(dummy_optimizer([1e-3]), **args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no optimizer step needed
        for step in range(1, steps + 1):
            try:
                scheduler.step()
            except Exception as exc:  # any exception a class raises stops training the same way
                return step, exc
    return None


