"""kohya-ss musubi-tuner: its `--config_file` TOML for the *_train_network.py scripts (HunyuanVideo,
Wan, FramePack, FLUX.1 Kontext, FLUX.2, Qwen-Image, Z-Image, Kandinsky 5 ...).

How musubi reads and runs the schedule (src/musubi_tuner/training/, at COMMIT):

* parser_common.read_config_from_file flattens every table into one namespace (later keys win)
  and hands it to argparse as the namespace: the values keep their TOML types, so `--lr_warmup_steps`
  is an int (steps) or a float (a ratio of the steps, even 100.0);
* trainer_base.get_lr_scheduler is sd-scripts' get_scheduler_fix (the same transformers / diffusers
  names and keys, drawn over max_train_steps x N scheduler steps, an int warmup used as given) plus
  `rex` (modules/lr_schedulers.RexLR); a custom class (`lr_scheduler_type`) gets
  ``cls(optimizer, **args)`` from "key=value" items (ast.literal_eval), and its warmup is ignored;
* accelerate steps the prepared scheduler N times per optimizer update (N processes);
* the optimizer has one param group: the LoRA of the DiT at `learning_rate` (role "unet"), and with
  `network_args = ["loraplus_lr_ratio=R"]` a second one at learning_rate x R (role "unet_plus");
* max_train_epochs overrides max_train_steps: epochs x ceil(batches / N / gradient_accumulation_steps),
  the batches counted from the dataset config (its own TOML with [general] and [[datasets]]).

A file is read as lora_sched's kohya values (the sd-scripts dialect, which these names share) in
scheduler steps, then in optimizer updates where that is exact; RexLR with a warmup, and anything
else no catalogue schedule draws, is computed here step by step (`own_lrs`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lora_sched.torch.export import LORA_SCHED_LR
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.documents import Document

NAME = "musubi-tuner"
REPO = "kohya-ss/musubi-tuner"
COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"
BASE = "src/musubi_tuner/training/trainer_base.py"
PARSER = "src/musubi_tuner/training/parser_common.py"
REX = "src/musubi_tuner/modules/lr_schedulers.py"
LORA = "src/musubi_tuner/networks/lora.py"

#: The schedule names get_lr_scheduler runs (transformers' SchedulerType values it handles, diffusers'
#: piecewise_constant, its own rex and the Adafactor schedule).
NAMES = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
    "piecewise_constant",
    "rex",
    "adafactor",
)
#: musubi's own LoRA modules (sd-scripts has networks.lora and networks.lora_flux too).
OWN_NETWORKS = frozenset(
    f"networks.lora_{arch}"
    for arch in ("wan", "framepack", "flux_2", "qwen_image", "zimage", "hv_1_5", "kandinsky", "hidream_o1", "ideogram4")
) | {"networks.lora_krea2"}
#: keys of its dataset config's [[datasets]] tables (sd-scripts names them image_dir ...).
DATASET_KEYS = frozenset(
    ("image_directory", "video_directory", "image_jsonl_file", "video_jsonl_file", "cache_directory")
)


def cite(path: str, line: int) -> Citation:
    return Citation(REPO, path, line, COMMIT)


# ---- recognising --------------------------------------------------------------------------------
def own_key(name: str) -> bool:
    """A training option only musubi-tuner defines (lora_sched's kohya key table: every source is one
    of musubi's files, and not only its dataset config's reader)."""
    from lora_sched.config.keys import KEY_BY_NAME

    if name in KEY_BY_NAME:  # lora_sched's own keys are sd-scripts' (and spares loading the key table)
        return False
    from lora_sched.config.kohya_keys import kohya_key

    record = kohya_key(name)
    if record is None:
        return False
    sources = record["sources"]
    return all(s.startswith(REPO + ":") for s in sources) and any(not s.endswith("/config_utils.py") for s in sources)


def is_dataset_config(data: Any) -> bool:
    """musubi's dataset config: [[datasets]] tables with image_directory, video_directory ... keys."""
    sets = data.get("datasets") if isinstance(data, dict) else None
    return isinstance(sets, list) and any(isinstance(d, dict) and DATASET_KEYS & d.keys() for d in sets)


def recognise(document: Document) -> int:
    """3 for a TOML with an option only musubi-tuner has (dit, task, fp8_llm ...), one of its own
    network modules, or its dataset config's [[datasets]]; else 0 (sd-scripts takes plain kohya files)."""
    if document.kind != "toml" or not isinstance(document.data, dict):
        return 0
    if is_dataset_config(document.data):
        return 3
    flat = flatten(document.data)
    module = flat.get("network_module", (None,))[0]
    if isinstance(module, str) and module in OWN_NETWORKS:
        return 3
    return 3 if any(own_key(k) for k in flat) else 0


# ---- reading --------------------------------------------------------------------------------------
def flatten(data: dict[str, Any]) -> dict[str, tuple[Any, tuple]]:
    """read_config_from_file (parser_common.py:795-807): each table's keys in one namespace, later
    ones winning, values as TOML typed them. key -> (value, its path in the file)."""
    out: dict[str, tuple[Any, tuple]] = {}
    for top, value in data.items():
        if isinstance(value, dict):
            for key, item in value.items():
                out[key] = (item, (top, key))
        else:
            out[top] = (value, (top,))
    return out


class Settings:
    """The schedule options of one file as musubi sees them (its argparse defaults for absent keys)."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.flat = flatten(document.data)
        self.lr = self.number("learning_rate", 2.0e-6)
        self.name = self.get("lr_scheduler", (str,), "a scheduler name", "constant")
        self.warmup = self.get("lr_warmup_steps", (int, float), "an int (steps) or a float below 1 (a ratio)", 0)
        self.decay = self.get("lr_decay_steps", (int, float), "an int (steps) or a float below 1 (a ratio)", 0)
        self.cycles = self.number("lr_scheduler_num_cycles", 1)
        self.power = self.number("lr_scheduler_power", 1)
        self.timescale = self.get("lr_scheduler_timescale", (int,), "an int", None)
        self.min_ratio = self.get("lr_scheduler_min_lr_ratio", (int, float), "a number", None)
        self.type = self.get("lr_scheduler_type", (str,), "a class path", "")
        self.args = self.pairs("lr_scheduler_args", literal=True)
        self.steps = self.get("max_train_steps", (int,), "an int", 1600)
        self.epochs = self.get("max_train_epochs", (int,), "an int", None)
        self.accumulation = self.get("gradient_accumulation_steps", (int,), "an int >= 1", 1)
        self.optimizer = self.get("optimizer_type", (str,), "an optimizer name", "")
        self.optimizer_args = self.pairs("optimizer_args", literal=True)
        self.network_args = self.pairs("network_args", literal=False)
        self.network = self.get("network_module", (str,), "a module path", None)
        self.check()

    def path(self, key: str) -> tuple:
        return self.flat[key][1] if key in self.flat else (key,)

    def error(self, key: str, expected: str, found: Any, hint: str = "") -> Any:
        from lora_sched.errors import ConfigError

        return ConfigError(self.document.problem(self.path(key), expected, found, hint))

    def get(self, key: str, kinds: tuple[type, ...], what: str, default: Any) -> Any:
        """The value as musubi gets it: TOML-typed, never converted (bools are never numbers)."""
        if key not in self.flat:
            return default
        value = self.flat[key][0]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(key, what, value)
        return value

    def number(self, key: str, default: Any) -> Any:
        return self.get(key, (int, float), "a number", default)

    def pairs(self, key: str, *, literal: bool) -> dict[str, Any]:
        """A list of "key=value" strings split at "=" (exactly one: musubi unpacks two parts), each
        value read by ast.literal_eval where musubi reads it so (trainer_base.py:302-306)."""
        import ast

        items = self.get(key, (list,), 'a list of "key=value" strings', None) or []
        out: dict[str, Any] = {}
        for item in items:
            parts = item.split("=") if isinstance(item, str) else []
            if len(parts) != 2:
                raise self.error(key, 'items "key=value" with one "=" each', item)
            try:
                out[parts[0]] = ast.literal_eval(parts[1]) if literal else parts[1]
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise self.error(
                    key, "a Python literal after each =", item, "quote a string: \"name='text'\""
                ) from None
        return out

    def check(self) -> None:
        if self.lr <= 0:
            raise self.error("learning_rate", "a learning rate > 0 (musubi skips a group at LR 0)", self.lr)
        if self.steps < 1:
            raise self.error("max_train_steps", "an int >= 1", self.steps)
        if self.epochs is not None and self.epochs < 1:
            raise self.error("max_train_epochs", "an int >= 1", self.epochs)
        if self.accumulation < 1:
            raise self.error("gradient_accumulation_steps", "an int >= 1", self.accumulation)
        for key in ("lr_warmup_steps", "lr_decay_steps"):
            value = self.warmup if key == "lr_warmup_steps" else self.decay
            if value < 0:
                raise self.error(key, "steps >= 0 or a ratio in [0, 1)", value)

    def scheduler_steps(self, value: int | float, total: int) -> int:
        """An int as given, a float as int(value x total) (trainer_base.py:289-294)."""
        return int(value * total) if isinstance(value, float) else value

    @property
    def plus_ratio(self) -> float | None:
        """LoRA+'s ratio (networks/lora.py:480: float(value)); LoHa / LoKr have no lora_up: no group."""
        text = self.network_args.get("loraplus_lr_ratio")
        if text is None or self.network in ("networks.loha", "networks.lokr"):
            return None
        try:
            return float(text)
        except ValueError:
            raise self.error("network_args", "loraplus_lr_ratio=<a number>", text) from None

    @property
    def adafactor(self) -> bool:
        """Adafactor with relative_step (its default): musubi runs "adafactor:LR" (trainer_base.py:191-210)."""
        return self.optimizer.lower() == "adafactor" and bool(self.optimizer_args.get("relative_step", True))

    @property
    def schedule_free(self) -> bool:
        return self.optimizer.lower().endswith("schedulefree")


def groups_of(s: Settings) -> dict[str, float]:
    """lora.py prepare_optimizer_params: the LoRA group at learning_rate, then LoRA+'s lora_up at
    learning_rate x ratio (a group at LR 0 is skipped)."""
    groups = {"unet": s.lr}
    ratio = s.plus_ratio
    if ratio is not None and s.lr * ratio != 0:
        groups["unet_plus"] = s.lr * ratio
    return groups


def run_length(s: Settings, facts: RunFacts) -> tuple[int | None, str]:
    """max_train_steps, or max_train_epochs x ceil(batches / N / accumulation) (trainer_base.py:1640-1643)."""
    if s.epochs is None:
        return s.steps, f"max_train_steps = {s.steps}"
    from lora_sched.trainers.common import per_epoch

    batch, why = dataset_batch(facts)
    if batch is None:
        return None, why
    per, text = per_epoch(facts, facts.samples_per_epoch, batch, s.accumulation)
    if per is None:
        return None, f"max_train_epochs = {s.epochs} needs the data: {text}"
    if facts.steps_per_epoch is None:
        text += why
    return s.epochs * per, f"{s.epochs} epochs x {text}"


def dataset_batch(facts: RunFacts) -> tuple[int | None, str]:
    """The batch size of the dataset config given (--dataset-config), else musubi's default 1."""
    if facts.dataset_config is None or facts.steps_per_epoch is not None:
        return 1, " (batch_size 1, the dataset config's default: give --dataset-config or --steps-per-epoch)"
    from lora_sched.trainers import read_document

    data = read_document(facts.dataset_config, "toml").data
    general = data.get("general", {}) if isinstance(data.get("general"), dict) else {}
    sets = [d for d in data.get("datasets", []) if isinstance(d, dict)] or [{}]
    sizes = {d.get("batch_size", general.get("batch_size", 1)) for d in sets}
    if len(sizes) != 1:
        return None, "datasets with different batch sizes: give --steps-per-epoch N (musubi's log shows it)"
    return sizes.pop(), f" (batch_size from {facts.dataset_config}; buckets not counted)"


def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run a musubi-tuner training TOML starts, as trainer_base.get_lr_scheduler builds it."""
    if is_dataset_config(document.data):
        from lora_sched.errors import ConfigError, Problem

        raise ConfigError(
            Problem(
                "datasets",
                "a musubi-tuner training config (--config_file)",
                "its dataset config (--dataset_config): it holds no schedule",
                "read the training TOML, and give this file as --dataset-config",
                file=document.source,
                line=document.line_of(("datasets",)),
            )
        )
    s = Settings(document)
    length, counting = run_length(s, facts)
    c = Context(s, facts, length or 0, counting, groups_of(s), tuple(quirks(s, facts)), summary_of(s))
    if length is None:
        return TrainerRun(NAME, document.source, c.groups, None, counting, warnings=c.warnings, summary=c.summary)
    if s.schedule_free:
        return builtin_run(c, "constant")
    if s.type:
        return custom_run(c)
    if s.adafactor:
        return adafactor_run(c)
    if s.name.lower() == "rex":
        return rex_run(c)
    if s.name not in NAMES:
        raise s.error("lr_scheduler", "one of " + ", ".join(NAMES), s.name, "musubi raises ValueError for this name")
    if s.name == "adafactor":
        raise s.error("lr_scheduler", "adafactor only with optimizer_type = AdaFactor", s.name)
    return builtin_run(c, s.name)


class Context(NamedTuple):
    """What every curve builder shares: the settings, the facts, the run length and how it was counted,
    the groups, the quirks found and the summary."""

    s: Settings
    facts: RunFacts
    length: int
    counting: str
    groups: dict[str, float]
    warnings: tuple
    summary: str

    def scheduled(self, values: dict[str, Any], origins: dict[str, tuple] | None = None) -> TrainerRun:
        """The catalogue's run of lora_sched values (common.schedule_run), located in this file."""
        from lora_sched.trainers.common import schedule_run

        where = origins_of(self.s) if origins is None else origins
        args = (self.groups, self.counting, list(self.warnings), self.summary)
        return schedule_run(NAME, self.s.document, values, where, *args)

    def own(self, lrs: Any, warnings: tuple | None = None) -> TrainerRun:
        """A run whose LRs this module computes (no catalogue schedule draws them)."""
        found = self.warnings if warnings is None else warnings
        return TrainerRun(
            NAME,
            self.s.document.source,
            self.groups,
            self.length,
            self.counting,
            own_lrs=lrs,
            warnings=found,
            summary=self.summary,
        )


def summary_of(s: Settings) -> str:
    if s.type:
        return f"lr_scheduler_type {s.type}"
    text = s.name
    if s.warmup:
        text += f", warmup {s.warmup}" + (" of the steps" if isinstance(s.warmup, float) else " steps")
    return text


def origins_of(s: Settings) -> dict[str, tuple]:
    keys = ("learning_rate", "lr_scheduler", "lr_warmup_steps", "lr_decay_steps", "lr_scheduler_args")
    keys += ("lr_scheduler_num_cycles", "lr_scheduler_power", "lr_scheduler_timescale", "lr_scheduler_min_lr_ratio")
    out = {k: s.path(k) for k in keys}
    out["max_train_steps"] = s.path("max_train_epochs" if s.epochs is not None else "max_train_steps")
    out["lr_scheduler_type"] = s.path("lr_scheduler_type")
    return out


# ---- quirks -------------------------------------------------------------------------------------
def warmup_of(s: Settings, length: int, n: int) -> int:
    """lr_warmup_steps in scheduler steps; a TOML float of 1 or more is refused (musubi takes it as a
    ratio: 100.0 would warm up over 100 x the run)."""
    for key, value in (("lr_warmup_steps", s.warmup), ("lr_decay_steps", s.decay)):
        if isinstance(value, float) and value >= 1.0:
            raise s.error(
                key,
                "an int (steps) or a float below 1 (a ratio of the steps)",
                value,
                f"musubi reads a TOML float as a ratio ({value} x {length * n} steps, trainer_base.py:290): "
                f"write {int(value)} without the .0",
            )
    return s.scheduler_steps(s.warmup, length * n)


def quirk(s: Settings, key: str, what: str, instead: str, cited: Citation) -> Any:
    return Quirk(key, what, instead, cited).problem().located(s.document.source, s.document.line_of(s.path(key)))


def quirks(s: Settings, facts: RunFacts) -> list[Any]:
    """The ways this file's curve differs from what its names promise (each cited)."""
    out: list[Any] = []
    if s.schedule_free:
        if s.name != "constant" or s.warmup:
            what = "a schedule-free optimizer gets a dummy scheduler: lr_scheduler and lr_warmup_steps do nothing"
            out.append(
                quirk(
                    s, "lr_scheduler", what, "give the optimizer's own warmup_steps in optimizer_args", cite(BASE, 285)
                )
            )
        return out
    if s.type:
        if s.name != "constant" or s.warmup:
            what = f"lr_scheduler_type {s.type} replaces lr_scheduler and ignores lr_warmup_steps"
            instead = (
                "give the class its own warmup (LoraSchedLR: warmup=N in lr_scheduler_args), or drop lr_scheduler_type"
            )
            out.append(quirk(s, "lr_scheduler_type", what, instead, cite(BASE, 314)))
        return out
    if s.adafactor:
        if s.name not in ("constant", "adafactor"):
            what = f"Adafactor with relative_step replaces lr_scheduler = {s.name!r} by its own relative step"
            out.append(
                quirk(
                    s,
                    "lr_scheduler",
                    what,
                    'optimizer_args = ["relative_step=False"] to run lr_scheduler',
                    cite(BASE, 210),
                )
            )
        return out
    if s.name.lower() == "rex":
        out += rex_quirks(s, facts)
    out += process_quirks(s, facts)
    return out


def rex_quirks(s: Settings, facts: RunFacts) -> list[Any]:
    out = []
    if s.min_ratio is None:
        what = "rex falls to learning_rate x 0.01 (a default floor of 1%), not to 0"
        out.append(quirk(s, "lr_scheduler", what, "lr_scheduler_min_lr_ratio = 0.0 for a decay to 0", cite(BASE, 340)))
    if s.warmup:
        what = (
            "RexLR's warmup: step 0 runs at a point of the REX decay (not the floor), step 1 drops to the floor "
            "min_lr, then the LR rises linearly to the peak at the last warmup step"
        )
        instead = f'no musubi name warms REX up from step 0: lr_scheduler_type = "{LORA_SCHED_LR}" (lora-sched export)'
        out.append(quirk(s, "lr_warmup_steps", what, instead, cite(REX, 47)))
        if s.plus_ratio is not None:
            what = (
                "RexLR's warmup sets every param group to the same absolute LR: LoRA+'s group warms up at learning_rate"
            )
            instead = f'"{LORA_SCHED_LR}" warms each group from its own LR'
            out.append(quirk(s, "network_args", what, instead, cite(REX, 49)))
    return out


def process_quirks(s: Settings, facts: RunFacts) -> list[Any]:
    """N processes: the curve is drawn over max_train_steps x N scheduler steps, N per update, while an
    int lr_warmup_steps / lr_decay_steps is used as given (trainer_base.py:288-294)."""
    n = facts.processes
    out = []
    for key, value, line in (("lr_warmup_steps", s.warmup, 290), ("lr_decay_steps", s.decay, 293)):
        if (
            n > 1
            and isinstance(value, int)
            and value > 0
            and (key == "lr_warmup_steps" or s.name == "warmup_stable_decay")
        ):
            what = f"with {n} processes {key} = {value} lasts {value / n:g} optimizer updates, not {value}"
            out.append(quirk(s, key, what, f"{key} = {value * n} (or a ratio: a float below 1)", cite(BASE, line)))
    return out


# ---- the curves ---------------------------------------------------------------------------------
def kohya_values(s: Settings, name: str, total: int, warmup: int) -> dict[str, Any]:
    """lora_sched's (sd-scripts dialect) values for a built-in name drawn over `total` scheduler steps;
    the optional keys only where the file sets them (musubi's defaults are sd-scripts')."""
    values: dict[str, Any] = {"learning_rate": s.lr, "lr_scheduler": name, "lr_warmup_steps": warmup}
    values["max_train_steps"] = total
    if name != "constant" and "lr_decay_steps" in s.flat:
        values["lr_decay_steps"] = s.scheduler_steps(s.decay, total)
    for key, value in (
        ("lr_scheduler_num_cycles", s.cycles),
        ("lr_scheduler_power", s.power),
        ("lr_scheduler_timescale", s.timescale),
        ("lr_scheduler_min_lr_ratio", s.min_ratio),
    ):
        if key in s.flat and name != "constant":
            values[key] = value
    if s.args and name != "constant":
        values["lr_scheduler_args"] = dict(s.args)
        cycles = values["lr_scheduler_args"].get("num_cycles")
        if name == "cosine" and isinstance(cycles, (int, float)) and not isinstance(cycles, bool) and cycles > 0:
            # transformers' cosine gets the list's num_cycles (full periods): lora_sched's n is twice it
            values["lr_scheduler_args"]["num_cycles"] = 2 * cycles
    # warmup_stable_decay: the loader reads it as transformers' get_wsd_schedule (a cosine decay, the
    # warmup from min_lr_ratio, lr_scheduler_args' warmup_type), as musubi calls it (trainer_base.py:412-421)
    return values


def per_update(values: dict[str, Any], n: int, length: int) -> dict[str, Any] | None:
    """The same values in optimizer updates (step counts / n), or None where that is not exact."""
    if values.get("lr_scheduler_args"):
        return None
    out = dict(values, max_train_steps=length)
    for key in ("lr_warmup_steps", "lr_decay_steps", "lr_scheduler_timescale"):
        if out.get(key) is not None:
            if out[key] % n:
                return None
            out[key] //= n
    return out


def builtin_run(c: Context, name: str) -> TrainerRun:
    """transformers' / diffusers' schedule `name` as get_lr_scheduler builds it (trainer_base.py:347-429),
    over T x N scheduler steps; in optimizer updates where its step counts divide by N, else stepped."""
    s, n = c.s, c.facts.processes
    if s.schedule_free:  # DummyScheduler: the optimizer's LR as it is
        return c.scheduled(kohya_values(s, name, c.length, 0))
    warmup = warmup_of(s, c.length, n)
    if name == "constant" and warmup:
        raise s.error("lr_warmup_steps", "0 with constant (musubi raises ValueError)", s.warmup, "constant_with_warmup")
    values = kohya_values(s, name, c.length * n, warmup)
    if n == 1:
        return c.scheduled(values)
    scaled = per_update(values, n, c.length)
    if scaled is not None:
        return c.scheduled(scaled)
    return stepped(c, c.scheduled(values), n)


def stepped(c: Context, run: TrainerRun, calls: int, per: int = 1) -> TrainerRun:
    """A run stepped `calls` times per update where `run` counts `per` calls a step: its LR at u x calls // per."""
    from lora_sched._lazy import np

    def lrs(steps: Any) -> dict[str, Any]:
        return run.lrs(np.asarray(steps, dtype=np.int64) * calls // per)

    return c.own(lrs, run.warnings)


def adafactor_run(c: Context) -> TrainerRun:
    """Adafactor(relative_step): AdafactorSchedule with its own step size (trainer_base.py:328-333);
    a warmup makes musubi raise ValueError (:310)."""
    s = c.s
    if s.warmup:
        raise s.error("lr_warmup_steps", "0 with Adafactor's relative step (musubi raises ValueError)", s.warmup)
    init = bool(s.optimizer_args.get("warmup_init", False))
    values = {"learning_rate": s.lr, "lr_scheduler": "adafactor", "max_train_steps": c.length}
    values["lr_scheduler_args"] = {"warmup_init": init}
    values["optimizer_type"] = "AdaFactor"
    values["optimizer_args"] = {"relative_step": True, **({"warmup_init": True} if init else {})}
    return c.scheduled(values)


def rex_run(c: Context) -> TrainerRun:
    """RexLR(max_lr = learning_rate, min_lr = learning_rate x (lr_scheduler_min_lr_ratio or 0.01),
    num_steps = T x N, num_warmup_steps = W) (trainer_base.py:335-345). Without a warmup and with
    rex_alpha + rex_beta = 1 it is the catalogue's rex (d = rex_beta): exact, also for N processes
    (z = (TN - uN) / TN). Otherwise its own steps (see rex_lrs)."""
    s, n = c.s, c.facts.processes
    alpha, beta = rex_params(s)
    ratio = 0.01 if s.min_ratio is None else s.min_ratio
    total, warmup = c.length * n, warmup_of(s, c.length, n)
    if ratio > 1:
        raise s.error("lr_scheduler_min_lr_ratio", "at most 1 (RexLR raises ValueError: min_lr > max_lr)", ratio)
    if warmup > total:
        raise s.error("lr_warmup_steps", f"at most the {total} scheduler steps (RexLR raises ValueError)", s.warmup)
    if warmup == 0 and abs(alpha + beta - 1.0) <= 1e-12 and 0.0 <= beta < 1.0 and ratio < 1.0:
        values = {"learning_rate": s.lr, "lr_scheduler": "rex", "max_train_steps": c.length}
        values["lr_scheduler_args"] = {"d": float(beta), "min_lr_ratio": float(ratio)}
        return c.scheduled(values)
    min_lr = s.lr * ratio

    def lrs(steps: Any) -> dict[str, Any]:
        from lora_sched._lazy import np

        t = np.asarray(steps, dtype=np.int64) * n
        return rex_lrs(t, warmup, total, (s.lr, min_lr, alpha, beta), c.groups)

    return c.own(lrs)


def rex_params(s: Settings) -> tuple[float, float]:
    """rex_alpha, rex_beta from lr_scheduler_args (RexLR's defaults 0.1, 0.9); any other key is a TypeError there."""
    extra = sorted(set(s.args) - {"rex_alpha", "rex_beta"})
    if extra:
        raise s.error(
            "lr_scheduler_args", "only rex_alpha and rex_beta for rex (RexLR takes no other argument)", extra[0]
        )
    values = []
    for key, default in (("rex_alpha", 0.1), ("rex_beta", 0.9)):
        value = s.args.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise s.error("lr_scheduler_args", f"{key}=<a number>", value)
        values.append(float(value))
    return values[0], values[1]


def rex_lrs(t: Any, warmup: int, total: int, rex: tuple[float, float, float, float], groups: dict) -> dict:
    """RexLR.get_lr at scheduler steps t (modules/lr_schedulers.py:42-67), W warmup, R = total - W:
    W = 1 and t = 1: min_lr; W > 1 and 1 <= t <= W - 1: min_lr + (lr - min_lr)(t - 1)/(W - 1) (one
    absolute LR for every group); t - W >= R or t - W = -1 or R <= 0: min_lr; else
    base x (m + (1 - m) z / (a + b z)), m = min_lr / lr, z = (R - ((t - W) mod R)) / R (Python's mod:
    at t = 0 < W, z = W / R, a point of the decay, not the floor)."""
    from lora_sched._lazy import np

    lr, min_lr, a, b = rex
    after, remaining = t - warmup, total - warmup
    m = min_lr / lr
    if remaining > 0:
        z = (remaining - np.mod(after, remaining)) / remaining
        factor = m + (1.0 - m) * (z / (a + b * z))
    else:
        factor = np.zeros(t.shape)
    floor = (after >= remaining) | (after == -1) | (remaining <= 0)
    rise = np.zeros(t.shape, dtype=bool)
    ramp = np.full(t.shape, min_lr)
    if warmup == 1:
        rise = t == 1
    elif warmup > 1:
        rise = (t >= 1) & (t <= warmup - 1)
        ramp = min_lr + (lr - min_lr) * (t - 1) / (warmup - 1)
    out = {}
    for group, base in groups.items():
        value = np.where(floor, min_lr, base * factor)
        out[group] = np.where(rise, ramp, value).astype(np.float64)
    return out


def custom_run(c: Context) -> TrainerRun:
    """lr_scheduler_type: ``cls(optimizer, **args)`` (trainer_base.py:314-325), warmup ignored; lora_sched's
    LoraSchedLR is read back as its schedule, another class is stepped through torch (N calls per update)."""
    from lora_sched.trainers.common import config_from

    s, n = c.s, c.facts.processes
    if s.type.split(".")[-1] == "LoraSchedLR" and s.type.startswith("lora_sched."):
        return lora_sched_lr_run(c)
    values = {"learning_rate": s.lr, "lr_scheduler_type": s.type, "max_train_steps": c.length * n}
    if s.args:
        values["lr_scheduler_args"] = dict(s.args)
    cfg = config_from(values, s.document, origins_of(s))  # the class's import policy and arguments checked
    table = class_lrs(cfg, list(c.groups.values()), c.length * n, c.facts.trust_scheduler_code)

    def lrs(steps: Any) -> dict[str, Any]:
        from lora_sched._lazy import np

        at = np.asarray(steps, dtype=np.int64) * n
        return {group: table[at, i] for i, group in enumerate(c.groups)}

    return c.own(lrs)


def class_lrs(cfg: Any, bases: list[float], calls: int, trust: bool) -> Any:
    """Each group's LR (columns) after each call (rows) of a torch class over an optimizer holding
    these groups, no warmup (musubi ignores it): the torch layer's preview (lora_sched.torch.support)."""
    from lora_sched.errors import ConfigError
    from lora_sched.torch.support import CUSTOM_CLASSES

    try:
        return CUSTOM_CLASSES.preview_lrs(
            cfg.scheduler_type, cfg.scheduler_type_args, bases, calls, 0, 0.0, "linear", trust
        )
    except ImportError:
        raise ConfigError(cfg.locate([cfg_problem(cfg)])) from None


def cfg_problem(cfg: Any) -> Any:
    from lora_sched.errors import problem

    hint = "stepping a torch class needs torch (pip install 'lora_sched[train]')"
    return problem("lr_scheduler_type", "a class lora_sched can step", cfg.scheduler_type, hint)


#: LoraSchedLR's frame arguments, as lora_sched keys.
FRAME = {"warmup": "lr_warmup_steps", "warmup_start": "warmup_start", "warmup_type": "warmup_type"}
FRAME |= {"hold_after_horizon": "hold_after_horizon", "horizon": "schedule_steps"}


def lora_sched_lr_run(c: Context) -> TrainerRun:
    """LoraSchedLR's flat arguments (lora_sched.torch.scheduler) as lora_sched values; its update is
    calls // num_processes, musubi makes N calls per update: exact when the two agree."""
    s = c.s
    args = dict(s.args)
    name = args.pop("schedule", None) or args.pop("spec", None)
    if not isinstance(name, str):
        raise s.error("lr_scheduler_args", 'schedule="<a catalogue name>" for LoraSchedLR', name)
    calls = args.pop("num_processes", 1)
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise s.error("lr_scheduler_args", "num_processes=<an int >= 1>", calls)
    args.pop("run_length", None)  # the run is musubi's max_train_steps
    base = args.pop("base_lr", None)
    values: dict[str, Any] = {"learning_rate": s.lr if base is None else base, "lr_scheduler": name}
    values["max_train_steps"] = c.length
    for arg, key in FRAME.items():
        if arg in args:
            values[key] = args.pop(arg)
    if args:
        values["lr_scheduler_args"] = args
    inside = {k: s.path("lr_scheduler_args") for k in (*FRAME.values(), "lr_scheduler", "lr_scheduler_args")}
    run = c.scheduled(values, {**origins_of(s), **inside})
    return run if calls == c.facts.processes else stepped(c, run, c.facts.processes, calls)


# ---- writing ------------------------------------------------------------------------------------
def written_groups(run: TrainerRun) -> tuple[float, float | None]:
    """(learning_rate, loraplus_lr_ratio or None): musubi trains one LoRA on the DiT (and LoRA+'s
    lora_up group); any other group with an LR is refused."""
    from lora_sched.trainers.common import refuse

    others = [g for g, lr in run.roles.items() if g not in ("unet", "unet_plus") and lr]
    if others or not run.roles.get("unet"):
        what = "param groups " + ", ".join(f"{g} at {lr:g}" for g, lr in run.roles.items())
        nearest = "musubi-tuner trains only the DiT's LoRA: drop the text encoder groups (train the DiT alone)"
        if not run.roles.get("unet"):
            nearest = "give the DiT (unet) group an LR > 0"
        raise refuse("learning_rate", "musubi-tuner", what, nearest)
    lr = float(run.roles["unet"])
    plus = run.roles.get("unet_plus")
    return lr, (None if not plus else float(plus) / lr)


def rex_keys(resolved: Any) -> dict[str, Any] | None:
    """musubi's own rex where RexLR draws resolved exactly: one cycle to a floor ratio below 1 over the whole
    run, no warmup (RexLR's warmup starts at step 1), rex_alpha = 1 - d, rex_beta = d."""
    p = resolved.params
    if (
        resolved.name != "rex"
        or resolved.warmup
        or resolved.horizon != resolved.run_length
        or p.get("min_lr") is not None
    ):
        return None
    if (
        p["num_cycles"] != 1
        or p["restart_decay"] != 1.0
        or p["cycle_warmup"]
        or p["cycle_steps"] not in (None, resolved.horizon)
    ):
        return None
    d = float(p["d"])
    args = [f"rex_alpha={1.0 - d!r}", f"rex_beta={d!r}"]
    return {"lr_scheduler": "rex", "lr_scheduler_min_lr_ratio": float(p["min_lr_ratio"]), "lr_scheduler_args": args}


def item_list(args: dict[str, Any]) -> list[str]:
    """{"k": v} -> ["k=repr(v)"]: musubi splits each item at its one "=" and literal_evals the value."""
    from lora_sched.trainers.common import refuse

    out = []
    for key, value in args.items():
        text = repr(list(value) if isinstance(value, tuple) else value)
        if "=" in text:
            raise refuse(f"lr_scheduler_args.{key}", "musubi-tuner", f'a value with "=" ({text})', "a value without =")
        out.append(f"{key}={text}")
    return out


def schedule_keys(resolved: Any, n: int) -> dict[str, Any]:
    """musubi's own name where it draws resolved exactly (the sd-scripts hooks: musubi's get_lr_scheduler is
    sd-scripts' get_scheduler_fix for them), else LoraSchedLR through lr_scheduler_type."""
    from lora_sched.torch.export import builtin_keys, lora_sched_lr_args

    keys = rex_keys(resolved)
    if keys is not None:
        return keys
    keys = builtin_keys(resolved, n)
    if keys is not None and keys.get("lr_scheduler") in NAMES:
        keys = dict(keys)
        if keys["lr_scheduler"] == "adafactor":
            init = ["warmup_init=True"] if resolved.params.get("warmup_init") else []
            keys |= {"optimizer_type": "AdaFactor", "optimizer_args": ["relative_step=True", *init]}
        if "lr_scheduler_args" in keys:
            keys["lr_scheduler_args"] = item_list(keys["lr_scheduler_args"]) or None
        return {k: v for k, v in keys.items() if v is not None}
    args = item_list(lora_sched_lr_args(resolved, n))
    return {
        "lr_scheduler": "constant",
        "lr_warmup_steps": 0,
        "lr_scheduler_type": LORA_SCHED_LR,
        "lr_scheduler_args": args,
    }


def write(run: TrainerRun, facts: RunFacts) -> str:
    """A musubi-tuner --config_file TOML running `run`'s curve for N = facts.processes processes:
    learning_rate, max_train_steps (so no data is needed to count), the schedule keys, and LoRA+'s
    ratio for a "unet_plus" group."""
    import tomli_w

    from lora_sched.trainers.common import refuse

    resolved = run.resolved
    if resolved is None:
        raise refuse(
            "lr_scheduler",
            "musubi-tuner",
            f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses",
            "preview it with --csv and pick the nearest catalogue schedule (`lora-sched list`)",
        )
    from lora_sched.trainers.common import own_curve_refusal

    refusal = own_curve_refusal(run, "musubi-tuner")
    if refusal is not None:
        raise refusal
    lr, ratio = written_groups(run)
    out: dict[str, Any] = {"learning_rate": lr, "max_train_steps": int(resolved.run_length)}
    out |= schedule_keys(resolved, facts.processes)
    if ratio is not None:
        out["network_args"] = [f"loraplus_lr_ratio={ratio!r}"]
    return tomli_w.dumps(out)


TRAINER = Trainer(
    name=NAME,
    title="musubi-tuner",
    formats=("toml",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".toml",
    summary="kohya-ss musubi-tuner --config_file TOML (HunyuanVideo, Wan, FramePack, FLUX, Qwen-Image ... LoRA)",
)
