"""The torch LR scheduler that drives training: the catalogue's closed form, indexed by step.

`LoraSchedLR` sets every param group's LR to ``base_lr_group * m(s)`` where m is the resolved
schedule's multiplier (the very function the preview plots) and s = ``last_epoch`` // calls per
update; with an absolute floor (REX's ``min_lr``) each group's m is drawn from its own base LR.
Multipliers are evaluated with NumPy in blocks and cached as Python floats, so `step()` is a list
lookup and a multiply per group.

Its state records the resolved schedule; loading a state whose schedule differs from the current
one is refused with a `ScheduleMismatchError` naming each change, unless the caller allows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lora_sched.config.args import parse_literal
from lora_sched.errors import ConfigError, Problem, problem, raw
from lora_sched.schedules import ResolvedSchedule, ScheduleRequest, resolve
from lora_sched.schedules.spec import ADAPTER_FRAME_KEYS

#: Steps evaluated per NumPy call; one block of Python floats is cached at a time.
BLOCK = 8192
STATE_FORMAT = "lora_sched.LoraSchedLR/1"
_HINT_CHANGE = (
    "restore the setting the run started with, or resume with allow_schedule_change=True "
    "to keep the step and use the new curve from there"
)


class ScheduleMismatchError(ConfigError):
    """A checkpoint's schedule differs from the one the current config resolves to."""


class LoraSchedLR(LRScheduler):
    """LR = base LR of each param group x m(s), m the closed form of a catalogue schedule.

    Build it from a `ResolvedSchedule` (``LoraSchedLR(opt, resolved=resolved)``), or from flat keyword
    arguments the way sd-scripts calls a custom class named in ``lr_scheduler_type``::

        LoraSchedLR(opt, schedule="rex", warmup=10, horizon=1000, num_cycles=3, restart_decay=0.9)

    Flat arguments: ``schedule`` (or ``spec``): catalogue name or alias; ``warmup``, ``horizon``,
    ``run_length`` (default: the horizon): durations as in a config; ``warmup_start``,
    ``warmup_type``, ``hold_after_horizon``, ``base_lr`` (default: param group 0's LR);
    ``num_processes``: how many times the caller steps the scheduler per optimizer update
    (accelerate steps a prepared scheduler once per process, so sd-scripts with N processes needs
    N); every other argument is a parameter of the schedule. String values are read as Python
    literals when they parse as one (sd-scripts passes ``key=value`` strings through
    ``ast.literal_eval`` already, this covers callers that do not).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        resolved: ResolvedSchedule | Mapping[str, Any] | None = None,
        *,
        num_processes: int = 1,
        last_epoch: int = -1,
        **kwargs: Any,
    ) -> None:
        if resolved is None:
            resolved = _resolve_flat(optimizer, kwargs)
        elif kwargs:
            raise TypeError(f"LoraSchedLR got both a resolved schedule and arguments {sorted(kwargs)}")
        elif isinstance(resolved, Mapping):
            resolved = ResolvedSchedule.from_dict(resolved)
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise ConfigError(problem("num_processes", "an int >= 1", num_processes))
        self.resolved: ResolvedSchedule = resolved
        self.num_processes = num_processes
        self._curves: dict[float, _Blocks] = {}  # by the base LR a curve is drawn for
        self._by_group: list[_Blocks] = []
        self._shared: _Blocks | None = None  # the one curve of every group (no absolute floor), else None
        # plain float LRs (not tensors): step() sets them without the tensor checks of _apply
        self._plain_lrs = not any(isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups)
        super().__init__(optimizer, last_epoch)

    # -- the curve ---------------------------------------------------------------------------
    @property
    def update_step(self) -> int:
        """The optimizer update the current LRs are for (last_epoch counts calls to step())."""
        return max(0, self.last_epoch) // self.num_processes

    def multiplier(self, step: int) -> float:
        """m(step) of the resolved schedule, from the cached block (a new block when the step leaves it)."""
        return self._curve_of(self.resolved)(step)

    def _curve_of(self, resolved: ResolvedSchedule) -> _Blocks:
        curve = self._curves.get(resolved.base_lr)
        if curve is None:
            curve = self._curves[resolved.base_lr] = _Blocks(resolved)
        return curve

    def _group_curves(self) -> list[_Blocks]:
        """One multiplier cache per param group: shared unless the schedule has an absolute floor
        (REX's min_lr), which each group reaches from its own base LR."""
        if len(self._by_group) != len(self.base_lrs):
            self._by_group = [self._curve_of(self.resolved.for_group(float(b))) for b in self.base_lrs]
            first = self._by_group[0] if self._by_group else None
            self._shared = first if all(c is first for c in self._by_group) else None
        return self._by_group

    def _lrs(self, step: int) -> list[float]:
        return [base * curve(step) for base, curve in zip(self.base_lrs, self._group_curves())]

    def get_lr(self) -> list[float | torch.Tensor]:
        return self._lrs(self.update_step)

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one call; LRs become base x m(s). (Lean version of LRScheduler.step.)"""
        if epoch is not None:  # deprecated torch path: jump to a given epoch
            super().step(epoch)
            return
        self._step_count += 1
        self.last_epoch += 1
        update = self.last_epoch // self.num_processes  # last_epoch >= 0 once stepped
        curve = self._shared
        if curve is not None and curve.start <= update < curve.end:  # one curve, its cached block: no calls
            m = curve.block[update - curve.start]
            lrs = [base * m for base in self.base_lrs]
        else:
            lrs = self._lrs(update)
        if self._plain_lrs:
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr
            self._last_lr = lrs
        else:
            self._apply(lrs)

    def step_update(self, loss: float | None = None) -> None:
        """One optimizer update (the training loop's uniform call; the loss matters only to plateaus)."""
        self.step()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Step counters, group base LRs and the resolved schedule (plain Python values)."""
        return {
            "format": STATE_FORMAT,
            "schedule": self.resolved.to_dict(),
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "num_processes": self.num_processes,
            "base_lrs": [float(b) for b in self.base_lrs],
        }

    def load_state_dict(self, state_dict: dict[str, Any], allow_schedule_change: bool = False) -> None:
        """Restore the step; refuse a checkpoint whose schedule differs (unless allowed).

        With ``allow_schedule_change=True`` the step is kept and the current schedule (and group
        base LRs) are used from there on.
        """
        if state_dict.get("format") != STATE_FORMAT or "schedule" not in state_dict:
            raise ConfigError(
                problem(
                    "scheduler state",
                    "a state saved by lora_sched's LoraSchedLR",
                    raw(f"a state with keys {sorted(state_dict)}"),
                    "the checkpoint was written by another scheduler; start a fresh run or use its scheduler",
                )
            )
        saved = ResolvedSchedule.from_dict(state_dict["schedule"])
        changes = schedule_changes(saved, self.resolved, state_dict.get("base_lrs"), self.base_lrs)
        if changes and not allow_schedule_change:
            raise ScheduleMismatchError(changes)
        # last_epoch counts calls: keep the optimizer update, re-expressed in this scheduler's calls
        # (a different number of processes leaves the curve over updates unchanged: not a change).
        updates = max(0, int(state_dict["last_epoch"])) // max(1, int(state_dict.get("num_processes", 1)))
        self.last_epoch = updates * self.num_processes
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self._apply(self._lrs(self.update_step))

    def _apply(self, lrs: list[float]) -> None:
        last: list[Any] = []
        for group, lr in zip(self.optimizer.param_groups, lrs):
            current = group["lr"]
            if isinstance(current, torch.Tensor):
                current.fill_(lr)
                last.append(current.clone())
            else:
                group["lr"] = lr
                last.append(lr)
        self._last_lr = last


class _Blocks:
    """m(s) of one resolved schedule, evaluated with NumPy BLOCK steps at a time and cached as floats."""

    __slots__ = ("block", "end", "index", "resolved", "start")

    def __init__(self, resolved: ResolvedSchedule) -> None:
        self.resolved, self.index, self.block = resolved, -1, []
        self.start = self.end = 0  # the steps the cached block covers: [start, end)

    def __call__(self, step: int) -> float:
        index, offset = divmod(step, BLOCK)
        if index != self.index:
            import numpy as np

            start = index * BLOCK
            self.block = self.resolved.multipliers(np.arange(start, start + BLOCK, dtype=np.float64)).tolist()
            self.index, self.start, self.end = index, start, start + BLOCK
        return self.block[offset]


def _change(what: str, old: Any, new: Any) -> Problem:
    return problem(
        f"schedule.{what}",
        f"{old} (as in the checkpoint)",
        raw(f"{new} in the current config"),
        _HINT_CHANGE,
    )


def schedule_changes(
    saved: ResolvedSchedule,
    current: ResolvedSchedule,
    saved_base_lrs: list[float] | None = None,
    current_base_lrs: list[Any] | None = None,
) -> list[Problem]:
    """One problem per changed curve parameter (from `ResolvedSchedule.curve_changes`)."""
    changes = []
    for change in saved.curve_changes(current):
        changes.append(_change(change.what, repr(change.old), repr(change.new)))
    if saved_base_lrs is not None and current_base_lrs is not None:
        current_f = [float(b) for b in current_base_lrs]
        if len(saved_base_lrs) != len(current_f):
            changes.append(_change("param groups", len(saved_base_lrs), len(current_f)))
        else:
            for i, (old, new) in enumerate(zip(saved_base_lrs, current_f)):
                if not math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0):
                    changes.append(_change(f"param_groups[{i}].base_lr", repr(old), repr(new)))
    return changes


_FLAT_SCHEDULE_KEYS = ("warmup_start", "warmup_type", "hold_after_horizon")
#: Frame arguments whose string form is read as a literal (sd-scripts already literal-evaluates
#: its items; this serves callers that pass raw "key=value" text). Strings meant as strings
#: (schedule names, step_rules, "2ep" durations) are never re-read.
_NUMERIC_FRAME_KEYS = tuple(k for k in ADAPTER_FRAME_KEYS if k not in ("schedule", "spec", "warmup_type"))


def _literal(value: Any) -> Any:
    """Text such as "3" or "[100, 200]" read as the config reads a "key=value" item's value; other
    values, and text that is not a number, a bool or a list, stay as they are."""
    if not isinstance(value, str):
        return value
    ok, parsed = parse_literal(value)
    return parsed if ok and isinstance(parsed, (bool, int, float, list)) else value


def _read_numbers(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Read numeric-looking strings of numeric fields as literals ("3" -> 3), leave the rest."""
    from lora_sched.schedules import lookup

    try:
        spec = lookup(name, key="lr_scheduler_args.schedule")[0]
    except ConfigError:
        spec = None
    out = {}
    for key, value in args.items():
        param = spec.param(key) if spec is not None else None
        numeric = key in _NUMERIC_FRAME_KEYS or (param is not None and param.field.literal_text)
        out[key] = _literal(value) if numeric else value
    return out


def _resolve_flat(optimizer: Optimizer, kwargs: dict[str, Any]) -> ResolvedSchedule:
    """Resolve sd-scripts style flat keyword arguments into a schedule."""
    args = dict(kwargs)
    name = args.pop("schedule", None)
    spec_name = args.pop("spec", None)
    if name is None:
        name = spec_name
    if name is None:
        raise ConfigError(
            problem(
                "lr_scheduler_args.schedule",
                "the name of a catalogue schedule",
                raw("nothing"),
                'add "schedule=cosine" (or another name from `lora-sched list`) to lr_scheduler_args',
            )
        )
    args = _read_numbers(name, args) if isinstance(name, str) else args
    horizon = args.pop("horizon", None)
    run_length = args.pop("run_length", None)
    if horizon is None:
        raise ConfigError(
            problem(
                "lr_scheduler_args.horizon",
                "the number of optimizer updates the schedule is drawn over (an int >= 1)",
                raw("nothing"),
            )
        )
    base_lr = args.pop("base_lr", None)
    if base_lr is None:
        base_lr = float(optimizer.param_groups[0]["lr"])
    warmup = args.pop("warmup", 0)
    extra = {k: args.pop(k) for k in _FLAT_SCHEDULE_KEYS if k in args}
    request = ScheduleRequest(
        name=name,
        args=args,
        warmup=warmup,
        max_train_steps=run_length if run_length is not None else horizon,
        schedule_steps=horizon,
        base_lr=base_lr,
        **extra,
    )
    try:
        return resolve(request)
    except ConfigError as exc:  # the frame keys are LoraSchedLR's arguments here, not config keys
        renamed = {"max_train_steps": "lr_scheduler_args.run_length", "schedule_steps": "lr_scheduler_args.horizon"}
        renamed.update({k: f"lr_scheduler_args.{k}" for k in ("warmup_start", "warmup_type", "hold_after_horizon")})
        renamed["lr_warmup_steps"] = "lr_scheduler_args.warmup"
        renamed["lr_scheduler"] = "lr_scheduler_args.schedule"
        raise ConfigError([p.located(key=renamed.get(p.key, p.key)) for p in exc.problems]) from None
