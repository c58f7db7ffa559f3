"""Custom torch scheduler classes named by ``lr_scheduler_type`` (sd-scripts' custom path, made safe).

* Which classes: ``CosineAnnealingLR`` means ``torch.optim.lr_scheduler.CosineAnnealingLR``; a dotted
  path imports its module. Only ``torch.optim.lr_scheduler`` and ``lora_sched.torch`` are importable
  by default: a TOML file from the internet must not import arbitrary modules, so any other module
  needs ``--trust-scheduler-code``, and even then the target must be an `LRScheduler` class.
  Modules such as ``os``, ``subprocess`` or ``builtins``, any ``__main__`` module (importing one
  runs a program) and lora_sched's other packages are refused outright, never imported.
* Arguments are checked against the class signature at validation time (missing, unknown with
  did-you-mean, wrong type against the annotation or the default), then the class is built once on
  a one-parameter dummy optimizer so that its own value checks run before any model loads.
* `WarmupThen` composes the warmup in front: during the first W updates the LR of each group rises
  from ``warmup_start x base`` to the class's LR at its own step 0, then the class runs from its
  step 0 (so with W = 0 it is exactly the class). ReduceLROnPlateau is fed through
  ``step_update(loss)``: the mean loss of each window of ``plateau_every`` updates.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lora_sched.errors import ConfigError, Problem, did_you_mean, problem, raw
from lora_sched.torch.scheduler import STATE_FORMAT, LoraSchedLR, ScheduleMismatchError, _change

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
#: torch classes that take Python objects (functions, schedulers) a TOML file cannot express.
NEEDS_PYTHON = {
    "LambdaLR": "a Python function",
    "MultiplicativeLR": "a Python function",
    "SequentialLR": "scheduler objects",
    "ChainedScheduler": "scheduler objects",
    "LRScheduler": "a subclass (it is the abstract base class)",
    "_LRScheduler": "a subclass (it is the abstract base class)",
}
KEY = "lr_scheduler_type"


# -- resolving the class ---------------------------------------------------------------------
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


# -- checking arguments ----------------------------------------------------------------------
def _split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _matches(value: Any, ann: str) -> bool | None:
    """Whether a TOML value fits a string annotation; None when the annotation is not understood."""
    ann = ann.strip().strip("'\"")
    for prefix in ("Optional[", "typing.Optional["):
        if ann.startswith(prefix):
            ann = ann[len(prefix) : -1] + " | None"
    for prefix in ("Union[", "typing.Union["):
        if ann.startswith(prefix):
            ann = " | ".join(_split_top(ann[len(prefix) : -1], ","))
    options = _split_top(ann, "|")
    if len(options) > 1:
        results = [_matches(value, o) for o in options]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    head, _, inner = ann.partition("[")
    inner = inner[:-1] if inner.endswith("]") else inner
    head = head.rsplit(".", 1)[-1]
    if head == "Literal":
        try:
            choices = ast.literal_eval(f"[{inner}]")
        except (ValueError, SyntaxError):
            return None
        return value in choices
    if head == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if head == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if head == "bool":
        return isinstance(value, bool)
    if head == "str":
        return isinstance(value, str)
    if head == "None":
        return value is None
    if head in ("list", "List", "Iterable", "Sequence", "tuple", "Tuple"):
        if not isinstance(value, (list, tuple)):
            return False
        if not inner or head in ("tuple", "Tuple"):
            return True
        items = [_matches(v, inner) for v in value]
        return False if any(r is False for r in items) else (True if all(items) else None)
    if head in ("Callable", "Optimizer", "LRScheduler", "Tensor"):
        return False
    return None


def _expected_text(ann: str | None, default: Any) -> str:
    if ann:
        return ann.replace("Iterable[int]", "list[int]")
    return type(default).__name__


def _check_value(name: str, value: Any, param: inspect.Parameter) -> Problem | None:
    ann = param.annotation if isinstance(param.annotation, str) else None
    if ann is None and param.annotation is not inspect.Parameter.empty:
        ann = getattr(param.annotation, "__name__", None) or str(param.annotation)
    key = f"lr_scheduler_args.{name}"
    if ann:
        ok = _matches(value, ann)
    elif param.default is not inspect.Parameter.empty and param.default is not None:
        default = param.default
        ok = _matches(value, "float" if isinstance(default, float) else type(default).__name__)
    else:
        ok = None
    if ok is False:
        hint = ""
        if isinstance(value, float) and value.is_integer() and ann and "int" in ann and "float" not in ann:
            hint = f"write {int(value)}: torch needs an int here"
        elif isinstance(value, str) and ann and ("float" in ann or "int" in ann):
            hint = "remove the quotes"
        return problem(key, f"{_expected_text(ann, param.default)} (torch's signature)", value, hint)
    if isinstance(value, float) and not math.isfinite(value):
        return problem(key, "a finite number", value, "NaN and infinity are not allowed")
    return None


def check_signature(cls: type, args: Mapping[str, Any], type_path: str) -> list[Problem]:
    """Missing, unknown and mistyped arguments of `cls(optimizer, **args)`."""
    name = getattr(cls, "__name__", type_path)
    if name in NEEDS_PYTHON and cls.__module__.startswith("torch."):
        return [
            problem(
                KEY,
                "a scheduler class whose arguments a TOML file can express",
                type_path,
                f"{name} needs {NEEDS_PYTHON[name]}; use a catalogue schedule (`lora-sched list`) instead",
            )
        ]
    params = list(inspect.signature(cls).parameters.values())
    if params and params[0].name == "optimizer":
        params = params[1:]
    by_name = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    problems: list[Problem] = []
    for arg, value in args.items():
        key = f"lr_scheduler_args.{arg}"
        if arg == "last_epoch":
            problems.append(
                problem(key, "no last_epoch", value, "resuming restores the step from the checkpoint; remove it")
            )
            continue
        if arg not in by_name:
            if takes_any:
                continue
            hint = did_you_mean(arg, by_name) or f"{name} takes: " + ", ".join(n for n in by_name if n != "last_epoch")
            problems.append(problem(key, f"an argument of {name}", raw(f"`{arg}` = {value!r}"), hint))
            continue
        found = _check_value(arg, value, by_name[arg])
        if found is not None:
            problems.append(found)
    for p in by_name.values():
        if p.default is inspect.Parameter.empty and p.name not in args:
            ann = p.annotation if isinstance(p.annotation, str) else ""
            problems.append(
                problem(f"lr_scheduler_args.{p.name}", f"{name} needs `{p.name}` ({ann or 'a value'})", raw("nothing"))
            )
    return problems


def _dummy_optimizer(lrs: list[float]) -> Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, lr=lrs[0])


def check_scheduler_type(type_path: Any, args: Mapping[str, Any] | None, trust: bool = False) -> list[Problem]:
    """Every problem with ``lr_scheduler_type`` + ``lr_scheduler_args`` (empty when it builds).

    Called by the config layer at validation time; imports torch (and only the allowed module).
    """
    args = dict(args or {})
    cls, problems = resolve_class(type_path, trust)
    if cls is None:
        return problems
    problems = check_signature(cls, args, str(type_path))
    if problems:
        return problems
    try:  # the class's own value checks (e.g. OneCycleLR's total_steps, CyclicLR's momentum)
        cls(_dummy_optimizer([1e-3]), **args)
    except ConfigError as exc:
        return exc.problems
    except (ValueError, TypeError, KeyError, ZeroDivisionError, AssertionError) as exc:
        return [
            problem(
                "lr_scheduler_args",
                f"arguments {cls.__name__} accepts",
                raw(f"{args!r}, which {cls.__name__} rejects: {exc}"),
            )
        ]
    return []


# -- stepping through the run ----------------------------------------------------------------
#: validate steps a custom class through the whole run when the class is stepped at most this many
#: times (about 0.2 s for torch's classes); a longer run is stepped this far, after the known limits
#: (OneCycleLR's total_steps) are checked against the whole run, and a notice says so.
DRY_RUN_STEPS = 20_000
#: export refuses a file whose class raises anywhere in a run of up to this many steps (seconds).
EXPORT_DRY_RUN_STEPS = 1_000_000


def class_steps(run_length: int, warmup: int) -> int:
    """How many times a run calls the class's step(): once per update after the warmup, the last
    update too (sd-scripts and lora-sched train step the scheduler after every optimizer update)."""
    return max(0, run_length - warmup)


def _one_cycle_limit(args: Mapping[str, Any], steps: int) -> list[Problem]:
    """OneCycleLR raises ValueError once stepped past total_steps (or epochs x steps_per_epoch)."""
    if "total_steps" in args and args["total_steps"] is not None:
        key, total = "lr_scheduler_args.total_steps", args["total_steps"]
    else:
        key, total = "lr_scheduler_args.epochs", args.get("epochs", 0) * args.get("steps_per_epoch", 0)
    if not isinstance(total, int) or total >= steps:
        return []
    return [
        problem(
            key,
            f"a OneCycleLR cycle of at least {steps:,} steps (the class is stepped once per update)",
            args[key.rpartition(".")[2]],
            f"OneCycleLR raises ValueError when stepped past its {total:,} total steps; "
            f"set total_steps = {steps}, or use the catalogue's one_cycle",
        )
    ]


KNOWN_LIMITS = {"OneCycleLR": _one_cycle_limit}


def check_run(
    type_path: str,
    args: Mapping[str, Any] | None,
    run_length: int,
    warmup: int = 0,
    *,
    budget: int | None = None,
    trust: bool = False,
) -> list[Problem]:
    """Problems of stepping the class through the run (call after `check_scheduler_type` found none).

    The known limits of torch's classes are checked against the whole run, then the class is built
    on a dummy optimizer and stepped min(run, budget) times (budget: DRY_RUN_STEPS unless given); an
    exception at any step is an error naming the step. When the run is longer than the budget, a
    notice says how far it was stepped. ReduceLROnPlateau (it depends on the loss) and LoraSchedLR
    (a closed form) are not stepped.
    """
    args = dict(args or {})
    cls, problems = resolve_class(type_path, trust)
    if cls is None or issubclass(cls, (ReduceLROnPlateau, LoraSchedLR)):
        return []
    steps = class_steps(run_length, warmup)
    module = getattr(cls, "__module__", "")
    limit = KNOWN_LIMITS.get(cls.__name__) if module.startswith("torch.") else None
    if limit is not None:
        problems = limit(args, steps)
        if problems:
            return problems
    budget = DRY_RUN_STEPS if budget is None else budget
    stepped = min(steps, budget)
    failure = _first_failure(cls, args, stepped)
    if failure is not None:
        step, exc = failure
        return [
            problem(
                "lr_scheduler_args",
                f"arguments {cls.__name__} runs with for all {steps:,} steps of the run",
                raw(f"{args!r}, with which {cls.__name__} raises at its step {step:,}: {type(exc).__name__}: {exc}"),
                "training (and sd-scripts) would stop there",
            )
        ]
    if stepped < steps:
        return [
            problem(
                "lr_scheduler_type",
                f"a class stepped through the whole run ({steps:,} steps)",
                raw(f"{cls.__name__} stepped {stepped:,} times without an error"),
                "validate steps a custom class at most "
                f"{budget:,} times; `lora-sched preview` and `export --kohya` step it through the whole run",
                severity="notice",
            )
        ]
    return []


def _first_failure(cls: type, args: Mapping[str, Any], steps: int) -> tuple[int, Exception] | None:
    """(step, exception) of the first step() of `cls` on a dummy optimizer that raises, or None."""
    scheduler = cls(_dummy_optimizer([1e-3]), **args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no optimizer step needed
        for step in range(1, steps + 1):
            try:
                scheduler.step()
            except Exception as exc:  # any exception a class raises stops training the same way
                return step, exc
    return None


# -- the composed scheduler ------------------------------------------------------------------
class WarmupThen(LRScheduler):
    """A torch scheduler class with a warmup composed in front.

    m(s) for s < W: base x (ws + (target - ws) ramp(s / W)), target = the class's LR at its
    step 0 / base, ramp linear s / W or cosine 0.5 (1 - cos(pi s / W)); for s >= W the class
    itself at its step s - W. ``num_processes`` = calls of step() per optimizer update (N under
    sd-scripts with N processes; 1 in lora-sched's own training loop).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler_type: str = "CosineAnnealingLR",
        warmup: int = 0,
        warmup_start: float = 0.0,
        warmup_type: str = "linear",
        num_processes: int = 1,
        plateau_every: int = 10,
        trust_scheduler_code: bool = False,
        **scheduler_args: Any,
    ) -> None:
        problems = check_scheduler_type(scheduler_type, scheduler_args, trust=trust_scheduler_code)
        for name, value, ok in (
            ("warmup", warmup, isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 0),
            ("warmup_start", warmup_start, isinstance(warmup_start, (int, float)) and 0 <= warmup_start <= 1),
            ("warmup_type", warmup_type, warmup_type in ("linear", "cosine")),
            ("num_processes", num_processes, isinstance(num_processes, int) and num_processes >= 1),
            ("plateau_every", plateau_every, isinstance(plateau_every, int) and plateau_every >= 1),
        ):
            if not ok or isinstance(value, bool):
                problems.append(problem(f"lr_scheduler_args.{name}", "a valid value", value))
        if problems:
            raise ConfigError(problems)
        cls, _ = resolve_class(scheduler_type, trust_scheduler_code)
        self.optimizer = optimizer
        self.scheduler_type = scheduler_type
        self.scheduler_args = dict(scheduler_args)
        self.warmup, self.warmup_start, self.warmup_type = warmup, float(warmup_start), warmup_type
        self.num_processes, self.plateau_every = num_processes, plateau_every
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.inner = cls(optimizer, **scheduler_args)
        self.is_plateau = isinstance(self.inner, ReduceLROnPlateau)
        self.targets = [float(g["lr"]) for g in optimizer.param_groups]  # the class's LR at its step 0
        self.last_epoch = 0  # the optimizer update the current LRs are for
        self._step_count = 1
        self._calls = 0
        self._losses: list[float] = []
        self._apply()

    def _ramp(self, s: int) -> float:
        x = s / self.warmup
        return 0.5 * (1.0 - math.cos(math.pi * x)) if self.warmup_type == "cosine" else x

    def _apply(self) -> None:
        s = self.last_epoch
        if s < self.warmup:
            r = self._ramp(s)
            for g, base, target in zip(self.optimizer.param_groups, self.base_lrs, self.targets):
                start = base * self.warmup_start
                g["lr"] = start + (target - start) * r
        elif s == self.warmup and self.warmup > 0:
            for g, target in zip(self.optimizer.param_groups, self.targets):
                g["lr"] = target
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self, epoch: Any = None) -> None:  # type: ignore[override]
        """One call; every `num_processes` calls make one optimizer update."""
        self.step_update(None)

    def step_update(self, loss: float | None = None) -> None:
        """Advance one optimizer update (call once per update; `loss` feeds ReduceLROnPlateau)."""
        self._calls += 1
        if self._calls % self.num_processes:
            return
        self._step_count += 1
        self.last_epoch += 1
        if self.last_epoch <= self.warmup:
            self._apply()
            return
        if self.is_plateau:
            if loss is not None:
                self._losses.append(float(loss))
            if len(self._losses) >= self.plateau_every:
                self.inner.step(sum(self._losses) / len(self._losses))
                self._losses.clear()
        else:
            self.inner.step()
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _config(self) -> dict[str, Any]:
        return {
            "scheduler_type": self.scheduler_type,
            "scheduler_args": dict(self.scheduler_args),
            "warmup": self.warmup,
            "warmup_start": self.warmup_start,
            "warmup_type": self.warmup_type,
            "num_processes": self.num_processes,
            "plateau_every": self.plateau_every,
            "base_lrs": list(self.base_lrs),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT.replace("LoraSchedLR", "WarmupThen"),
            "config": self._config(),
            "update": self.last_epoch,
            "calls": self._calls,
            "_step_count": self._step_count,
            "losses": list(self._losses),
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any], allow_schedule_change: bool = False) -> None:
        """Restore; a checkpoint from a different class, arguments or warmup is refused unless allowed."""
        if "config" not in state_dict or "inner" not in state_dict:
            raise ConfigError(
                problem("scheduler state", "a state saved by lora_sched's WarmupThen", raw(str(sorted(state_dict))))
            )
        saved, mine = state_dict["config"], self._config()
        changes = [_change(k, saved.get(k), mine[k]) for k in mine if saved.get(k) != mine[k]]
        if changes and not allow_schedule_change:
            raise ScheduleMismatchError(changes)
        self.last_epoch = int(state_dict["update"])
        self._calls = self.last_epoch * self.num_processes
        self._step_count = int(state_dict["_step_count"])
        self._losses = list(state_dict.get("losses", []))
        if not changes:
            self.inner.load_state_dict(state_dict["inner"])
        elif not self.is_plateau:
            # An allowed change: the saved inner state holds the OLD arguments (T_max, milestones,
            # derived phases...), so replay the NEW class from its step 0 to the kept step instead
            # (this scheduler is freshly built, as on every resume). A plateau scheduler starts afresh.
            for g, target in zip(self.optimizer.param_groups, self.targets):
                g["lr"] = target
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
                for _ in range(max(0, self.last_epoch - self.warmup)):
                    self.inner.step()
        if self.last_epoch <= self.warmup:
            self._apply()
        else:
            last = getattr(self.inner, "_last_lr", None) or state_dict["inner"].get("_last_lr")
            for g, lr in zip(self.optimizer.param_groups, last):
                g["lr"] = float(lr)
            self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def build_scheduler_class(
    scheduler_type: str,
    scheduler_args: Mapping[str, Any] | None,
    optimizer: Optimizer,
    warmup: int = 0,
    warmup_start: float = 0.0,
    warmup_type: str = "linear",
    plateau_every: int = 10,
    trust: bool = False,
) -> Any:
    """The scheduler our own loop steps once per update: `WarmupThen` around a torch class.

    lora_sched's own classes (LoraSchedLR, WarmupThen: what a kohya export names) are built as they
    are, with ``num_processes = 1`` (that argument counts the caller's step() calls per update, a
    property of sd-scripts + accelerate, not of the schedule); their warmup lives in their args.
    """
    args = dict(scheduler_args or {})
    cls, problems = resolve_class(scheduler_type, trust)
    if cls is None:
        raise ConfigError(problems)
    if issubclass(cls, (LoraSchedLR, WarmupThen)):
        if warmup:
            raise ConfigError(
                problem(
                    "lr_warmup_steps",
                    f"0 ({cls.__name__} takes its warmup in lr_scheduler_args)",
                    warmup,
                    "move the warmup into lr_scheduler_args as warmup=N",
                )
            )
        return cls(optimizer, **{**args, "num_processes": 1})
    return WarmupThen(
        optimizer,
        scheduler_type=scheduler_type,
        warmup=warmup,
        warmup_start=warmup_start,
        warmup_type=warmup_type,
        plateau_every=plateau_every,
        trust_scheduler_code=trust,
        **args,
    )


def build_custom_scheduler(cfg: Any, optimizer: Optimizer, trust: bool = False, **kwargs: Any) -> Any:
    """The scheduler for a config whose ``lr_scheduler_type`` is set (warmup from the config)."""
    rs = cfg.resolve()
    plateau_every = kwargs.pop("plateau_every", None)
    if plateau_every is None:
        plateau_every = cfg.get("plateau_every") or 10
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    return build_scheduler_class(
        cfg.scheduler_type,
        cfg.scheduler_type_args,
        optimizer,
        rs.warmup,
        rs.warmup_start,
        rs.warmup_type,
        plateau_every,
        trust,
    )


def preview_lrs(
    scheduler_type: str,
    scheduler_args: Mapping[str, Any] | None,
    group_lrs: list[float],
    steps: int,
    warmup: int = 0,
    warmup_start: float = 0.0,
    warmup_type: str = "linear",
    trust: bool = False,
) -> Any:
    """LR per step (rows) and group (columns) of a custom class, by stepping it on a dummy optimizer.

    ReduceLROnPlateau depends on the loss: its preview is the warmup, then the base LR held (no
    reduction can be foreseen).
    """
    import numpy as np

    opt = _dummy_optimizer(list(group_lrs))
    sched = build_scheduler_class(scheduler_type, scheduler_args, opt, warmup, warmup_start, warmup_type, trust=trust)
    out = np.empty((steps, len(group_lrs)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no optimizer step needed
        for s in range(steps):
            out[s] = [float(g["lr"]) for g in opt.param_groups]
            try:
                sched.step()
            except Exception as exc:  # a class that raises mid-run: an error naming the update, not a traceback
                name = scheduler_type.rpartition(".")[2]
                raise ConfigError(
                    problem(
                        "lr_scheduler_args",
                        f"arguments {name} runs with for all {steps:,} updates of the run",
                        raw(
                            f"{dict(scheduler_args or {})!r}, with which {name} raises after update {s:,}: "
                            f"{type(exc).__name__}: {exc}"
                        ),
                        "training (and sd-scripts) would stop there",
                    )
                ) from None
    return out


def preview_multipliers(cfg: Any, trust: bool = False) -> Any:
    """m(s) = LR of the first param group / its base LR, s = 0..run_length-1, for a custom class.

    Classes with absolute LR arguments (CyclicLR's base_lr / max_lr, OneCycleLR's max_lr) give the
    same absolute LRs to every group; use `preview_lrs` with the config's group LRs for exact
    per-group values.
    """
    trust = trust or bool(getattr(cfg, "trust_scheduler_code", False))
    rs = cfg.resolve()
    base = float(rs.base_lr)
    lrs = preview_lrs(
        cfg.scheduler_type,
        cfg.scheduler_type_args,
        [base],
        rs.run_length,
        rs.warmup,
        rs.warmup_start,
        rs.warmup_type,
        trust,
    )
    return lrs[:, 0] / base
