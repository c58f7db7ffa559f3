"""`lora-sched export --kohya`: what sd-scripts' rules make of the exported file is the preview's curve."""

from __future__ import annotations

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the package depends on tomli there
    import tomli as tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from kohya_rules import kohya_lrs

from lora_sched.api import loads_config
from lora_sched.cli import main
from lora_sched.errors import ConfigError
from lora_sched.torch.export import LORA_SCHED_LR, export_kohya
from lora_sched.torch.factory import WARMUP_THEN

LR, TE_LR = 1e-4, 4e-5


def _config(scheduler: str, warmup: int | str = 0, steps: int = 60, extra: str = "", args: str = ""):
    text = f"""
[optimizer_arguments]
learning_rate = {LR}
text_encoder_lr = {TE_LR}
lr_scheduler = "{scheduler}"
lr_warmup_steps = {warmup}
{extra}
{f"lr_scheduler_args = [{args}]" if args else ""}

[training_arguments]
max_train_steps = {steps}
"""
    return loads_config(text, source="test.toml")


def _preview(cfg, n: int = 1) -> np.ndarray:
    m = cfg.resolve(cfg.training_shape(num_processes=n)).multipliers()
    groups = cfg.group_lrs()
    return np.stack([groups["unet"] * m, groups["text_encoder"] * m], axis=1)


def _exported(cfg, n: int) -> dict:
    return tomllib.loads(export_kohya(cfg, num_processes=n))


def _flat(doc: dict) -> dict:
    out = {}
    for value in doc.values():
        out.update(value)
    return out


# (config, the built-in sd-scripts name the export must use)
BUILTIN_CASES = [
    (("constant",), "constant"),
    (("constant", 7), "constant_with_warmup"),
    (("constant_with_warmup", 9), "constant_with_warmup"),
    (("linear", 8), "linear"),
    (("cosine", 6), "cosine"),
    (("cosine", 6, 60, "", "'num_cycles=1.5'"), "cosine"),
    (("cosine", 5, 60, "", "'min_lr_ratio=0.1'"), "cosine_with_min_lr"),
    (
        ("cosine_with_min_lr", 5, 60, "lr_scheduler_min_lr_ratio = 0.2\nlr_scheduler_num_cycles = 1.5"),
        "cosine_with_min_lr",
    ),
    (("cosine_with_restarts", 4, 61, "lr_scheduler_num_cycles = 3"), "cosine_with_restarts"),
    (("polynomial", 5, 60, "lr_scheduler_power = 2.0", "'lr_end=1e-6'"), "polynomial"),
    (("inverse_sqrt", 10), "inverse_sqrt"),
    (("inverse_sqrt", 0, 60, "lr_scheduler_timescale = 7"), "inverse_sqrt"),
    (("warmup_stable_decay", 6, 60, "lr_decay_steps = 0.3", "'decay_type=\"cosine\"'"), "warmup_stable_decay"),
    (
        ("warmup_stable_decay", 0, 60, "lr_decay_steps = 13", "'decay_type=\"1-sqrt\"', 'min_lr_ratio=0.1'"),
        "warmup_stable_decay",
    ),
    (("piecewise_constant", 0, 60, "", "'step_rules=\"1:10,0.5:25,0.1\"'"), "piecewise_constant"),
]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize(("case", "kohya_name"), BUILTIN_CASES, ids=[f"{c[0][0]}-{k}" for c, k in BUILTIN_CASES])
def test_builtin_name_gives_the_preview_curve_in_sd_scripts(case, kohya_name, n):
    cfg = _config(*case)
    doc = _exported(cfg, n)
    flat = _flat(doc)
    assert flat["lr_scheduler"] == kohya_name
    assert "lr_scheduler_type" not in flat
    got = kohya_lrs(doc, num_processes=n)
    want = _preview(cfg, n)
    assert got.shape == want.shape
    np.testing.assert_allclose(got / [LR, TE_LR], want / [LR, TE_LR], rtol=0, atol=1e-12)


def test_warmup_counts_are_multiplied_for_n_processes():
    flat = _flat(_exported(_config("warmup_stable_decay", 6, 60, "lr_decay_steps = 12"), 4))
    assert (flat["lr_warmup_steps"], flat["lr_decay_steps"], flat["max_train_steps"]) == (24, 48, 60)
    assert isinstance(flat["lr_warmup_steps"], int)  # a float would be a ratio in sd-scripts


def test_adafactor_export_matches_adafactor_steps():
    cfg = loads_config(
        """
[optimizer_arguments]
optimizer_type = "Adafactor"
optimizer_args = ["relative_step=True", "scale_parameter=False", "warmup_init=False"]
learning_rate = 1e-4
lr_scheduler = "adafactor"
[training_arguments]
max_train_steps = 40
""",
        source="ada.toml",
    )
    doc = _exported(cfg, 1)
    assert _flat(doc)["lr_scheduler"] == "adafactor"
    got = kohya_lrs(doc)
    np.testing.assert_allclose(got[:, 0], 1e-4 * cfg.resolve().multipliers(), rtol=1e-12, atol=0)


LORA_SCHED_CASES = [
    ("rex", 5, 90, "", "'num_cycles=3', 'restart_decay=0.9', 'cycle_warmup=4'"),
    ("one_cycle", 0, 50, "", "'pct_start=0.25'"),
    ("step", 3, 50, "", "'step_size=7', 'gamma=0.5'"),
    ("multistep", 0, 50, "", "'milestones=[10, 30]'"),
    ("exponential", 2, 50, "", "'gamma=0.95'"),
    ("sqrt", 5, 50, "lr_decay_steps = 10"),
    ("composer_polynomial", 5, 50),
    ("cosine_annealing_warm_restarts", 0, 50, "", "'t_0=7', 't_mult=2'"),
    ("cosine_with_restarts", 4, 61, "lr_scheduler_num_cycles = 3", "'restart_decay=0.8'"),
    ("cosine", 5, 50, "warmup_type = 'cosine'\n[lora_sched]\nwarmup_start = 0.1"),
    ("linear", 5, 50, "schedule_steps = 80"),
    ("piecewise_constant", 5, 50, "", "'step_rules=\"1:10,0.5:25,0.1\"'"),
]


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("case", LORA_SCHED_CASES, ids=[c[0] for c in LORA_SCHED_CASES])
def test_lora_sched_lr_in_sd_scripts_gives_the_preview_curve(case, n):
    cfg = _config(*case)
    doc = _exported(cfg, n)
    flat = _flat(doc)
    assert flat["lr_scheduler_type"] == LORA_SCHED_LR
    assert flat["lr_warmup_steps"] == 0  # sd-scripts refuses a warmup with a custom class
    got = kohya_lrs(doc, num_processes=n)  # imports the class by its dotted path, cls(opt, **args)
    np.testing.assert_allclose(got / [LR, TE_LR], _preview(cfg, n) / [LR, TE_LR], rtol=0, atol=1e-12)


def test_custom_torch_class_with_warmup_is_wrapped():
    cfg = _config("constant", 5, 40, "lr_scheduler_type = 'StepLR'", "'step_size=6', 'gamma=0.5'")
    doc = _exported(cfg, 1)
    flat = _flat(doc)
    assert flat["lr_scheduler_type"] == WARMUP_THEN
    got = kohya_lrs(doc)
    from lora_sched.torch.preview import preview_lrs

    want = preview_lrs("StepLR", {"step_size": 6, "gamma": 0.5}, [LR, TE_LR], 40, warmup=5)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert got[5, 0] == LR and got[11, 0] == LR / 2  # warmup, then StepLR from its own step 0


def test_custom_torch_class_without_warmup_is_written_as_is():
    cfg = _config("constant", 0, 40, "lr_scheduler_type = 'CosineAnnealingLR'", "'T_max=40'")
    flat = _flat(_exported(cfg, 1))
    assert flat["lr_scheduler_type"] == "CosineAnnealingLR"
    assert flat["lr_scheduler_args"] == ["T_max=40"]


def test_reduce_on_plateau_cannot_be_exported():
    cfg = _config("constant", 0, 40, "lr_scheduler_type = 'ReduceLROnPlateau'", "'patience=2'")
    with pytest.raises(ConfigError, match="ReduceLROnPlateau"):
        export_kohya(cfg)


def test_export_drops_lora_sched_keys_and_epochs():
    cfg = _config("cosine", "0.1", 100, "scale_schedule_ratio = 0.5".join(["[lora_sched]\n", ""]))
    flat = _flat(_exported(cfg, 1))
    assert flat["max_train_steps"] == 50 and flat["lr_warmup_steps"] == 5
    assert "scale_schedule_ratio" not in flat and "max_train_epochs" not in flat


def test_cli_export_writes_the_file(tmp_path, capsys):
    src = tmp_path / "in.toml"
    src.write_text('[training_arguments]\nmax_train_steps = 30\nlr_scheduler = "rex"\n', encoding="utf-8")
    out = tmp_path / "out.toml"
    assert main(["export", "--kohya", str(src), "-o", str(out), "--num-processes", "2"]) == 0
    flat = _flat(tomllib.loads(out.read_text(encoding="utf-8")))
    assert flat["lr_scheduler_type"] == LORA_SCHED_LR
    assert "num_processes=2" in flat["lr_scheduler_args"]
    assert main(["export", "--kohya", str(src), "--num-processes", "0"]) == 1
    assert "--num-processes" in capsys.readouterr().err


def test_exported_file_loads_back_with_the_same_curve(tmp_path):
    cfg = _config("rex", 5, 90, "", "'num_cycles=3', 'restart_decay=0.9', 'cycle_warmup=4'")
    again = loads_config(export_kohya(cfg), source="exported.toml")
    from lora_sched.torch.preview import preview_multipliers

    np.testing.assert_allclose(preview_multipliers(again), cfg.resolve().multipliers(), rtol=0, atol=1e-15)
    # an export for 2 processes previews (and trains in lora-sched, one step() per update) the same curve
    again2 = loads_config(export_kohya(cfg, num_processes=2), source="exported2.toml")
    np.testing.assert_allclose(preview_multipliers(again2), cfg.resolve().multipliers(), rtol=0, atol=1e-15)


def test_re_export_of_an_export_sets_the_process_count_again():
    cfg = _config("rex", 5, 90, "", "'num_cycles=3', 'restart_decay=0.9'")
    once = loads_config(export_kohya(cfg, num_processes=2), source="once.toml")
    twice = _exported(once, 3)
    flat = _flat(twice)
    assert flat["lr_scheduler_type"] == LORA_SCHED_LR
    assert "num_processes=3" in flat["lr_scheduler_args"] and "num_processes=2" not in flat["lr_scheduler_args"]
    np.testing.assert_allclose(
        kohya_lrs(twice, num_processes=3) / [LR, TE_LR], _preview(cfg, 3) / [LR, TE_LR], atol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["linear", "cosine", "cosine_with_restarts", "warmup_stable_decay", "inverse_sqrt", "rex"]),
    steps=st.integers(1, 150),
    warmup_frac=st.floats(0.0, 0.9),
    n=st.integers(1, 4),
)
def test_any_length_warmup_and_process_count_round_trips_through_sd_scripts(name, steps, warmup_frac, n):
    warmup = min(int(warmup_frac * steps), steps - 1)
    extra = f"lr_decay_steps = {(steps - warmup) // 2}" if name == "warmup_stable_decay" else ""
    cfg = _config(name, warmup, steps, extra)
    doc = _exported(cfg, n)
    got = kohya_lrs(doc, num_processes=n)
    np.testing.assert_allclose(got / [LR, TE_LR], _preview(cfg, n) / [LR, TE_LR], rtol=0, atol=1e-12)
