"""huggingface/diffusers' LoRA example scripts (examples/*/train_*lora*.py): their command-line
flags saved in a file (`accelerate launch train_text_to_image_lora.py --lr_scheduler="cosine" ...`).

Every script builds diffusers' `get_scheduler(name, optimizer, num_warmup_steps=W', num_training_steps=T',
[num_cycles, power])` (src/diffusers/optimization.py) and steps it once per optimizer update, but
accelerate's prepared scheduler steps the wrapped one N times per update (N processes; accelerate
1.15 scheduler.py:76), so update k (0-based) runs at LR = group LR x lambda(k N):

* most scripts pass W' = lr_warmup_steps x N and T' = max_train_steps x N: the curve in updates is
  the one-process curve for any N;
* train_text_to_image_lora_sdxl.py passes W' = W x accumulation, T' = T x accumulation: unless
  accumulation = N the warmup and the decay are stretched or squeezed (past T' cosine climbs back,
  linear and cosine_with_restarts sit at 0);
* with epochs (no --max_train_steps) some scripts count T' from the data loader before accelerate
  shards it: with N > 1 the run stops long before the decay ends.

lambda (s step, W warmup, T total, p = (s - W) / max(1, T - W)): s < W: s / max(1, W); then constant: 1;
linear: max(0, 1 - p)... as (T - s) / max(1, T - W); cosine: max(0, 0.5 (1 + cos(pi p))) (num_cycles
always 0.5: get_scheduler never passes it); cosine_with_restarts: 0 at p >= 1, else
0.5 (1 + cos(pi ((n p) mod 1))); polynomial: ((l0 - 1e-7)(1 - p)^power + 1e-7) / l0 up to T, where
l0 is the optimizer's default LR (learning_rate, or AdamW's own 1e-3 where the script passes no lr=).
`constant` takes no warmup at all.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.documents import Document

REPO = "huggingface/diffusers"
COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
OPTIMIZATION = "src/diffusers/optimization.py"
NAMES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
POLY_END = 1e-7  #: get_polynomial_decay_schedule_with_warmup's lr_end, never passed by get_scheduler
ADAMW_LR = 1e-3  #: torch.optim.AdamW's (and bitsandbytes AdamW8bit's) default lr
PRODIGY_LR = 1.0  #: prodigyopt.Prodigy's default lr


def cite(path: str, line: int) -> Citation:
    return Citation(REPO, path, line, COMMIT)


class Script(NamedTuple):
    """What one script does with its schedule flags (lines at COMMIT).

    scale: what W and T are multiplied by ("processes" or "accumulation"); sharded: an epoch count
    is taken after sharding (else before: N times too long with N processes); cycles: passes
    --lr_num_cycles / --lr_power; groups: the param groups' roles (the first at learning_rate, the
    others at text_encoder_lr) with --train_text_encoder; lr_kw: the optimizer gets lr=learning_rate."""

    path: str
    scale: str
    sharded: bool
    cycles: bool
    groups: tuple[str, ...]
    lr_kw: bool
    defaults: dict[str, Any]
    lines: dict[str, int]  #: "scheduler" (the get_scheduler call), "epochs", "optimizer", and each flag


def _defaults(lr: float, batch: int, epochs: int, te_lr: float | None = None) -> dict[str, Any]:
    out = {"learning_rate": lr, "lr_scheduler": "constant", "lr_warmup_steps": 500, "train_batch_size": batch}
    out.update(num_train_epochs=epochs, gradient_accumulation_steps=1, lr_num_cycles=1, lr_power=1.0)
    if te_lr is not None:
        out["text_encoder_lr"] = te_lr
    return out


def _db(path: str, groups: tuple[str, ...], sched: int, opt: int, flags: tuple[int, int, int]) -> Script:
    """A DreamBooth script of the flux/sd3 family: AdamW built without lr=, W x N, T x N."""
    lines = {"scheduler": sched, "optimizer": opt, "lr_scheduler": flags[0], "lr_warmup_steps": flags[1]}
    lines["lr_num_cycles"] = flags[2]
    return Script(path, "processes", True, True, groups, False, _defaults(1e-4, 4, 1, 5e-6), lines)


SCRIPTS: dict[str, Script] = {
    "train_text_to_image_lora.py": Script(
        "examples/text_to_image/train_text_to_image_lora.py",
        "processes",
        True,
        False,
        ("unet",),
        True,
        _defaults(1e-4, 16, 100),
        {"scheduler": 778, "optimizer": 591, "lr_scheduler": 306, "lr_warmup_steps": 315},
    ),
    "train_text_to_image_lora_sdxl.py": Script(
        "examples/text_to_image/train_text_to_image_lora_sdxl.py",
        "accumulation",
        False,
        False,
        ("unet",),
        True,
        _defaults(1e-4, 16, 100),
        {
            "scheduler": 1020,
            "warmup": 1023,
            "epochs": 1015,
            "optimizer": 854,
            "lr_scheduler": 379,
            "lr_warmup_steps": 388,
        },
    ),
    "train_dreambooth_lora.py": Script(
        "examples/dreambooth/train_dreambooth_lora.py",
        "processes",
        True,
        True,
        ("unet",),
        True,
        _defaults(5e-4, 4, 1),
        {"scheduler": 1156, "optimizer": 1075, "lr_scheduler": 402, "lr_warmup_steps": 411, "lr_num_cycles": 414},
    ),
    "train_dreambooth_lora_sdxl.py": _db(
        "examples/dreambooth/train_dreambooth_lora_sdxl.py",
        ("unet", "text_encoder", "text_encoder_2"),
        1552,
        1411,
        (510, 527, 530),
    ),
    "train_dreambooth_lora_flux.py": _db(
        "examples/dreambooth/train_dreambooth_lora_flux.py", ("unet", "text_encoder"), 1580, 1430, (516, 525, 528)
    ),
    "train_dreambooth_lora_flux_kontext.py": _db(
        "examples/dreambooth/train_dreambooth_lora_flux_kontext.py",
        ("unet", "text_encoder"),
        1847,
        1629,
        (561, 570, 573),
    ),
    "train_dreambooth_lora_sd3.py": _db(
        "examples/dreambooth/train_dreambooth_lora_sd3.py",
        ("unet", "text_encoder", "text_encoder_2"),
        1619,
        1469,
        (495, 504, 507),
    ),
    "train_dreambooth_lora_flux2.py": _db(
        "examples/dreambooth/train_dreambooth_lora_flux2.py", ("unet",), 1725, 1457, (554, 563, 566)
    ),
    "train_dreambooth_lora_flux2_klein.py": _db(
        "examples/dreambooth/train_dreambooth_lora_flux2_klein.py", ("unet",), 1682, 1460, (564, 573, 576)
    ),
    "train_dreambooth_lora_z_image.py": _db(
        "examples/dreambooth/train_dreambooth_lora_z_image.py", ("unet",), 1610, 1439, (548, 557, 560)
    ),
    "train_dreambooth_lora_hidream.py": _db(
        "examples/dreambooth/train_dreambooth_lora_hidream.py", ("unet",), 1468, 1295, (533, 542, 545)
    )._replace(sharded=False),  # counts epochs before sharding (its "epochs" line below)
}
SCRIPTS["train_dreambooth_lora_hidream.py"].defaults.pop("text_encoder_lr")  # hidream has no such flag
SCRIPTS["train_dreambooth_lora_hidream.py"].lines["epochs"] = 1463
DEFAULT_SCRIPT = "train_text_to_image_lora.py"
_SCRIPT_WORD = re.compile(r"(?:^|/)(train_\w+\.py)$")
_OWN_FLAGS = ("pretrained_model_name_or_path", "lr_scheduler", "output_dir")


def _words(data: dict) -> list[str]:
    """Every word of the command that is not a flag's name: positional words and flag values (the
    parser gives `--mixed_precision fp16 train.py` the value ["fp16", "train.py"])."""
    words = list(data.get("__command__", []))
    for value in data.values():
        if isinstance(value, str):
            words.append(value)
        elif isinstance(value, list):
            words.extend(str(v) for v in value)
    return words


def script_of(document: Document) -> str | None:
    """The train_*.py the command runs (its file name), or None when the file names none."""
    data = document.data if isinstance(document.data, dict) else {}
    for word in _words(data):
        match = _SCRIPT_WORD.search(word)
        if match:
            return match.group(1)
    return None


def recognise(document: Document) -> int:
    """3: the command runs a diffusers train_*.py script, or sets diffusers' own trio of flags
    (--pretrained_model_name_or_path, --lr_scheduler, --output_dir); else 0."""
    if document.kind != "args" or not isinstance(document.data, dict):
        return 0
    name = script_of(document)
    if name is not None and (name in SCRIPTS or "lora" in name):
        return 3
    return 3 if all(flag in document.data for flag in _OWN_FLAGS) else 0


class Flags(NamedTuple):
    """The schedule flags as the script's argparse reads them (its defaults for absent flags)."""

    script: str
    name: str
    warmup: int
    max_steps: int | None
    epochs: int
    batch: int
    accumulation: int
    cycles: int
    power: float
    groups: dict[str, float]
    init_lr: float  #: the optimizer's default LR (polynomial's l0)
    processes: int


def _value(document: Document, flag: str, kind: type, default: Any) -> Any:
    """`--flag` converted as argparse's type= does (a ConfigError at its line when it cannot be)."""
    data = document.data
    if flag not in data:
        return default
    raw = data[flag]
    if isinstance(raw, list) and _SCRIPT_WORD.search(str(raw[-1])):  # accelerate's flag before the script
        raw = raw[0] if len(raw) == 2 else raw[:-1]
    if kind is bool:
        if raw is True:
            return True
        raise ConfigError(document.problem((flag,), "a switch without a value", raw))
    try:
        if isinstance(raw, str):
            return kind(raw)
    except ValueError:
        pass
    expected = {int: "an integer", float: "a number", str: "a value"}[kind]
    raise ConfigError(document.problem((flag,), f"--{flag} {expected}", raw))


def _script(document: Document) -> tuple[str, list]:
    """The script the file runs, and a notice when the file names none."""
    name = script_of(document)
    if name is None:
        note = document.problem(
            ("lr_scheduler",),
            "a command naming its train_*.py script",
            "flags only",
            f"read as {DEFAULT_SCRIPT}'s defaults; add the script to the command",
            "notice",
        )
        return DEFAULT_SCRIPT, [note]
    if name not in SCRIPTS:
        raise ConfigError(
            document.problem(
                ("__command__",),
                "a diffusers LoRA script lora_sched knows: " + ", ".join(SCRIPTS),
                name,
                "other scripts count their steps differently; ask for them to be added",
            )
        )
    return name, []


def flags_of(document: Document, facts: RunFacts) -> tuple[Flags, list]:
    """Every schedule setting of the file, as its script reads them."""
    name, notes = _script(document)
    script = SCRIPTS[name]
    d = script.defaults
    sched = _value(document, "lr_scheduler", str, d["lr_scheduler"])
    if sched not in NAMES:
        hint = "diffusers' scripts never pass step_rules" if sched == "piecewise_constant" else ""
        raise ConfigError(document.problem(("lr_scheduler",), "one of " + ", ".join(NAMES), sched, hint))
    if not script.cycles:
        for flag in ("lr_num_cycles", "lr_power", "text_encoder_lr"):
            if flag in document.data:
                raise ConfigError(document.problem((flag,), f"a flag {name} has (argparse stops at it)", flag))
    n = facts.num_processes or _value(document, "num_processes", int, 1)
    lr = _value(document, "learning_rate", float, d["learning_rate"])
    batch = _value(document, "train_batch_size", int, d["train_batch_size"])
    accum = _value(document, "gradient_accumulation_steps", int, d["gradient_accumulation_steps"])
    for flag, value in (("num_processes", n), ("train_batch_size", batch), ("gradient_accumulation_steps", accum)):
        if value < 1:
            raise ConfigError(document.problem((flag,), "an integer >= 1", value))
    if _value(document, "scale_lr", bool, False):
        lr = lr * accum * batch * n
    flags = Flags(
        name,
        sched,
        _value(document, "lr_warmup_steps", int, d["lr_warmup_steps"]),
        _value(document, "max_train_steps", int, None),
        _value(document, "num_train_epochs", int, d["num_train_epochs"]),
        batch,
        accum,
        _value(document, "lr_num_cycles", int, d["lr_num_cycles"]),
        _value(document, "lr_power", float, d["lr_power"]),
        {},
        lr,
        n,
    )
    return flags._replace(**_groups(document, script, lr)), notes


def _groups(document: Document, script: Script, lr: float) -> dict[str, Any]:
    """Each param group's LR in the script's order, and the optimizer's default LR. A text encoder
    group gets --text_encoder_lr, or learning_rate when that is 0; Prodigy gets learning_rate everywhere."""
    prodigy = str(document.data.get("optimizer", "AdamW")).lower() == "prodigy" and not script.lr_kw
    roles = script.groups if _value(document, "train_text_encoder", bool, False) else script.groups[:1]
    te_lr = _value(document, "text_encoder_lr", float, script.defaults.get("text_encoder_lr", lr)) or lr
    groups = {role: (lr if i == 0 or prodigy else te_lr) for i, role in enumerate(roles)}
    init = lr if script.lr_kw else (PRODIGY_LR if prodigy else ADAMW_LR)
    return {"groups": groups, "init_lr": init}


class Counts(NamedTuple):
    """run: optimizer updates the run makes; warmup / total: what get_scheduler receives (W', T')."""

    run: int | None
    warmup: int
    total: int | None
    counting: str


def counts(f: Flags, script: Script, facts: RunFacts) -> Counts:
    """The run length and the scheduler's W' and T' (see the module docstring)."""
    from lora_sched.trainers.common import per_epoch

    mult = f.processes if script.scale == "processes" else f.accumulation
    if f.max_steps is not None:
        return Counts(f.max_steps, f.warmup * mult, f.max_steps * mult, f"--max_train_steps={f.max_steps}")
    run_facts = RunFacts(facts.samples_per_epoch, facts.steps_per_epoch, f.processes)
    per, text = per_epoch(run_facts, facts.samples_per_epoch, f.batch, f.accumulation)
    if per is None:
        return Counts(None, f.warmup * mult, None, f"--num_train_epochs={f.epochs}: {text}")
    run = f.epochs * per
    if script.sharded or f.processes == 1:
        return Counts(run, f.warmup * mult, run * mult, f"{f.epochs} epochs x {text}")
    if facts.samples_per_epoch is None:
        return Counts(None, f.warmup * mult, None, "the script counts epochs before sharding: give --samples-per-epoch")
    unsharded = math.ceil(math.ceil(facts.samples_per_epoch / f.batch) / f.accumulation)
    text = f"{f.epochs} epochs x {text} (the scheduler: {unsharded} unsharded updates per epoch)"
    return Counts(run, f.warmup * mult, f.epochs * unsharded * mult, text)


def lambdas(f: Flags, c: Counts, steps: Any) -> Any:
    """diffusers' lr_lambda at scheduler position k N for update k (formulas of the module docstring)."""
    from lora_sched._lazy import np

    pos = np.asarray(steps, dtype=np.float64) * f.processes
    w, t = c.warmup, c.total
    up = pos / float(max(1, w))
    if f.name == "constant":
        return np.ones_like(pos)
    if f.name == "constant_with_warmup":
        return np.where(pos < w, up, 1.0)
    p = (pos - w) / float(max(1, t - w))
    with np.errstate(invalid="ignore"):
        if f.name == "linear":
            m = np.maximum(0.0, (t - pos) / float(max(1, t - w)))
        elif f.name == "cosine":
            m = np.maximum(0.0, 0.5 * (1.0 + np.cos(np.pi * 0.5 * 2.0 * p)))
        elif f.name == "cosine_with_restarts":
            m = np.where(p >= 1.0, 0.0, np.maximum(0.0, 0.5 * (1.0 + np.cos(np.pi * ((float(f.cycles) * p) % 1.0)))))
        else:  # polynomial, l0 the optimizer's default LR
            l0 = f.init_lr
            m = np.where(pos > t, POLY_END / l0, ((l0 - POLY_END) * (1 - p) ** f.power + POLY_END) / l0)
    return np.where(pos < w, up, m)


def quirks(document: Document, f: Flags, c: Counts, script: Script) -> list:
    """The warnings of the quirks that apply to this file."""
    found: list[tuple[str, str, str, Citation]] = []
    lines = script.lines
    if f.name == "constant" and "lr_warmup_steps" in document.data and f.warmup > 0:
        found.append(
            (
                "lr_warmup_steps",
                f"no warmup: get_scheduler's constant takes none ({f.warmup} ignored)",
                f'--lr_scheduler="constant_with_warmup" for a {f.warmup}-step warmup',
                cite(OPTIMIZATION, 331),
            )
        )
    if f.name == "cosine" and "lr_num_cycles" in document.data and f.cycles != 1:
        found.append(
            (
                "lr_num_cycles",
                "one half-cosine decay: get_scheduler passes no num_cycles to cosine",
                "cannot: use cosine_with_restarts for several decays",
                cite(OPTIMIZATION, 366),
            )
        )
    if f.name == "cosine_with_restarts" and f.cycles > 1:
        found.append(
            (
                "lr_num_cycles",
                f"{f.cycles} cosine decays, i.e. {f.cycles - 1} restarts (its doc says restarts)",
                f"--lr_num_cycles={f.cycles + 1} for {f.cycles} restarts",
                cite(OPTIMIZATION, 225),
            )
        )
    if f.name == "polynomial" and not script.lr_kw:
        found.append(
            (
                "lr_scheduler",
                f"a decay to each group's LR x {POLY_END:g} / {f.init_lr:g} (the optimizer's "
                f"default lr, not --learning_rate), not to {POLY_END:g}",
                "cannot: no flag sets lr_end or the optimizer's default lr",
                cite(script.path, lines["optimizer"]),
            )
        )
    found += _count_quirks(f, c, script)
    return [Quirk(*q).problem().located(document.source, document.line_of((q[0],))) for q in found]


def _count_quirks(f: Flags, c: Counts, script: Script) -> list[tuple[str, str, str, Citation]]:
    """The quirks of the scripts' step counts: W', T' x accumulation; epochs counted before sharding."""
    found: list[tuple[str, str, str, Citation]] = []
    lines = script.lines
    mult = f.processes if script.scale == "processes" else f.accumulation
    if mult != f.processes:
        found.append(
            (
                "gradient_accumulation_steps",
                f"warmup and total x accumulation {f.accumulation}, stepped "
                f"x {f.processes} processes per update: the curve runs {f.processes}/{f.accumulation} as fast",
                "--gradient_accumulation_steps equal to the number of processes",
                cite(script.path, lines["warmup"]),
            )
        )
    if not script.sharded and f.max_steps is None and f.processes > 1 and c.total is not None:
        found.append(
            (
                "num_train_epochs",
                f"a scheduler counted on the unsharded data loader: {c.total // f.processes}"
                f" updates, the run stops after {c.run}",
                "--max_train_steps",
                cite(script.path, lines["epochs"]),
            )
        )
    return found


_CATALOGUE = {
    "constant": "constant",
    "constant_with_warmup": "constant_with_warmup",
    "linear": "linear",
    "cosine": "cosine",
    "cosine_with_restarts": "cosine_with_restarts",
    "polynomial": "polynomial",
}


def _exact(f: Flags, c: Counts) -> bool:
    """Whether a catalogue schedule draws the script's curve: W' and T' both N x whole updates, T' the
    run length x N, the warmup shorter than the run, at least one restart cycle."""
    n = f.processes
    warm = 0 if f.name == "constant" else c.warmup
    if c.run is None or warm % n or c.total != c.run * n or warm // n >= c.run:
        return False
    return not (f.name == "cosine_with_restarts" and f.cycles < 1)


def _values(f: Flags, c: Counts) -> tuple[dict[str, Any], dict[str, tuple]]:
    """lora_sched (kohya-named) values drawing the curve, and the flag each came from."""
    lr = next(iter(f.groups.values()))
    values: dict[str, Any] = {"learning_rate": lr, "lr_scheduler": _CATALOGUE[f.name], "max_train_steps": c.run}
    values["lr_warmup_steps"] = 0 if f.name == "constant" else c.warmup // f.processes
    origins = {k: (k,) for k in ("learning_rate", "lr_scheduler", "lr_warmup_steps", "max_train_steps")}
    if f.max_steps is None:
        origins["max_train_steps"] = ("num_train_epochs",)
    if len(f.groups) > 1:
        values["text_encoder_lr"] = list(f.groups.values())[1]
        origins["text_encoder_lr"] = ("text_encoder_lr",)
    if f.name == "cosine_with_restarts":
        values["lr_scheduler_num_cycles"] = f.cycles
        origins["lr_scheduler_num_cycles"] = ("lr_num_cycles",)
    if f.name == "polynomial":  # lr_end relative to learning_rate as l0 is to 1e-7
        values["lr_scheduler_power"] = f.power
        values["lr_scheduler_args"] = {"lr_end": POLY_END * lr / f.init_lr}
        origins["lr_scheduler_power"] = ("lr_power",)
    return values, origins


def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run of a launch command; a script with one param group trains the text encoder inside
    it under --train_text_encoder (train_dreambooth_lora.py; both of SDXL's in
    train_text_to_image_lora_sdxl.py, its line 848), which `shared` records."""
    run = _read(document, facts)
    one_group = len(run.groups) == 1 and "unet" in run.groups
    if one_group and _value(document, "train_text_encoder", bool, False) and run.trainer == "diffusers":
        shared = {"text_encoder": "unet"}
        if script_of(document) == "train_text_to_image_lora_sdxl.py":
            shared["text_encoder_2"] = "unet"
        run = run._replace(shared=shared)
    return run


def _read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run the script starts with these flags, counted and drawn as the module docstring says."""
    from lora_sched.trainers.common import schedule_run

    f, notes = flags_of(document, facts)
    script = SCRIPTS[f.script]
    if f.name == "polynomial" and not f.init_lr > POLY_END:
        raise ConfigError(
            document.problem(
                ("learning_rate",),
                f"an optimizer LR above lr_end {POLY_END:g}",
                f.init_lr,
                "diffusers raises ValueError",
            )
        )
    c = counts(f, script, facts)
    warnings = [*notes, *quirks(document, f, c, script)]
    summary = f"{f.script}: {f.name}, warmup {f.warmup} steps, {f.processes} process(es)"
    if _exact(f, c):
        values, origins = _values(f, c)
        return schedule_run("diffusers", document, values, origins, f.groups, c.counting, warnings, summary)
    if c.run is None:
        return TrainerRun(
            "diffusers", document.source, f.groups, None, c.counting, warnings=tuple(warnings), summary=summary
        )

    def own(steps: Any) -> dict[str, Any]:
        m = lambdas(f, c, steps)
        return {role: m * lr for role, lr in f.groups.items()}

    return TrainerRun(
        "diffusers",
        document.source,
        f.groups,
        c.run,
        c.counting,
        own_lrs=own,
        warnings=tuple(warnings),
        summary=summary,
    )


def _target(run: TrainerRun) -> tuple[str, dict[str, Any]]:
    """The script to write for and its LR flags: the denoiser alone -> one group; text encoders at
    its LR -> in its one group (train_dreambooth_lora.py --train_text_encoder); else flux
    (transformer, text encoder) or SDXL DreamBooth (two text encoders at one LR). A trained part the
    scripts have no group for (an embedding, text encoders without the denoiser) is refused."""
    from lora_sched.trainers.common import refuse

    trained = {role: lr for role, lr in run.roles.items() if lr}  # an untrained part: no group
    if not trained:
        raise refuse("learning_rate", "diffusers", "no group with an LR above 0", "set the denoiser's LR")
    encoders = {role: lr for role, lr in trained.items() if role.startswith("text_encoder")}
    if "unet" not in trained or len(encoders) + 1 != len(trained):
        raise refuse(
            "learning_rate",
            "diffusers",
            "trained parts " + ", ".join(f"{role} at {lr:g}" for role, lr in trained.items()),
            "diffusers' LoRA scripts train the denoiser (and its text encoders): export a run that trains the denoiser",
        )
    lr = trained["unet"]
    if not encoders:
        return "", {"learning_rate": lr}
    if set(encoders.values()) == {lr}:  # text encoders at the denoiser's LR: in its one group
        return "train_dreambooth_lora.py", {"learning_rate": lr, "train_text_encoder": True}
    te_lrs = set(encoders.values())
    flags = {"learning_rate": lr, "train_text_encoder": True, "text_encoder_lr": next(iter(te_lrs))}
    if set(encoders) == {"text_encoder"}:
        return "train_dreambooth_lora_flux.py", flags
    if set(encoders) == {"text_encoder", "text_encoder_2"} and len(te_lrs) == 1:
        return "train_dreambooth_lora_sdxl.py", flags
    raise refuse(
        "learning_rate",
        "diffusers",
        f"param groups {dict(run.roles)}",
        "diffusers' scripts have a denoiser LR and one text encoder LR: give the text encoders one LR",
    )


def _name(resolved: Any, lr0: float) -> tuple[str | None, dict[str, Any]]:
    """diffusers' name and flags drawing resolved exactly (given l0 = learning_rate), or (None, nearest flags)."""
    p = resolved.params
    plain = (
        resolved.warmup_type == "linear"
        and (resolved.warmup == 0 or resolved.warmup_start == 0.0)
        and resolved.horizon == resolved.run_length
    )
    floor = p.get("min_lr_ratio", 0.0) or 0.0
    if plain and resolved.name in ("constant", "constant_with_warmup"):
        return ("constant_with_warmup" if resolved.warmup else "constant"), {}
    if plain and resolved.name == "linear" and floor == 0.0:
        return "linear", {}
    if plain and resolved.name == "cosine" and floor == 0.0 and p["num_cycles"] == 1.0:
        return "cosine", {}
    if (
        plain
        and resolved.name == "cosine_with_restarts"
        and floor == 0.0
        and p["restart_decay"] == 1.0
        and not p["cycle_warmup"]
    ):
        return "cosine_with_restarts", {"lr_num_cycles": int(p["num_cycles"])}
    if (
        plain
        and resolved.name == "polynomial"
        and math.isclose(p["lr_end"] / resolved.base_lr, POLY_END / lr0, rel_tol=1e-12)
    ):
        return "polynomial", {"lr_power": p["power"]}
    nearest = {"linear": "linear", "polynomial": "polynomial", "constant": "constant_with_warmup"}
    return None, {"lr_scheduler": nearest.get(resolved.name, "cosine")}


def write(run: TrainerRun, facts: RunFacts) -> str:
    """`accelerate launch SCRIPT \\` and one flag a line (values through shlex.quote) running run's curve:
    --lr_warmup_steps in updates (the scripts multiply it by N as accelerate steps N times)."""
    import shlex

    from lora_sched.trainers.common import refuse

    resolved = run.resolved
    if resolved is None or run.own_lrs is not None:
        raise refuse(
            "lr_scheduler",
            "diffusers",
            f"{run.trainer}'s curve in {run.source}, no catalogue schedule",
            "preview it with --csv and pick the nearest of " + ", ".join(NAMES),
        )
    script, flags = _target(run)
    name, extra = _name(resolved, flags["learning_rate"] if not script or SCRIPTS[script].lr_kw else ADAMW_LR)
    if name is None:
        raise refuse(
            "lr_scheduler",
            "diffusers",
            f"{resolved.name} {dict(resolved.params)} (warmup {resolved.warmup} from {resolved.warmup_start:g}, "
            f"horizon {resolved.horizon} of "
            f"{resolved.run_length}){' with l0 = AdamW default lr 1e-3 in ' + script if script else ''}",
            f"diffusers' scripts have no custom scheduler hook; nearest: --lr_scheduler={extra['lr_scheduler']}",
        )
    if "lr_num_cycles" in extra or "lr_power" in extra:
        script = script or "train_dreambooth_lora.py"
    script = script or DEFAULT_SCRIPT
    flags.update(lr_scheduler=name, lr_warmup_steps=resolved.warmup, max_train_steps=resolved.run_length, **extra)
    head = "accelerate launch" + (f" --num_processes={facts.processes}" if facts.processes > 1 else "")
    lines = [f"{head} {script}"]
    for flag, value in flags.items():
        lines.append(
            f"  --{flag}"
            if value is True
            else f"  --{flag}={shlex.quote(repr(value) if isinstance(value, float) else str(value))}"
        )
    return " \\\n".join(lines) + "\n"


TRAINER = Trainer(
    name="diffusers",
    title="diffusers example scripts",
    formats=("args",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".sh",
    summary="huggingface/diffusers' LoRA example scripts: their `accelerate launch train_*.py --flag=value` command",
)
