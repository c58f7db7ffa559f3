"""Reading a config file into a TOML document: its bytes (a regular file, and a small one), UTF-8,
then tomllib; each failure is one Problem at the file's line (a key set twice named, with the line
of its first value). The checks of the document's keys and values are the loader's."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from lora_sched.config.places import bare_or_quoted
from lora_sched.errors import ConfigError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: Largest config accepted, in bytes: real ones are a few KB; the cap bounds the time and memory of a check.
MAX_CONFIG_BYTES = 1 << 20
#: Most parts of one dotted key or [table.header]: tomllib's key parser is quadratic in them.
MAX_KEY_PARTS = 1000
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
#: A dotted run such as a.b."c".d; finditer consumes each character once (no backtracking blow-up).
#: Patterns are compiled on first use (re caches them): a clean `validate` never needs them.
_DOTTED_RUN = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"


def read_config_bytes(name: str) -> bytes:
    """A config file's bytes: a regular file of at most MAX_CONFIG_BYTES, or a ConfigError.

    The type and size are checked before reading: /dev/zero, a FIFO or a huge file would otherwise
    take memory without bound or block forever. The file is opened non-blocking and checked again
    through its descriptor, so a swap between the check and the open cannot hang either.
    """
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ConfigError(Problem("", "an existing file", "no such file", file=name)) from None
    except IsADirectoryError:
        raise ConfigError(Problem("", "a file", "a directory", file=name)) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ConfigError(
            Problem("", "a readable file", getattr(exc, "strerror", None) or str(exc), file=name)
        ) from None
    try:
        _check_regular_and_small(os.fstat(fd), name)
        data = _read_at_most(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(Problem("", "a readable file", exc.strerror or str(exc), file=name)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # it grew after the check
        raise ConfigError(too_big(name, len(data)))
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check_regular_and_small(st: os.stat_result, name: str) -> None:
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(Problem("", "a file", "a directory", file=name))
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _SPECIAL_FILES if getattr(stat, test)(st.st_mode)), "a special file")
        raise ConfigError(Problem("", "a regular file", kind, "configs are read from ordinary files only", file=name))
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(too_big(name, st.st_size))


_SPECIAL_FILES = (
    ("S_ISFIFO", "a FIFO (named pipe)"),
    ("S_ISCHR", "a character device"),
    ("S_ISBLK", "a block device"),
    ("S_ISSOCK", "a socket"),
)


def too_big(source: str, size: int) -> Problem:
    return Problem(
        "",
        f"a config of at most {MAX_CONFIG_BYTES:,} bytes",
        f"{size:,} bytes",
        "a training config is a few KB; is this the right file?",
        file=source,
    )


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib's reading of `text`, or a ConfigError at the line it stops on. Keys of MAX_KEY_PARTS
    dotted parts or more are refused first: tomllib's key parser is quadratic in them."""
    deep = _deep_key_line(text)
    if deep:
        raise ConfigError(
            Problem(
                "",
                f"keys and [table] headers of fewer than {MAX_KEY_PARTS:,} dotted parts",
                f"{MAX_KEY_PARTS:,} or more",
                "kohya sections nest one level: [section] then key = value",
                file=source,
                line=deep,
            )
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_problem(exc, source, text)) from None
    except (RecursionError, MemoryError):
        raise ConfigError(Problem("", "valid TOML", "a document nested too deeply", file=source)) from None


def _deep_key_line(text: str) -> int | None:
    """The first line with a dotted key of MAX_KEY_PARTS parts or more (only lines with that many dots are scanned)."""
    if text.count(".") < MAX_KEY_PARTS - 1:
        return None
    for number, line in enumerate(text.split("\n"), 1):
        if line.count(".") >= MAX_KEY_PARTS - 1 and any(
            len(re.findall(_KEY_PART, run.group())) >= MAX_KEY_PARTS for run in re.finditer(_DOTTED_RUN, line)
        ):
            return number
    return None


def decode(data: bytes, source: str) -> str:
    """The text of a config's bytes (UTF-8, a byte-order mark dropped), or a ConfigError at the line of
    the first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        found = f"byte 0x{data[exc.start]:02x} at offset {exc.start} (a binary file, or not UTF-8)"
        raise ConfigError(
            Problem("", "a UTF-8 text file", found, "save the file as UTF-8", file=source, line=line)
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _toml_problem(exc: Exception, source: str, text: str) -> Problem:
    message = str(exc)
    line = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line = int(match.group(1))
        message = message[: match.start()].rstrip() + f" (column {match.group(2)})"
    elif "(at end of document)" in message:  # an unclosed array or table: point at the last line
        message = message.replace("(at end of document)", "(at the end of the file)")
        line = text.rstrip("\n").count("\n") + 1  # the last line with text (TOML lines end at \n only)
    hint = "strings need quotes; sections look like [optimizer_arguments]; one key = value per line"
    if "overwrite" in message or "declare" in message:
        hint = "a key or a table is defined twice in the same table"
    if message.startswith("Cannot overwrite a value") and line is not None:
        twice = _key_set_twice(text, line)
        if twice is not None:
            return twice._replace(file=source)
    return Problem("", "valid TOML", message, hint, file=source, line=line)


#: A line that starts a `key = value` (a dotted key too), and a [table] or [[array]] header.
_KEY_LINE = rf"^[ \t]*({_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*)[ \t]*="
_HEADER_LINE = rf"^[ \t]*\[\[?[ \t]*({_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*)[ \t]*\]"


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_KEY_PART, dotted))


def _key_set_twice(text: str, line: int) -> Problem | None:
    """tomllib's "Cannot overwrite a value" names no key and points past the value (a multi-line
    array ends lines below its key): the key is the last `key =` at or above `line`; its table is the
    header above it, and the first definition the same key (or a prefix of it, `a = 1` then
    `a.b = 2`) between that header and it. None when no such line is found (the message stays tomllib's)."""
    lines = text.split("\n")
    at = min(line, len(lines))
    while at > 0 and not re.match(_KEY_LINE, lines[at - 1]):
        at -= 1
    if at == 0:
        return None
    parts = _key_parts(re.match(_KEY_LINE, lines[at - 1]).group(1))  # type: ignore[union-attr]
    header, first = (), None
    for n in range(at - 1, 0, -1):
        found = re.match(_HEADER_LINE, lines[n - 1])
        if found:
            header = _key_parts(found.group(1))
            break
        earlier = re.match(_KEY_LINE, lines[n - 1])
        if earlier and parts[: len(_key_parts(earlier.group(1)))] == _key_parts(earlier.group(1)):
            first = n, _key_parts(earlier.group(1))
    name = ".".join(bare_or_quoted(p) for p in parts)
    found_text = f"a second `{name}`"
    if first is not None:
        shown = ".".join(bare_or_quoted(p) for p in first[1])
        found_text += (
            f"; the first is at line {first[0]}"
            if first[1] == parts
            else f", under `{shown}`, which line {first[0]} sets to a value"
        )
    return Problem(
        ".".join(bare_or_quoted(p) for p in (*header, *parts)),
        "each key once in a table (TOML)",
        found_text,
        "remove one of them: TOML refuses a key set twice, and sd-scripts cannot read the file either",
        line=at,
    )
