"""A trainer's file, parsed safely and with positions: TOML, JSON, YAML or command-line flags.

Every reader keeps the guarantees of the TOML loader (the file's size and its UTF-8 are checked
by lora_sched.config.toml_file, as for any config): nesting and node counts bounded (a YAML alias
bomb or a JSON array nested a million deep is refused, never expanded), no object construction
(YAML's safe schema only), and every error a ConfigError with the file and line. Each parser is
imported only for a file of its kind: reading a TOML file loads neither `json` nor `yaml`.

`Document.line_of(path)` gives the 1-based line of a key path (``("optimizer", "lr")``, list
items by index), or of its nearest parent that has one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

from lora_sched.errors import ConfigError, Problem

# Caps on what a parsed document may hold.
#: Most values (every scalar, list and table, aliases counted each time they are used).
MAX_NODES = 20_000
#: Deepest nesting of lists and tables.
MAX_DEPTH = 64


class Document:
    """A parsed file: its source name, its text, its kind ("toml", "json", "yaml" or "args"), the
    data and where each key sits (a plain class: dataclasses would slow `validate`'s start-up)."""

    __slots__ = ("_scan", "data", "kind", "lines", "source", "text")

    def __init__(
        self,
        source: str,
        text: str,
        kind: str,
        data: Any,
        lines: dict[tuple, int] | None = None,
        _scan: Callable[[str], dict[tuple, int]] | None = None,
    ) -> None:
        self.source, self.text, self.kind, self.data = source, text, kind, data
        self.lines = {} if lines is None else lines
        self._scan = _scan

    def __repr__(self) -> str:
        return f"Document({self.source!r}, kind={self.kind!r})"

    def line_of(self, path: tuple) -> int | None:
        if self._scan is not None:  # TOML positions are scanned on first need
            self.lines, self._scan = self._scan(self.text), None
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def problem(self, path: tuple, expected: str, found: Any, hint: str = "", severity: str = "error") -> Problem:
        """A problem at `path` of this file (its key written as a.b[2].c)."""
        from lora_sched.errors import problem

        return problem(key_text(path), expected, found, hint, severity).located(self.source, self.line_of(path))


def key_text(path: tuple) -> str:
    """("a", "b", 2, "c") -> "a.b[2].c"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def suffix_kind(source: str) -> str | None:
    """The parser a file's suffix names, or None (no suffix that says)."""
    lower = source.lower()
    for suffix, kind in ((".toml", "toml"), (".json", "json"), (".yaml", "yaml"), (".yml", "yaml")):
        if lower.endswith(suffix):
            return kind
    if lower.endswith((".sh", ".txt", ".args", ".bat", ".cmd", ".ps1")):
        return "args"
    return None


def kind_of(source: str, text: str) -> str:
    """The parser a file needs, from its suffix, else from its first character."""
    named = suffix_kind(source)
    if named is not None:
        return named
    head = text.lstrip()[:1]
    if head in "{[" and head:
        return "json" if head == "{" else "toml"
    if head == "-" or "--" in text.split("\n", 1)[0]:
        return "args"
    return "toml"


def parse(source: str, text: str, kind: str | None = None) -> Document:
    """The document of `text` (read from `source`), parsed by `kind` (default: from the name)."""
    kind = kind or kind_of(source, text)
    return _PARSERS[kind](source, text)


# ---- TOML -----------------------------------------------------------------------------------
def parse_toml(source: str, text: str) -> Document:
    from lora_sched.config.toml_file import parse_toml as read_toml  # the TOML loader's reading and errors

    data = read_toml(text, source)
    _check_nodes(data, source)
    return Document(source, text, "toml", data, _scan=_toml_key_lines)


def _toml_key_lines(text: str) -> dict[tuple, int]:
    from lora_sched.config.locate import key_lines  # the scanner loads only when a line is needed

    return key_lines(text)


# ---- JSON -----------------------------------------------------------------------------------
def parse_json(source: str, text: str) -> Document:
    import json

    if _max_bracket_depth(text) > MAX_DEPTH:
        raise ConfigError(Problem("", f"JSON nested at most {MAX_DEPTH} deep", "deeper nesting", file=source))
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            Problem("", "valid JSON", f"{exc.msg} (column {exc.colno})", _JSON_HINT, file=source, line=exc.lineno)
        ) from None
    except ValueError as exc:  # NaN / Infinity
        raise ConfigError(Problem("", "valid JSON", str(exc), _JSON_HINT, file=source)) from None
    lines = json_key_lines(text)
    if duplicates:
        key = duplicates[0]
        line = next((n for p, n in sorted(lines.items(), key=lambda i: -i[1]) if p and p[-1] == key), None)
        raise ConfigError(
            Problem(key, "each key once in an object", f"`{key}` twice", "remove one of them", file=source, line=line)
        )
    _check_nodes(data, source)
    return Document(source, text, "json", data, lines)


_JSON_HINT = "strings and keys need double quotes; no comma after the last item"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _max_bracket_depth(text: str) -> int:
    """Nesting depth of [ and { outside strings (a cheap bound before json recurses)."""
    depth = deepest = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


_JSON_TOKEN = r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]'  # compiled on first use: a TOML file never needs it


def json_key_lines(text: str) -> dict[tuple, int]:
    """The line of every key path of a valid JSON text (list items by index)."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    lines: dict[tuple, int] = {}
    stack: list[list[Any]] = []  # [kind, key or index, path]
    path: tuple = ()
    pending: str | None = None
    for match in re.finditer(_JSON_TOKEN, text):
        token = match.group()
        line = bisect.bisect_right(starts, match.start())
        if token in "{[":
            if stack and stack[-1][0] == "[" and stack[-1][1] >= 0:
                lines.setdefault((*path, stack[-1][1]), line)
            if stack and stack[-1][0] == "{" and pending is not None:
                path = (*path, pending)
            elif stack and stack[-1][0] == "[":
                path = (*path, stack[-1][1])
            stack.append([token, 0 if token == "[" else None])
            pending = None
        elif token in "}]":
            stack.pop()
            path = path[:-1] if stack else ()
        elif token == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            pending = None
        elif token == ":":
            continue
        elif stack and stack[-1][0] == "{" and pending is None and _followed_by_colon(text, match.end()):
            import json

            pending = json.loads(token)
            lines[(*path, pending)] = line
        elif stack and stack[-1][0] == "[":
            lines.setdefault((*path, stack[-1][1]), line)
    return lines


def _followed_by_colon(text: str, index: int) -> bool:
    rest = text[index : index + 64].lstrip()
    return rest.startswith(":")


# ---- YAML -----------------------------------------------------------------------------------
def parse_yaml(source: str, text: str) -> Document:
    import yaml  # PyYAML, imported only for a YAML file

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        found = f"{exc.problem or exc}" + (f" (column {mark.column + 1})" if mark is not None else "")
        raise ConfigError(Problem("", "valid YAML", found, _YAML_HINT, file=source, line=line)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem("", "valid YAML", str(exc), _YAML_HINT, file=source)) from None
    except RecursionError:
        raise ConfigError(Problem("", "valid YAML", "a document nested too deeply", file=source)) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return Document(source, text, "yaml", None, lines)
    builder = _YamlBuilder(yaml, source, lines)
    return Document(source, text, "yaml", builder.value(node, (), 0), lines)


_YAML_HINT = "indent with spaces; `key: value`, one per line"
#: The tags of plain data (what YAML's safe schema resolves untagged values to).
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "merge", "timestamp")
)


class _YamlBuilder:
    """Plain values from a composed YAML node tree, with the line of every key, within the caps.

    Scalars are read by the safe constructor (ints, floats, bools, null, strings): no tag can
    construct an object. An alias is the same node again: every use counts toward MAX_NODES."""

    def __init__(self, yaml: Any, source: str, lines: dict[tuple, int]) -> None:
        self.yaml, self.source, self.lines = yaml, source, lines
        self.constructor = yaml.SafeLoader("")
        self.nodes = 0

    def value(self, node: Any, path: tuple, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                Problem(
                    "",
                    f"a YAML file of at most {MAX_NODES:,} values",
                    "more (aliases count each use)",
                    "is an anchor repeated many times?",
                    file=self.source,
                    line=node.start_mark.line + 1,
                )
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                Problem(
                    "",
                    f"YAML nested at most {MAX_DEPTH} deep",
                    "deeper nesting",
                    file=self.source,
                    line=node.start_mark.line + 1,
                )
            )
        if node.tag not in _PLAIN_TAGS:  # !!python/object and the like: never constructed
            raise ConfigError(
                Problem(
                    key_text(path),
                    "a plain YAML value",
                    f"the tag {node.tag}",
                    "remove the tag: configs hold numbers, strings, lists and mappings",
                    file=self.source,
                    line=node.start_mark.line + 1,
                )
            )
        if isinstance(node, self.yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, self.yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines.setdefault((*path, index), item.start_mark.line + 1)
                items.append(self.value(item, (*path, index), depth + 1))
            return items
        try:
            return self.constructor.construct_object(node, deep=False)
        except self.yaml.YAMLError as exc:
            raise ConfigError(
                Problem(
                    "",
                    "a plain YAML value",
                    str(getattr(exc, "problem", exc)),
                    _YAML_HINT,
                    file=self.source,
                    line=node.start_mark.line + 1,
                )
            ) from None

    def mapping(self, node: Any, path: tuple, depth: int) -> dict[str, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}  # `<<: *anchor` values: the mapping's own keys win over them
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                found = self.value(value_node, path, depth + 1)
                for item in found if isinstance(found, list) else [found]:
                    if isinstance(item, dict):
                        for k, v in item.items():
                            merged.setdefault(k, v)
                continue
            key = self.value(key_node, path, depth + 1)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError(
                    Problem(
                        key_text(path),
                        "plain keys",
                        "a list or mapping as a key",
                        file=self.source,
                        line=key_node.start_mark.line + 1,
                    )
                )
            line = key_node.start_mark.line + 1
            if key in out:
                raise ConfigError(
                    Problem(
                        key_text((*path, key)),
                        "each key once in a mapping",
                        f"`{key}` twice",
                        "remove one of them",
                        file=self.source,
                        line=line,
                    )
                )
            self.lines[(*path, key)] = line
            out[key] = self.value(value_node, (*path, key), depth + 1)
        return {**merged, **out}


def _check_nodes(data: Any, source: str) -> None:
    count, todo = 0, [data]
    while todo:
        node = todo.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(Problem("", f"a file of at most {MAX_NODES:,} values", "more", file=source))
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


# ---- command-line flags in a file -----------------------------------------------------------
_FLAG = r"(?s)^--?([A-Za-z0-9][A-Za-z0-9_.-]*)(?:=(.*))?$"  # compiled on first use


def parse_args(source: str, text: str) -> Document:
    """`--flag value` / `--flag=value` / `--switch` tokens of a shell command in a file (lines joined
    at a trailing backslash, comments dropped) -> {flag: value (str), or True for a switch}.
    A flag given twice keeps the last value, as argparse does; every flag keeps its line."""
    import shlex

    data: dict[str, Any] = {}
    lines: dict[tuple, int] = {}
    tokens: list[tuple[str, int]] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r").rstrip()
        if line.endswith(("\\", "^", "`")):  # a continued command (bash, cmd.exe, PowerShell)
            line = line[:-1]
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError as exc:
            raise ConfigError(
                Problem("", "a shell command line", str(exc), "close every quote on its line", file=source, line=number)
            ) from None
        tokens.extend((w, number) for w in words)
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        word, number = tokens[i]
        match = re.match(_FLAG, word)
        if match is None or _is_number(word):
            positional.append(word)
            i += 1
            continue
        name, value = match.group(1).replace("-", "_"), match.group(2)
        if value is None:
            values = []
            while i + 1 < len(tokens) and (re.match(_FLAG, tokens[i + 1][0]) is None or _is_number(tokens[i + 1][0])):
                i += 1
                values.append(tokens[i][0])
            value = True if not values else (values[0] if len(values) == 1 else values)
        data[name] = value
        lines[(name,)] = number
        i += 1
        if len(data) > MAX_NODES:
            raise ConfigError(Problem("", f"at most {MAX_NODES:,} flags", "more", file=source))
    if positional:
        data["__command__"] = positional
    return Document(source, text, "args", data, lines)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


_PARSERS: dict[str, Callable[[str, str], Document]] = {
    "toml": parse_toml,
    "json": parse_json,
    "yaml": parse_yaml,
    "args": parse_args,
}
