"""LoRA_Easy_Training_Scripts: the TOML its UI saves ("Save Toml", the queue files), read as its
backend turns it into an sd-scripts run.

The UI (derrian-distro/LoRA_Easy_Training_Scripts, main_ui_files/MainUI.py `save_toml`) writes one
table per widget, ``[NAME.args]`` and ``[NAME.dataset_args]`` (general_args, network_args,
optimizer_args, saving_args, bucket_args, ..., extra_args), the data as ``[[subsets]]`` and
``[train_mode]``. Training sends ``{"args": {NAME: args}, "dataset": {NAME: dataset_args, "subsets":
[...]}}`` to the backend (derrian-distro/LoRA_Easy_Training_scripts_Backend, utils/validation.py),
which builds sd-scripts' --config_file from it. This module replays that mapping in its own code:

* every ``[NAME.args]`` table is merged into one flat dict in file order (a later table's key wins);
  a falsy value (0, 0.0, "", false, an empty table) is dropped, so sd-scripts' default applies; the
  strings "true" / "false" become true / dropped; ``optimizer_args`` and ``lr_scheduler_args`` tables
  become sd-scripts' "key=value" lists (``f"{k}={v}"``);
* ``warmup_ratio`` becomes ``lr_warmup_steps = round(T x ratio)`` (Python's round, half to even), or
  with a custom ``lr_scheduler_type`` the class argument ``warmup_steps = round(T x ratio) //
  lr_scheduler_num_cycles`` (each cycle's warmup);
* with a custom ``lr_scheduler_type``, ``lr_scheduler_num_cycles`` becomes ``first_cycle_max_steps =
  T // num_cycles``;
* T is ``max_train_steps``, else the backend's own count: per epoch, the batches of every bucket
  (images x repeats of every subset, in batches of ``batch_size``) / gradient accumulation, rounded
  up, times ``max_train_epochs``.

The flat values then go through lora_sched's sd-scripts reader (LoRA_Easy's REX / cosine classes
are catalogue schedules there). The backend starts one process (``python train_network.py``).
"""

from __future__ import annotations

from typing import Any

from lora_sched.errors import ConfigError, Problem, problem, raw
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.documents import Document

UI_REPO = "derrian-distro/LoRA_Easy_Training_Scripts"
UI_COMMIT = "ae5ce073756dcc7603245ec3d9e0a650503f3301"
BACKEND_REPO = "derrian-distro/LoRA_Easy_Training_scripts_Backend"
BACKEND_COMMIT = "162e56de18e4d4ab96b066380606d657a68c66fa"
VALIDATION = "utils/validation.py"
REX_CLASS = "custom_scheduler/LoraEasyCustomOptimizer/RexAnnealingWarmRestarts.py"
COSINE_CLASS = "custom_scheduler/LoraEasyCustomOptimizer/CosineAnnealingWarmRestarts.py"

#: The flat keys that shape the LR curve, as sd-scripts reads them (everything else is left out).
SCHEDULE_KEYS = (
    "learning_rate",
    "unet_lr",
    "text_encoder_lr",
    "optimizer_type",
    "optimizer_args",
    "lr_scheduler",
    "lr_scheduler_type",
    "lr_scheduler_args",
    "lr_warmup_steps",
    "lr_decay_steps",
    "lr_scheduler_num_cycles",
    "lr_scheduler_power",
    "lr_scheduler_min_lr_ratio",
    "lr_scheduler_timescale",
    "network_train_unet_only",
    "network_train_text_encoder_only",
)
#: The backend's own optimizer renames (validation.py validate_optimizer).
OPTIMIZERS = {
    "compass": "LoraEasyCustomOptimizer.compass.Compass",
    "lpfadamw": "LoraEasyCustomOptimizer.lpfadamw.LPFAdamW",
    "rmsprop": "LoraEasyCustomOptimizer.rmsprop.RMSProp",
    "came": "LoraEasyCustomOptimizer.came.CAME",
}


def _cite(path: str, line: int) -> Citation:
    repo, commit = (UI_REPO, UI_COMMIT) if path.startswith("main_ui_files") else (BACKEND_REPO, BACKEND_COMMIT)
    return Citation(repo, path, line, commit)


# ---- recognising ------------------------------------------------------------------------------
def recognise(document: Document) -> int:
    """3 for the UI's structure: a ``[NAME.args]`` / ``[NAME.dataset_args]`` table, ``[[subsets]]``
    or ``[train_mode]``; else 0 (sd-scripts' own TOML has none of them)."""
    data = document.data
    if document.kind != "toml" or not isinstance(data, dict):
        return 0
    if isinstance(data.get("train_mode"), dict) and "train_mode" in data["train_mode"]:
        return 3
    subsets = data.get("subsets")
    if isinstance(subsets, list) and subsets and all(isinstance(s, dict) for s in subsets):
        return 3
    for value in data.values():
        if isinstance(value, dict) and any(isinstance(value.get(k), dict) for k in ("args", "dataset_args")):
            return 3
    return 0


# ---- the backend's mapping, replayed ----------------------------------------------------------
class Mapped:
    """The backend's flat sd-scripts args, where each came from (a path in the file), the dataset's
    [general] values, what the backend would refuse before training, and the falsy keys it dropped."""

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}
        self.where: dict[str, tuple] = {}
        self.general: dict[str, Any] = {}
        self.refusals: list[str] = []
        self.dropped: dict[str, tuple] = {}
        self.original: dict[str, tuple] = {}  #: key -> path before ratios and cycles are replayed


def _tables(document: Document) -> tuple[list[tuple[str, dict]], list[tuple[str, Any]]]:
    """The UI's process_toml: ([(NAME, its args table)], [(NAME, its dataset_args)]) in file order."""
    args, dataset = [], []
    for name, value in document.data.items():
        if name == "subsets":
            dataset.insert(0, (name, value))
            continue
        if isinstance(value, list):
            continue
        if not isinstance(value, dict):
            raise ConfigError(document.problem((name,), f"a table [{name}.args] (the UI loads tables)", value))
        for part, out in (("args", args), ("dataset_args", dataset)):
            if part in value:
                if not isinstance(value[part], dict) and part == "args":
                    raise ConfigError(document.problem((name, part), "a table of settings", value[part]))
                out.append((name, value[part]))
    return args, dataset


def _converted(document: Document, path: tuple, arg: str, value: Any) -> Any:
    """validate_args' conversions: optimizer_args / lr_scheduler_args tables -> "k=v" lists."""
    if arg in ("optimizer_args", "lr_scheduler_args"):
        if not isinstance(value, dict):
            raise ConfigError(document.problem(path, "a table (the backend calls .items() on it)", value))
        items = []
        for k, v in value.items():
            if arg == "optimizer_args" and v in ("true", "false"):
                v = v.capitalize()
            items.append(f"{k}={v}")
        return items
    if arg == "network_args" and isinstance(value, dict):
        return [k for k, v in value.items() if not (k == "preset" and v == "")]
    return value


def flatten(document: Document) -> Mapped:
    """validate_args and validate_dataset_args of the backend, for the keys a schedule needs."""
    out = Mapped()
    args, dataset = _tables(document)
    for name, table in args:
        if not table:
            out.refusals.append(f"[{name}.args] is empty (No data filled in for {name})")
            continue
        for arg, value in table.items():
            path = (name, "args", arg)
            value = _converted(document, path, arg, value)
            if isinstance(value, str) and value.lower() == "true":
                value = True
            elif not value or (isinstance(value, str) and value.lower() == "false"):
                if arg not in out.args:  # an earlier table's value stays
                    out.dropped[arg] = path
                continue
            out.args[arg], out.where[arg] = value, path
            out.dropped.pop(arg, None)
    for name, table in dataset:
        if not table:
            out.refusals.append(f"{name} is empty (No Data filled in for {name})")
        elif name != "subsets" and isinstance(table, dict):
            out.general.update({k: v for k, v in table.items() if v and not (k == "max_token_length" and v == 75)})
    subsets = document.data.get("subsets")
    if not isinstance(subsets, list):
        out.refusals.append("no [[subsets]] (the backend fails on args['subsets'])")
    if "optimizer_type" not in out.args:
        out.refusals.append("no optimizer_type (the backend fails: KeyError 'optimizer_type')")
    for key in ("pretrained_model_name_or_path", "output_dir"):
        if key not in out.args:
            out.refusals.append(f"no {key} ({key} is not found)")
    if isinstance(out.args.get("optimizer_type"), str):
        out.args["optimizer_type"] = OPTIMIZERS.get(out.args["optimizer_type"].lower(), out.args["optimizer_type"])
    return out


# ---- counting -----------------------------------------------------------------------------------
def _int_at(document: Document, mapped: Mapped, key: str) -> int | None:
    value = mapped.args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(document.problem(mapped.where[key], "a whole number", value))
    return value


def steps_per_epoch(document: Document, mapped: Mapped, facts: RunFacts) -> tuple[int | None, str]:
    """The backend's count of one epoch (calculate_steps): every bucket's batches of batch_size,
    / gradient_accumulation_steps rounded up. --steps-per-epoch is that number; --samples-per-epoch
    counts one bucket (all images one size, or enable_bucket off)."""
    from lora_sched.trainers.common import per_epoch

    accumulation = _int_at(document, mapped, "gradient_accumulation_steps") or 1
    batch = mapped.general.get("batch_size", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(
            document.problem(("general_args", "dataset_args", "batch_size"), "a whole number >= 1", batch)
        )
    steps, text = per_epoch(
        RunFacts(facts.samples_per_epoch, facts.steps_per_epoch), facts.samples_per_epoch, batch, accumulation
    )
    if steps is not None and facts.steps_per_epoch is None and mapped.general.get("enable_bucket"):
        text += " (one bucket assumed: give --steps-per-epoch from the backend's log for several)"
    return steps, text


def run_steps(document: Document, mapped: Mapped, facts: RunFacts) -> tuple[int | None, int | None, str]:
    """(T the backend counts for ratios and cycles, the run length sd-scripts trains, how counted).
    sd-scripts trains max_train_epochs x its count when epochs are set, else max_train_steps (1600)."""
    steps, epochs = _int_at(document, mapped, "max_train_steps"), _int_at(document, mapped, "max_train_epochs")
    if epochs is None:
        total = 1600 if steps is None else steps
        return steps, total, f"max_train_steps = {total}" + (" (sd-scripts' default)" if steps is None else "")
    per, text = steps_per_epoch(document, mapped, facts)
    if per is None:
        return steps, None, f"{epochs} epochs of data not known here: {text}"
    total = epochs * per
    return (total if steps is None else steps), total, f"{epochs} epochs x {text}"


# ---- ratios and cycles --------------------------------------------------------------------------
def _number_at(document: Document, mapped: Mapped, key: str) -> float | int:
    value = mapped.args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(document.problem(mapped.where[key], "a number", value))
    return value


def apply_steps(document: Document, mapped: Mapped, steps: int | None) -> None:
    """validate_warmup_ratio then validate_restarts (validation.py:191, :173), in that order:
    lr_warmup_steps = round(T x ratio), or for a custom class warmup_steps = round(T x ratio) //
    num_cycles; first_cycle_max_steps = T // num_cycles for a custom class."""
    args, where = mapped.args, mapped.where
    custom = "lr_scheduler_type" in args
    needs = "warmup_ratio" in args or (custom and "lr_scheduler_num_cycles" in args)
    if not needs:
        return
    if steps is None:
        raise ConfigError(
            document.problem(
                ("general_args", "args"),
                "max_train_steps or max_train_epochs (the backend counts the warmup ratio / cycles on it)",
                None,
            )
        )
    if custom and "lr_scheduler_args" not in args:
        key = "warmup_ratio" if "warmup_ratio" in args else "lr_scheduler_num_cycles"
        raise ConfigError(
            document.problem(
                where[key],
                "lr_scheduler_args next to lr_scheduler_type",
                "none (the backend fails: KeyError 'lr_scheduler_args')",
            )
        )
    cycles = _number_at(document, mapped, "lr_scheduler_num_cycles") if "lr_scheduler_num_cycles" in args else 1
    if "warmup_ratio" in args:
        warmup = round(steps * _number_at(document, mapped, "warmup_ratio"))
        if custom:
            args["lr_scheduler_args"] = [*args["lr_scheduler_args"], f"warmup_steps={warmup // cycles}"]
            where["lr_scheduler_args.warmup_steps"] = where["warmup_ratio"]
        else:
            args["lr_warmup_steps"], where["lr_warmup_steps"] = warmup, where["warmup_ratio"]
        del args["warmup_ratio"]
    if custom and "lr_scheduler_num_cycles" in args:
        args["lr_scheduler_args"] = [*args["lr_scheduler_args"], f"first_cycle_max_steps={steps // cycles}"]
        where["lr_scheduler_args.first_cycle_max_steps"] = where["lr_scheduler_num_cycles"]
        del args["lr_scheduler_num_cycles"]


# ---- quirks -------------------------------------------------------------------------------------
def _quirk(key: str, what: str, instead: str, path: str, line: int) -> Quirk:
    return Quirk(key, what, instead, _cite(path, line))


DROPPED_TE_LR = _quirk(
    "text_encoder_lr",
    "the backend drops a 0 (falsy) value, so the text encoder trains at learning_rate",
    "set network_train_unet_only = true in [network_args.args]",
    VALIDATION,
    87,
)
DROPPED_UNET_LR = _quirk(
    "unet_lr",
    "the backend drops a 0 (falsy) value, so the U-Net trains at learning_rate",
    "set network_train_text_encoder_only = true in [network_args.args]",
    VALIDATION,
    87,
)
DROPPED_LR = _quirk(
    "learning_rate",
    "the backend drops a 0 (falsy) value, so sd-scripts uses its default 2e-6",
    "write the LR you mean",
    VALIDATION,
    87,
)
ONE_STEP_CYCLES = {
    name: _quirk(
        "lr_scheduler_type",
        "without lr_scheduler_num_cycles the class keeps first_cycle_max_steps = 1: a restart every step "
        "(LR x gamma^step down to min_lr)",
        "set lr_scheduler_num_cycles = 1 (or more)",
        path,
        line,
    )
    for name, path, line in (
        ("RexAnnealingWarmRestarts", REX_CLASS, 11),
        ("CosineAnnealingWarmRestarts", COSINE_CLASS, 16),
    )
}
SPLIT_WARMUP = _quirk(
    "warmup_ratio",
    "with lr_scheduler_num_cycles > 1 the warmup is split: each cycle warms up for round(T x ratio) // cycles steps",
    "one warmup at the start cannot be had with these classes; for a per-cycle warmup of the ratio, multiply "
    "warmup_ratio by the cycles",
    VALIDATION,
    204,
)
REMAINDER_CYCLE = _quirk(
    "lr_scheduler_num_cycles",
    "first_cycle_max_steps = T // cycles: the T % cycles steps left over start one more cycle at the end",
    "make max_train_steps (or the epochs' steps) a multiple of lr_scheduler_num_cycles",
    VALIDATION,
    186,
)
QUIRKS = (DROPPED_TE_LR, DROPPED_UNET_LR, DROPPED_LR, *ONE_STEP_CYCLES.values(), SPLIT_WARMUP, REMAINDER_CYCLE)


def quirks(document: Document, mapped: Mapped, steps: int | None) -> list[Problem]:
    """The quirks that apply to this file, located at their keys (before ratios are replayed)."""
    found: list[tuple[tuple, Quirk]] = []
    for quirk in (DROPPED_TE_LR, DROPPED_UNET_LR, DROPPED_LR):
        path = mapped.dropped.get(quirk.key)
        value = None if path is None else _value_at(document, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
            found.append((path, quirk))
    custom = _lora_easy_class(mapped.args.get("lr_scheduler_type"))
    if custom:
        given = {str(item).split("=", 1)[0] for item in mapped.args.get("lr_scheduler_args", [])}
        cycles = _raw(document, mapped, "lr_scheduler_num_cycles")
        if "first_cycle_max_steps" not in given and not cycles:
            found.append((mapped.where["lr_scheduler_type"], ONE_STEP_CYCLES[custom]))
        if isinstance(cycles, int) and cycles > 1 and _raw(document, mapped, "warmup_ratio"):
            found.append((mapped.original["warmup_ratio"], SPLIT_WARMUP))
        if isinstance(cycles, int) and cycles > 1 and steps is not None and steps % cycles:
            found.append((mapped.original["lr_scheduler_num_cycles"], REMAINDER_CYCLE))
    return [q.problem()._replace(key=_key(path)).located(document.source, document.line_of(path)) for path, q in found]


def _key(path: tuple) -> str:
    from lora_sched.trainers.documents import key_text

    return key_text(path)


def _value_at(document: Document, path: tuple) -> Any:
    node: Any = document.data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _raw(document: Document, mapped: Mapped, key: str) -> Any:
    path = mapped.original.get(key)
    return None if path is None else _value_at(document, path)


def _lora_easy_class(type_path: Any) -> str | None:
    from lora_sched.config.lora_easy import lora_easy_class

    return lora_easy_class(type_path)


# ---- reading ------------------------------------------------------------------------------------
def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The sd-scripts run the backend starts from this UI file (see the module's docstring)."""
    if not isinstance(document.data, dict):
        raise ConfigError(document.problem((), "a TOML table", document.data))
    mapped = flatten(document)
    mapped.original = dict(mapped.where)
    steps, length, counting = run_steps(document, mapped, facts)
    notices = [_refusals(document, mapped)] if mapped.refusals else []
    summary = _summary(mapped)
    if length is None:
        return TrainerRun("lora-easy", document.source, {}, None, counting, warnings=tuple(notices), summary=summary)
    warnings = quirks(document, mapped, steps)
    apply_steps(document, mapped, steps)
    values = {k: mapped.args[k] for k in SCHEDULE_KEYS if k in mapped.args}
    values["max_train_steps"] = length
    origins = {k: mapped.where[k] for k in values if k in mapped.where}
    origins.update({k: v for k, v in mapped.where.items() if k.startswith("lr_scheduler_args.")})
    origins["max_train_steps"] = (
        mapped.where.get("max_train_epochs") or mapped.where.get("max_train_steps") or ("general_args", "args")
    )
    for item in values.get("lr_scheduler_args", []):
        name = item.split("=", 1)[0]
        origins.setdefault(f"lr_scheduler_args.{name}", (*mapped.where["lr_scheduler_args"], name))
    return _run(document, values, _with_sections(origins), mapped, counting, [*warnings, *notices], summary)


def _with_sections(origins: dict[str, tuple]) -> dict[str, tuple]:
    """origins also under the section-qualified keys the sd-scripts reader reports
    ("optimizer_arguments.learning_rate"), which common.locate_at looks up as they are."""
    from lora_sched.config.keys import KEY_BY_NAME

    out = dict(origins)
    for key, path in origins.items():
        head = key.split(".")[0]
        if head in KEY_BY_NAME:
            out[f"{KEY_BY_NAME[head].section}.{key}"] = path
    return out


def _run(
    document: Document,
    values: dict[str, Any],
    origins: dict[str, tuple],
    mapped: Mapped,
    counting: str,
    warnings: list[Problem],
    summary: str,
) -> TrainerRun:
    """sd-scripts' run of the flat values (lora_sched's sd-scripts reader), in the trainer's groups."""
    from lora_sched.trainers import sd_scripts
    from lora_sched.trainers.common import config_from

    cfg = config_from(values, document, origins)
    run = sd_scripts.run_of(cfg, RunFacts())
    groups = _groups(cfg.group_lrs(), mapped.args)
    own = run.own_lrs
    if own is not None:
        inner = own

        def own(steps: Any) -> dict[str, Any]:
            lrs = inner(steps)
            return {g: lrs[g] for g in groups}

    kept = [p for p in cfg.warnings if p.severity == "warning"]
    return run._replace(
        trainer="lora-easy",
        source=document.source,
        groups=groups,
        counting=counting,
        own_lrs=own,
        warnings=(*warnings, *kept),
        summary=summary,
    )


def _groups(lrs: dict[str, float], args: dict[str, Any]) -> dict[str, float]:
    """sd-scripts' LoRA param groups in the order it builds them (text encoder, then U-Net); a group
    with LR 0, or the text encoder with cached text encoder outputs, is not trained."""
    out = {"text_encoder": lrs["text_encoder"], "unet": lrs["unet"]}
    if args.get("cache_text_encoder_outputs"):
        out["text_encoder"] = 0.0
    return {k: v for k, v in out.items() if v}


def _refusals(document: Document, mapped: Mapped) -> Problem:
    return problem(
        "",
        "a file the backend trains as it is",
        raw("; ".join(mapped.refusals)),
        "the schedule is shown all the same; fill these in the UI before training",
        severity="notice",
    ).located(document.source, None)


def _summary(mapped: Mapped) -> str:
    args = mapped.args
    name = args.get("lr_scheduler_type", args.get("lr_scheduler", "cosine")).split(".")[-1]
    parts = [name]
    if "warmup_ratio" in args:
        parts.append(f"warmup ratio {args['warmup_ratio']}")
    if "lr_scheduler_num_cycles" in args:
        parts.append(f"{args['lr_scheduler_num_cycles']} cycles")
    for key in ("max_train_steps", "max_train_epochs"):
        if key in args:
            parts.append(f"{args[key]} {key.split('_')[-1]}")
    return ", ".join(str(p) for p in parts)


# ---- writing ------------------------------------------------------------------------------------
HEADER = (
    "# LoRA_Easy_Training_Scripts UI TOML written by lora_sched: the backend runs it as it is (queue it);\n"
    "# the UI's Load / Save keeps only what its widgets show (warmup_ratio to 2 decimals, no custom class).\n"
)


def write(run: TrainerRun, facts: RunFacts) -> str:
    """A UI TOML whose backend mapping runs `run`'s curve in every group exactly: sd-scripts' own
    names where they give the curve (with warmup_ratio = warmup / T, which the backend rounds back
    to the warmup), LoRA_Easy's REX / cosine class for a run of that class, else
    ``lr_scheduler_type = "lora_sched.torch.LoraSchedLR"`` in [optimizer_args.args]. Each candidate
    is read back through this module's own mapping; the first that gives the same LRs is written."""
    from lora_sched.trainers.common import refuse

    resolved = run.resolved
    if resolved is None:
        raise refuse(
            "lr_scheduler",
            "LoRA_Easy",
            f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses",
            "preview it with --csv and pick the nearest catalogue schedule (`lora-sched list`)",
        )
    lrs = _write_groups(run, refuse)
    tried = []
    for keys in _candidates(resolved):
        text = _text(keys, lrs, resolved.run_length)
        why = _differs(text, run)
        if why is None:
            return text
        tried.append(f"{keys.get('lr_scheduler_type', keys.get('lr_scheduler'))}: {why}")
    raise refuse(
        "lr_scheduler",
        "LoRA_Easy",
        f"{resolved.name} through its backend ({'; '.join(tried)})",
        "write it for sd-scripts (`--to sd-scripts`) and train with sd-scripts directly",
    )


def _write_groups(run: TrainerRun, refuse: Any) -> dict[str, dict[str, Any]]:
    """{UI table: keys} for the group LRs: unet_lr, text_encoder_lr (one LR for every text encoder),
    a group left untrained by network_train_*_only (a 0 LR would be dropped by the backend)."""
    unknown = [g for g in run.roles if g != "unet" and not g.startswith("text_encoder")]
    te = {float(v) for g, v in run.roles.items() if g.startswith("text_encoder")}
    if unknown or len(te) > 1:
        what = f"param groups {dict(run.roles)}" + (f" ({', '.join(unknown)} unknown)" if unknown else "")
        raise refuse(
            "text_encoder_lr",
            "LoRA_Easy",
            what + ": sd-scripts' LoRA has one text encoder LR",
            "give every text encoder the same LR",
        )
    unet, te_lr = float(run.roles.get("unet", 0.0)), (te.pop() if te else 0.0)
    if not unet and not te_lr:
        raise refuse("learning_rate", "LoRA_Easy", "no group with an LR above 0", "train at least one group")
    base = float(run.resolved.base_lr) if run.resolved.base_lr else (unet or te_lr)
    opt: dict[str, Any] = {"optimizer_type": "AdamW", "learning_rate": base}  # the backend needs a type
    network: dict[str, Any] = {}
    if unet:
        opt["unet_lr"] = unet
    else:
        network["network_train_text_encoder_only"] = True
    if te_lr:
        opt["text_encoder_lr"] = te_lr
    else:
        network["network_train_unet_only"] = True
    return {"optimizer_args": opt, "network_args": network}


def _candidates(resolved: Any) -> list[dict[str, Any]]:
    """sd-scripts keys for resolved: its built-in name, LoRA_Easy's class, LoraSchedLR (in that order)."""
    from lora_sched.torch.export import LORA_SCHED_LR, builtin_keys, lora_sched_lr_args

    out = []
    builtin = builtin_keys(resolved, 1)
    if builtin is not None:
        out.append(builtin)
    params = resolved.params
    if (
        resolved.name in ("rex", "cosine_warmup_restarts")
        and {"cycle_steps", "min_lr"} <= set(params)
        and not resolved.warmup
    ):
        name = "RexAnnealingWarmRestarts" if resolved.name == "rex" else "CosineAnnealingWarmRestarts"
        args = {
            "gamma": params["restart_decay"],
            "cycle_multiplier": params["cycle_multiplier"],
            "first_cycle_max_steps": params["cycle_steps"],
            "min_lr": params["min_lr"],
            "warmup_steps": params["cycle_warmup"],
        }
        if resolved.name == "rex":
            args["d"] = params["d"]
        out.append({"lr_scheduler_type": f"LoraEasyCustomOptimizer.{name}.{name}", "lr_scheduler_args": args})
    out.append({"lr_scheduler_type": LORA_SCHED_LR, "lr_scheduler_args": lora_sched_lr_args(resolved, 1)})
    return out


def _text(keys: dict[str, Any], lrs: dict[str, dict[str, Any]], length: int) -> str:
    """The UI TOML: [general_args.args] max_train_steps, [optimizer_args.args] the schedule."""
    import tomli_w

    opt = dict(lrs["optimizer_args"])
    for key, value in keys.items():
        if key == "lr_scheduler_args":
            if value:
                opt[key] = {name: _arg_value(v) for name, v in value.items() if v is not None}  # None: unset
        elif key == "lr_warmup_steps":
            if value:
                ratio = _ratio(value, length)
                opt.update({"warmup_ratio": ratio} if ratio is not None else {"lr_warmup_steps": value})
        elif value:  # a falsy value is dropped by the backend: sd-scripts' default must be the same
            opt[key] = list(value) if isinstance(value, tuple) else value
    doc: dict[str, Any] = {"general_args": {"args": {"max_train_steps": length}}}
    if lrs["network_args"]:
        doc["network_args"] = {"args": lrs["network_args"]}
    doc["optimizer_args"] = {"args": opt}
    doc["train_mode"] = {"train_mode": "lora"}
    return HEADER + tomli_w.dumps(doc)


def _arg_value(value: Any) -> Any:
    """A class argument as the UI table holds it: the backend writes f"{k}={v}" and sd-scripts reads
    v with ast.literal_eval, so a string is stored with its quotes (repr)."""
    if isinstance(value, str):
        return repr(value)
    return list(value) if isinstance(value, tuple) else value


def _ratio(warmup: int, length: int) -> float | None:
    """A warmup_ratio the backend turns back into `warmup` steps (round(T x ratio)): two decimals
    (what the UI's box shows) where they do, else warmup / T; None where neither does."""
    for ratio in (round(warmup / length, 2), warmup / length):
        if 0 < ratio <= 1 and round(length * ratio) == warmup:
            return ratio
    return None


def _differs(text: str, run: TrainerRun) -> str | None:
    """None when the written text, read back, gives run's LRs (rel 1e-9, every step and group)."""
    from lora_sched._lazy import np
    from lora_sched.trainers.documents import parse

    try:
        back = read(parse("<written>.toml", text), RunFacts())
    except ConfigError as exc:
        return str(exc).splitlines()[0]
    want = {g: v for g, v in run.roles.items() if v}
    if set(back.groups) != set(want) or back.run_length != run.run_length:
        return f"groups {dict(back.groups)} / {back.run_length} steps instead of {want} / {run.run_length}"
    steps = np.arange(run.run_length)
    ours, theirs = back.lrs(steps), run.lrs(steps)
    for group in want:
        a, b = np.asarray(ours[group], dtype=float), np.asarray(theirs[group], dtype=float)
        bad = np.abs(a - b) > 1e-9 * np.maximum(np.abs(b), 1e-300)
        if bad.any():
            step = int(np.argmax(bad))
            return f"{group} LR {a[step]!r} at step {step} instead of {b[step]!r}"
    return None


TRAINER = Trainer(
    name="lora-easy",
    title="LoRA_Easy_Training_Scripts",
    formats=("toml",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".toml",
    summary="LoRA_Easy_Training_Scripts' UI TOML ([NAME.args] tables, [[subsets]]), as its backend runs it",
    quirks=QUIRKS,
)
