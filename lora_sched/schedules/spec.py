"""Declarative schedule specs and the one registry every layer derives from.

A `ScheduleSpec` says everything about a schedule: its name and aliases, its parameters (type,
default, bounds, unit, one-line doc), its closed-form curve (whose docstring is the formula), its
reference implementation and its gotchas. Validation, `list`/`describe`, the JSON Schema, the
notebook form and the torch adapter all read these specs; adding a schedule is one spec.

Nothing here imports NumPy: validating a config must stay as cheap as a bare Python start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from lora_sched.errors import ConfigError, Problem, did_you_mean, finite_number, problem, range_text, too_many
from lora_sched.schedules.durations import DURATION_EXPECTED, MAX_LIST_ITEMS, Duration, parse_duration

ParamKind = Literal["float", "int", "bool", "choice", "str", "duration", "durations"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks a parameter that has no default.
REQUIRED: Any = _Required()


class Param(NamedTuple):
    """One schedule parameter.

    kind: value type; ``duration`` accepts every duration form and resolves to integer steps.
    low / high: bounds (inclusive unless low_open / high_open).
    kohya_key: the global sd-scripts key that feeds this parameter (e.g. lr_scheduler_num_cycles).
    is_warmup: a duration that counts as warmup for scale_schedule_ratio / scale_warmup.
    check: extra validation of the parsed value; returns an error text or None.
    default_doc: how a context-dependent default (``default=None``) is chosen, for docs.
    """

    name: str
    kind: ParamKind
    doc: str
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    kohya_key: str | None = None
    is_warmup: bool = False
    check: Callable[[Any], str | None] | None = None
    default_doc: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def unit(self) -> str:
        """Short unit hint shown next to the field in forms and docs."""
        if self.kind in ("duration", "durations"):
            return "steps, or a fraction like 0.05, or a time string like 2ep"
        if self.kind == "choice":
            return " / ".join(self.choices)
        return ""

    def range_text(self) -> str:
        """Human text of the allowed range, e.g. 'in (0, 1]'."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        return range_text(self.low, self.high, self.low_open, self.high_open)

    def expected(self) -> str:
        kind_text = {
            "float": "a number",
            "int": "an int",
            "bool": "true or false",
            "choice": "a string",
            "str": "a string",
            "duration": DURATION_EXPECTED,
            "durations": "a list of durations",
        }[self.kind]
        rng = self.range_text()
        return f"{kind_text} {rng}".strip()

    def parse(self, value: Any, key: str) -> Any:
        """Check a user value against this param; return the parsed value or raise ConfigError."""
        kind = self.kind
        if kind == "duration":
            return parse_duration(value, key)
        if kind == "durations":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(problem(key, 'a list of durations, e.g. [100, 200] or ["0.3dur", "0.6dur"]', value))
            if len(value) > MAX_LIST_ITEMS:
                raise ConfigError(problem(key, f"a list of at most {MAX_LIST_ITEMS:,} durations", too_many(value)))
            return tuple(parse_duration(v, f"{key}[{i}]") for i, v in enumerate(value))
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(problem(key, "true or false", value))
            return value
        if kind in ("choice", "str"):
            if not isinstance(value, str):
                raise ConfigError(problem(key, self.expected(), value))
            if kind == "choice" and value not in self.choices:
                raise ConfigError(problem(key, self.expected(), value, did_you_mean(value, self.choices)))
            self._run_check(value, key)
            return value
        # numbers
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str):
                try:
                    float(value)
                    hint = f"remove the quotes: {value}"
                except ValueError:
                    pass
            raise ConfigError(problem(key, self.expected(), value, hint))
        if kind == "int" and isinstance(value, float):
            hint = f"write {int(value)}" if math.isfinite(value) and value.is_integer() else ""
            raise ConfigError(problem(key, self.expected(), value, hint))
        if finite_number(value) is None:  # NaN, inf, or an int beyond any float
            raise ConfigError(problem(key, self.expected(), value, "NaN, infinity and huge numbers are not allowed"))
        if not self._in_range(value):
            raise ConfigError(problem(key, self.expected(), value))
        self._run_check(value, key)
        return float(value) if kind == "float" else value

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    def _run_check(self, value: Any, key: str) -> None:
        if self.check is not None:
            message = self.check(value)
            if message:
                raise ConfigError(problem(key, self.expected(), value, message))

    def default_text(self) -> str:
        if self.required:
            return "required"
        if self.default is None:
            return self.default_doc or "auto"
        return format_value(self.default)


def format_value(value: Any) -> str:
    """A value as a user would write it in TOML."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Duration):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: A curve maps float step indices (already clipped to [0, T]) and the resolved schedule to m(s).
Curve = Callable[[Any, Any], Any]
#: A cross-parameter check on resolved values; returns problems (keyed by param name).
Check = Callable[[Mapping[str, Any], Any], list[Problem]]
#: How stock sd-scripts draws a schedule: (resolved schedule, number of processes) -> the kohya keys
#: of a built-in lr_scheduler giving the identical curve, or None where none does.
KohyaExport = Callable[[Any, int], "dict[str, Any] | None"]


class ScheduleSpec(NamedTuple):
    """Everything about one schedule. The curve's docstring is its formula."""

    name: str
    summary: str
    params: tuple[Param, ...]
    curve: Curve
    reference: str
    aliases: Mapping[str, Mapping[str, Any]] = MappingProxyType({})
    gotchas: tuple[str, ...] = ()
    accepts_warmup: bool = True
    warmup_note: str = ""
    check: Check | None = None
    #: The export to a built-in sd-scripts lr_scheduler (see catalogue/_kohya.py); None: the kohya
    #: export always runs this schedule through lora_sched's LoraSchedLR.
    to_kohya: KohyaExport | None = None
    family: str = "decay"
    #: A parameter holding an absolute LR (REX's ``min_lr`` floor). When it is set, each param group's
    #: curve is drawn from that group's own base LR (`ResolvedSchedule.for_group`), not one shared m(s).
    absolute_lr_param: str | None = None

    @property
    def formula(self) -> str:
        import inspect  # only for describe / docs: inspect costs milliseconds at start-up

        return inspect.getdoc(self.curve) or ""

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name or name in p.aliases:
                return p
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


#: Keyword arguments of the torch adapter `LoraSchedLR` that frame a schedule rather than shape it:
#: its name, duration, warmup and base LR. In flat form (the ``lr_scheduler_args`` sd-scripts passes
#: through), every other keyword is read as a schedule parameter.
ADAPTER_FRAME_KEYS: tuple[str, ...] = (
    "schedule",
    "spec",
    "horizon",
    "run_length",
    "warmup",
    "warmup_start",
    "warmup_type",
    "hold_after_horizon",
    "base_lr",
)
#: Every keyword `LoraSchedLR` takes for itself. A schedule parameter (or alias) with one of these
#: names would be swallowed by the adapter and silently change the exported curve, so `register`
#: refuses it. Kept here, not in the torch layer, so the schedules layer never imports torch.
ADAPTER_KEYWORDS: frozenset[str] = frozenset(
    (*ADAPTER_FRAME_KEYS, "optimizer", "resolved", "num_processes", "last_epoch")
)

_REGISTRY: dict[str, ScheduleSpec] = {}
_ALIASES: dict[str, str] = {}


def _check_param_names(spec: ScheduleSpec) -> None:
    for param in spec.params:
        for name in (param.name, *param.aliases):
            if name in ADAPTER_KEYWORDS:
                raise ValueError(
                    f"schedule {spec.name!r}: parameter name {name!r} is a keyword of the torch adapter "
                    f"LoraSchedLR ({', '.join(sorted(ADAPTER_KEYWORDS))}); rename the parameter"
                )


def register(spec: ScheduleSpec) -> ScheduleSpec:
    """Add a spec to the registry; names and aliases must be unique, and no parameter may be named
    like one of the torch adapter's own keywords (`ADAPTER_KEYWORDS`)."""
    _check_param_names(spec)
    for name in (spec.name, *spec.aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"schedule name {name!r} registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def _ensure_loaded() -> None:
    if not _REGISTRY:
        from lora_sched.schedules import catalogue  # noqa: F401  (registers every spec)


def all_specs() -> list[ScheduleSpec]:
    """Every registered spec, in catalogue order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def all_names() -> list[str]:
    """Every accepted schedule name: canonical names and aliases."""
    _ensure_loaded()
    return [*_REGISTRY, *_ALIASES]


def lookup(name: str, key: str = "lr_scheduler") -> tuple[ScheduleSpec, Mapping[str, Any]]:
    """The spec for a name or alias, and the alias's default overrides."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise ConfigError(problem(key, "a schedule name (a string)", name, "run `lora-sched list` to see them"))
    if name in _REGISTRY:
        return _REGISTRY[name], {}
    if name in _ALIASES:
        spec = _REGISTRY[_ALIASES[name]]
        return spec, spec.aliases[name]
    hint = did_you_mean(name, all_names()) or "run `lora-sched list` to see them"
    raise ConfigError(problem(key, "a schedule name from `lora-sched list`", name, hint))


def get_spec(name: str) -> ScheduleSpec:
    """The spec for a canonical name or an alias."""
    return lookup(name)[0]


def schedules_taking(param_name: str) -> list[str]:
    """Names of schedules that have a parameter called `param_name` (for 'did you mean' hints)."""
    return [s.name for s in all_specs() if s.param(param_name) is not None]
