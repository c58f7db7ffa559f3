"""What trainer modules share: a curve as a lora_sched config, located in the trainer's own file;
a run length counted from epochs; values read with a clear error.

A trainer's reader works out the curve the trainer really applies, writes it as lora_sched's
(kohya-named) values with the run length in steps, and `schedule_run` validates them: each
problem is shown at the trainer's own key and line (`origins`: kohya key -> path in the file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lora_sched.errors import ConfigError, Problem, problem
from lora_sched.trainers.base import RunFacts, TrainerRun
from lora_sched.trainers.documents import Document, key_text


def locate_at(problems: list[Problem], document: Document, origins: Mapping[str, tuple]) -> list[Problem]:
    """Problems keyed by kohya names, moved to the trainer's own key and line in `document`."""
    out = []
    for p in problems:
        path = _origin(p.key, origins)
        if path is None:
            out.append(p._replace(file=document.source, line=None))
        else:
            out.append(p._replace(key=key_text(path), file=document.source, line=document.line_of(path)))
    return out


def _origin(key: str, origins: Mapping[str, tuple]) -> tuple | None:
    """The path a problem's key came from: the key itself, its first part (lr_scheduler_args.gamma ->
    lr_scheduler_args), or the same without the [section] the config writer put it in."""
    parts = key.split(".")
    for candidate in (key, parts[0], ".".join(parts[1:]), parts[1] if len(parts) > 1 else ""):
        head = candidate.split("[")[0]
        if candidate in origins or head in origins:
            return origins.get(candidate) or origins[head]
    return None


def config_from(values: dict[str, Any], document: Document, origins: Mapping[str, tuple]) -> Any:
    """A validated LoraConfig from kohya-named values, its problems located in `document`."""
    from lora_sched.config import from_values
    from lora_sched.torch.support import CUSTOM_CLASSES

    try:
        cfg = from_values(values, source=document.source, custom_classes=CUSTOM_CLASSES)
    except ConfigError as exc:
        raise ConfigError(locate_at(exc.problems, document, origins)) from None
    return cfg.replace(warnings=locate_at(list(cfg.warnings), document, origins))


def schedule_run(
    trainer: str,
    document: Document,
    values: dict[str, Any],
    origins: Mapping[str, tuple],
    groups: Mapping[str, float],
    counting: str,
    warnings: list[Problem] | None = None,
    summary: str = "",
) -> TrainerRun:
    """The run of a trainer whose curve a catalogue schedule expresses: `values` are lora_sched's
    keys for it (max_train_steps set), `groups` each param group's base LR in the trainer's order.
    The config's own notices about kohya keys are dropped: the file is not a kohya file."""
    cfg = config_from(values, document, origins)
    resolved = cfg.resolve()
    kept = [p for p in cfg.warnings if p.severity == "warning"]
    return TrainerRun(
        trainer=trainer,
        source=document.source,
        groups=dict(groups),
        run_length=resolved.run_length,
        counting=counting,
        schedule=cfg,
        resolved=resolved,
        warnings=(*(warnings or []), *kept),
        summary=summary,
    )


def per_epoch(
    facts: RunFacts, samples: int | None, batch: int, accumulation: int = 1, *, drop_last: bool = False
) -> tuple[int | None, str]:
    """Optimizer steps per epoch and how they were counted: --steps-per-epoch as given, else
    `samples` (images x repeats) in batches of `batch` per process, `accumulation` batches a step.
    drop_last: the trainer's loader drops a partial batch (floor), else it keeps it (ceil)."""
    processes = facts.processes
    if facts.steps_per_epoch is not None:
        return facts.steps_per_epoch, f"{facts.steps_per_epoch} steps per epoch (--steps-per-epoch)"
    if samples is None:
        return None, "samples per epoch unknown: give --samples-per-epoch N (images x repeats) or --steps-per-epoch N"
    rounding = math.floor if drop_last else math.ceil
    batches = rounding(samples / (batch * processes))
    steps = max(1, rounding(batches / accumulation)) if accumulation > 1 else max(1, batches)
    text = f"{samples} samples / (batch {batch}"
    if processes > 1:
        text += f" x {processes} processes"
    text += f") = {batches} batches"
    if accumulation > 1:
        text += f" / accumulation {accumulation}"
    return steps, text + f" = {steps} steps per epoch"


def expect(document: Document, path: tuple, kinds: tuple[type, ...], what: str, default: Any = None) -> Any:
    """The value at `path` of the document's data (default when absent), or a ConfigError at its line
    when it is not one of `kinds` (bools are never numbers)."""
    node: Any = document.data
    for part in path:
        inside = isinstance(node, dict) and part in node
        if inside or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            return default
    numeric = any(k in (int, float) for k in kinds)
    if node is None and type(None) not in kinds:
        return default
    if isinstance(node, kinds) and not (numeric and isinstance(node, bool) and bool not in kinds):
        return node
    raise ConfigError(document.problem(path, what, node))


def refuse(key: str, trainer: str, what: str, nearest: str) -> ConfigError:
    """An export refusal: what `trainer` cannot express, and the nearest faithful choice."""
    return ConfigError(problem(key, f"a curve {trainer} can run", what, nearest))


def own_curve_refusal(run: TrainerRun, trainer: str) -> ConfigError | None:
    """A refusal where `run`'s own LRs (a scheduler class stepped through torch) are not the curve of
    its carried schedule (`resolved`), which a writer drawing `resolved` would write; None where they
    are (or the run has no class)."""
    if run.own_lrs is None or run.resolved is None or run.run_length is None:
        return None
    from lora_sched._lazy import np

    steps = np.arange(run.run_length)
    own, drawn = run.lrs(steps), run._replace(own_lrs=None).lrs(steps)
    for group, want in drawn.items():
        got = np.asarray(own.get(group, np.zeros(run.run_length)), dtype=float)
        bad = np.flatnonzero(np.abs(got - want) > 1e-9 * np.maximum(np.abs(got), np.abs(want)))
        if bad.size:
            s = int(bad[0])
            what = (
                f"{run.trainer}'s scheduler class in {run.source}: at step {s} the {group} group gets "
                f"{float(got[s]):.6g}, not {run.resolved.name}'s {float(want[s]):.6g}"
            )
            nearest = "export the lora_sched config the class runs, or preview with --csv and pick a catalogue schedule"
            return refuse("lr_scheduler", trainer, what, nearest)
    return None
