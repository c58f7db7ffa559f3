"""The torch adapter: the LR scheduler training uses, safe resume, custom torch classes, kohya export.

Names are resolved lazily (PEP 562) so that importing the package does not import torch. Its
custom class checks and previews (lora_sched.torch.support.CUSTOM_CLASSES) are what loaders pass
to `load_config` (see lora_sched.config.custom_classes).

>>> from lora_sched.torch import build_scheduler
>>> sched = build_scheduler(cfg, optimizer)   # LoraSchedLR, AdafactorLR or a custom torch class
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoraSchedLR": "lora_sched.torch.scheduler",
    "ScheduleMismatchError": "lora_sched.torch.scheduler",
    "build_scheduler": "lora_sched.torch.factory",
    "schedule_changes": "lora_sched.torch.scheduler",
    "AdafactorLR": "lora_sched.torch.adafactor",
    "WarmupThen": "lora_sched.torch.custom",
    "build_custom_scheduler": "lora_sched.torch.factory",
    "build_scheduler_class": "lora_sched.torch.factory",
    "preview_lrs": "lora_sched.torch.preview",
    "check_scheduler_type": "lora_sched.torch.custom",
    "preview_multipliers": "lora_sched.torch.preview",
    "check_adafactor": "lora_sched.config.adafactor",
    "export_kohya": "lora_sched.torch.export",
}

__all__ = sorted(_EXPORTS)

def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lora_sched.torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
