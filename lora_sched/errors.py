"""Errors users can act on: every config problem names where, what was expected and what was found.

A `Problem` is one finding (error, warning or notice). A `ConfigError` carries every error found in
one pass, so a file with three mistakes reports all three at once. The schedule layer raises
problems keyed by the flat kohya key (``lr_warmup_steps``, ``lr_scheduler_args.gamma``); the config
layer fills in the file, the line and the section path before showing them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Sized
from typing import Literal, NamedTuple

Severity = Literal["error", "warning", "notice"]


class Problem(NamedTuple):
    """One finding about a config value (a NamedTuple: no dataclasses import on the validate path)."""

    key: str
    expected: str
    found: str
    hint: str = ""
    severity: Severity = "error"
    file: str | None = None
    line: int | None = None

    def located(self, file: str | None = None, line: int | None = None, key: str | None = None) -> Problem:
        """A copy with the location filled in (existing values win over None arguments)."""
        return self._replace(
            file=file if file is not None else self.file,
            line=line if line is not None else self.line,
            key=key if key is not None else self.key,
        )

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        label = "" if self.severity == "error" else f"{self.severity}: "
        key = f"{self.key}: " if self.key else ""  # file-level problems (invalid TOML) name no key
        text = f"{where}{label}{key}expected {self.expected}, got {self.found}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class ConfigError(ValueError):
    """One or more config problems; `str()` lists them all, one per paragraph."""

    def __init__(self, problems: Problem | Sequence[Problem]) -> None:
        self.problems: list[Problem] = [problems] if isinstance(problems, Problem) else list(problems)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def located(self, file: str | None = None) -> ConfigError:
        return ConfigError([p.located(file=file) for p in self.problems])


def problem(key: str, expected: str, found: object, hint: str = "", severity: Severity = "error") -> Problem:
    """Build a Problem; `found` is shown with repr-like formatting that users recognise from TOML."""
    return Problem(key=key, expected=expected, found=describe_value(found), hint=hint, severity=severity)


def too_many(items: Sized) -> Raw:
    """`found` for a list over its cap: its length, not its items."""
    return raw(f"{len(items):,} items")


def describe_value(value: object) -> str:
    """How a found value is shown: TOML-ish literal plus its type where the type is the mistake."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f'"{value}" (a string)'
    if isinstance(value, float):
        return f"{value!r} (a float)"
    if isinstance(value, int):
        return f"{value} (an int)"
    if isinstance(value, (list, tuple)):
        return f"{list(value)!r} (a list)"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


class Raw(NamedTuple):
    """A `found` text already formatted as a message shows it: `describe_value` adds no quotes or type."""

    text: str


def raw(text: str) -> Raw:
    """Mark a `found` text as already formatted (no type suffix added)."""
    return Raw(text)


def finite_number(value: object) -> float | None:
    """`value` as a float when it is a finite real number (bools excluded), else None.

    Safe for any input: an int too large for a float (10**400) gives None instead of OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def format_number(x: float) -> str:
    """A bound as people read it: 1,000,000,000 rather than 1e+09; 0.0001 stays 0.0001."""
    if float(x).is_integer() and abs(x) >= 10_000:
        return f"{int(x):,}"
    return f"{x:g}"


def range_text(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """The allowed range of a number as text: 'in (0, 1]', '>= 1', '<= 10', or '' when unbounded."""
    if low is None and high is None:
        return ""
    if high is None:
        return f"{'>' if low_open else '>='} {format_number(low)}"
    if low is None:
        return f"{'<' if high_open else '<='} {format_number(high)}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{format_number(low)}, {format_number(high)}{right}"


def did_you_mean(word: str, candidates: Iterable[str], n: int = 1) -> str:
    """A 'did you mean X?' hint, or '' when nothing is close."""
    import difflib  # imported on first use: a valid config never needs it

    pool = list(candidates)
    matches = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    if not matches:
        return ""
    return "did you mean " + " or ".join(f"`{m}`" for m in matches) + "?"


def near_miss(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` is a slip of, or None: the same but for case or `-` for `_`, or within
    one edit (two for words of 8+ characters; a swap of neighbours counts one). Stricter than
    did_you_mean: it tells a typo of a known key (an error) from a key of some other tool. Ties go
    to the earlier candidate."""
    norm = word.lower().replace("-", "_")
    if len(norm) < 4:
        return None
    limit = 1 if len(norm) < 8 else 2
    best: tuple[int, str] | None = None
    for candidate in candidates:
        other = candidate.lower().replace("-", "_")
        if abs(len(other) - len(norm)) > limit:
            continue
        distance = _edit_distance(norm, other, limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance, giving up (limit + 1) once every row exceeds `limit`."""
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


class FieldError(ValueError):
    """A value a field (lora_sched.schedules.fields) does not accept: what was expected, what was
    found, a hint. It names no key: the caller that knows the key turns it into a Problem
    (`problem_at`). `at` locates an item inside the value, e.g. "[2]" for a list's third item."""

    def __init__(self, expected: str, found: object, hint: str = "", at: str = "") -> None:
        self.expected, self.found, self.hint, self.at = expected, found, hint, at
        super().__init__(f"expected {expected}, got {describe_value(found)}")

    def inside(self, index: int) -> FieldError:
        """The same error, located at item `index` of the value that held the failing item."""
        return FieldError(self.expected, self.found, self.hint, f"[{index}]{self.at}")

    def problem_at(self, key: str) -> Problem:
        return problem(key + self.at, self.expected, self.found, self.hint)
