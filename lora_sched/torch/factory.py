"""The one place a torch scheduler is built from a config or a resolved schedule.

Training and the previews of custom classes call `build_scheduler`; it picks the class: a custom
torch class named by ``lr_scheduler_type`` (`WarmupThen` around it, or lora_sched's own class as it
is), `AdafactorLR` for the ``adafactor`` schedule, `LoraSchedLR` for every other catalogue schedule.
How a custom class runs (`custom_scheduler_call`) is also what the kohya export writes, so
sd-scripts builds the scheduler training builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lora_sched.config.class_policy import OUR_MODULE, allowed_by_default, split_path
from lora_sched.errors import ConfigError, problem
from lora_sched.schedules import ResolvedSchedule
from lora_sched.torch.adafactor import AdafactorLR
from lora_sched.torch.custom.policy import resolve_class
from lora_sched.torch.custom.warmup import WarmupThen
from lora_sched.torch.scheduler import LoraSchedLR

if TYPE_CHECKING:
    from lora_sched.config import LoraConfig

#: The path a kohya export names WarmupThen by.
WARMUP_THEN = f"{OUR_MODULE}.WarmupThen"


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
    if resolved.spec.optimizer_sets_lr:
        return AdafactorLR(optimizer, resolved=resolved, **kwargs)
    return LoraSchedLR(optimizer, resolved=resolved, **kwargs)


class SchedulerCall(NamedTuple):
    """A custom class as it runs: the class, the path that names it, its keyword arguments (besides
    the optimizer). Training builds ``cls(optimizer, **args)``; a kohya export writes the path and
    the arguments, which sd-scripts calls the same way."""

    type_path: str
    cls: type
    args: dict[str, Any]


def custom_scheduler_call(
    scheduler_type: str,
    scheduler_args: Mapping[str, Any] | None,
    warmup: int = 0,
    warmup_start: float = 0.0,
    warmup_type: str = "linear",
    *,
    num_processes: int = 1,
    plateau_every: int | None = None,
    trust: bool = False,
    bare_when_plain: bool = False,
) -> SchedulerCall:
    """How the class `scheduler_type` runs with lora_sched's warmup in front.

    lora_sched's own classes (LoraSchedLR, WarmupThen: what a kohya export names) run as they are:
    their warmup lives in their args, and only ``num_processes`` (the caller's step() calls per
    optimizer update: N under sd-scripts with N processes, 1 in lora-sched's loop) is set. Any other
    class runs inside `WarmupThen`; with ``bare_when_plain`` (an export) a class without warmup
    stepped once per update is named as it is, so sd-scripts runs it without lora_sched.
    """
    cls, problems = resolve_class(scheduler_type, trust)
    if cls is None:
        raise ConfigError(problems)
    args = dict(scheduler_args or {})
    if _runs_as_it_is(cls):
        args.pop("num_processes", None)
        if num_processes != 1:
            args["num_processes"] = num_processes
        return SchedulerCall(scheduler_type, cls, args)
    if bare_when_plain and warmup == 0 and num_processes == 1:
        return SchedulerCall(scheduler_type, cls, args)
    wrapped: dict[str, Any] = {"scheduler_type": scheduler_type, "warmup": warmup}
    if warmup_start != 0.0:
        wrapped["warmup_start"] = warmup_start
    if warmup_type != "linear":
        wrapped["warmup_type"] = warmup_type
    if num_processes != 1:
        wrapped["num_processes"] = num_processes
    if plateau_every is not None:
        wrapped["plateau_every"] = plateau_every
    if not allowed_by_default(split_path(scheduler_type)[0]):
        wrapped["trust_scheduler_code"] = True  # resolving the class above needed the user's trust
    return SchedulerCall(WARMUP_THEN, WarmupThen, {**wrapped, **args})


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
    """The scheduler our own loop steps once per update (see `custom_scheduler_call`)."""
    cls, problems = resolve_class(scheduler_type, trust)
    if cls is None:
        raise ConfigError(problems)
    if warmup and _runs_as_it_is(cls):
        raise ConfigError(
            problem(
                "lr_warmup_steps",
                f"0 ({cls.__name__} takes its warmup in lr_scheduler_args)",
                warmup,
                "move the warmup into lr_scheduler_args as warmup=N",
            )
        )
    call = custom_scheduler_call(
        scheduler_type, scheduler_args, warmup, warmup_start, warmup_type, plateau_every=plateau_every, trust=trust
    )
    return call.cls(optimizer, **call.args)


def _runs_as_it_is(cls: type) -> bool:
    """lora_sched's own classes: their warmup is in their arguments already."""
    return issubclass(cls, (LoraSchedLR, WarmupThen))


def build_custom_scheduler(
    cfg: Any, optimizer: Optimizer, trust: bool = False, *, resolved: ResolvedSchedule | None = None, **kwargs: Any
) -> Any:
    """The scheduler for a config whose ``lr_scheduler_type`` is set (the warmup from `resolved`,
    by default the config's own resolution)."""
    resolved = resolved or cfg.resolve()
    plateau_every = kwargs.pop("plateau_every", None)
    if plateau_every is None:
        plateau_every = cfg.get("plateau_every") or 10
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    return build_scheduler_class(
        cfg.scheduler_type,
        cfg.scheduler_type_args,
        optimizer,
        resolved.warmup,
        resolved.warmup_start,
        resolved.warmup_type,
        plateau_every,
        trust,
    )
