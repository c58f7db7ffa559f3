"""Test helper: what stock sd-scripts does with a TOML's scheduler keys, written down independently.

`kohya_lrs(doc, num_processes)` takes a TOML document (as tomllib reads it) and returns the LR of
each param group at each optimizer update, the way sd-scripts would produce them:

* config file: sections are flattened (kohya ignores section names); TOML values are not converted;
* optimizer: groups for the UNet (``unet_lr`` or ``learning_rate``) and the text encoder
  (``text_encoder_lr`` or ``learning_rate``), optimizer default LR ``learning_rate``;
  ``optimizer_type = "Adafactor"`` builds transformers' Adafactor with ``lr=None`` (relative step);
* get_scheduler_fix(args, optimizer, num_processes) (library/train_util.py):
  num_training_steps = max_train_steps x N; a float lr_warmup_steps / lr_decay_steps is
  int(ratio x num_training_steps), an int one is used as is; lr_scheduler_args items are split with
  ``key, value = arg.split("=")`` and read by ast.literal_eval; lr_scheduler_type imports the class
  (no dot: torch.optim.lr_scheduler) and calls ``cls(optimizer, **kwargs)``, refusing a warmup;
  ``adafactor`` is transformers' AdafactorSchedule; ``piecewise_constant`` is diffusers'; other names
  are transformers' TYPE_TO_SCHEDULER_FUNCTION with the keyword arguments sd-scripts passes
  (num_cycles for cosine_with_restarts, power for polynomial, timescale for inverse_sqrt,
  num_cycles / 2 and min_lr_rate for cosine_with_min_lr, num_stable/num_decay/num_cycles / 2 and
  min_lr_ratio for warmup_stable_decay); constant and adafactor refuse a warmup;
* training loop: per optimizer update, optimizer.step() then lr_scheduler.step(), where accelerate's
  AcceleratedScheduler (split_batches = False) calls the scheduler's step() N times.
"""

from __future__ import annotations

import ast
import importlib
from typing import Any

import numpy as np
import torch

DEFAULTS = {
    "lr_warmup_steps": None,
    "lr_decay_steps": None,
    "lr_scheduler_num_cycles": 1,
    "lr_scheduler_power": 1,
    "lr_scheduler_timescale": None,
    "lr_scheduler_min_lr_ratio": None,
    "lr_scheduler_type": "",
    "lr_scheduler_args": None,
    "lr_scheduler": "constant",
    "unet_lr": None,
    "text_encoder_lr": None,
    "optimizer_type": "AdamW",
    "optimizer_args": None,
}


def flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """kohya's read_config_from_file: section names are ignored."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return {**DEFAULTS, **flat}


def _kwargs(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for arg in items or []:
        key, value = arg.split("=")  # sd-scripts' own split: a second "=" raises here too
        out[key] = ast.literal_eval(value)
    return out


def make_optimizer(args: dict[str, Any]) -> torch.optim.Optimizer:
    lr = args["learning_rate"]
    groups_lr = [args["unet_lr"] or lr, args["text_encoder_lr"] or lr]
    params = [torch.nn.Parameter(torch.ones(4, 4)) for _ in groups_lr]
    if str(args["optimizer_type"]).lower() == "adafactor":
        from transformers.optimization import Adafactor

        kwargs = _kwargs(args["optimizer_args"])
        kwargs.setdefault("relative_step", True)
        groups = [{"params": [p]} for p in params]
        return Adafactor(groups, lr=None, **kwargs)
    groups = [{"params": [p], "lr": g} for p, g in zip(params, groups_lr)]
    return torch.optim.AdamW(groups, lr=lr)


def get_scheduler_fix(args: dict[str, Any], optimizer: torch.optim.Optimizer, num_processes: int) -> Any:
    """The scheduler sd-scripts builds (see the module docstring for the rules)."""
    from diffusers.optimization import get_piecewise_constant_schedule
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, AdafactorSchedule, SchedulerType

    name = args["lr_scheduler"]
    total = args["max_train_steps"] * num_processes
    warmup = args["lr_warmup_steps"]
    warmup = int(warmup * total) if isinstance(warmup, float) else warmup
    decay = args["lr_decay_steps"]
    decay = int(decay * total) if isinstance(decay, float) else decay
    kwargs = _kwargs(args["lr_scheduler_args"])

    def no_warmup(sched: Any) -> Any:
        if warmup is not None and warmup != 0:
            raise ValueError(f"{name} does not require `num_warmup_steps`. Set None or 0.")
        return sched

    if args["lr_scheduler_type"]:
        path = args["lr_scheduler_type"]
        if "." not in path:
            module, attr = torch.optim.lr_scheduler, path
        else:
            module, attr = importlib.import_module(path.rsplit(".", 1)[0]), path.rsplit(".", 1)[1]
        return no_warmup(getattr(module, attr)(optimizer, **kwargs))
    if name.startswith("adafactor"):
        return no_warmup(AdafactorSchedule(optimizer, args["learning_rate"]))
    if name == "piecewise_constant":
        return get_piecewise_constant_schedule(optimizer, **kwargs)
    kind = SchedulerType(name)
    func = TYPE_TO_SCHEDULER_FUNCTION[kind]
    if kind == SchedulerType.CONSTANT:
        return no_warmup(func(optimizer, **kwargs))
    if kind == SchedulerType.CONSTANT_WITH_WARMUP:
        return func(optimizer, num_warmup_steps=warmup, **kwargs)
    if kind == SchedulerType.INVERSE_SQRT:
        return func(optimizer, num_warmup_steps=warmup, timescale=args["lr_scheduler_timescale"], **kwargs)
    common = {"num_warmup_steps": warmup, "num_training_steps": total}
    if kind == SchedulerType.COSINE_WITH_RESTARTS:
        return func(optimizer, **common, num_cycles=args["lr_scheduler_num_cycles"], **kwargs)
    if kind == SchedulerType.POLYNOMIAL:
        return func(optimizer, **common, power=args["lr_scheduler_power"], **kwargs)
    if kind == SchedulerType.COSINE_WITH_MIN_LR:
        return func(
            optimizer,
            **common,
            num_cycles=args["lr_scheduler_num_cycles"] / 2,
            min_lr_rate=args["lr_scheduler_min_lr_ratio"],
            **kwargs,
        )
    if kind in (SchedulerType.LINEAR, SchedulerType.COSINE):
        return func(optimizer, **common, **kwargs)
    if kind == SchedulerType.WARMUP_STABLE_DECAY:
        ratio = args["lr_scheduler_min_lr_ratio"]
        return func(
            optimizer,
            num_warmup_steps=warmup,
            num_stable_steps=total - warmup - decay,
            num_decay_steps=decay,
            num_cycles=args["lr_scheduler_num_cycles"] / 2,
            min_lr_ratio=ratio if ratio is not None else 0.0,
            **kwargs,
        )
    raise ValueError(f"sd-scripts rule not written down for {name}")


def kohya_lrs(doc: dict[str, Any], num_processes: int = 1) -> np.ndarray:
    """LR per update (rows) and group (columns: unet, text encoder), as sd-scripts would log them."""
    args = flatten(doc)
    optimizer = make_optimizer(args)
    scheduler = get_scheduler_fix(args, optimizer, num_processes)
    rows = []
    for _ in range(args["max_train_steps"]):
        if str(args["optimizer_type"]).lower() == "adafactor":
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = torch.full_like(p, 0.01)
            optimizer.step()
            # AdafactorSchedule reports the step size the optimizer just used (kohya logs this)
            rows.append([float(v) for v in scheduler.get_lr()])
            for _ in range(num_processes):
                scheduler.step()
            continue
        rows.append([float(g["lr"]) for g in optimizer.param_groups])
        optimizer.step()
        for _ in range(num_processes):  # AcceleratedScheduler.step with split_batches = False
            scheduler.step()
    return np.asarray(rows, dtype=np.float64)
