"""Values as the kohya tools write them, read as sd-scripts reads them.

A text_encoder_lr list, network_train_unet_only, LyCORIS' huge ranks, quoted numbers (an error
exactly where sd-scripts would stop or misread), the GUI's lr_scheduler_num_cycles = epoch, and
sd-scripts' defaults for absent keys (learning_rate 2e-6, lr_decay_steps 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_sched.cli import main
from lora_sched.config import loads_config, preview
from lora_sched.config.writer import to_document
from lora_sched.errors import ConfigError
from lora_sched.notebook.translate import flat_to_form


def _error(text: str):
    with pytest.raises(ConfigError) as exc:
        loads_config(text, "c.toml")
    [p] = [p for p in exc.value.problems if p.severity == "error"]
    return p


# ---- text_encoder_lr as a list ----------------------------------------------------------------
def test_a_text_encoder_lr_list_gives_every_text_encoder_the_first_value() -> None:
    cfg = loads_config("learning_rate = 1e-3\ntext_encoder_lr = [1e-4, 5e-5]\n", "c.toml")
    assert cfg.group_lrs() == {"unet": 1e-3, "text_encoder": 1e-4}
    [notice] = cfg.warnings
    assert (notice.severity, notice.key, notice.line) == ("notice", "text_encoder_lr", 2)
    assert "gives every text encoder the first value, 0.0001" in notice.hint
    assert cfg.values["text_encoder_lr"] == [1e-4, 5e-5]  # kept as written: an export writes the list
    assert to_document(cfg)["optimizer_arguments"]["text_encoder_lr"] == [1e-4, 5e-5]
    m = preview.curve(cfg)
    assert preview.csv_text(cfg, m).splitlines()[1] == "0,0.001,0.0001"


def test_the_guis_list_of_one_value_twice_is_silent_and_an_empty_list_is_unset() -> None:
    cfg = loads_config("learning_rate = 1e-3\ntext_encoder_lr = [5e-5, 5e-5]\n")
    assert cfg.group_lrs()["text_encoder"] == 5e-5 and cfg.warnings == []
    assert loads_config("learning_rate = 1e-3\ntext_encoder_lr = []\n").group_lrs()["text_encoder"] == 1e-3
    assert loads_config("learning_rate = 1e-3\ntext_encoder_lr = [3]\n").values["text_encoder_lr"] == [3.0]


@pytest.mark.parametrize(
    "value, key, found",
    [("[1e-4, -1]", "text_encoder_lr[1]", "-1 (an int)"), ('["1e-4"]', "text_encoder_lr[0]", '"1e-4" (a string)')],
)
def test_a_bad_list_item_is_named(value: str, key: str, found: str) -> None:
    p = _error(f"text_encoder_lr = {value}\n")
    assert (p.key, p.line, p.found) == (key, 1, found)


def test_unet_only_and_text_encoder_only() -> None:
    gui = loads_config("learning_rate = 1e-4\nnetwork_train_unet_only = true\n")
    assert gui.group_lrs() == {"unet": 1e-4, "text_encoder": 0.0} and gui.warnings == []
    te_only = loads_config("learning_rate = 1e-4\nnetwork_train_text_encoder_only = true\n")
    assert te_only.group_lrs() == {"unet": 0.0, "text_encoder": 1e-4}
    p = _error("network_train_unet_only = true\nnetwork_train_text_encoder_only = true\n")
    assert (p.key, p.line, p.hint) == ("network_train_text_encoder_only", 2, "with both, nothing is trained")


def test_lycoris_full_rank_is_accepted() -> None:
    assert loads_config("network_dim = 100000\n").values["network_dim"] == 100000


# ---- quoted numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, key",
    [
        ('learning_rate = "1e-4"', "learning_rate"),
        ('text_encoder_lr = "1e-4"', "text_encoder_lr"),
        ('max_train_epochs = "10"', "max_train_epochs"),
        ('max_train_steps = "100"', "max_train_steps"),
        ('train_batch_size = "2"', "train_batch_size"),
        ('lr_warmup_steps = "0.1"', "lr_warmup_steps"),
        ('lr_decay_steps = "10"', "lr_decay_steps"),  # read for every schedule: always fails there
    ],
)
def test_a_quoted_number_sd_scripts_would_fail_on_is_an_error(text: str, key: str) -> None:
    p = _error(text + "\n")
    assert (p.key, p.line) == (key, 1)
    assert p.hint.startswith(f"remove the quotes: {text.split('=')[1].strip()[1:-1]}; sd-scripts passes")


def test_a_quoted_lora_sched_key_is_an_error_without_an_sd_scripts_reason() -> None:
    p = _error('[lora_sched]\nwarmup_start = "0.5"\n')
    assert (p.key, p.line, p.hint) == ("lora_sched.warmup_start", 2, "remove the quotes: 0.5")


def test_quoted_max_train_steps_is_ignored_when_epochs_set_the_run() -> None:
    text = 'max_train_steps = "100"\nmax_train_epochs = 2\ntrain_batch_size = 4\ntrain_data_dir = "builtin:shapes"\n'
    cfg = loads_config(text, "c.toml")  # epochs count only on named data (builtin:shapes here)
    [warning] = [p for p in cfg.warnings if p.severity == "warning"]
    assert (warning.key, warning.line) == ("max_train_steps", 1) and "overwrites max_train_steps" in warning.hint
    assert cfg.resolve().run_length == 16  # 2 epochs of builtin:shapes (32 samples) at 4 per step


def test_quoted_num_cycles_is_read_where_diffusers_converts_it() -> None:
    cfg = loads_config('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = "3"\nmax_train_steps = 30\n')
    assert cfg.resolve().params["num_cycles"] == 3
    [notice] = cfg.warnings
    assert notice.severity == "notice" and notice.hint.startswith("read as 3, as sd-scripts' cosine_with_restarts")
    assert cfg.values["lr_scheduler_num_cycles"] == "3"  # written back as the source had it


@pytest.mark.parametrize(
    "schedule, key",
    [
        ("polynomial", "lr_scheduler_power"),
        ("cosine_with_min_lr", "lr_scheduler_num_cycles"),  # sd-scripts halves it: text / 2 fails
        ("inverse_sqrt", "lr_scheduler_timescale"),
    ],
)
def test_a_quoted_global_key_the_schedule_uses_is_an_error(schedule: str, key: str) -> None:
    extra = "lr_scheduler_min_lr_ratio = 0.1\n" if schedule == "cosine_with_min_lr" else ""
    p = _error(f'lr_scheduler = "{schedule}"\n{key} = "2"\n{extra}max_train_steps = 30\n')
    assert (p.key, p.line) == (key, 2)
    reason = f"sd-scripts passes a quoted value on as text, and {schedule} stops with a type error on it"
    assert p.hint == f"remove the quotes: 2; {reason}"


def test_a_quoted_global_key_the_schedule_ignores_is_the_usual_warning() -> None:
    cfg = loads_config('lr_scheduler = "cosine"\nlr_scheduler_num_cycles = "3"\n')
    [p] = cfg.warnings
    # transformers' cosine counts full periods: three half-cosine decays are num_cycles = 1.5
    assert p.severity == "warning" and 'write lr_scheduler_args = ["num_cycles=1.5"]' in p.hint
    assert loads_config('lr_scheduler = "cosine"\nlr_scheduler_power = "1"\n').warnings == []  # the default


# ---- what the GUI writes by default -----------------------------------------------------------
GUI_COSINE = """\
epoch = 10
lr_scheduler = "cosine"
lr_scheduler_num_cycles = 10
lr_scheduler_power = 1.0
lr_scheduler_args = []
optimizer_args = []
learning_rate = 1e-4
text_encoder_lr = [5e-5, 5e-5]
max_train_steps = 100
"""


def test_strict_accepts_the_guis_cycles_equal_to_epoch(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gui.toml"
    path.write_text(GUI_COSINE)
    assert main(["validate", "--strict", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:3: notice: lr_scheduler_num_cycles" in err and "writes its epoch count here" in err
    other = GUI_COSINE.replace("lr_scheduler_num_cycles = 10", "lr_scheduler_num_cycles = 4")
    path.write_text(other)
    assert main(["validate", "--strict", str(path)]) == 1  # not the GUI's value: the author's, ignored


def test_the_guis_cycles_feed_a_schedule_that_takes_them() -> None:
    cfg = loads_config(GUI_COSINE.replace('"cosine"', '"cosine_with_restarts"'))
    assert cfg.resolve().params["num_cycles"] == 10


# ---- sd-scripts' defaults for absent keys ------------------------------------------------------
def test_absent_learning_rate_is_sd_scripts_default_and_polynomial_lr_end_follows() -> None:
    cfg = loads_config('lr_scheduler = "polynomial"\nmax_train_steps = 10\n')
    assert cfg.group_lrs() == {"unet": 2e-6, "text_encoder": 2e-6}
    lr = preview.curve(cfg).m * 2e-6
    # diffusers: (lr_init - lr_end) * (1 - s / T) ** power + lr_end, lr_end = 1e-7
    expected = [(2e-6 - 1e-7) * (1 - s / 10) + 1e-7 for s in range(10)]
    np.testing.assert_allclose(lr, expected, rtol=1e-12, atol=0)


def test_absent_lr_decay_steps_is_zero_as_in_sd_scripts() -> None:
    base = 'lr_scheduler = "warmup_stable_decay"\nmax_train_steps = 10\nlr_warmup_steps = 2\n'
    cfg = loads_config(base)
    assert cfg.resolve().params["decay"] == 0
    assert preview.curve(cfg).m.tolist() == [0.0, 0.5] + [1.0] * 8  # diffusers' wsd with 0 decay steps
    assert loads_config(base + "lr_decay_steps = 0.2\n").resolve().params["decay"] == 2  # steps
    assert loads_config(base + 'lr_scheduler_args = ["decay=0.3"]\n').resolve().params["decay"] == 3
    assert flat_to_form({"lr_scheduler": "warmup_stable_decay"})["args"]["decay"] == "0"  # the form agrees


# ---- the kohya_ss GUI's "" for no arguments ------------------------------------------------------
def test_an_empty_string_for_the_args_lists_means_none_as_in_sd_scripts() -> None:
    """The kohya_ss GUI's settings file writes optimizer_args = "" and lr_scheduler_args = "";
    sd-scripts skips both (it tests their length), so they load as no arguments."""
    base = 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 2\nmax_train_steps = 100\n'
    cfg = loads_config(base + 'optimizer_args = ""\nlr_scheduler_args = ""\n', "c.toml")
    plain = loads_config(base, "c.toml")
    assert cfg.values["optimizer_args"] == [] and not [p for p in cfg.warnings if p.severity == "error"]
    assert preview.curve(cfg).m.tolist() == preview.curve(plain).m.tolist()
    # any other string is still refused: sd-scripts would read it character by character
    assert _error(base + 'optimizer_args = "weight_decay=0.1"\n').key == "optimizer_args"
    assert _error(base + 'lr_scheduler_args = "T_max=10"\n').key == "lr_scheduler_args"
