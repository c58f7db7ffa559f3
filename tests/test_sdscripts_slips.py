"""Values real sd-scripts files hold that sd-scripts runs (or refuses), read as sd-scripts reads them.

Every fact is checked against kohya-ss/sd-scripts at commit 48d368fa557731ad0488c07304dfeba8c07910eb
(file:line below). A config file's values skip argparse's ``type=``: read_config_from_file puts them
in the namespace before parse_args (library/train_util.py:4760-4761), so the training code gets each
value as TOML typed it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the package depends on tomli there
    import tomli as tomllib

from realworld_support import manifest, png_bytes, relocate

from lora_sched.config import load_config, loads_config
from lora_sched.config.keys import KEY_BY_NAME
from lora_sched.config.kohya_keys import kohya_key
from lora_sched.errors import ConfigError
from lora_sched.torch.export import export_kohya

ROOT = Path(__file__).parent.parent
SD_SCRIPTS = "48d368fa557731ad0488c07304dfeba8c07910eb"
RUN = "max_train_steps = 100\n"


def _errors(text: str) -> list:
    with pytest.raises(ConfigError) as exc:
        loads_config(text, "c.toml")
    return [p for p in exc.value.problems if p.severity == "error"]


def _flat(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tomllib.loads(text).items():
        out.update(value if isinstance(value, dict) and key != "lr_scheduler_args" else {key: value})
    return out


def sd_scripts_resolution(value: Any) -> tuple[int, int]:
    """prepare_dataset_args, library/train_util.py:5409-5415: raises where sd-scripts stops."""
    size = tuple([int(r) for r in value.split(",")])  # an int has no split: AttributeError
    if len(size) == 1:
        size = (size[0], size[0])
    assert len(size) == 2
    return size  # type: ignore[return-value]


# ---- 1. resolution ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, held", [('"512"', 512), ('"512,768"', "512,768"), ('" 512 , 768 "', " 512 , 768 ")])
def test_resolution_text_is_what_sd_scripts_reads(text: str, held: Any) -> None:
    """train_util.py:4561-4565 declares resolution type=str; :5410 splits it at ","."""
    cfg = loads_config(f"{RUN}resolution = {text}\n", "c.toml")
    assert cfg.warnings == [] and cfg.values["resolution"] == held
    exported = _flat(export_kohya(cfg))["resolution"]
    assert exported == tomllib.loads(f"r = {text}")["r"]  # written back as it was
    assert sd_scripts_resolution(exported) == sd_scripts_resolution(tomllib.loads(f"r = {text}")["r"])


def test_an_int_resolution_is_lora_scheds_form_and_the_export_writes_text() -> None:
    """An int crashes sd-scripts' `args.resolution.split(",")` (train_util.py:5410); it is lora-sched's own
    documented form (configs/quickstart.toml writes one), so the export writes the text sd-scripts reads."""
    with pytest.raises(AttributeError):
        sd_scripts_resolution(512)
    cfg = loads_config(f"{RUN}resolution = 512\n", "c.toml")
    assert cfg.warnings == [] and cfg.values["resolution"] == 512
    exported = _flat(export_kohya(cfg))["resolution"]
    assert exported == "512" and sd_scripts_resolution(exported) == (512, 512)


@pytest.mark.parametrize("text, hint", [('"512x512"', 'write "512" or "512,768"'), ("512.0", 'write "512"')])
def test_a_resolution_sd_scripts_cannot_read_is_an_error_with_the_text_to_write(text: str, hint: str) -> None:
    [p] = _errors(f"{RUN}resolution = {text}\n")
    assert (p.key, p.line, p.hint) == ("resolution", 2, hint)


def test_the_json_schema_takes_a_single_side_as_text() -> None:
    pattern = KEY_BY_NAME["resolution"].field.json_schema()["anyOf"][1]["pattern"]
    assert all(re.match(pattern, s) for s in ("512", "512,768", " 512 , 768 "))
    assert not any(re.match(pattern, s) for s in ("512x512", "512,", ""))


def test_a_dataset_config_takes_an_int_resolution_and_refuses_text(tmp_path: Path) -> None:
    """config_util.py:244: a dataset config's resolution is an int or [w, h] (Schema(int) refuses text)."""
    data = tmp_path / "img"
    data.mkdir()
    (data / "a.png").write_bytes(png_bytes())

    def problems(resolution: str) -> list:
        dataset = tmp_path / "d.toml"
        dataset.write_text(
            f"[general]\nresolution = {resolution}\n"
            f'[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{data.as_posix()}"\n'
        )
        text = f'{RUN}resolution = "512"\ndataset_config = "{dataset.as_posix()}"\n'
        try:
            cfg = loads_config(text, "c.toml")
        except ConfigError as exc:
            return [p for p in exc.problems if p.severity == "error"]
        return [p for p in cfg.warnings if p.severity == "error"]

    assert problems("512") == [] and problems("[512, 768]") == []
    [p] = problems('"512"')
    assert (p.key, p.line) == ("general.resolution", 2)


# ---- 2. resume = false ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["false", '""'])
def test_resume_false_or_empty_is_no_resume(text: str) -> None:
    """train_util.py:4773 `if not args.resume: return` (and train_network.py:1261)."""
    cfg = loads_config(f"{RUN}resume = {text}\n", "c.toml")
    assert cfg.values["resume"] is None and cfg.warnings == []


def test_resume_true_is_an_error_saying_what_means_none() -> None:
    [p] = _errors(f"{RUN}resume = true\n")
    assert (p.key, p.line) == ("resume", 2) and 'false or ""' in p.hint


# ---- 3. lr_scheduler_type = "" -------------------------------------------------------------------
def test_an_empty_lr_scheduler_type_is_no_custom_class() -> None:
    """sd-scripts' own default is "" (train_util.py:3731) and it tests `if args.lr_scheduler_type:` (:5300)."""
    cfg = loads_config(f'{RUN}lr_scheduler = "cosine"\nlr_scheduler_type = ""\n', "c.toml")
    assert cfg.values["lr_scheduler_type"] is None and cfg.scheduler_type is None
    assert cfg.resolve().name == "cosine" and cfg.warnings == []


# ---- 4. max_grad_norm = "1.0" --------------------------------------------------------------------
def test_a_quoted_max_grad_norm_is_read_as_torch_reads_it() -> None:
    """train_network.py:1448-1450 passes the text to accelerator.clip_grad_norm_; torch's clip_grad_norm_
    converts it with float()."""
    cfg = loads_config(f'{RUN}max_grad_norm = "1.0"\n', "c.toml")
    assert cfg.values["max_grad_norm"] == 1.0
    [notice] = cfg.warnings
    assert (notice.severity, notice.key, notice.line) == ("notice", "max_grad_norm", 2)
    assert _flat(export_kohya(cfg))["max_grad_norm"] == 1.0


@pytest.mark.parametrize("text", ['"0"', '" 0.0 "'])
def test_a_quoted_zero_max_grad_norm_is_an_error(text: str) -> None:
    """`"0" != 0.0` is true (train_network.py:1448): sd-scripts clips at norm 0, zeroing every gradient."""
    [p] = _errors(f"{RUN}max_grad_norm = {text}\n")
    assert (p.key, p.line) == ("max_grad_norm", 2) and "every gradient becomes 0" in p.hint


def test_a_quoted_max_grad_norm_out_of_bounds_is_an_error() -> None:
    [p] = _errors(f'{RUN}max_grad_norm = "-1"\n')
    assert (p.key, p.line) == ("max_grad_norm", 2)


# ---- 5. the export writes sd-scripts' declared types ---------------------------------------------
def test_the_export_writes_whole_bucket_sizes_as_ints() -> None:
    cfg = loads_config(f"{RUN}min_bucket_reso = 256.0\nmax_bucket_reso = 2048\nbucket_reso_steps = 64.0\n", "c.toml")
    flat = _flat(export_kohya(cfg))
    for key, value in {"min_bucket_reso": 256, "max_bucket_reso": 2048, "bucket_reso_steps": 64}.items():
        assert flat[key] == value and type(flat[key]) is int, key


# The types ConfigSanitizer checks the argument namespace against (train_network.py:517 builds
# ConfigSanitizer(True, True, args.masked_loss, True); config_util.py:346-368 merges the general schema
# with ARGPARSE_SPECIFIC_SCHEMA, the nullable names and the renamed ones; BlueprintGenerator.generate
# validates the namespace at config_util.py:410, with or without a dataset_config), copied from
# library/config_util.py at sd-scripts 48d368fa. voluptuous checks a type with isinstance (a bool passes
# int, an int fails float) and its Object skips attributes that are None.
_NUM = (float, int)
SANITIZER_TYPES: dict[str, Any] = {
    # SUBSET_ASCENDABLE_SCHEMA, config_util.py:183-201
    "color_aug": bool,
    "face_crop_aug_range": "twodim float",
    "flip_aug": bool,
    "num_repeats": int,
    "random_crop": bool,
    "shuffle_caption": bool,
    "keep_tokens": int,
    "keep_tokens_separator": str,
    "secondary_separator": str,
    "caption_separator": str,
    "enable_wildcard": bool,
    "token_warmup_min": int,
    "token_warmup_step": _NUM,
    "caption_prefix": str,
    "caption_suffix": str,
    "custom_attributes": dict,
    "resize_interpolation": str,
    # DO_SUBSET_ASCENDABLE_SCHEMA, config_util.py:203-207
    "caption_dropout_every_n_epochs": int,
    "caption_dropout_rate": _NUM,
    "caption_tag_dropout_rate": _NUM,
    # DB_SUBSET_ASCENDABLE_SCHEMA, config_util.py:209-213 (CN's, :225-228, has the same two of them)
    "caption_extension": str,
    "class_tokens": str,
    "cache_info": bool,
    # DATASET_ASCENDABLE_SCHEMA, config_util.py:235-247
    "batch_size": int,
    "bucket_no_upscale": bool,
    "bucket_reso_steps": int,
    "enable_bucket": bool,
    "max_bucket_reso": int,
    "min_bucket_reso": int,
    "validation_seed": int,
    "validation_split": float,
    "resolution": "scalar or twodim int",
    "network_multiplier": float,
    # ARGPARSE_SPECIFIC_SCHEMA, config_util.py:250-254
    "debug_dataset": bool,
    "max_token_length": int,
    "prior_loss_weight": _NUM,
    # ARGPARSE_OPTNAME_TO_CONFIG_OPTNAME, config_util.py:261-264
    "train_batch_size": int,
    "dataset_repeats": int,
}


def sanitizer_refusals(flat: dict[str, Any]) -> list[str]:
    """The keys sd-scripts' sanitizer refuses, after prepare_dataset_args (train_util.py:5409-5421)
    turned resolution and face_crop_aug_range into tuples."""
    refused = []
    for key, kind in SANITIZER_TYPES.items():
        value = flat.get(key)
        if value is None:
            continue
        if kind == "scalar or twodim int":
            value = sd_scripts_resolution(value)  # raises where sd-scripts stops before the sanitizer
            ok = len(value) == 2 and all(isinstance(v, int) for v in value)
        elif kind == "twodim float":
            value = tuple(float(r) for r in value.split(","))
            ok = len(value) == 2
        else:
            ok = isinstance(value, kind)
        if not ok:
            refused.append(f"{key} = {value!r}")
    return refused


def _corpus() -> list:
    data = {"kohya_colab_sd15.toml": 100, "kohya_colab_xl.toml": 60}  # as tests/test_config_cli.py
    cases = [
        pytest.param(("config", p, data.get(p.name)), id=str(p.relative_to(ROOT)))
        for p in sorted((ROOT / "configs").rglob("*.toml"))
    ]
    cases += [pytest.param(("realworld", e, None), id=e["name"]) for e in manifest()]
    return cases


@pytest.mark.parametrize("case", _corpus())
def test_every_corpus_export_passes_sd_scripts_declared_types(case: tuple, tmp_path: Path) -> None:
    kind, item, samples = case
    if kind == "config":
        cfg = load_config(item, data={"samples_per_epoch": samples} if samples else None)
    else:
        config, dataset = relocate(item, tmp_path)
        cfg = load_config(config, data={"dataset_config": str(dataset)} if dataset else None)
    flat = _flat(export_kohya(cfg))
    assert sanitizer_refusals(flat) == []
    # and every key sd-scripts' argparse declares type=int holds an int (kohya_keys.json, from its source)
    for key, value in flat.items():
        record = kohya_key(key) or {}
        if record.get("type") == "int" and not record.get("nargs") and value is not None:
            assert isinstance(value, int), f"{key} = {value!r}"


def test_the_sanitizer_table_refuses_what_the_old_export_wrote() -> None:
    assert sanitizer_refusals({"min_bucket_reso": 256.0, "bucket_reso_steps": 64}) == ["min_bucket_reso = 256.0"]
    assert sanitizer_refusals({"validation_split": 0, "caption_dropout_rate": 0}) == ["validation_split = 0"]
    assert sanitizer_refusals({"resolution": "512,768", "face_crop_aug_range": "2.0,4.0"}) == []


# ---- 6. a LoRA_Easy class with a warmup ---------------------------------------------------------
@pytest.mark.parametrize(
    "module, name",
    [("RexAnnealingWarmRestarts", "RexAnnealingWarmRestarts"), ("CustomOptimizers", "CosineAnnealingWarmRestarts")],
)
def test_a_lora_easy_class_with_a_warmup_is_a_warning(module: str, name: str) -> None:
    """A LoRA_Easy class is a custom class to sd-scripts: get_scheduler_fix builds it and returns it through
    wrap_check_needless_num_warmup_steps (train_util.py:5300-5311), which raises on a warmup (:5294-5296)."""
    text = (
        f"{RUN}lr_warmup_steps = 10\n"
        f'lr_scheduler_type = "LoraEasyCustomOptimizer.{module}.{name}"\n'
        'lr_scheduler_args = ["gamma=0.9", "first_cycle_max_steps=50"]\n'
    )
    cfg = loads_config(text, "c.toml")
    [warning] = [p for p in cfg.warnings if p.severity == "warning"]
    assert (warning.key, warning.line) == ("lr_warmup_steps", 2)
    assert warning.expected.startswith(f"no warmup with LoRA_Easy's {name}")
    assert '"warmup_steps=10"' in warning.hint
    assert cfg.resolve().warmup == 10  # lora-sched still trains it


def test_a_lora_easy_class_with_its_own_warmup_is_silent() -> None:
    text = (
        f"{RUN}lr_scheduler_type = "
        '"LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"\n'
        'lr_scheduler_args = ["gamma=0.9", "first_cycle_max_steps=50", "warmup_steps=10"]\n'
    )
    assert [p.severity for p in loads_config(text, "c.toml").warnings] == ["notice"]


# ---- 7. a key twice in one table ----------------------------------------------------------------
@pytest.mark.parametrize(
    "text, key, line, first",
    [
        ("[a]\nlearning_rate = 1e-4\nlearning_rate = 2e-4\n", "a.learning_rate", 3, "the first is at line 2"),
        ("seed = 1\nseed = 2\n", "seed", 2, "the first is at line 1"),
        (
            '[o]\nlr_scheduler_args = ["a=1"]\nlr_scheduler_args = [\n  "b=2",\n]\n',
            "o.lr_scheduler_args",
            3,  # tomllib points past the value, two lines down
            "the first is at line 2",
        ),
        ("[b]\nx = 1\nx.y = 2\n", "b.x.y", 3, "under `x`, which line 2 sets to a value"),
    ],
)
def test_a_key_twice_in_one_table_is_named(text: str, key: str, line: int, first: str) -> None:
    [p] = _errors(text)
    assert (p.key, p.line, p.file) == (key, line, "c.toml")
    assert first in p.found and "overwrite" not in p.found
