"""Inputs that once reached the user as a traceback or were silently accepted (found in review)."""

import numpy as np
import pytest

from lora_sched.api import loads_config
from lora_sched.errors import ConfigError
from lora_sched.schedules import ScheduleRequest, resolve


def _problems(text: str) -> list:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="c.toml")
    return info.value.problems


@pytest.mark.parametrize("value", ['"1e400ba"', '"1e400ep"', '"1e400sp"', '"99999999999ba"'])
def test_huge_time_strings_are_config_errors(value):
    (p,) = _problems(f"lr_warmup_steps = {value}\nmax_train_steps = 100\n")
    assert p.key == "lr_warmup_steps" and p.line == 1
    assert "at most 1,000,000,000" in p.expected


def test_an_int_beyond_any_float_is_a_config_error():
    huge = "9" * 400
    (p,) = _problems(f'lr_scheduler = "one_cycle"\nlr_scheduler_args = ["div_factor={huge}"]\nmax_train_steps = 100\n')
    assert p.key == "lr_scheduler_args.div_factor" and p.line == 2


def test_the_schedule_api_rejects_huge_numbers_without_overflow():
    with pytest.raises(ConfigError) as info:
        resolve(ScheduleRequest("cosine", warmup_start=10**400, base_lr=10**400, max_train_steps=10))
    assert {p.key for p in info.value.problems} == {"warmup_start", "learning_rate"}


def test_scaling_past_the_step_limit_is_an_error():
    with pytest.raises(ConfigError) as info:
        resolve(ScheduleRequest("cosine", max_train_steps=1_000_000_000, scale_schedule_ratio=1000.0))
    assert info.value.problems[0].key == "scale_schedule_ratio"


def test_rex_cycle_warmup_must_leave_a_decay_in_its_whole_step_cycles():
    # T = 10, 3 cycles -> cycles of 3 whole steps: a 3-step warmup would leave no decay at all
    with pytest.raises(ConfigError) as info:
        resolve(ScheduleRequest("rex", args={"num_cycles": 3, "cycle_warmup": 3}, max_train_steps=10))
    assert info.value.problems[0].key == "lr_scheduler_args.cycle_warmup"
    ok = resolve(ScheduleRequest("rex", args={"num_cycles": 3, "cycle_warmup": 2}, max_train_steps=10))
    m = ok.multipliers(np.arange(3))
    assert m[0] == 0.0 and m[1] == 0.5 and m[2] == 1.0  # warmup, warmup, peak; the decay follows


def test_a_misspelt_max_train_epochs_is_an_error_not_a_notice():
    (p,) = _problems("max_train_epoch = 3\n")
    assert p.key == "max_train_epoch" and "max_train_epochs" in p.hint


def test_no_warmup_message_shows_what_the_user_wrote():
    (p,) = _problems('lr_scheduler = "one_cycle"\nlr_warmup_steps = "10%"\nmax_train_steps = 100\n')
    assert p.key == "lr_warmup_steps" and '"10%"' in p.found


def test_kohya_colab_rex_class_with_an_argument_it_does_not_take_is_an_error():
    """The class's own signature decides: restart_decay is our name, sd-scripts' call would raise TypeError."""
    text = (
        "[optimizer_arguments]\nlearning_rate = 3e-4\n"
        'lr_scheduler_type = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"\n'
        'lr_scheduler_args = ["min_lr=1e-9", "gamma=0.5", "restart_decay=0.9"]\n'
        "[training_arguments]\nmax_train_steps = 1000\n"
    )
    (p,) = _problems(text)
    assert (p.line, p.key) == (4, "optimizer_arguments.lr_scheduler_args.restart_decay")
    assert p.expected == "an argument of LoRA_Easy's RexAnnealingWarmRestarts"


@pytest.mark.parametrize(
    "argv",
    [
        ["preview", "configs/quickstart.toml", "--csv", "{missing}/x.csv"],
        ["preview", "configs/quickstart.toml", "--png", "{missing}/x.png"],
        ["schema", "-o", "{missing}/x.json"],
        ["export", "--kohya", "configs/quickstart.toml", "-o", "{missing}/out.toml"],
        ["bound", "configs/quickstart.toml", "--png", "{file}/x.png"],
    ],
)
def test_unwritable_outputs_are_one_line_errors(argv, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from lora_sched.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = [a.format(missing=tmp_path / "no" / "such", file=a_file) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lora-sched {argv[0]}: ") and "Traceback" not in err
    assert str(tmp_path) in err  # names the user's path, not a temporary file
    assert list(tmp_path.iterdir()) == [a_file]  # nothing half-written left behind


def _warmup_then_lrs(t_max: int, steps: range, state=None, allow=False):
    import torch

    from lora_sched.torch.custom import WarmupThen

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupThen(opt, scheduler_type="CosineAnnealingLR", warmup=5, T_max=t_max)
    if state is not None:
        sched.load_state_dict(state, allow_schedule_change=allow)
    lrs = []
    for _ in steps:
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step_update(None)
    return lrs, sched


def test_allowed_change_of_a_custom_class_follows_the_new_curve_from_the_kept_step():
    pytest.importorskip("torch")
    _, sched = _warmup_then_lrs(100, range(20))
    state = sched.state_dict()
    with pytest.raises(ConfigError):
        _warmup_then_lrs(50, range(1), state=state)
    resumed, _ = _warmup_then_lrs(50, range(20, 40), state=state, allow=True)
    fresh, _ = _warmup_then_lrs(50, range(40))
    np.testing.assert_allclose(resumed, fresh[20:], rtol=0, atol=1e-12)
