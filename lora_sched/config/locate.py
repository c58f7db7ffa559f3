"""Where each key sits in a TOML text: tomllib gives values but no positions.

`key_lines(text)` scans an already-valid TOML document and maps every key path to its 1-based
line: ``("optimizer_arguments", "lr_warmup_steps") -> 7``. Array items get their index as the last
path element, so a malformed ``lr_scheduler_args`` item on its own line points at that line;
inline-table keys get their own path too. The scanner understands strings (all four kinds),
comments, arrays and inline tables, so a ``key =`` inside a caption never counts as a key.
It never raises: on anything unexpected it returns what it found so far.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Path = tuple  # tuple[str | int, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.found: dict[Path, int] = {}

    def line(self, index: int | None = None) -> int:
        return bisect.bisect_right(self.starts, self.i if index is None else index)

    def at(self, s: str) -> bool:
        return self.t.startswith(s, self.i)

    def spaces(self) -> None:
        while self.i < len(self.t) and self.t[self.i] in " \t":
            self.i += 1

    def blank(self) -> None:
        """Skip whitespace, newlines and comments."""
        while self.i < len(self.t):
            c = self.t[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                end = self.t.find("\n", self.i)
                self.i = len(self.t) if end < 0 else end
            else:
                return

    def record(self, path: Path, line: int) -> None:
        self.found.setdefault(path, line)

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.spaces()
            c = self.t[self.i]
            if c in "\"'":
                start = self.i
                self.string()
                parts.append(tomllib.loads("k = " + self.t[start : self.i])["k"])
            else:
                m = _BARE.match(self.t, self.i)
                if m is None:
                    raise ValueError("key expected")
                parts.append(m.group())
                self.i = m.end()
            self.spaces()
            if self.at("."):
                self.i += 1
                continue
            return parts

    def string(self) -> None:
        for delim in ('"""', "'''"):
            if self.at(delim):
                self.i += 3
                while not self.at(delim):
                    if delim == '"""' and self.t[self.i] == "\\":
                        self.i += 1
                    self.i += 1
                self.i += 3
                while self.i < len(self.t) and self.t[self.i] == delim[0]:  # up to 2 quotes before the closing
                    self.i += 1
                return
        quote = self.t[self.i]
        self.i += 1
        while self.t[self.i] != quote:
            if quote == '"' and self.t[self.i] == "\\":
                self.i += 1
            self.i += 1
        self.i += 1

    def value(self, path: Path) -> None:
        self.spaces()
        c = self.t[self.i]
        if c in "\"'":
            self.string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.blank()
                if self.at("]"):
                    self.i += 1
                    return
                self.record((*path, index), self.line())
                self.value((*path, index))
                index += 1
                self.blank()
                if self.at(","):
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.blank()
                if self.at("}"):
                    self.i += 1
                    return
                line = self.line()
                parts = self.key()
                self.record((*path, *parts), line)
                self.spaces()
                self.i += 1  # "="
                self.value((*path, *parts))
                self.blank()
                if self.at(","):
                    self.i += 1
        else:
            m = re.compile(r"[^,\]}#\r\n]*").match(self.t, self.i)
            self.i = m.end() if m else self.i + 1

    def document(self) -> None:
        current: Path = ()
        arrays: dict[Path, int] = {}
        while True:
            self.blank()
            if self.i >= len(self.t):
                return
            line = self.line()
            if self.at("[["):
                self.i += 2
                name = _in_arrays(self.key(), arrays)
                self.i = self.t.index("]]", self.i) + 2
                count = arrays.get(name, 0)
                arrays[name] = count + 1
                self.record(name, line)
                current = (*name, count)
                self.record(current, line)
            elif self.at("["):
                self.i += 1
                current = _in_arrays(self.key(), arrays)
                self.i = self.t.index("]", self.i) + 1
                self.record(current, line)
            else:
                parts = self.key()
                self.record((*current, *parts), line)
                self.spaces()
                self.i += 1  # "="
                self.value((*current, *parts))


def _in_arrays(parts: list[str], arrays: dict[Path, int]) -> Path:
    """A header's path with the latest item of each enclosing array of tables: `[[datasets.subsets]]`
    after the second `[[datasets]]` is ("datasets", 1, "subsets"), as TOML nests it."""
    path: Path = ()
    for part in parts[:-1]:
        path = (*path, part)
        if path in arrays:
            path = (*path, arrays[path] - 1)
    return (*path, parts[-1])


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path (and array item) of a valid TOML text to its 1-based line."""
    scanner = _Scanner(text)
    with contextlib.suppress(ValueError, IndexError, tomllib.TOMLDecodeError):
        scanner.document()  # positions are a courtesy; the values come from tomllib
    return scanner.found
