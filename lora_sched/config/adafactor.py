"""The adafactor pairing rule, checked when a config is validated (pure Python: no torch).

`check_adafactor` runs for every config that names Adafactor or the schedule: the `adafactor`
schedule is Adafactor's own relative step size, so it is only meaningful with
``optimizer_type = "Adafactor"`` and ``relative_step=True`` (Adafactor's and sd-scripts' default),
and the reverse pairing, Adafactor(relative_step=True) under any other schedule, silently ignores
that schedule (sd-scripts switches to adafactor behind the user's back), so it is an error too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lora_sched.errors import Problem, problem, raw

ADAFACTOR_NAMES = ("adafactor", "transformers.optimization.adafactor", "transformers.adafactor")


def is_adafactor(optimizer_type: Any) -> bool:
    return isinstance(optimizer_type, str) and optimizer_type.strip().lower() in ADAFACTOR_NAMES


def check_adafactor(
    optimizer_type: Any,
    optimizer_args: Iterable[str] | Mapping[str, Any] | None,
    lr_scheduler: str = "adafactor",
    scheduler_args: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Problems with the pairing of the `adafactor` schedule and the optimizer (empty when fine).

    Keys: ``optimizer_type``, ``optimizer_args.relative_step``, ``optimizer_args.warmup_init``,
    ``lr_scheduler`` (the config layer adds file and line).
    """
    from lora_sched.config.args import keyword_args

    args = keyword_args(optimizer_args, lenient=True)  # malformed items: the loader reports them
    relative_step = args.get("relative_step", True)  # Adafactor's and sd-scripts' default
    wants_schedule = lr_scheduler == "adafactor"
    problems: list[Problem] = []
    if not isinstance(relative_step, bool):
        return [problem("optimizer_args.relative_step", "True or False (Python literals)", relative_step)]
    if wants_schedule:
        if not is_adafactor(optimizer_type):
            problems.append(
                problem(
                    "optimizer_type",
                    '"Adafactor" (lr_scheduler = "adafactor" is Adafactor\'s own step size)',
                    optimizer_type,
                    'use optimizer_type = "Adafactor", or pick another lr_scheduler',
                )
            )
        elif not relative_step:
            problems.append(
                problem(
                    "optimizer_args.relative_step",
                    'True with lr_scheduler = "adafactor"',
                    False,
                    "with relative_step=False Adafactor follows the LR schedule: pick another lr_scheduler",
                )
            )
        else:
            warmup_init = args.get("warmup_init", False)
            wanted = bool((scheduler_args or {}).get("warmup_init", False))
            if warmup_init != wanted:
                problems.append(
                    problem(
                        "optimizer_args.warmup_init",
                        f"{wanted} (as lr_scheduler_args.warmup_init, so the preview shows the real steps)",
                        raw(repr(warmup_init)),
                        f"set warmup_init={warmup_init} in lr_scheduler_args too",
                    )
                )
    elif is_adafactor(optimizer_type) and relative_step:
        problems.append(
            problem(
                "lr_scheduler",
                '"adafactor" with Adafactor(relative_step=True), which ignores any other schedule',
                lr_scheduler,
                'set lr_scheduler = "adafactor", or add "relative_step=False" (and a learning_rate) to optimizer_args',
            )
        )
    return problems
