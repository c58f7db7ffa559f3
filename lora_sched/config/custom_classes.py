"""Custom torch classes (``lr_scheduler_type``) as the config layer sees them: a request to record.

Checking such a class (import policy, signature, a dry run) and previewing its curve need torch, a
layer above this one. That layer implements `CustomClassSupport` (lora_sched.torch.support) and
whoever loads a config passes it in (`load_config(..., custom_classes=...)`; `lora_sched.api.load_config`,
the command line, the notebook and training all do), so this layer never imports the torch layer
and no import order changes what a load checks. Without it a config still loads: the class is then
checked where it is built (training, export), and the config says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lora_sched.errors import Problem


class CustomClassSupport:
    """What the config layer asks of the torch layer about a custom class (the torch layer
    subclasses it). Each method raises ImportError when torch is not installed. A plain base class:
    typing.Protocol costs about a millisecond of `validate`'s start-up."""

    def check(self, type_path: str, args: Mapping[str, Any], trust: bool) -> list[Problem]:
        """Every problem of the class with these arguments (empty when it builds)."""
        raise NotImplementedError

    def check_run(
        self, type_path: str, args: Mapping[str, Any], run_length: int, warmup: int, trust: bool
    ) -> list[Problem]:
        """Problems of stepping the class through the run (after `check` found none)."""
        raise NotImplementedError

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
        """The LR of each group (columns) at each of the first `steps` updates (rows)."""
        raise NotImplementedError
