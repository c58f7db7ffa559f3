"""kohya's global scheduler keys mean here exactly what they mean in sd-scripts' get_scheduler_fix.

sd-scripts passes lr_scheduler_num_cycles to cosine_with_restarts (as is) and to
cosine_with_min_lr / warmup_stable_decay (halved, which is our convention for n), power to
polynomial, timescale to inverse_sqrt, min_lr_ratio to cosine_with_min_lr / warmup_stable_decay and
lr_decay_steps to warmup_stable_decay. Anywhere else it ignores them, so a kohya file with
`lr_scheduler = "cosine"` and `lr_scheduler_num_cycles = 3` trains ONE cosine decay in sd-scripts:
we must train the same curve and warn, not silently draw three half-cosines.
"""

import math

import numpy as np
import pytest

from lora_sched.config import loads_config
from lora_sched.errors import ConfigError
from lora_sched.schedules import all_specs

FED = {
    "lr_scheduler_num_cycles": {"cosine_with_restarts", "cosine_with_min_lr"},
    "lr_scheduler_power": {"polynomial"},
    "lr_scheduler_timescale": {"inverse_sqrt"},
    "lr_scheduler_min_lr_ratio": {"cosine_with_min_lr", "warmup_stable_decay"},
    "lr_decay_steps": {"warmup_stable_decay"},
}


def _config(schedule: str, extra: str) -> str:
    return (
        "[optimizer_arguments]\nlearning_rate = 0.0001\n"
        f'lr_scheduler = "{schedule}"\n{extra}\n'
        "[training_arguments]\nmax_train_steps = 100\n"
    )


def test_global_keys_feed_exactly_the_schedules_sd_scripts_feeds():
    for key, schedules in FED.items():
        fed = {s.name for s in all_specs() if any(p.kohya_key == key for p in s.params)}
        assert fed == schedules, key


def test_num_cycles_on_plain_cosine_warns_and_trains_one_decay_like_sd_scripts():
    cfg = loads_config(_config("cosine", "lr_scheduler_num_cycles = 3"), source="c.toml")
    (warning,) = [w for w in cfg.warnings if w.severity == "warning"]
    assert warning.key.endswith("lr_scheduler_num_cycles") and warning.line == 4
    assert 'lr_scheduler_args = ["num_cycles=1.5"]' in warning.hint  # transformers' periods: 3 half-cosines
    m = cfg.resolve().multipliers(np.arange(101))
    expected = [0.5 * (1 + math.cos(math.pi * s / 100)) for s in range(101)]  # one half-cosine
    np.testing.assert_allclose(m, expected, rtol=0, atol=1e-12)


def test_num_cycles_through_lr_scheduler_args_gives_several_cycles():
    """sd-scripts passes the list's num_cycles to transformers' cosine, whose num_cycles counts full
    periods: 1.5 is three half-cosine decays."""
    cfg = loads_config(_config("cosine", 'lr_scheduler_args = ["num_cycles=1.5"]'), source="c.toml")
    m = cfg.resolve().multipliers(np.arange(101))
    expected = [0.5 * (1 + math.cos(math.pi * 3 * s / 100)) for s in range(101)]
    np.testing.assert_allclose(m, expected, rtol=0, atol=1e-12)


def test_num_cycles_feeds_cosine_with_restarts():
    cfg = loads_config(_config("cosine_with_restarts", "lr_scheduler_num_cycles = 3"), source="c.toml")
    assert cfg.resolve().params["num_cycles"] == 3
    assert not [w for w in cfg.warnings if w.severity == "warning"]


def test_sd_scripts_default_values_load_silently_on_any_schedule():
    cfg = loads_config(_config("linear", "lr_scheduler_num_cycles = 1\nlr_scheduler_power = 1"), source="c.toml")
    assert not [w for w in cfg.warnings if w.severity == "warning"]


def test_strict_turns_the_unused_key_warning_into_an_error(tmp_path):
    from lora_sched.cli import main

    path = tmp_path / "c.toml"
    path.write_text(_config("rex", "lr_scheduler_power = 2.0"), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1


def test_global_key_and_scheduler_arg_for_the_same_param_is_an_error():
    text = _config("cosine_with_restarts", 'lr_scheduler_num_cycles = 3\nlr_scheduler_args = ["num_cycles=2"]')
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="c.toml")
    assert any(p.key.endswith("lr_scheduler_num_cycles") for p in info.value.problems)


def test_preview_counts_exactly_the_images_training_reads(tmp_path):
    """Loose images in train_data_dir are not read by training (nor by sd-scripts): not counted either."""
    from lora_sched.config.dataset import folder_plan, scan_concepts

    (tmp_path / "2_cat").mkdir()
    (tmp_path / "0_dog").mkdir()
    (tmp_path / "notes").mkdir()
    for name in ("a.png", "b.jpg", "c.txt"):
        (tmp_path / "2_cat" / name).write_bytes(b"\xff\xd8\xff")
    for name in ("loose1.png", "loose2.png", "loose3.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "0_dog" / "d.png").write_bytes(b"x")
    folders, skipped = scan_concepts(str(tmp_path))
    assert [(f.name, f.repeats, len(f.images)) for f in folders] == [("2_cat", 2, 2)]
    assert len(skipped) == 2  # 0_dog (0 repeats) and notes (not N_concept)
    assert folder_plan(str(tmp_path), 1).samples == 4
