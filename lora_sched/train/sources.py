"""Where the model to fine-tune comes from, checked before anything is written and then loaded.

Accepted (``pretrained_model_name_or_path``):

- ``builtin:tiny-sd``: built in code;
- a diffusers folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``);
- a single-file checkpoint in the original layout (``.safetensors``; ``.ckpt`` / ``.pt`` read with
  ``torch.load(weights_only=True)``, never unpickling anything but tensors) of SD 1.x, SD 2.x or
  SDXL: its architecture is read from the tensors (lora_sched.train.detect), its keys mapped with
  diffusers' own conversion functions; nothing is downloaded;
- a Hugging Face Hub id (``owner/name``), only with ``allow_download = true`` or ``--download``.

The cheap checks (``check_source``: the path, the safetensors header, the architecture, the
tokenizer) run before the output folder is touched; ``load_source`` then builds the model.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.builtins import BUILTIN_MODELS
from lora_sched.errors import ConfigError, problem, raw
from lora_sched.train import detect

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)

KEY = "pretrained_model_name_or_path"
EXPECTED = "a diffusers folder, a single-file SD 1.x / 2.x / SDXL checkpoint (.safetensors or .ckpt) or " + " or ".join(
    f'"{name}"' for name in BUILTIN_MODELS
)
SAFETENSORS_SUFFIX = ".safetensors"
#: Hub ids: ``owner/name`` as the Hub spells them.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: The parts of a diffusers Stable Diffusion folder training reads.
FOLDER_PARTS = ("unet", "vae", "text_encoder", "tokenizer")
XL_PARTS = ("text_encoder_2", "tokenizer_2")
#: Where sd-scripts fetches the tokenizer of each text encoder (a single file has none):
#: (family, encoder index) -> (Hub repo, subfolder).
CLIP_TOKENIZERS = {
    ("sd1", 0): ("openai/clip-vit-large-patch14", ""),
    ("sd2", 0): ("stabilityai/stable-diffusion-2", "tokenizer"),
    ("sdxl", 0): ("openai/clip-vit-large-patch14", ""),
    ("sdxl", 1): ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
}
CLIP_VOCAB = 49_408


class SourceOptions(NamedTuple):
    """The config keys that decide how a model source is read."""

    allow_download: bool = False
    tokenizer_cache_dir: str | None = None
    v_parameterization: bool = False
    v2: bool = False
    vae: str | None = None  #: a VAE file or diffusers folder that replaces the model's (sd-scripts' --vae)

    @classmethod
    def from_values(cls, values: dict) -> SourceOptions:
        cache, vae = values.get("tokenizer_cache_dir"), values.get("vae")
        return cls(
            allow_download=bool(values.get("allow_download")),
            tokenizer_cache_dir=os.path.expanduser(str(cache)) if cache else None,
            v_parameterization=bool(values.get("v_parameterization")),
            v2=bool(values.get("v2")),
            vae=os.path.expanduser(str(vae)) if vae else None,
        )


DEFAULT_OPTIONS = SourceOptions()


class Source(NamedTuple):
    kind: str  # "builtin", "folder" or "file"
    path: Path | None
    detected: detect.Detected | None = None
    builtin: str = ""  # the built-in model's name


# -- checks before anything is written -----------------------------------------------------------
def check_source(name: str, options: SourceOptions = DEFAULT_OPTIONS, key: str = KEY) -> Source:
    """The source `name` names, checked (a Hub id downloaded, with opt-in); ConfigError otherwise."""
    if name.startswith("builtin:"):
        from lora_sched.train.model import check_builtin_name

        check_builtin_name(name, key)
        return Source("builtin", None, builtin=name)
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        check_folder(path, key)
        _check_v2(folder_family(path), options)
        return Source("folder", path)
    if path.is_file():
        found = detect_file(path, key)
        for index in range(len(found.text_encoders)):
            tokenizer_origin(found, index, options, key)
        _check_v2(found.family, options)
        return Source("file", path, found)
    if _HUB_ID.match(name) and not name.startswith("."):
        return Source("folder", download(name, options, key))
    raise ConfigError(problem(key, EXPECTED, name, "no such file or folder"))


def check_folder(path: Path, key: str = KEY) -> None:
    """A diffusers folder with every part training reads, each weights file whole."""
    missing = [part for part in FOLDER_PARTS + _xl_parts(path) if not (path / part).is_dir()]
    if missing:
        raise ConfigError(
            problem(
                key,
                "a diffusers folder with " + ", ".join(f"{p}/" for p in FOLDER_PARTS + _xl_parts(path)),
                raw(f'"{path}" (missing {", ".join(missing)})'),
                "give the folder holding model_index.json (or a single-file checkpoint)",
            )
        )
    for weights in sorted(path.glob("*/*" + SAFETENSORS_SUFFIX)):
        try:
            detect.safetensors_shapes(weights)
        except detect.NotAModel as exc:
            raise ConfigError(
                problem(
                    key, "a diffusers folder whose weights files are whole", raw(f"{weights}: {exc.found}"), exc.hint
                )
            ) from None


def folder_family(path: Path) -> str | None:
    """ "sd1", "sd2" or "sdxl" from a diffusers folder's unet/config.json (None when unreadable)."""
    import json

    try:
        config = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("use_linear_projection") else "sd1"


def _check_v2(family: str | None, options: SourceOptions) -> None:
    """sd-scripts needs v2 = true for SD 2.x; here the model says what it is. A v2 that disagrees is
    a warning, not an error: the run is the model's (sd-scripts would fail to load it)."""
    if options.v2 and family in ("sd1", "sdxl"):
        log.warning(
            f"warning: v2 = true, but the model is {detect.FAMILY_NAMES[family]}: trained as what it is "
            "(remove v2 for sd-scripts)",
        )


def _xl_parts(path: Path) -> tuple[str, ...]:
    """SDXL's second text encoder and tokenizer, when model_index.json lists them."""
    import json

    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    return XL_PARTS if isinstance(index, dict) and "text_encoder_2" in index else ()


def detect_file(path: Path, key: str = KEY) -> detect.Detected:
    """The architecture of a single-file checkpoint (ConfigError when it is none this trains)."""
    try:
        return _detect_cached(str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    except detect.NotAModel as exc:
        raise ConfigError(problem(key, EXPECTED, raw(f'"{path}": {exc.found}'), exc.hint)) from None


@lru_cache(maxsize=8)
def _detect_cached(path: str, mtime: int, size: int) -> detect.Detected:
    """One read per file and version (the check, the resolution check and the load all ask)."""
    return detect.detect(file_shapes(Path(path)))


def file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes: a safetensors header, or a tensors-only pickle mapped, not read."""
    if _is_safetensors(path):
        return detect.safetensors_shapes(path)[0]
    return {k: tuple(t.shape) for k, t in read_pickled(path, mmap=True).items()}


def _is_safetensors(path: Path) -> bool:
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return True
    with open(path, "rb") as fh:
        start = fh.read(9)
    return len(start) == 9 and start[8:9] == b"{"  # an 8-byte header length, then the JSON header


def read_pickled(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The state dict of a .ckpt / .pt file, loaded with weights_only=True: a pickle that holds
    anything but tensors and plain containers is refused, never run."""
    import pickle
    import zipfile

    import torch

    try:
        with _inert_stand_ins(torch):
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        if mmap and "mmap" in str(exc):  # a legacy (not zip) file cannot be mapped
            return read_pickled(path)
        raise detect.NotAModel(_pickle_problem(exc), _pickle_hint(exc)) from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise detect.NotAModel("a pickle that is no state dict of tensors", "give a .safetensors checkpoint")
    return state


#: Classes old Stable Diffusion .ckpt files name (PyTorch Lightning's checkpoint callback, pickled
#: as a dict key of the training state): read as an inert stand-in, never imported or called.
LIGHTNING_GLOBALS = ("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",)


class InertStandIn:
    """What a class named in LIGHTNING_GLOBALS is read as: nothing runs, the weights load."""


def _inert_stand_ins(torch: Any) -> Any:
    """torch's allow-list of extra globals for this load (torch >= 2.5; older torch refuses them)."""
    import contextlib

    try:
        return torch.serialization.safe_globals([(InertStandIn, name) for name in LIGHTNING_GLOBALS])
    except (AttributeError, TypeError):
        return contextlib.nullcontext()


def _pickle_problem(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text or "Unsupported global" in text:
        named = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({named.group(1)})" if named else ""
        return f"a pickle holding Python objects besides tensors{what}, refused unread"
    first = (text.strip().splitlines() or [""])[0].split(". ")[0][:300]
    return f"a file torch cannot read as a checkpoint ({type(exc).__name__}: {first})"


def _pickle_hint(exc: Exception) -> str:
    if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
        return "convert it to .safetensors with a tool you trust, or use a .safetensors release of the model"
    return detect._REDOWNLOAD


def block_channels(path: Path, part: str) -> tuple[int, ...]:
    """block_out_channels of a single file's "vae" or "unet", () when it cannot be read."""
    try:
        found = _detect_cached(str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    except (OSError, detect.NotAModel):
        return ()
    return tuple(getattr(found, part)["block_out_channels"])


# -- the Hub (opt-in) ------------------------------------------------------------------------------
#: What a Stable Diffusion pipeline folder needs; half-precision and EMA variants are left out.
HUB_PATTERNS = [
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "tokenizer_2/*",
    "*/config.json",
    *(f"{part}/*.safetensors*" for part in ("unet", "vae", "text_encoder", "text_encoder_2")),
]
HUB_SKIPPED = ["*.fp16.*", "*.ema.*", "*.non_ema.*", "*.bf16.*"]


def download(repo: str, options: SourceOptions, key: str = KEY) -> Path:
    """A Hub model's diffusers folder (downloaded, with progress bars, into the Hub cache)."""
    if not options.allow_download:
        raise ConfigError(
            problem(
                key,
                EXPECTED,
                repo,
                "no such file or folder here; it reads as a Hugging Face Hub id: to download it, set "
                "allow_download = true (section [lora_sched]) or run `lora-sched train --download`",
            )
        )
    from huggingface_hub import snapshot_download

    log.info(f"downloading {repo} from the Hugging Face Hub (diffusers layout, safetensors only)")
    try:
        folder = Path(snapshot_download(repo, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_SKIPPED))
    except Exception as exc:  # offline, unknown repo, gated repo, disk full: each its own class
        raise ConfigError(problem(key, "a Hub model that downloads", repo, _download_hint(repo, exc))) from None
    if not (folder / "model_index.json").is_file():
        raise ConfigError(
            problem(key, "a Hub repo in diffusers layout (with model_index.json)", repo, _single_file_hint(repo))
        )
    check_folder(folder, key)
    return folder


def _download_hint(repo: str, exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
    return (
        f"the download failed ({type(exc).__name__}: {first}). Check the network and that the repo exists "
        f"(gated repos need `hf auth login`), or download it elsewhere (`hf download {repo} --local-dir DIR`) "
        "and give that folder"
    )


def _single_file_hint(repo: str) -> str:
    return (
        f"download the checkpoint file you want (`hf download {repo} FILE.safetensors --local-dir DIR`) and "
        "give its path"
    )


# -- loading -------------------------------------------------------------------------------------------
def load_source(source: Source, options: SourceOptions = DEFAULT_OPTIONS, key: str = KEY) -> Any:
    """The SDModel `source` names (checked by check_source); load failures are ConfigErrors."""
    from lora_sched.train import model as sd

    if source.kind == "builtin":
        model = sd.build_builtin(source.builtin)
        if options.v_parameterization:  # a built-in model is what the key says it is
            model.noise_scheduler = sd.sd_noise_scheduler("v_prediction")
        return model
    try:
        if source.kind == "folder":
            return load_folder(source.path, options)
        return load_file(source.path, source.detected, options, key)
    except ConfigError:
        raise
    except Exception as exc:  # diffusers, transformers, safetensors and torch each raise their own kinds
        raise ConfigError(
            problem(
                key,
                "a diffusers folder whose weights load (safetensors, or .bin files of tensors only)"
                if source.kind == "folder"
                else "a checkpoint whose weights load",
                raw(f"{source.path}: {type(exc).__name__}: {str(exc)[:400]}"),
                "re-download or re-convert the model (e.g. to safetensors)",
            )
        ) from None


def load_folder(path: Path, options: SourceOptions) -> Any:
    """An SDModel from a diffusers folder (SDXL: with text_encoder_2/ and tokenizer_2/)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from lora_sched.train import model as sd

    offline = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **offline)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **offline)
    encoders = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **offline)]
    tokenizers = [CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **offline)]
    if (path / "text_encoder_2").is_dir():  # SDXL: the projection model, whose pooled output conditions the UNet
        encoders.append(CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", **offline))
        tokenizers.append(CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **offline))
    if (path / "scheduler").is_dir():
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", **offline)
    else:
        scheduler = sd.sd_noise_scheduler()
    if options.v_parameterization and scheduler.config.prediction_type != "v_prediction":
        scheduler = DDPMScheduler.from_config(scheduler.config, prediction_type="v_prediction")
    # fp16 / bf16 checkpoints are trained in float32 (mixed_precision decides the compute dtype):
    # LoRA weights and optimizer state in half precision would lose most small updates.
    for part in (unet, vae, *encoders):
        part.float()  # not .to(dtype): diffusers warns on every such call
    return _sd_model(unet, vae, encoders, tokenizers, scheduler, str(path))


def _sd_model(unet: Any, vae: Any, encoders: list, tokenizers: list, scheduler: Any, source: str) -> Any:
    """The SDModel of these parts; SDXL's second encoder and tokenizer as text_encoder_2 / tokenizer_2."""
    from lora_sched.train import model as sd

    second = {"text_encoder_2": encoders[1], "tokenizer_2": tokenizers[1]} if len(encoders) > 1 else {}
    return sd.SDModel(unet, vae, encoders[0], tokenizers[0], scheduler, source, **second)


def load_file(path: Path, found: detect.Detected, options: SourceOptions, key: str = KEY) -> Any:
    """An SDModel from a single-file checkpoint: configs from the detected shapes, keys mapped with
    diffusers' conversion functions, weights assigned into empty models (no second copy)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    from lora_sched.train import model as sd

    tokenizers = [checked_tokenizer(found, i, options, key) for i in range(len(found.text_encoders))]
    state = read_tensors(path)
    unet_state = convert_ldm_unet_checkpoint(_under(state, detect.UNET), found.unet)
    unet = assemble(empty(UNet2DConditionModel, **found.unet), unet_state, "UNet")
    vae = assemble(
        empty(AutoencoderKL, **found.vae), convert_ldm_vae_checkpoint(_under(state, detect.VAE), found.vae), "VAE"
    )
    encoders = [text_encoder(spec, state, tok) for spec, tok in zip(found.text_encoders, tokenizers)]
    for part in (unet, vae, *encoders):
        part.float()  # as for folders: LoRA and optimizer state in float32
    scheduler = sd.sd_noise_scheduler(prediction_type(path, found, options))
    return _sd_model(unet, vae, encoders, tokenizers, scheduler, str(path))


def _under(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: t for k, t in state.items() if k.startswith(prefix)}


def read_tensors(path: Path) -> dict[str, Any]:
    if _is_safetensors(path):
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(str(path))
    try:
        return read_pickled(path)
    except detect.NotAModel as exc:
        raise ConfigError(problem(KEY, EXPECTED, raw(f'"{path}": {exc.found}'), exc.hint)) from None


def empty(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """`cls(*args, **kwargs)` with its weights on the meta device (nothing initialised)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return cls(*args, **kwargs)


def assemble(module: Any, state: dict[str, Any], what: str) -> Any:
    """`module` (made by `empty`) with every tensor of `state` assigned; ConfigError when some are
    missing or left over (a damaged file, or a layout this does not read)."""
    return assemble_as(module, state, what, KEY)


def assemble_as(module: Any, state: dict[str, Any], what: str, key: str) -> Any:
    """`assemble`, the ConfigError naming `key`."""
    result = module.load_state_dict(state, strict=False, assign=True)
    unexpected = [k for k in result.unexpected_keys if not k.endswith(("position_ids", "logit_scale"))]
    missing = [name for name, p in [*module.named_parameters(), *module.named_buffers()] if p.is_meta]
    if missing or unexpected:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise ConfigError(
            problem(
                key,
                f"a checkpoint whose {what} tensors match its detected architecture",
                raw(f"{len(missing)} missing and {len(unexpected)} unexpected tensors ({detail})"),
                "the file is damaged or of a layout this does not read; re-download or re-convert it",
            )
        )
    module.eval()
    return module


def text_encoder(spec: detect.TextEncoderSpec, state: dict[str, Any], tokenizer: Any) -> Any:
    """A CLIP text encoder (with projection for SDXL's second) from its LDM tensors; the token ids
    are the tokenizer's (the pooled output is read at the end-of-text token)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = CLIPTextConfig(**spec.config, **ids, pad_token_id=tokenizer.pad_token_id)
    module = empty(CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel, config)
    part = _under(state, spec.prefix)
    if spec.layout == "clip":
        converted = convert_ldm_clip_checkpoint(part)
    else:
        if spec.unused_last_block:
            last = f"{spec.prefix}transformer.resblocks.{spec.config['num_hidden_layers']}."
            part = {k: t for k, t in part.items() if not k.startswith(last) and not k.endswith("text_projection")}
        linear = spec.prefix + detect.LINEAR_PROJECTION
        if linear in part:  # OpenCLIP's layout is the transpose, which the conversion expects
            part[spec.prefix + "text_projection"] = part.pop(linear).T
        converted = convert_open_clip_checkpoint(module, part, prefix=spec.prefix)
    return assemble(module, _like_module(converted, module), "text encoder")


def _like_module(converted: dict[str, Any], module: Any) -> dict[str, Any]:
    """Keys with or without the ``text_model.`` level, as `module` names them: transformers >= 5.6
    flattened CLIPTextModel (the projection model keeps the level); the conversion writes it, and a
    file saved from a flattened model lacks it."""
    level = "text_model."
    wants = any(k.startswith(level) for k in module.state_dict())
    out = {}
    for k, t in converted.items():
        bare = k[len(level) :] if k.startswith(level) else k
        out[level + bare if wants and bare != "text_projection.weight" else bare] = t
    return out


# -- tokenizers -----------------------------------------------------------------------------------------
def tokenizer_origin(found: detect.Detected, index: int, options: SourceOptions, key: str = KEY) -> tuple[str, Any]:
    """Where the tokenizer of text encoder `index` comes from; a single file holds none.

    ("builtin", None) for a vocabulary of the built-in model's size (files made from it);
    otherwise CLIP's BPE tokenizer from where sd-scripts keeps it: ("folder", path) in
    tokenizer_cache_dir (sd-scripts' layout), ("cached", (repo, subfolder)) in the Hugging Face
    cache, or ("hub", (repo, subfolder)) when downloads are allowed."""
    spec = found.text_encoders[index]
    vocab = spec.config["vocab_size"]
    if vocab == builtin_vocab_size():
        return "builtin", None
    if vocab != CLIP_VOCAB:
        raise ConfigError(
            problem(
                key,
                f"text encoders with CLIP's vocabulary ({CLIP_VOCAB:,} tokens) or the built-in model's "
                f"({builtin_vocab_size()})",
                raw(f"{vocab:,} tokens in {spec.prefix.rstrip('.')}"),
                "no tokenizer is known for this vocabulary; convert the model to a diffusers folder with its tokenizer",
            )
        )
    repo, subfolder = CLIP_TOKENIZERS[(found.family, index)]
    if options.tokenizer_cache_dir:
        local = Path(options.tokenizer_cache_dir) / repo.replace("/", "_")
        if local.is_dir():
            return "folder", local
    if _in_hub_cache(repo, subfolder):
        return "cached", (repo, subfolder)
    if options.allow_download:
        return "hub", (repo, subfolder)
    raise ConfigError(_no_tokenizer(found, repo, options, key))


def _no_tokenizer(found: detect.Detected, repo: str, options: SourceOptions, key: str) -> Any:
    folder = repo.replace("/", "_")
    if options.tokenizer_cache_dir:
        return problem(
            "tokenizer_cache_dir",
            f"a folder holding {folder}/ (the tokenizer sd-scripts saves there)",
            options.tokenizer_cache_dir,
            f"a {found.family_name} single file holds no tokenizer: put {repo}'s tokenizer files in "
            f"{Path(options.tokenizer_cache_dir) / folder}, or allow the download (allow_download = true or "
            "--download)",
        )
    return problem(
        key,
        f"a {found.family_name} checkpoint with a tokenizer available offline",
        raw(f"no tokenizer for its text encoder ({repo}'s is neither in tokenizer_cache_dir nor in the Hub cache)"),
        "a single file holds no tokenizer: set tokenizer_cache_dir to a folder holding "
        f"{folder}/ (sd-scripts' layout; it saves the tokenizer there on a run with network), or allow the "
        "download (allow_download = true in [lora_sched], or `lora-sched train --download`)",
    )


def _in_hub_cache(repo: str, subfolder: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    prefix = f"{subfolder}/" if subfolder else ""
    return all(isinstance(try_to_load_from_cache(repo, prefix + name), str) for name in ("vocab.json", "merges.txt"))


@lru_cache(maxsize=1)
def builtin_vocab_size() -> int:
    from lora_sched.train.model import builtin_tokenizer

    return len(builtin_tokenizer())


def checked_tokenizer(found: detect.Detected, index: int, options: SourceOptions, key: str = KEY) -> Any:
    """The tokenizer of text encoder `index` (see tokenizer_origin); SDXL's second pads with "!"
    (token 0), as diffusers' SDXL tokenizer_2 and sd-scripts do."""
    from transformers import CLIPTokenizer

    from lora_sched.train.model import MAX_TOKENS, builtin_tokenizer

    origin, where = tokenizer_origin(found, index, options, key)
    sdxl_second = (found.family, index) == ("sdxl", 1)
    if origin == "builtin":
        return builtin_tokenizer(pad_token="!") if sdxl_second else builtin_tokenizer()
    if origin == "folder":
        return CLIPTokenizer.from_pretrained(str(where), local_files_only=True)
    repo, subfolder = where
    tokenizer = CLIPTokenizer.from_pretrained(
        repo, subfolder=subfolder or "", local_files_only=origin == "cached", model_max_length=MAX_TOKENS
    )
    if sdxl_second:
        tokenizer.pad_token = "!"
    if options.tokenizer_cache_dir:  # as sd-scripts: keep it for offline runs
        tokenizer.save_pretrained(str(Path(options.tokenizer_cache_dir) / repo.replace("/", "_")))
    return tokenizer


# -- prediction type ------------------------------------------------------------------------------------
def prediction_type(path: Path, found: detect.Detected, options: SourceOptions) -> str:
    """The prediction type, v_prediction or epsilon. No weight tells a v-prediction model (SD 2.x 768-v, v-pred SDXL
    fine-tunes) from an epsilon one; sd-scripts trains v with v_parameterization = true. Without it,
    the markers inference tools read decide: a ``v_pred`` tensor (ComfyUI) or a config next to the
    file, ``NAME.yaml`` with ``parameterization: "v"`` (the SD 2.x v-model config A1111 reads)."""
    if options.v_parameterization:
        return "v_prediction"
    marker = v_marker(path, found)
    if marker:
        log.warning(
            f"notice: {marker} marks a v-prediction model: training with v-prediction "
            "(sd-scripts needs v_parameterization = true for it)",
        )
        return "v_prediction"
    if found.family == "sd2":
        log.warning(
            "notice: SD 2.x checkpoint trained with epsilon-prediction; for a 768-v model set "
            "v_parameterization = true",
        )
    return "epsilon"


def v_marker(path: Path, found: detect.Detected) -> str | None:
    """What marks the file as v-prediction, or None."""
    if found.v_pred_marker:
        return f"the tensor {detect.V_PRED_MARKER!r} in {path.name}"
    config = path.with_suffix(".yaml")
    if not config.is_file():
        return None
    try:
        import yaml

        params = yaml.safe_load(config.read_text(encoding="utf-8"))["model"]["params"]
        return f"{config.name} (parameterization: v)" if params.get("parameterization") == "v" else None
    except Exception:  # a config that does not parse marks nothing
        return None


def load_model(name: str, key: str = "pretrained_model_name_or_path", options: Any = None) -> Any:
    """The SDModel of a built-in model, a diffusers folder or a single-file checkpoint; a Hub id only
    with options.allow_download. Anything else is a ConfigError."""
    options = options or SourceOptions()
    model = load_source(check_source(name, options, key), options, key)
    if options.vae:
        model.vae = load_vae(Path(options.vae), model.vae.config)
    return model


def check_vae(path: str | None) -> None:
    """sd-scripts' --vae: an existing VAE file (.safetensors / .ckpt, the original layout, with or
    without the ``first_stage_model.`` prefix) or a diffusers VAE folder; refused before anything is
    built otherwise."""
    if path is None:
        return
    found = Path(path)
    if found.is_file() or (found / "config.json").is_file():
        return
    raise ConfigError(
        problem(
            "vae",
            "a VAE file (.safetensors, .ckpt) or a diffusers VAE folder (with config.json) on this machine",
            path,
            "no such file or folder here; give the VAE's path on this machine, or remove vae to train with the "
            "model's own VAE",
        )
    )


def load_vae(path: Path, config: Any) -> Any:
    """The VAE sd-scripts' --vae names, in the model's VAE architecture (`config`): a diffusers
    folder as it is, a file's weights mapped with diffusers' conversion of the original layout."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if path.is_dir():
        return AutoencoderKL.from_pretrained(path, local_files_only=True).float()
    state = read_tensors(path)
    try:
        converted = convert_ldm_vae_checkpoint(state, dict(config))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            problem(
                "vae",
                "a VAE in the original (LDM) layout of the model's architecture",
                raw(f'"{path}": {type(exc).__name__}: {exc}'),
                "is it a VAE of this model family (an SDXL VAE for SDXL, an SD VAE for SD 1.x / 2.x)?",
            )
        ) from None
    try:
        return assemble_as(empty(AutoencoderKL, **dict(config)), converted, "VAE", "vae").float()
    except RuntimeError as exc:  # load_state_dict: a tensor of another shape (another VAE architecture)
        raise ConfigError(
            problem(
                "vae",
                "a VAE of the model's architecture",
                raw(f'"{path}": {str(exc).splitlines()[-1].strip()}'),
                "is it a VAE of this model family (an SDXL VAE for SDXL, an SD VAE for SD 1.x / 2.x)?",
            )
        ) from None


def check_model_source(name: str, key: str = "pretrained_model_name_or_path", options: Any = None) -> str:
    """Fail early, before anything is written, when the model cannot be loaded; the name to load
    (a Hub id becomes its downloaded folder)."""
    source = check_source(name, options or SourceOptions(), key)
    return name if source.path is None else str(source.path)
