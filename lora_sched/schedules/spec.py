"""Declarative schedule specs and the one registry every layer derives from.

A `ScheduleSpec` says everything about a schedule: its name and aliases, its parameters (field,
default, one-line doc), its closed-form curve (whose docstring is the formula), its
reference implementation and its gotchas. Validation, `list`/`describe`, the JSON Schema, the
notebook form and the torch adapter all read these specs; adding a schedule is one spec.

Nothing here imports NumPy: validating a config must stay as cheap as a bare Python start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, FieldError, Problem, did_you_mean, problem
from lora_sched.schedules.durations import Duration
from lora_sched.schedules.fields import Control, Field


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks a parameter that has no default.
REQUIRED: Any = _Required()


class Param(NamedTuple):
    """One schedule parameter.

    field: what it accepts (`fields.Float(low=0)`, `fields.Duration()` ...): parsing, the expected
    text, the JSON Schema and the form's input all come from it.
    kohya_key: the global sd-scripts key that feeds this parameter (e.g. lr_scheduler_num_cycles).
    default_doc: how a context-dependent default (``default=None``) is chosen, for docs.
    """

    name: str
    field: Field
    doc: str
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()
    kohya_key: str | None = None
    default_doc: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def range_text(self) -> str:
        """Human text of the allowed range, e.g. 'in (0, 1]'."""
        return self.field.range_text()

    def expected(self) -> str:
        return self.field.expected()

    def parse(self, value: Any, key: str) -> Any:
        """Check a user value against this param; return the parsed value or raise ConfigError."""
        try:
            return self.field.parse(value)
        except FieldError as exc:
            raise ConfigError(exc.problem_at(key)) from None

    def control(self) -> Control:
        """The notebook form's input; a number without a concrete default is typed text, so it can stay blank."""
        return self.field.control(blank=self.default is REQUIRED or self.default is None)

    def form_value(self, value: Any) -> Any:
        """`value` (a default, or a config's) as the form's input holds it."""
        return self.control().shown(None if value is REQUIRED else value)

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
    #: A parameter holding an absolute LR (REX's ``min_lr`` floor). When it is set, each param group's
    #: curve is drawn from that group's own base LR (`ResolvedSchedule.for_group`), not one shared m(s).
    absolute_lr_param: str | None = None
    #: Arguments that show the schedule at work (every required parameter among them): the generated
    #: example config (tools/gen_schedule_configs.py) and the tests that run every schedule use them.
    example: Mapping[str, Any] = MappingProxyType({})
    #: The optimizer computes the LR itself (Adafactor's relative step): training builds it with
    #: relative_step=True and the torch adapter's scheduler only reports the LR it used.
    optimizer_sets_lr: bool = False
    #: The curve is one value at every step (a constant): the bound sums the steps after the warmup
    #: in closed form instead of evaluating them one by one.
    flat_curve: bool = False

    @property
    def formula(self) -> str:
        import inspect  # only for describe / docs: 4.7 ms of start-up after the config layer (validate 44 ms)

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


def _check_example(spec: ScheduleSpec) -> None:
    names = {n for p in spec.params for n in (p.name, *p.aliases)}
    unknown = sorted(set(spec.example) - names)
    missing = [p.name for p in spec.params if p.required and not {p.name, *p.aliases} & set(spec.example)]
    if unknown or missing:
        raise ValueError(
            f"schedule {spec.name!r}: its example must give every required parameter and only its "
            f"parameters (missing: {missing}, unknown: {unknown})"
        )


def register(spec: ScheduleSpec) -> ScheduleSpec:
    """Add a spec to the registry; names and aliases must be unique, no parameter may be named
    like one of the torch adapter's own keywords (`ADAPTER_KEYWORDS`), and the example must give
    every required parameter."""
    _check_param_names(spec)
    _check_example(spec)
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
