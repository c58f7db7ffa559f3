"""sd-scripts options that change what `train` builds or logs, checked before anything is built.

They load in `validate` as sd-scripts options lora-sched leaves to sd-scripts; `train` refuses
those it cannot honour at their line (a LyCORIS network, a wandb run) instead of training a plain
LoRA or logging nowhere while the file asked for something else.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from lora_sched.config.learning_keys import learning_key
from lora_sched.dependencies import installed_version
from lora_sched.errors import ConfigError, Problem, problem

#: network_module values `train` implements (sd-scripts' own LoRA).
NETWORK_MODULES = ("networks.lora",)


def _extra(cfg: Any, key: str) -> Any:
    return (getattr(cfg, "extras", None) or {}).get(key, (None, None))[1]


def check_applied(cfg: Any, train_without: frozenset[str] = frozenset()) -> None:
    """Refuse, all at once, the sd-scripts options in the file that change what is learned and
    that train does not apply (lora_sched.config.learning_keys), except those the user named
    (``--train-without KEY``): training without them is then their explicit choice."""
    extras = getattr(cfg, "extras", None) or {}
    given = {**cfg.values, **{key: value for key, (_, value) in extras.items()}}
    unknown = sorted(train_without - set(extras))
    if unknown:
        raise ConfigError(
            problem(
                "--train-without",
                "an option the file sets that lora-sched train does not apply",
                ", ".join(unknown),
                "name only options the refusal listed",
            )
        )
    refused: list[Problem] = []
    for key, (_, value) in extras.items():
        record = learning_key(key, value, given)
        if record is None or key in train_without:
            continue
        refused.append(
            problem(
                key,
                "an option lora-sched train applies",
                value,
                f"in sd-scripts, `{key}` {record.changes}; lora-sched train does not apply it, so the LoRA "
                f"would not be the one this file describes: train this file with sd-scripts, remove `{key}`, or run "
                f"`lora-sched train --train-without {key}` to train without it",
            )
        )
    if refused:
        raise ConfigError(refused)


def check_network_module(cfg: Any) -> None:
    """A network_module other than sd-scripts' LoRA (LyCORIS, DyLoRA, ...) is an error until supported."""
    module = _extra(cfg, "network_module")
    if module is not None and str(module) not in NETWORK_MODULES:
        raise ConfigError(
            problem(
                "network_module",
                '"networks.lora" (lora-sched train builds plain LoRA only)',
                module,
                "train this file with sd-scripts, or remove network_module to train a plain LoRA here",
            )
        )


def tracker_settings(cfg: Any, output_dir: Path) -> tuple[str | None, Path | None]:
    """(accelerate tracker, its folder) from log_with / logging_dir / log_prefix, as sd-scripts reads them.

    No log_with and no logging_dir: no tracker (the CSV log is always written). logging_dir alone
    means TensorBoard, in ``logging_dir/<log_prefix><timestamp>`` as in sd-scripts; log_with =
    "tensorboard" without a logging_dir logs to ``output_dir/logs``. wandb (and "all", which
    includes it) is refused: lora-sched trains offline and would log nowhere.
    """
    log_with, logging_dir = _extra(cfg, "log_with"), _extra(cfg, "logging_dir")
    if log_with is None and logging_dir is None:
        return None, None
    if log_with not in (None, "tensorboard"):
        raise ConfigError(
            problem(
                "log_with",
                '"tensorboard" (lora-sched train logs to TensorBoard and its CSV file)',
                log_with,
                "wandb is not supported: it would need an account and a network; use "
                'log_with = "tensorboard" and `tensorboard --logdir` on the logging_dir',
            )
        )
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            problem(
                "log_with" if log_with is not None else "logging_dir",
                "the tensorboard package (TensorBoard logging)",
                log_with if log_with is not None else logging_dir,
                f"tensorboard is {_found('tensorboard')}: pip install tensorboard, "
                "or remove log_with / logging_dir (the CSV log is always written)",
            )
        )
    if logging_dir is None:
        return "tensorboard", output_dir / "logs"
    prefix = str(_extra(cfg, "log_prefix") or "")
    return "tensorboard", Path(str(logging_dir)).expanduser() / (prefix + time.strftime("%Y%m%d%H%M%S"))


def _found(package: str) -> str:
    version = installed_version(package)
    return f"at version {version} but cannot be imported" if version else "not installed"
