"""The declarative table of every config key lora_sched reads.

One `Key` per flat kohya name: its kind and bounds (which make its field, see
lora_sched.schedules.fields), default, the section we write it under and a one-line doc.
Validation, the writer's order and sections, the JSON Schema and the config reference in the docs
are all generated from this table. Schedule parameters are not here: they
come from the schedule specs (`lr_scheduler_args`, and the kohya global keys via Param.kohya_key).
Nothing here imports NumPy.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from typing import Any, Literal

from lora_sched.builtins import BUILTIN_DATA, BUILTIN_MODEL, BUILTIN_RESOLUTION
from lora_sched.config import optimizers
from lora_sched.config.args import split_kv
from lora_sched.config.samplers import DEFAULT_SAMPLER, SAMPLERS
from lora_sched.errors import FieldError, Problem, did_you_mean, problem, raw
from lora_sched.schedules import fields
from lora_sched.schedules.durations import MAX_STEPS
from lora_sched.schedules.fields import shown_text

KeyKind = Literal[
    "float",
    "floats",
    "int",
    "bool",
    "str",
    "choice",
    "duration",
    "resolution",
    "kv_list",
    "sched_args",
    "optimizer",
    "path",
]

#: What a key feeds besides its own value; every list of keys a consumer needs is derived from these.
#: "schedule": the LR schedule itself, which `export --kohya` rewrites from the resolved schedule.
#: "global": one of kohya's global scheduler keys: it feeds a schedule parameter (Param.kohya_key).
#: "data": the data the run reads, on which an epoch is counted.
#: "curve": the resolved curve otherwise (the base LR, the batches per update).
#: "form": a field of the notebook form, which starts at the key's default.
#: "identity": fixes what a checkpoint's weights and data order mean: a resume refuses a change.
Role = Literal["schedule", "global", "data", "curve", "form", "identity"]

#: The sections we write, in order; any section name is accepted on read.
SECTIONS = (
    "model_arguments",
    "network_arguments",
    "optimizer_arguments",
    "training_arguments",
    "saving_arguments",
    "dataset_arguments",
    "lora_sched",
)


class Key:
    """One config key: its name, the field that reads its value, its section, doc and default.

    kind names the field (`FIELD_KINDS`): ``floats`` = a number or a list of numbers; ``duration``
    = every duration form; ``resolution`` = int or "W,H"; ``kv_list`` = kohya list of "key=value"
    strings; ``sched_args`` = lr_scheduler_args, list or table. The keyword options configure it:
    low / high (inclusive unless low_open / high_open), multiple_of, choices, allow_empty, and
    rule, a further check of a string that raises FieldError.
    unset: values that mean "not set" (read as None), where sd-scripts tests the key's truthiness.
    roles: what else the key feeds (`Role`); sd_default: for kohya's global scheduler keys, the
    value sd-scripts uses when the key is absent.
    """

    # A plain class rather than a dataclass: this table loads on every `validate`, whose start-up
    # time is budgeted: importing dataclasses costs 8.9 ms (28.98 -> 37.90 ms for a bare start that
    # imports typing, re and enum, medians of 31 on the 2-core development machine), a sixth of
    # validate's 52 ms, and each dataclass about 0.5 ms more to create.
    __slots__ = ("default", "default_doc", "doc", "field", "name", "nullable", "roles", "sd_default", "section")

    def __init__(
        self,
        name: str,
        kind: KeyKind,
        section: str,
        doc: str,
        default: Any = None,
        *,
        nullable: bool = True,
        default_doc: str | None = None,
        roles: tuple[Role, ...] = (),
        sd_default: Any = None,
        unset: tuple[Any, ...] = (),
        **options: Any,
    ) -> None:
        self.name, self.section, self.doc, self.default = name, section, doc, default
        self.nullable, self.default_doc = nullable, default_doc
        self.roles, self.sd_default = frozenset(roles), sd_default
        self.field: fields.Field = FIELD_KINDS[kind](**options)
        if unset:
            self.field = _Unset(self.field, unset)

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.field.kind!r}, default={self.default!r})"

    def expected(self) -> str:
        return self.field.expected()

    def parse(self, value: Any) -> Any:
        """The value as the config holds it; raises FieldError when it does not fit this key.

        Durations and lr_scheduler_args are stored as written: the schedule layer (resolve) and
        args.py read them, against the run and the schedule.
        """
        if isinstance(value, dict) and not self.field.takes_table:
            raise FieldError(self.expected(), raw("a table"), "sections nest one level: write key = value")
        if isinstance(value, (datetime.date, datetime.time)):
            raise FieldError(self.expected(), raw(f"{value.isoformat()} (a TOML date/time)"))
        if self.field.read_when_resolved:
            return value
        return self.field.parse(value)


def _check_optimizer(value: str) -> None:
    unusable = unusable_optimizer(value)
    if unusable:
        raise FieldError(unusable.expected, raw(unusable.found), unusable.hint)
    if optimizers.lookup(value) is not None:  # the table `train` builds from: both accept the same names
        return
    hint = did_you_mean(value, optimizers.known_names()) or "or a dotted path like pytorch_optimizer.CAME"
    raise FieldError(optimizers.EXPECTED, value, hint)


#: torch.optim classes that load but cannot train a LoRA: lower-case class name -> why (and what instead).
UNUSABLE_OPTIMIZERS = {
    "lbfgs": "LBFGS needs a closure that recomputes the loss several times per step; "
    "a training loop steps once per batch (sd-scripts fails on it too): use AdamW",
    "sparseadam": "SparseAdam takes sparse gradients only and LoRA weights get dense ones: use Adam or AdamW",
    "optimizer": "torch.optim.Optimizer is the abstract base class: name an optimizer such as AdamW",
}


def unusable_optimizer(name: str) -> Problem | None:
    """The problem with an optimizer_type naming a torch.optim class (plain or dotted) that cannot
    train a LoRA, or None. `validate` and `train` both ask this, so they accept the same optimizers."""
    module, _, attr = name.strip().rpartition(".")
    if module and module != "torch.optim" and not module.startswith("torch.optim."):
        return None
    why = UNUSABLE_OPTIMIZERS.get(attr.lower())
    if why is None:
        return None
    return problem("optimizer_type", "an optimizer that steps once per batch on dense gradients", name, why)


#: Longest file or folder name in bytes on ext4, NTFS, APFS and most other file systems.
MAX_NAME_BYTES = 255
LORA_SUFFIX = ".safetensors"
#: Characters Windows refuses in file names (besides / and \\ and control characters).
_WINDOWS_INVALID = set('<>:"|?*')


def _separators() -> tuple[str, ...]:
    return (os.sep, os.altsep) if os.altsep else (os.sep, "/")


def _check_file_stem(value: str) -> None:
    """output_name: a file name that train joins to output_dir (+ .safetensors), as sd-scripts does."""
    expected = f"a file name, without folders (it is written as output_dir/NAME{LORA_SUFFIX})"
    if any(sep in value for sep in _separators()) or os.path.isabs(value) or os.path.splitdrive(value)[0]:
        hint = "a name with / (or an absolute path) would write outside output_dir: put folders in output_dir"
        raise FieldError(expected, shown_text(value), hint)
    if len((value + LORA_SUFFIX).encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        limit = MAX_NAME_BYTES - len(LORA_SUFFIX)
        raise FieldError(f"a file name of at most {limit} bytes (UTF-8)", raw(f"{len(value.encode())} bytes"))
    if os.name == "nt" and (set(value) & _WINDOWS_INVALID or any(ord(c) < 32 for c in value)):
        raise FieldError(f'{expected}, without <>:"|?* or control characters (Windows)', shown_text(value))


def _check_folder(value: str) -> None:
    """output_dir: any folder the user names (absolute too); each part must be a valid name."""
    parts = value.replace(os.altsep or os.sep, os.sep).split(os.sep)
    long = next((p for p in parts if len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES), None)
    if long is not None:
        raise FieldError(f"folder names of at most {MAX_NAME_BYTES} bytes", shown_text(value))


def _check_extension(value: str) -> None:
    """caption_extension: sd-scripts appends it to the image's name without its extension, adding a
    leading dot when there is none ("txt" reads img.txt)."""
    if any(sep in value for sep in _separators()):
        raise FieldError('a file extension such as ".txt" or ".caption"', shown_text(value))


def caption_suffix(value: str | None) -> str:
    """The suffix caption files have, as sd-scripts reads caption_extension ("txt" means ".txt")."""
    text = ".txt" if value is None else value
    return text if not text or text.startswith(".") else "." + text


def _string(*, allow_empty: bool = False, rule: fields.Rule | None = None) -> fields.Str:
    # no path or name holds a NUL: the OS refuses it (after training, for output_name)
    return fields.Str(non_empty=not allow_empty, nul_free=True, rule=rule)


def _optimizer_name() -> fields.Str:
    """A name the optimizer table knows (its own check explains an empty or unknown one)."""
    return fields.Str(non_empty=True, expected=optimizers.EXPECTED, rule=_check_optimizer)


class _Resolution(fields.Resolution):
    """The training config's resolution. sd-scripts declares it ``type=str`` (library/train_util.py:4561-4565,
    sd-scripts 48d368fa) and reads the text with ``tuple([int(r) for r in args.resolution.split(",")])``
    (prepare_dataset_args, train_util.py:5410): "512" is a square, "512,768" width x height. An int
    is lora_sched's own documented form (its configs and forms write one): sd-scripts stops on it (an
    int has no ``split``), so `export --kohya` writes it as text. A single side is held as its int,
    which every reader here takes; "W,H" stays as written. (A dataset config is the other way round:
    config_util.py:244 takes an int or [w, h] and refuses text; lora_sched.config.dataset checks that.)"""

    def parse(self, value: Any) -> int | str:
        if isinstance(value, str) and re.match(_ONE_SIDE, value):
            return super().parse(int(value))
        try:
            return super().parse(value)
        except FieldError as exc:
            if isinstance(value, str):
                raise FieldError(exc.expected, exc.found, 'write "512" or "512,768"') from None
            if isinstance(value, float) and exc.hint:  # a whole float: 512.0
                raise FieldError(exc.expected, exc.found, f'write "{int(value)}"') from None
            raise

    def json_schema(self) -> dict[str, Any]:
        schema = super().json_schema()
        schema["anyOf"][1]["pattern"] = r"^\s*\d+\s*(,\s*\d+\s*)?$"
        return schema


#: One side as sd-scripts' int() reads it (surrounding blanks allowed).
_ONE_SIDE = r"^\s*\d+\s*$"  # compiled on first use (re caches it)


class _Unset(fields.Field):
    """A field where a falsy value sd-scripts tests with ``if not args.KEY`` means "not set" (None):
    ``resume = false`` or ``""`` (train_util.py:4773), ``lr_scheduler_type = ""`` (its argparse
    default, train_util.py:3731; tested at train_util.py:5300). Anything else goes to `inner`."""

    def __init__(self, inner: fields.Field, unset: tuple[Any, ...]) -> None:
        self.inner, self.unset = inner, unset
        self.kind = inner.kind  # type: ignore[misc]

    def parse(self, value: Any) -> Any:
        if any(type(value) is type(u) and value == u for u in self.unset):
            return None
        try:
            return self.inner.parse(value)
        except FieldError as exc:
            if exc.hint:
                raise
            none = " or ".join('""' if u == "" else str(u).lower() for u in self.unset)
            raise FieldError(exc.expected, exc.found, f"{none} (or leaving the key out) means none") from None

    def expected(self) -> str:
        return self.inner.expected()

    def range_text(self) -> str:
        return self.inner.range_text()

    def type_text(self) -> str:
        return self.inner.type_text()

    def json_schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.json_schema(), *({"const": u} for u in self.unset)]}

    def form_hints(self) -> list[str]:
        return self.inner.form_hints()

    def control(self, blank: bool) -> fields.Control:
        return self.inner.control(blank)


#: The field each kind name of the table below stands for, called with the row's keyword options.
FIELD_KINDS: dict[str, Callable[..., fields.Field]] = {
    "float": fields.Float,
    "floats": fields.Floats,
    "int": fields.Int,
    "bool": fields.Bool,
    "str": _string,
    "path": fields.Path,
    "choice": lambda choices: fields.Choice(*choices),
    "duration": fields.Duration,
    "resolution": _Resolution,
    "kv_list": lambda: fields.KeyValueList(split_kv),
    "sched_args": fields.SchedulerArgs,
    "optimizer": _optimizer_name,
}


def _k(*args: Any, **kwargs: Any) -> Key:
    return Key(*args, **kwargs)


MODEL, NETWORK, OPTIMIZER, TRAINING, SAVING, DATASET, LORA_SCHED = SECTIONS

#: Every key lora_sched uses, in the order we write them.
KEYS: tuple[Key, ...] = (
    _k(
        "pretrained_model_name_or_path",
        "path",
        MODEL,
        "base model: a diffusers folder, a single-file SD 1.x / 2.x / SDXL checkpoint (.safetensors, .ckpt), "
        "builtin:tiny-sd / builtin:tiny-sdxl (small SD 1.5 / SDXL models built offline), or a Hugging Face Hub "
        "id with allow_download",
        BUILTIN_MODEL,
        nullable=False,
        roles=("form", "identity"),
    ),
    _k(
        "vae",
        "path",
        MODEL,
        "a VAE that replaces the model's (sd-scripts' --vae): a .safetensors / .ckpt file in the original "
        "layout, or a diffusers VAE folder; it encodes the latents and decodes the samples",
        None,
        roles=("identity",),
    ),
    _k(
        "v_parameterization",
        "bool",
        MODEL,
        "train with v-prediction (SD 2.x 768-v, v-prediction SDXL); unset, a single file's v_pred tensor or "
        "NAME.yaml with parameterization: v, or a folder's scheduler config decides",
        None,
        default_doc="false",
    ),
    _k(
        "v2",
        "bool",
        MODEL,
        "an SD 2.x model (sd-scripts needs it; lora-sched reads the family from the model itself and warns "
        "when v2 disagrees)",
        None,
        default_doc="false",
    ),
    _k(
        "tokenizer_cache_dir",
        "path",
        MODEL,
        "folder holding the CLIP tokenizers a single-file checkpoint needs (sd-scripts' layout: "
        "openai_clip-vit-large-patch14/, ...); a download saves them there",
        None,
    ),
    # sd-scripts takes any rank; LyCORIS presets write 100000 for "full rank". The top is int32's.
    _k(
        "network_dim", "int", NETWORK, "LoRA rank", 4, low=1, high=2**31 - 1, nullable=False, roles=("form", "identity")
    ),
    _k(
        "network_alpha",
        "float",
        NETWORK,
        "LoRA alpha; the update is scaled by alpha / dim",
        1.0,
        low=0,
        low_open=True,
        high=100_000,
        nullable=False,
        roles=("form", "identity"),
    ),
    _k(
        "network_args",
        "kv_list",
        NETWORK,
        'networks.lora options, ["key=value", ...]: conv_dim / conv_alpha (LoRA on the ResNet blocks, 3x3 convs '
        "at conv_dim), rank_dropout, module_dropout, block_dims / block_alphas / conv_block_dims / "
        "conv_block_alphas (rank per UNet block); train refuses block LR weights and LoRA+",
        None,
        roles=("identity",),
    ),
    _k(
        "network_dropout",
        "float",
        NETWORK,
        "dropout on the LoRA's rank-r activations in training (networks.lora's neuron dropout)",
        None,
        low=0,
        high=1,
        default_doc="off",
    ),
    _k(
        "network_train_unet_only",
        "bool",
        NETWORK,
        "train the UNet only: the text-encoder LR is 0 (the kohya_ss GUI writes this for a text-encoder LR of 0)",
        None,
        default_doc="false",
    ),
    _k(
        "network_train_text_encoder_only",
        "bool",
        NETWORK,
        "train the text encoder only: the UNet LR is 0",
        None,
        default_doc="false",
    ),
    _k(
        "learning_rate",
        "float",
        OPTIMIZER,
        "base LR; also the UNet LR unless unet_lr is set",
        2e-6,  # sd-scripts' default: a file without it trains there at 2e-6, so its curve must too
        low=0,
        low_open=True,
        high=10,
        nullable=False,
        roles=("curve",),
    ),
    _k(
        "unet_lr",
        "float",
        OPTIMIZER,
        "UNet LoRA base LR",
        None,
        low=0,
        high=10,
        default_doc="learning_rate",
        roles=("curve",),
    ),
    _k(
        "text_encoder_lr",
        "floats",
        OPTIMIZER,
        "text-encoder LoRA base LR; 0 trains the UNet only. A list (the kohya_ss GUI writes one per SDXL "
        "text encoder): sd-scripts' networks.lora gives every text encoder the first value, and so does lora_sched",
        None,
        low=0,
        high=10,
        default_doc="learning_rate",
    ),
    _k(
        "optimizer_type",
        "optimizer",
        OPTIMIZER,
        "optimizer name (sd-scripts names, torch.optim classes or a dotted path)",
        "AdamW",
        nullable=False,
        roles=("form", "identity"),
    ),
    _k(
        "optimizer_args",
        "kv_list",
        OPTIMIZER,
        'optimizer keyword arguments, kohya form ["key=value", ...]',
        [],
        nullable=False,
        roles=("form", "identity"),
    ),
    _k("max_grad_norm", "float", OPTIMIZER, "gradient clipping norm (0 = off)", 1.0, low=0, high=1e6, nullable=False),
    _k(
        "scale_weight_norms",
        "float",
        OPTIMIZER,
        "after each update, shrink every LoRA module whose (alpha / dim) x up @ down norm exceeds this to it "
        "(1 is usual; 0 = off)",
        None,
        low=0,
        high=1e6,
    ),
    _k(
        "lr_scheduler",
        "str",
        OPTIMIZER,
        "schedule name or alias from `lora-sched list`",
        "constant",
        nullable=False,
        roles=("schedule",),
    ),
    _k("lr_warmup_steps", "duration", OPTIMIZER, "warmup length", 0, nullable=False, roles=("schedule",)),
    _k(
        "lr_scheduler_type",
        "str",
        OPTIMIZER,
        "a torch LR scheduler class (CosineAnnealingLR or a dotted path) instead of lr_scheduler",
        None,
        roles=("schedule",),
        unset=("",),  # sd-scripts' own default (train_util.py:3731): no custom class
    ),
    _k(
        "lr_scheduler_args",
        "sched_args",
        OPTIMIZER,
        "schedule-specific arguments (see `lora-sched describe NAME`)",
        {},
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "lr_scheduler_num_cycles",
        "float",
        OPTIMIZER,
        "kohya global key: cycles of the schedules that have num_cycles",
        None,
        low=0,
        low_open=True,
        high=100_000,
        default_doc="1 (sd-scripts)",
        roles=("schedule", "global"),
        sd_default=1,
    ),
    _k(
        "lr_scheduler_power",
        "float",
        OPTIMIZER,
        "kohya global key: power of the polynomial schedules",
        None,
        low=0,
        low_open=True,
        high=1000,
        default_doc="1 (sd-scripts)",
        roles=("schedule", "global"),
        sd_default=1,
    ),
    _k(
        "lr_scheduler_min_lr_ratio",
        "float",
        OPTIMIZER,
        "kohya global key: floor as a fraction of the base LR",
        None,
        low=0,
        high=1,
        high_open=True,
        roles=("schedule", "global"),
    ),
    _k(
        "lr_scheduler_timescale",
        "int",
        OPTIMIZER,
        "kohya global key: inverse_sqrt timescale",
        None,
        low=1,
        high=MAX_STEPS,
        roles=("schedule", "global"),
    ),
    _k(
        "lr_decay_steps",
        "duration",
        OPTIMIZER,
        "kohya global key: decay length (warmup_stable_decay, sqrt)",
        None,
        roles=("schedule", "global"),
        sd_default=0,
    ),
    _k(
        "max_train_steps",
        "int",
        TRAINING,
        "run length in optimizer steps (ignored when max_train_epochs is set)",
        1600,
        low=1,
        high=MAX_STEPS,
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "max_train_epochs",
        "int",
        TRAINING,
        "run length in epochs (overrides max_train_steps)",
        None,
        low=1,
        high=1_000_000,
        roles=("schedule",),
    ),
    _k(
        "train_batch_size",
        "int",
        TRAINING,
        "images per batch per process",
        1,
        low=1,
        high=65_536,
        nullable=False,
        roles=("data", "form", "identity"),
    ),
    _k(
        "gradient_accumulation_steps",
        "int",
        TRAINING,
        "batches per optimizer update",
        1,
        low=1,
        high=65_536,
        nullable=False,
        roles=("curve", "form", "identity"),
    ),
    _k("seed", "int", TRAINING, "random seed", 42, low=0, high=2**32 - 1, nullable=False, roles=("form", "identity")),
    _k(
        "mixed_precision",
        "choice",
        TRAINING,
        "mixed precision",
        "no",
        choices=("no", "fp16", "bf16"),
        nullable=False,
        roles=("form",),
    ),
    _k(
        "full_fp16",
        "bool",
        TRAINING,
        'the LoRA weights, their gradients and optimizer state in fp16 too (needs mixed_precision = "fp16" and '
        "a GPU); less memory, less precise updates",
        False,
        nullable=False,
    ),
    _k(
        "full_bf16",
        "bool",
        TRAINING,
        'the LoRA weights, their gradients and optimizer state in bf16 too (needs mixed_precision = "bf16"); '
        "less memory, less precise updates",
        False,
        nullable=False,
    ),
    _k(
        "no_half_vae",
        "bool",
        TRAINING,
        "keep the VAE in float32 under mixed precision (else it encodes latents and decodes samples in fp16 / "
        "bf16; SDXL's VAE gives NaN in fp16)",
        False,
        nullable=False,
    ),
    _k(
        "clip_skip",
        "int",
        TRAINING,
        "condition SD 1.x / 2.x on the text encoder's n-th layer from the end (2: the penultimate), through its "
        "final layer norm; unset: the last layer; SDXL ignores it, as sd-scripts does",
        None,
        low=1,
    ),
    _k(
        "max_token_length",
        "int",
        TRAINING,
        "caption length in tokens: 150 or 225 encode longer captions in 75-token chunks (sd-scripts' way); "
        "unset or 75: captions are cut at 75 tokens",
        None,
        low=75,
        high=225,
        multiple_of=75,
    ),
    # false and "" are no resume: sd-scripts tests `if not args.resume` (train_util.py:4773)
    _k("resume", "path", TRAINING, "checkpoint directory to resume from, or latest", None, unset=(False, "")),
    _k(
        "gradient_checkpointing",
        "bool",
        TRAINING,
        "recompute activations in the backward pass (UNet, and the text encoder when trained): less memory, slower",
        False,
        nullable=False,
    ),
    _k(
        "sdpa",
        "bool",
        TRAINING,
        "PyTorch's scaled-dot-product attention (what `train` always uses)",
        False,
        nullable=False,
    ),
    _k(
        "xformers",
        "bool",
        TRAINING,
        "xformers' memory-efficient attention when the package is installed (else SDPA, with a notice)",
        False,
        nullable=False,
    ),
    _k(
        "mem_eff_attn",
        "bool",
        TRAINING,
        "sd-scripts' memory-efficient attention; `train` uses SDPA, which has such a kernel",
        False,
        nullable=False,
    ),
    _k(
        "cache_latents",
        "bool",
        TRAINING,
        "encode every image with the VAE once, before training (`train` always does)",
        False,
        nullable=False,
    ),
    _k(
        "cache_latents_to_disk",
        "bool",
        TRAINING,
        "keep the latents in IMAGE.npz next to each image; a later run reads them instead of encoding again",
        False,
        nullable=False,
    ),
    # the training objective (lora_sched.train.objective): sd-scripts' defaults; None and 0 are off
    _k(
        "noise_offset",
        "float",
        TRAINING,
        "add noise_offset x N(0, 1) per sample and channel to the noise (about 0.1 is usual; 0 = off)",
        None,
        low=0,
        high=10,
    ),
    _k(
        "noise_offset_random_strength",
        "bool",
        TRAINING,
        "scale noise_offset by a random strength in [0, 1) each step",
        False,
        nullable=False,
    ),
    _k(
        "adaptive_noise_scale",
        "float",
        TRAINING,
        "add this x |a channel's latent mean| to noise_offset (needs noise_offset)",
        None,
        low=-10,
        high=10,
    ),
    _k(
        "multires_noise_iterations",
        "int",
        TRAINING,
        "multi-resolution (pyramid) noise with this many levels (6-10 is usual; 0 = off)",
        None,
        low=0,
        high=100,
    ),
    _k(
        "multires_noise_discount",
        "float",
        TRAINING,
        "weight discount**i of pyramid level i (only with multires_noise_iterations)",
        0.3,
        low=0,
        high=10,
        nullable=False,
    ),
    _k(
        "ip_noise_gamma",
        "float",
        TRAINING,
        "input perturbation: noise the latents with ip_noise_gamma x extra noise the target does not hold (about 0.1)",
        None,
        low=0,
        high=10,
    ),
    _k(
        "ip_noise_gamma_random_strength",
        "bool",
        TRAINING,
        "scale ip_noise_gamma by a random strength in [0, 1) each step",
        False,
        nullable=False,
    ),
    _k(
        "min_timestep",
        "int",
        TRAINING,
        "smallest timestep trained (timesteps are drawn from [min_timestep, max_timestep); "
        "when min_timestep >= max_timestep every one is max_timestep)",
        None,
        low=0,
        high=999,
        default_doc="0",
    ),
    _k(
        "max_timestep",
        "int",
        TRAINING,
        "end of the timestep range, excluded",
        None,
        low=0,
        high=1000,
        default_doc="1000 (the schedule's length)",
    ),
    _k(
        "loss_type",
        "choice",
        TRAINING,
        "the loss: l2 (MSE), l1, huber or smooth_l1 (their threshold: huber_schedule, huber_c, huber_scale)",
        "l2",
        choices=("l1", "l2", "huber", "smooth_l1"),
        nullable=False,
    ),
    _k(
        "huber_schedule",
        "choice",
        TRAINING,
        "huber / smooth_l1 threshold over the timesteps: constant (huber_c x huber_scale), exponential "
        "(from huber_scale at t=0 to huber_c x huber_scale at the end) or snr (from 1 to huber_c as noise grows)",
        "snr",
        choices=("constant", "exponential", "snr"),
        nullable=False,
    ),
    _k(
        "huber_c",
        "float",
        TRAINING,
        "huber / smooth_l1 threshold parameter (see huber_schedule)",
        0.1,
        low=0,
        low_open=True,
        high=1000,
        nullable=False,
    ),
    _k(
        "huber_scale",
        "float",
        TRAINING,
        "huber / smooth_l1 threshold multiplier (constant and exponential schedules)",
        1.0,
        low=0,
        low_open=True,
        high=1000,
        nullable=False,
    ),
    _k(
        "min_snr_gamma",
        "float",
        TRAINING,
        "Min-SNR weighting: each sample's loss times min(SNR, gamma) / SNR (5 is usual; 0 = off)",
        None,
        low=0,
        high=1000,
    ),
    _k(
        "scale_v_pred_loss_like_noise_pred",
        "bool",
        TRAINING,
        "v-prediction: scale the loss by SNR / (SNR + 1), like an eps-prediction loss (needs v_parameterization)",
        False,
        nullable=False,
    ),
    _k(
        "v_pred_like_loss",
        "float",
        TRAINING,
        "add this x a v-prediction-like loss (loss x (SNR + 1) / SNR); not with v_parameterization",
        None,
        low=0,
        high=1000,
    ),
    _k(
        "debiased_estimation_loss",
        "bool",
        TRAINING,
        "weight each sample's loss by 1 / sqrt(SNR) (v-prediction: 1 / (SNR + 1)), SNR capped at 1000",
        False,
        nullable=False,
    ),
    _k(
        "zero_terminal_snr",
        "bool",
        TRAINING,
        "rescale the noise schedule so the last timestep is pure noise (meant for v_parameterization)",
        False,
        nullable=False,
    ),
    _k(
        "output_dir",
        "path",
        SAVING,
        "where checkpoints, the log and the LoRA go (any folder, absolute or relative)",
        "output",
        nullable=False,
        rule=_check_folder,
        roles=("form",),
    ),
    _k(
        "output_name",
        "str",
        SAVING,
        "file name of the LoRA inside output_dir (without .safetensors; no folders)",
        "lora",
        nullable=False,
        rule=_check_file_stem,
        roles=("form",),
    ),
    _k(
        "training_comment",
        "str",
        SAVING,
        "a comment stored in every LoRA file's metadata as ss_training_comment (sd-scripts' key)",
        None,
    ),
    _k(
        "no_metadata",
        "bool",
        SAVING,
        "LoRA files keep only sd-scripts' minimum ss_* metadata (network, base model), the model spec "
        "and the sshs_* hashes: no training details, no folder names or tag counts",
        False,
    ),
    _k(
        "save_every_n_steps",
        "int",
        SAVING,
        "write {output_name}-step{N:08d}.safetensors and a resume checkpoint every N optimizer steps",
        None,
        low=1,
        high=MAX_STEPS,
    ),
    _k(
        "save_every_n_epochs",
        "int",
        SAVING,
        "write {output_name}-{epoch:06d}.safetensors every N epochs (the last epoch is the final LoRA)",
        None,
        low=1,
        high=1_000_000,
    ),
    _k("save_last_n_epochs", "int", SAVING, "keep only the newest N per-epoch LoRA files", None, low=1, high=1_000_000),
    _k(
        "save_last_n_steps",
        "int",
        SAVING,
        "keep the per-step LoRA files of the last N steps only (older ones are removed)",
        None,
        low=1,
        high=MAX_STEPS,
    ),
    _k(
        "save_precision",
        "choice",
        SAVING,
        'the LoRA file\'s tensor type, as sd-scripts writes it: "float" (float32), "fp16" or "bf16" '
        "(unset: the type the LoRA trained in, float32 unless full_fp16 / full_bf16)",
        None,
        choices=("float", "fp16", "bf16"),
    ),
    _k(
        "sample_prompts",
        "path",
        TRAINING,
        "prompt file for sample images (.txt with --n --w --h --s --l --d options, .toml or .json)",
        None,
    ),
    _k("sample_every_n_steps", "int", TRAINING, "sample images every N steps (0 or less: off)", None),
    _k(
        "sample_every_n_epochs",
        "int",
        TRAINING,
        "sample images every N epochs (0 or less: off; overrides sample_every_n_steps)",
        None,
    ),
    _k("sample_at_first", "bool", TRAINING, "sample images before the first step", False, nullable=False),
    _k(
        "sample_sampler",
        "choice",
        TRAINING,
        "sampler (diffusers scheduler) for sample images",
        DEFAULT_SAMPLER,
        choices=SAMPLERS,
        nullable=False,
    ),
    _k(
        "train_data_dir",
        "path",
        DATASET,
        "images in kohya layout (N_concept/ folders with .txt captions) or builtin:shapes",
        BUILTIN_DATA,
        nullable=False,
        roles=("data", "form", "identity"),
    ),
    _k(
        "dataset_config",
        "path",
        DATASET,
        "kohya dataset config (TOML or JSON: [[datasets]], [[datasets.subsets]]); replaces train_data_dir",
        None,
        roles=("data",),
    ),
    _k(
        "resolution",
        "resolution",
        DATASET,
        'training resolution: an int or "W,H" (`lora-sched train` needs multiples of 64 for SD models)',
        BUILTIN_RESOLUTION,
        low=8,
        high=8192,
        nullable=False,  # no multiple here: sd-scripts trains "512,650" (its buckets round it)
        roles=("form", "identity"),
    ),
    _k(
        "caption_extension",
        "str",
        DATASET,
        'extension of the caption files ("txt" means ".txt", as in sd-scripts)',
        ".txt",
        nullable=False,
        allow_empty=True,
        rule=_check_extension,
    ),
    _k(
        "enable_bucket",
        "bool",
        DATASET,
        "aspect-ratio buckets: each image goes to the bucket nearest its shape (off: one centre-cropped size)",
        False,
        nullable=False,
    ),
    # whole numbers; kohya_ss GUI presets write them as floats (64.0), read as the int
    _k(
        "min_bucket_reso",
        "float",
        DATASET,
        "smallest bucket side (rounded down to bucket_reso_steps)",
        256,
        low=1,
        high=65_536,
    ),
    _k(
        "max_bucket_reso",
        "float",
        DATASET,
        "largest bucket side (rounded up to bucket_reso_steps)",
        1024,
        low=1,
        high=65_536,
    ),
    _k("bucket_reso_steps", "float", DATASET, "bucket sides are multiples of this", 64, low=1, high=8192),
    _k(
        "bucket_no_upscale",
        "bool",
        DATASET,
        "buckets from each image's own size (shrunk to the resolution's area, never enlarged)",
        False,
        nullable=False,
    ),
    _k("shuffle_caption", "bool", DATASET, "shuffle a caption's comma-separated tags each time it is drawn", False),
    _k("keep_tokens", "int", DATASET, "tags kept in front of the shuffled ones", 0, low=0, high=10_000),
    _k(
        "keep_tokens_separator",
        "str",
        DATASET,
        "tags before it stay in front (after a second one: at the end)",
        "",
        allow_empty=True,
    ),
    _k("caption_separator", "str", DATASET, "what a caption's tags are split on", ","),
    _k("caption_prefix", "str", DATASET, "text put before every caption (with a space)", None, allow_empty=True),
    _k("caption_suffix", "str", DATASET, "text put after every caption (with a space)", None, allow_empty=True),
    _k("caption_dropout_rate", "float", DATASET, "chance a caption is dropped (trained as empty)", 0.0, low=0, high=1),
    _k(
        "caption_dropout_every_n_epochs",
        "int",
        DATASET,
        "drop every caption in each n-th epoch",
        0,
        low=0,
        high=1_000_000,
    ),
    _k("caption_tag_dropout_rate", "float", DATASET, "chance each shuffled tag is dropped", 0.0, low=0, high=1),
    _k(
        "flip_aug",
        "bool",
        DATASET,
        "mirror images left-right with chance 1/2 (their flipped latents are cached too)",
        False,
    ),
    _k(
        "reg_data_dir",
        "path",
        DATASET,
        "regularisation images in kohya layout (N_concept/ folders), repeated or cut to the training samples",
        None,
        roles=("data", "identity"),
        unset=("",),  # kohya_ss GUI writes "" for no folder; sd-scripts tests the path's truthiness
    ),
    _k(
        "prior_loss_weight",
        "float",
        DATASET,
        "loss weight of the regularisation samples (training samples weigh 1)",
        1.0,
        low=0,
        high=1e6,
        nullable=False,
    ),
    _k(
        "validation_split",
        "float",
        DATASET,
        "share of each training folder held out for the validation loss (0: none; shuffled by validation_seed)",
        0.0,
        low=0,
        high=1,
        nullable=False,
        roles=("data",),
    ),
    _k(
        "validation_seed",
        "int",
        DATASET,
        "seed of the validation split and of the validation noise (default: seed)",
        None,
        low=0,
        high=2**32 - 1,
        default_doc="seed",
        roles=("data", "identity"),
    ),
    _k(
        "validate_every_n_steps",
        "int",
        DATASET,
        "also compute the validation loss every N optimizer steps (it is computed after every epoch)",
        None,
        low=1,
        high=MAX_STEPS,
    ),
    _k(
        "validate_every_n_epochs",
        "int",
        DATASET,
        "compute the epoch's validation loss every N epochs only (default: every epoch)",
        None,
        low=1,
        high=1_000_000,
    ),
    _k(
        "max_validation_steps",
        "int",
        DATASET,
        "validation batches read per validation (default: all of them)",
        None,
        low=1,
        high=MAX_STEPS,
    ),
    _k(
        "schedule_steps",
        "duration",
        LORA_SCHED,
        "horizon T the schedule is drawn over (default: the run length)",
        None,
        default_doc="the run length",
        roles=("schedule",),
    ),
    _k(
        "samples_per_epoch",
        "int",
        LORA_SCHED,
        "samples per epoch (images x repeats) when the data is not on this machine; counts epochs",
        None,
        low=1,
        high=MAX_STEPS,
        roles=("data",),
    ),
    _k(
        "allow_download",
        "bool",
        LORA_SCHED,
        "let `train` download a Hugging Face Hub id given as pretrained_model_name_or_path (and a single "
        "file's tokenizer); off, only local models are read (`train --download` turns it on)",
        False,
        nullable=False,
    ),
    _k(
        "hold_after_horizon",
        "bool",
        LORA_SCHED,
        "hold the last LR for steps past the horizon",
        False,
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "warmup_start",
        "float",
        LORA_SCHED,
        "multiplier the warmup starts from (0 = LR 0 on the first update)",
        0.0,
        low=0,
        high=1,
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "warmup_type",
        "choice",
        LORA_SCHED,
        "shape of the warmup",
        "linear",
        choices=("linear", "cosine"),
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "scale_schedule_ratio",
        "float",
        LORA_SCHED,
        "Composer's SSR: scales run length, horizon and durations",
        1.0,
        low=0,
        low_open=True,
        high=1000,
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "scale_warmup",
        "bool",
        LORA_SCHED,
        "scale the warmup by scale_schedule_ratio too",
        False,
        nullable=False,
        roles=("schedule",),
    ),
    _k(
        "plateau_every",
        "int",
        LORA_SCHED,
        "steps between loss readings fed to ReduceLROnPlateau",
        10,
        low=1,
        high=MAX_STEPS,
        nullable=False,
    ),
)

KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}


def keys_with(*roles: Role) -> tuple[str, ...]:
    """The names of the keys with any of `roles`, in table order."""
    wanted = frozenset(roles)
    return tuple(k.name for k in KEYS if k.roles & wanted)


#: kohya's global scheduler keys and the value sd-scripts uses when they are absent (its argparse
#: defaults, lora_sched/data/kohya_keys.json). An absent key gives the schedule this value too.
GLOBAL_SCHEDULER_KEYS: dict[str, Any] = {name: KEY_BY_NAME[name].sd_default for name in keys_with("global")}


def defaults() -> dict[str, Any]:
    """Every key with its default (None for keys without one); mutable defaults copied."""
    return {k.name: (type(k.default)(k.default) if isinstance(k.default, (list, dict)) else k.default) for k in KEYS}
