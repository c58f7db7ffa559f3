"""kohya-ss sd-scripts: its `--config_file` TOML (and the kohya_ss GUI's, kohya-colab's and
LoRA_Easy's backend files, which are sd-scripts TOML), read by lora_sched's own loader.

The loader (lora_sched.config) is this dialect: every key of every sd-scripts script, sections
flattened as sd-scripts flattens them, its global scheduler keys and its custom classes. The
export (lora_sched.torch.export) writes what sd-scripts runs: its own schedule names where they
give the same curve, else `lr_scheduler_type = "lora_sched.torch.LoraSchedLR"`.
"""

from __future__ import annotations

from typing import Any

from lora_sched.trainers.base import RunFacts, Trainer, TrainerRun
from lora_sched.trainers.documents import Document


def recognise(document: Document) -> int:
    """Any TOML file is sd-scripts' unless another trainer is surer: 1 (2 with kohya keys)."""
    if document.kind != "toml" or not isinstance(document.data, dict):
        return 0
    from lora_sched.config.keys import KEY_BY_NAME
    from lora_sched.config.kohya_keys import is_kohya_key

    for top, value in document.data.items():
        keys = value.keys() if isinstance(value, dict) else [top]
        if any(k in KEY_BY_NAME or is_kohya_key(k) for k in keys):
            return 2
    return 1


def plain(document: Document) -> bool:
    """A TOML file in lora_sched's own keys only (all of them sd-scripts'), tables one level deep: no
    other trainer's file looks like that (each needs a key of its own, a nested table or an array of
    tables), so recognising it needs no other trainer module (validate's start-up: importing the
    other TOML trainers costs about 2 ms)."""
    from lora_sched.config.keys import KEY_BY_NAME

    if document.kind != "toml" or not isinstance(document.data, dict):
        return False
    for top, value in document.data.items():
        inner = value.items() if isinstance(value, dict) else [(top, value)]
        for key, item in inner:
            if key not in KEY_BY_NAME or isinstance(item, dict) or _holds_tables(item):
                return False
    return True


def _holds_tables(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(item, dict) for item in value)


def read(document: Document, facts: RunFacts) -> TrainerRun:
    from lora_sched.config.loader import loads_config
    from lora_sched.torch.support import CUSTOM_CLASSES

    data = {"dataset_config": facts.dataset_config, "samples_per_epoch": facts.samples_per_epoch}
    cfg = loads_config(
        document.text,
        source=document.source,
        trust_scheduler_code=facts.trust_scheduler_code,
        data=data,
        parsed=document.data,
        custom_classes=CUSTOM_CLASSES,
    )
    return run_of(cfg, facts)


def run_of(cfg: Any, facts: RunFacts) -> TrainerRun:
    """The sd-scripts run of a validated config (its run length counted as sd-scripts counts it)."""
    from lora_sched.schedules.resolve import TrainingShape

    values = cfg.values
    groups = cfg.group_lrs()
    counting, shape = _counting(cfg, facts)
    if counting is None:  # epochs of data not known here
        why = cfg.unknown_run_length()
        return TrainerRun("sd-scripts", cfg.path, groups, None, why, schedule=cfg, warnings=tuple(cfg.warnings))
    resolved = cfg.resolve(shape if isinstance(shape, TrainingShape) else None)
    own = None
    ours = _lora_sched_lr(cfg, groups, resolved) if cfg.scheduler_type else None
    if ours is not None:  # lora_sched's own class (what an export writes): its closed form, not stepped
        resolved = ours
    elif cfg.scheduler_type:  # another class: stepped through torch (lora_sched.config.preview)
        own = _custom_lrs(cfg, resolved)
    if values["max_train_epochs"] is None:
        counting = f"max_train_steps = {resolved.run_length}"
    return TrainerRun(
        "sd-scripts",
        cfg.path,
        groups,
        resolved.run_length,
        counting,
        schedule=cfg,
        resolved=resolved,
        own_lrs=own,
        warnings=tuple(cfg.warnings),
    )


def _counting(cfg: Any, facts: RunFacts) -> tuple[str | None, Any]:
    """(how the run length is counted, the training shape), or (None, None) when it cannot be here."""
    from lora_sched.schedules.resolve import TrainingShape

    values = cfg.values
    epochs = values["max_train_epochs"]
    if epochs is None:
        return "", cfg.training_shape(num_processes=facts.processes)
    if facts.steps_per_epoch is not None:
        shape = TrainingShape(steps_per_epoch=facts.steps_per_epoch)
        return f"{epochs} epochs x {facts.steps_per_epoch} steps per epoch (--steps-per-epoch)", shape
    if cfg.unknown_run_length() is not None:
        return None, None
    shape = cfg.training_shape(num_processes=facts.processes)
    found = cfg.data()
    batch, accum = values["train_batch_size"], values["gradient_accumulation_steps"]
    text = f"{epochs} epochs x {shape.steps_per_epoch} steps per epoch "
    text += f"({found.samples} samples in {found.batches} batches"
    if len(getattr(found, "datasets", ())) > 1 or batch != 1:
        text += " (batch sizes and buckets counted)"
    if accum > 1:
        text += f", accumulation {accum}"
    if facts.processes > 1:
        text += f", {facts.processes} processes"
    return text + ")", shape


def _lora_sched_lr(cfg: Any, groups: dict[str, float], resolved: Any) -> Any:
    """The schedule `lr_scheduler_type = "lora_sched.torch.LoraSchedLR"` draws, built once on a dummy
    optimizer with the groups' LRs (its arguments are checked there), or None for another class or
    one behind a warmup lora_sched composes in front."""
    from lora_sched.torch.export import LORA_SCHED_LR

    if cfg.scheduler_type != LORA_SCHED_LR or resolved.warmup:
        return None
    import torch

    from lora_sched.torch.scheduler import LoraSchedLR

    groups_of_params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr or 1.0} for lr in groups.values()]
    drawn = LoraSchedLR(torch.optim.SGD(groups_of_params), **dict(cfg.scheduler_type_args or {})).resolved
    return drawn if drawn.run_length == resolved.run_length else None


def _custom_lrs(cfg: Any, resolved: Any) -> Any:
    from lora_sched._lazy import np
    from lora_sched.config import preview

    curve = preview.curve(cfg, None, resolved)

    def lrs(steps: Any) -> dict[str, Any]:
        steps = np.asarray(steps, dtype=np.int64)
        return curve.lrs(steps, curve.at(steps))

    return lrs


def write(run: TrainerRun, facts: RunFacts) -> str:
    """An sd-scripts TOML running `run`'s curve (`export --to sd-scripts`, alias `--kohya`)."""
    from lora_sched.torch.export import export_kohya

    if run.schedule is None:
        from lora_sched.trainers.common import refuse

        raise refuse(
            "lr_scheduler",
            "sd-scripts",
            f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses",
            "preview it with --csv and pick the nearest catalogue schedule (`lora-sched list`)",
        )
    cfg = run.schedule if run.trainer == "sd-scripts" else _with_groups(run)
    if cfg.unknown_run_length() is not None and run.resolved is not None:  # counted with --steps-per-epoch
        values = {**cfg.values, "max_train_steps": run.resolved.run_length, "max_train_epochs": None}
        sections = {**cfg.sections, "max_train_steps": cfg.section_of("max_train_epochs")}
        cfg = cfg.replace(values=values, sections=sections)
    return export_kohya(cfg, facts.processes)


def _with_groups(run: TrainerRun) -> Any:
    """The carried config with sd-scripts' LR keys for another trainer's groups: the denoiser's LR as
    unet_lr, one LR for every text encoder (sd-scripts' networks.lora has one), and an absent or
    zero group as network_train_unet_only / network_train_text_encoder_only; learning_rate the
    carried config's."""
    from lora_sched.trainers.common import refuse

    groups = dict(run.roles)
    unet = groups.pop("unet", 0.0)
    encoders = {role: lr for role, lr in groups.items() if role.startswith("text_encoder")}
    others = {role: lr for role, lr in groups.items() if role not in encoders and lr}
    if others:
        raise refuse(
            "learning_rate",
            "sd-scripts",
            "param groups " + ", ".join(f"{r} at {lr:g}" for r, lr in others.items()),
            "sd-scripts' networks.lora has a denoiser group and one text-encoder group; "
            "give the extra groups the denoiser's LR in the source",
        )
    trained = {lr for lr in encoders.values() if lr}
    if len(trained) > 1:
        raise refuse(
            "text_encoder_lr",
            "sd-scripts",
            "text encoders at different LRs " + ", ".join(f"{r} {lr:g}" for r, lr in encoders.items()),
            "sd-scripts' networks.lora gives every text encoder one LR: use one LR for them",
        )
    cfg = run.schedule
    if not unet and not trained:
        raise refuse("learning_rate", "sd-scripts", "no group with an LR above 0", "set the denoiser's LR")
    # learning_rate stays the carried config's (the optimizer's default LR: what an absolute lr_end or
    # floor is relative to); unet_lr and text_encoder_lr give the groups theirs
    base = run.resolved.base_lr if run.resolved is not None else cfg.values.get("learning_rate")
    values = {**cfg.values, "learning_rate": base or unet or trained.copy().pop(), "unet_lr": unet or None}
    values["text_encoder_lr"] = trained.pop() if trained else None
    values["network_train_unet_only"] = not values["text_encoder_lr"]
    values["network_train_text_encoder_only"] = not unet
    written = (
        "learning_rate",
        "unet_lr",
        "text_encoder_lr",
        "network_train_unet_only",
        "network_train_text_encoder_only",
    )
    sections = {**cfg.sections, **{key: cfg.section_of(key) for key in written if values[key]}}
    return cfg.replace(values=values, sections={k: v for k, v in sections.items() if k not in written or values[k]})


TRAINER = Trainer(
    name="sd-scripts",
    title="sd-scripts",
    formats=("toml",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".toml",
    summary="kohya-ss sd-scripts --config_file TOML (also the kohya_ss GUI's, kohya-colab's and LoRA_Easy's backend)",
)
