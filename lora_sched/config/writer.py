"""Writing configs: tomli-w only (a caption or path with quotes or newlines must round-trip), atomic.

Keys go in the key table's order, grouped into the sections we write ([model_arguments] ...
[lora_sched]); None values are omitted, and so are a config's defaults it does not set; sd-scripts
keys we do not use are written back where they came from. lr_scheduler_args is a TOML table, or
kohya's "key=value" list for sd-scripts exports.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import tomli_w

from lora_sched.config.args import parse_scheduler_args, to_kohya_list
from lora_sched.config.keys import KEY_BY_NAME, KEYS, SECTIONS
from lora_sched.config.kohya_keys import is_kohya_key
from lora_sched.config.model import LoraConfig
from lora_sched.errors import ConfigError, problem, raw

#: What `schema_header=True` points at: the file `lora-sched schema -o lora_sched.schema.json` writes.
DEFAULT_SCHEMA_REF = "lora_sched.schema.json"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def to_document(config: LoraConfig | Mapping[str, Any], *, kohya_list_args: bool = False) -> dict[str, dict]:
    """The nested {section: {key: value}} document we write for a config or a flat dict."""
    if isinstance(config, LoraConfig):
        # what the config sets, or the loader derived: a default written out would read back as given
        # (train_data_dir = "builtin:shapes" would then count epochs on the built-in set)
        flat: dict[str, Any] = {
            k: v for k, v in config.values.items() if k in config.sections or v != KEY_BY_NAME[k].default
        }
        extras = dict(config.extras)
    else:
        flat, extras = {}, {}
        for key, value in config.items():
            if key in KEY_BY_NAME:
                flat[key] = value
            elif is_kohya_key(key):
                extras[key] = (None, value)
            else:
                raise ConfigError(problem(key, "a lora_sched or sd-scripts key", raw(f"unknown key `{key}`")))
    doc: dict[str, dict] = {s: {} for s in SECTIONS}
    for key in KEYS:
        value = flat.get(key.name)
        if value is None:
            continue
        if key.name == "lr_scheduler_args":
            if isinstance(value, list):
                value = parse_scheduler_args(value)[0]
            if not value:
                continue
            value = to_kohya_list(value) if kohya_list_args else dict(value)
        doc[key.section][key.name] = _plain(value)
    for key, (section, value) in extras.items():
        if value is None:
            continue
        target = section or "training_arguments"
        doc.setdefault(target, {})[key] = _plain(value)
    return {s: table for s, table in doc.items() if table}


def dumps_config(
    config: LoraConfig | Mapping[str, Any],
    *,
    kohya_list_args: bool = False,
    schema_header: bool | str = False,
) -> str:
    """The TOML text of a config (or of a flat dict of kohya keys)."""
    text = tomli_w.dumps(to_document(config, kohya_list_args=kohya_list_args))
    if schema_header:
        ref = DEFAULT_SCHEMA_REF if schema_header is True else schema_header
        text = f"#:schema {ref}\n\n{text}"
    return text


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write via a temp file in the same folder + os.replace: readers see the old or the new file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write in pieces (a CSV of a billion steps); it replaces `path` when the block
    ends without an error, else it is removed and `path` is left as it was.

    The file gets the permissions any other tool's new file would (0o666 less the umask; an existing
    file keeps its own): mkstemp alone would leave every output readable by its owner only.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(target), dir=folder)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, target) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, _mode_for(target))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(target: str) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:  # a new file
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it can only be read by setting it."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dump_config(
    config: LoraConfig | Mapping[str, Any],
    path: str | os.PathLike[str],
    schema_header: bool | str = False,
    *,
    kohya_list_args: bool = False,
) -> None:
    """Write a config as TOML, atomically."""
    atomic_write_text(path, dumps_config(config, kohya_list_args=kohya_list_args, schema_header=schema_header))
