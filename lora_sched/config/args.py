"""`lr_scheduler_args` (and kohya "key=value" lists in general): kohya list form or a TOML table.

kohya form: ``["key=value", ...]``; each item splits on its FIRST "=" (so ``betas=[0.9,0.99]`` and
``step_rules="1:10,0.1:20"`` work) and the value is read as a Python literal with
`ast.literal_eval` semantics (never eval). A bare word that is not a literal (``cos``, ``linear``)
is taken as a string, as sd-scripts' users expect. An item without "=", with an empty key or an
empty value is an error naming the item. Table form: typed TOML values, one level deep.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from lora_sched.errors import Problem, problem, raw, too_many
from lora_sched.schedules.durations import MAX_LIST_ITEMS

_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_LITERAL_TYPES = (bool, int, float, str, list, type(None))
#: Longest value text we hand to literal_eval (a deep or huge literal is never a scheduler arg).
_MAX_VALUE_LEN = 10_000


class KvItem(NamedTuple):
    """One kohya "key=value" string split at its first "=": the key (stripped) and the value text."""

    name: str
    text: str

    def literal(self) -> tuple[bool, Any]:
        """(ok, value) of the value text, read as `parse_literal` reads it."""
        return parse_literal(self.text)


def split_kv(item: Any) -> KvItem | None:
    """The one reader of kohya's "key=value" items (optimizer_args, lr_scheduler_args, the form's
    fields): split at the FIRST "=", so ``betas=[0.9,0.99]`` and ``step_rules="1:10,0.1:20"`` keep
    theirs. None for anything else (not a string, or no "=")."""
    if not isinstance(item, str):
        return None
    name, eq, text = item.partition("=")
    return KvItem(name.strip(), text) if eq else None


def parse_literal(text: str) -> tuple[bool, Any]:
    """(ok, value) for a kohya value text: a Python literal, or a bare word taken as a string."""
    text = text.strip()
    if not text or len(text) > _MAX_VALUE_LEN:
        return False, None
    try:
        import ast  # only when a key=value list is parsed: 1.1 ms of start-up after the config layer

        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _BARE_WORD.match(text):
            return True, text
        return False, None
    value = _plain(value)
    return (True, value) if value is not _BAD else (False, None)


_BAD = object()


def _plain(value: Any) -> Any:
    """Tuples become lists; types TOML cannot hold (complex, bytes, sets, dicts) are refused."""
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        return _BAD if any(v is _BAD for v in items) else items
    return value if isinstance(value, _LITERAL_TYPES) else _BAD


def _shown(item: Any) -> Any:
    """A found item as shown in a message: long text is cut (the line number finds the rest)."""
    if isinstance(item, str) and len(item) > 80:
        return raw(f'"{item[:60]}..." (a string of {len(item):,} characters)')
    return item


def parse_kv_list(items: Any, key: str) -> tuple[dict[str, Any], list[Problem], dict[str, int]]:
    """Parse a kohya list of "key=value" strings: (values, problems, item index of each name)."""
    values: dict[str, Any] = {}
    where: dict[str, int] = {}
    problems: list[Problem] = []
    if len(items) > MAX_LIST_ITEMS:
        return (
            values,
            [problem(key, f'a list of at most {MAX_LIST_ITEMS:,} "key=value" strings', too_many(items))],
            where,
        )
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]"
        if not isinstance(item, str):
            problems.append(problem(item_key, 'a "key=value" string', _shown(item), "quote the whole item"))
            continue
        kv = split_kv(item)
        if kv is None:
            problems.append(
                problem(item_key, 'a "key=value" string', _shown(item), f'write "{item.strip()[:40]}=VALUE"')
            )
            continue
        name, text = kv
        if not name:
            problems.append(problem(item_key, 'a "key=value" string with a non-empty key', _shown(item)))
            continue
        ok, value = kv.literal()
        if not ok:
            hint = "values are Python literals: 0.5, 3, True, 'text', [100, 200]"
            if text.strip() and text.strip()[0] not in "'\"[(" and len(text) < 200:
                hint = f"quote text: {name}='{text.strip()}'"
            if not text.strip():
                hint = f'write "{name}=VALUE"'
            problems.append(
                problem(item_key, f"a value for `{name[:40]}` that is a Python literal", _shown(item), hint)
            )
            continue
        if name in values:
            problems.append(
                problem(item_key, f"`{name}` once", _shown(item), f"`{name}` is already set by item {where[name]}")
            )
            continue
        values[name] = value
        where[name] = i
    return values, problems, where


def parse_scheduler_args(value: Any, key: str = "lr_scheduler_args") -> tuple[dict[str, Any], list[Problem], dict]:
    """lr_scheduler_args in either form -> (args, problems, item index per name for the list form)."""
    if value == "":  # the kohya_ss GUI writes "" for none; sd-scripts skips it (its length is 0)
        return {}, [], {}
    if isinstance(value, list):
        return parse_kv_list(value, key)
    if isinstance(value, dict):
        problems = [
            problem(f"{key}.{name}", "a value (numbers, strings, booleans or lists)", raw("a table"))
            for name, v in value.items()
            if isinstance(v, dict)
        ]
        args = {name: v for name, v in value.items() if not isinstance(v, dict)}
        return args, problems, {}
    return {}, [problem(key, 'a list of "key=value" strings or a table', value)], {}


def format_literal(value: Any) -> str:
    """A value as kohya's list form writes it, readable back by `parse_literal`."""
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def to_kohya_list(args: dict[str, Any]) -> list[str]:
    """{"gamma": 0.5} -> ["gamma=0.5"], in the dict's order."""
    return [f"{name}={format_literal(v)}" for name, v in args.items()]


def keyword_args(items: Any, key: str = "optimizer_args", *, lenient: bool = False) -> dict[str, Any]:
    """The one reader of a kohya "key=value" list as keyword arguments (``optimizer_args``,
    ``network_args``): None or empty -> {}, a TOML table as it is, a list through `parse_kv_list`.
    A malformed item raises ConfigError, unless `lenient` (the loader has reported it already: the
    well-formed items are returned)."""
    if not items:
        return {}
    if isinstance(items, dict):
        return dict(items)
    values, problems, _ = parse_kv_list(list(items), key)
    if problems and not lenient:
        from lora_sched.errors import ConfigError

        raise ConfigError(problems)
    return values
