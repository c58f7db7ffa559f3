"""`WarmupThen`: a torch scheduler class with lora_sched's warmup composed in front."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lora_sched.errors import ConfigError, problem, raw
from lora_sched.torch.custom.checks import check_scheduler_type
from lora_sched.torch.custom.policy import resolve_class
from lora_sched.torch.scheduler import STATE_FORMAT, ScheduleMismatchError, _change


class WarmupThen(LRScheduler):
    """A torch scheduler class with a warmup composed in front.

    m(s) for s < W: base x (ws + (target - ws) ramp(s / W)), target = the class's LR at its
    step 0 / base, ramp linear s / W or cosine 0.5 (1 - cos(pi s / W)); for s >= W the class
    itself at its step s - W. ``num_processes`` = calls of step() per optimizer update (N under
    sd-scripts with N processes; 1 in lora-sched's own training loop).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler_type: str = "CosineAnnealingLR",
        warmup: int = 0,
        warmup_start: float = 0.0,
        warmup_type: str = "linear",
        num_processes: int = 1,
        plateau_every: int = 10,
        trust_scheduler_code: bool = False,
        **scheduler_args: Any,
    ) -> None:
        _refuse_bad_arguments(
            scheduler_type,
            scheduler_args,
            trust_scheduler_code,
            warmup=warmup,
            warmup_start=warmup_start,
            warmup_type=warmup_type,
            num_processes=num_processes,
            plateau_every=plateau_every,
        )
        cls, _ = resolve_class(scheduler_type, trust_scheduler_code)
        self.scheduler_type = scheduler_type
        self.scheduler_args = dict(scheduler_args)
        self.warmup, self.warmup_start, self.warmup_type = warmup, float(warmup_start), warmup_type
        self.num_processes, self.plateau_every = num_processes, plateau_every
        self._calls = 0
        self._losses: list[float] = []
        bases = [float(g["lr"]) for g in optimizer.param_groups]  # before the class changes them
        # the class first, on the optimizer as the user built it: it records each group's initial_lr
        # itself (CyclicLR sets its base_lr there first), exactly as when used alone
        self.inner = cls(optimizer, **scheduler_args)
        self.is_plateau = isinstance(self.inner, ReduceLROnPlateau)
        self.targets = [float(g["lr"]) for g in optimizer.param_groups]  # the class's LR at its step 0
        super().__init__(optimizer)  # its first step() only starts the counters (see step)
        self.base_lrs = bases  # not the groups' initial_lr: the class may have set its own there
        self._apply()

    def _ramp(self, s: int) -> float:
        x = s / self.warmup
        return 0.5 * (1.0 - math.cos(math.pi * x)) if self.warmup_type == "cosine" else x

    def _apply(self) -> None:
        s = self.last_epoch
        if s < self.warmup:
            r = self._ramp(s)
            for g, base, target in zip(self.optimizer.param_groups, self.base_lrs, self.targets):
                start = base * self.warmup_start
                g["lr"] = start + (target - start) * r
        elif s == self.warmup and self.warmup > 0:
            for g, target in zip(self.optimizer.param_groups, self.targets):
                g["lr"] = target
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self, epoch: Any = None) -> None:  # type: ignore[override]
        """One call; every `num_processes` calls make one optimizer update."""
        if self.last_epoch < 0:  # LRScheduler.__init__'s own first call: update 0 begins
            self.last_epoch, self._step_count = 0, self._step_count + 1
            return
        self.step_update(None)

    def step_update(self, loss: float | None = None) -> None:
        """Advance one optimizer update (call once per update; `loss` feeds ReduceLROnPlateau)."""
        self._calls += 1
        if self._calls % self.num_processes:
            return
        self._step_count += 1
        self.last_epoch += 1
        if self.last_epoch <= self.warmup:
            self._apply()
            return
        if self.is_plateau:
            if loss is not None:
                self._losses.append(float(loss))
            if len(self._losses) >= self.plateau_every:
                self.inner.step(sum(self._losses) / len(self._losses))
                self._losses.clear()
        else:
            self.inner.step()
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _config(self) -> dict[str, Any]:
        return {
            "scheduler_type": self.scheduler_type,
            "scheduler_args": dict(self.scheduler_args),
            "warmup": self.warmup,
            "warmup_start": self.warmup_start,
            "warmup_type": self.warmup_type,
            "num_processes": self.num_processes,
            "plateau_every": self.plateau_every,
            "base_lrs": [float(b) for b in self.base_lrs],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT.replace("LoraSchedLR", "WarmupThen"),
            "config": self._config(),
            "update": self.last_epoch,
            "calls": self._calls,
            "_step_count": self._step_count,
            "losses": list(self._losses),
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any], allow_schedule_change: bool = False) -> None:
        """Restore; a checkpoint from a different class, arguments or warmup is refused unless allowed."""
        if "config" not in state_dict or "inner" not in state_dict:
            raise ConfigError(
                problem("scheduler state", "a state saved by lora_sched's WarmupThen", raw(str(sorted(state_dict))))
            )
        saved, mine = state_dict["config"], self._config()
        changes = [_change(k, saved.get(k), mine[k]) for k in mine if saved.get(k) != mine[k]]
        if changes and not allow_schedule_change:
            raise ScheduleMismatchError(changes)
        self.last_epoch = int(state_dict["update"])
        self._calls = self.last_epoch * self.num_processes
        self._step_count = int(state_dict["_step_count"])
        self._losses = list(state_dict.get("losses", []))
        if not changes:
            self.inner.load_state_dict(state_dict["inner"])
        elif not self.is_plateau:
            # An allowed change: the saved inner state holds the OLD arguments (T_max, milestones,
            # derived phases...), so replay the NEW class from its step 0 to the kept step instead
            # (this scheduler is freshly built, as on every resume). A plateau scheduler starts afresh.
            for g, target in zip(self.optimizer.param_groups, self.targets):
                g["lr"] = target
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
                for _ in range(max(0, self.last_epoch - self.warmup)):
                    self.inner.step()
        if self.last_epoch <= self.warmup:
            self._apply()
        else:
            for g, lr in zip(self.optimizer.param_groups, self.inner.get_last_lr()):
                g["lr"] = float(lr)
            self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def _refuse_bad_arguments(scheduler_type: str, scheduler_args: dict[str, Any], trust: bool, **own: Any) -> None:
    """ConfigError naming every problem of the class, its arguments and WarmupThen's own arguments."""
    problems = check_scheduler_type(scheduler_type, scheduler_args, trust=trust)
    valid = {
        "warmup": lambda v: isinstance(v, int) and v >= 0,
        "warmup_start": lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
        "warmup_type": lambda v: v in ("linear", "cosine"),
        "num_processes": lambda v: isinstance(v, int) and v >= 1,
        "plateau_every": lambda v: isinstance(v, int) and v >= 1,
    }
    for name, value in own.items():
        if isinstance(value, bool) or not valid[name](value):
            problems.append(problem(f"lr_scheduler_args.{name}", "a valid value", value))
    if problems:
        raise ConfigError(problems)
