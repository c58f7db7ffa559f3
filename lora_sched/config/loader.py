"""Reading the kohya-ss TOML dialect into a validated `LoraConfig`.

Order: bytes -> UTF-8 -> tomllib (config/toml_file.py) -> flatten the sections (a key in two sections is an error, a
notice when both values are the same) -> sort keys into ours / the kohya tools' others (a notice) /
a slip of a known key (an error with did-you-mean) / unknown (a warning: sd-scripts drops it) ->
check each value against the key table, quoted numbers as sd-scripts would read them -> build the
schedule request (kohya global keys feed the schedule's params, absent ones give sd-scripts'
defaults; LoRA_Easy's REX and cosine classes map to `rex` / `cosine_warmup_restarts`) -> resolve
it with the schedule layer, which checks every scheduler argument. All problems are collected, then
located (file, line, section.key) and raised together. Nothing here imports NumPy or torch.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from lora_sched.config.args import parse_scheduler_args
from lora_sched.config.class_policy import import_refusal
from lora_sched.config.custom_classes import CustomClassSupport
from lora_sched.config.dataset import NoData
from lora_sched.config.keys import GLOBAL_SCHEDULER_KEYS, KEY_BY_NAME, defaults, keys_with
from lora_sched.config.kohya_keys import is_kohya_key, kohya_key_names
from lora_sched.config.learning_keys import TRAIN_READS, learning_key
from lora_sched.config.lora_easy import lora_easy_class, map_class
from lora_sched.config.model import LoraConfig
from lora_sched.config.places import DocLines, Locations, Place, bare_or_quoted, quoted, split_key
from lora_sched.config.samplers import samples_drawn
from lora_sched.config.toml_file import MAX_CONFIG_BYTES, decode, parse_toml, read_config_bytes, too_big
from lora_sched.errors import ConfigError, FieldError, Problem, finite_number, near_miss, problem, raw
from lora_sched.schedules.resolve import ScheduleRequest, check_form
from lora_sched.schedules.spec import Param, ScheduleSpec, all_specs, lookup

#: Keys whose values feed the schedule: when one of them is invalid, resolution is skipped
#: (its own messages would only repeat the same mistake).
_SCHEDULE_INPUTS = frozenset(keys_with("schedule", "curve", "data"))
#: Keys the data a run reads depends on: when one is invalid, the data is not counted.
_DATA_INPUTS = frozenset(keys_with("data"))


#: Most keys in one file, all tables counted: sd-scripts has a few hundred options; each unknown key costs a
#: did-you-mean search.
MAX_KEYS = 2000


def load_config(
    path: str | os.PathLike[str],
    *,
    trust_scheduler_code: bool = False,
    data: dict[str, Any] | None = None,
    custom_classes: CustomClassSupport | None = None,
) -> LoraConfig:
    """Read and validate a TOML config; raise ConfigError listing every problem with file:line.

    data: command-line values for the data keys (``dataset_config``, ``samples_per_epoch``), which
    replace the file's. custom_classes: what checks and previews a custom torch class
    (``lr_scheduler_type``); this layer cannot import torch's, so it is passed in
    (`lora_sched.api.load_config` passes it). Without it such a class is checked where it is built, and
    the config says so in a notice."""
    name = os.fspath(path)
    return loads_config(
        read_config_bytes(name),
        source=name,
        trust_scheduler_code=trust_scheduler_code,
        data=data,
        custom_classes=custom_classes,
    )


def loads_config(
    text: str | bytes,
    source: str = "<string>",
    *,
    trust_scheduler_code: bool = False,
    data: dict[str, Any] | None = None,
    parsed: dict[str, Any] | None = None,
    custom_classes: CustomClassSupport | None = None,
) -> LoraConfig:
    """Validate TOML text (str or bytes); `source` names it in messages; `data` and `custom_classes`
    as in load_config; `parsed`: the text already parsed by tomllib (a caller that parsed it to
    recognise the file)."""
    if len(text) > MAX_CONFIG_BYTES:  # str: characters, each at least a byte
        raise ConfigError(too_big(source, len(text.encode("utf-8")) if isinstance(text, str) else len(text)))
    if isinstance(text, bytes):
        text = decode(text, source)
    doc = parse_toml(text, source) if parsed is None else parsed
    return _Loader(text, doc, source, trust_scheduler_code, data, custom_classes).run()


def loads_values(
    values: dict[str, Any],
    source: str = "<values>",
    *,
    trust_scheduler_code: bool = False,
    data: dict[str, Any] | None = None,
    custom_classes: CustomClassSupport | None = None,
) -> LoraConfig:
    """Validate a flat dict of kohya keys (a form, the API, a trainer's mapped values) exactly as a
    file holding them would be: the values reach the loader as its document, with no TOML text in
    between (problems name their keys; there are no lines)."""
    from lora_sched.config.writer import to_document

    doc = to_document(values)
    return _Loader("", doc, source, trust_scheduler_code, data, custom_classes).run()


class _Choice(NamedTuple):
    """The schedule a config asks for, once LoRA_Easy's classes are mapped and a custom class set aside."""

    name: str  # the catalogue name ("constant" for a custom class: it supplies the curve)
    args: dict[str, Any]  # the schedule's arguments, the global keys that feed it included
    arg_keys: dict[str, str]  # argument -> the config key it came from, where not lr_scheduler_args
    type_path: str | None  # a custom torch class (lr_scheduler_type)
    type_args: dict[str, Any]  # the custom class's arguments, as written
    spec: ScheduleSpec | None  # None: an unknown name (reported)
    lora_easy: str | None = None  # the LoRA_Easy class read as the catalogue schedule `name`


class _Loader:
    def __init__(
        self,
        text: str,
        doc: dict[str, Any],
        source: str,
        trust: bool,
        data: dict[str, Any] | None = None,
        custom_classes: CustomClassSupport | None = None,
    ) -> None:
        self.doc, self.source, self.trust = doc, source, trust
        self.custom_classes = custom_classes
        self.lines = DocLines(text)
        self.flag_values = {k: v for k, v in (data or {}).items() if v is not None}
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []
        self.given: dict[str, Any] = {}  # flat key -> value as written
        self.where: dict[str, Place] = {}  # flat key -> where it was read
        self.args_items: dict[str, int] = {}  # lr_scheduler_args name -> list index (kohya form)
        self.custom: Any = None  # the custom class support once lr_scheduler_type built on a dummy optimizer
        self.extras: dict[str, tuple[str | None, Any]] = {}
        self.typos: dict[str, str] = {}  # an unknown key -> the known key it is a slip of
        self.quoted: set[str] = set()  # global scheduler keys given as a quoted number

    def line_of(self, path: tuple) -> int | None:
        return self.lines.line_of(path)

    # ---- steps ----------------------------------------------------------------------------
    def run(self) -> LoraConfig:
        self.check_size()
        self.flatten()
        values = self.check_values()
        bad_inputs = self.bad_schedule_inputs()
        config = self.first_config(values)
        if not bad_inputs & _DATA_INPUTS:
            self.data_problems(config, values)
        self.sample_prompt_problems(values)
        choice, values = self.choose_schedule(values)
        if choice.spec is None:
            bad_inputs.add("lr_scheduler")
        config = config.replace(
            values=values,
            scheduler_type=choice.type_path,
            scheduler_type_args=choice.type_args if choice.type_path else None,
            request=_request(values, choice),
        )
        self.check_schedule(config, choice, bad_inputs)
        return self.finish(config)

    def check_size(self) -> None:
        keys = _count_keys(self.doc)
        if keys > MAX_KEYS:
            raise ConfigError(Problem("", f"a config of at most {MAX_KEYS:,} keys", f"{keys:,} keys", file=self.source))

    def finish(self, config: LoraConfig) -> LoraConfig:
        """Raise every error (warnings ride along: they may explain them), or the config with its warnings."""
        if any(p.severity == "error" for p in self.problems):
            raise ConfigError(_by_line(_dedupe(config.locate([p for p in self.problems if p.severity != "notice"]))))
        return config.replace(warnings=_by_line(_dedupe(config.locate(self.problems + self.notes))))

    def flatten(self) -> None:
        if not self.doc:
            self.notes.append(
                Problem(
                    "",
                    "at least one setting",
                    "an empty file",
                    "every key takes its default (sd-scripts' where it has one): "
                    "constant LR 2e-6 for 1600 steps on builtin:shapes",
                    severity="notice",
                    file=self.source,
                )
            )
        for top, value in self.doc.items():
            if isinstance(value, dict) and top != "lr_scheduler_args":  # a table is a section, but this key
                for key, inner in value.items():
                    self.add(key, inner, top, (top, key))
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                self.problems.append(
                    Problem(
                        bare_or_quoted(top),
                        "a [section] table",
                        f"an array of tables [[{top}]]",
                        f"write [{top}] with single brackets",
                        file=self.source,
                        line=self.line_of((top,)),
                    )
                )
            else:
                self.add(top, value, None, (top,))
        for key, value in self.flag_values.items():  # the command line wins over the file
            section = self.where.get(key, Place(None, ())).section
            self.where[key] = Place(section, ())
            self.given[key] = value

    def add(self, key: str, value: Any, section: str | None, path: tuple) -> None:
        if key in self.where:
            first_section, first_path = self.where[key]
            first = f"{bare_or_quoted(first_section) + '.' if first_section else ''}{bare_or_quoted(key)}"
            same = _same_value(self.given[key], value)
            self.problems.append(
                Problem(
                    f"{bare_or_quoted(section) + '.' if section else ''}{bare_or_quoted(key)}",
                    "each key once in the whole file (kohya flattens the sections)",
                    f"a second `{key}`{' with the same value' if same else ''}; "
                    f"the first is {first} at line {self.line_of(first_path)}",
                    "kohya keeps the last one, which is the same: remove either"
                    if same
                    else "kohya silently keeps the last one; remove one of them",
                    severity="notice" if same else "error",
                    file=self.source,
                    line=self.line_of(path),
                )
            )
            return
        self.where[key] = Place(section, path)
        self.given[key] = value

    def check_values(self) -> dict[str, Any]:
        values = defaults()
        unused: list[str] = []
        for key, value in self.given.items():
            if key in KEY_BY_NAME:
                self.check_ours(key, value, values)
            elif is_kohya_key(key):
                unused.append(key)
                self.extras[key] = (self.where[key].section, value)
            else:
                found = self.unknown(key, value)
                self.problems.append(found)
                if found.severity != "error":  # kept, as sd-scripts keeps it: an export writes it back
                    self.extras[key] = (self.where[key].section, value)
        self.note_unused(unused)
        self.check_combinations(values)
        args, arg_problems, self.args_items = parse_scheduler_args(values["lr_scheduler_args"])
        self.problems.extend(arg_problems)
        values["lr_scheduler_args"] = args
        return values

    def note_unused(self, unused: list[str]) -> None:
        """One notice for the sd-scripts options lora-sched leaves alone, and one for those that
        change what is learned, which `train` refuses (lora_sched.config.learning_keys)."""
        unused = [key for key in unused if key not in TRAIN_READS]
        learning = [key for key in unused if learning_key(key, self.given[key], self.given)]
        others = [key for key in unused if key not in learning]
        for keys, found, hint in (
            (others, "sd-scripts option(s) it does not use", "they stay in the file for sd-scripts"),
            (
                learning,
                "sd-scripts option(s) that change what is learned, which lora-sched train does not apply",
                "they stay in the file for sd-scripts; lora-sched train refuses to train without them "
                "unless told to (--train-without KEY)",
            ),
        ):
            if keys:
                self.notes.append(
                    Problem(
                        "",
                        "keys lora_sched uses",
                        f"{len(keys)} {found}: " + ", ".join(keys),
                        hint,
                        severity="notice",
                        file=self.source,
                        line=self.line_of(self.where[keys[0]].path),
                    )
                )

    def check_ours(self, key: str, value: Any, values: dict[str, Any]) -> None:
        """One of lora_sched's keys: checked, typed and stored in `values` (its default stays on error)."""
        spec = KEY_BY_NAME[key]
        numeric = spec.field.numeric or key in ("lr_warmup_steps", "lr_decay_steps")
        if numeric and isinstance(value, str) and re.match(_QUOTED_NUMBER, value):
            self.quoted_number(key, value, values)
            return
        try:
            parsed = spec.parse(value)
        except FieldError as exc:
            self.problems.append(exc.problem_at(key))
            return
        # a global scheduler key keeps its int: the schedule parameter it feeds may be an int
        values[key] = value if key in GLOBAL_SCHEDULER_KEYS else parsed

    def quoted_number(self, key: str, value: str, values: dict[str, Any]) -> None:
        """A number in quotes. sd-scripts applies no argparse `type=` to a config file's values: the
        text reaches the training code as it is. Accepted where sd-scripts still runs as meant,
        an error wherever it would stop or misread it (docs: deliberate differences)."""
        if key in _QUOTED_GLOBAL_KEYS:  # sd-scripts reads it only if the schedule takes it: decided there
            values[key] = value
            self.quoted.add(key)
            return
        if key == "max_train_steps" and "max_train_epochs" in self.given:
            self.problems.append(
                problem(
                    key,
                    "a number without quotes",
                    value,
                    "ignored: max_train_epochs sets the run length (sd-scripts overwrites max_train_steps with it)",
                    severity="warning",
                )
            )
            return
        if key == "max_grad_norm":
            self.quoted_grad_norm(value, values)
            return
        spec = KEY_BY_NAME[key]
        hint = f"remove the quotes: {value.strip()}"
        if is_kohya_key(key):
            hint += "; sd-scripts passes a quoted value on as text and stops with a type error or misreads it"
        self.problems.append(problem(key, spec.expected(), value, hint))

    def quoted_grad_norm(self, value: str, values: dict[str, Any]) -> None:
        """sd-scripts hands a quoted max_grad_norm on as text: train_network.py:1448 tests
        `args.max_grad_norm != 0.0` (true for any text), then :1450 calls accelerator.clip_grad_norm_(...,
        args.max_grad_norm), which reaches torch's clip_grad_norm_, and torch reads it with float()
        (sd-scripts 48d368fa). So "1.0" clips at 1.0 as meant; "0" clips at a norm of 0, which zeroes
        every gradient instead of turning clipping off: an error."""
        number = float(value)
        if number == 0:
            self.problems.append(
                problem(
                    "max_grad_norm",
                    "a number without quotes",
                    value,
                    "write 0 without quotes: sd-scripts compares the text with 0.0 (train_network.py:1448), "
                    "so clipping stays on at a norm of 0 and every gradient becomes 0",
                )
            )
            return
        try:
            values["max_grad_norm"] = KEY_BY_NAME["max_grad_norm"].parse(number)
        except FieldError as exc:
            self.problems.append(exc.problem_at("max_grad_norm"))
            return
        self.notes.append(
            problem(
                "max_grad_norm",
                "a number without quotes",
                value,
                f"read as {number!r}, as torch reads it (sd-scripts passes the text to accelerator.clip_grad_norm_, "
                "which converts it with float()); `export --kohya` writes the number",
                severity="notice",
            )
        )

    def check_combinations(self, values: dict[str, Any]) -> None:
        """Values that are each fine but not together; what a text_encoder_lr list means."""
        if values["network_train_unet_only"] and values["network_train_text_encoder_only"]:
            self.problems.append(
                problem(
                    "network_train_text_encoder_only",
                    "at most one of network_train_unet_only and network_train_text_encoder_only",
                    True,
                    "with both, nothing is trained",
                )
            )
        te = values["text_encoder_lr"]
        if isinstance(te, list) and len(set(te)) > 1:
            self.notes.append(
                problem(
                    "text_encoder_lr",
                    "one LR for every text encoder",
                    te,
                    f"sd-scripts' networks.lora (SD 1.x, 2.x, SDXL) gives every text encoder the first value, "
                    f"{te[0]:g}, and so does lora_sched; one LR per encoder needs a FLUX.1 or SD3 network module",
                    severity="notice",
                )
            )

    def unknown(self, key: str, value: Any) -> Problem:
        """A slip of a known key is an error; any other key a warning: sd-scripts drops it silently."""
        found = raw(f"unknown key {quoted(key)}")
        target = near_miss(key, [*KEY_BY_NAME, *sorted(kohya_key_names())])
        if target is not None:
            self.typos[key] = target
            hint = f"did you mean `{target}`? (sd-scripts would silently ignore `{key}`)"
            return problem(key, "a key lora_sched or a kohya tool reads", found, hint)
        takers = [s.name for s in all_specs() if s.param(key) is not None]
        if takers:
            hint = f'`{key}` is a schedule argument: put it in lr_scheduler_args (e.g. ["{key}=..."])'
        else:
            hint = "no kohya tool reads it: sd-scripts ignores it, and so does lora_sched"
        if isinstance(value, dict):
            hint = f"[{key}] is a table inside a section, and sections nest one level; " + hint
        return problem(key, "a key lora_sched or a kohya tool reads", found, hint, severity="warning")

    # ---- the schedule ----------------------------------------------------------------------
    def bad_schedule_inputs(self) -> set[str]:
        """Keys feeding the schedule that are already reported: resolving would only echo them."""
        bad_inputs = {split_key(p.key)[0] for p in self.problems} & _SCHEDULE_INPUTS
        # a misspelt schedule key (max_train_stepz) leaves its default in place: do not resolve with it
        bad_inputs.update(set(self.typos.values()) & _SCHEDULE_INPUTS)
        return bad_inputs

    def first_config(self, values: dict[str, Any]) -> LoraConfig:
        """The config as read, before its schedule is chosen (what counting the data needs)."""
        flags = frozenset(self.flag_values)
        return LoraConfig(
            values=values,
            path=self.source,
            extras=self.extras,
            sections={k: place.section for k, place in self.where.items()},
            trust_scheduler_code=self.trust,
            custom_classes=self.custom_classes,
            flags=flags,
            locations=Locations(self.source, self.lines, self.where, self.args_items, flags),
        )

    def choose_schedule(self, values: dict[str, Any]) -> tuple[_Choice, dict[str, Any]]:
        """The schedule the values ask for, and the values with a LoRA_Easy class read as its schedule."""
        name, type_path = values["lr_scheduler"], values["lr_scheduler_type"]
        args = dict(values["lr_scheduler_args"])
        arg_keys: dict[str, str] = {}
        lora_easy = lora_easy_class(type_path)
        if lora_easy is not None:  # kohya-colab's "rex" and LoRA_Easy's classes: catalogue schedules
            name, args, arg_keys, problems, notice = map_class(lora_easy, args)
            self.problems.extend(problems)
            self.notes.append(notice)
            values = {**values, "lr_scheduler": name, "lr_scheduler_type": None, "lr_scheduler_args": dict(args)}
            type_path = None
        type_args = args
        if type_path:
            self.check_custom(type_path, args)
            name, args = "constant", {}
        spec = self.lookup(name)
        if spec is not None and not type_path:
            values = self.as_sd_scripts_passes(spec, name, values, args)
        self.global_keys(spec, type_path, values, args, arg_keys)
        if spec is not None and name == "warmup_stable_decay" and "warmup_start" not in self.given:
            # transformers' WSD warmup starts at min_lr_ratio (sd-scripts passes the ratio on)
            values = {**values, "warmup_start": args.get("min_lr_ratio", 0.0)}
        if not {split_key(p.key)[0] for p in self.problems} & {"optimizer_type", "optimizer_args"}:
            self.check_optimizer_pairing(values, type_path or (spec.name if spec else name), args)
        return _Choice(name, args, arg_keys, type_path, type_args, spec, lora_easy), values

    def as_sd_scripts_passes(
        self, spec: ScheduleSpec, name: str, values: dict[str, Any], args: dict[str, Any]
    ) -> dict[str, Any]:
        """Arguments whose meaning sd-scripts' get_scheduler_fix sets (library/train_util.py at 48d368fa):

        * cosine's `num_cycles` in the kohya list form goes to transformers' cosine (:5371), whose
          num_cycles counts full periods: "num_cycles=1.5" is three half-cosine decays (n = 3 here);
          the TOML table form, which sd-scripts cannot read, keeps lora_sched's n;
        * warmup_stable_decay's `warmup_type` goes to transformers' get_wsd_schedule (:5382): the
          warmup's shape (warmup_type)."""
        listed = bool(self.args_items)
        if spec.name == "cosine" and name == "cosine" and listed and "num_cycles" in args:
            cycles = args["num_cycles"]
            if (finite_number(cycles) or 0) > 0:  # an invalid value is reported as written
                args["num_cycles"] = 2 * cycles
                self.notes.append(
                    problem(
                        "lr_scheduler_args.num_cycles",
                        "transformers' num_cycles (full cosine periods), as sd-scripts passes it",
                        cycles,
                        f"read as {2 * cycles:g} half-cosine decays, the curve sd-scripts runs",
                        severity="notice",
                    )
                )
        if spec.name == "warmup_stable_decay" and "warmup_type" in args:
            shape = args.pop("warmup_type")
            if shape not in ("linear", "cosine"):
                self.problems.append(
                    problem(
                        "lr_scheduler_args.warmup_type",
                        'a warmup shape lora_sched draws: "linear" or "cosine"',
                        shape,
                        "transformers' 1-sqrt warmup has no equivalent here",
                    )
                )
            elif "warmup_type" in self.given and values["warmup_type"] != shape:
                self.problems.append(
                    problem("lr_scheduler_args.warmup_type", f"the warmup_type ({values['warmup_type']})", shape)
                )
            else:
                values = {**values, "warmup_type": shape}
        return values

    def lookup(self, name: str) -> ScheduleSpec | None:
        """The spec of a schedule name, or None (and the problem) for an unknown one."""
        try:
            return lookup(name)[0]
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def check_schedule(self, config: LoraConfig, choice: _Choice, bad_inputs: set[str]) -> None:
        """Resolve the schedule (every argument is checked there), or, when an input is already
        reported, still report what is wrong with the request on its own."""
        if not bad_inputs & _DATA_INPUTS and config.unknown_run_length() is not None:  # its length waits for the data
            bad_inputs = bad_inputs | {"max_train_epochs"}
        if bad_inputs:
            reported = {split_key(p.key)[0] for p in self.problems}
            independent = [p for p in check_form(config.request) if split_key(p.key)[0] not in reported]
            self.problems.extend(config.locate(independent))
            return
        try:
            frame = config.resolve()
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return
        groups = frame.group_problems(config.group_lrs().values(), config.request.key_for)
        self.problems.extend(config.locate(groups))
        if frame.warmup and choice.lora_easy:
            self.problems.append(_warmup_lora_easy_refuses(choice.lora_easy, frame.warmup))
        elif frame.warmup and (choice.type_path or choice.name == "constant"):
            self.problems.append(_warmup_sd_scripts_refuses(choice.type_path or "constant", frame.warmup))
        if choice.type_path and self.custom is not None:
            self.check_custom_run(choice.type_path, choice.type_args, frame.run_length, frame.warmup)

    def data_problems(self, config: LoraConfig, values: dict[str, Any]) -> None:
        """What counting the data found (unreadable images, skipped folders), and a notice when an
        epoch-based run length cannot be counted here."""
        found = config.data()
        self.problems.extend(found.problems)
        why = config.unknown_run_length()
        if why is not None:
            self.notes.append(
                problem(
                    "max_train_epochs",
                    "data to count the steps of an epoch",
                    raw(f"{values['max_train_epochs']} epochs of data that cannot be counted here"),
                    f"{why}; give the data (train_data_dir, dataset_config or --dataset-config) or its size "
                    "(samples_per_epoch / --samples-per-epoch = images x repeats)",
                    severity="notice",
                )
            )
        elif isinstance(found, NoData) and ({"train_data_dir", "dataset_config"} & set(self.given)):
            key = "dataset_config" if values["dataset_config"] else "train_data_dir"
            self.notes.append(
                problem(
                    key,
                    "data on this machine",
                    raw(found.why),
                    "training needs it where it runs",
                    severity="notice",
                )
            )

    def sample_prompt_problems(self, values: dict[str, Any]) -> None:
        """What reading the sample prompt file finds, at its lines: train reads it before step 0 (a
        file that is not there is train's warning: it may be written before the run)."""
        if not samples_drawn(values):
            return
        path = os.path.expanduser(str(values["sample_prompts"]))
        if not os.path.isfile(path):
            return
        from lora_sched.config.prompts import read_prompt_file  # only for a run that samples

        try:
            self.problems.extend(read_prompt_file(path).warnings)
        except ConfigError as exc:
            self.problems.extend(exc.problems)

    def check_optimizer_pairing(self, values: dict[str, Any], schedule: str, args: dict[str, Any]) -> None:
        """`adafactor` <-> Adafactor(relative_step=True): see lora_sched.config.adafactor."""
        if schedule != "adafactor" and "adafactor" not in str(values["optimizer_type"]).lower():
            return  # the rule concerns neither (and its module need not load)
        from lora_sched.config.adafactor import check_adafactor

        self.problems.extend(check_adafactor(values["optimizer_type"], values["optimizer_args"], schedule, args))

    def check_custom(self, type_path: str, args: dict[str, Any]) -> None:
        """The import policy (always), then the class and its arguments by the custom class support
        passed to the loader (without one, a notice says the class is checked where it is built)."""
        refused = import_refusal(type_path, self.trust)
        if refused:
            self.problems.extend(refused)
            return
        support = self.custom_classes
        if support is None:
            self.notes.append(
                problem(
                    "lr_scheduler_type",
                    "a class checked against torch",
                    raw("not checked: load_config was given no custom class support"),
                    "lora_sched.api.load_config and the command line check it; it is checked where it is built",
                    severity="notice",
                )
            )
            return
        try:
            problems = support.check(type_path, args, self.trust)
        except ImportError:
            return  # torch is not installed: the class is checked when training starts
        self.problems.extend(problems)
        self.custom = None if problems else support

    def check_custom_run(self, type_path: str, args: dict[str, Any], run_length: int, warmup: int) -> None:
        """A class that builds may still raise when stepped (OneCycleLR past total_steps): step it
        through the run (as far as the torch layer's dry-run budget goes)."""
        self.problems.extend(self.custom.check_run(type_path, args, run_length, warmup, self.trust))

    def absent_global_key(self, param: Param | None, kohya_default: Any, args: dict[str, Any]) -> None:
        """An absent global key leaves sd-scripts at its default: the schedule's parameter gets that
        value (warmup_stable_decay's decay is 0 there, not our 0.2), unless lr_scheduler_args sets it."""
        if param is None or kohya_default is None or param.default == kohya_default:
            return
        if not any(n in args for n in (param.name, *param.aliases)):
            args[param.name] = kohya_default

    def global_keys(
        self,
        spec: ScheduleSpec | None,
        type_path: str | None,
        values: dict[str, Any],
        args: dict[str, Any],
        arg_keys: dict[str, str],
    ) -> None:
        """kohya's global scheduler keys: feed the schedule's param, or warn when unused and not default."""
        for key, kohya_default in GLOBAL_SCHEDULER_KEYS.items():
            param = None
            if spec is not None and not type_path:
                param = next((p for p in spec.params if p.kohya_key == key), None)
            if key not in self.given or values[key] is None:
                self.absent_global_key(param, kohya_default, args)
            elif param is not None:
                self.feed_param(spec, param, key, values[key], args, arg_keys)  # type: ignore[arg-type]
            else:
                self.unused_global_key(spec, type_path, key, values, kohya_default)

    def feed_param(
        self, spec: ScheduleSpec, param: Param, key: str, value: Any, args: dict[str, Any], arg_keys: dict[str, str]
    ) -> None:
        """A global key the schedule takes becomes its parameter's value, set once."""
        if key in self.quoted:
            value = self.quoted_param(spec, key, value)
            if value is None:
                return
        clash = [n for n in (param.name, *param.aliases) if n in args]
        if clash:
            self.problems.append(
                problem(
                    key,
                    f"`{param.name}` set once",
                    value,
                    f"lr_scheduler_args also sets `{clash[0]}`; remove one of them",
                )
            )
            return
        args[param.name] = value
        arg_keys[param.name] = key

    def quoted_param(self, spec: ScheduleSpec, key: str, value: str) -> float | None:
        """A quoted number for a parameter, read as sd-scripts' schedule reads it; None (an error)
        where that schedule stops on the text."""
        if (spec.name, key) not in _QUOTED_READ_AS_NUMBER:
            self.problems.append(
                problem(
                    key,
                    "a number without quotes",
                    value,
                    f"remove the quotes: {value.strip()}; sd-scripts passes a quoted value on as text, "
                    f"and {spec.name} stops with a type error on it",
                )
            )
            return None
        number = float(value)
        read = int(number) if number.is_integer() else number
        self.notes.append(
            problem(
                key,
                "a number without quotes",
                value,
                f"read as {read}, as sd-scripts' {spec.name} reads it (it converts num_cycles itself)",
                severity="notice",
            )
        )
        return read

    def unused_global_key(
        self, spec: ScheduleSpec | None, type_path: str | None, key: str, values: dict[str, Any], kohya_default: Any
    ) -> None:
        """A global key the schedule does not take: silent at sd-scripts' default, else a warning
        (a notice for the kohya_ss GUI's epoch count in lr_scheduler_num_cycles)."""
        value = values[key]
        number = float(value) if key in self.quoted else value
        if number == kohya_default:
            return
        schedule = type_path or (spec.name if spec else values["lr_scheduler"])
        if key == "lr_scheduler_num_cycles" and _same_value(self.given.get("epoch"), number):
            self.notes.append(
                problem(
                    key,
                    f"no {key} ({schedule} does not use it)",
                    value,
                    "the kohya_ss GUI writes its epoch count here when the cycles field is blank; "
                    "ignored, as sd-scripts ignores it",
                    severity="notice",
                )
            )
            return
        users = [s.name for s in all_specs() if any(p.kohya_key == key for p in s.params)]
        hint = f"ignored, as sd-scripts ignores it; remove it, or use a schedule that takes it: {', '.join(users)}"
        own = _param_fed_elsewhere(spec, key) if spec is not None and not type_path else None
        if own is not None:
            written = value.strip() if key in self.quoted else repr(value)
            if own == "num_cycles" and schedule == "cosine" and finite_number(number) is not None:
                written = f"{number / 2:g}"  # transformers' cosine counts full periods (see as_sd_scripts_passes)
            hint = (
                f"it is ignored, as sd-scripts ignores it for {schedule}; to set {schedule}'s `{own}`, "
                f'write lr_scheduler_args = ["{own}={written}"]'
            )
        self.problems.append(problem(key, f"no {key} ({schedule} does not use it)", value, hint, severity="warning"))


def _request(values: dict[str, Any], choice: _Choice) -> ScheduleRequest:
    """The schedule as the config requests it (resolved by the schedule layer)."""
    return ScheduleRequest(
        name=choice.name,
        args=choice.args,
        warmup=values["lr_warmup_steps"],
        warmup_start=values["warmup_start"],
        warmup_type=values["warmup_type"],
        max_train_steps=values["max_train_steps"],
        max_train_epochs=values["max_train_epochs"],
        schedule_steps=values["schedule_steps"],
        hold_after_horizon=values["hold_after_horizon"],
        scale_schedule_ratio=values["scale_schedule_ratio"],
        scale_warmup=values["scale_warmup"],
        base_lr=values["learning_rate"],
        arg_keys=choice.arg_keys,
    )


def _count_keys(doc: dict[str, Any]) -> int:
    """Keys in every table of a parsed document, inline tables and arrays of tables included."""
    count, todo = 0, [doc]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            count += len(node)
            todo.extend(v for v in node.values() if isinstance(v, (dict, list)))
        else:
            todo.extend(v for v in node if isinstance(v, (dict, list)))
    return count


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same TOML type (1 and 1.0, or 1 and true, are different values)."""
    try:
        return _same(a, b)
    except RecursionError:  # arrays nested thousands deep: call them different (an error names both)
        return False


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _warmup_sd_scripts_refuses(schedule: str, warmup: int) -> Problem:
    """sd-scripts stops at start-up on a warmup with `constant` or a custom class; lora_sched runs it."""
    instead = "constant_with_warmup" if schedule == "constant" else "lora_sched.torch.WarmupThen"
    return problem(
        "lr_warmup_steps",
        f"no warmup with {schedule} (sd-scripts refuses the file: it does not require num_warmup_steps)",
        raw(f"a warmup of {warmup} steps"),
        f"lora-sched trains the warmup in front of it and `export --kohya` writes {instead}; "
        "to run this very file in sd-scripts, remove the warmup"
        + (' or write lr_scheduler = "constant_with_warmup"' if schedule == "constant" else ""),
        severity="warning",
    )


def _warmup_lora_easy_refuses(name: str, warmup: int) -> Problem:
    """A LoRA_Easy class is a custom class to sd-scripts: get_scheduler_fix builds it and then raises
    ValueError on any warmup (library/train_util.py:5294-5297 and 5300-5311, sd-scripts 48d368fa).
    The class warms up by its own `warmup_steps` argument, at the start of every cycle."""
    return problem(
        "lr_warmup_steps",
        f"no warmup with LoRA_Easy's {name} (sd-scripts refuses the file: it does not require num_warmup_steps)",
        raw(f"a warmup of {warmup} steps"),
        f'the class warms up by its own argument: lr_scheduler_args = [..., "warmup_steps={warmup}"] (a warmup '
        "at the start of every cycle) and no lr_warmup_steps; lora-sched trains this warmup once in front of the "
        "cycles and `export --kohya` writes lora_sched.torch.LoraSchedLR",
        severity="warning",
    )


def _param_fed_elsewhere(spec: ScheduleSpec, key: str) -> str | None:
    """The name of `spec`'s parameter that `key` feeds in other schedules (num_cycles, power...), if it has one."""
    names = {p.name for s in all_specs() for p in s.params if p.kohya_key == key}
    return next((p.name for p in spec.params if p.name in names), None)


#: A decimal number as text ("1e-4", " 3 "); "nan" and "inf" are not numbers a user means to quote.
_QUOTED_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
#: Global scheduler keys sd-scripts reads only for the schedules that take them (lr_decay_steps is
#: read for every schedule: a quoted one always fails there).
_QUOTED_GLOBAL_KEYS = {k for k in GLOBAL_SCHEDULER_KEYS if k != "lr_decay_steps"}
#: (schedule, key) where sd-scripts still reads a quoted number right: diffusers' hard-restarts
#: cosine converts num_cycles with float().
_QUOTED_READ_AS_NUMBER = {("cosine_with_restarts", "lr_scheduler_num_cycles")}


def _by_line(problems: list[Problem]) -> list[Problem]:
    """File order: problems without a line (file-level, or keys not written) first."""
    return sorted(problems, key=lambda p: p.line or 0)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
