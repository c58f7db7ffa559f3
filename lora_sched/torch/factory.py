"""The one place a torch scheduler is built from a config or a resolved schedule.

Training and the previews of custom classes call `build_scheduler`; it picks the class: a custom
torch class named by ``lr_scheduler_type`` (`WarmupThen` around it, or lora_sched's own class as it
is), `AdafactorLR` for the ``adafactor`` schedule, `LoraSchedLR` for every other catalogue schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lora_sched.errors import ConfigError, problem
from lora_sched.schedules import ResolvedSchedule
from lora_sched.torch.adafactor import AdafactorLR
from lora_sched.torch.custom.policy import resolve_class
from lora_sched.torch.custom.warmup import WarmupThen
from lora_sched.torch.scheduler import LoraSchedLR

if TYPE_CHECKING:
    from lora_sched.config import LoraConfig


def build_scheduler(
    config_or_resolved: LoraConfig | ResolvedSchedule,
    optimizer: Optimizer,
    *,
    resolved: ResolvedSchedule | None = None,
    trust_scheduler_code: bool = False,
    **kwargs: Any,
) -> LRScheduler | Any:
    """The torch scheduler for a config or a resolved schedule, stepped once per optimizer update.

    A `LoraConfig` with ``lr_scheduler_type`` set builds that torch class (warmup composed in
    front, see `WarmupThen`); ``adafactor`` builds `AdafactorLR`; every other schedule builds
    `LoraSchedLR`. ``resolved`` replaces the config's own resolution (training resolves with the
    real steps per epoch). Extra keyword arguments go to the scheduler class.
    """
    if isinstance(config_or_resolved, ResolvedSchedule):
        return _catalogue_scheduler(config_or_resolved, optimizer, kwargs)
    cfg = config_or_resolved
    if cfg.scheduler_type:
        return build_custom_scheduler(cfg, optimizer, trust_scheduler_code, resolved=resolved, **kwargs)
    return _catalogue_scheduler(resolved or cfg.resolve(), optimizer, kwargs)


def _catalogue_scheduler(resolved: ResolvedSchedule, optimizer: Optimizer, kwargs: dict[str, Any]) -> LRScheduler:
    if resolved.name == "adafactor":
        return AdafactorLR(optimizer, resolved=resolved, **kwargs)
    return LoraSchedLR(optimizer, resolved=resolved, **kwargs)


def build_scheduler_class(
    scheduler_type: str,
    scheduler_args: Mapping[str, Any] | None,
    optimizer: Optimizer,
    warmup: int = 0,
    warmup_start: float = 0.0,
    warmup_type: str = "linear",
    plateau_every: int = 10,
    trust: bool = False,
) -> Any:
    """The scheduler our own loop steps once per update: `WarmupThen` around a torch class.

    lora_sched's own classes (LoraSchedLR, WarmupThen: what a kohya export names) are built as they
    are, with ``num_processes = 1`` (that argument counts the caller's step() calls per update, a
    property of sd-scripts + accelerate, not of the schedule); their warmup lives in their args.
    """
    args = dict(scheduler_args or {})
    cls, problems = resolve_class(scheduler_type, trust)
    if cls is None:
        raise ConfigError(problems)
    if issubclass(cls, (LoraSchedLR, WarmupThen)):
        if warmup:
            raise ConfigError(
                problem(
                    "lr_warmup_steps",
                    f"0 ({cls.__name__} takes its warmup in lr_scheduler_args)",
                    warmup,
                    "move the warmup into lr_scheduler_args as warmup=N",
                )
            )
        return cls(optimizer, **{**args, "num_processes": 1})
    return WarmupThen(
        optimizer,
        scheduler_type=scheduler_type,
        warmup=warmup,
        warmup_start=warmup_start,
        warmup_type=warmup_type,
        plateau_every=plateau_every,
        trust_scheduler_code=trust,
        **args,
    )


def build_custom_scheduler(
    cfg: Any, optimizer: Optimizer, trust: bool = False, *, resolved: ResolvedSchedule | None = None, **kwargs: Any
) -> Any:
    """The scheduler for a config whose ``lr_scheduler_type`` is set (the warmup from `resolved`,
    by default the config's own resolution)."""
    rs = resolved or cfg.resolve()
    plateau_every = kwargs.pop("plateau_every", None)
    if plateau_every is None:
        plateau_every = cfg.get("plateau_every") or 10
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    return build_scheduler_class(
        cfg.scheduler_type,
        cfg.scheduler_type_args,
        optimizer,
        rs.warmup,
        rs.warmup_start,
        rs.warmup_type,
        plateau_every,
        trust,
    )

