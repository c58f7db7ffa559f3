"""Real kohya configs (tests/realworld: files the kohya_ss GUI, kohya-colab and LoRA_Easy write),
pointed at the built-in model and data: `train` either applies every option they set or refuses
before anything is built, naming each option it would not apply.

Only the keys that name the model, the data, the output and the run length are replaced (the files
name models and folders of their authors' machines); every other option is the file's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
import tomllib
from realworld_support import flat
from train_support import run_cli

from lora_sched.api import load_config
from lora_sched.config.keys import KEY_BY_NAME
from lora_sched.config.learning_keys import learning_key
from lora_sched.errors import ConfigError
from lora_sched.train.loop import train
from lora_sched.train.plan import plan_run

CORPUS = Path(__file__).parent / "realworld"
CONFIGS = sorted(p for p in CORPUS.glob("*.toml") if not p.name.endswith(".dataset.toml"))

#: What points a file at this machine: the model, the data, the output, a short run.
REPLACED = {
    "pretrained_model_name_or_path",
    "train_data_dir",
    "reg_data_dir",
    "dataset_config",
    "output_dir",
    "max_train_steps",
    "max_train_epochs",
    "resolution",
    "sample_prompts",
    "logging_dir",
    "resume",
}


def _flat(path: Path) -> dict:
    return flat(tomllib.loads(path.read_text(encoding="utf-8")))


def _pointed_here(path: Path, tmp_path: Path, steps: int = 1000) -> tuple[Path, dict]:
    """The file's options with the model, data, output and run length replaced (SDXL files get the
    built-in SDXL model); a run of `steps` steps (a short one has no warmup)."""
    flat = _flat(path)
    sdxl = "sdxl" in path.name or bool(flat.get("sdxl"))
    kept = {k: v for k, v in flat.items() if k not in REPLACED}
    kept.update(
        pretrained_model_name_or_path="builtin:tiny-sdxl" if sdxl else "builtin:tiny-sd",
        train_data_dir="builtin:shapes",
        output_dir=str(tmp_path / "out"),
        max_train_steps=steps,
        resolution=64,
    )
    if steps < 1000:
        kept.pop("lr_warmup_steps", None)
    target = tmp_path / path.name
    target.write_text(tomli_w.dumps(kept), encoding="utf-8")
    return target, flat


def _learning_options(flat: dict) -> set[str]:
    """The options of the file that change what sd-scripts learns and that lora-sched does not read."""
    return {
        key
        for key, value in flat.items()
        if key not in KEY_BY_NAME and key not in REPLACED and learning_key(key, value, flat)
    }


def _refused(cfg, train_without=frozenset()) -> list:
    try:
        plan_run(cfg, train_without=train_without)
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_a_real_config_trains_as_written_or_is_refused_naming_each_option(path, tmp_path):
    config, flat = _pointed_here(path, tmp_path)
    cfg = load_config(config)
    expected = _learning_options(flat)
    refused = _refused(cfg)
    named = {p.key.split(".")[-1] for p in refused}
    if expected:
        # every option train would not apply is named, at once, at its line, with what it changes
        assert named == expected, (named, expected)
        assert all(p.line is not None and "--train-without" in p.hint for p in cfg.locate(refused))
        # told to train without them, the plan goes on (or stops at another option of the file, named)
        refused = _refused(cfg, frozenset(expected))
        named = {p.key.split(".")[-1] for p in refused}
    assert named <= set(flat), f"a refusal names an option the file does not set: {named - set(flat)}"
    assert not (tmp_path / "out").exists(), "nothing is written before the run starts"


def test_the_corpus_holds_files_that_train_and_files_that_are_refused(tmp_path):
    plain, refused = [], []
    for path in CONFIGS:
        (refused if _learning_options(_flat(path)) else plain).append(path.stem)
    assert plain and refused, (plain, refused)


#: Real files whose every option train applies, trained end to end (a few steps).
TRAINED = [
    p
    for p in CONFIGS
    if p.stem in {"colab_sd15_constant_steps", "colab_sd15_linear_two_subsets", "gui_sd15_edg_loraoptisettings"}
]


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINED, ids=[p.stem for p in TRAINED])
def test_a_real_config_whose_options_train_applies_trains(path, tmp_path):
    """Trained as the file says; a bf16 file in a process of its own (accelerate keeps one mixed
    precision per process, and this one trains without)."""
    config, flat = _pointed_here(path, tmp_path, steps=2)
    cfg = load_config(config)
    without = sorted(_learning_options(flat))
    if flat.get("mixed_precision") == "bf16":
        proc = run_cli("train", str(config), *[f"--train-without={key}" for key in without])
        assert proc.returncode == 0, proc.stderr
        output = tmp_path / "out" / f"{cfg.values['output_name']}.safetensors"
        assert len((tmp_path / "out" / "train_log.csv").read_text(encoding="utf-8").splitlines()) == 1 + 2
    else:
        result = train(cfg, train_without=frozenset(without))
        assert result.steps == 2
        output = result.output
    assert output.is_file()
    from safetensors import safe_open

    expected = {None: "float32", "float": "float32", "fp16": "float16", "bf16": "bfloat16"}[flat.get("save_precision")]
    with safe_open(str(output), "pt") as f:
        assert {str(f.get_tensor(k).dtype).removeprefix("torch.") for k in f.keys()} == {expected}  # noqa: SIM118
