"""`LoraConfig`: one validated config, whichever way it came in (TOML file, form, flags).

Every layer reads the config through this object: flat kohya keys with defaults applied
(`values` / `get`), the schedule as requested (`schedule_request`) and resolved in integer steps
(`resolve`), the run's shape (`training_shape`) and the per-group base LRs (`group_lrs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lora_sched.config.args import keyword_args
from lora_sched.config.buckets import BUCKET_DEFAULTS
from lora_sched.config.dataset import DataPlan, NoData, plan_data
from lora_sched.config.keys import KEY_BY_NAME
from lora_sched.errors import ConfigError, Problem
from lora_sched.schedules.durations import steps_per_epoch, updates_per_epoch
from lora_sched.schedules.resolve import ResolvedSchedule, ScheduleRequest, TrainingShape, resolve

if TYPE_CHECKING:
    from lora_sched.config.places import Locations


class LoraConfig:
    """A validated config.

    values: every key of the key table (lora_sched.config.keys) with defaults applied;
    lr_scheduler_args as a dict. extras: sd-scripts keys we do not use, as (section, value),
    kept so a config written back stays portable. scheduler_type / scheduler_type_args: a custom
    torch class path and its args, or None (kohya-colab's REX class is mapped to `rex` instead).
    For a custom class, `schedule_request()` / `resolve()` describe the frame it runs in: the
    warmup in front and the run length, with a constant curve (the class supplies the rest).
    flags: keys given on the command line (--dataset-config, --samples-per-epoch), not in the file.
    locations: where each key was read (lora_sched.config.places), for `locate`.
    custom_classes: the custom class support the config was loaded with (previews a torch class).
    Not changed once built: `replace` gives a changed copy. A plain class rather than a dataclass:
    `validate` must start fast, and importing dataclasses costs 8.9 ms of its 52 ms (see Key).
    Equality compares everything but flags, locations and custom_classes.
    """

    _COMPARED = (
        "values",
        "path",
        "warnings",
        "extras",
        "scheduler_type",
        "scheduler_type_args",
        "request",
        "sections",
        "trust_scheduler_code",
    )
    _KEPT = ("flags", "locations", "custom_classes")

    def __init__(
        self,
        values: dict[str, Any],
        path: str | None = None,
        warnings: list[Problem] | None = None,
        extras: dict[str, tuple[str | None, Any]] | None = None,
        scheduler_type: str | None = None,
        scheduler_type_args: dict[str, Any] | None = None,
        request: ScheduleRequest | None = None,
        sections: dict[str, str | None] | None = None,
        trust_scheduler_code: bool = False,
        flags: frozenset[str] = frozenset(),
        locations: Locations | None = None,
        custom_classes: Any = None,
    ) -> None:
        self.values = values
        self.path = path
        self.warnings = [] if warnings is None else warnings
        self.extras = {} if extras is None else extras
        self.scheduler_type = scheduler_type
        self.scheduler_type_args = scheduler_type_args
        self.request = ScheduleRequest() if request is None else request
        self.sections = {} if sections is None else sections
        self.trust_scheduler_code = trust_scheduler_code
        self.flags = frozenset(flags)
        self.locations = locations
        self.custom_classes = custom_classes  # what previews a custom class (the loader's, see load_config)
        self._data: tuple[tuple, DataPlan | NoData] | None = None  # a cache: see data()
        self._resolved: tuple[ScheduleRequest, TrainingShape, ResolvedSchedule] | None = None  # see resolve()

    def replace(self, **changes: Any) -> LoraConfig:
        """A copy with some fields changed (`values` and the other fields are shared, not copied)."""
        fields = {name: getattr(self, name) for name in (*self._COMPARED, *self._KEPT)}
        fields.update(changes)
        new = LoraConfig(**fields)
        new._data = self._data  # keyed by the data keys: reused only while they are the same
        new._resolved = self._resolved  # checked against the request and the shape before use
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoraConfig):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._COMPARED)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._COMPARED)
        return f"LoraConfig({inner})"

    def get(self, key: str) -> Any:
        """One validated value (with its default)."""
        if key not in self.values:
            raise KeyError(f"{key!r} is not a lora_sched config key")
        return self.values[key]

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def schedule_request(self) -> ScheduleRequest:
        """The schedule as written (a copy: callers may change it)."""
        import copy  # only here: a clean validate never needs it

        return copy.deepcopy(self.request)

    def data(self) -> DataPlan | NoData:
        """The data the run reads: dataset_config, train_data_dir or samples_per_epoch (lora_sched.config.dataset).

        Found once per config and data keys: validate and preview resolve several times."""
        values = self.values
        given = "train_data_dir" in self.sections
        reg = values.get("reg_data_dir") or None  # an empty string is unset, as sd-scripts tests it
        key = (
            values["train_data_dir"],
            values.get("dataset_config"),
            values.get("samples_per_epoch"),
            values["train_batch_size"],
            given,
            reg,
            values["resolution"],
            tuple(values[k] for k in BUCKET_DEFAULTS),
            tuple(values.get(k) for k in ("validation_split", "validation_seed", "seed")),
        )
        if self._data is None or self._data[0] != key:
            self._data = (key, plan_data(values, set(self.sections), reg_data_dir=reg))
        return self._data[1]

    def unknown_run_length(self) -> str | None:
        """Why the run length cannot be counted here (epochs, and no data known), or None when it can."""
        found = self.data()
        if self.values["max_train_epochs"] is None or not isinstance(found, NoData):
            return None
        return found.why

    def num_samples(self) -> int | None:
        """Samples per epoch of the data the run reads (repeats included), None when it is unknown here."""
        found = self.data()
        return found.samples if isinstance(found, DataPlan) else None

    def training_shape(self, num_processes: int = 1, num_samples: int | None = None) -> TrainingShape:
        """Steps per epoch and samples per step; num_samples (batched by train_batch_size) replaces the data's count."""
        batch = self.values["train_batch_size"]
        accum = self.values["gradient_accumulation_steps"]
        if num_samples is not None:
            per_epoch = steps_per_epoch(num_samples, batch, accum, num_processes)
        else:
            found = self.data()
            per_epoch = None
            if isinstance(found, DataPlan):
                per_epoch = updates_per_epoch(found.batches, accum, num_processes)
                batches = {d.batch_size for d in found.datasets}
                batch = batches.pop() if len(batches) == 1 else batch
        return TrainingShape(steps_per_epoch=per_epoch, samples_per_step=batch * accum * num_processes)

    def resolve(self, shape: TrainingShape | None = None) -> ResolvedSchedule:
        """The schedule in integer steps; shape None = computed from the data folder, 1 process.

        The last result is kept while the request and the shape are the same: loading a config
        resolves it to check it, and preview, the notebook form and export ask for it again."""
        shape = shape if shape is not None else self.training_shape()
        kept = self._resolved
        if kept is not None and kept[1] == shape and kept[0] == self.request:
            return kept[2]
        try:
            resolved = resolve(self.request, shape)
        except ConfigError as exc:
            raise ConfigError(self.locate(exc.problems)) from None
        self._resolved = (self.request.replace(), shape, resolved)  # a copy: a changed request is a miss
        return resolved

    def locate(self, problems: list[Problem]) -> list[Problem]:
        """Problems keyed by flat kohya names, with this file's name, line and section path filled in."""
        return self.locations.locate(problems) if self.locations is not None else problems

    def group_lrs(self) -> dict[str, float]:
        """Base LR per param group: unet_lr / text_encoder_lr, each falling back to learning_rate.

        As sd-scripts' networks.lora (SD 1.x, 2.x, SDXL) reads them: a text_encoder_lr list gives
        every text encoder its first value (an empty list counts as unset), and
        network_train_unet_only / network_train_text_encoder_only set the other group's LR to 0."""
        lr = float(self.values["learning_rate"])
        unet, te = self.values["unet_lr"], self.values["text_encoder_lr"]
        if isinstance(te, list):
            te = te[0] if te else None
        lrs = {"unet": lr if unet is None else float(unet), "text_encoder": lr if te is None else float(te)}
        if self.values.get("network_train_unet_only"):
            lrs["text_encoder"] = 0.0
        if self.values.get("network_train_text_encoder_only"):
            lrs["unet"] = 0.0
        return lrs

    def optimizer_kwargs(self) -> dict[str, Any]:
        """optimizer_args ("key=value" list, already validated) as keyword arguments."""
        return keyword_args(self.values["optimizer_args"])

    @property
    def schedule_name(self) -> str:
        return self.scheduler_type or self.request.name

    def section_of(self, key: str) -> str:
        """The section a key was read from, or the one we write it under."""
        written = self.sections.get(key)
        if written:
            return written
        return KEY_BY_NAME[key].section if key in KEY_BY_NAME else "training_arguments"
