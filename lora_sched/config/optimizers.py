"""The optimizer names lora-sched accepts, in one table that `validate` reads (no import) and `train`
builds from (it imports the class): sd-scripts' names, any torch.optim class, and dotted class paths
such as ``pytorch_optimizer.CAME``, as sd-scripts' `get_optimizer` reads them.

sd-scripts compares its own names case-insensitively; other names are a torch.optim class or, with
a dot, ``module.Class``, imported as written.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class OptimizerSpec(NamedTuple):
    """Where an optimizer name's class lives and what it needs (a NamedTuple: no dataclasses import
    on the validate path)."""

    name: str  #: spelling shown to users (sd-scripts' for its names)
    module: str  #: module to import
    attr: str  #: class in that module
    package: str  #: pip package that provides the module
    defaults: tuple[tuple[str, Any], ...] = ()  #: keyword arguments sd-scripts adds
    schedule_free: bool = False  #: it schedules its own LR: needs a constant schedule, train()/eval() modes
    one_lr: bool = False  #: it adapts one LR for every param group (D-Adaptation, Prodigy)
    #: it can set its own LR relative to the step (Adafactor's relative_step), which the schedule
    #: whose spec has optimizer_sets_lr turns on; sd-scripts then passes lr=None
    relative_step: bool = False


def _spec(name: str, module: str, attr: str | None = None, **kw: Any) -> OptimizerSpec:
    package = kw.pop("package", PACKAGE_OF.get(module.split(".")[0], module.split(".")[0]))
    return OptimizerSpec(name, module, attr or name, package, **kw)


#: pip package of a top-level module, where the names differ.
PACKAGE_OF = {
    "lion_pytorch": "lion-pytorch",
    "pytorch_optimizer": "pytorch-optimizer",
    "came_pytorch": "came-pytorch",
}
_NESTEROV = (("momentum", 0.9), ("nesterov", True))

#: sd-scripts' optimizer names (library/train_util.py `get_optimizer`), plus kohya-colab's "Came".
KOHYA_OPTIMIZERS: tuple[OptimizerSpec, ...] = (
    _spec("AdamW", "torch.optim", package="torch"),
    _spec("SGDNesterov", "torch.optim", "SGD", package="torch", defaults=_NESTEROV),
    _spec("Adafactor", "transformers.optimization", package="transformers", relative_step=True),
    _spec("AdamW8bit", "bitsandbytes.optim"),
    _spec("SGDNesterov8bit", "bitsandbytes.optim", "SGD8bit", defaults=_NESTEROV),
    _spec("Lion8bit", "bitsandbytes.optim"),
    _spec("PagedAdamW8bit", "bitsandbytes.optim"),
    _spec("PagedLion8bit", "bitsandbytes.optim"),
    _spec("PagedAdamW", "bitsandbytes.optim"),
    _spec("PagedAdamW32bit", "bitsandbytes.optim"),
    _spec("Lion", "lion_pytorch"),
    _spec("DAdaptation", "dadaptation.experimental", "DAdaptAdamPreprint", package="dadaptation", one_lr=True),
    _spec("DAdaptAdamPreprint", "dadaptation.experimental", package="dadaptation", one_lr=True),
    _spec("DAdaptAdaGrad", "dadaptation", one_lr=True),
    _spec("DAdaptAdam", "dadaptation", one_lr=True),
    _spec("DAdaptAdan", "dadaptation", one_lr=True),
    _spec("DAdaptAdanIP", "dadaptation.experimental", package="dadaptation", one_lr=True),
    _spec("DAdaptLion", "dadaptation", one_lr=True),
    _spec("DAdaptSGD", "dadaptation", one_lr=True),
    _spec("Prodigy", "prodigyopt", one_lr=True),
    _spec("AdamWScheduleFree", "schedulefree", schedule_free=True),
    _spec("SGDScheduleFree", "schedulefree", schedule_free=True),
    _spec("RAdamScheduleFree", "schedulefree", schedule_free=True),
    _spec("Came", "came_pytorch", "CAME"),  # kohya-colab's menu name
)
#: torch.optim's optimizer classes (sd-scripts takes any name without a dot from torch.optim).
TORCH_OPTIMIZERS = (
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon", "NAdam", "RAdam",
    "RMSprop", "Rprop", "SGD", "SparseAdam",
)  # fmt: skip

_BY_LOWER = {s.name.lower(): s for s in KOHYA_OPTIMIZERS}
_TORCH_BY_LOWER = {n.lower(): n for n in TORCH_OPTIMIZERS}
_DOTTED = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"  # compiled on first use
#: What an optimizer_type may be, for messages.
EXPECTED = "an sd-scripts optimizer name (AdamW, AdamW8bit, Lion, Prodigy, ...), a torch.optim class or module.Class"


def lookup(name: str) -> OptimizerSpec | None:
    """The spec for an optimizer_type, or None when it is no name lora-sched accepts."""
    lowered = name.strip().lower()
    if lowered in _BY_LOWER:
        return _BY_LOWER[lowered]
    if lowered in _TORCH_BY_LOWER:
        return _spec(_TORCH_BY_LOWER[lowered], "torch.optim", package="torch")
    if re.match(_DOTTED, name.strip()):
        module, _, attr = name.strip().rpartition(".")
        return _spec(name.strip(), module, attr)
    return None


def known_names() -> list[str]:
    """Every plain name (for did-you-mean hints)."""
    return [s.name for s in KOHYA_OPTIMIZERS] + [n for n in TORCH_OPTIMIZERS if n.lower() not in _BY_LOWER]
