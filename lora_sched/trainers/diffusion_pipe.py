"""tdrussell/diffusion-pipe: its training TOML (`deepspeed train.py --config FILE`).

What train.py does with the schedule (commit 8f83dbf25d, lines cited in CODE):

* `lr_scheduler` is "constant" (default), "linear" or "cosine"; anything else is a NotImplementedError.
  linear is torch's LinearLR from 1 to 0 over T = epochs x steps_per_epoch; cosine is
  CosineAnnealingLR(T_max=T, eta_min=1e-6): it falls to an ABSOLUTE 1e-6, whatever the LR.
* `warmup_steps` W > 0 puts LinearLR(start_factor=1/W, total_iters=W) IN FRONT of that schedule with
  SequentialLR(milestones=[W]): the warmup starts at LR/W (not 0), and the decay starts at step W
  but keeps its full length T, so the run (T steps) ends W steps before the decay does.
  For step s (0-based optimizer update) and e = s - W:
      s < W:  LR = base (1/W + (1 - 1/W) s / W)
      else    constant: base;  linear: base (1 - e / T);  cosine: 1e-6 + (base - 1e-6) (1 + cos(pi e / T)) / 2
* steps_per_epoch = batches of the data set (each size bucket floored to a multiple of the global
  batch micro_batch_size_per_gpu x gradient_accumulation_steps x data-parallel GPUs); the run is
  epochs x steps_per_epoch optimizer steps, or `max_steps` if fewer: max_steps ends the run, never the
  decay. `force_constant_lr` replaces all of it with one constant LR for every group.
* param groups: one (the optimizer's `lr`), except SDXL (unet_lr, text_encoder_1_lr, text_encoder_2_lr
  in [model]) and Cosmos-Predict2 / Anima (self_attn_lr, cross_attn_lr, mlp_lr, mod_lr, llm_adapter_lr;
  a group at 0 is frozen and left out).

The writer uses diffusion-pipe's own names; it has no custom-scheduler hook, so a curve its three
names cannot draw is refused with the nearest choice.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from lora_sched._lazy import np
from lora_sched.errors import ConfigError, did_you_mean
from lora_sched.trainers.base import Citation, Quirk, RunFacts, Trainer, TrainerRun
from lora_sched.trainers.common import expect, refuse, schedule_run
from lora_sched.trainers.documents import Document

REPO = "tdrussell/diffusion-pipe"
COMMIT = "8f83dbf25d03219df705570ec03e62be04bc402f"
NAME = "diffusion-pipe"
SCHEDULERS = ("constant", "linear", "cosine")
#: CosineAnnealingLR's eta_min in train.py: an absolute LR, the same for every group
COSINE_FLOOR = 1e-6
#: file:line of each fact the module relies on
CODE = {
    "default": ("train.py", 849),
    "linear": ("train.py", 853),
    "cosine": ("train.py", 855),
    "unknown": ("train.py", 857),
    "warmup": ("train.py", 860),
    "chained": ("train.py", 861),
    "steps_per_epoch": ("train.py", 847),
    "max_steps": ("train.py", 961),
    "force": ("train.py", 893),
    "bucket_floor": ("utils/dataset.py", 384),
    "automagic": ("optimizers/automagic.py", 162),
    "sdxl_groups": ("models/sdxl.py", 615),
    "cosmos_groups": ("models/cosmos_predict2.py", 497),
}
#: Cosmos-Predict2 / Anima: the [model] keys of its extra groups, in the order it builds them
COSMOS_GROUPS = ("self_attn_lr", "cross_attn_lr", "mlp_lr", "mod_lr", "llm_adapter_lr")
SDXL_GROUPS = (("unet", "unet_lr"), ("text_encoder", "text_encoder_1_lr"), ("text_encoder_2", "text_encoder_2_lr"))


def cite(what: str) -> Citation:
    path, line = CODE[what]
    return Citation(REPO, path, line, COMMIT)


def recognise(document: Document) -> int:
    """3 for diffusion-pipe's structure: an [optimizer] table with `type`, `epochs`, and one of its own
    keys (micro_batch_size_per_gpu, pipeline_stages, lr_scheduler, warmup_steps, [model] type)."""
    data = document.data
    if document.kind != "toml" or not isinstance(data, dict):
        return 0
    optimizer, model = data.get("optimizer"), data.get("model")
    if not isinstance(optimizer, dict) or "type" not in optimizer or "epochs" not in data:
        return 0
    own = ("micro_batch_size_per_gpu", "pipeline_stages", "lr_scheduler", "warmup_steps")
    if any(k in data for k in own) or (isinstance(model, dict) and "type" in model):
        return 3
    return 0


class Settings(NamedTuple):
    """The schedule keys of one file, as train.py reads them."""

    kind: str  # constant / linear / cosine
    warmup: int  # W (0: none)
    epochs: int
    max_steps: int | None
    groups: dict[str, float]  # base LR per group, in the optimizer's order
    forced: bool  # force_constant_lr replaced the schedule


def _number(document: Document, path: tuple, what: str) -> Any:
    return expect(document, path, (int, float), what)


def settings_of(document: Document) -> Settings:
    """The file's schedule settings with train.py's defaults (lr_scheduler constant, warmup_steps 0)."""
    kind = expect(document, ("lr_scheduler",), (str,), "a string: constant, linear or cosine", "constant")
    if kind not in SCHEDULERS:
        hint = did_you_mean(kind, SCHEDULERS) or f"train.py raises NotImplementedError ({cite('unknown')})"
        raise ConfigError(document.problem(("lr_scheduler",), "constant, linear or cosine", kind, hint))
    if isinstance(document.data.get("warmup_steps"), float):
        hint = "a step count at this commit (a fraction of the run is only read by its dev branch)"
        raise ConfigError(
            document.problem(("warmup_steps",), "a whole number of steps", document.data["warmup_steps"], hint)
        )
    warmup = expect(document, ("warmup_steps",), (int,), "a whole number of steps", 0)
    epochs = expect(document, ("epochs",), (int,), "a whole number of epochs")
    if epochs is None or epochs < 1:
        raise ConfigError(document.problem(("epochs",), "a whole number of epochs >= 1", epochs))
    max_steps = expect(document, ("max_steps",), (int,), "a whole number of steps")
    forced = _number(document, ("force_constant_lr",), "an LR (a number)")
    if forced is not None:
        groups = {role: float(forced) for role in _groups(document)}
        return Settings("constant", 0, epochs, max_steps, groups, True)
    return Settings(kind, max(0, warmup), epochs, max_steps, _groups(document), False)


def _groups(document: Document) -> dict[str, float]:
    """Base LR per param group in the order the model's get_param_groups builds them."""
    optimizer = document.data["optimizer"]
    if str(optimizer.get("type", "")).lower() == "automagic":
        raise ConfigError(
            document.problem(
                ("optimizer", "type"),
                "an optimizer whose LR follows lr_scheduler",
                optimizer.get("type"),
                f"Automagic sets each weight's LR itself and never reads the scheduled LR ({cite('automagic')})",
            )
        )
    base = _number(document, ("optimizer", "lr"), "an LR (a number)")
    model = document.data.get("model") if isinstance(document.data.get("model"), dict) else {}
    kind = model.get("type")
    if kind == "sdxl":
        roles = [(role, ("model", key)) for role, key in SDXL_GROUPS]
    elif kind in ("cosmos_predict2", "anima"):
        roles = [("unet", ("optimizer", "lr"))]
        roles += [(key[:-3], ("model", key)) for key in COSMOS_GROUPS if key in model]
    else:
        roles = [("unet", ("optimizer", "lr"))]
    groups: dict[str, float] = {}
    for role, path in roles:
        value = _number(document, path, "an LR (a number)")
        value = base if value is None else value
        if value is None:
            hint = "diffusion-pipe then leaves the optimizer's own default LR, which lora_sched does not guess"
            raise ConfigError(document.problem(("optimizer", "lr"), "an LR (a number)", None, hint))
        if role == "unet" or value != 0 or kind == "sdxl":  # Cosmos-Predict2 freezes a group at 0
            groups[role] = float(value)
    return groups


def steps_per_epoch(document: Document, facts: RunFacts) -> tuple[int | None, str]:
    """Optimizer steps per epoch as train.py counts them (len(dataset): every size bucket floored to
    a multiple of the global batch), from --steps-per-epoch, else from --samples-per-epoch as one bucket."""
    if facts.steps_per_epoch is not None:
        return facts.steps_per_epoch, f"{facts.steps_per_epoch} steps per epoch (--steps-per-epoch)"
    batch = expect(document, ("micro_batch_size_per_gpu",), (int, list), "a whole number or [[size, batch], ...]", 1)
    batch = expect(document, ("image_micro_batch_size_per_gpu",), (int, list), "a whole number", batch)
    accumulation = expect(document, ("gradient_accumulation_steps",), (int,), "a whole number", 1)
    stages = expect(document, ("pipeline_stages",), (int,), "a whole number", 1)
    if facts.samples_per_epoch is None:
        return None, "samples per epoch unknown: give --steps-per-epoch N (its log) or --samples-per-epoch N"
    if isinstance(batch, list):
        return None, "batch sizes per image size: give --steps-per-epoch N (the trainer's count per epoch)"
    parallel = max(1, facts.processes // max(1, stages))
    global_batch = batch * max(1, accumulation) * parallel
    steps = facts.samples_per_epoch // global_batch
    if steps < 1:
        hint = f"diffusion-pipe drops a size bucket smaller than the global batch ({cite('bucket_floor')})"
        raise ConfigError(
            document.problem(
                ("micro_batch_size_per_gpu",),
                f"a global batch of at most {facts.samples_per_epoch}",
                global_batch,
                hint,
            )
        )
    text = f"{facts.samples_per_epoch} samples // (batch {batch} x accumulation {accumulation} x {parallel} GPUs"
    return steps, text + f") = {steps} steps per epoch (one size bucket; each bucket is floored)"


def run_length(settings: Settings, per_epoch: int | None) -> int | None:
    """epochs x steps per epoch, or max_steps if fewer (the loop stops once step >= max_steps, so a
    max_steps <= 0 still makes one step). Without the data: max_steps when epochs >= max_steps
    (every epoch has at least one step)."""
    stop = None if settings.max_steps is None else max(1, settings.max_steps)
    if per_epoch is not None:
        total = settings.epochs * per_epoch
        return total if stop is None else min(total, stop)
    if stop is not None and stop <= settings.epochs:
        return stop
    return None


def lrs_of(settings: Settings, total: int | None, steps: Any) -> dict[str, Any]:
    """Each group's LR at `steps` as train.py's schedulers give it (module docstring formulas);
    `total` = T = epochs x steps per epoch (unused by constant)."""
    s = np.asarray(steps, dtype=np.float64)
    w = settings.warmup
    e = s - w if w > 0 else s
    out = {}
    for role, base in settings.groups.items():
        if settings.kind == "constant":
            lr = np.full_like(s, base)
        elif settings.kind == "linear":
            lr = base * (1.0 - np.minimum(e, total) / total)
        else:
            lr = COSINE_FLOOR + (base - COSINE_FLOOR) * 0.5 * (1.0 + np.cos(np.pi * e / total))
        if w > 0:
            ramp = s < w
            lr[ramp] = base * (1.0 / w + (1.0 - 1.0 / w) * s[ramp] / w)
        out[role] = lr
    return out


# ---- quirks ---------------------------------------------------------------------------------
#: Every quirk this module reproduces; `quirks()` warns those that apply to a file.
QUIRKS = {
    "force": Quirk(
        "force_constant_lr",
        "one constant LR for every group: lr_scheduler, warmup_steps and the group LRs are dropped",
        "remove force_constant_lr to run lr_scheduler and warmup_steps (it applies on a fresh run too)",
        cite("force"),
    ),
    "warmup_start": Quirk(
        "warmup_steps",
        "a warmup from LR/warmup_steps (LinearLR start_factor=1/warmup_steps), not from 0",
        "no setting of this file starts the warmup at 0",
        cite("warmup"),
    ),
    "chained": Quirk(
        "warmup_steps",
        "the decay starts after the warmup but keeps its length epochs x steps per epoch, "
        "so the run ends warmup_steps steps before the decay would",
        "no setting of this file makes a decay after a warmup end with the run; drop warmup_steps for that",
        cite("chained"),
    ),
    "floor": Quirk(
        "lr_scheduler",
        f"cosine falls to an absolute LR of {COSINE_FLOOR:g} (eta_min) in every group, not to 0 or a ratio",
        "no key of this file sets the floor; lora_sched's min_lr_ratio = 1e-6 / LR draws it for one group",
        cite("cosine"),
    ),
    "max_steps": Quirk(
        "max_steps",
        "the run stops at max_steps, but the decay is drawn over epochs x steps per epoch and never ends",
        "set epochs so that epochs x steps per epoch is the run, and drop max_steps",
        cite("max_steps"),
    ),
}


def quirks(document: Document, st: Settings, total: int | None) -> list[Any]:
    """The QUIRKS that apply to this file, located at their keys (with this file's numbers)."""
    found: list[Quirk] = []
    decays = st.kind in ("linear", "cosine") and not st.forced
    if st.forced:
        found.append(QUIRKS["force"])
    if st.warmup > 0 and not st.forced:
        what = f"a warmup from LR/{st.warmup} (LinearLR start_factor=1/warmup_steps), not from 0"
        found.append(QUIRKS["warmup_start"]._replace(what=what if st.warmup > 1 else "no warmup: it starts at LR/1"))
    if decays and st.warmup > 0:
        what = (
            QUIRKS["chained"].what.replace("the decay", f"the {st.kind} decay").replace("warmup_steps", str(st.warmup))
        )
        found.append(QUIRKS["chained"]._replace(what=what))
    if decays and st.kind == "cosine":
        low = any(lr < COSINE_FLOOR for lr in st.groups.values())
        rise = f"; a group whose LR is below {COSINE_FLOOR:g} rises to it" if low else ""
        found.append(QUIRKS["floor"]._replace(what=QUIRKS["floor"].what + rise))
    if decays and st.max_steps is not None and (total is None or max(1, st.max_steps) < total):
        found.append(QUIRKS["max_steps"])
    return [q.problem().located(document.source, document.line_of((q.key,))) for q in found]


# ---- read -----------------------------------------------------------------------------------
def read(document: Document, facts: RunFacts) -> TrainerRun:
    """The run of a diffusion-pipe TOML: its settings, its counting, its real curve."""
    st = settings_of(document)
    per_epoch, counting = steps_per_epoch(document, facts)
    total = None if per_epoch is None else st.epochs * per_epoch
    n = run_length(st, per_epoch)
    if total is None and n is not None and st.kind != "constant":
        n, counting = None, counting + " (the decay is drawn over epochs x steps per epoch)"
    elif n is not None and total is None:
        counting = f"max_steps = {n} (fewer than epochs = {st.epochs}, each at least one step)"
    elif n is not None:
        counting = f"{st.epochs} epochs x {counting}" + (f", stopped at max_steps = {n}" if n < total else "")
    warnings = quirks(document, st, total)
    summary = _summary(st)
    if n is None:
        return TrainerRun(NAME, document.source, st.groups, None, counting, warnings=tuple(warnings), summary=summary)
    values = catalogue_values(st, total, n)
    if values is not None:
        return schedule_run(NAME, document, values, _origins(st), st.groups, counting, warnings, summary)

    def own(steps: Any) -> dict[str, Any]:
        return lrs_of(st, total, steps)

    return TrainerRun(
        NAME, document.source, st.groups, n, counting, own_lrs=own, warnings=tuple(warnings), summary=summary
    )


def _summary(st: Settings) -> str:
    if st.forced:
        return f"force_constant_lr {next(iter(st.groups.values())):g}"
    text = st.kind + (f", warmup {st.warmup} steps" if st.warmup else "") + f", {st.epochs} epochs"
    return text + (f", max_steps {st.max_steps}" if st.max_steps is not None else "")


def catalogue_values(st: Settings, total: int | None, n: int) -> dict[str, Any] | None:
    """The curve as lora_sched (kohya-named) values, where a catalogue schedule draws it exactly:
    the warmup from warmup_start = 1/W, a decay over schedule_steps = W + T (so the decay itself is
    T steps long), cosine's 1e-6 as min_lr_ratio = 1e-6 / LR (only when every group has one LR > 1e-6);
    None otherwise (own_lrs then gives the curve)."""
    w = st.warmup
    base = next(iter(st.groups.values()))
    values: dict[str, Any] = {"learning_rate": base, "max_train_steps": n}
    if st.kind == "constant":
        if w > 1:
            values.update(lr_scheduler="constant_with_warmup", lr_warmup_steps=w, warmup_start=1.0 / w)
            values["schedule_steps"] = max(n, w + 1)
        else:
            values["lr_scheduler"] = "constant"
        return values
    values.update(lr_scheduler=st.kind, lr_warmup_steps=w, warmup_start=1.0 / w if w else 0.0)
    values["schedule_steps"] = total + w
    if st.kind == "cosine":
        if len(set(st.groups.values())) != 1 or base <= COSINE_FLOOR:
            return None
        values["lr_scheduler_args"] = {"min_lr_ratio": COSINE_FLOOR / base}
    return values


def _origins(st: Settings) -> dict[str, tuple]:
    stop = ("max_steps",) if st.max_steps is not None else ("epochs",)
    return {
        "learning_rate": ("force_constant_lr",) if st.forced else ("optimizer", "lr"),
        "lr_scheduler": ("lr_scheduler",),
        "lr_scheduler_args": ("lr_scheduler",),
        "lr_warmup_steps": ("warmup_steps",),
        "warmup_start": ("warmup_steps",),
        "max_train_steps": stop,
        "schedule_steps": ("epochs",),
    }


# ---- write ----------------------------------------------------------------------------------
HEADER = (
    "# diffusion-pipe schedule keys written by lora_sched: merge them into your training TOML\n"
    "# (output_dir, dataset, save_every_n_epochs, [model] paths, [adapter] ...).\n"
)


def write(run: TrainerRun, facts: RunFacts) -> str:
    """A diffusion-pipe TOML running `run.resolved` with base LRs `run.roles` exactly: epochs (and
    max_steps) for the run length, lr_scheduler / warmup_steps for the curve, [optimizer] lr (and
    SDXL's [model] unet_lr / text_encoder_*_lr for groups with different LRs); else a refusal."""
    resolved = run.resolved
    if resolved is None or run.run_length is None:
        raise refuse(
            "lr_scheduler",
            NAME,
            f"{run.trainer}'s curve in {run.source}, which no lora_sched schedule expresses",
            "preview it with --csv and pick the nearest of constant, linear and cosine",
        )
    lrs = written_groups(run)
    per_epoch, samples = _written_steps_per_epoch(facts)
    kind, total = choose(run, lrs, per_epoch)
    n = run.run_length
    if per_epoch is None:  # constant only: n epochs of at least one step each, stopped at n
        epochs, stop = n, n
    else:
        epochs = total // per_epoch if total is not None else -(-n // per_epoch)
        stop = n if n < epochs * per_epoch else None
    settings = Settings(kind, resolved.warmup, epochs, stop, lrs, False)
    return HEADER + _toml(settings, samples)


def written_groups(run: TrainerRun) -> dict[str, float]:
    """The groups to write: one ([optimizer] lr) where the denoiser is the only trained part; SDXL's
    three ([model] unet_lr, text_encoder_1_lr, text_encoder_2_lr) where text encoders are trained too
    (the only model whose text encoders diffusion-pipe trains); else a refusal."""
    trained = {role: lr for role, lr in run.roles.items() if lr != 0}
    if not trained:
        raise refuse("learning_rate", NAME, "a run whose every group has LR 0", "set an LR above 0")
    if set(trained) == {"unet"}:
        return {"unet": trained["unet"]}
    roles = {role for role, _ in SDXL_GROUPS}
    if set(run.roles) <= roles and "unet" in trained:
        te = run.roles.get("text_encoder", 0.0)
        return {"unet": run.roles["unet"], "text_encoder": te, "text_encoder_2": run.roles.get("text_encoder_2", te)}
    raise refuse(
        "learning_rate",
        NAME,
        "param groups " + ", ".join(f"{role} at {lr:g}" for role, lr in run.roles.items()),
        "diffusion-pipe trains one denoiser group ([optimizer] lr) and text encoders only for SDXL "
        "(unet_lr, text_encoder_1_lr, text_encoder_2_lr): train the denoiser alone",
    )


def _written_steps_per_epoch(facts: RunFacts) -> tuple[int | None, bool]:
    """(steps per epoch of the written file, counted from samples?): --steps-per-epoch, else the
    samples in global batches of 1 x 1 x GPUs (the written file sets batch 1, accumulation 1)."""
    if facts.steps_per_epoch is not None:
        return facts.steps_per_epoch, False
    if facts.samples_per_epoch is None:
        return None, False
    steps = facts.samples_per_epoch // facts.processes
    if steps < 1:
        raise refuse("samples_per_epoch", NAME, "fewer samples than GPUs", "diffusion-pipe drops every batch")
    return steps, True


def choose(run: TrainerRun, lrs: dict[str, float], per_epoch: int | None) -> tuple[str, int | None]:
    """(lr_scheduler, T = epochs x steps per epoch) whose curve equals the run's in every group at
    every step (rel 1e-9), trying the run's nearest family first; else a refusal with the reasons."""
    resolved = run.resolved
    family = nearest_family(resolved.name)
    reasons: list[str] = []
    for kind in (family, *(k for k in SCHEDULERS if k != family)):
        found = _candidate_reasons(run, kind, lrs, per_epoch)
        if not found:
            return kind, (None if kind == "constant" else resolved.horizon - resolved.warmup)
        if kind == family:
            reasons = found
    nearest = f"lr_scheduler = '{family}'" + (f", warmup_steps = {resolved.warmup}" if resolved.warmup else "")
    if per_epoch is not None and family != "constant":
        nearest += f", epochs = {max(1, round(run.run_length / per_epoch))} (a decay over the whole run)"
    raise refuse("lr_scheduler", NAME, "; ".join(dict.fromkeys(reasons)), nearest)


def nearest_family(name: str) -> str:
    if name.startswith("constant") or name == "piecewise_constant":
        return "constant"
    return "cosine" if "cosine" in name or name in ("rex", "one_cycle") else "linear"


def _candidate_reasons(run: TrainerRun, kind: str, lrs: dict[str, float], per_epoch: int | None) -> list[str]:
    """Why diffusion-pipe's `kind` (with the run's warmup) cannot draw the run's curve ([] = it can)."""
    resolved, n, w = run.resolved, run.run_length, run.resolved.warmup
    reasons = []
    if w > 0 and (resolved.warmup_type != "linear" or not math.isclose(resolved.warmup_start, 1.0 / w, rel_tol=1e-12)):
        reasons.append(
            f"its warmup_steps = {w} rises linearly from LR/{w}; this warmup rises ({resolved.warmup_type}) "
            f"from {resolved.warmup_start:g} x LR"
        )
    total = None
    if kind != "constant":
        total = resolved.horizon - w
        if n > total:
            reasons.append(
                f"its {kind} decay lasts the whole run (epochs x steps per epoch) even after a warmup, so "
                f"a decay of {total} steps needs a run of at most {total} steps, not {n}"
            )
        elif per_epoch is None:
            reasons.append("its decay is drawn over epochs x steps per epoch: give --steps-per-epoch N")
        elif total % per_epoch:
            reasons.append(f"a decay of {total} steps is not a whole number of epochs of {per_epoch} steps")
    if reasons:
        return reasons
    epochs = 1 if total is None else total // per_epoch
    differs = _differs(run, Settings(kind, w, epochs, None, lrs, False), total)
    return [differs] if differs else []


def _differs(run: TrainerRun, st: Settings, total: int | None) -> str | None:
    """Where diffusion-pipe's curve for `st` leaves the run's (rel 1e-9), in words; None: nowhere."""
    steps = np.arange(run.run_length)
    want, got = run.lrs(steps), lrs_of(st, total, steps)
    for role, lr in want.items():
        mine = got.get(role, got["unet"]) if run.roles[role] != 0 or role in got else None
        if mine is None:
            continue
        bad = np.flatnonzero(np.abs(mine - lr) > 1e-9 * np.maximum(np.abs(mine), np.abs(lr)))
        if bad.size:
            s = int(bad[0])
            what = {"constant": "stays at the LR", "linear": "falls to 0", "cosine": f"falls to {COSINE_FLOOR:g}"}
            return (
                f"its {st.kind} {what[st.kind]}: at step {s} the {role} group gets {float(mine[s]):.6g}, "
                f"{run.resolved.name} gives {float(lr[s]):.6g}"
            )
    return None


def _toml(st: Settings, samples: bool) -> str:
    import tomli_w

    data: dict[str, Any] = {"epochs": st.epochs}
    if st.max_steps is not None:
        data["max_steps"] = st.max_steps
    if samples:  # the batch --samples-per-epoch was counted in
        data.update(micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, pipeline_stages=1)
    data["lr_scheduler"] = st.kind
    data["warmup_steps"] = st.warmup
    if len(st.groups) > 1:
        keys = dict(SDXL_GROUPS)
        data["model"] = {"type": "sdxl", **{keys[role]: lr for role, lr in st.groups.items()}}
    data["optimizer"] = {"type": "adamw_optimi", "lr": st.groups["unet"]}
    return tomli_w.dumps(data)


TRAINER = Trainer(
    name=NAME,
    title="diffusion-pipe",
    formats=("toml",),
    recognise=recognise,
    read=read,
    write=write,
    suffix=".toml",
    quirks=tuple(QUIRKS.values()),
    summary="tdrussell/diffusion-pipe training TOML (lr_scheduler constant / linear / cosine, warmup_steps, epochs)",
)
