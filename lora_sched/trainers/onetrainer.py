"""OneTrainer (Nerogar/OneTrainer): its training config JSON (the UI's "save config", its presets, the
`scripts/train.py --config-path` file), read as OneTrainer's TrainConfig and create_lr_scheduler read it.

Facts (OneTrainer at COMMIT), each cited where a quirk uses it:

* keys and defaults (TrainConfig.default_values): learning_rate_scheduler CONSTANT, learning_rate 3e-6,
  learning_rate_warmup_steps 200.0, learning_rate_cycles 1.0, learning_rate_min_factor 0.0, epochs 100,
  batch_size 1, gradient_accumulation_steps 1, learning_rate_scaler NONE; each model part (unet, prior,
  transformer, text_encoder, text_encoder_2 ...) has its own "learning_rate" (null: the global one) and
  "train"; an absent key keeps its default (BaseConfig.from_dict), a preset without "__version" is
  read without migrations, as the UI reads its presets;
* run length: T = int(L x epochs / accumulation), L = the batches of one epoch (its data loader drops
  partial batches per aspect bucket); warmup W = int(w / accumulation) for w > 1, int(w x T) for
  0 < w <= 1, else 0; the schedule is drawn over S = T - W steps after the warmup; the LR of update s is
  base x s / W during the warmup, then base x f(s - W) with the floor
  m = min_factor + (1 - min_factor) x value (lr_scheduler_util.py);
* param groups: the trained text encoders first (text_encoder, text_encoder_2 ...), then the denoiser;
  each group's LR is its part's learning_rate (else the global one) x sqrt(learning_rate_scaler's scale);
* CUSTOM: `custom_learning_rate_scheduler` ("module.Class") is built with each scheduler_params item
  {"key": ..., "value": text} read by ast.literal_eval (or %LR%, %EPOCHS%, %STEPS_PER_EPOCH%,
  %TOTAL_STEPS%, %SCHEDULER_STEPS%), behind OneTrainer's own warmup (a SequentialLR) when W > 0.

lora_sched's `--steps-per-epoch` is L here: the batches per epoch OneTrainer's "step" bar shows (the
optimizer steps per epoch when accumulation is 1).
"""

from __future__ import annotations

import math
from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import ConfigError, Problem
from lora_sched.torch.export import LORA_SCHED_LR
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.common import own_curve_refusal, per_epoch, refuse, schedule_run
from lora_sched.trainers.documents import Document

REPO = "Nerogar/OneTrainer"
COMMIT = "23df3832e8f213d64c337e39f9365ba46e99fed0"
NAME = "onetrainer"
VERSION = 11  #: TrainConfig's config_version at COMMIT
SCHEDULERS = (
    "CONSTANT",
    "LINEAR",
    "COSINE",
    "COSINE_WITH_RESTARTS",
    "COSINE_WITH_HARD_RESTARTS",
    "REX",
    "ADAFACTOR",
    "CUSTOM",
)
SCHEDULE_FREE = ("SCHEDULE_FREE_ADAMW", "SCHEDULE_FREE_SGD", "PRODIGY_PLUS_SCHEDULE_FREE")
SCALERS = ("NONE", "BATCH", "GLOBAL_BATCH", "GRADIENT_ACCUMULATION", "BOTH", "GLOBAL_BOTH")
METHODS = ("FINE_TUNE", "LORA", "EMBEDDING", "FINE_TUNE_VAE")
UNITS = ("EPOCH", "STEP", "SECOND", "MINUTE", "HOUR", "NEVER", "ALWAYS")
_SD = tuple(f"STABLE_DIFFUSION_{v}" for v in ("15", "15_INPAINTING", "20", "20_BASE", "20_INPAINTING", "20_DEPTH"))
_SD += ("STABLE_DIFFUSION_21", "STABLE_DIFFUSION_21_BASE")
#: model type -> (denoiser part, text encoder parts that get a param group, in the optimizer's order)
MODEL_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{m: ("unet", ("text_encoder",)) for m in _SD},
    "STABLE_DIFFUSION_3": ("transformer", ("text_encoder", "text_encoder_2", "text_encoder_3")),
    "STABLE_DIFFUSION_35": ("transformer", ("text_encoder", "text_encoder_2", "text_encoder_3")),
    "STABLE_DIFFUSION_XL_10_BASE": ("unet", ("text_encoder", "text_encoder_2")),
    "STABLE_DIFFUSION_XL_10_BASE_INPAINTING": ("unet", ("text_encoder", "text_encoder_2")),
    "WUERSTCHEN_2": ("prior", ("text_encoder",)),
    "STABLE_CASCADE_1": ("prior", ("text_encoder",)),
    "FLUX_DEV_1": ("transformer", ("text_encoder", "text_encoder_2")),
    "FLUX_FILL_DEV_1": ("transformer", ("text_encoder", "text_encoder_2")),
    "HUNYUAN_VIDEO": ("transformer", ("text_encoder", "text_encoder_2")),
    "HI_DREAM_FULL": ("transformer", ("text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4")),
    **{m: ("transformer", ("text_encoder",)) for m in ("PIXART_ALPHA", "PIXART_SIGMA", "SANA", "CHROMA_1", "QWEN")},
    **{m: ("transformer", ()) for m in ("FLUX_2", "ANIMA", "KREA_2", "Z_IMAGE", "ERNIE", "IDEOGRAM_4")},
}
#: the model type write() uses for a run of another trainer, by its number of text encoder groups
_WRITE_MODEL = {0: "STABLE_DIFFUSION_15", 1: "STABLE_DIFFUSION_15", 2: "STABLE_DIFFUSION_XL_10_BASE"}
_WRITE_MODEL.update({3: "STABLE_DIFFUSION_3", 4: "HI_DREAM_FULL"})


def _cite(path: str, line: int) -> Citation:
    return Citation(REPO, path, line, COMMIT)


_CREATE, _UTIL = "modules/util/create.py", "modules/util/lr_scheduler_util.py"
_CONFIG = "modules/util/config/TrainConfig.py"
Q_WARMUP_ACCUM = (_CREATE, 1128)
Q_WARMUP_FRACTION = (_CREATE, 1130)
Q_DEFAULT_WARMUP = (_CONFIG, 1062)
Q_RESTARTS = (_UTIL, 56)
Q_SCHEDULE_FREE = (_CREATE, 1137)
Q_SCALER = ("modules/util/NamedParameterGroup.py", 41)
Q_CUSTOM_WARMUP = (_CREATE, 1213)
Q_CUSTOM_LR = (_CREATE, 1193)
Q_TE_STOP = ("modules/modelSetup/BaseModelSetup.py", 235)


# ---- recognising -----------------------------------------------------------------------------
def recognise(document: Document) -> int:
    """3 for a JSON object with two of OneTrainer's marks (its scheduler / model type / training
    method enum names, "__version" with "concept_file_name"), 2 with one, else 0."""
    data = document.data
    if document.kind != "json" or not isinstance(data, dict):
        return 0
    marks = [
        data.get("learning_rate_scheduler") in SCHEDULERS,
        data.get("model_type") in MODEL_PARTS,
        data.get("training_method") in METHODS,
        "__version" in data and "concept_file_name" in data,
    ]
    return 3 if sum(marks) >= 2 else 2 if any(marks) else 0


# ---- values as TrainConfig reads them ------------------------------------------------------------
def _get(document: Document, path: tuple) -> tuple[bool, Any]:
    node: Any = document.data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _number(document: Document, path: tuple, kind: type, default: Any, nullable: bool = False) -> Any:
    """float(x) / int(x) as BaseConfig.from_dict converts (numeric text too); a value it cannot
    convert (OneTrainer prints "Could not set" and keeps its default) is an error here."""
    present, value = _get(document, path)
    if not present or (value is None and nullable):
        return default if not present else None
    what = "a number" if kind is float else "an integer"
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            out = kind(value)
        except (TypeError, ValueError, OverflowError):
            out = None
        if out is not None and math.isfinite(out):
            return out
    hint = f"OneTrainer would print `Could not set {path[-1]}` and use {default!r}"
    raise ConfigError(document.problem(path, what, value, hint))


def _enum(document: Document, path: tuple, names: tuple[str, ...], default: str) -> str:
    present, value = _get(document, path)
    if not present:
        return default
    if isinstance(value, str) and value in names:
        return value
    from lora_sched.errors import did_you_mean

    hint = did_you_mean(str(value), names) if isinstance(value, str) else ""
    raise ConfigError(document.problem(path, "one of " + ", ".join(names), value, hint))


def _flag(document: Document, path: tuple, default: bool) -> bool:
    present, value = _get(document, path)
    if not present:
        return default
    if isinstance(value, bool):
        return value
    raise ConfigError(document.problem(path, "true or false", value))


def _part_path(document: Document, part: str, key: str) -> tuple:
    """Where a part's key sits in this file: files before config version 9 keep the transformer
    under "prior" (TrainConfig migration 8); version 0-1 files use flat keys (migration 1)."""
    version = document.data.get("__version")
    if not isinstance(version, int) or isinstance(version, bool) or version >= VERSION:
        return (part, key)
    old = "prior" if part == "transformer" and document.data.get("model_type") not in _CASCADE else part
    if version >= 2:
        return (old, key)
    return (f"{old}_learning_rate",) if key == "learning_rate" else (f"train_{old}",)


_CASCADE = ("STABLE_CASCADE_1", "WUERSTCHEN_2")


# ---- the settings --------------------------------------------------------------------------------
def _settings(document: Document) -> dict[str, Any]:
    """The schedule settings with OneTrainer's defaults (TrainConfig.default_values) for absent keys."""
    doc = document
    return {
        "scheduler": _enum(doc, ("learning_rate_scheduler",), SCHEDULERS, "CONSTANT"),
        "lr": _number(doc, ("learning_rate",), float, 3e-6),
        "warmup": _number(doc, ("learning_rate_warmup_steps",), float, 200.0),
        "cycles": _number(doc, ("learning_rate_cycles",), float, 1.0),
        "min_factor": _number(doc, ("learning_rate_min_factor",), float, 0.0),
        "epochs": _number(doc, ("epochs",), int, 100),
        "batch_size": _number(doc, ("batch_size",), int, 1),
        "accumulation": _number(doc, ("gradient_accumulation_steps",), int, 1),
        "scaler": _enum(doc, ("learning_rate_scaler",), SCALERS, "NONE"),
        "model_type": _enum(doc, ("model_type",), tuple(MODEL_PARTS), "STABLE_DIFFUSION_15"),
        "method": _enum(doc, ("training_method",), METHODS, "FINE_TUNE"),
        "optimizer": _get(doc, ("optimizer", "optimizer"))[1],
        "embedding_lr": _number(doc, ("embedding_learning_rate",), float, None, nullable=True),
    }


def _check_counts(document: Document, s: dict[str, Any]) -> None:
    for key, path in (("epochs", ("epochs",)), ("batch_size", ("batch_size",))):
        if s[key] < 1:
            raise ConfigError(document.problem(path, "an integer >= 1", s[key]))
    if s["accumulation"] < 1:  # OneTrainer divides by it
        raise ConfigError(document.problem(("gradient_accumulation_steps",), "an integer >= 1", s["accumulation"]))


def _scale(s: dict[str, Any], processes: int) -> float:
    """sqrt of learning_rate_scaler's scale (LearningRateScaler.get_scale, NamedParameterGroup.py:41)."""
    batch, accum = s["batch_size"], s["accumulation"]
    scale = {"NONE": 1, "BATCH": batch, "GLOBAL_BATCH": batch * processes, "GRADIENT_ACCUMULATION": accum}
    scale.update({"BOTH": accum * batch, "GLOBAL_BOTH": accum * batch * processes})
    return scale[s["scaler"]] ** 0.5


def _groups(document: Document, s: dict[str, Any], processes: int) -> tuple[dict[str, float], dict[str, tuple]]:
    """(role -> base LR in the optimizer's order, role -> path of its LR): the trained text encoders,
    then the denoiser (each model setup's create_parameters); EMBEDDING training: one embedding group."""
    scale = _scale(s, processes)
    if s["method"] == "EMBEDDING":
        lr = s["embedding_lr"] if s["embedding_lr"] is not None else s["lr"]
        path = ("embedding_learning_rate",) if s["embedding_lr"] is not None else ("learning_rate",)
        return {"embedding": lr * scale}, {"embedding": path}
    denoiser, encoders = MODEL_PARTS[s["model_type"]]
    groups: dict[str, float] = {}
    paths: dict[str, tuple] = {}
    for part in (*encoders, denoiser):
        if not _flag(document, _part_path(document, part, "train"), True):
            continue
        path = _part_path(document, part, "learning_rate")
        lr = _number(document, path, float, None, nullable=True)
        role = "unet" if part == denoiser else part
        groups[role] = (s["lr"] if lr is None else lr) * scale
        paths[role] = path if lr is not None else ("learning_rate",)
    return groups, paths


def _length(s: dict[str, Any], facts: RunFacts) -> tuple[int | None, int | None, str]:
    """(L batches per epoch, T optimizer steps, how counted): T = int(L x epochs / accumulation)."""
    batches, text = per_epoch(facts, facts.samples_per_epoch, s["batch_size"], 1, drop_last=True)
    if facts.steps_per_epoch is not None:
        text = f"{batches} batches per epoch (--steps-per-epoch, OneTrainer's step bar)"
    if batches is None:
        return None, None, text
    total = int(batches * s["epochs"] / s["accumulation"])
    text += f" x {s['epochs']} epochs"
    if s["accumulation"] > 1:
        text += f" / accumulation {s['accumulation']}"
    return batches, total, f"{text} = {total} steps"


def _warmup(w: float, accumulation: int, total: int) -> int:
    """create_lr_scheduler: w > 1 is steps (divided by the accumulation), 0 < w <= 1 a fraction of T."""
    if w > 1:
        return int(w / accumulation)
    if 0 < w <= 1:
        return int(w * total)
    return 0


# ---- the curve -----------------------------------------------------------------------------------
def _catalogue(name: str, cycles: float, floor: float, warmup: int) -> tuple[str, dict[str, Any]] | None:
    """The catalogue schedule drawing OneTrainer's curve exactly (p = (s - W) / (T - W) in both), or None.

    COSINE: 0.5 (1 + cos(pi p)); COSINE_WITH_RESTARTS: 0.5 (1 + cos(2 pi c p)), a smooth cosine of c
    whole periods = lora_sched cosine with 2c half-cosines; COSINE_WITH_HARD_RESTARTS: c hard
    restarts (an integer c >= 1); REX: d = 0.9; LINEAR: 1 - p. Each floored at r + (1 - r) value."""
    if name == "CONSTANT":
        return ("constant_with_warmup" if warmup else "constant"), {}
    if not 0.0 <= floor < 1.0:
        return None
    floor_arg = {"min_lr_ratio": floor}
    if name == "LINEAR":
        return "linear", floor_arg
    if name == "COSINE":
        return "cosine", {"num_cycles": 1, **floor_arg}
    if name == "COSINE_WITH_RESTARTS" and 0 < 2 * cycles <= 10_000:
        return "cosine", {"num_cycles": 2 * cycles, **floor_arg}
    if name == "COSINE_WITH_HARD_RESTARTS" and cycles == int(cycles) and 1 <= cycles <= 100_000:
        return "cosine_with_restarts", {"num_cycles": int(cycles), **floor_arg}
    if name == "REX":
        return "rex", {"d": 0.9, **floor_arg}
    return None


def _own_multipliers(name: str, cycles: float, floor: float, warmup: int, total: int) -> Any:
    """OneTrainer's own lambdas (lr_scheduler_util.py), in its operation order, for every step of the run."""
    s = np.arange(total, dtype=np.float64)
    steps = total - warmup
    k = np.maximum(s - warmup, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "LINEAR":
            value = np.maximum(0.0, (steps - k) / steps)
        elif name == "COSINE":
            value = np.maximum(0.0, 0.5 * (1.0 + np.cos(k / steps * math.pi)))
        elif name == "COSINE_WITH_RESTARTS":
            p = np.minimum(k, steps - 1) / steps
            value = np.maximum(0.0, 0.5 * (1.0 + np.cos(p * 2.0 * math.pi * cycles)))
        elif name == "COSINE_WITH_HARD_RESTARTS":
            p = np.minimum(k, steps - 1) / steps
            value = np.maximum(0.0, 0.5 * (1.0 + np.cos(((p * cycles) % 1.0) * math.pi)))
        elif name == "REX":
            p = k / steps
            value = np.where(k < steps, (1 - p) / ((1 - 0.9) + (0.9 * (1 - p))), 0.0)
        else:
            value = np.ones_like(s)
        m = value if name == "CONSTANT" else floor + (1.0 - floor) * value
        if warmup > 0:
            m = np.where(s < warmup, s / max(warmup, 1), m)
    return m


def _own_lrs(groups: dict[str, float], m: Any) -> Any:
    def lrs(steps: Any) -> dict[str, Any]:
        at = m[np.asarray(steps, dtype=np.int64)]
        return {role: at * base for role, base in groups.items()}

    return lrs


# ---- CUSTOM: the user's class behind OneTrainer's warmup ------------------------------------------
def _custom_args(document: Document, s: dict[str, Any], numbers: dict[str, Any]) -> dict[str, Any]:
    """scheduler_params as create_lr_scheduler reads them: {"key", "value"} items, each value text read
    by ast.literal_eval unless it is one of the %...% placeholders (`numbers`)."""
    import ast

    present, items = _get(document, ("scheduler_params",))
    if not present or items is None:
        return {}
    if not isinstance(items, list):
        raise ConfigError(document.problem(("scheduler_params",), 'a list of {"key": ..., "value": ...}', items))
    args: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise ConfigError(document.problem(("scheduler_params", i), '{"key": name, "value": text}', item))
        value = item["value"]
        if isinstance(value, str) and value in numbers:
            args[item["key"]] = numbers[value]
            continue
        try:
            args[item["key"]] = ast.literal_eval(value) if isinstance(value, str) else _no_literal(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            hint = 'OneTrainer reads each value with ast.literal_eval: write text such as "0.5" or "\'cosine\'"'
            where = ("scheduler_params", i, "value")
            raise ConfigError(document.problem(where, "a Python literal as text", value, hint)) from None
    return args


def _no_literal(value: Any) -> Any:
    raise ValueError(f"{value!r} is not text")


def _step_class(cls: type, args: dict[str, Any], groups: dict[str, float], warmup: int, total: int) -> Any:
    """Every update's LRs as create_lr_scheduler builds the class (last_epoch -1 at a fresh start),
    behind LambdaLR(s / W) in a SequentialLR with milestone W when W > 0, stepped once per update."""
    import warnings

    import torch
    from torch.optim.lr_scheduler import LambdaLR, SequentialLR

    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr, "initial_lr": lr} for lr in groups.values()]
    optimizer = torch.optim.SGD(params, lr=1.0)
    table = np.empty((total, len(groups)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = cls(optimizer=optimizer, last_epoch=-1, **args)
        inner = scheduler
        if warmup > 0:
            ramp = LambdaLR(optimizer=optimizer, lr_lambda=lambda s: s / warmup if s < warmup else 1, last_epoch=-1)
            scheduler = SequentialLR(optimizer, schedulers=[ramp, scheduler], milestones=[warmup], last_epoch=-1)
        for step in range(total):
            table[step] = [float(g["lr"]) for g in optimizer.param_groups]
            optimizer.step()
            scheduler.step()
    return table, inner


def _custom_run(document: Document, s: dict[str, Any], facts: RunFacts, groups: dict[str, float], shape: tuple) -> Any:
    """(own_lrs, resolved or None): the class stepped through torch; a LoraSchedLR without OneTrainer's
    warmup whose run length is OneTrainer's gives its resolved schedule (exportable)."""
    batches, total, warmup = shape
    path = ("custom_learning_rate_scheduler",)
    type_path = _get(document, path)[1]
    if not isinstance(type_path, str) or "." not in type_path:
        hint = "OneTrainer needs the class as <module>.<Class>, e.g. torch.optim.lr_scheduler.CosineAnnealingLR"
        raise ConfigError(document.problem(path, "a class path module.Class", type_path, hint))
    numbers = {"%LR%": s["lr"], "%EPOCHS%": s["epochs"], "%STEPS_PER_EPOCH%": batches, "%TOTAL_STEPS%": total}
    numbers["%SCHEDULER_STEPS%"] = total - warmup
    args = _custom_args(document, s, numbers)
    from lora_sched.torch.custom.policy import resolve_class

    cls, problems = resolve_class(type_path, trust=facts.trust_scheduler_code)
    line = document.line_of(path)
    if problems:
        raise ConfigError([p.located(document.source, line, key=path[0]) for p in problems])
    try:
        table, inner = _step_class(cls, args, groups, warmup, total)
    except Exception as exc:  # the class's own argument checks
        expected = f"a class {type_path}(**scheduler_params) can build"
        raise ConfigError(document.problem(path, expected, str(exc))) from None
    resolved = getattr(inner, "resolved", None) if type_path == LORA_SCHED_LR and warmup == 0 else None
    if resolved is not None and (resolved.run_length != total or getattr(inner, "num_processes", 1) != 1):
        resolved = None
    roles = list(groups)

    def lrs(steps: Any) -> dict[str, Any]:
        rows = table[np.asarray(steps, dtype=np.int64)]
        return {role: rows[:, i] for i, role in enumerate(roles)}

    return (None if resolved is not None else lrs), resolved


# ---- quirks --------------------------------------------------------------------------------------
def _quirk(document: Document, path: tuple, what: str, instead: str, cited: tuple[str, int]) -> Problem:
    key = ".".join(str(p) for p in path)
    return Quirk(key, what, instead, _cite(*cited)).problem().located(document.source, document.line_of(path))


def _warmup_quirks(document: Document, s: dict[str, Any], total: int | None) -> list[Problem]:
    w, accum, path = s["warmup"], s["accumulation"], ("learning_rate_warmup_steps",)
    out = []
    if s["optimizer"] in SCHEDULE_FREE:
        return out
    if w > 1 and accum > 1:
        what = f"{w:g} steps divided by gradient_accumulation_steps {accum}: {int(w / accum)} optimizer steps of warmup"
        instead = f"write the warmup you want x {accum} (e.g. {int(w) * accum} for {int(w)} steps)"
        out.append(_quirk(document, path, what, instead, Q_WARMUP_ACCUM))
    if 0 < w <= 1:
        steps = f"{int(w * total)} steps" if total is not None else "that share of the run"
        what = f"{w:g} read as a fraction of the run ({steps}), not as steps"
        out.append(_quirk(document, path, what, "write a number above 1 for a warmup in steps", Q_WARMUP_FRACTION))
    if not _get(document, path)[0]:
        what = "no warmup set: OneTrainer's default warmup of 200 steps applies"
        out.append(_quirk(document, path, what, "write learning_rate_warmup_steps: 0 for none", Q_DEFAULT_WARMUP))
    return out


def _stop_quirks(document: Document, s: dict[str, Any], groups: dict[str, float]) -> list[Problem]:
    """A trained part whose stop_training_after elapses (text encoders: 30 epochs by default) keeps its
    scheduled LR but its parameters stop training (requires_grad False from then on)."""
    if s["method"] == "EMBEDDING":
        return []
    denoiser, encoders = MODEL_PARTS[s["model_type"]]
    out = []
    for part in (*encoders, denoiser):
        if (part if part != denoiser else "unet") not in groups:
            continue
        te = part in encoders
        unit = _enum(document, (part, "stop_training_after_unit"), UNITS, "EPOCH" if te else "NEVER")
        after = _number(document, (part, "stop_training_after"), int, 30 if te else 0, nullable=True)
        if unit == "NEVER" or after is None or (unit == "EPOCH" and after >= s["epochs"]):
            continue
        what = f"{part} stops training after {after} {unit.lower()}(s): its LR runs on, its parameters freeze"
        instead = f'write "{part}": {{"stop_training_after_unit": "NEVER"}} to train it the whole run'
        out.append(_quirk(document, (part, "stop_training_after"), what, instead, Q_TE_STOP))
    return out


def _quirks(document: Document, s: dict[str, Any], groups: dict[str, float], total: int | None) -> list[Problem]:
    out = _warmup_quirks(document, s, total)
    name, path = s["scheduler"], ("learning_rate_scheduler",)
    if s["optimizer"] in SCHEDULE_FREE and (name != "CONSTANT" or s["warmup"] > 0):
        what = f"optimizer {s['optimizer']} forces CONSTANT without warmup"
        out.append(_quirk(document, path, what, "cannot: pick another optimizer to schedule the LR", Q_SCHEDULE_FREE))
    elif name == "COSINE_WITH_RESTARTS":
        what = f"a smooth cosine of {s['cycles']:g} whole period(s): the LR climbs back up, no restart, no end at 0"
        instead = "COSINE_WITH_HARD_RESTARTS for restarts, COSINE (or cycles 0.5) for one decay"
        out.append(_quirk(document, path, what, instead, Q_RESTARTS))
    elif name == "CUSTOM" and _warmup(s["warmup"], s["accumulation"], total or 0) > 0:
        what = "the class starts after OneTrainer's warmup, from its own step 0 (SequentialLR): shifted by the warmup"
        instead = "write learning_rate_warmup_steps: 0 and give the class its own warmup"
        out.append(_quirk(document, path, what, instead, Q_CUSTOM_WARMUP))
    if name == "CUSTOM" and '"%LR%"' in document.text and any(lr != s["lr"] for lr in groups.values()):
        what = "%LR% is the global learning_rate, not each param group's (per-part LRs, learning_rate_scaler)"
        instead = "write each value as a number"
        out.append(_quirk(document, ("scheduler_params",), what, instead, Q_CUSTOM_LR))
    if _scale(s, 1) != 1:
        what = f"{s['scaler']} multiplies every LR by sqrt of its scale ({_scale(s, 1):g}), not by the scale"
        instead = "write learning_rate_scaler: NONE and the LRs you want"
        out.append(_quirk(document, ("learning_rate_scaler",), what, instead, Q_SCALER))
    return out + _stop_quirks(document, s, groups)


# ---- reading -------------------------------------------------------------------------------------
def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run a OneTrainer config starts: its groups, its run length (epochs of data: --steps-per-epoch
    or --samples-per-epoch), and the curve create_lr_scheduler builds, its quirks as warnings."""
    if not isinstance(document.data, dict):
        found = type(document.data).__name__
        raise ConfigError(Problem("", "a OneTrainer config (a JSON object)", found, file=document.source))
    s = _settings(document)
    _check_counts(document, s)
    groups, paths = _groups(document, s, facts.processes)
    if not groups:
        found = "every part with train: false"
        raise ConfigError(document.problem(("training_method",), "at least one trained part", found))
    batches, total, counting = _length(s, facts)
    warnings = _quirks(document, s, groups, total)
    extra = {"model_type": s["model_type"], "training_method": s["method"], "batch_size": s["batch_size"]}
    extra.update({"gradient_accumulation_steps": s["accumulation"], "epochs": s["epochs"], "steps_per_epoch": batches})
    summary = _summary(s)
    if total is None:
        source = document.source
        return TrainerRun(NAME, source, groups, None, counting, warnings=tuple(warnings), summary=summary, extra=extra)
    if total < 1:
        raise ConfigError(document.problem(("epochs",), "a run of at least one optimizer step", counting))
    name, warmup = s["scheduler"], _warmup(s["warmup"], s["accumulation"], total)
    if s["optimizer"] in SCHEDULE_FREE:  # create.py:1137 and :1222
        name, warmup = "CONSTANT", 0
    common = {"warnings": tuple(warnings), "summary": summary, "extra": extra}
    if name == "ADAFACTOR":
        hint = "its LR is Adafactor's relative step, computed inside the optimizer; lora_sched cannot draw it"
        raise ConfigError(document.problem(("learning_rate_scheduler",), "a schedule lora_sched can draw", name, hint))
    if name == "CUSTOM":
        own, resolved = _custom_run(document, s, facts, groups, (batches, total, warmup))
        return TrainerRun(NAME, document.source, groups, total, counting, resolved=resolved, own_lrs=own, **common)
    found = _catalogue(name, s["cycles"], s["min_factor"], warmup) if warmup < total else None
    if found is None:
        m = _own_multipliers(name, s["cycles"], s["min_factor"], warmup, total)
        return TrainerRun(NAME, document.source, groups, total, counting, own_lrs=_own_lrs(groups, m), **common)
    return _catalogue_run(document, s, groups, paths, found, (warmup, total, counting), common)


def _catalogue_run(
    document: Document, s: dict, groups: dict, paths: dict, found: tuple, shape: tuple, common: dict
) -> TrainerRun:
    warmup, total, counting = shape
    schedule, args = found
    base = groups.get("unet") or max(groups.values()) or s["lr"]
    values = {"learning_rate": base, "lr_scheduler": schedule, "lr_warmup_steps": warmup, "max_train_steps": total}
    if args:
        values["lr_scheduler_args"] = args
    origins = {
        "learning_rate": paths.get("unet", ("learning_rate",)),
        "lr_scheduler": ("learning_rate_scheduler",),
        "lr_warmup_steps": ("learning_rate_warmup_steps",),
        "max_train_steps": ("epochs",),
        "lr_scheduler_args.num_cycles": ("learning_rate_cycles",),
        "lr_scheduler_args.min_lr_ratio": ("learning_rate_min_factor",),
    }
    run = schedule_run(NAME, document, values, origins, groups, counting, list(common["warnings"]), common["summary"])
    fields = {f: getattr(run, f) for f in ("schedule", "resolved", "warnings", "summary")}
    return TrainerRun(NAME, run.source, run.groups, run.run_length, run.counting, extra=common["extra"], **fields)


def _summary(s: dict[str, Any]) -> str:
    text = f"{s['scheduler']}, warmup {s['warmup']:g}"
    if s["scheduler"] in ("COSINE_WITH_RESTARTS", "COSINE_WITH_HARD_RESTARTS"):
        text += f", {s['cycles']:g} cycles"
    if s["scheduler"] not in ("CONSTANT", "CUSTOM", "ADAFACTOR") and s["min_factor"]:
        text += f", min factor {s['min_factor']:g}"
    return text + f", {s['epochs']} epochs, batch {s['batch_size']}, accumulation {s['accumulation']}"


# ---- writing -------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A Python literal's value (numpy scalars and tuples made plain) for a scheduler_params text."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def _builtin(resolved: Any, accum: int) -> dict[str, Any] | None:
    """OneTrainer's own keys drawing resolved exactly (see _catalogue, the inverse), or None."""
    p, warmup = resolved.params, resolved.warmup
    frame = (
        resolved.horizon == resolved.run_length and resolved.warmup_start == 0.0 and resolved.warmup_type == "linear"
    )
    if not frame or resolved.hold_after_horizon or warmup * accum == 1 or warmup >= resolved.run_length:
        return None
    keys: dict[str, Any] = {"learning_rate_warmup_steps": warmup * accum, "learning_rate_cycles": 1.0}
    keys["learning_rate_min_factor"] = float(p.get("min_lr_ratio", 0.0) or 0.0)
    if resolved.name in ("constant", "constant_with_warmup"):
        name = "CONSTANT"
    elif resolved.name == "linear":
        name = "LINEAR"
    elif resolved.name == "cosine":
        name = "COSINE" if p["num_cycles"] == 1 else "COSINE_WITH_RESTARTS"
        keys["learning_rate_cycles"] = float(p["num_cycles"]) / 2 if name != "COSINE" else 1.0
    elif resolved.name == "cosine_with_restarts" and p["restart_decay"] == 1 and not p["cycle_warmup"]:
        name, keys["learning_rate_cycles"] = "COSINE_WITH_HARD_RESTARTS", float(p["num_cycles"])
    elif resolved.name == "rex" and _plain_rex(p):
        name = "REX"
    else:
        return None
    return {"learning_rate_scheduler": name, **keys}


def _plain_rex(p: dict[str, Any]) -> bool:
    return (p["d"], p["min_lr"], p["num_cycles"], p["restart_decay"]) == (0.9, None, 1, 1) and (
        not p["cycle_warmup"] and p["cycle_steps"] is None and p["cycle_multiplier"] == 1
    )


def _schedule_keys(resolved: Any, accum: int) -> dict[str, Any]:
    """A built-in name where one draws resolved, else CUSTOM lora_sched.torch.LoraSchedLR with the resolved
    schedule in scheduler_params (each value Python literal text) and OneTrainer's own warmup off."""
    keys = _builtin(resolved, accum)
    if keys is not None:
        return keys
    from lora_sched.torch.export import lora_sched_lr_args

    params = [{"key": k, "value": repr(_plain(v))} for k, v in lora_sched_lr_args(resolved, 1).items()]
    return {
        "learning_rate_scheduler": "CUSTOM",
        "custom_learning_rate_scheduler": LORA_SCHED_LR,
        "scheduler_params": params,
        "learning_rate_warmup_steps": 0,
    }


def _epochs(steps: int, accum: int, batch: int, run: TrainerRun, facts: RunFacts) -> int:
    """Epochs E with int(L x E / accumulation) = steps, L the batches per epoch (from the facts)."""
    batches = per_epoch(facts, facts.samples_per_epoch, batch, 1, drop_last=True)[0]
    if batches is None and run.trainer == NAME:
        batches = run.extra.get("steps_per_epoch")
    if batches is None:
        why = f"a run of {steps} steps: OneTrainer counts whole epochs of its data, its batches per epoch unknown here"
        nearest = "give --steps-per-epoch N (OneTrainer's step bar) or --samples-per-epoch N"
        raise refuse("epochs", "OneTrainer", why, nearest)
    epochs = max(1, round(steps * accum / batches))
    if int(batches * epochs / accum) != steps:
        why = f"{steps} steps: not a whole number of epochs of {batches} batches (accumulation {accum})"
        nearest = f"{epochs} epochs = {int(batches * epochs / accum)} steps, or a --steps-per-epoch dividing {steps}"
        raise refuse("epochs", "OneTrainer", why, nearest)
    return epochs


def _parts(run: TrainerRun) -> dict[str, Any]:
    """model_type, training_method and each part's train / learning_rate for run's groups."""
    roles = [r for r in run.roles if r != "unet"]
    bad = [r for r in roles if not r.startswith("text_encoder")] + ([] if "unet" in run.roles else ["(no unet)"])
    if bad:
        why = f"param groups {', '.join(bad)}: OneTrainer's LoRA has a denoiser and text encoder groups"
        raise refuse("learning_rate", "OneTrainer", why, "write the unet / text encoder groups only")
    model = run.extra.get("model_type") if run.trainer == NAME else None
    if model not in MODEL_PARTS or not set(roles) <= set(MODEL_PARTS[model][1]):
        index = max((int(r.rpartition("_")[2]) if r[-1].isdigit() else 1 for r in roles), default=0)
        if index not in _WRITE_MODEL:
            raise refuse("learning_rate", "OneTrainer", f"{index} text encoders", "at most 4 text encoder groups")
        model = _WRITE_MODEL[index]
    denoiser, encoders = MODEL_PARTS[model]
    method = run.extra.get("training_method", "LORA") if run.trainer == NAME else "LORA"
    out: dict[str, Any] = {"model_type": model, "training_method": method if method != "EMBEDDING" else "LORA"}
    out["learning_rate"] = float(run.roles["unet"])
    for part in encoders:
        if part in run.roles:
            out[part] = {"train": True, "learning_rate": float(run.roles[part]), "stop_training_after_unit": "NEVER"}
        else:
            out[part] = {"train": False}
    out[denoiser] = {"train": True, "learning_rate": float(run.roles["unet"]), "stop_training_after_unit": "NEVER"}
    return out


def write(run: TrainerRun, facts: RunFacts) -> str:
    """A OneTrainer config JSON (partial, "__version" current: OneTrainer fills the rest with its
    defaults) running run's curve: its groups' LRs, learning_rate_scaler NONE, its epochs."""
    import json

    resolved = run.resolved
    if resolved is None:
        what = f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses"
        nearest = "preview it with --csv and pick a catalogue schedule"
        raise refuse("learning_rate_scheduler", "OneTrainer", what, nearest)
    refusal = own_curve_refusal(run, "OneTrainer")
    if refusal is not None:
        raise refusal
    ours = run.trainer == NAME
    accum = int(run.extra.get("gradient_accumulation_steps", 1)) if ours else 1
    batch = int(run.extra.get("batch_size", 1)) if ours else 1
    out: dict[str, Any] = {"__version": VERSION, **_parts(run), "learning_rate_scaler": "NONE"}
    out.update(_schedule_keys(resolved, accum))
    out.update({"epochs": _epochs(resolved.run_length, accum, batch, run, facts), "batch_size": batch})
    out["gradient_accumulation_steps"] = accum
    return json.dumps(out, indent=4) + "\n"


TRAINER = Trainer(
    name=NAME,
    title="OneTrainer",
    formats=("json",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".json",
    summary="OneTrainer's training config JSON (UI save / preset / scripts/train.py --config-path)",
)
