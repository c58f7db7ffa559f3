"""`lora-sched bound FILE... [--D 1 --G 1] [--png OUT]` and `lora-sched bound --transfer FILE --steps N`."""

from __future__ import annotations

import math
import sys
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_sched.analysis.bound import bound_terms
from lora_sched.analysis.schedule import ScheduleBound, infinite_note, schedule_bound, step_sizes, transfer_lr
from lora_sched.errors import ConfigError, Problem, problem
from lora_sched.schedules import ResolvedSchedule

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
#: Longest run the bound is computed for: it holds several float arrays of the run's length (a billion
#: steps would need tens of GB).
MAX_BOUND_STEPS = 1 << 24
HEADER = "convex-optimization bound (Schaipp et al. 2025, Thm. 1), D = {D:g}, G = {G:g}"


@dataclass(frozen=True)
class Loaded:
    path: str
    config: Any
    resolved: ResolvedSchedule
    base_lr: float


def _usage(message: str) -> int:
    print(f"lora-sched bound: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_args(args: Namespace) -> str:
    """'' when the arguments make sense, else the usage error."""
    for name in ("D", "G"):
        value = getattr(args, name)
        if not math.isfinite(value) or value <= 0:
            return f"--{name}: expected a finite number > 0, got {value!r}"
    if args.transfer and args.steps is None:
        return "--transfer needs --steps N (the run length to transfer the LR to)"
    if args.steps is not None and not args.transfer:
        return "--steps goes with --transfer (lora-sched bound --transfer FILE --steps N)"
    if args.steps is not None and args.steps < 1:
        return f"--steps: expected an int >= 1, got {args.steps}"
    if args.steps is not None and args.steps > MAX_BOUND_STEPS:
        return f"--steps: expected at most {MAX_BOUND_STEPS:,} steps (the bound holds every step in memory)"
    if args.transfer and args.png:
        return "--png draws the comparison of FILEs; leave it out with --transfer"
    return ""


def _load(path: str, trust_scheduler_code: bool = False) -> Loaded:
    from lora_sched.config import load_config
    from lora_sched.torch.support import CUSTOM_CLASSES

    cfg = load_config(path, custom_classes=CUSTOM_CLASSES, trust_scheduler_code=trust_scheduler_code)
    for warning in getattr(cfg, "warnings", []):
        print(str(warning), file=sys.stderr)
    custom = cfg.scheduler_type
    if custom:
        found = problem(
            "lr_scheduler_type",
            "a catalogue schedule (the bound needs its closed form)",
            custom,
            "set lr_scheduler to a catalogue schedule (`lora-sched list`); a custom torch class has no closed form",
        )
        raise ConfigError([p.located(file=path) for p in cfg.locate([found])])
    resolved = cfg.resolve()
    if resolved.run_length > MAX_BOUND_STEPS:
        raise ConfigError(
            Problem(
                "",
                f"a run of at most {MAX_BOUND_STEPS:,} steps for `bound` (it holds every step in memory)",
                f"{resolved.run_length:,} steps",
                "`preview` shows a run of any length",
                file=path,
            )
        )
    return Loaded(path, cfg, resolved, float(cfg.group_lrs()["unet"]))


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else ("inf" if x > 0 else "none")


def _describe(item: Loaded) -> str:
    resolved = item.resolved
    extra = f", horizon {resolved.horizon}" if resolved.horizon != resolved.run_length else ""
    name = resolved.requested_name or resolved.name
    return f"{item.path}: {name}, {resolved.run_length} steps (warmup {resolved.warmup}{extra})"


def _report(item: Loaded, b: ScheduleBound) -> list[str]:
    t = b.terms
    lines = [
        _describe(item),
        f"  at base LR {_fmt(b.base_lr)}: bound {_fmt(b.bound)} (t1 {_fmt(t.t1)} + t2 {_fmt(t.t2)} + t3 {_fmt(t.t3)})",
    ]
    note = infinite_note(b)
    if note:
        lines.append(f"  note: {note}")
    if math.isfinite(b.optimal_base_lr) and b.optimal_base_lr > 0:
        factor = f" = {_fmt(b.lr_factor)} x its LR" if math.isfinite(b.lr_factor) else ""
        lines.append(
            f"  bound-optimal base LR {_fmt(b.optimal_base_lr)}{factor}: bound {_fmt(b.optimal_bound)}"
            f" (x sqrt(T) = {_fmt(b.optimal_bound * math.sqrt(b.steps))})"
        )
    else:
        lines.append("  bound-optimal base LR: none (the bound is infinite at every LR)")
    moving = b.steps - b.zero_tail
    if b.zero_tail and moving > 0:
        # the final iterate is the one after step `moving`: that prefix's bound is the useful number
        head = bound_terms(step_sizes(item.resolved)[:moving], b.D, b.G if np.ndim(b.G) == 0 else b.G[:moving])
        at_lr = head.scaled(b.base_lr).total if b.base_lr > 0 else math.inf
        lines.append(
            f"  over the first {moving} steps (the weights do not move after): bound {_fmt(at_lr)}"
            f" at base LR {_fmt(b.base_lr)}, bound-optimal base LR {_fmt(head.optimal_scale)}"
        )
    return lines


def _comparison(first: tuple[Loaded, ScheduleBound], other: tuple[Loaded, ScheduleBound]) -> list[str]:
    (a, ba), (b, bb) = first, other
    if not (math.isfinite(ba.optimal_base_lr) and math.isfinite(bb.optimal_base_lr) and ba.optimal_base_lr > 0):
        return [f"  {b.path}: no ratio (a bound-optimal LR is missing)"]
    ratio = bb.optimal_base_lr / ba.optimal_base_lr
    lines = [
        f"  {b.path}: bound-optimal base LR {_fmt(ratio)}x {a.path}'s"
        f" (gamma* ratio {_fmt(bb.optimal_base_lr)} / {_fmt(ba.optimal_base_lr)}; inverse {_fmt(1 / ratio)})"
    ]
    if a.base_lr > 0:
        target = a.base_lr * ratio
        move = f"; multiply its {_fmt(b.base_lr)} by {_fmt(target / b.base_lr)}" if b.base_lr > 0 else ""
        lines.append(f"    if {a.path}'s base LR {_fmt(a.base_lr)} is tuned, use {_fmt(target)} for {b.path}{move}")
    return lines


def _bound_files(args: Namespace) -> int:
    loaded, failed = [], False
    for path in args.files:
        try:
            loaded.append(_load(path, args.trust_scheduler_code))
        except ConfigError as exc:
            print(str(exc.located(file=path)), file=sys.stderr)
            failed = True
    results = [(item, schedule_bound(item.resolved, item.base_lr, args.D, args.G)) for item in loaded]
    print(HEADER.format(D=args.D, G=args.G))
    for item, b in results:
        print("\n".join(_report(item, b)))
    if len(results) >= 2:
        print(
            f"LR transfer from {results[0][0].path} (ratios of bound-optimal base LRs gamma*; independent of D and G):"
        )
        for other in results[1:]:
            print("\n".join(_comparison(results[0], other)))
    if args.png and results:
        from lora_sched.analysis.plot import Curve, plot_bounds

        curves = [Curve(item.path, step_sizes(item.resolved), item.base_lr, b.optimal_base_lr) for item, b in results]
        print(f"wrote {plot_bounds(curves, args.png, args.D, args.G)}")
    return EXIT_INVALID if failed else EXIT_OK


def _transfer_files(args: Namespace) -> int:
    failed = False
    print(HEADER.format(D=args.D, G=args.G))
    for path in args.files:
        try:
            item = _load(path, args.trust_scheduler_code)
        except ConfigError as exc:
            print(str(exc.located(file=path)), file=sys.stderr)
            failed = True
            continue
        cfg = item.config
        try:
            result = transfer_lr(cfg.schedule_request(), args.steps, item.base_lr, cfg.training_shape(), args.D, args.G)
        except ConfigError as exc:
            # the new run length is ours, not the file's: say so next to the file's line
            why = f"with --steps {args.steps} the run has {args.steps} steps"
            located = [
                p._replace(hint=f"{why}; {p.hint}" if p.hint else why).located(file=path)
                for p in cfg.locate(exc.problems)
            ]
            print(str(ConfigError(located)), file=sys.stderr)
            failed = True
            continue
        print(_describe(item) + f", base LR {_fmt(item.base_lr)}")
        if not math.isfinite(result.factor):
            print(f"  for {result.steps_to} steps: no transfer (the bound has no optimal LR at one of the lengths)")
            continue
        print(
            f"  for {result.steps_to} steps (max_train_steps = {args.steps}): base LR {_fmt(result.new_lr)}"
            f" (x{_fmt(result.factor)} = gamma*({result.steps_to}) / gamma*({result.steps_from}))"
        )
    return EXIT_INVALID if failed else EXIT_OK


def cmd_bound(args: Namespace) -> int:
    """Print the bound, the bound-optimal base LR and LR transfer ratios (or transfer to --steps)."""
    message = _check_args(args)
    if message:
        return _usage(message)
    return _transfer_files(args) if args.transfer else _bound_files(args)
