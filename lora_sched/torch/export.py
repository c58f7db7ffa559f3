"""The sd-scripts export (`export --to sd-scripts`, or `--kohya`): a TOML stock sd-scripts runs with the same curve.

sd-scripts' get_scheduler_fix (library/train_util.py), the facts this export is built on:

* it builds the scheduler for ``max_train_steps x N`` steps (N processes), because accelerate steps a
  prepared scheduler N times per optimizer update; an int ``lr_warmup_steps`` / ``lr_decay_steps``
  is used as given (not multiplied) and a float one is a ratio of ``max_train_steps x N``;
* built-in names call transformers' schedules (diffusers' for piecewise_constant) with
  ``lr_scheduler_num_cycles`` for cosine_with_restarts, ``lr_scheduler_power`` for polynomial,
  ``lr_scheduler_timescale`` for inverse_sqrt, ``num_cycles / 2`` and ``lr_scheduler_min_lr_ratio``
  for cosine_with_min_lr and warmup_stable_decay, plus every ``lr_scheduler_args`` item as a keyword;
* warmup is refused for constant, adafactor and custom classes (``lr_scheduler_type``), which get
  ``cls(optimizer, **args)`` with each "key=value" item split at "=" and read by ast.literal_eval.

So a built-in name is written where it yields the identical curve (its step counts multiplied by
N where sd-scripts does not multiply them), and everything else becomes
``lr_scheduler_type = "lora_sched.torch.LoraSchedLR"`` (or ``WarmupThen`` for a custom torch
class with a warmup or N > 1) with the resolved schedule in its args.
"""

from __future__ import annotations

from typing import Any

from lora_sched.config.keys import KEY_BY_NAME, keys_with
from lora_sched.errors import ConfigError, problem
from lora_sched.schedules import ResolvedSchedule

LORA_SCHED_LR = "lora_sched.torch.LoraSchedLR"
#: Keys the export rewrites or drops: sd-scripts does not know the [lora_sched] extensions, and the
#: resolved schedule is written into kohya's own keys (re-reading them must not scale it twice).
SCHEDULE_KEYS = keys_with("schedule")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def builtin_keys(resolved: ResolvedSchedule, n: int) -> dict[str, Any] | None:
    """kohya keys for a built-in sd-scripts name giving resolved's exact curve with n processes, or None:
    the schedule's own `to_kohya` hook says (lora_sched.schedules.catalogue._kohya)."""
    if resolved.horizon != resolved.run_length:  # sd-scripts draws every curve over max_train_steps
        return None
    hook = resolved.spec.to_kohya
    return None if hook is None else hook(resolved, n)


def lora_sched_lr_args(resolved: ResolvedSchedule, n: int) -> dict[str, Any]:
    """LoraSchedLR keyword arguments that rebuild resolved exactly (see LoraSchedLR's docstring)."""
    args: dict[str, Any] = {"schedule": resolved.name, "horizon": resolved.horizon}
    if resolved.run_length != resolved.horizon:
        args["run_length"] = resolved.run_length
    if resolved.warmup:
        args["warmup"] = resolved.warmup
    if resolved.warmup_start != 0.0:
        args["warmup_start"] = resolved.warmup_start
    if resolved.warmup_type != "linear":
        args["warmup_type"] = resolved.warmup_type
    if resolved.hold_after_horizon:
        args["hold_after_horizon"] = True
    args["base_lr"] = resolved.base_lr
    if n != 1:
        args["num_processes"] = n
    for name, value in resolved.params.items():
        if value is not None:
            args[name] = _plain(value)
    return args


def custom_keys(cfg: Any, resolved: ResolvedSchedule, n: int) -> dict[str, Any]:
    """Keys for a config with a custom torch class (lr_scheduler_type)."""
    type_path, args = cfg.scheduler_type, dict(cfg.scheduler_type_args or {})
    if type_path.split(".")[-1] == "ReduceLROnPlateau":
        raise ConfigError(
            cfg.locate(
                [
                    problem(
                        "lr_scheduler_type",
                        "a scheduler sd-scripts can step (it never passes a loss to step())",
                        type_path,
                        "ReduceLROnPlateau runs only in `lora-sched train`; pick a catalogue schedule to export",
                    )
                ]
            )
        )
    keys: dict[str, Any] = {"lr_scheduler": "constant", "lr_warmup_steps": 0}
    from lora_sched.torch.custom import EXPORT_DRY_RUN_STEPS, check_run
    from lora_sched.torch.factory import custom_scheduler_call

    # a class that raises mid-run (OneCycleLR past total_steps) would stop sd-scripts there: refuse it
    failed = check_run(
        type_path,
        args,
        resolved.run_length,
        resolved.warmup,
        budget=EXPORT_DRY_RUN_STEPS,
        trust=cfg.trust_scheduler_code,
    )
    errors = [p for p in failed if p.severity == "error"]
    if errors:
        raise ConfigError(cfg.locate(errors))
    # what training builds, with sd-scripts' N calls per update
    call = custom_scheduler_call(
        type_path,
        args,
        resolved.warmup,
        resolved.warmup_start,
        resolved.warmup_type,
        num_processes=n,
        trust=cfg.trust_scheduler_code,
        bare_when_plain=True,
    )
    return {**keys, "lr_scheduler_type": call.type_path, "lr_scheduler_args": call.args}


def _check_args_for_kohya(args: dict[str, Any], cfg: Any) -> None:
    """sd-scripts splits each item at every "=" (``key, value = arg.split("=")``): refuse values with "="."""
    bad = [name for name, value in args.items() if "=" in repr(value)]
    if bad:
        raise ConfigError(
            cfg.locate(
                [
                    problem(
                        f"lr_scheduler_args.{name}",
                        'a value without "=" (sd-scripts splits every item at each "=")',
                        args[name],
                    )
                    for name in bad
                ]
            )
        )


def export_values(cfg: Any, num_processes: int = 1) -> dict[str, Any]:
    """The flat kohya values of the export: the keys the source sets, as they are, and the schedule's.

    Refuses (ConfigError) an epoch-based config whose data is not known here: the exported
    max_train_steps would be a guess."""
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ConfigError(problem("--num-processes", "an int >= 1", num_processes))
    why = cfg.unknown_run_length()
    if why is not None:
        raise ConfigError(
            cfg.locate(
                [
                    problem(
                        "max_train_epochs",
                        "a run length counted on the data (an export never guesses one)",
                        cfg.values["max_train_epochs"],
                        f"{why}; give --dataset-config FILE or --samples-per-epoch N (images x repeats), "
                        "or write max_train_steps",
                    )
                ]
            )
        )
    resolved = cfg.resolve(cfg.training_shape(num_processes=num_processes))
    if cfg.scheduler_type:
        keys = custom_keys(cfg, resolved, num_processes)
    else:
        keys = builtin_keys(resolved, num_processes)
        if keys is None:
            keys = {
                "lr_scheduler": "constant",
                "lr_warmup_steps": 0,
                "lr_scheduler_type": LORA_SCHED_LR,
                "lr_scheduler_args": lora_sched_lr_args(resolved, num_processes),
            }
    keys.setdefault("lr_scheduler_args", {})
    _check_args_for_kohya(keys["lr_scheduler_args"], cfg)
    values = {  # only what the source sets: lora_sched's own defaults (builtin model and data, ...) stay out
        k: v
        for k, v in cfg.values.items()
        if k in cfg.sections
        and k not in cfg.flags  # sd-scripts gets those on its own command line too
        and k not in SCHEDULE_KEYS
        and not (k in KEY_BY_NAME and KEY_BY_NAME[k].section == "lora_sched")
    }
    for key in SCHEDULE_KEYS:  # None: not written, so sd-scripts uses its own default
        values[key] = None
    values.update(keys)
    values["max_train_steps"] = resolved.run_length
    return {key: sd_scripts_value(key, value) for key, value in values.items()}


def sd_scripts_value(key: str, value: Any) -> Any:
    """A value as sd-scripts takes it from a config file, which skips argparse's ``type=`` (the file's
    values fill the namespace before parse_args: read_config_from_file, library/train_util.py:4760-4761,
    sd-scripts 48d368fa):

    * a whole float of a key sd-scripts declares ``type=int`` is written as the int: its config
      sanitizer checks the namespace against int for min_bucket_reso, max_bucket_reso,
      bucket_reso_steps, ... (DATASET_ASCENDABLE_SCHEMA, library/config_util.py:235-247, merged into the
      argument schema at :346-368 and checked at :410, with or without a dataset_config) and refuses
      64.0; elsewhere the int is used as one;
    * an int resolution is written as text: sd-scripts declares it ``type=str`` (train_util.py:4561)
      and splits it at "," (prepare_dataset_args, train_util.py:5410)."""
    if key == "resolution" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and declared_int(key):
        return int(value)
    return value


def declared_int(key: str) -> bool:
    """Whether sd-scripts' argparse declares `key` ``type=int`` (lora_sched/data/kohya_keys.json)."""
    from lora_sched.config.kohya_keys import kohya_key

    record = kohya_key(key)
    return record is not None and record.get("type") == "int" and not record.get("nargs")


def export_kohya(cfg: Any, num_processes: int = 1) -> str:
    """The TOML text of `cfg` for stock sd-scripts run with `num_processes` processes."""
    from lora_sched.config import LoraConfig
    from lora_sched.config.writer import dumps_config

    values = export_values(cfg, num_processes)
    extras = {key: (section, sd_scripts_value(key, value)) for key, (section, value) in cfg.extras.items()}
    out = LoraConfig(values=values, path=cfg.path, extras=extras, sections=dict.fromkeys(values))
    return dumps_config(out, kohya_list_args=True)
