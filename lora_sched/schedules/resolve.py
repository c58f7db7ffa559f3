"""From what the user wrote to a fully resolved schedule in integer steps.

Order: run length and horizon -> scale schedule ratio -> warmup and every
duration in steps -> parameter checks. The `ResolvedSchedule` is what previews, exports, the
bound and the torch adapter consume, and what a checkpoint records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from lora_sched.errors import ConfigError, Problem, did_you_mean, finite_number, problem, raw
from lora_sched.schedules.durations import (
    MAX_STEPS,
    TimeContext,
    parse_duration,
    resolve_duration,
)
from lora_sched.schedules.spec import ScheduleSpec, lookup, schedules_taking

WarmupType = Literal["linear", "cosine"]
WARMUP_TYPES = ("linear", "cosine")


class TrainingShape(NamedTuple):
    """Facts about the run that durations in epochs or samples need."""

    steps_per_epoch: int | None = None
    samples_per_step: int | None = None


class ScheduleRequest:
    """The schedule as the user wrote it (values unparsed), before resolution.

    arg_keys maps a param name to the config key it came from, so errors name what the user
    wrote (``lr_scheduler_num_cycles`` rather than ``lr_scheduler_args.num_cycles``).
    A plain class rather than a dataclass: `validate` must start fast, and importing dataclasses
    costs 8.9 ms of its 52 ms (lora_sched.config.keys.Key says how that was measured).
    """

    __slots__ = (
        "arg_keys",
        "args",
        "base_lr",
        "hold_after_horizon",
        "max_train_epochs",
        "max_train_steps",
        "name",
        "scale_schedule_ratio",
        "scale_warmup",
        "schedule_steps",
        "warmup",
        "warmup_start",
        "warmup_type",
    )

    def __init__(
        self,
        name: str = "constant",
        args: dict[str, Any] | None = None,
        warmup: Any = 0,
        warmup_start: float = 0.0,
        warmup_type: str = "linear",
        max_train_steps: Any = None,
        max_train_epochs: Any = None,
        schedule_steps: Any = None,
        hold_after_horizon: bool = False,
        scale_schedule_ratio: float = 1.0,
        scale_warmup: bool = False,
        base_lr: float = 1.0,
        arg_keys: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = {} if args is None else args
        self.warmup = warmup
        self.warmup_start = warmup_start
        self.warmup_type = warmup_type
        self.max_train_steps = max_train_steps
        self.max_train_epochs = max_train_epochs
        self.schedule_steps = schedule_steps
        self.hold_after_horizon = hold_after_horizon
        self.scale_schedule_ratio = scale_schedule_ratio
        self.scale_warmup = scale_warmup
        self.base_lr = base_lr
        self.arg_keys = {} if arg_keys is None else arg_keys

    def _as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: Any) -> ScheduleRequest:
        """A copy with some fields changed (dicts are copied, not shared)."""
        fields = self._as_dict()
        fields.update(args=dict(self.args), arg_keys=dict(self.arg_keys))
        fields.update(changes)
        return ScheduleRequest(**fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScheduleRequest) and self._as_dict() == other._as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._as_dict().items())
        return f"ScheduleRequest({inner})"

    def key_for(self, param: str) -> str:
        return self.arg_keys.get(param, f"lr_scheduler_args.{param}")


class CurveChange(NamedTuple):
    """One difference between the curves of two schedules: `what` (a field, or ``params.NAME``) went
    from `old` to `new` (values as `ResolvedSchedule.to_dict` records them)."""

    what: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.what}: {self.old!r} -> {self.new!r}"


class ResolvedSchedule(NamedTuple):
    """A schedule fixed in integer steps: the single source of truth for every consumer.

    name: canonical schedule name (requested_name keeps the alias the user wrote).
    params: resolved parameter values (durations in steps), JSON-serialisable.
    warmup (W), horizon (T), run_length: steps. base_lr: the optimizer's default LR
    (polynomial's lr_end and REX's absolute floor are relative to it).
    """

    name: str
    params: Mapping[str, Any]
    warmup: int
    horizon: int
    run_length: int
    warmup_start: float = 0.0
    warmup_type: str = "linear"
    hold_after_horizon: bool = False
    base_lr: float = 1.0
    requested_name: str = ""

    @property
    def spec(self) -> ScheduleSpec:
        return lookup(self.name)[0]

    def multipliers(self, steps: Any = None) -> Any:
        """m(s) as a NumPy array, for `steps` (default: every step of the run, 0..run_length-1)."""
        from lora_sched.schedules.evaluate import multipliers

        return multipliers(self, steps)

    @property
    def per_group(self) -> bool:
        """Whether param groups with different base LRs follow different multipliers (an absolute floor)."""
        param = self.spec.absolute_lr_param
        return param is not None and self.params.get(param) is not None

    def for_group(self, base_lr: float) -> ResolvedSchedule:
        """The schedule as a param group with base LR `base_lr` follows it: LR = base_lr x m_group(s).

        The same schedule unless an absolute LR parameter is set (REX's min_lr): then the group's
        multipliers are drawn with its own base LR, so every group falls to the same absolute floor."""
        if not self.per_group or base_lr == self.base_lr:
            return self
        return self._replace(base_lr=float(base_lr))

    def group_problems(self, base_lrs: Any, key_for: Any = None) -> list[Problem]:
        """What the schedule's check finds in the curve of each param group (base LRs > 0): with an
        absolute floor a group can fail where the base LR's curve does not (a 0-step cycle that
        LoRA_Easy's REX class divides by zero in, for a group whose LR is below min_lr)."""
        if not self.per_group or self.spec.check is None:
            return []
        found: list[Problem] = []
        for base in base_lrs:
            if base > 0:
                for p in self.spec.check(self.params, self.for_group(base)):
                    key = key_for(p.key) if key_for and p.key in self.spec.param_names else p.key
                    found.append(p.located(key=key)._replace(hint=f"{p.hint} (the param group at LR {base:g})"))
        return list(dict.fromkeys(found))

    def group_lrs(self, base_lr: float, steps: Any = None) -> Any:
        """LR of a param group whose base LR is `base_lr`, for `steps` (default: every step of the run)."""
        return self.for_group(base_lr).multipliers(steps) * base_lr

    def multiplier(self, step: int) -> float:
        """m(s) for one step, as a Python float (what a torch scheduler needs per step)."""
        return float(self.multipliers([step])[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly record (what checkpoints and `ss_*` metadata store)."""
        return {
            "name": self.name,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()},
            "warmup": self.warmup,
            "horizon": self.horizon,
            "run_length": self.run_length,
            "warmup_start": self.warmup_start,
            "warmup_type": self.warmup_type,
            "hold_after_horizon": self.hold_after_horizon,
            "base_lr": self.base_lr,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedSchedule:
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(data["params"]).items()}
        return cls(
            name=data["name"],
            params=params,
            warmup=int(data["warmup"]),
            horizon=int(data["horizon"]),
            run_length=int(data["run_length"]),
            warmup_start=float(data.get("warmup_start", 0.0)),
            warmup_type=str(data.get("warmup_type", "linear")),
            hold_after_horizon=bool(data.get("hold_after_horizon", False)),
            base_lr=float(data.get("base_lr", 1.0)),
            requested_name=str(data.get("name")),
        )

    def curve_changes(self, other: ResolvedSchedule) -> list[CurveChange]:
        """What differs between the curves of two schedules (`str()` of each reads 'what: old -> new').

        The run length is not part of the curve: a longer run over the same horizon is the same
        schedule (only hold_after_horizon decides what happens past it).
        """
        mine, theirs = self.to_dict(), other.to_dict()
        changes = []
        for key in ("name", "warmup", "horizon", "warmup_start", "warmup_type", "hold_after_horizon", "base_lr"):
            if mine[key] != theirs[key]:
                changes.append(CurveChange(key, mine[key], theirs[key]))
        for key in sorted(set(mine["params"]) | set(theirs["params"])):
            old, new = mine["params"].get(key), theirs["params"].get(key)
            if old != new:
                changes.append(CurveChange(f"params.{key}", old, new))
        return changes


def _positive_int(value: Any, key: str, problems: list[Problem]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        hint = f"write {int(value)}" if isinstance(value, float) and math.isfinite(value) and value.is_integer() else ""
        problems.append(problem(key, "an int >= 1", value, hint))
        return None
    if value < 1 or value > MAX_STEPS:
        problems.append(problem(key, f"an int in [1, {MAX_STEPS:,}]", value))
        return None
    return value


def _ratio(value: Any, key: str, problems: list[Problem], low: float, high: float, low_open: bool) -> float:
    ok = finite_number(value) is not None
    if ok and (value > high or value < low or (low_open and value == low)):
        ok = False
    if not ok:
        bracket = "(" if low_open else "["
        problems.append(problem(key, f"a number in {bracket}{low:g}, {high:g}]", value))
        return low if not low_open else 1.0
    return float(value)


def resolve(request: ScheduleRequest, shape: TrainingShape | None = None) -> ResolvedSchedule:
    """Resolve a request into integer steps; every problem found is raised in one ConfigError."""
    shape = shape or TrainingShape()
    problems: list[Problem] = []
    spec, alias_defaults = lookup(request.name)
    ssr, warmup_start, base_lr = _check_options(request, problems)
    run_length, horizon = _lengths(request, shape, ssr, spec, alias_defaults, problems)
    ctx = TimeContext(
        horizon=horizon,
        ssr=ssr,
        scale_warmup=bool(request.scale_warmup),
        steps_per_epoch=shape.steps_per_epoch,
        samples_per_step=shape.samples_per_step,
    )
    warmup = _warmup(request, spec, ctx, problems)
    params = _resolve_params(spec, alias_defaults, request, ctx, warmup, problems)
    resolved = ResolvedSchedule(
        name=spec.name,
        params=params,
        warmup=warmup,
        horizon=horizon,
        run_length=run_length,
        warmup_start=warmup_start,
        warmup_type=request.warmup_type,
        hold_after_horizon=request.hold_after_horizon,
        base_lr=float(base_lr),
        requested_name=request.name,
    )
    if not problems and spec.check is not None:  # the spec's own cross-parameter rules
        for p in spec.check(params, resolved):
            problems.append(p.located(key=request.key_for(p.key)) if p.key in spec.param_names else p)
    if problems:
        raise ConfigError(problems)
    return resolved


def _check_options(request: ScheduleRequest, problems: list[Problem]) -> tuple[float, float, float]:
    """(scale_schedule_ratio, warmup_start, base LR) checked; the warmup type and flags checked too."""
    ssr = _ratio(request.scale_schedule_ratio, "scale_schedule_ratio", problems, 0.0, 1000.0, low_open=True)
    warmup_start = _ratio(request.warmup_start, "warmup_start", problems, 0.0, 1.0, low_open=False)
    if request.warmup_type not in WARMUP_TYPES:
        problems.append(
            problem(
                "warmup_type",
                'one of "linear", "cosine"',
                request.warmup_type,
                did_you_mean(str(request.warmup_type), WARMUP_TYPES),
            )
        )
    for flag in ("hold_after_horizon", "scale_warmup"):
        if not isinstance(getattr(request, flag), bool):
            problems.append(problem(flag, "true or false", getattr(request, flag)))
    base_lr = request.base_lr
    if finite_number(base_lr) is None or base_lr <= 0:
        problems.append(problem("learning_rate", "a number > 0", base_lr))
        base_lr = 1.0
    return ssr, warmup_start, base_lr


def _lengths(
    request: ScheduleRequest,
    shape: TrainingShape,
    ssr: float,
    spec: ScheduleSpec,
    alias_defaults: dict,
    problems: list[Problem],
) -> tuple[int, int]:
    """(run length, horizon) in steps, scaled by scale_schedule_ratio; raises when either is unknown
    or out of range (with the parameter problems found without them)."""
    run_length = _run_length(request, shape, problems)
    horizon = run_length
    if request.schedule_steps is not None:
        horizon = _horizon(request.schedule_steps, shape, problems)
    if run_length is None or horizon is None:
        _check_without_horizon(spec, alias_defaults, request, problems)
        raise ConfigError(problems or [problem("max_train_steps", "an int >= 1", None)])
    run_length = math.floor(run_length * ssr)
    horizon = math.floor(horizon * ssr)
    if horizon < 1 or run_length < 1 or max(horizon, run_length) > MAX_STEPS:
        problems.append(
            problem(
                "scale_schedule_ratio",
                f"a ratio that leaves between 1 and {MAX_STEPS:,} steps",
                request.scale_schedule_ratio,
                f"the run would have {run_length:,} steps and the horizon {horizon:,}",
            )
        )
        _check_without_horizon(spec, alias_defaults, request, problems)
        raise ConfigError(problems)
    if run_length > horizon and not request.hold_after_horizon:
        problems.append(
            problem(
                "schedule_steps",
                f"a horizon of at least the run length ({run_length} steps)",
                horizon,
                "set hold_after_horizon = true to hold the last LR past the horizon, or raise schedule_steps",
            )
        )
    return run_length, horizon


def _warmup(request: ScheduleRequest, spec: ScheduleSpec, ctx: TimeContext, problems: list[Problem]) -> int:
    """The warmup in steps (0 where it cannot be read), checked against the spec and the horizon."""
    warmup = 0
    try:
        warmup = resolve_duration(
            parse_duration(request.warmup, "lr_warmup_steps"), ctx, "lr_warmup_steps", is_warmup=True
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
    if warmup > 0 and not spec.accepts_warmup:
        problems.append(
            problem("lr_warmup_steps", f"0 ({spec.name} takes no warmup)", request.warmup, spec.warmup_note)
        )
    elif warmup >= ctx.horizon and warmup > 0:
        problems.append(
            problem(
                "lr_warmup_steps",
                f"a warmup shorter than the horizon ({ctx.horizon} steps)",
                request.warmup,
                f"it resolves to {warmup} steps",
            )
        )
    return warmup


def check_form(request: ScheduleRequest) -> list[Problem]:
    """Problems visible without resolving: the warmup's form and, when the schedule name is known,
    every argument's form. For callers that cannot resolve because another input is broken (a
    misspelt max_train_steps, a wrong schedule name) but must still report every other mistake."""
    problems: list[Problem] = []
    try:
        spec, alias_defaults = lookup(request.name)
    except ConfigError:
        try:
            parse_duration(request.warmup, "lr_warmup_steps")
        except ConfigError as exc:
            problems.extend(exc.problems)
        return problems
    _check_without_horizon(spec, alias_defaults, request, problems)
    return problems


def _check_without_horizon(
    spec: ScheduleSpec, alias_defaults: Mapping[str, Any], request: ScheduleRequest, problems: list[Problem]
) -> None:
    """With no usable horizon, durations cannot become steps: still check the warmup and every
    argument's form, so one pass reports every problem of the request."""
    try:
        parse_duration(request.warmup, "lr_warmup_steps")
    except ConfigError as exc:
        problems.extend(exc.problems)
    _resolve_params(spec, alias_defaults, request, None, 0, problems)


def _run_length(request: ScheduleRequest, shape: TrainingShape, problems: list[Problem]) -> int | None:
    steps = _positive_int(request.max_train_steps, "max_train_steps", problems)
    epochs = _positive_int(request.max_train_epochs, "max_train_epochs", problems)
    if epochs is not None:
        if shape.steps_per_epoch is None:
            problems.append(
                problem(
                    "max_train_epochs",
                    "max_train_steps, or epochs with a known dataset size",
                    request.max_train_epochs,
                    "set train_data_dir, or give max_train_steps",
                )
            )
            return None
        return epochs * shape.steps_per_epoch  # kohya: epochs override max_train_steps
    if steps is None and request.max_train_steps is None:
        problems.append(problem("max_train_steps", "an int >= 1 (or max_train_epochs)", None))
    return steps


def _horizon(value: Any, shape: TrainingShape, problems: list[Problem]) -> int | None:
    try:
        duration = parse_duration(value, "schedule_steps", allow_fraction=False)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    ctx = TimeContext(horizon=0, steps_per_epoch=shape.steps_per_epoch, samples_per_step=shape.samples_per_step)
    try:
        steps = resolve_duration(duration, ctx, "schedule_steps")
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    if steps < 1:
        problems.append(problem("schedule_steps", "a horizon of at least 1 step", value))
        return None
    return steps


def _resolve_params(
    spec: ScheduleSpec,
    alias_defaults: Mapping[str, Any],
    request: ScheduleRequest,
    ctx: TimeContext | None,
    warmup: int,
    problems: list[Problem],
) -> dict[str, Any]:
    """Parse every argument (and resolve durations to steps unless ctx is None); collect problems."""
    given: dict[str, Any] = {}
    for raw_name, value in request.args.items():
        param = spec.param(raw_name)
        if param is None:
            problems.append(_unknown_arg(spec, raw_name, value, request.key_for(raw_name)))
            continue
        if param.name in given:
            problems.append(
                problem(
                    request.key_for(raw_name),
                    f"`{param.name}` given once",
                    value,
                    f"`{given[param.name][0]}` and `{raw_name}` both set `{param.name}`: keep one",
                )
            )
            continue
        given[param.name] = (raw_name, value)

    params: dict[str, Any] = {}
    for param in spec.params:
        if param.name in given:
            raw_name, value = given[param.name]
            key = request.key_for(raw_name)
        elif param.name in alias_defaults:
            value, key = alias_defaults[param.name], request.key_for(param.name)
        elif param.required:
            problems.append(
                problem(
                    request.key_for(param.name),
                    f"{spec.name} needs `{param.name}`: {param.expected()}",
                    raw("nothing"),
                    param.doc,
                )
            )
            continue
        else:
            value, key = param.default, request.key_for(param.name)
        if value is None:
            params[param.name] = None
            continue
        try:
            parsed = param.parse(value, key)
            # without a horizon to resolve durations against, only their form is checked
            params[param.name] = parsed if ctx is None else param.field.in_steps(parsed, ctx, key)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return params


def _unknown_arg(spec: ScheduleSpec, name: str, value: Any, key: str) -> Problem:
    hint = did_you_mean(name, [n for p in spec.params for n in (p.name, *p.aliases)])
    if not hint:
        others = schedules_taking(name)
        if others:
            hint = f"did you mean {' or '.join(others[:3])}? ({spec.name} takes no `{name}`)"
        elif spec.params:
            hint = f"{spec.name} takes: " + ", ".join(p.name for p in spec.params)
        else:
            hint = f"{spec.name} takes no arguments"
    expected = f"an argument of {spec.name}" if spec.params else f"no arguments ({spec.name} takes none)"
    return problem(key, expected, raw(f"`{name}` = {value!r}"), hint)
