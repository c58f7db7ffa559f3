"""One field system: what a config key or a schedule parameter accepts, one object per kind.

A field owns everything that depends on its kind: reading a value (`parse` returns the typed value
or raises `FieldError`), the "expected" text of an error, the type column of the docs, its JSON
Schema fragment and the kind of input a notebook form shows for it. Config keys (config/keys.py) and
schedule parameters (`spec.Param`) both hold one, so a kind reads the same wherever it appears.

Pure Python: no NumPy, no torch, no ipywidgets (the notebook layer builds the widgets), so
validating a config stays as cheap as a bare Python start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from lora_sched.errors import FieldError, did_you_mean, finite_number, raw, too_many
from lora_sched.errors import range_text as bounds_text
from lora_sched.schedules import durations
from lora_sched.schedules.durations import (
    DURATION_EXPECTED,
    MAX_LIST_ITEMS,
    TimeContext,
    read_duration,
    resolve_duration,
)

#: A check of a parsed value beyond its kind (a file name, step_rules); raises FieldError.
Rule = Callable[[Any], None]

_DURATION_UNIT = "steps, or a fraction like 0.05, or a time string like 2ep"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(ba|ep|sp|dur|%)\s*$"},
    ]
}
_KEY_VALUE_PATTERN = r"^\s*[^=\s][^=]*="


# ------------------------------------------------------------------------------ form controls
def parse_text(text: Any) -> Any:
    """A value typed into a text field, read the way TOML would hold it.

    "" -> None (not set); "100" -> 100; "0.05" / "1e-4" -> float; "true"/"false" -> bool;
    "[100, 200]" -> a list; anything else stays a string (the field then names the type error).
    """
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped:
        return None
    if stripped in ("true", "false"):
        return stripped == "true"
    for number in (int, float):
        try:
            return number(stripped)
        except ValueError:
            pass
    if stripped.startswith("["):
        import ast  # only for a list typed into a form: a clean `validate` never loads it

        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
        return list(value) if isinstance(value, (list, tuple)) else text
    return text


def parse_list(text: Any) -> Any:
    """A comma-separated list field ("100, 200" or "0.3dur, 0.6dur") -> list of parsed items."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped:
        return None
    if stripped.startswith("["):
        return parse_text(stripped)
    return [parse_text(item) for item in stripped.split(",")]


def text_of(value: Any) -> str:
    """A value as a text field shows it (the inverse of `parse_text`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


class Control:
    """The kind of input a notebook form shows for a field: `kind` names it ("float", "int", "bool",
    "choice", "text", "list"), `options` are a choice's values; `shown` / `read` convert between a
    value and what the input holds. Data only: the notebook layer makes the widget
    (lora_sched.notebook.controls)."""

    kind: ClassVar[str] = "text"

    def __init__(self, options: Sequence[str] = ()) -> None:
        self.options = tuple(options)

    def shown(self, value: Any) -> Any:
        """What the input holds for `value` (None: not set)."""
        return value

    def read(self, held: Any) -> Any:
        """The value the input's content stands for (None: not set)."""
        return held


class FloatInput(Control):
    kind = "float"


class IntInput(Control):
    kind = "int"

    def shown(self, value: Any) -> Any:
        # an int input cannot hold 3.0; a GUI's number field (Colab's #@param) gives floats
        return int(value) if isinstance(value, float) and value.is_integer() else value


class Checkbox(Control):
    kind = "bool"


class Dropdown(Control):
    kind = "choice"


class TextInput(Control):
    """Typed text, read like a TOML value: a blank field means "not set"."""

    def shown(self, value: Any) -> Any:
        return "" if value is None else text_of(value)

    def read(self, held: Any) -> Any:
        return parse_text(held)


class ListInput(TextInput):
    """Comma-separated items ("100, 200" or "0.3dur, 0.6dur")."""

    kind = "list"

    def shown(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return ", ".join(text_of(v) for v in value)
        return super().shown(value)

    def read(self, held: Any) -> Any:
        return parse_list(held)


# ------------------------------------------------------------------------------------- fields
class Field:
    """What one key or parameter accepts. Subclasses set `kind` (the name `describe` shows)."""

    kind: ClassVar[str]
    #: Holds a number: a quoted one gets "remove the quotes" rather than a type error.
    numeric: ClassVar[bool] = False
    #: A string given for it is read as a Python literal by the torch adapter ("3" -> 3), as
    #: sd-scripts literal-evaluates the items of lr_scheduler_args.
    literal_text: ClassVar[bool] = False
    #: Its value only has a meaning against a run (durations become steps) or a schedule (that
    #: schedule's arguments): the config stores it as written and the resolver reads it.
    read_when_resolved: ClassVar[bool] = False
    #: A TOML table is a valid value (everything else given a table is a nested section).
    takes_table: ClassVar[bool] = False

    def parse(self, value: Any) -> Any:
        """The typed value; raises FieldError when `value` does not fit."""
        raise NotImplementedError

    def expected(self) -> str:
        raise NotImplementedError

    def range_text(self) -> str:
        """The allowed range, e.g. 'in (0, 1]' or 'one of "a", "b"' ('' when any value of the type fits)."""
        return ""

    def type_text(self) -> str:
        """The docs' type column, e.g. 'float in (0, 1]'."""
        return f"{self.kind} {self.range_text()}".strip()

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def form_hints(self) -> list[str]:
        """What the form shows beside the input besides the doc and default: unit, range."""
        return [text for text in (self.range_text(),) if text]

    def control(self, blank: bool) -> Control:
        """The form input; `blank`: the value may be left unset (no concrete default)."""
        return TextInput()

    def in_steps(self, parsed: Any, ctx: TimeContext, key: str) -> Any:
        """The parsed value once the run is known (durations become steps); others stay."""
        return parsed


class _Number(Field):
    numeric = literal_text = True
    noun: ClassVar[str]
    schema_type: ClassVar[str]

    def __init__(
        self, low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
    ) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def range_text(self) -> str:
        return bounds_text(self.low, self.high, self.low_open, self.high_open)

    def expected(self) -> str:
        return f"{self.noun} {self.range_text()}".strip()

    def check_number(self, value: Any) -> None:
        """Refuse a non-number, NaN / infinity / a number beyond any float, and values out of range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(self.expected(), value, _unquote_hint(value))
        if finite_number(value) is None:
            hint = "NaN and infinity are not allowed" if isinstance(value, float) else "huge numbers are not allowed"
            raise FieldError(self.expected(), value, hint)
        low, high = self.low, self.high
        if (low is not None and (value < low or (self.low_open and value == low))) or (
            high is not None and (value > high or (self.high_open and value == high))
        ):
            hint = "negative values are not allowed" if value < 0 and low is not None and low >= 0 else ""
            raise FieldError(self.expected(), value, hint)

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.schema_type}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


def _unquote_hint(value: Any) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f"remove the quotes: {value.strip()}"
    return ""


class Float(_Number):
    """A real number (an int is accepted and read as a float)."""

    kind, noun, schema_type = "float", "a number", "number"

    def parse(self, value: Any) -> float:
        self.check_number(value)
        return float(value)

    def control(self, blank: bool) -> Control:
        return TextInput() if blank else FloatInput()


class Floats(Float):
    """A number, or a list of numbers (the kohya_ss GUI writes one LR per SDXL text encoder)."""

    kind = "floats"

    def expected(self) -> str:
        return f"a number, or a list of numbers (one per text encoder) {self.range_text()}".strip()

    def type_text(self) -> str:
        return f"float, or a list of floats {self.range_text()}".strip()

    def parse(self, value: Any) -> float | list[float]:
        if not isinstance(value, list):
            return super().parse(value)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(super().parse(item))
            except FieldError as exc:
                raise exc.inside(i) from None
        return out

    def json_schema(self) -> dict[str, Any]:
        number = super().json_schema()
        return {"anyOf": [number, {"type": "array", "items": number}]}


class Int(_Number):
    """A whole number; `multiple_of` (when set) must divide it."""

    kind, noun, schema_type = "int", "an int", "integer"

    def __init__(self, low: float | None = None, high: float | None = None, *, multiple_of: int | None = None) -> None:
        super().__init__(low, high)
        self.multiple_of = multiple_of

    def expected(self) -> str:
        return f"{self.noun} {_with_multiple(self.range_text(), self.multiple_of)}".strip()

    def type_text(self) -> str:
        return f"int {_with_multiple(self.range_text(), self.multiple_of)}".strip()

    def parse(self, value: Any) -> int:
        if isinstance(value, float):
            integral = math.isfinite(value) and value.is_integer() and abs(value) < 1e18
            raise FieldError(self.expected(), value, f"write {int(value)}" if integral else "")
        self.check_number(value)
        if self.multiple_of and value % self.multiple_of:
            raise FieldError(self.expected(), value)
        return value

    def json_schema(self) -> dict[str, Any]:
        out = super().json_schema()
        if self.multiple_of:
            out["multipleOf"] = self.multiple_of
        return out

    def control(self, blank: bool) -> Control:
        return TextInput() if blank else IntInput()


def _with_multiple(range_part: str, multiple_of: int | None) -> str:
    return f"{range_part}, a multiple of {multiple_of}".lstrip(", ") if multiple_of else range_part


class Bool(Field):
    kind = "bool"
    literal_text = True

    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError("true or false", value)
        return value

    def expected(self) -> str:
        return "true or false"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def control(self, blank: bool) -> Control:
        return Checkbox()


class Choice(Field):
    """One of a fixed set of strings."""

    kind = "choice"

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def parse(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(self.expected(), value)
        if value not in self.choices:
            raise FieldError(self.expected(), value, did_you_mean(value, self.choices))
        return value

    def range_text(self) -> str:
        return "one of " + ", ".join(f'"{c}"' for c in self.choices)

    def expected(self) -> str:
        return self.range_text()

    def type_text(self) -> str:
        return " / ".join(f'"{c}"' for c in self.choices)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}

    def form_hints(self) -> list[str]:
        return []  # the dropdown shows the choices

    def control(self, blank: bool) -> Control:
        return Dropdown(self.choices)


class Str(Field):
    """A string. non_empty: blank text is refused. nul_free: a NUL is refused (no file name or name
    an OS takes holds one). rule: a further check, run before those two (it may explain better)."""

    kind = "str"

    def __init__(
        self, *, non_empty: bool = False, nul_free: bool = False, expected: str | None = None, rule: Rule | None = None
    ) -> None:
        self.non_empty, self.nul_free, self.rule = non_empty, nul_free, rule
        self._expected = expected or ("a non-empty string" if non_empty else "a string")

    def parse(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(self.expected(), value)
        if self.rule is not None:
            self.rule(value)
        if self.non_empty and not value.strip():
            raise FieldError(self.expected(), value)
        if self.nul_free and "\0" in value:
            raise FieldError(f"{self.expected()} without a NUL character", shown_text(value))
        return value

    def expected(self) -> str:
        return self._expected

    def type_text(self) -> str:
        return "string"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1} if self.non_empty else {"type": "string"}


class Path(Str):
    """A file or folder name: non-empty, without NUL."""

    kind = "path"

    def __init__(self, *, rule: Rule | None = None) -> None:
        super().__init__(non_empty=True, nul_free=True, expected="a non-empty string (a path)", rule=rule)

    def type_text(self) -> str:
        return "string (path)"


def shown_text(value: str) -> str:
    """A string as a message shows it: control characters escaped (a NUL would end the line in a terminal)."""
    return raw(repr(value) + " (a string)") if any(ord(c) < 32 for c in value) else value


class Duration(Field):
    """Every duration form (steps, a fraction, "5%", "2ep" ...); steps once the run is known.
    is_warmup: counts as warmup for scale_schedule_ratio / scale_warmup."""

    kind = "duration"
    read_when_resolved = True

    def __init__(self, *, is_warmup: bool = False) -> None:
        self.is_warmup = is_warmup

    def parse(self, value: Any) -> durations.Duration:
        return read_duration(value)

    def expected(self) -> str:
        return DURATION_EXPECTED

    def json_schema(self) -> dict[str, Any]:
        return dict(_DURATION_SCHEMA)

    def form_hints(self) -> list[str]:
        return [_DURATION_UNIT]

    def in_steps(self, parsed: Any, ctx: TimeContext, key: str) -> int:
        return resolve_duration(parsed, ctx, key, is_warmup=self.is_warmup)


class Durations(Duration):
    """A list of durations (milestones); in steps, sorted."""

    kind = "durations"
    literal_text = True

    def parse(self, value: Any) -> tuple[durations.Duration, ...]:
        if not isinstance(value, (list, tuple)):
            raise FieldError('a list of durations, e.g. [100, 200] or ["0.3dur", "0.6dur"]', value)
        if len(value) > MAX_LIST_ITEMS:
            raise FieldError(f"a list of at most {MAX_LIST_ITEMS:,} durations", too_many(value))
        out = []
        for i, item in enumerate(value):
            try:
                out.append(read_duration(item))
            except FieldError as exc:
                raise exc.inside(i) from None
        return tuple(out)

    def expected(self) -> str:
        return "a list of durations"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": _DURATION_SCHEMA}

    def form_hints(self) -> list[str]:
        return [_DURATION_UNIT, "comma-separated"]

    def control(self, blank: bool) -> Control:
        return ListInput()

    def in_steps(self, parsed: Any, ctx: TimeContext, key: str) -> tuple[int, ...]:
        return tuple(sorted(resolve_duration(d, ctx, key, is_warmup=self.is_warmup) for d in parsed))


def resolution_size(value: Any) -> tuple[int, int] | None:
    """(width, height) of a resolution as sd-scripts reads one: 512 (square), "512,768", or
    [512, 768] (a dataset config's form); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    pair = isinstance(value, (list, tuple)) and len(value) == 2
    if pair and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return value[0], value[1]
    return None


class Resolution(Field):
    """A training resolution: an int (square) or "W,H", each side in bounds (and a multiple)."""

    kind = "resolution"

    def __init__(self, low: int, high: int, *, multiple_of: int | None = None) -> None:
        self.low, self.high, self.multiple_of = low, high, multiple_of

    def parse(self, value: Any) -> int | str:
        size = resolution_size(value) if isinstance(value, (int, str)) else None
        if isinstance(value, str) and size is None:
            raise FieldError(self.expected(), value, 'write 512 or "512,768"')
        if size is not None:
            sizes = list(size)
        else:
            integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
            raise FieldError(self.expected(), value, f"write {int(value)}" if integral else "")
        for size in sizes:
            if not self.low <= size <= self.high or size % (self.multiple_of or 1):
                raise FieldError(self.expected(), value)
        return value

    def range_text(self) -> str:
        return bounds_text(self.low, self.high)

    def expected(self) -> str:
        return f'an int (square) or "W,H" {_with_multiple(self.range_text(), self.multiple_of)}'.strip()

    def type_text(self) -> str:
        return f'int or "W,H" {_with_multiple(self.range_text(), self.multiple_of)}'.strip()

    def json_schema(self) -> dict[str, Any]:
        side = {"type": "integer", "multipleOf": self.multiple_of or 1, "minimum": self.low, "maximum": self.high}
        return {"anyOf": [side, {"type": "string", "pattern": r"^\s*\d+\s*,\s*\d+\s*$"}]}


class KeyValueList(Field):
    """kohya's list of "key=value" strings (optimizer_args). `split` is the config layer's one
    reader of such an item: it returns the item's parts (with a `name`), or None for no "key=value"."""

    kind = "kv_list"

    def __init__(self, split: Callable[[Any], Any]) -> None:
        self.split = split

    def parse(self, value: Any) -> list[str]:
        if value == "":  # the kohya_ss GUI writes "" for none; sd-scripts skips it (its length is 0)
            return []
        if not isinstance(value, list):
            raise FieldError(self.expected(), value, 'e.g. ["weight_decay=0.1", "betas=[0.9,0.99]"]')
        if len(value) > MAX_LIST_ITEMS:
            raise FieldError(f"{self.expected()}, at most {MAX_LIST_ITEMS:,}", too_many(value))
        for i, item in enumerate(value):
            parts = self.split(item)
            if parts is None or not parts.name:
                raise FieldError('a "key=value" string', item, at=f"[{i}]")
        return value

    def expected(self) -> str:
        return 'a list of "key=value" strings'

    def type_text(self) -> str:
        return 'list of "key=value"'

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string", "pattern": _KEY_VALUE_PATTERN}}


class SchedulerArgs(Field):
    """lr_scheduler_args: a list of "key=value" strings or a table. Which keys and values fit depends
    on the schedule, so the config layer's args reader and the resolver check it, not this field."""

    kind = "sched_args"
    read_when_resolved = takes_table = True

    def parse(self, value: Any) -> Any:
        return value  # read item by item where the schedule is known (read_when_resolved)

    def expected(self) -> str:
        return 'a list of "key=value" strings or a table'

    def type_text(self) -> str:
        return 'list of "key=value", or a table'

    def json_schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "pattern": _KEY_VALUE_PATTERN}},
                {"type": "object", "additionalProperties": {"not": {"type": "object"}}},
            ]
        }
