"""Which scheduler classes ``lr_scheduler_type`` may name, and importing them (the import policy).

``CosineAnnealingLR`` means ``torch.optim.lr_scheduler.CosineAnnealingLR``; a dotted path imports
its module. Only ``torch.optim.lr_scheduler`` and ``lora_sched.torch`` are importable by default: a
TOML file from the internet must not import arbitrary modules, so any other module needs
``--trust-scheduler-code``, and even then the target must be an `LRScheduler` class. Modules such
as ``os``, ``subprocess`` or ``builtins``, any ``__main__`` module (importing one runs a program)
and lora_sched's other packages are refused outright, never imported.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lora_sched.errors import Problem, did_you_mean, problem

TORCH_MODULE = "torch.optim.lr_scheduler"
#: The only lora_sched package with scheduler classes (LoraSchedLR, WarmupThen, AdafactorLR).
OUR_MODULE = "lora_sched.torch"
TRUST_FLAG = "--trust-scheduler-code"
#: Never imported, trusted or not: nothing in them is a scheduler, and importing is the risk.
REFUSED_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "builtins",
        "__builtin__",
        "shutil",
        "importlib",
        "ctypes",
        "pickle",
        "marshal",
        "socket",
        "runpy",
        "code",
        "pty",
        "multiprocessing",
        "webbrowser",
        "pathlib",
        "io",
        "eval",
        "exec",
    }
)
#: The config key the class is named by (problems are reported there).
KEY = "lr_scheduler_type"


def split_path(type_path: str) -> tuple[str, str]:
    """(module, attribute) as sd-scripts splits it: no dot means torch.optim.lr_scheduler."""
    if "." not in type_path:
        return TORCH_MODULE, type_path
    module, _, attr = type_path.rpartition(".")
    return module, attr


def _allowed_by_default(module: str) -> bool:
    return module in (TORCH_MODULE, OUR_MODULE) or module.startswith(OUR_MODULE + ".")


def _refused(module: str) -> str | None:
    """Why `module` is never imported, trusted or not (None if it may be)."""
    parts = module.split(".")
    if parts[0] in REFUSED_MODULES or module in REFUSED_MODULES:
        return f"`{module}` is never imported: it holds no LR scheduler class"
    if "__main__" in parts:
        return "a `__main__` module runs a program when imported; name the module that defines the class"
    if parts[0] == "lora_sched" and not _allowed_by_default(module):
        return f"lora_sched's scheduler classes are in {OUR_MODULE} (e.g. {OUR_MODULE}.LoraSchedLR)"
    return None


def resolve_class(type_path: Any, trust: bool = False) -> tuple[type | None, list[Problem]]:
    """The scheduler class a path names, or the problems that stop it (nothing imported then)."""
    if not isinstance(type_path, str) or not type_path.strip():
        return None, [problem(KEY, 'a torch scheduler class name, e.g. "CosineAnnealingLR"', type_path)]
    module_name, attr = split_path(type_path.strip())
    expected = f"an LR scheduler class ({TORCH_MODULE}.* or {OUR_MODULE}.*)"
    refused = _refused(module_name)
    if refused:
        return None, [problem(KEY, expected, type_path, refused)]
    if not all(part.isidentifier() for part in (*module_name.split("."), attr)):
        return None, [problem(KEY, f"{expected}, as a dotted Python path", type_path)]
    if attr.startswith("_") and attr != "_LRScheduler":
        return None, [problem(KEY, expected, type_path, "private names are not importable")]
    if not trust and not _allowed_by_default(module_name):
        return None, [
            problem(
                KEY,
                expected,
                type_path,
                f"importing `{module_name}` runs its code; if you trust it, pass {TRUST_FLAG}",
            )
        ]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, [problem(KEY, expected, type_path, f"cannot import `{module_name}`: {exc}")]
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = did_you_mean(attr, names) or f"`{module_name}` has no `{attr}`"
        return None, [problem(KEY, expected, type_path, hint)]
    target = getattr(module, attr)
    if not (inspect.isclass(target) and issubclass(target, (LRScheduler, ReduceLROnPlateau))):
        kind = "a class" if inspect.isclass(target) else type(target).__name__
        return None, [
            problem(KEY, expected, type_path, f"`{type_path}` is {kind}, not a subclass of torch's LRScheduler")
        ]
    return target, []

