"""`AdafactorLR`: the adafactor schedule as a torch scheduler (for logging and the LR log).

Adafactor(relative_step=True) computes its own step size and ignores ``group["lr"]`` (transformers
even requires ``lr=None`` at construction), so this scheduler only writes the relative step size
rho(s) into the groups, where the training log and ``get_last_lr()`` read it; it never changes
what the optimizer does. Groups whose LR is None take the schedule's base LR (learning_rate).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from lora_sched.schedules import ResolvedSchedule
from lora_sched.torch.scheduler import LoraSchedLR


class AdafactorLR(LoraSchedLR):
    """LoraSchedLR for the `adafactor` schedule; tolerates param groups created with lr=None."""

    def __init__(self, optimizer: Optimizer, resolved: ResolvedSchedule | None = None, **kwargs: Any) -> None:
        if resolved is not None and resolved.name != "adafactor":
            raise ValueError(f"AdafactorLR drives the adafactor schedule, not {resolved.name!r}")
        base = resolved.base_lr if resolved is not None else float(kwargs.get("base_lr", 1.0))
        for group in optimizer.param_groups:
            if group.get("lr") is None:
                group["lr"] = base
            if group.get("initial_lr", 0.0) is None:
                group["initial_lr"] = base
        super().__init__(optimizer, resolved, **kwargs)
