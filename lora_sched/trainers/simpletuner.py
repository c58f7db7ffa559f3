"""bghira/SimpleTuner: its config/config.json (or config.toml), read as SimpleTuner reads it.

SimpleTuner turns every key of the file (written `lr_scheduler` or `--lr_scheduler`) into a
command-line flag `--key=str(value)` and parses it with an argparse parser built from its field
registry, so a value is whatever `int(...)` / `float(...)` of its text gives. Its schedules
(simpletuner/helpers/training/custom_schedule.py, get_lr_scheduler), at optimizer update k of a run
on N processes (accelerate steps the prepared scheduler N times per update, so the LR of update k is
the scheduler's value after N k steps; W = lr_warmup_steps, T = max_train_steps, b a group's LR):

* constant: b.  constant_with_warmup: b min(1, Nk / max(1, NW)) (`constant` with W > 0 is renamed
  `constant_with_warmup` when the file is parsed).  linear: diffusers' linear decay to 0 over NT
  with warmup NW.  polynomial: its own polynomial decay from b to b lr_end / learning_rate over NT
  with warmup NW, power lr_power (default 0.8; lr_end default 4e-7 must be below learning_rate).
* cosine: a cosine WAVE, never a decay over the run: floor9(e + (b - e)(1 + cos(pi (-Nk) / T0)) / 2),
  T0 = NW (1000 when NW is 0), e = lr_end (absolute, the same for every group), floor9(x) =
  floor(x 1e9) / 1e9; there is no warmup.
* sine: floor9(e + (b - e) 0.5 (1 + sin(pi Nk / T0))), T0 = NW (W = 0 stops SimpleTuner).
* cosine_with_restarts: floor9(e + (b - e)): constant (W = 0 stops SimpleTuner).
* cosine and cosine_with_restarts set only the first group; the others keep their LR (see wave_lrs).

Groups: the denoiser's LoRA at learning_rate, then (train_text_encoder with text_encoder_lr) every
text encoder in one group at text_encoder_lr, which its parser reads as an INT.
"""

from __future__ import annotations

import math
from typing import Any

from lora_sched._lazy import np
from lora_sched.errors import ConfigError, problem
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.documents import Document

REPO = "bghira/SimpleTuner"
COMMIT = "bc8e6ab7738ce457a2ed8eb2d26cadd91c6442cb"
SCHEDULE_PY = "simpletuner/helpers/training/custom_schedule.py"
TRAINER_PY = "simpletuner/helpers/training/trainer.py"
NAMES = ("linear", "sine", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
#: key -> (argparse type SimpleTuner's field registry gives it, its default); "bool": a checkbox
KEYS: dict[str, tuple[str, Any]] = {
    "learning_rate": ("float", 4e-7),
    "lr_scheduler": ("str", "constant_with_warmup"),
    "lr_warmup_steps": ("int", 0),
    "max_train_steps": ("int", None),
    "num_train_epochs": ("int", 1),
    "train_batch_size": ("int", 4),
    "gradient_accumulation_steps": ("int", 1),
    "text_encoder_lr": ("int", None),
    "lr_end": ("float", 4e-7),
    "lr_power": ("float", 0.8),
    "lr_num_cycles": ("int", 1),
    "optimizer": ("str", "adamw_bf16"),
    "train_text_encoder": ("bool", False),
    "lr_scale": ("bool", False),
    "lr_scale_sqrt": ("bool", False),
}
_TRUE = {"1", "true", "yes", "y", "on"}  # cmd_args.py:169-170
_FALSE = {"0", "false", "no", "n", "off"}
#: keys only SimpleTuner's files have (not pretrained_model_name_or_path: sd-scripts' files have it too)
_DISTINCT = ("model_family", "data_backend_config", "model_flavour")


def cite(path: str, line: int) -> Citation:
    return Citation(REPO, path, line, COMMIT)


# ---- recognising --------------------------------------------------------------------------------
def recognise(document: Document) -> int:
    """3: a JSON/TOML object with `--`-prefixed flags, SimpleTuner's own keys (model_family,
    data_backend_config, ...) or model_type "lora" / "full" (OneTrainer's model types are upper case);
    0 for OneTrainer's files (training_method, __version) and the rest."""
    data = document.data
    if document.kind not in ("json", "toml") or not isinstance(data, dict) or not data:
        return 0
    if "__version" in data or "training_method" in data:
        return 0
    keys = {k.lstrip("-") for k in data if isinstance(k, str)}
    dashed = any(isinstance(k, str) and k.startswith("--") for k in data)
    if dashed or any(k in keys for k in _DISTINCT) or data.get("model_type") in ("lora", "full"):
        return 3
    return 0


# ---- values as its parser reads them --------------------------------------------------------------
def _raw(document: Document, name: str) -> tuple[tuple, Any]:
    """(path, value) of `name` written plain or `--`-prefixed; both written: the later one wins
    (each becomes a flag in file order and argparse keeps the last)."""
    found: tuple[tuple, Any] = ((name,), None)
    for key, value in document.data.items():
        if isinstance(key, str) and key.lstrip("-") == name and value is not None:
            found = ((key,), value)
    return found


def value(document: Document, name: str) -> Any:
    """The value of `name` as SimpleTuner's argparse gives it (its default when absent), or a
    ConfigError at its line: the flag text is str(value), parsed by int()/float() for numbers."""
    kind, default = KEYS[name]
    path, raw = _raw(document, name)
    if raw is None:
        return default
    if kind == "bool":
        text = str(raw).strip().lower() if not isinstance(raw, bool) else ("true" if raw else "false")
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(document.problem(path, "true or false", raw))
    if isinstance(raw, (bool, list, dict)):
        raise ConfigError(document.problem(path, f"a {_WHAT[kind]} (SimpleTuner parses --{name} with {kind}())", raw))
    text = str(raw).strip()
    if (isinstance(raw, str) and text.lower() == "false") or not text:
        return default  # a "false" string or an empty value is dropped before parsing
    if kind == "str":
        return text
    try:
        number = int(text) if kind == "int" else float(text)
    except ValueError:
        hint = _TE_HINT if name == "text_encoder_lr" else ""
        raise ConfigError(
            document.problem(path, f"a {_WHAT[kind]} (SimpleTuner parses --{name} with {kind}())", raw, hint)
        ) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(document.problem(path, "a finite number", raw))
    return number


_WHAT = {"int": "whole number", "float": "number", "str": "string"}
_TE_HINT = (
    "its field registry gives --text_encoder_lr the type int (no float default, a MIN 0 rule: "
    f"simpletuner/helpers/configuration/cmd_args.py:448 @ {COMMIT[:10]}), so a fractional LR stops the run; "
    "drop text_encoder_lr to train the text encoder at learning_rate"
)


def scheduler_name(document: Document, warmup: int) -> str:
    """lr_scheduler as SimpleTuner ends up with it: `cosine_with_warmup` -> `cosine` before parsing,
    one of its seven names, then `constant` with a warmup -> `constant_with_warmup`."""
    path, raw = _raw(document, "lr_scheduler")
    name = value(document, "lr_scheduler")
    if isinstance(name, str) and name.strip().lower() == "cosine_with_warmup":
        name = "cosine"
    if name not in NAMES:
        raise ConfigError(document.problem(path, "one of " + ", ".join(NAMES), raw))
    if name == "constant" and warmup > 0:
        return "constant_with_warmup"
    return name


# ---- counting -------------------------------------------------------------------------------------
def run_length(document: Document, facts: RunFacts) -> tuple[int | None, str]:
    """max_train_steps when > 0; else ceil(num_train_epochs x steps per epoch) (trainer.py:3853),
    steps per epoch = ceil(batches / gradient_accumulation_steps) (trainer.py:3832), batches counted
    over the whole dataset (not per process): ceil(samples / train_batch_size), a bucket smaller
    than one batch dropped."""
    steps = value(document, "max_train_steps")
    if steps is not None and steps < 0:
        raise ConfigError(document.problem(_raw(document, "max_train_steps")[0], "a step count >= 0", steps))
    if steps:
        return steps, f"max_train_steps = {steps}"
    epochs = value(document, "num_train_epochs")
    if not epochs or epochs < 0:
        raise ConfigError(
            document.problem(_raw(document, "num_train_epochs")[0], "max_train_steps or num_train_epochs > 0", epochs)
        )
    if facts.steps_per_epoch is not None:
        per, how = facts.steps_per_epoch, f"{facts.steps_per_epoch} steps per epoch (--steps-per-epoch)"
    elif facts.samples_per_epoch is not None:
        batch, accum = value(document, "train_batch_size"), value(document, "gradient_accumulation_steps")
        if batch < 1 or accum < 1:
            raise ConfigError(problem("train_batch_size", "a batch size and accumulation >= 1", (batch, accum)))
        batches = -(-facts.samples_per_epoch // batch) if facts.samples_per_epoch >= batch else 0
        per = max(-(-batches // accum), 1)
        how = f"{facts.samples_per_epoch} samples / batch {batch} = {batches} batches / accumulation {accum}"
        how += f" = {per} steps per epoch"
    else:
        return None, (
            f"num_train_epochs = {epochs} with no max_train_steps: give --steps-per-epoch N (as SimpleTuner logs it) "
            "or --samples-per-epoch N (images x (repeats + 1))"
        )
    return math.ceil(epochs * per), f"{epochs} epochs x {how}"


# ---- groups ---------------------------------------------------------------------------------------
#: optimizers whose entry sets override_lr_scheduler: SimpleTuner builds no LR scheduler for them
SCHEDULE_FREE = ("adamw_schedulefree", "adamw_schedulefree+aggressive", "adamw_schedulefree+no_kahan")


def groups_of(document: Document, facts: RunFacts) -> tuple[dict[str, float], list]:
    """Base LR per optimizer group, in SimpleTuner's order: the denoiser (learning_rate, times
    batch x accumulation x processes, or its square root, under lr_scale: trainer.py:1197), then
    the text encoders together at float(text_encoder_lr) when train_text_encoder is on
    (trainer.py:4099); else the text encoders, if trained, share the first group."""
    lr = value(document, "learning_rate")
    warnings = []
    if value(document, "lr_scale"):
        mul = value(document, "train_batch_size") * value(document, "gradient_accumulation_steps") * facts.processes
        lr = lr * (math.sqrt(mul) if value(document, "lr_scale_sqrt") else mul)
    groups = {"unet": float(lr)}
    te = value(document, "text_encoder_lr")
    if te is not None and value(document, "train_text_encoder"):
        groups["text_encoder"] = float(te)
        if value(document, "lr_scale"):
            warnings.append(
                _quirk(
                    document,
                    "lr_scale",
                    "learning_rate scaled by batch x accumulation x processes, text_encoder_lr left as written",
                    "scale text_encoder_lr yourself, or write both LRs unscaled with lr_scale off",
                    cite(TRAINER_PY, 1197),
                )
            )
    elif te is not None:
        path = _raw(document, "text_encoder_lr")[0]
        warnings.append(
            document.problem(path, "train_text_encoder on", "it off", "text_encoder_lr is unused", "warning")
        )
    return groups, warnings


def _quirk(document: Document, name: str, what: str, instead: str, cited: Citation) -> Any:
    """The quirk as a warning at `name`'s line (at lr_scheduler's when `name` is not written)."""
    return Quirk(name, what, instead, cited).problem().located(document.source, _line(document, name))


def _line(document: Document, name: str) -> int | None:
    return document.line_of(_raw(document, name)[0]) or document.line_of(_raw(document, "lr_scheduler")[0])


# ---- its own curves -------------------------------------------------------------------------------
def _each(fn: Any, steps: Any) -> Any:
    """fn of every step through Python's math (the trainer's own libm calls, bit for bit)."""
    return np.fromiter((fn(int(s)) for s in steps.tolist()), dtype=np.float64, count=len(steps))


def wave_lrs(name: str, groups: dict[str, float], t0: int, eta: float, n: int) -> Any:
    """LRs of SimpleTuner's cosine / sine / cosine_with_restarts classes at optimizer update k
    (scheduler step s = n k): e + (b - e) f(s) in its operation order, truncated down to a
    multiple of 1e-9 (custom_schedule.py:268, 372, 424). Cosine and CosineAnnealingHardRestarts
    set only the FIRST group: their loop then calls print_lr(self.verbose, ...), an attribute
    they never set and torch's LRScheduler no longer has, and the AttributeError is swallowed by
    `_enable_get_lr_call.__exit__` returning a true value (custom_schedule.py:191-192); the
    other groups keep their base LR."""

    def factor(s: int) -> float:
        if name == "cosine":  # T_cur = s // -1 + (s % -1) / -1 = -s (custom_schedule.py:255)
            return 1 + math.cos(math.pi * float(-s) / t0)
        if name == "sine":
            return 0.5 * (1 + math.sin(math.pi * s / t0))
        return 1 + math.cos(math.pi * 0 / t0)  # cosine_with_restarts: T_cur = s % -1 = 0

    def lrs(steps: Any) -> dict[str, Any]:
        steps = np.asarray(steps, dtype=np.int64)
        f = _each(factor, steps * n)
        out = {}
        for index, (group, base) in enumerate(groups.items()):
            lr = eta + (base - eta) * f / 2 if name != "sine" else eta + (base - eta) * f
            out[group] = np.floor(lr * 1e9) / 1e9
            if index and name != "sine":  # the loop stops after the first group (custom_schedule.py:269)
                out[group] = np.full(steps.shape, base, dtype=np.float64)
        return out

    return lrs


def constant_lrs(groups: dict[str, float]) -> Any:
    def lrs(steps: Any) -> dict[str, Any]:
        steps = np.asarray(steps)
        return {group: np.full(steps.shape, base, dtype=np.float64) for group, base in groups.items()}

    return lrs


# ---- reading ------------------------------------------------------------------------------------
def _wave_checks(document: Document, name: str, warmup: int, n: int, groups: dict) -> tuple[int, list]:
    """T0 = int(lr_warmup_steps x processes) (custom_schedule.py:505, 517, 529) and the quirks of
    the wave classes; sine and cosine_with_restarts stop SimpleTuner with T0 = 0."""
    t0 = int(warmup * n)
    quirks = [
        _quirk(
            document,
            "lr_scheduler",
            "every LR truncated down to a multiple of 1e-9 (math.floor(lr * 1e9) / 1e9)",
            "constant, constant_with_warmup, linear and polynomial set the exact LR",
            cite(SCHEDULE_PY, {"cosine": 268, "cosine_with_restarts": 372, "sine": 424}[name]),
        )
    ]
    if name != "sine" and len(groups) > 1:
        quirks.append(
            _quirk(
                document,
                "text_encoder_lr",
                "only the first param group follows the schedule; the text encoder group stays at text_encoder_lr "
                "(print_lr reads self.verbose, which the class never sets: the AttributeError is swallowed after "
                "the first group, custom_schedule.py:191-192)",
                "use linear, polynomial or constant_with_warmup, which schedule every group",
                cite(SCHEDULE_PY, 269 if name == "cosine" else 374),
            )
        )
    if t0 <= 0 and name != "cosine":
        line = 392 if name == "sine" else 324
        expected = f"lr_warmup_steps > 0 (SimpleTuner's {name} takes it as T_0 and stops on 0)"
        hint = f"{REPO} {SCHEDULE_PY}:{line} @ {COMMIT[:10]}"
        at = problem("lr_warmup_steps", expected, warmup, hint).located(
            document.source, _line(document, "lr_warmup_steps")
        )
        raise ConfigError(at)
    if name == "cosine" and t0 <= 0:
        t0 = 1000
        quirks.append(
            _quirk(
                document,
                "lr_warmup_steps",
                "a T_0 of 0 replaced by 1000: the cosine wave's period is 2000 scheduler steps",
                "write lr_warmup_steps = the half period you want (max_train_steps for one decay)",
                cite(SCHEDULE_PY, 227),
            )
        )
    quirks.append(_name_quirk(document, name, warmup))
    return t0, quirks


def _name_quirk(document: Document, name: str, warmup: int) -> Any:
    """What each wave name really draws (custom_schedule.py:255, 412, 354)."""
    if name == "cosine":
        return _quirk(
            document,
            "lr_scheduler",
            f"a cosine wave between each group's LR and lr_end with a period of 2 x lr_warmup_steps = {2 * warmup}"
            " steps, whatever the run length, and no warmup",
            "for one decay over the run write lr_warmup_steps = max_train_steps and lr_end = 0 (still no warmup); "
            "for a warmup then a decay use linear or polynomial",
            cite(SCHEDULE_PY, 255),
        )
    if name == "sine":
        return _quirk(
            document,
            "lr_warmup_steps",
            "the half period of the sine wave, which starts halfway between learning_rate and lr_end: no warmup",
            "for a warmup use constant_with_warmup, linear or polynomial",
            cite(SCHEDULE_PY, 412),
        )
    return _quirk(
        document,
        "lr_scheduler",
        "a constant LR: T_cur = step % steps_per_epoch with steps_per_epoch = -1 is always 0, so no "
        "decay and no restart; lr_num_cycles and the warmup are unused",
        "write constant (or constant_with_warmup): SimpleTuner has no restarting schedule",
        cite(SCHEDULE_PY, 354),
    )


def _catalogue_values(document: Document, name: str, groups: dict, warmup: int, steps: int) -> tuple[dict, dict]:
    """lora_sched's values and origins for constant / constant_with_warmup / linear / polynomial."""
    path = lambda key: _raw(document, key)[0]  # noqa: E731
    values: dict[str, Any] = {"lr_scheduler": name, "max_train_steps": steps, "learning_rate": groups["unet"]}
    values["unet_lr"] = groups["unet"]
    origins = {k: path(k) for k in ("lr_scheduler", "max_train_steps", "learning_rate", "lr_warmup_steps")}
    origins["unet_lr"] = origins["learning_rate"]
    if "text_encoder" in groups:
        values["text_encoder_lr"], origins["text_encoder_lr"] = groups["text_encoder"], path("text_encoder_lr")
    if name != "constant":
        values["lr_warmup_steps"] = warmup
    if name != "constant" and warmup >= steps:  # the run ends inside the warmup: draw it over W + 1 steps
        values["schedule_steps"], origins["schedule_steps"] = warmup + 1, origins["lr_warmup_steps"]
    if name == "polynomial":
        lr_end = value(document, "lr_end")
        if not groups["unet"] > lr_end:  # custom_schedule.py:139
            raise ConfigError(
                document.problem(
                    path("lr_end"),
                    f"lr_end below learning_rate ({groups['unet']!r}): SimpleTuner's polynomial stops otherwise",
                    lr_end,
                    f"{REPO} {SCHEDULE_PY}:139 @ {COMMIT[:10]}",
                )
            )
        values["lr_scheduler_power"] = value(document, "lr_power")
        values["lr_scheduler_args"] = {"lr_end": lr_end}
        origins["lr_scheduler_power"], origins["lr_scheduler_args"] = path("lr_power"), path("lr_end")
    return values, origins


def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run of a SimpleTuner config; text encoders trained without text_encoder_lr share the
    denoiser's group (trainer.py:4095), which `shared` records."""
    run = _read(document, facts)
    if value(document, "train_text_encoder") and "text_encoder" not in run.groups:
        run = run._replace(shared={"text_encoder": "unet"})
    return run


def _read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run of a SimpleTuner config.json / config.toml (see the module docstring)."""
    if not isinstance(document.data, dict):
        raise ConfigError(document.problem((), "a JSON object / TOML table of SimpleTuner settings", document.data))
    for key in KEYS:  # SimpleTuner parses every flag before it starts
        value(document, key)
    warmup = value(document, "lr_warmup_steps")
    if warmup < 0:
        raise ConfigError(document.problem(_raw(document, "lr_warmup_steps")[0], "a step count >= 0", warmup))
    name = scheduler_name(document, warmup)
    groups, warnings = groups_of(document, facts)
    steps, counting = run_length(document, facts)
    summary = f"{name}, lr_warmup_steps {warmup}, " + ", ".join(f"{g} {lr!r}" for g, lr in groups.items())
    common = dict(counting=counting, summary=summary)
    if steps is None:
        return TrainerRun("simpletuner", document.source, groups, None, warnings=tuple(warnings), **common)
    optimizer = value(document, "optimizer")
    if optimizer in SCHEDULE_FREE:
        warnings.append(
            _quirk(
                document,
                "optimizer",
                "no LR scheduler at all (override_lr_scheduler): lr_scheduler and lr_warmup_steps are not applied, "
                "each group stays at its LR (the optimizer warms up internally)",
                "use an optimizer without schedule-free logic to run lr_scheduler",
                Citation(REPO, "simpletuner/helpers/training/optimizer_param.py", 252, COMMIT),
            )
        )
        own = constant_lrs(groups)
        every = tuple(warnings)
        return TrainerRun("simpletuner", document.source, groups, steps, own_lrs=own, warnings=every, **common)
    if name in ("cosine", "sine", "cosine_with_restarts"):
        t0, quirks = _wave_checks(document, name, warmup, facts.processes, groups)
        own = wave_lrs(name, groups, t0, value(document, "lr_end"), facts.processes)
        every = (*warnings, *quirks)
        return TrainerRun("simpletuner", document.source, groups, steps, own_lrs=own, warnings=every, **common)
    from lora_sched.trainers.common import schedule_run

    values, origins = _catalogue_values(document, name, groups, warmup, steps)
    return schedule_run("simpletuner", document, values, origins, groups, counting, warnings, summary)


# ---- writing ------------------------------------------------------------------------------------
_NEAREST = (
    "the nearest SimpleTuner runs exactly: linear (or polynomial with lr_power and lr_end) with the same "
    "lr_warmup_steps over max_train_steps, or constant_with_warmup"
)


def _refuse(what: str, nearest: str = _NEAREST) -> ConfigError:
    from lora_sched.trainers.common import refuse

    return refuse("lr_scheduler", "SimpleTuner", what, nearest)


def _write_groups(run: TrainerRun) -> dict[str, Any]:
    """learning_rate, and train_text_encoder / text_encoder_lr for the text encoders' group."""
    groups = dict(run.roles)
    lr = groups.pop("unet", None)
    if lr is None or any(not g.startswith("text_encoder") for g in groups):
        raise _refuse(f"param groups {list(run.roles)}", "SimpleTuner has a denoiser group and one text encoder group")
    keys: dict[str, Any] = {"learning_rate": lr}
    te = set(groups.values())
    if len(te) > 1:
        raise _refuse(f"text encoders at different LRs {groups}", "one LR for every text encoder (one group)")
    if te:
        (te_lr,) = te
        keys["train_text_encoder"] = True
        if te_lr != lr and float(te_lr).is_integer():
            keys["text_encoder_lr"] = int(te_lr)
        elif te_lr != lr:
            raise _refuse(
                f"text_encoder_lr = {te_lr!r}: SimpleTuner's parser reads --text_encoder_lr with int() "
                f"({REPO} simpletuner/helpers/configuration/cmd_args.py:448 @ {COMMIT[:10]}), so a fractional LR "
                "stops the run",
                "train the text encoders at learning_rate (train_text_encoder without text_encoder_lr) or not at all",
            )
    return keys


def _write_schedule(run: TrainerRun) -> dict[str, Any]:
    """SimpleTuner's keys for run.resolved: constant, constant_with_warmup, linear or polynomial
    (a linear decay to a floor ratio r is polynomial power 1 with lr_end = r x learning_rate)."""
    resolved = run.resolved
    if resolved.warmup and (resolved.warmup_start != 0.0 or resolved.warmup_type != "linear"):
        what = f"a {resolved.warmup_type} warmup from {resolved.warmup_start!r}"
        raise _refuse(what, "SimpleTuner's warmups rise linearly from 0 (" + _NEAREST + ")")
    keys: dict[str, Any] = {"lr_warmup_steps": int(resolved.warmup)}
    name, params = resolved.name, resolved.params
    if name in ("constant", "constant_with_warmup"):
        return {"lr_scheduler": "constant_with_warmup" if resolved.warmup else "constant", **keys}
    if resolved.horizon != resolved.run_length:
        raise _refuse(f"{name} over {resolved.horizon} steps in a run of {resolved.run_length}", _NEAREST)
    lr = run.roles.get("unet")
    if name == "linear":
        ratio = params.get("min_lr_ratio") or 0.0
        if not ratio:
            return {"lr_scheduler": "linear", **keys}
        return {"lr_scheduler": "polynomial", **keys, "lr_power": 1.0, "lr_end": ratio * lr}
    if name == "polynomial":
        return {"lr_scheduler": "polynomial", **keys, "lr_power": float(params["power"]), "lr_end": params["lr_end"]}
    if name == "cosine":
        raise _refuse(
            "a cosine decay: SimpleTuner's cosine is a wave of period 2 x lr_warmup_steps with no warmup, each LR "
            "truncated down to a multiple of 1e-9",
            f"cosine with lr_warmup_steps = {resolved.run_length} and lr_end = 0 (no warmup, within 1e-9 absolute), "
            "or linear with the same warmup",
        )
    if "restart" in name or name in ("rex", "cosine_warmup_restarts"):
        raise _refuse(f"{name}: SimpleTuner has no restarting schedule (its cosine_with_restarts stays constant)")
    raise _refuse(f"{name}, which none of SimpleTuner's schedules draws")


def write(run: TrainerRun, facts: RunFacts) -> str:
    """A SimpleTuner config.json running run's curve exactly: its own schedule name, the run
    length as max_train_steps (num_train_epochs 0, as its examples write it); checked by reading
    it back, every step and group within 1e-9, else refused."""
    import json

    if run.resolved is None or run.run_length is None:
        raise _refuse(f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses")
    keys = {"model_type": "lora", "optimizer": "adamw_bf16"}  # --optimizer is required by its parser
    keys.update(_write_schedule(run), **_write_groups(run), max_train_steps=int(run.run_length), num_train_epochs=0)
    text = json.dumps(keys, indent=4) + "\n"
    _check(run, text, facts)
    return text


def _check(run: TrainerRun, text: str, facts: RunFacts) -> None:
    """Refuse unless the written file gives run's LRs at every step of every group (rel 1e-9)."""
    from lora_sched.trainers.documents import parse

    back = read(parse("config.json", text), RunFacts(num_processes=facts.num_processes))
    steps = np.arange(run.run_length)
    want, got = run.lrs(steps), back.lrs(steps)
    for group, lrs in want.items():
        mine = got.get(group, got["unet"])
        bad = np.flatnonzero(~np.isclose(mine, lrs, rtol=1e-9, atol=0.0))
        if bad.size:
            k = int(bad[0])
            raise _refuse(f"{run.resolved.name}: SimpleTuner's nearest gives {mine[k]!r} at step {k}, not {lrs[k]!r}")


TRAINER = Trainer(
    name="simpletuner",
    title="SimpleTuner",
    formats=("json", "toml"),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".json",
    summary="bghira/SimpleTuner config/config.json or config.toml (keys plain or --prefixed)",
)
