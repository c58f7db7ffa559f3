"""What the catalogue's `to_kohya` hooks share: each says how stock sd-scripts draws its schedule.

sd-scripts' get_scheduler_fix builds the scheduler for ``max_train_steps x N`` steps (N processes)
but uses an int ``lr_warmup_steps`` / ``lr_decay_steps`` as given, so a hook multiplies its step
counts by N. Its warmup is transformers' linear warmup from 0. A hook returns the kohya keys of a
built-in lr_scheduler that gives the resolved schedule's exact curve, or None where none does
(the export then writes lora_sched's LoraSchedLR). The export only asks when the horizon is the run
length: sd-scripts draws every curve over max_train_steps.
"""

from __future__ import annotations

from typing import Any


def plain_warmup(resolved: Any) -> bool:
    """Whether resolved's warmup is the one sd-scripts draws: linear from 0 (or no warmup at all)."""
    return resolved.warmup_type == "linear" and (resolved.warmup == 0 or resolved.warmup_start == 0.0)


def with_warmup(resolved: Any, n: int, **keys: Any) -> dict[str, Any]:
    """`keys` after resolved's warmup in sd-scripts' steps (`lr_warmup_steps` x n processes)."""
    return {"lr_warmup_steps": resolved.warmup * n, **keys}
