"""The translator behind the notebook form: form values -> flat kohya keys -> validated config -> TOML.

Plain functions, no widgets: the form, the Colab quick-settings cell and the tests all go through
here. The TOML text is produced by the config layer's writer (tomli-w, the same one the CLI uses)
and validated by reading that very text back, so what the form shows as valid is exactly what a
`lora-sched validate` of the saved file accepts, and an error shows the same `ConfigError` text.

Form values are a plain dict (see `DEFAULTS` for every key):

* ``lr_scheduler`` and ``args`` (schedule parameter name -> value as entered);
* ``warmup_mode`` "steps" (``warmup_steps``) or "percent" (``warmup_percent``, written as the
  fraction kohya reads: 5 % -> ``lr_warmup_steps = 0.05``);
* ``length_mode`` "steps" (``max_train_steps``) or "epochs" (``max_train_epochs``): an epoch is
  counted on the data training reads, as `lora-sched preview` counts it (``train_data_dir`` when it
  is on this machine, or builtin:shapes; a dataset_config among the extra keys); when the data is
  not here, on the ``num_images`` x ``num_repeats`` fields, written as ``samples_per_epoch``;
* learning rates and training keys under their kohya names.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lora_sched.builtins import BUILTIN_SHAPES_SIZE
from lora_sched.config.keys import GLOBAL_SCHEDULER_KEYS, KEYS, Key, defaults
from lora_sched.errors import ConfigError, problem
from lora_sched.schedules.fields import parse_text
from lora_sched.schedules.fields import text_of as _field_text
from lora_sched.schedules.spec import ScheduleSpec, all_specs, lookup

if TYPE_CHECKING:
    from lora_sched.config import LoraConfig
    from lora_sched.schedules import TrainingShape

#: Training keys typed into text fields and read with `parse_text` (resolution is 64 or "512,768").
TEXT_PARSED_KEYS = ("resolution",)


def split_gui_optimizer_args(text: Any) -> Any:
    """kohya GUIs' optimizer_args field: space-separated "key=value" items (quote items with spaces)."""
    if not isinstance(text, str):
        return text
    try:
        items = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(problem("optimizer_args", 'space-separated "key=value" items', text, str(exc))) from None
    return items or None


def optimizer_args_text(items: Any) -> str:
    """The inverse of `split_gui_optimizer_args`."""
    return " ".join(shlex.quote(str(item)) for item in items or ())


def param_defaults(spec: ScheduleSpec, alias_defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The form field values a schedule starts with (its spec defaults, or the alias's)."""
    alias_defaults = alias_defaults or {}
    return {p.name: p.form_value(alias_defaults.get(p.name, p.default)) for p in spec.params}


def _form_start(key: Key) -> Any:
    """A key's default as its form field holds it (text fields hold text)."""
    if key.name in TEXT_PARSED_KEYS:
        return _field_text(key.default)
    if key.name == "optimizer_args":
        return optimizer_args_text(key.default)
    return key.default


#: Training keys the form edits (the key table's "form" keys), with the form's starting values.
TRAINING_DEFAULTS: dict[str, Any] = {key.name: _form_start(key) for key in KEYS if "form" in key.roles}

DEFAULTS: dict[str, Any] = {
    "lr_scheduler": "cosine",
    "args": {},
    "warmup_mode": "steps",
    "warmup_steps": 0,
    "warmup_percent": 5.0,
    "length_mode": "steps",
    "max_train_steps": 1600,
    "max_train_epochs": 10,
    "num_images": BUILTIN_SHAPES_SIZE,
    "num_repeats": 1,
    "learning_rate": "1e-4",
    "unet_lr": "",
    "text_encoder_lr": "",
    **TRAINING_DEFAULTS,
    "extra": {},
}

#: Flat keys the form edits itself (everything else in a loaded file passes through unchanged).
FORM_KEYS = frozenset(
    {
        *TRAINING_DEFAULTS,
        "lr_scheduler",
        "lr_scheduler_args",
        "learning_rate",
        "unet_lr",
        "text_encoder_lr",
        "lr_warmup_steps",
        "max_train_steps",
        "max_train_epochs",
        "samples_per_epoch",
    }
)

#: Keys whose text field may be left blank (blank = not set, the config default applies).
OPTIONAL_TEXT_KEYS = ("unet_lr", "text_encoder_lr")


def form_to_flat(values: Mapping[str, Any]) -> dict[str, Any]:
    """Form values -> flat kohya keys (unvalidated; None = not set)."""
    form_values = {**DEFAULTS, **values}
    spec, _ = lookup(form_values["lr_scheduler"])
    flat: dict[str, Any] = dict(form_values.get("extra") or {})
    flat.update({key: form_values[key] for key in TRAINING_DEFAULTS})
    for key in TEXT_PARSED_KEYS:
        flat[key] = parse_text(form_values[key])
    flat["optimizer_args"] = split_gui_optimizer_args(form_values["optimizer_args"])
    flat["lr_scheduler"] = spec.name
    flat["learning_rate"] = parse_text(form_values["learning_rate"])
    for key in OPTIONAL_TEXT_KEYS:
        flat[key] = parse_text(form_values[key])
    if form_values["warmup_mode"] == "percent":
        percent = form_values["warmup_percent"]
        ok = isinstance(percent, (int, float)) and not isinstance(percent, bool) and math.isfinite(percent)
        if not ok or not 0 <= percent < 100:
            raise ConfigError(problem("lr_warmup_steps", "a warmup percentage in [0, 100)", percent))
        # round away float noise (7 % must be written 0.07, not 0.07000000000000001)
        flat["lr_warmup_steps"] = round(percent / 100.0, 12)
    else:
        flat["lr_warmup_steps"] = form_values["warmup_steps"]
    if form_values["length_mode"] == "epochs":
        flat["max_train_epochs"] = form_values["max_train_epochs"]
        flat["samples_per_epoch"] = dataset_samples(form_values)  # None when the data is here: the config counts it
    else:
        flat["max_train_steps"] = form_values["max_train_steps"]
    table: dict[str, Any] = {}
    args = form_values.get("args") or {}
    for param in spec.params:
        if param.name not in args:
            continue
        value = param.control().read(args[param.name])
        if value is None:
            continue
        if param.kohya_key:
            flat[param.kohya_key] = value
        else:
            table[param.name] = value
    if table:
        flat["lr_scheduler_args"] = table
    return {k: val for k, val in flat.items() if val is not None}


def data_here(values: Mapping[str, Any]) -> bool:
    """Whether the data the form names (train_data_dir, or a dataset_config among the extra keys) is
    on this machine, so that an epoch is counted on it (the same walk validate and train use; the
    images are checked once, when the config is loaded)."""
    from lora_sched.config.dataset import DataPlan, plan_data

    form_values = {**DEFAULTS, **values}
    data = {
        "train_batch_size": 1,
        "train_data_dir": str(form_values["train_data_dir"]),
        "dataset_config": (form_values.get("extra") or {}).get("dataset_config"),
    }
    return isinstance(plan_data(data, {"train_data_dir"}, check_images=False), DataPlan)


def dataset_samples(values: Mapping[str, Any]) -> int | None:
    """images x repeats in epochs mode when the data is not on this machine (the `samples_per_epoch` the
    form writes), else None (a run in steps, or data here, which is counted instead)."""
    form_values = {**DEFAULTS, **values}
    if form_values["length_mode"] != "epochs" or data_here(form_values):
        return None
    images, repeats = form_values["num_images"], form_values["num_repeats"]
    for key, n in (("num_images", images), ("num_repeats", repeats)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(problem(key, "an int >= 1 (dataset size for epochs)", n))
    return images * repeats


def translate(values: Mapping[str, Any], source: str = "<form>") -> tuple[LoraConfig, str]:
    """Form values -> (validated config, the TOML text it was read from).

    Raises ConfigError with every problem, located in `source` (the file the form would write). The
    values reach the loader as its document; the text only locates the problems in it.
    """
    import tomli_w

    from lora_sched.config import loads_config
    from lora_sched.config.writer import to_document
    from lora_sched.torch.support import CUSTOM_CLASSES

    doc = to_document(form_to_flat(values))
    text = tomli_w.dumps(doc)
    cfg = loads_config(text, source=source, parsed=doc, custom_classes=CUSTOM_CLASSES)
    cfg.resolve()  # resolution problems count as invalid too
    return cfg, text


def preview_shape(cfg: LoraConfig, num_samples: int | None) -> TrainingShape | None:
    """The training shape the preview uses: from images x repeats in epochs mode, else the config's."""
    if num_samples is None:
        return None
    return cfg.training_shape(num_samples=num_samples)


def preview_sample(cfg: LoraConfig, num_samples: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(steps, LR per param group at those steps): every step, or a sample past preview.DENSE_STEPS
    (memory stays bounded for a run of a billion steps)."""
    from lora_sched.config.preview import group_lrs_at, sample

    resolved = cfg.resolve(shape=preview_shape(cfg, num_samples))
    steps, m = sample(resolved)
    return steps, group_lrs_at(resolved, cfg.group_lrs(), steps, m)


def flat_to_form(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flat kohya keys (e.g. a loaded config's values) -> form values (the inverse of form_to_flat).

    Scheduler args come from ``lr_scheduler_args`` (a table or kohya's "key=value" list) and the
    kohya global keys of the chosen schedule; an alias's own defaults fill what is not given.
    """
    spec, alias_defaults = lookup(flat.get("lr_scheduler", DEFAULTS["lr_scheduler"]))
    values: dict[str, Any] = {**DEFAULTS, "lr_scheduler": spec.name}
    for key in TRAINING_DEFAULTS:
        if flat.get(key) is not None:
            values[key] = _field_text(flat[key]) if key in TEXT_PARSED_KEYS else flat[key]
    values["optimizer_args"] = optimizer_args_text(flat.get("optimizer_args"))
    handled = {*FORM_KEYS, *(p.kohya_key for s in all_specs() for p in s.params if p.kohya_key)}
    key_defaults = config_defaults()
    values["extra"] = {
        k: val
        for k, val in flat.items()
        if k not in handled and val is not None and (k not in key_defaults or val != key_defaults[k])
    }
    values["learning_rate"] = _field_text(flat.get("learning_rate", 1e-4))
    for key in OPTIONAL_TEXT_KEYS:
        values[key] = "" if flat.get(key) is None else _field_text(flat[key])
    warmup = flat.get("lr_warmup_steps", 0)
    if isinstance(warmup, float) and 0 <= warmup < 1:
        values.update(warmup_mode="percent", warmup_percent=round(warmup * 100.0, 10))
    elif isinstance(warmup, str) and warmup.strip().endswith("%"):
        values.update(warmup_mode="percent", warmup_percent=float(warmup.strip()[:-1]))
    elif isinstance(warmup, int) and not isinstance(warmup, bool):
        values.update(warmup_mode="steps", warmup_steps=warmup)
    else:
        raise ConfigError(
            problem("lr_warmup_steps", "steps or a fraction (the form has no field for time strings)", warmup)
        )
    if flat.get("max_train_epochs") is not None:
        values.update(length_mode="epochs", max_train_epochs=flat["max_train_epochs"])
        if flat.get("samples_per_epoch") is not None:
            values.update(num_images=flat["samples_per_epoch"], num_repeats=1)
    else:
        values.update(length_mode="steps", max_train_steps=flat.get("max_train_steps", DEFAULTS["max_train_steps"]))
    if flat.get("lr_scheduler_type"):  # a custom torch class: its args belong to it, not to a catalogue spec
        if flat.get("lr_scheduler_args"):
            values["extra"]["lr_scheduler_args"] = flat["lr_scheduler_args"]
        values["args"] = param_defaults(spec, alias_defaults)
        return values
    given = _scheduler_args(flat.get("lr_scheduler_args"))
    args = param_defaults(spec, alias_defaults)
    for param in spec.params:
        names = (param.name, *param.aliases)
        found = [given[n] for n in names if n in given]
        if found:
            args[param.name] = param.form_value(found[0])
        elif param.kohya_key and _kohya_value(flat, param.kohya_key) is not None:
            args[param.name] = param.form_value(_kohya_value(flat, param.kohya_key))
    values["args"] = args
    return values


def _kohya_value(flat: Mapping[str, Any], key: str) -> Any:
    """A kohya global key's value, or sd-scripts' default when absent (as the loader reads it)."""
    return flat[key] if flat.get(key) is not None else GLOBAL_SCHEDULER_KEYS.get(key)


def config_defaults() -> dict[str, Any]:
    """Every config key's default (keys equal to it need not be carried through the form)."""
    return defaults()


def _scheduler_args(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    from lora_sched.config.args import KvItem, split_kv

    out = {}
    for item in value:
        kv = split_kv(str(item)) or KvItem(str(item).strip(), "")
        ok, parsed = kv.literal()
        out[kv.name] = parsed if ok else kv.text.strip()  # the field shows the text; validating names the error
    return out


def quick_settings(
    scheduler: str,
    *,
    warmup_ratio: float = 0.0,
    num_cycles: float = 1,
    power: float = 1.0,
    learning_rate: float = 1e-4,
    unet_lr: float | None = None,
    text_encoder_lr: float | None = None,
    run_length_unit: str = "steps",
    max_train_steps: int = 1600,
    max_train_epochs: int = 10,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Colab `#@param` fields -> form values; `extra`: other kohya keys the TOML carries (sample_*).

    Cycles and power are separate fields (kohya GUIs share one number field between them): each is
    used only when the chosen schedule has that parameter, so a cycles value never becomes a power.
    """
    spec, alias_defaults = lookup(scheduler)
    args = param_defaults(spec, alias_defaults)
    for name, value in (("num_cycles", num_cycles), ("power", power)):
        param = spec.param(name)
        if param is not None:
            args[name] = param.form_value(value)
    warmup_percent = round(warmup_ratio * 100.0, 10)
    return {
        **DEFAULTS,
        "lr_scheduler": spec.name,
        "args": args,
        "warmup_mode": "percent" if warmup_ratio else "steps",
        "warmup_steps": 0,
        "warmup_percent": warmup_percent,
        "learning_rate": _field_text(learning_rate),
        "unet_lr": "" if unet_lr is None else _field_text(unet_lr),
        "text_encoder_lr": "" if text_encoder_lr is None else _field_text(text_encoder_lr),
        "length_mode": run_length_unit,
        "max_train_steps": max_train_steps,
        "max_train_epochs": max_train_epochs,
        "extra": dict(extra or {}),
    }
