"""ostris ai-toolkit: its job files (YAML, or JSON), `job: extension` with a `config.process` list
whose SDTrainer process (`sd_trainer`, `diffusion_trainer` (its UI), `ui_trainer`) has a `train` section.

What ai-toolkit really runs, read at ostris/ai-toolkit 27a03a91f2 (each fact cited in QUIRK_LINES):

* `train.lr_scheduler_params` gets ``total_iters = train.steps`` (BaseSDTrainProcess.py:2235) and
  goes to get_lr_scheduler (toolkit/scheduler.py), which knows five names, each straight to a class:
  ``constant`` torch ConstantLR (factor 1 by default), ``linear`` torch LinearLR (defaults start_factor
  1/3, end_factor 1: it RISES from a third of the LR), ``cosine`` torch CosineAnnealingLR (T_max replaced
  by train.steps, eta_min default 0, no warmup), ``cosine_with_restarts`` torch
  CosineAnnealingWarmRestarts (T_0 replaced by train.steps: it never restarts) and
  ``constant_with_warmup`` diffusers' (num_warmup_steps default 1000, the only warmup there is).
  ``step`` crashes (StepLR gets total_iters) and every other name falls back to a diffusers function
  that crashes the same way: both are errors here.
* The scheduler steps once per loop iteration (SDTrainer.py:2300), after the optimizer: with
  `gradient_accumulation_steps: N` (its legacy accumulation) an iteration is one micro-batch, so
  `steps` counts micro-batches, the optimizer steps at iterations N-1, 2N-1, ... and update k uses
  the LR of iteration kN + N - 1. `gradient_accumulation: N` (batches within one iteration) steps
  both once per update. Under accelerate with P processes the prepared scheduler steps P times.
* Every param group gets `train.lr` (`unet_lr` / `text_encoder_lr` are read but never used); a LoRA
  network builds its text-encoder group first, then the unet's (toolkit/kohya_lora.py), a full
  fine-tune the unet's first.
* Its YAML loader reads ``1e-4`` (no dot) as a float (toolkit/config.py), as this reader does.

Writing: `constant`, `constant_with_warmup` (warmup from 0), `cosine` (no warmup, eta_min = floor),
`linear` (no warmup, start_factor 1, end_factor = floor) over `steps` = the run length, with
`gradient_accumulation` for accumulation; anything else is refused (ai-toolkit has no custom-class hook).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import ConfigError, Problem
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.common import expect, refuse, schedule_run
from lora_sched.trainers.documents import Document, key_text

REPO = "ostris/ai-toolkit"
COMMIT = "27a03a91f23eb1b757d5ec2e80ee3e129cfcc350"
SCHEDULER = "toolkit/scheduler.py"
BASE = "jobs/process/BaseSDTrainProcess.py"
SDTRAINER = "extensions_built_in/sd_trainer/SDTrainer.py"
CONFIG = "toolkit/config_modules.py"
#: The process types that run SDTrainer (extensions_built_in/sd_trainer/__init__.py).
TRAINER_TYPES = ("sd_trainer", "diffusion_trainer", "ui_trainer")
#: Each name get_lr_scheduler builds -> the lr_scheduler_params its class takes (others: TypeError).
PARAMS = {
    "constant": ("factor", "total_iters"),
    "linear": ("start_factor", "end_factor", "total_iters"),
    "cosine": ("eta_min", "T_max", "total_iters"),
    "cosine_with_restarts": ("eta_min", "T_0", "T_mult", "total_iters"),
    "constant_with_warmup": ("num_warmup_steps", "total_iters"),
}
#: lr_scheduler_params that ai-toolkit replaces by train.steps, and the line that does it.
REPLACED = {"total_iters": (BASE, 2235), "T_max": (SCHEDULER, 13), "T_0": (SCHEDULER, 19)}
#: Where each fact is: (path, line) at COMMIT.
LINES = {
    "linear": (SCHEDULER, 35),
    "cosine": (SCHEDULER, 14),
    "cosine_with_restarts": (SCHEDULER, 19),
    "warmup_default": (SCHEDULER, 42),
    "step": (SCHEDULER, 25),
    "fallback": (SCHEDULER, 55),
    "per_micro_batch": (SDTRAINER, 2300),
    "processes": (BASE, 776),
    "group_lr_network": (BASE, 2026),
    "group_lr_finetune": (BASE, 2150),
    "exclusive": (CONFIG, 463),
}
#: ai-toolkit's YAML float resolver (toolkit/config.py:56): exponents without a dot are floats.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$")


def cite(fact: str) -> Citation:
    path, line = LINES[fact]
    return Citation(REPO, path, line, COMMIT)


@dataclass(frozen=True)
class Settings:
    """The schedule ai-toolkit builds from one train section: `name` with `params` (replaced ones
    dropped) over `steps` scheduler steps; `accumulation` N of gradient_accumulation_steps (-1: per
    epoch), `processes` P (each iteration steps the scheduler P times)."""

    name: str
    params: dict[str, Any]
    steps: int
    lr: float
    accumulation: int
    processes: int

    @property
    def run_length(self) -> int | None:
        """Optimizer steps: iterations i < steps with i % N == N - 1."""
        return None if self.accumulation == -1 else self.steps // self.accumulation

    def scheduler_steps(self, updates: Any) -> Any:
        """The scheduler's count when update k runs: (kN + N - 1) x P."""
        n = self.accumulation
        return (np.asarray(updates, dtype=np.int64) * n + n - 1) * self.processes

    def factor(self, t: Any) -> Any:
        """The multiplier of train.lr after t scheduler steps (the classes' closed forms, T = steps):
        constant f (1 from T on); linear s + (e - s) min(t, T) / T; cosine r + (1 - r)(1 + cos(pi t / T)) / 2
        with r = eta_min / lr (restarts: t mod T); constant_with_warmup min(1, t / max(1, W))."""
        t = np.asarray(t, dtype=np.float64)
        p, T = self.params, float(self.steps)
        if self.name == "constant":
            return np.where(t < T, float(p.get("factor", 1.0)), 1.0)
        if self.name == "linear":
            s, e = float(p.get("start_factor", 1 / 3)), float(p.get("end_factor", 1.0))
            return s + (e - s) * np.minimum(t, T) / T
        if self.name in ("cosine", "cosine_with_restarts"):
            r = float(p.get("eta_min", 0.0)) / self.lr if self.lr else 0.0
            u = t % T if self.name == "cosine_with_restarts" else t
            return r + (1.0 - r) * (1.0 + np.cos(np.pi * u / T)) / 2.0
        w = float(p.get("num_warmup_steps", 1000))
        return np.where(t < w, t / max(1.0, w), 1.0)


# ---- recognising ---------------------------------------------------------------------------
def recognise(document: Document) -> int:
    """3 for ai-toolkit's job structure: {job: str, config: {process: [{type: str, ...}]}}, else 0."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("job"), str):
        return 0
    config = data.get("config")
    processes = config.get("process") if isinstance(config, dict) else None
    if not isinstance(processes, list) or not processes:
        return 0
    return 3 if all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in processes) else 0


# ---- reading values as ai-toolkit reads them --------------------------------------------------
def number(document: Document, path: tuple, what: str, default: Any = None) -> Any:
    """An int or float at `path` (a YAML ``1e-4`` string is a float, as ai-toolkit's loader reads it)."""
    value = expect(document, path, (int, float, str), what, default)
    if isinstance(value, str):
        if document.kind == "yaml" and _FLOAT.match(value):
            return float(value.replace("_", ""))
        raise ConfigError(document.problem(path, what, value))
    return value


def whole(document: Document, path: tuple, what: str, default: int, low: int) -> int:
    """An int >= low at `path` (ai-toolkit uses it in range() or as a count)."""
    value = expect(document, path, (int,), what, default)
    if value < low:
        raise ConfigError(document.problem(path, what, value))
    return value


def trainer_process(document: Document) -> tuple[int, dict[str, Any]]:
    """(index, process) of the first SDTrainer process with a train section."""
    if document.data.get("job") != "extension":
        raise ConfigError(
            document.problem(("job",), '"extension" (the job that runs SDTrainer)', document.data.get("job"))
        )
    for index, process in enumerate(document.data["config"]["process"]):
        if process.get("type") in TRAINER_TYPES:
            if not isinstance(process.get("train", {}), dict):
                raise ConfigError(
                    document.problem(("config", "process", index, "train"), "a mapping", process["train"])
                )
            return index, process
    found = ", ".join(str(p.get("type")) for p in document.data["config"]["process"])
    raise ConfigError(document.problem(("config", "process"), "a process of type " + " / ".join(TRAINER_TYPES), found))


def scheduler_params(document: Document, train: tuple, name: str) -> dict[str, Any]:
    """lr_scheduler_params as get_lr_scheduler passes them (numbers as its loader reads them)."""
    where = (*train, "lr_scheduler_params")
    given = expect(document, where, (dict,), "a mapping of the scheduler's arguments", {})
    params: dict[str, Any] = {}
    for key in given:
        if key not in PARAMS[name]:
            taken = ", ".join(PARAMS[name])
            raise ConfigError(
                document.problem(
                    (*where, key),
                    f"an argument {name} takes ({taken})",
                    repr(key),
                    "ai-toolkit passes every item to the scheduler class, which raises TypeError on others",
                )
            )
        if key in ("T_mult", "num_warmup_steps"):
            params[key] = whole(
                document,
                (*where, key),
                "an int >= 1" if key == "T_mult" else "an int >= 0",
                1,
                1 if key == "T_mult" else 0,
            )
        else:
            params[key] = number(document, (*where, key), "a number", 0)
    check_ranges(document, where, name, params)
    return params


def check_ranges(document: Document, where: tuple, name: str, params: dict[str, Any]) -> None:
    """The ranges torch's classes enforce (ValueError at start-up)."""
    ranges = {"factor": (0.0, 1.0), "start_factor": (1e-300, 1.0), "end_factor": (0.0, 1.0), "eta_min": (0.0, 1e300)}
    for key, (low, high) in ranges.items():
        if key in params and not low <= params[key] <= high:
            expected = (
                "a number in (0, 1]"
                if key == "start_factor"
                else ("a number >= 0" if key == "eta_min" else "a number in [0, 1]")
            )
            raise ConfigError(document.problem((*where, key), expected, params[key]))


def settings(document: Document, train: tuple, facts: RunFacts) -> Settings:
    """The train section's schedule, with ai-toolkit's defaults (config_modules.py TrainConfig)."""
    name = expect(document, (*train, "lr_scheduler"), (str,), "a scheduler name", "constant")
    if name == "step":
        raise ConfigError(
            document.problem(
                (*train, "lr_scheduler"),
                "a scheduler ai-toolkit can build",
                '"step"',
                f"ai-toolkit passes total_iters to torch StepLR, which raises TypeError ({cite('step')})",
            )
        )
    if name not in PARAMS:
        raise ConfigError(
            document.problem(
                (*train, "lr_scheduler"),
                "one of " + ", ".join(PARAMS),
                repr(name),
                f"every other name reaches a diffusers function that rejects total_iters ({cite('fallback')})",
            )
        )
    lr = number(document, (*train, "lr"), "a learning rate (a number >= 0)", 1e-6)
    if lr < 0:
        raise ConfigError(document.problem((*train, "lr"), "a learning rate (a number >= 0)", lr))
    steps = whole(document, (*train, "steps"), "an int >= 1 (iterations of the training loop)", 1000, 1)
    legacy = expect(document, (*train, "gradient_accumulation_steps"), (int,), "an int (-1: a whole epoch)", 1)
    batches = whole(document, (*train, "gradient_accumulation"), "an int >= 1", 1, 1)
    if batches > 1 and legacy != 1:
        raise ConfigError(
            document.problem(
                (*train, "gradient_accumulation_steps"),
                "1 with gradient_accumulation",
                legacy,
                f"ai-toolkit refuses both ({cite('exclusive')})",
            )
        )
    accumulation = -1 if legacy == -1 else max(1, legacy)
    params = scheduler_params(document, train, name)
    kept = {k: v for k, v in params.items() if k not in REPLACED}
    return Settings(name, kept, steps, float(lr), accumulation, facts.processes)


def groups_of(document: Document, index: int, process: dict[str, Any], lr: float) -> dict[str, float]:
    """Every group's base LR (all train.lr), in the order ai-toolkit builds them."""
    train = ("config", "process", index, "train")
    unet = expect(document, (*train, "train_unet"), (bool,), "true or false", True)
    text = expect(document, (*train, "train_text_encoder"), (bool,), "true or false", False)
    for other in ("embedding", "adapter"):
        if process.get(other) is not None and process.get("network") is None:
            raise ConfigError(
                document.problem(
                    ("config", "process", index, other),
                    "a LoRA (network) or full fine-tune",
                    f"an {other} process",
                    "lora_sched reads the LR of LoRA and fine-tune runs",
                )
            )
    order = [("text_encoder", text), ("unet", unet)]
    if process.get("network") is None:
        order.reverse()
    groups = {role: lr for role, on in order if on}
    if not groups:
        raise ConfigError(document.problem((*train, "train_unet"), "train_unet or train_text_encoder true", False))
    return groups


# ---- quirks -------------------------------------------------------------------------------------
#: lr_scheduler quirks: name -> (what ai-toolkit really does, what to write instead, the fact cited).
NAME_QUIRKS = {
    "linear": (
        "torch LinearLR from {start:.6g} x lr to {end:.6g} x lr over train.steps "
        "(defaults start_factor 1/3, end_factor 1: the LR rises)",
        "lr_scheduler_params: {{start_factor: 1.0, end_factor: 0.0}} for a linear decay "
        "(ai-toolkit has no warmup for it)",
        "linear",
    ),
    "cosine": (
        "torch CosineAnnealingLR over exactly train.steps, with no warmup",
        "ai-toolkit has no warmup for cosine (only constant_with_warmup has one)",
        "cosine",
    ),
    "cosine_with_restarts": (
        "one cosine decay: T_0 is replaced by train.steps, so it never restarts",
        "no setting makes it restart; it runs as `cosine`",
        "cosine_with_restarts",
    ),
    "constant_with_warmup": (
        "a warmup of 1000 steps from 0 (its default)",
        "set lr_scheduler_params.num_warmup_steps",
        "warmup_default",
    ),
}


def name_quirk_applies(s: Settings, params_given: dict[str, Any]) -> bool:
    """linear: unless it decays from the full LR (start_factor 1, end_factor < 1); cosine and
    cosine_with_restarts: always; constant_with_warmup: without num_warmup_steps."""
    if s.name == "linear":
        return s.params.get("start_factor", 1 / 3) != 1.0 or s.params.get("end_factor", 1.0) >= 1.0
    if s.name == "constant_with_warmup":
        return "num_warmup_steps" not in params_given
    return s.name in NAME_QUIRKS


def quirks(document: Document, train: tuple, s: Settings) -> list[Problem]:
    """The ways this file's curve differs from what its names promise, located in the file."""
    found: list[tuple[tuple, Quirk]] = []
    given = document.data["config"]["process"][train[2]].get("train") or {}
    params_given = given.get("lr_scheduler_params") or {}
    if name_quirk_applies(s, params_given):
        what, instead, fact = NAME_QUIRKS[s.name]
        factors = {"start": s.params.get("start_factor", 1 / 3), "end": s.params.get("end_factor", 1.0)}
        where = (*train, "lr_scheduler")
        found.append((where, Quirk(key_text(where), what.format(**factors), instead.format(), cite(fact))))
    for key, (path, line) in REPLACED.items():
        if key in params_given:
            at = (*train, "lr_scheduler_params", key)
            what = f"replaced by train.steps ({s.steps})"
            instead = "remove it: every ai-toolkit schedule spans train.steps"
            found.append((at, Quirk(key_text(at), what, instead, Citation(REPO, path, line, COMMIT))))
    found += run_quirks(document, train, s, given)
    return [q.problem().located(document.source, document.line_of(path)) for path, q in found]


def run_quirks(document: Document, train: tuple, s: Settings, given: dict[str, Any]) -> list[tuple[tuple, Quirk]]:
    """Quirks of counting (accumulation, processes) and of the per-group LRs."""
    found = []
    n = s.accumulation
    if n > 1:
        at = (*train, "gradient_accumulation_steps")
        what = (
            f"the scheduler steps on every micro-batch: train.steps ({s.steps}) counts micro-batches, the run "
            f"makes {s.run_length} optimizer steps and update k uses the LR of micro-batch {n}k + {n - 1}"
        )
        instead = f"gradient_accumulation: {n} (one optimizer and one scheduler step per accumulated batch)"
        found.append((at, Quirk(key_text(at), what, instead, cite("per_micro_batch"))))
    if s.processes > 1:
        at = (*train, "lr_scheduler")
        what = f"accelerate steps the (prepared) scheduler {s.processes} times per iteration: the curve runs faster"
        instead = "run on one process (only a warmup compensates: num_warmup_steps x processes)"
        found.append((at, Quirk(key_text(at), what, instead, cite("processes"))))
    network = document.data["config"]["process"][train[2]].get("network") is not None
    for key in ("unet_lr", "text_encoder_lr"):
        if given.get(key) is not None and number(document, (*train, key), "a number") != s.lr:
            at = (*train, key)
            what, instead = "ignored: every param group gets train.lr", "set train.lr (one LR for every group)"
            found.append(
                (at, Quirk(key_text(at), what, instead, cite("group_lr_network" if network else "group_lr_finetune")))
            )
    return found


# ---- reading -----------------------------------------------------------------------------------
def catalogue_values(s: Settings) -> dict[str, Any] | None:
    """lora_sched's (kohya-named) values for the same curve, where a catalogue schedule is exact."""
    p = s.params
    base: dict[str, Any] = {"learning_rate": s.lr, "max_train_steps": s.steps}
    if s.accumulation != 1 or s.processes != 1:
        return None
    if s.name == "constant" and p.get("factor", 1.0) == 1.0:
        return {**base, "lr_scheduler": "constant"}
    if s.name == "linear" and p.get("start_factor", 1 / 3) == 1.0:
        end = float(p.get("end_factor", 1.0))
        if end == 1.0:
            return {**base, "lr_scheduler": "constant"}
        return {**base, "lr_scheduler": "linear", "lr_scheduler_args": {"min_lr_ratio": end}}
    if s.name in ("cosine", "cosine_with_restarts") and s.lr > 0:
        floor = float(p.get("eta_min", 0.0)) / s.lr
        if floor < 1.0:
            return {**base, "lr_scheduler": "cosine", "lr_scheduler_args": {"min_lr_ratio": floor}}
    if s.name == "constant_with_warmup":
        warmup = p.get("num_warmup_steps", 1000)
        if warmup == 0:
            return {**base, "lr_scheduler": "constant"}
        if warmup < s.steps:
            return {**base, "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": warmup}
    return None


def origins_of(train: tuple) -> dict[str, tuple]:
    params = (*train, "lr_scheduler_params")
    return {
        "learning_rate": (*train, "lr"),
        "max_train_steps": (*train, "steps"),
        "lr_scheduler": (*train, "lr_scheduler"),
        "lr_warmup_steps": (*params, "num_warmup_steps"),
        "lr_scheduler_args": params,
    }


def counting_of(s: Settings, given: dict[str, Any]) -> str:
    """How the run length is counted: train.steps iterations, / N with legacy accumulation."""
    text = f"train.steps = {s.steps}" + ("" if "steps" in given else " (its default)")
    if s.accumulation == -1:
        return text + "; gradient_accumulation_steps = -1 steps the optimizer once per epoch (not counted here)"
    if s.accumulation > 1:
        text += f" micro-batches / gradient_accumulation_steps {s.accumulation} = {s.run_length} optimizer steps"
    return text


def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run of the file's SDTrainer process as ai-toolkit runs it (see the module docstring)."""
    index, process = trainer_process(document)
    train = ("config", "process", index, "train")
    s = settings(document, train, facts)
    groups = groups_of(document, index, process, s.lr)
    warnings = quirks(document, train, s)
    counting = counting_of(s, process.get("train") or {})
    summary = f"{s.name}{' ' + str(s.params) if s.params else ''} over {s.steps} steps"
    if not s.run_length:
        why = counting if s.accumulation == -1 else counting + ": no optimizer step"
        return TrainerRun("ai-toolkit", document.source, groups, None, why, warnings=tuple(warnings), summary=summary)
    values = catalogue_values(s)
    if values is not None:
        return schedule_run("ai-toolkit", document, values, origins_of(train), groups, counting, warnings, summary)

    def own(steps: Any) -> dict[str, Any]:
        m = s.factor(s.scheduler_steps(steps))
        return {group: base * m for group, base in groups.items()}

    return TrainerRun(
        "ai-toolkit",
        document.source,
        groups,
        s.run_length,
        counting,
        own_lrs=own,
        warnings=tuple(warnings),
        summary=summary,
    )


# ---- writing -----------------------------------------------------------------------------------
def schedule_for(run: TrainerRun, lr: float, processes: int) -> tuple[str, dict[str, Any]]:
    """(lr_scheduler, lr_scheduler_params) of ai-toolkit giving run.resolved's curve, or a refusal."""
    resolved = run.resolved
    p = dict(resolved.params)
    name = "constant_with_warmup" if resolved.name == "constant" and resolved.warmup else resolved.name
    floor = float(p.get("min_lr_ratio") or 0.0)
    if (
        name == "cosine_with_restarts"
        and p.get("num_cycles") == 1
        and p.get("restart_decay", 1) == 1
        and not p.get("cycle_warmup")
    ):
        name = "cosine"
    if name == "polynomial" and p.get("power") == 1.0 and lr > 0:
        name, floor = "linear", float(p.get("lr_end") or 0.0) / lr
    if resolved.warmup and name != "constant_with_warmup":
        raise refuse(
            "lr_warmup_steps",
            "ai-toolkit",
            f"a {resolved.warmup}-step warmup before {resolved.name}: its only warmup is constant_with_warmup's",
            f"constant_with_warmup (num_warmup_steps: {resolved.warmup}), or "
            f"{'linear' if name in ('linear', 'polynomial') else 'cosine'} without warmup",
        )
    if name == "constant_with_warmup" and (resolved.warmup_start != 0.0 or resolved.warmup_type != "linear"):
        raise refuse(
            "warmup_start",
            "ai-toolkit",
            f"a {resolved.warmup_type} warmup from {resolved.warmup_start} x lr: "
            "constant_with_warmup rises linearly from 0",
            "constant_with_warmup (from 0)",
        )
    if processes > 1 and name not in ("constant", "constant_with_warmup"):
        raise refuse(
            "--num-processes",
            "ai-toolkit",
            f"{name} on {processes} processes: accelerate steps the "
            "scheduler once per process and every schedule spans train.steps",
            "run it on one process",
        )
    if name == "constant":
        return "constant", {}
    if name == "constant_with_warmup":
        return name, {"num_warmup_steps": resolved.warmup * processes}
    if name == "cosine" and p.get("num_cycles", 1) == 1:
        return "cosine", ({"eta_min": floor * lr} if floor else {})
    if name == "linear" and floor <= 1.0:  # torch LinearLR takes end_factor in [0, 1]
        return "linear", {"start_factor": 1.0, "end_factor": floor}
    raise refuse(
        "lr_scheduler",
        "ai-toolkit",
        f"{resolved.name} with {p}: its schedules are constant, "
        "constant_with_warmup, linear and cosine over train.steps, and it has no custom-class hook",
        "cosine (or linear) without warmup over the same steps",
    )


def write(run: TrainerRun, facts: RunFacts) -> str:
    """An ai-toolkit job (YAML) whose SDTrainer runs `run`'s curve exactly, or a refusal."""
    import yaml

    resolved = run.resolved
    if resolved is None:
        raise refuse(
            "lr_scheduler",
            "ai-toolkit",
            f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses",
            "preview it with --csv and pick the nearest catalogue schedule",
        )
    lrs = sorted(set(run.roles.values()))
    if len(lrs) != 1:
        raise refuse(
            "unet_lr",
            "ai-toolkit",
            f"different LRs per group ({dict(run.roles)}): every group gets train.lr",
            f"one LR for all groups, e.g. train.lr: {run.roles.get('unet', lrs[-1])}",
        )
    if resolved.horizon != resolved.run_length:
        raise refuse(
            "schedule_steps",
            "ai-toolkit",
            f"a horizon of {resolved.horizon} steps in a run of {resolved.run_length}: "
            "every ai-toolkit schedule spans train.steps",
            "the schedule over the whole run",
        )
    roles = set(run.roles)
    if not roles <= {"unet", "text_encoder", "text_encoder_2"}:
        raise refuse("groups", "ai-toolkit", f"param groups {sorted(roles)}", "unet and text_encoder groups")
    name, params = schedule_for(run, lrs[0], facts.processes)
    values = getattr(run.schedule, "values", {}) or {}
    train: dict[str, Any] = {"steps": resolved.run_length, "lr": lrs[0], "lr_scheduler": name}
    if params:
        train["lr_scheduler_params"] = params
    train["batch_size"] = int(values.get("train_batch_size") or 1)
    train["gradient_accumulation"] = int(values.get("gradient_accumulation_steps") or 1)
    train["train_unet"] = "unet" in roles
    train["train_text_encoder"] = bool(roles & {"text_encoder", "text_encoder_2"})
    job = {
        "job": "extension",
        "config": {
            "name": "lora_sched",
            "process": [{"type": "sd_trainer", "network": {"type": "lora"}, "train": train}],
        },
    }
    check_written(run, Settings(name, params, resolved.run_length, float(lrs[0]), 1, facts.processes))
    return yaml.safe_dump(job, sort_keys=False)


def check_written(run: TrainerRun, s: Settings) -> None:
    """The written settings' curve equals the run's at every step (rel 1e-9), else a refusal."""
    steps = np.arange(s.steps)
    mine = s.factor(s.scheduler_steps(steps))
    for group, want in run.lrs(steps).items():
        got = run.roles[group] * mine
        if not np.allclose(got, want, rtol=1e-9, atol=1e-15 * float(run.roles[group])):
            raise refuse(
                "lr_scheduler",
                "ai-toolkit",
                f"{run.resolved.name} over {s.steps} steps for {group}: {s.name} {s.params} differs",
                "preview both curves with --csv",
            )


TRAINER = Trainer(
    name="ai-toolkit",
    title="ai-toolkit",
    formats=("yaml", "json"),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".yaml",
    summary="ostris ai-toolkit job files (config/examples/*.yaml, its UI's JSON): SDTrainer's train section",
)
