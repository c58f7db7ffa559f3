"""The metadata of a trained LoRA file, with the names and value forms sd-scripts writes: its
``ss_*`` keys (train_network.py), the hashes its networks write (``sshs_*``, networks/lora.py) and
the Stability AI model spec's ``modelspec.*`` keys (library/sai_model_spec.py), so that tools
reading kohya files (A1111's, Forge's and ComfyUI's LoRA browsers, Civitai, kohya's own scripts)
show what trained it: the base model family, the network, the schedule, the data.

Value forms are sd-scripts': every value is ``str()`` of what it holds (``"None"`` for an option
left unset, ``"True"``/``"False"``, ``"(512, 512)"`` for the resolution), structures are JSON
(``ss_tag_frequency``, ``ss_dataset_dirs``, ``ss_bucket_info``, ``ss_datasets``,
``ss_network_args``). Options lora_sched reads from the config are written from the config's
values, with sd-scripts' argparse default where the config has none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: sd-scripts' name of the SDXL base model family (sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0).
SDXL_BASE_VERSION = "sdxl_base_v1-0"
#: What sd-scripts writes as ss_sd_scripts_commit_hash when it cannot ask git (train_util.get_git_revision_hash).
UNKNOWN_COMMIT = "(unknown)"
#: The legacy hash reads 64 KiB at 1 MiB into the file (A1111's old model hash).
LEGACY_HASH_OFFSET, LEGACY_HASH_LENGTH = 0x100000, 0x10000

#: sd-scripts' options that train_network.py copies into the metadata as they are, with their
#: argparse defaults (library/train_util.py, train_network.py); bool() marks those it wraps in bool().
OPTION_KEYS: dict[str, tuple[str, Any, bool]] = {
    "ss_gradient_checkpointing": ("gradient_checkpointing", False, False),
    "ss_network_dropout": ("network_dropout", None, False),
    "ss_full_fp16": ("full_fp16", False, True),
    "ss_clip_skip": ("clip_skip", None, False),
    "ss_max_token_length": ("max_token_length", None, False),
    "ss_cache_latents": ("cache_latents", False, True),
    "ss_lowram": ("lowram", False, False),
    "ss_noise_offset": ("noise_offset", None, False),
    "ss_multires_noise_iterations": ("multires_noise_iterations", None, False),
    "ss_multires_noise_discount": ("multires_noise_discount", 0.3, False),
    "ss_adaptive_noise_scale": ("adaptive_noise_scale", None, False),
    "ss_zero_terminal_snr": ("zero_terminal_snr", False, False),
    "ss_training_comment": ("training_comment", None, False),
    "ss_caption_dropout_rate": ("caption_dropout_rate", 0.0, False),
    "ss_caption_dropout_every_n_epochs": ("caption_dropout_every_n_epochs", 0, False),
    "ss_caption_tag_dropout_rate": ("caption_tag_dropout_rate", 0.0, False),
    "ss_face_crop_aug_range": ("face_crop_aug_range", None, False),
    "ss_prior_loss_weight": ("prior_loss_weight", 1.0, False),
    "ss_min_snr_gamma": ("min_snr_gamma", None, False),
    "ss_scale_weight_norms": ("scale_weight_norms", None, False),
    "ss_ip_noise_gamma": ("ip_noise_gamma", None, False),
    "ss_debiased_estimation": ("debiased_estimation_loss", False, True),
    "ss_noise_offset_random_strength": ("noise_offset_random_strength", False, False),
    "ss_ip_noise_gamma_random_strength": ("ip_noise_gamma_random_strength", False, False),
    "ss_loss_type": ("loss_type", "l2", False),
    "ss_huber_schedule": ("huber_schedule", "snr", False),
    "ss_huber_scale": ("huber_scale", 1.0, False),
    "ss_huber_c": ("huber_c", 0.1, False),
    "ss_fp8_base": ("fp8_base", False, True),
    "ss_fp8_base_unet": ("fp8_base_unet", False, True),
    "ss_validation_seed": ("validation_seed", None, False),
    "ss_validation_split": ("validation_split", 0.0, False),
    "ss_max_validation_steps": ("max_validation_steps", None, False),
    "ss_validate_every_n_epochs": ("validate_every_n_epochs", None, False),
    "ss_validate_every_n_steps": ("validate_every_n_steps", None, False),
    "ss_resize_interpolation": ("resize_interpolation", None, False),
}
#: The keys sd-scripts keeps with no_metadata (train_util.SS_METADATA_MINIMUM_KEYS).
MINIMUM_KEYS = (
    "ss_v2",
    "ss_base_model_version",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
)


@dataclass(frozen=True)
class LoraRunFacts:
    """What a LoRA file's metadata records about the run that made it."""

    cfg: Any  # the loaded config (values, scheduler_type, data())
    resolved: Any  # the schedule as trained (ResolvedSchedule)
    group_lrs: dict  # base LR per param group
    num_samples: int  # training samples per epoch (repeats counted)
    steps_per_epoch: int
    steps: int  # optimizer updates done
    optimizer_type: str
    width: int
    height: int
    model_kind: str  # "sd1", "sd2" or "sdxl" (lora_sched.train.model.SDModel.kind)
    v_prediction: bool  # trained to predict the velocity
    examples: tuple = ()  # the examples trained on (lora_sched.train.data.Example)
    validation: tuple = ()  # the examples validation_split holds out
    batches_per_epoch: int = 0  # micro-batches per epoch of one process (len(train_dataloader))
    num_processes: int = 1
    optimizer_name: str = ""  # the optimizer class as ``module.Class`` (sd-scripts' ss_optimizer)
    optimizer_args: dict = field(default_factory=dict)  # the keyword arguments the optimizer was given
    session: RunSession | None = None  # the run's session id and start time


def run_facts(run: Any, step: int) -> LoraRunFacts:
    """The facts of a LoRA file written after `step` updates of `run` (lora_sched.train.build.Run)."""
    from lora_sched.train.optim import optimizer_class, takes_relative_step

    plan, built = run.plan, run.built
    cls, added = optimizer_class(plan.optimizer_type)
    kwargs = {**plan.optimizer_args, **{k: x for k, x in added.items() if k not in plan.optimizer_args}}
    if takes_relative_step(plan.optimizer_type):  # sd-scripts names relative_step too (optim.py sets it)
        kwargs.setdefault("relative_step", run.training.resolved.spec.optimizer_sets_lr)
    return LoraRunFacts(
        cfg=run.cfg,
        resolved=run.training.resolved,
        group_lrs=plan.group_lrs,
        num_samples=built.data.num_samples,
        steps_per_epoch=run.processes.steps_per_epoch,
        steps=step,
        optimizer_type=plan.optimizer_type,
        width=plan.width,
        height=plan.height,
        model_kind=built.model.kind,
        v_prediction=built.prediction == "v_prediction",
        examples=tuple(plan.data.examples),
        validation=tuple(getattr(plan.data, "validation", ())),
        batches_per_epoch=run.processes.order.batches_per_process,
        num_processes=run.processes.accelerator.num_processes,
        optimizer_name=f"{cls.__module__}.{cls.__name__}",
        optimizer_args=kwargs,
        session=run_session(plan),
    )


# -- the run's session -------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSession:
    """ss_session_id (a random integer telling which run a file came from) and ss_training_started_at
    (a unix time): the same in every file one run writes, new for a resumed run, as in sd-scripts."""

    session_id: int
    started_at: float


_session: tuple[Any, RunSession] | None = None


def run_session(owner: Any) -> RunSession:
    """The session of the run `owner` (its RunPlan) stands for: made on the first call for it, kept
    while it is the current run, so that every file of a run shares its id and start time."""
    global _session
    if _session is None or _session[0] is not owner:
        _session = (owner, RunSession(random.SystemRandom().randint(0, 2**32), time.time()))
    return _session[1]


# -- the data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFolder:
    """One subset (image folder) as sd-scripts records it: the folder's name (sd-scripts keeps no
    path), repeats, how many images it trains on and their captions (those the run read)."""

    dataset: int
    name: str
    repeats: int
    img_count: int
    captions: tuple[str, ...]
    is_reg: bool = False
    class_tokens: str | None = None
    captions_options: Any = None  # its CaptionSettings (None: the config's)

    @property
    def samples(self) -> int:
        """Images x repeats: what sd-scripts adds to num_train_images (or num_reg_images)."""
        return self.img_count * self.repeats


def data_folders(cfg: Any, examples: Iterable[Any]) -> list[DataFolder]:
    """The folders of the run's data in sd-scripts' order (datasets, then their subsets): from the
    counted data plan where there is one, else one folder per source of the examples
    (builtin:shapes). A folder with no image or repeats below 1 is left out, as sd-scripts skips it."""
    examples = list(examples)
    found = cfg.data() if hasattr(cfg, "data") else None
    datasets = getattr(found, "datasets", None)
    if not datasets:
        return _example_folders(cfg, examples)
    caption_of = {(ex.dataset, str(ex.path)): ex.caption for ex in examples if ex.path is not None}
    folders = []
    for number, dataset in enumerate(datasets):
        for subset in dataset.subsets:
            trained = dataset.split(subset)[0] if hasattr(dataset, "split") else range(len(subset.images))
            paths = [str(Path(subset.images[i])) for i in trained]
            captions = tuple(caption_of[(number, p)] for p in paths if (number, p) in caption_of)
            folders.append(
                DataFolder(
                    number,
                    subset.name,
                    subset.repeats,
                    len(paths),
                    captions,
                    subset.is_reg,
                    subset.class_tokens,
                    subset.captions,
                )
            )
    return [f for f in folders if f.repeats >= 1]


def _example_folders(cfg: Any, examples: list[Any]) -> list[DataFolder]:
    """Folders read off the examples alone: consecutive examples of one folder, dataset and repeats."""
    source = str(cfg.values.get("train_data_dir") or "")
    groups: dict[tuple[int, str, int], list[str]] = {}
    for ex in examples:
        name = ex.path.parent.name if ex.path is not None else source
        groups.setdefault((ex.dataset, name, ex.repeats), []).append(ex.caption)
    return [
        DataFolder(dataset, name, repeats, len(captions), tuple(captions))
        for (dataset, name, repeats), captions in groups.items()
    ]


def count_tags(captions: Iterable[str], counts: dict[str, int]) -> dict[str, int]:
    """Add the tags of `captions` to `counts` as sd-scripts' set_tag_frequency counts them: each
    caption split on commas, every non-empty stripped part lower-cased and counted once per time
    it appears."""
    for caption in captions:
        for part in caption.split(","):
            tag = part.strip()
            if tag:
                tag = tag.lower()
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def dataset_tag_frequency(folders: Iterable[DataFolder]) -> dict[str, dict[str, int]]:
    """One dataset's tag counts by folder name; folders of the same name add up (as in sd-scripts,
    regularisation folders included)."""
    frequency: dict[str, dict[str, int]] = {}
    for folder in folders:
        count_tags(folder.captions, frequency.setdefault(folder.name, {}))
    return frequency


def tag_frequency(folders: list[DataFolder]) -> dict[str, dict[str, int]]:
    """ss_tag_frequency: each dataset's counts merged, a folder name already there from an earlier
    dataset kept as it was (sd-scripts counts a folder used by several datasets once)."""
    merged: dict[str, dict[str, int]] = {}
    for number in _dataset_numbers(folders):
        for name, counts in dataset_tag_frequency(f for f in folders if f.dataset == number).items():
            merged.setdefault(name, counts)
    return merged


def dataset_dirs(folders: Iterable[DataFolder], reg: bool = False, renumber: bool = False) -> dict[str, dict]:
    """ss_dataset_dirs (or, with reg, ss_reg_dataset_dirs): ``{folder: {"n_repeats", "img_count"}}``
    for the folders with images. renumber (dataset_config runs): a name seen before becomes
    ``name (2)``, ``name (3)`` ...; otherwise the later folder of a name replaces the earlier."""
    dirs: dict[str, dict] = {}
    for folder in folders:
        if folder.is_reg != reg or folder.img_count < 1:
            continue
        name = folder.name
        if renumber:
            n = 2
            while name in dirs:
                name, n = f"{folder.name} ({n})", n + 1
        dirs[name] = {"n_repeats": folder.repeats, "img_count": folder.img_count}
    return dirs


def _dataset_numbers(folders: Iterable[DataFolder]) -> list[int]:
    return sorted({f.dataset for f in folders})


def train_image_counts(folders: Iterable[DataFolder]) -> tuple[int, int]:
    """(ss_num_train_images, ss_num_reg_images): images x repeats of the training and of the
    regularisation folders (sd-scripts counts regularisation images before balancing them)."""
    folders = [f for f in folders if f.img_count > 0]
    return sum(f.samples for f in folders if not f.is_reg), sum(f.samples for f in folders if f.is_reg)


# -- the options -------------------------------------------------------------------------------
def option(cfg: Any, key: str, default: Any = None) -> Any:
    """A config value as sd-scripts reads it: the value lora_sched holds, else the one the file
    gives for an sd-scripts option lora_sched keeps aside, else sd-scripts' default."""
    value = cfg.values.get(key)
    if value is None:
        value = getattr(cfg, "extras", {}).get(key, (None, None))[1]
    return default if value is None else value


def network_args(cfg: Any) -> dict[str, Any] | None:
    """ss_network_args' dict, None without network_args: each "key=value" split at its first "=",
    plus sd-scripts' ``dropout`` (network_dropout) when the args do not set it."""
    given = option(cfg, "network_args")
    if not given:
        return None
    if isinstance(given, Mapping):
        args = {str(k): v for k, v in given.items()}
    else:
        args = dict(str(item).split("=", 1) for item in ([given] if isinstance(given, str) else given))
    args.setdefault("dropout", option(cfg, "network_dropout"))
    return args


def optimizer_text(name: str, kwargs: Mapping[str, Any]) -> str:
    """ss_optimizer: ``module.Class`` and, when it was given any, ``(key=value,...)``."""
    return name + (f"({','.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")


def base_model_version(kind: str, v_prediction: bool) -> str:
    """ss_base_model_version as sd-scripts writes it: "sd_v1" / "sd_v2" (+ "_v" for v-prediction),
    "sdxl_base_v1-0" for any SDXL model."""
    if kind == "sdxl":
        return SDXL_BASE_VERSION
    return ("sd_v2" if kind == "sd2" else "sd_v1") + ("_v" if v_prediction else "")


def model_name(name: str) -> str:
    """ss_sd_model_name: a local model's file or folder name (sd-scripts keeps no path), else as given."""
    return os.path.basename(os.path.normpath(name)) if os.path.exists(name) else name


# -- the hashes --------------------------------------------------------------------------------
def addnet_model_hash(data: bytes) -> str:
    """sshs_model_hash: SHA-256 of a safetensors file's bytes after its header (the tensors alone),
    what sd-webui-additional-networks computes for a .safetensors file."""
    header = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header :]).hexdigest()


def addnet_legacy_hash(data: bytes) -> str:
    """sshs_legacy_hash: the first 8 hex digits of SHA-256 of the 64 KiB at 1 MiB (empty for a
    smaller file), A1111's old model hash."""
    return hashlib.sha256(data[LEGACY_HASH_OFFSET : LEGACY_HASH_OFFSET + LEGACY_HASH_LENGTH]).hexdigest()[:8]


def lora_hashes(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> dict[str, str]:
    """The sshs_* hashes of a LoRA file as sd-scripts precalculates them: over the file the tensors
    make with only the ``ss_*`` metadata, which a user editing the title or tags does not change."""
    from safetensors.torch import save

    training = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    data = save(dict(tensors), training)
    return {"sshs_model_hash": addnet_model_hash(data), "sshs_legacy_hash": addnet_legacy_hash(data)}


def file_hashes(path: Path) -> dict[str, str]:
    """The sshs_* hashes recomputed from a written LoRA file: its tensors and ss_* metadata."""
    from safetensors import safe_open
    from safetensors.torch import load

    data = Path(path).read_bytes()
    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata() or {}
    return lora_hashes(load(data), metadata)


def old_model_hash(path: str) -> str:
    """ss_sd_model_hash: A1111's old hash of a model file (8 hex digits of SHA-256 of 64 KiB at 1 MiB);
    "IsADirectory" for a folder, "NOFILE" when it is missing, as sd-scripts writes them."""
    try:
        with open(path, "rb") as fh:
            fh.seek(LEGACY_HASH_OFFSET)
            return hashlib.sha256(fh.read(LEGACY_HASH_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"
    except (IsADirectoryError, PermissionError):
        return "IsADirectory"


_sha256_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """ss_new_sd_model_hash: SHA-256 of the whole model file (kept per file, size and time: a run
    saving many LoRA files reads a multi-GB model once); the same words as old_model_hash otherwise."""
    try:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in _sha256_cache:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            _sha256_cache[key] = digest.hexdigest()
        return _sha256_cache[key]
    except FileNotFoundError:
        return "NOFILE"
    except (IsADirectoryError, PermissionError):
        return "IsADirectory"


def model_file_keys(path: str | None, prefix: str) -> dict[str, Any]:
    """ss_<prefix>_name and, for a model on this machine, ss_<prefix>_hash and ss_new_<prefix>_hash."""
    if path is None:
        return {}
    found: dict[str, Any] = {}
    if os.path.exists(path):
        found[f"ss_{prefix}_hash"] = old_model_hash(path)
        found[f"ss_new_{prefix}_hash"] = file_sha256(path)
    found[f"ss_{prefix}_name"] = model_name(path)
    return found


# -- the whole -----------------------------------------------------------------------------------
def lora_metadata(facts: LoraRunFacts, bucket_info: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The file's ``ss_*`` metadata (strings, as safetensors requires), lora_sched's schedule record
    and the model spec; `bucket_info`: the run's ss_*bucket* entries (train_data_dir runs)."""
    cfg = facts.cfg
    folders = data_folders(cfg, facts.examples)
    metadata = run_keys(facts, folders)
    if option(cfg, "dataset_config"):
        metadata.update(dataset_config_keys(facts, folders))
    else:
        metadata.update(single_dataset_keys(facts, folders, bucket_info or {}))
    found_args = network_args(cfg)
    if found_args is not None:
        metadata["ss_network_args"] = json.dumps(found_args)
    metadata.update(model_file_keys(str(cfg.values["pretrained_model_name_or_path"]), "sd_model"))
    metadata.update(model_file_keys(option(cfg, "vae"), "vae"))
    metadata["ss_training_finished_at"] = time.time()
    metadata["ss_steps"] = facts.steps
    metadata["ss_epoch"] = math.ceil(facts.steps / facts.steps_per_epoch)
    strings = {key: str(value) for key, value in metadata.items()}
    if option(cfg, "no_metadata", False):
        strings = {key: strings[key] for key in MINIMUM_KEYS if key in strings}
    strings.update(model_spec(facts))
    return strings


def run_keys(facts: LoraRunFacts, folders: list[DataFolder]) -> dict[str, Any]:
    """The keys sd-scripts writes for every run, in its order."""
    cfg, resolved, values = facts.cfg, facts.resolved, facts.cfg.values
    session = facts.session or run_session(facts)
    train_images, reg_images = train_image_counts(folders)
    keys: dict[str, Any] = {
        "ss_session_id": session.session_id,
        "ss_training_started_at": session.started_at,
        "ss_output_name": values["output_name"],
        "ss_learning_rate": float(values["learning_rate"]),
        "ss_text_encoder_lr": float(facts.group_lrs.get("text_encoder", 0.0)),
        "ss_unet_lr": float(facts.group_lrs["unet"]),
        "ss_num_train_images": train_images if folders else facts.num_samples,
        "ss_num_validation_images": sum(ex.repeats for ex in facts.validation),
        "ss_num_reg_images": reg_images,
        "ss_num_batches_per_epoch": facts.batches_per_epoch,
        "ss_num_epochs": math.ceil(resolved.run_length / facts.steps_per_epoch),
        "ss_gradient_accumulation_steps": int(values["gradient_accumulation_steps"]),
        "ss_max_train_steps": resolved.run_length,
        "ss_lr_warmup_steps": resolved.warmup,
        "ss_lr_scheduler": resolved.name,
        "ss_network_module": option(cfg, "network_module", "networks.lora"),
        "ss_network_dim": int(values["network_dim"]),
        "ss_network_alpha": float(values["network_alpha"]),
        "ss_mixed_precision": option(cfg, "mixed_precision", "no"),
        "ss_v2": facts.model_kind == "sd2",
        "ss_base_model_version": base_model_version(facts.model_kind, facts.v_prediction),
        "ss_seed": int(values["seed"]),
        "ss_sd_scripts_commit_hash": UNKNOWN_COMMIT,
        "ss_optimizer": optimizer_text(facts.optimizer_name or facts.optimizer_type, facts.optimizer_args),
        "ss_max_grad_norm": option(cfg, "max_grad_norm", 1.0),
        # lora_sched's own record of the schedule it trained (not sd-scripts keys)
        "ss_lr_scheduler_args": json.dumps(resolved.to_dict(), sort_keys=True),
        "ss_lr_scheduler_type": getattr(cfg, "scheduler_type", None),
    }
    for key, (name, default, as_bool) in OPTION_KEYS.items():
        value = option(cfg, name, default)
        keys[key] = bool(value) if as_bool else value
    if not keys["ss_lr_scheduler_type"]:
        del keys["ss_lr_scheduler_type"]
    return keys


def single_dataset_keys(facts: LoraRunFacts, folders: list[DataFolder], buckets: Mapping[str, Any]) -> dict[str, Any]:
    """The keys sd-scripts writes for a train_data_dir run (one dataset): batch, resolution,
    augmentation and bucket options, the folders, the tag counts, the buckets."""
    cfg = facts.cfg
    bucket_keys = {"ss_bucket_no_upscale": False, "ss_min_bucket_reso": None, "ss_max_bucket_reso": None}
    bucket_keys.update({k: v for k, v in buckets.items() if k != "ss_bucket_info"})
    return {
        "ss_batch_size_per_device": int(cfg.values["train_batch_size"]),
        "ss_total_batch_size": int(cfg.values["train_batch_size"])
        * facts.num_processes
        * int(cfg.values["gradient_accumulation_steps"]),
        "ss_resolution": (facts.width, facts.height),
        "ss_color_aug": bool(option(cfg, "color_aug", False)),
        "ss_flip_aug": bool(option(cfg, "flip_aug", False)),
        "ss_random_crop": bool(option(cfg, "random_crop", False)),
        "ss_shuffle_caption": bool(option(cfg, "shuffle_caption", False)),
        "ss_enable_bucket": bool(buckets.get("ss_enable_bucket", False)),
        **{k: bucket_keys[k] for k in ("ss_bucket_no_upscale", "ss_min_bucket_reso", "ss_max_bucket_reso")},
        "ss_keep_tokens": option(cfg, "keep_tokens", 0),
        "ss_dataset_dirs": json.dumps(dataset_dirs(folders)),
        "ss_reg_dataset_dirs": json.dumps(dataset_dirs(folders, reg=True)),
        "ss_tag_frequency": json.dumps(tag_frequency(folders)),
        "ss_bucket_info": json.dumps(buckets.get("ss_bucket_info")),
    }


def dataset_config_keys(facts: LoraRunFacts, folders: list[DataFolder]) -> dict[str, Any]:
    """The keys sd-scripts writes for a dataset_config run: ss_datasets (each dataset with its
    subsets, JSON), and the folders and tag counts merged over the datasets."""
    from lora_sched.train.buckets import bucket_metadata

    found = facts.cfg.data()
    fitted = placed_examples(found, facts.examples)
    datasets = []
    for number, dataset in enumerate(found.datasets):
        own = [f for f in folders if f.dataset == number]
        examples = [ex for ex in fitted if ex.dataset == number]
        datasets.append(dataset_entry(facts, dataset, own, bucket_metadata(examples)))
    return {
        "ss_datasets": json.dumps(datasets),
        "ss_tag_frequency": json.dumps(tag_frequency(folders)),
        "ss_dataset_dirs": json.dumps(dataset_dirs(folders, renumber=True)),
    }


def placed_examples(found: Any, examples: Iterable[Any]) -> list[Any]:
    """The examples with the bucket each one's size (read by the data plan) places it in: the
    geometry decoding gives them (lora_sched.train.data.load_images), without decoding again."""
    from dataclasses import replace

    from lora_sched.train.buckets import Geometry, rules_for

    size_of = {
        (number, str(Path(path))): size
        for number, dataset in enumerate(found.datasets)
        for subset in dataset.subsets
        for path, size in zip(subset.images, subset.sizes or ())
    }
    placed = []
    for ex in examples:
        size = size_of.get((ex.dataset, str(ex.path)))
        if ex.geometry is None and size is not None and ex.buckets is not None and ex.buckets.enable_bucket:
            ex = replace(ex, geometry=Geometry(tuple(size), rules_for(ex.buckets).place(tuple(size))))
        placed.append(ex)
    return placed


def dataset_entry(facts: LoraRunFacts, dataset: Any, folders: list[DataFolder], buckets: Mapping) -> dict[str, Any]:
    """One dataset of ss_datasets, with sd-scripts' field names."""
    settings = dataset.buckets
    resolution = settings.resolution if settings is not None else (facts.width, facts.height)
    enabled = bool(buckets.get("ss_enable_bucket", False))
    train_images, reg_images = train_image_counts(folders)
    return {
        "is_dreambooth": True,
        "batch_size_per_device": dataset.batch_size,
        "num_train_images": train_images,
        "num_reg_images": reg_images,
        "resolution": list(resolution),
        "enable_bucket": enabled,
        "min_bucket_reso": buckets.get("ss_min_bucket_reso") if enabled else None,
        "max_bucket_reso": buckets.get("ss_max_bucket_reso") if enabled else None,
        "tag_frequency": dataset_tag_frequency(folders),
        "bucket_info": buckets.get("ss_bucket_info"),
        "resize_interpolation": option(facts.cfg, "resize_interpolation"),
        "subsets": [subset_entry(facts.cfg, f) for f in folders if f.img_count > 0],
    }


def subset_entry(cfg: Any, folder: DataFolder) -> dict[str, Any]:
    """One subset of an ss_datasets entry, with sd-scripts' field names (unset text options null)."""
    from lora_sched.config.captions import caption_settings

    captions = folder.captions_options or caption_settings(cfg.values)
    return {
        "img_count": folder.img_count,
        "num_repeats": folder.repeats,
        "color_aug": bool(option(cfg, "color_aug", False)),
        "flip_aug": bool(captions.flip_aug),
        "random_crop": bool(option(cfg, "random_crop", False)),
        "shuffle_caption": bool(captions.shuffle_caption),
        "keep_tokens": captions.keep_tokens,
        "keep_tokens_separator": captions.keep_tokens_separator,
        "secondary_separator": option(cfg, "secondary_separator"),
        "enable_wildcard": bool(option(cfg, "enable_wildcard", False)),
        "caption_prefix": captions.caption_prefix or None,
        "caption_suffix": captions.caption_suffix or None,
        "resize_interpolation": option(cfg, "resize_interpolation"),
        "image_dir": folder.name,
        "class_tokens": folder.class_tokens,
        "is_reg": folder.is_reg,
    }


def model_spec(facts: LoraRunFacts) -> dict[str, str]:
    """The ``modelspec.*`` keys sd-scripts adds to a LoRA: architecture (SDXL base, SD 2 512 / 768-v,
    SD 1), implementation (SDXL LoRA names follow Stability AI's repository; SD ones diffusers'),
    title, resolution, prediction type, date; plus lora_sched's schedule record."""
    kind, v_pred = facts.model_kind, facts.v_prediction
    if kind == "sdxl":
        arch = "stable-diffusion-xl-v1-base"
    elif kind == "sd2":
        arch = "stable-diffusion-v2-768-v" if v_pred else "stable-diffusion-v2-512"
    else:
        arch = "stable-diffusion-v1"
    return {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{arch}/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models"
        if kind == "sdxl"
        else "diffusers",
        "modelspec.title": str(facts.cfg.values["output_name"]),
        "modelspec.resolution": f"{facts.width}x{facts.height}",
        "modelspec.prediction_type": "v" if v_pred else "epsilon",
        "modelspec.date": datetime.now(timezone.utc).date().isoformat(),
        "lora_sched_schedule": json.dumps(facts.resolved.to_dict(), sort_keys=True),
    }
