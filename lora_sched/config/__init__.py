"""The TOML config layer: the kohya-ss dialect in, one validated `LoraConfig`, TOML out.

    from lora_sched.config import load_config, loads_config, LoraConfig, dump_config, dumps_config
    cfg = load_config("configs/quickstart.toml")   # ConfigError lists every problem with file:line
    cfg.values["learning_rate"]; cfg.resolve().multipliers()

Importing this package loads neither NumPy nor torch; the writer (tomli-w, tempfile) is imported
on first use, so `lora-sched validate` does not pay for it.
"""

from __future__ import annotations

from typing import Any

from lora_sched.config.loader import load_config, loads_config, loads_values
from lora_sched.config.model import LoraConfig


def dump_config(*args: Any, **kwargs: Any) -> None:
    """Write a config as TOML, atomically (see lora_sched.config.writer.dump_config)."""
    from lora_sched.config.writer import dump_config as dump

    dump(*args, **kwargs)


def dumps_config(*args: Any, **kwargs: Any) -> str:
    """The TOML text of a config or a flat dict (see lora_sched.config.writer.dumps_config)."""
    from lora_sched.config.writer import dumps_config as dumps

    return dumps(*args, **kwargs)


def from_values(values: dict, source: str = "<values>", custom_classes: Any = None) -> LoraConfig:
    """Validate a flat dict of kohya keys (a form, CLI flags) exactly as a file would be
    (`custom_classes` as in load_config)."""
    return loads_values(values, source=source, custom_classes=custom_classes)


__all__ = ["LoraConfig", "dump_config", "dumps_config", "from_values", "load_config", "loads_config", "loads_values"]
