"""The kohya key table (generated from the tools' sources) and the unknown-key policy built on it.

Known but unused keys load with one notice; a slip of a known key is an error with did-you-mean;
any other key is a warning (sd-scripts drops it silently), an error with `validate --strict`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lora_sched.cli import main
from lora_sched.config import loads_config
from lora_sched.config.keys import KEY_BY_NAME
from lora_sched.config.kohya_keys import DATA_FILE, is_kohya_key, kohya_key, kohya_key_names, sources
from lora_sched.config.learning_keys import TRAIN_READS, learning_key
from lora_sched.config.writer import to_document
from lora_sched.errors import ConfigError, near_miss

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_kohya_keys", ROOT / "tools" / "gen_kohya_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


# ---- the data file --------------------------------------------------------------------------
def test_data_file_is_the_generators_output_format() -> None:
    text = Path(DATA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    assert GEN.render(data) == text  # byte for byte: the file is the generator's rendering
    assert data["format"] == GEN.FORMAT and data["generated_by"] == "tools/gen_kohya_keys.py"
    assert list(data["sources"]) == GEN.ORDER  # every repository read, with a full commit id
    assert all(len(c) == 40 and int(c, 16) >= 0 for c in data["sources"].values())
    for repo, path, kind in data["files"]:
        assert repo in GEN.MARKERS and kind in ("argparse", "dataset_config", "written") and path
    for name, entry in data["keys"].items():
        assert entry["in"] and all(0 <= i < len(data["files"]) for i in entry["in"]), name
        assert set(entry) <= {"in", *GEN.ARGPARSE_FIELDS}, name


def test_table_knows_each_tools_keys() -> None:
    lr = kohya_key("learning_rate")
    assert lr is not None and lr["default"] == 2e-6 and lr["type"] == "float"
    assert "kohya-ss/sd-scripts:library/train_util.py" in lr["sources"]
    te = kohya_key("text_encoder_lr")
    assert te is not None and te["nargs"] == "*" and "kohya-ss/sd-scripts:train_network.py" in te["sources"]
    assert kohya_key("max_train_steps")["default"] == 1600
    assert kohya_key("lr_warmup_steps")["type"] == "int_or_float"
    # written by the front ends, read by no script
    assert kohya_key("epoch")["sources"] == [
        "bmaltais/kohya_ss:kohya_gui/dreambooth_gui.py",
        "bmaltais/kohya_ss:kohya_gui/lora_gui.py",
        "bmaltais/kohya_ss:kohya_gui/textual_inversion_gui.py",
    ]
    assert is_kohya_key("noise_offset_type")
    assert "hollowstrawberry/kohya-colab:Lora_Trainer_XL.ipynb" in kohya_key("max_token_length")["sources"]
    assert any(s.startswith("kohya-ss/musubi-tuner:") for s in kohya_key("timestep_sampling")["sources"])
    assert any(s.endswith("config_util.py") for s in kohya_key("num_repeats")["sources"])  # dataset config
    assert kohya_key("not_a_kohya_key") is None and not is_kohya_key("not_a_kohya_key")
    assert sources()["kohya-ss/sd-scripts"] == json.loads(Path(DATA_FILE).read_text())["sources"]["kohya-ss/sd-scripts"]


def test_every_key_in_the_data_loads_as_known() -> None:
    unused = sorted(kohya_key_names() - KEY_BY_NAME.keys())
    assert len(unused) > 300  # the data holds hundreds of names lora_sched does not read
    text = "[training_arguments]\n" + "".join(f"{name} = 1\n" for name in unused)
    cfg = loads_config(text, "all.toml")
    (learning,) = [w for w in cfg.warnings if "change what is learned" in w.found]
    (others,) = [w for w in cfg.warnings if w is not learning]
    assert {others.severity, learning.severity} == {"notice"}
    # train reads log_with / logging_dir / ...: no notice calls them unused
    read = [name for name in unused if name in TRAIN_READS]
    changing = [name for name in unused if learning_key(name, 1, {n: 1 for n in unused})]
    assert read and changing
    assert learning.found == (
        f"{len(changing)} sd-scripts option(s) that change what is learned, which lora-sched train does not "
        "apply: " + ", ".join(changing)
    )
    assert others.found.startswith(f"{len(unused) - len(read) - len(changing)} sd-scripts option(s) it does not use")
    assert not set(read) & set(others.found.split(": ")[1].split(", "))
    assert set(cfg.extras) == set(unused)


# ---- the generator, on a miniature of each repository ---------------------------------------
def _commit(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    return git("rev-parse", "HEAD")


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_generator_reads_argparse_schemas_and_writers(tmp_path: Path) -> None:
    sd = _write(
        tmp_path / "sd",
        {
            "library/train_util.py": (
                "def add_training_arguments(parser):\n"
                "    parser.add_argument('--learning_rate', type=float, default=2.0e-6, help='lr')\n"
                "    parser.add_argument('--lr_warmup_steps', type=int_or_float, default=0)\n"
                "    parser.add_argument('--mixed_precision', choices=['no', 'fp16'], default='no')\n"
                "    parser.add_argument('--save-state', action='store_true')\n"
                "def helper(parser):\n"
                "    parser.add_argument('--not_an_option_helper')\n"
            ),
            "library/config_util.py": (
                "class ConfigSanitizer:\n"
                "    SUBSET_SCHEMA = {'num_repeats': int, Required('image_dir'): str}\n"
                "    OTHER = {'not_a_key': 1}\n"
            ),
            "train_network.py": (
                "def setup_parser():\n"
                "    p.add_argument('--text_encoder_lr', type=float, default=None, nargs='*')\n"
                "    p.add_argument('--learning_rate', type=str, default='x')\n"  # a later definition
                "    p.add_argument('--x', dest='renamed', type=lambda s: s)\n"
                "    p.add_argument('positional')\n"
            ),
            "gen_img.py": "def setup_parser():\n    p.add_argument('--not_training')\n",
        },
    )
    gui = _write(
        tmp_path / "gui",
        {
            "kohya_gui/lora_gui.py": (
                "def train():\n"
                "    config_toml_data = {'epoch': int(e), 'lr_scheduler': s}\n"
                "    config_toml_data['noise_offset_type'] = t\n"
                "    other = {'not_written': 1}\n"
            )
        },
    )
    nb_code = [
        "!pip install a \\\n  b\n",
        "%cd /x\nconfig_dict = {'optimizer_arguments': {'lr_scheduler_power': p},\n"
        " 'datasets': [{'subsets': [{'num_repeats': 1}]}], 'general': {} if a else {'keep_tokens': 1}}\n",
        "this is not python\n",
    ]
    colab = _write(
        tmp_path / "colab",
        {"Lora_Trainer.ipynb": json.dumps({"cells": [{"cell_type": "code", "source": c} for c in nb_code]})},
    )
    commits = [_commit(sd), _commit(gui), _commit(colab)]
    data = GEN.build([colab, sd, gui])  # any order: recognised by layout
    assert data["sources"] == {
        "kohya-ss/sd-scripts": commits[0],
        "bmaltais/kohya_ss": commits[1],
        "hollowstrawberry/kohya-colab": commits[2],
    }
    assert data["files"] == [
        ["kohya-ss/sd-scripts", "library/config_util.py", "dataset_config"],
        ["kohya-ss/sd-scripts", "library/train_util.py", "argparse"],
        ["kohya-ss/sd-scripts", "train_network.py", "argparse"],
        ["bmaltais/kohya_ss", "kohya_gui/lora_gui.py", "written"],
        ["hollowstrawberry/kohya-colab", "Lora_Trainer.ipynb", "written"],
    ]
    assert data["keys"] == {
        "epoch": {"in": [3]},
        "image_dir": {"in": [0]},
        "keep_tokens": {"in": [4]},
        "learning_rate": {"in": [1, 2], "type": "float", "default": 2e-6},
        "lr_scheduler": {"in": [3]},
        "lr_scheduler_power": {"in": [4]},
        "lr_warmup_steps": {"in": [1], "type": "int_or_float", "default": 0},
        "mixed_precision": {"in": [1], "choices": ["no", "fp16"], "default": "no"},
        "noise_offset_type": {"in": [3]},
        "num_repeats": {"in": [0, 4]},
        "renamed": {"in": [2], "type": "lambda"},
        "save_state": {"in": [1], "action": "store_true"},
        "text_encoder_lr": {"in": [2], "type": "float", "default": None, "nargs": "*"},
    }
    out = tmp_path / "keys.json"
    assert GEN.main([str(sd), str(gui), str(colab), "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))
    assert GEN.main([str(sd), str(gui), str(colab), "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace('"epoch"', '"epochs"'))
    assert GEN.main([str(sd), str(gui), str(colab), "--output", str(out), "--check"]) == 1


def test_generator_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a checkout of any of"):
        GEN.build([tmp_path])
    _write(tmp_path / "a", {"library/train_util.py": ""})
    with pytest.raises(SystemExit, match="not a git checkout"):
        GEN.build([tmp_path / "a"])


# ---- near_miss ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "word, expected",
    [
        ("learning_rat", "learning_rate"),  # one deletion
        ("LEARNING_RATE", "learning_rate"),  # case
        ("learning-rate", "learning_rate"),  # dash for underscore
        ("lerning_rtae", "learning_rate"),  # a deletion and a swap: 2 edits in a long word
        ("max_train_stepz", "max_train_steps"),
        ("epohc", "epoch"),  # a swap of neighbours is one edit
        ("lraning_rte", None),  # 3 edits
        ("exqch", None),  # 2 edits in a short word
        ("abc", None),  # too short to call anything a slip
        ("", None),
    ],
)
def test_near_miss(word: str, expected: str | None) -> None:
    assert near_miss(word, ["learning_rate", "max_train_steps", "epoch", "abd"]) == expected


def test_near_miss_prefers_the_closest_then_the_first() -> None:
    assert near_miss("network_dimx", ["network_dims", "network_dim"]) == "network_dims"  # both 1: the first
    assert near_miss("network_dimx", ["network_dimxyz", "network_dim"]) == "network_dim"  # 1 beats 2


# ---- the policy -----------------------------------------------------------------------------
def _severities(text: str) -> dict[str, str]:
    return {p.key.split(".")[-1]: p.severity for p in loads_config(text, "c.toml").warnings}


def test_known_unused_keys_load_with_one_notice() -> None:
    cfg = loads_config("[training_arguments]\nepoch = 10\nnoise_offset_type = 'Original'\nlowram = true\n")
    [notice] = cfg.warnings
    assert notice.severity == "notice" and notice.line == 2
    assert notice.found == "3 sd-scripts option(s) it does not use: epoch, noise_offset_type, lowram"
    assert cfg.extras["noise_offset_type"] == ("training_arguments", "Original")


@pytest.mark.parametrize(
    "key, target",
    [("learning_rat", "learning_rate"), ("noise_ofset", "noise_offset"), ("Max_Train_Epochs", "max_train_epochs")],
)
def test_a_slip_of_a_known_key_is_an_error(key: str, target: str) -> None:
    with pytest.raises(ConfigError) as exc:
        loads_config(f"[optimizer_arguments]\n{key} = 3\n", "c.toml")
    [p] = exc.value.problems
    assert (p.severity, p.line, p.key) == ("error", 2, f"optimizer_arguments.{key}")
    assert p.hint == f"did you mean `{target}`? (sd-scripts would silently ignore `{key}`)"


def test_a_misspelt_schedule_key_does_not_resolve_with_the_default() -> None:
    with pytest.raises(ConfigError) as exc:
        loads_config("lr_scheduler = 'cosine'\nmax_train_stepz = 10\nlr_warmup_steps = 100\n", "c.toml")
    assert [p.key for p in exc.value.problems] == ["max_train_stepz"]  # no warmup >= run length echo


def test_any_other_unknown_key_is_a_warning_kept_for_export() -> None:
    cfg = loads_config("[training_arguments]\nmy_own_flag = true\nmax_train_steps = 10\n", "c.toml")
    [p] = cfg.warnings
    assert (p.severity, p.line, p.key) == ("warning", 2, "training_arguments.my_own_flag")
    assert p.found == 'unknown key "my_own_flag"'
    assert "sd-scripts ignores it" in p.hint
    assert cfg.extras["my_own_flag"] == ("training_arguments", True)
    assert to_document(cfg)["training_arguments"]["my_own_flag"] is True


def test_a_schedule_argument_written_as_a_key_says_where_it_goes() -> None:
    cfg = loads_config("lr_scheduler = 'cosine_with_restarts'\nnum_cycles = 3\n", "c.toml")
    [p] = cfg.warnings
    assert p.severity == "warning" and "put it in lr_scheduler_args" in p.hint


def test_strict_turns_the_unknown_key_warning_into_an_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[training_arguments]\nmy_own_flag = true\n")
    assert main(["validate", str(path)]) == 0
    assert f"{path}:2: warning: training_arguments.my_own_flag" in capsys.readouterr().err
    assert main(["validate", "--strict", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: training_arguments.my_own_flag: expected" in err and "--strict: 1 warning(s)" in err


def test_the_same_key_twice_with_the_same_value_is_a_notice() -> None:
    cfg = loads_config("[a]\nmax_train_steps = 10\n[b]\nmax_train_steps = 10\n", "c.toml")
    [p] = cfg.warnings
    assert (p.severity, p.line, p.key) == ("notice", 4, "b.max_train_steps")
    assert p.found == "a second `max_train_steps` with the same value; the first is a.max_train_steps at line 2"
    assert cfg.values["max_train_steps"] == 10 and cfg.sections["max_train_steps"] == "a"


@pytest.mark.parametrize("second", ["11", "10.0", "'10'", "[10]"])
def test_the_same_key_twice_with_different_values_is_an_error(second: str) -> None:
    with pytest.raises(ConfigError) as exc:
        loads_config(f"[a]\nmax_train_steps = 10\n[b]\nmax_train_steps = {second}\n", "c.toml")
    [p] = exc.value.problems
    assert (p.severity, p.line) == ("error", 4) and "kohya silently keeps the last one" in p.hint


def test_the_same_list_twice_is_a_notice() -> None:
    text = "[a]\noptimizer_args = ['weight_decay=0.1']\n[b]\noptimizer_args = ['weight_decay=0.1']\n"
    assert [p.severity for p in loads_config(text).warnings] == ["notice"]


def test_a_clean_config_never_reads_the_table() -> None:
    code = (
        "import lora_sched.config.kohya_keys as k; from lora_sched.config import load_config;"
        "load_config('configs/quickstart.toml'); print(k._DATA is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
