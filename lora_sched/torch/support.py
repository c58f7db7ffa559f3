"""The torch layer's side of `lora_sched.config.custom_classes`: checking and previewing a custom
class for the config layer. Importing this module does not import torch; each call does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lora_sched.config.custom_classes import CustomClassSupport
from lora_sched.errors import Problem


class TorchCustomClasses(CustomClassSupport):
    """`CustomClassSupport` backed by lora_sched.torch.custom (ImportError without torch)."""

    def check(self, type_path: str, args: Mapping[str, Any], trust: bool) -> list[Problem]:
        from lora_sched.torch.custom.checks import check_scheduler_type

        return check_scheduler_type(type_path, args, trust=trust)

    def check_run(
        self, type_path: str, args: Mapping[str, Any], run_length: int, warmup: int, trust: bool
    ) -> list[Problem]:
        from lora_sched.torch.custom.checks import check_run

        return check_run(type_path, args, run_length, warmup, trust=trust)

    def preview_lrs(
        self,
        type_path: str,
        args: Mapping[str, Any],
        group_lrs: Sequence[float],
        steps: int,
        warmup: int,
        warmup_start: float,
        warmup_type: str,
        trust: bool,
    ) -> Any:
        from lora_sched.torch.preview import preview_lrs

        return preview_lrs(type_path, args, list(group_lrs), steps, warmup, warmup_start, warmup_type, trust)


#: The support every loader above this layer passes to `load_config` (it holds no state).
CUSTOM_CLASSES = TorchCustomClasses()
