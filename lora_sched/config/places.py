"""Where each key of a config was read, as data: the file, the section and the line.

Problems are keyed by flat kohya names (``lr_warmup_steps``, ``lr_scheduler_args.gamma``);
`Locations.locate` gives them the file, the line and the section path (``optimizer_arguments.lr_warmup_steps``)
they were written at, or the command-line flag they came from. The lines are scanned from the text on
first need: a clean file never needs them, and `validate` does not pay for the scan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from lora_sched.errors import Problem


class Place(NamedTuple):
    """Where a flat key was read: its section (None at the top level) and its path in the document
    (empty for a value from the command line)."""

    section: str | None
    path: tuple


class DocLines:
    """The line of every key path of a TOML text, scanned on first need."""

    __slots__ = ("_lines", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lines: dict[tuple, int] | None = None

    def line_of(self, path: tuple) -> int | None:
        """The line of `path`, or of its nearest parent that has one (a list item on the key's line)."""
        if self._lines is None:
            from lora_sched.config.locate import key_lines  # the scanner loads only when a line is needed

            self._lines = key_lines(self.text)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None


class Locations:
    """Where the keys of one config were read.

    places: flat key -> Place. args_items: lr_scheduler_args name -> its item index (kohya list form).
    flags: keys given on the command line (shown as ``--dataset-config``). overrides: keys replaced
    by a command-line flag after loading -> the flag (shown as ``--max-train-steps (max_train_steps)``).
    """

    __slots__ = ("args_items", "flags", "lines", "overrides", "places", "source")

    def __init__(
        self,
        source: str,
        lines: DocLines,
        places: Mapping[str, Place],
        args_items: Mapping[str, int] | None = None,
        flags: frozenset[str] = frozenset(),
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.source, self.lines, self.places = source, lines, dict(places)
        self.args_items = dict(args_items or {})
        self.flags, self.overrides = frozenset(flags), dict(overrides or {})

    def with_overrides(self, overrides: Mapping[str, str]) -> Locations:
        """The same places, with `overrides` (key -> flag) shown as the flag they came from."""
        return Locations(
            self.source, self.lines, self.places, self.args_items, self.flags, {**self.overrides, **overrides}
        )

    def locate(self, problems: list[Problem]) -> list[Problem]:
        """Problems keyed by flat kohya names, with the file, line and section path filled in."""
        return [self._locate_one(p) for p in problems]

    def _locate_one(self, p: Problem) -> Problem:
        if p.file is not None:
            return p
        flat, rest = split_key(p.key)
        if flat in self.overrides:
            return p._replace(key=f"{self.overrides[flat]} ({p.key})")
        if flat in self.flags:  # a value from the command line, not the file
            return p.located(key="--" + flat.replace("_", "-") + p.key[len(flat) :])
        if flat not in self.places:
            line = None
            if flat == "lr_scheduler_args":  # a missing required arg: point at the schedule
                line = self.lines.line_of(self.places.get("lr_scheduler", Place(None, ())).path)
            return p.located(file=self.source, line=line, key=_unwritten(p.key, flat))
        section, path = self.places[flat]
        shown = p.key if BARE_KEY.match(flat) else quoted(flat) + p.key[len(flat) :]
        display = shown if section is None else f"{bare_or_quoted(section)}.{shown}"
        doc_path = path + rest
        if flat == "lr_scheduler_args" and rest and rest[0] in self.args_items:
            name = rest[0]
            doc_path = (*path, self.args_items[name])
            display = f"{bare_or_quoted(section) + '.' if section else ''}lr_scheduler_args.{name}"
        return p.located(file=self.source, line=self.lines.line_of(doc_path), key=display)


def _unwritten(key: str, flat: str) -> str:
    """A key the file does not write, as a message names it: with the default it took ("min_bucket_reso
    (default 256)"), so that a problem with no line says where its value came from."""
    from lora_sched.config.keys import KEY_BY_NAME  # loaded already by any config this locates

    known = KEY_BY_NAME.get(flat)
    if known is None or known.default is None or key != flat:
        return key
    default = known.default
    if isinstance(default, bool):
        return f"{key} (default {str(default).lower()})"
    return f"{key} (default {default!r})" if isinstance(default, str) else f"{key} (default {default})"


BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def quoted(key: str) -> str:
    """A key as TOML writes it when it is not bare: '"léarning rate"'."""
    import json

    return json.dumps(key, ensure_ascii=False)


def bare_or_quoted(key: str) -> str:
    return key if BARE_KEY.match(key) else quoted(key)


def split_key(key: str) -> tuple[str, tuple[Any, ...]]:
    """'lr_scheduler_args.milestones[1]' -> ('lr_scheduler_args', ('milestones', 1))."""
    parts: list[Any] = []
    for piece in key.split("."):
        m = re.match(r"^(.*?)((?:\[\d+\])*)$", piece)
        name, indexes = (m.group(1), m.group(2)) if m else (piece, "")
        parts.append(name)
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", indexes))
    return parts[0], tuple(parts[1:])
