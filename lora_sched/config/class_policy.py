"""Which scheduler classes ``lr_scheduler_type`` may name (the import policy), decided without
importing anything.

``CosineAnnealingLR`` means ``torch.optim.lr_scheduler.CosineAnnealingLR``; a dotted path names its
module. Only ``torch.optim.lr_scheduler`` and ``lora_sched.torch`` are importable by default: a TOML
file from the internet must not import arbitrary modules, so any other module needs
``--trust-scheduler-code``. Modules such as ``os``, ``subprocess`` or ``builtins``, any ``__main__``
module (importing one runs a program) and lora_sched's other packages are refused outright, never
imported. Pure Python: every config load applies it, with or without torch; the torch layer then
imports what passed (and checks it is an LR scheduler class).
"""

from __future__ import annotations

from typing import Any

from lora_sched.errors import Problem, problem

TORCH_MODULE = "torch.optim.lr_scheduler"
#: The only lora_sched package with scheduler classes (LoraSchedLR, WarmupThen, AdafactorLR).
OUR_MODULE = "lora_sched.torch"
TRUST_FLAG = "--trust-scheduler-code"
#: The config key the class is named by (problems are reported there).
KEY = "lr_scheduler_type"
#: What every refusal says was expected.
EXPECTED = f"an LR scheduler class ({TORCH_MODULE}.* or {OUR_MODULE}.*)"
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


def split_path(type_path: str) -> tuple[str, str]:
    """(module, attribute) as sd-scripts splits it: no dot means torch.optim.lr_scheduler."""
    if "." not in type_path:
        return TORCH_MODULE, type_path
    module, _, attr = type_path.rpartition(".")
    return module, attr


def allowed_by_default(module: str) -> bool:
    return module in (TORCH_MODULE, OUR_MODULE) or module.startswith(OUR_MODULE + ".")


def _refused(module: str) -> str | None:
    """Why `module` is never imported, trusted or not (None if it may be)."""
    parts = module.split(".")
    if parts[0] in REFUSED_MODULES or module in REFUSED_MODULES:
        return f"`{module}` is never imported: it holds no LR scheduler class"
    if "__main__" in parts:
        return "a `__main__` module runs a program when imported; name the module that defines the class"
    if parts[0] == "lora_sched" and not allowed_by_default(module):
        return f"lora_sched's scheduler classes are in {OUR_MODULE} (e.g. {OUR_MODULE}.LoraSchedLR)"
    return None


def import_refusal(type_path: Any, trust: bool = False) -> list[Problem]:
    """Why the class a path names must not be imported (empty when it may be)."""
    if not isinstance(type_path, str) or not type_path.strip():
        return [problem(KEY, 'a torch scheduler class name, e.g. "CosineAnnealingLR"', type_path)]
    module_name, attr = split_path(type_path.strip())
    refused = _refused(module_name)
    if refused:
        return [problem(KEY, EXPECTED, type_path, refused)]
    if not all(part.isidentifier() for part in (*module_name.split("."), attr)):
        return [problem(KEY, f"{EXPECTED}, as a dotted Python path", type_path)]
    if attr.startswith("_") and attr != "_LRScheduler":
        return [problem(KEY, EXPECTED, type_path, "private names are not importable")]
    if not trust and not allowed_by_default(module_name):
        hint = f"importing `{module_name}` runs its code; if you trust it, pass {TRUST_FLAG}"
        return [problem(KEY, EXPECTED, type_path, hint)]
    return []
