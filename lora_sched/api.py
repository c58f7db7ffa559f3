"""The Python entry points that load a config the way the command line does: the config layer's
loader with the torch layer's custom class support passed in, so a custom torch class
(``lr_scheduler_type``) is checked whoever calls (torch is imported only when a file names such a
class).

    from lora_sched.api import load_config
    cfg = load_config("my_lora.toml")   # ConfigError lists every problem with file:line
"""

from __future__ import annotations

import os
from typing import Any

from lora_sched.config import LoraConfig
from lora_sched.config import load_config as _load_config
from lora_sched.config import loads_config as _loads_config
from lora_sched.torch.support import CUSTOM_CLASSES


def load_config(path: str | os.PathLike[str], **options: Any) -> LoraConfig:
    """`lora_sched.config.load_config` with custom torch classes checked (options as there)."""
    options.setdefault("custom_classes", CUSTOM_CLASSES)
    return _load_config(path, **options)


def loads_config(text: str | bytes, source: str = "<string>", **options: Any) -> LoraConfig:
    """`load_config` for TOML text (`source` names it in messages)."""
    options.setdefault("custom_classes", CUSTOM_CLASSES)
    return _loads_config(text, source, **options)


__all__ = ["load_config", "loads_config"]
