"""The notebook form, driven from Python the way a user drives it: set widget values, click buttons."""

from __future__ import annotations

import html
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lora_sched.api import load_config, loads_config
from lora_sched.config import dumps_config
from lora_sched.config.keys import KEYS
from lora_sched.errors import ConfigError
from lora_sched.notebook import SchedulerForm, quick_settings
from lora_sched.notebook.form import param_hint
from lora_sched.notebook.translate import (
    DEFAULTS,
    TRAINING_DEFAULTS,
    form_to_flat,
    param_defaults,
)
from lora_sched.schedules import Param, all_specs, get_spec

NAMES = [s.name for s in all_specs()]

#: Values that make each schedule valid (its required parameters, or settings it needs).
VALID_SETUP: dict[str, dict[str, Any]] = {
    "cosine_with_min_lr": {"args": {"min_lr_ratio": "0.1"}},
    "cosine_annealing_warm_restarts": {"args": {"t_0": "50", "t_mult": 2}},
    "step": {"args": {"step_size": "40", "gamma": 0.5}},
    "multistep": {"args": {"milestones": "50, 0.75", "gamma": 0.3}},
    "exponential": {"args": {"gamma": "0.99", "decay_period": "2"}},
    "adafactor": {"optimizer_type": "Adafactor", "optimizer_args": "relative_step=True", "warmup_steps": 0},
    "one_cycle": {"warmup_steps": 0},
    "rex": {"args": {"num_cycles": 3, "restart_decay": 0.9, "cycle_warmup": "0.05"}},
    "cosine_with_restarts": {"args": {"num_cycles": 3}},
    "polynomial": {"args": {"power": 2.0, "lr_end": 1e-6}},
    "warmup_stable_decay": {"args": {"decay": "0.3", "decay_type": "cosine"}},
    "piecewise_constant": {"args": {"step_rules": "1:60,0.5:120,0.1"}},
}


def _valid_setup(name: str) -> dict[str, Any]:
    """The settings above, else the spec's example arguments as the form's inputs show them."""
    if name in VALID_SETUP:
        return VALID_SETUP[name]
    spec = get_spec(name)
    return {"args": {p.name: p.control().shown(spec.example[p.name]) for p in spec.params if p.name in spec.example}}


@pytest.fixture(scope="module")
def form() -> SchedulerForm:
    return SchedulerForm()


def configure(form: SchedulerForm, name: str, path: Path, **overrides: Any) -> None:
    """Choose a schedule through the dropdown, then fill the fields a user would."""
    form.path.value = str(path)
    form.scheduler.value = name
    setup = {"warmup_steps": 10, "max_train_steps": 200, "optimizer_type": "AdamW", "optimizer_args": ""}
    setup.update(_valid_setup(name))
    setup.update(overrides)
    for pname, default in param_defaults(get_spec(name)).items():  # undo earlier tests' edits
        form.param_widgets[pname].value = default
    form.fields["warmup_mode"].value = "steps"
    form.fields["length_mode"].value = "steps"
    form.fields["learning_rate"].value = "2e-4"
    form.fields["unet_lr"].value = ""
    form.fields["text_encoder_lr"].value = "5e-5"
    for key, value in setup.items():
        if key == "args":
            for pname, pvalue in value.items():
                form.param_widgets[pname].value = pvalue
        else:
            form.fields[key].value = value


def invalid_value(param: Param) -> Any | None:
    """A value the param's widget accepts but the spec rejects (None where the widget cannot hold one)."""
    kind = param.control().kind
    if kind == "float":
        if param.field.high is not None:
            return param.field.high + 1.0
        return -1.0 if param.field.low is not None else math.nan
    if kind == "int":
        return (param.field.low or 0) - 1
    if kind == "text":
        return "50.0" if param.field.kind == "duration" else "abc"
    if kind == "list":
        return "-5"
    return None


def test_importing_the_package_loads_no_widgets_or_matplotlib() -> None:
    code = (
        "import sys, lora_sched.notebook, lora_sched.notebook.translate\n"
        "bad = [m for m in ('ipywidgets', 'matplotlib', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dropdown_lists_the_catalogue_with_summaries(form: SchedulerForm) -> None:
    options = form.scheduler.options
    assert [value for _, value in options] == NAMES
    for label, value in options:
        assert label == f"{value} — {get_spec(value).summary}"


@pytest.mark.parametrize("name", NAMES)
def test_every_schedule_fields_preview_save_and_errors(form: SchedulerForm, name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    target = tmp_path / "cfg.toml"
    configure(form, name, target)

    # only the chosen schedule's parameters are shown, one row each, with doc, unit and range
    assert list(form.param_widgets) == list(spec.param_names)
    rows = form.param_box.children
    if spec.params:
        assert len(rows) == len(spec.params)
        for row, param in zip(rows, spec.params):
            assert row.children[0] is form.param_widgets[param.name]
            assert row.children[0].description == param.name
            hint = html.unescape(row.children[1].value)
            assert param.doc in hint and param_hint(param) in hint  # doc, unit, range, default
    else:
        assert len(rows) == 1 and "no parameters" in rows[0].value

    assert form.error_text == "", form.error_text
    cfg = form.config
    assert cfg is not None and cfg.values["lr_scheduler"] == name

    # the preview is the catalogue's curve times each group's base LR
    expected_lrs = {"unet": 2e-4, "text_encoder": 5e-5}
    resolved = cfg.resolve()
    m = resolved.multipliers()
    assert set(form.preview_data) == set(expected_lrs)
    for group, lr in expected_lrs.items():
        np.testing.assert_array_equal(form.preview_data[group], m * lr)
    assert len(m) == resolved.run_length == 200

    # Save writes a file that loads back into an equal config
    assert not target.exists()
    form.save_button.click()
    assert "saved" in form.status.value
    loaded = load_config(target)
    assert loaded.values == cfg.values
    assert loaded.resolve().to_dict() == resolved.to_dict()
    assert target.read_text(encoding="utf-8") == form.to_toml()

    # Load reads it back into the same form state
    before = form.values
    form.scheduler.value = "constant"
    form.load_button.click()
    assert "loaded" in form.status.value
    assert form.values["lr_scheduler"] == name
    assert form_to_flat(form.values) == form_to_flat(before)

    # an invalid value shows the ConfigError text and writes nothing
    saved_text = target.read_text(encoding="utf-8")
    params = [p for p in spec.params if invalid_value(p) is not None]
    if params:
        param = params[0]
        form.param_widgets[param.name].value = invalid_value(param)
        key_fragment = param.kohya_key or f"lr_scheduler_args.{param.name}"
    else:
        form.fields["learning_rate"].value = "0"
        key_fragment = "learning_rate"
    assert form.config is None and form.preview_data == {}
    assert key_fragment in form.error_text
    # the same text `lora-sched validate` gives for the file the form would write
    bad_text = dumps_config(form_to_flat(form.values))
    with pytest.raises(ConfigError) as exc:
        cfg_bad = loads_config(bad_text, source=str(target))
        cfg_bad.resolve()
    assert form.error_text == str(exc.value)
    assert str(exc.value) in html.unescape(form.error_html.value)
    form.save_button.click()
    assert "not saved" in form.status.value
    assert target.read_text(encoding="utf-8") == saved_text
    with pytest.raises(ConfigError):
        form.to_toml()
    other = tmp_path / "never.toml"
    with pytest.raises(ConfigError):
        form.save(other)
    assert not other.exists()


def test_cosine_preview_matches_the_closed_form(form: SchedulerForm, tmp_path: Path) -> None:
    """Independent of the config layer: diffusers' cosine with warmup, written out by hand."""
    configure(form, "cosine", tmp_path / "c.toml", warmup_steps=20, max_train_steps=300)
    s = np.arange(300, dtype=np.float64)
    p = np.clip((s - 20) / (300 - 20), 0, 1)
    m = np.where(s < 20, s / 20, 0.5 * (1 + np.cos(np.pi * p)))
    np.testing.assert_allclose(form.preview_data["unet"], 2e-4 * m, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(form.preview_data["text_encoder"], 5e-5 * m, rtol=1e-12, atol=1e-18)


def test_switching_schedules_shows_only_its_fields_and_keeps_edits(tmp_path: Path) -> None:
    form = SchedulerForm()
    configure(form, "polynomial", tmp_path / "p.toml", args={"power": 3.0})
    assert list(form.param_widgets) == ["power", "lr_end"]
    form.scheduler.value = "cosine_with_restarts"
    assert list(form.param_widgets) == ["num_cycles", "min_lr_ratio", "restart_decay", "cycle_warmup"]
    assert "power" not in form.to_toml()
    form.scheduler.value = "polynomial"
    assert form.param_widgets["power"].value == 3.0
    assert "lr_scheduler_power = 3.0" in form.to_toml()


def test_warmup_in_percent_and_run_length_in_epochs(form: SchedulerForm, tmp_path: Path) -> None:
    configure(form, "linear", tmp_path / "e.toml")
    form.fields["warmup_mode"].value = "percent"
    form.fields["warmup_percent"].value = 10.0
    form.fields["length_mode"].value = "epochs"
    form.fields["max_train_epochs"].value = 5
    form.fields["train_data_dir"].value = "/content/drive/not/on/this/machine"  # data elsewhere: the size fields count
    form.fields["num_images"].value = 20
    form.fields["num_repeats"].value = 3
    form.fields["train_batch_size"].value = 4
    assert form.error_text == ""
    # ceil(20 x 3 / 4) = 15 updates per epoch, 5 epochs
    assert len(form.preview_data["unet"]) == 75
    assert form.resolved.warmup == 7  # floor(0.1 x 75)
    text = form.to_toml()
    assert "lr_warmup_steps = 0.1\n" in text and "max_train_epochs = 5\n" in text
    assert "samples_per_epoch = 60\n" in text  # the saved file previews, validates and exports the same 75 steps
    assert "max_train_steps" not in text
    assert form.fields["max_train_steps"].layout.display == "none"
    assert form.fields["num_images"].layout.display == ""
    assert "15 steps per epoch" in form.length_info.value
    form.fields["train_data_dir"].value = "builtin:shapes"  # back to the default for the tests after this one
    form.fields["warmup_percent"].value = 100.0
    assert "a warmup percentage in [0, 100)" in form.error_text


def test_epochs_mode_counts_the_data_folder_when_it_is_here(form: SchedulerForm, tmp_path: Path) -> None:
    """The data training reads wins over the size fields: the form, validate, preview and train agree."""
    from lora_sched.cli import main

    data = tmp_path / "data"
    for folder, n in (("10_cat", 5), ("2_dog", 3)):
        (data / folder).mkdir(parents=True)
        for i in range(n):
            (data / folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    configure(form, "linear", tmp_path / "f.toml")
    form.fields["length_mode"].value = "epochs"
    form.fields["max_train_epochs"].value = 2
    form.fields["num_images"].value = 7  # ignored: the folder is here
    form.fields["train_batch_size"].value = 4
    form.fields["train_data_dir"].value = str(data)
    assert form.error_text == ""
    assert len(form.preview_data["unet"]) == 28  # (10 x 5 + 2 x 3) / 4 = 14 steps per epoch, 2 epochs
    assert "56 samples per epoch" in form.length_info.value and "14 steps per epoch" in form.length_info.value
    assert "samples_per_epoch" not in form.to_toml()
    form.save()
    assert main(["validate", str(tmp_path / "f.toml")]) == 0
    form.fields["train_data_dir"].value = "builtin:shapes"  # named: counted (32 / 4 = 8 per epoch)
    assert len(form.preview_data["unet"]) == 16


def test_quick_settings_keep_cycles_and_power_apart() -> None:
    restarts = form_to_flat(quick_settings("cosine_with_restarts", num_cycles=3, power=2.0, max_train_steps=100))
    assert restarts["lr_scheduler_num_cycles"] == 3 and isinstance(restarts["lr_scheduler_num_cycles"], int)
    assert "lr_scheduler_power" not in restarts
    poly = form_to_flat(quick_settings("polynomial", num_cycles=3, power=2.0))
    assert poly["lr_scheduler_power"] == 2.0 and "lr_scheduler_num_cycles" not in poly
    flat = form_to_flat(quick_settings("cosine", warmup_ratio=0.05))
    assert flat["lr_warmup_steps"] == 0.05


def test_loading_a_kohya_file_with_an_alias_and_a_list_of_args(form: SchedulerForm, tmp_path: Path) -> None:
    target = tmp_path / "kohya.toml"
    target.write_text(
        "[optimizer_arguments]\n"
        'lr_scheduler = "cosine_schedule_with_warmup"\n'
        "learning_rate = 3e-4\n"
        "lr_warmup_steps = 0.1\n"
        'lr_scheduler_args = ["num_cycles=2"]\n'
        "max_grad_norm = 0.5\n"
        "[training_arguments]\nmax_train_steps = 500\nsave_every_n_steps = 100\n",
        encoding="utf-8",
    )
    form.path.value = str(target)
    form.load_button.click()
    assert "loaded" in form.status.value, form.status.value
    assert form.scheduler.value == "cosine"
    assert form.param_widgets["min_lr_ratio"].value == 0.1  # the alias's own default
    assert form.param_widgets["num_cycles"].value == 2
    assert form.fields["warmup_mode"].value == "percent" and form.fields["warmup_percent"].value == 10.0
    loaded = load_config(target)
    np.testing.assert_allclose(form.preview_data["unet"], loaded.resolve().multipliers() * 3e-4, rtol=1e-12)
    # keys the form has no field for pass through a save
    out = tmp_path / "again.toml"
    form.save(out)
    again = load_config(out)
    assert again.values["max_grad_norm"] == 0.5 and again.values["save_every_n_steps"] == 100


def test_loading_an_invalid_file_shows_the_error_and_changes_nothing(form: SchedulerForm, tmp_path: Path) -> None:
    configure(form, "linear", tmp_path / "x.toml")
    before = form.values
    bad = tmp_path / "bad.toml"
    bad.write_text('lr_scheduler = "cosine"\nlr_warmup_steps = 50.0\nlearning_rte = 1e-4\n', encoding="utf-8")
    form.path.value = str(bad)
    form.load_button.click()
    assert "not loaded" in form.status.value
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert form.error_text == str(exc.value)
    assert "learning_rte" in form.error_text and "did you mean" in form.error_text
    assert f"{bad}:3: learning_rte" in form.error_text
    assert {k: v for k, v in form.values.items() if k != "extra"} == {k: v for k, v in before.items() if k != "extra"}
    missing = tmp_path / "missing.toml"
    form.path.value = str(missing)
    form.load_button.click()
    assert "not loaded" in form.status.value


def test_text_fields_with_quotes_backslashes_newlines_and_unicode_round_trip(
    form: SchedulerForm, tmp_path: Path
) -> None:
    configure(form, "constant", tmp_path / "t.toml")
    tricky = {
        "output_name": 'my "best" lora\\v2\nline two ✨',
        "output_dir": "C:\\Users\\me\\out 'dir'",
        "train_data_dir": 'data/ümlaut "quoted" \t tab',
        "pretrained_model_name_or_path": "models/日本語 ]] [x] = 1",
    }
    for key, value in tricky.items():
        form.fields[key].value = value
    assert form.error_text == "", form.error_text
    target = tmp_path / "t.toml"
    form.save_button.click()
    loaded = load_config(target)
    for key, value in tricky.items():
        assert loaded.values[key] == value


def test_the_form_renders_a_png_plot_in_its_output(form: SchedulerForm, tmp_path: Path) -> None:
    configure(form, "warmup_stable_decay", tmp_path / "w.toml")
    (output,) = form.plot.outputs
    assert output["output_type"] == "display_data"
    import base64

    png = base64.b64decode(output["data"]["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    form.fields["max_train_steps"].value = 0
    (output,) = form.plot.outputs
    assert "image/png" not in output["data"]
    assert "max_train_steps" in form.error_text


def test_bound_shown_beside_the_preview(form: SchedulerForm, tmp_path: Path) -> None:
    from lora_sched.analysis.schedule import bound_summary

    configure(form, "linear", tmp_path / "b.toml")
    expected = bound_summary(form.resolved, 2e-4, D=1, G=1)
    assert form.bound_summary == expected
    assert f"{expected['optimal_base_lr']:.4g}" in form.bound_html.value


def test_a_loaded_custom_torch_class_keeps_its_args_until_a_schedule_is_chosen(tmp_path: Path) -> None:
    form = SchedulerForm()
    source = tmp_path / "custom.toml"
    source.write_text(
        '[optimizer_arguments]\nlr_scheduler_type = "CosineAnnealingLR"\nlr_scheduler_args = ["T_max=100"]\n'
        "[training_arguments]\nmax_train_steps = 100\n",
        encoding="utf-8",
    )
    form.load(source)
    assert form.error_text == "" and "custom torch class" in form.warning_text
    out = tmp_path / "out.toml"
    form.save(out)
    again = load_config(out)
    assert again.scheduler_type == "CosineAnnealingLR" and again.scheduler_type_args == {"T_max": 100}
    form.scheduler.value = "linear"  # choosing a catalogue schedule replaces the class
    assert form.error_text == "" and form.warning_text == ""
    assert "lr_scheduler_type" not in form.to_toml()


def test_saving_into_a_missing_folder_reports_in_the_form(form: SchedulerForm, tmp_path: Path) -> None:
    configure(form, "cosine", tmp_path / "ok.toml")
    target = tmp_path / "no" / "such" / "folder" / "c.toml"
    form.path.value = str(target)
    form.save_button.click()  # must not raise out of the widget callback
    assert "not saved" in form.status.value and "No such file or directory" in form.status.value
    assert not target.exists()


def test_the_training_section_is_titled_on_every_ipywidgets():
    """Accordion titles set with set_title (ipywidgets 7, which Colab ships, ignores titles=)."""
    import ipywidgets

    form = SchedulerForm(quick_settings("cosine"))
    (accordion,) = [c for c in form.widget.children if isinstance(c, ipywidgets.Accordion)]
    assert accordion.get_title(0) == "Model, data and output"


def test_the_forms_training_fields_start_at_the_key_tables_defaults():
    form_keys = [key for key in KEYS if "form" in key.roles]
    assert {key.name for key in form_keys} == set(TRAINING_DEFAULTS)
    assert {"resolution", "optimizer_args", "train_data_dir", "network_dim"} <= set(TRAINING_DEFAULTS)
    flat = form_to_flat(DEFAULTS)
    for key in form_keys:  # an empty optimizer_args field is not written: the key's default, []
        assert flat.get(key.name, []) == key.default, key.name


def test_a_keystroke_resolves_the_schedule_once(form: SchedulerForm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the typed values checks the schedule by resolving it; the preview, the run length
    shown and the bound reuse that resolution (the config keeps it)."""
    import lora_sched.config.model as model

    calls = []
    real = model.resolve
    monkeypatch.setattr(model, "resolve", lambda *args: calls.append(args) or real(*args))
    form.set_values({"lr_scheduler": "cosine", "max_train_steps": 321, "warmup_mode": "steps", "warmup_steps": 5})
    assert form.config is not None and form.resolved.run_length == 321
    form.fields["max_train_steps"].value = 322
    assert form.resolved.run_length == 322
    assert len(calls) == 2  # one per change: set_values redraws once, the keystroke once


def test_the_plot_is_redrawn_only_when_the_preview_changes(
    form: SchedulerForm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    saved = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kw: saved.append(1) or real(fig, *args, **kw))
    form.set_values({"lr_scheduler": "linear", "max_train_steps": 77, "warmup_mode": "steps", "warmup_steps": 0})
    shown = form.plot.outputs
    assert len(saved) == 1
    form.path.value = "elsewhere.toml"  # the TOML path changes no curve
    form.fields["max_train_steps"].value = 77
    assert len(saved) == 1 and form.plot.outputs == shown
    form.fields["max_train_steps"].value = 78
    assert len(saved) == 2 and form.plot.outputs != shown


@pytest.mark.parametrize(("trainer", "suffix"), [("diffusers", ".sh"), ("lora-easy", ".toml")])
def test_the_form_writes_a_file_for_another_trainer(
    form: SchedulerForm, tmp_path: Path, trainer: str, suffix: str
) -> None:
    from lora_sched.trainers import read_run

    target = tmp_path / f"for_{trainer}{suffix}"
    configure(form, "cosine", target)
    form.trainer.value = trainer
    try:
        form.save_button.click()
    finally:
        form.trainer.value = "sd-scripts"
    assert "saved" in form.status.value, form.status.value
    run = read_run(str(target), trainer=trainer)
    assert run.trainer == trainer and run.run_length == 200
    np.testing.assert_allclose(run.lrs(np.arange(200))["unet"], form.preview_data["unet"], rtol=1e-9)


def test_a_trainer_that_cannot_run_the_curve_is_refused_in_the_form(form: SchedulerForm, tmp_path: Path) -> None:
    """ai-toolkit has no warmup before a cosine: nothing is written, the form says why."""
    target = tmp_path / "job.yaml"
    configure(form, "cosine", target)
    form.trainer.value = "ai-toolkit"
    try:
        form.save_button.click()
    finally:
        form.trainer.value = "sd-scripts"
    assert "not saved" in form.status.value and not target.exists()
    assert "ai-toolkit" in form.error_text
