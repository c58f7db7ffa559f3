"""Resolution: from a request as written to integer steps, and every problem reported at once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import edge_args, ours

from lora_sched.errors import ConfigError
from lora_sched.schedules import ResolvedSchedule, ScheduleRequest, TrainingShape, all_specs, get_spec, resolve


def problems(request: ScheduleRequest, shape: TrainingShape | None = None) -> dict[str, str]:
    """{key: full text} of every problem resolution reports."""
    with pytest.raises(ConfigError) as info:
        resolve(request, shape)
    return {p.key: str(p) for p in info.value.problems}


def test_warmup_float_of_one_or_more():
    found = problems(ScheduleRequest("cosine", warmup=50.0, max_train_steps=100))
    assert set(found) == {"lr_warmup_steps"}
    assert "50" in found["lr_warmup_steps"] and "0.5" in found["lr_warmup_steps"]


@pytest.mark.parametrize(
    ("warmup", "word"),
    [("1.5ep", "whole number of epochs"), ("3tok", "tokens"), (-5, "negative"), ("2ep", "epochs need the dataset")],
)
def test_bad_warmups(warmup, word):
    found = problems(ScheduleRequest("linear", warmup=warmup, max_train_steps=100))
    assert word in found["lr_warmup_steps"]


@pytest.mark.parametrize("steps", [0, -3, 1.5, 100.0, "100", None, True])
def test_bad_or_zero_horizon(steps):
    found = problems(ScheduleRequest("linear", max_train_steps=steps))
    assert "max_train_steps" in found


def test_zero_schedule_steps_and_fraction_horizon():
    assert (
        "at least 1 step" in problems(ScheduleRequest("linear", max_train_steps=10, schedule_steps=0))["schedule_steps"]
    )
    found = problems(ScheduleRequest("linear", max_train_steps=10, schedule_steps=0.5))
    assert "fraction has no meaning" in found["schedule_steps"]


@pytest.mark.parametrize(("T", "W"), [(100, 100), (100, 150), (1, 1), (10, "100%")])
def test_warmup_not_shorter_than_horizon(T, W):
    found = problems(ScheduleRequest("cosine", warmup=W, max_train_steps=T))
    assert f"shorter than the horizon ({T} steps)" in found["lr_warmup_steps"]


def test_largest_warmup_is_horizon_minus_one():
    rs = ours("cosine", 100, 99)
    assert rs.warmup == 99 and rs.multiplier(99) == 1.0 and rs.multiplier(100) == 0.0


@pytest.mark.parametrize("ssr", [0, -1.0, 0.0, float("nan"), "0.5", True, 1001])
def test_scale_schedule_ratio_must_be_positive(ssr):
    found = problems(ScheduleRequest("linear", max_train_steps=100, scale_schedule_ratio=ssr))
    assert "scale_schedule_ratio" in found


def test_scale_schedule_ratio_leaving_no_step():
    found = problems(ScheduleRequest("linear", max_train_steps=10, scale_schedule_ratio=0.05))
    assert "leaves between 1 and 1,000,000,000 steps" in found["scale_schedule_ratio"]


def test_epochs_without_a_dataset():
    found = problems(ScheduleRequest("linear", max_train_epochs=3))
    assert "dataset size" in found["max_train_epochs"]
    rs = resolve(ScheduleRequest("linear", max_train_epochs=3, max_train_steps=5), TrainingShape(steps_per_epoch=40))
    assert rs.run_length == rs.horizon == 120  # kohya: epochs override steps


def test_epochs_and_samples_with_a_shape():
    shape = TrainingShape(steps_per_epoch=25, samples_per_step=4)
    rs = resolve(
        ScheduleRequest("multistep", {"milestones": ["2ep", "200sp"]}, warmup="40sp", max_train_steps=100), shape
    )
    assert rs.warmup == 10 and rs.params["milestones"] == (50, 50)
    rs = resolve(ScheduleRequest("cosine", max_train_steps=100, schedule_steps="5ep"), shape)
    assert rs.horizon == 125


def test_run_longer_than_horizon_needs_hold():
    found = problems(ScheduleRequest("cosine", max_train_steps=150, schedule_steps=100))
    assert "hold_after_horizon" in found["schedule_steps"]
    rs = resolve(ScheduleRequest("cosine", max_train_steps=150, schedule_steps=100, hold_after_horizon=True))
    m = rs.multipliers()
    assert m.shape == (150,) and np.all(m[100:] == m[100]) and m[100] == 0.0
    assert rs.multiplier(10**9) == m[100]


def test_shorter_run_than_horizon_is_fine():
    rs = resolve(ScheduleRequest("linear", max_train_steps=50, schedule_steps=100))
    assert rs.multipliers().shape == (50,)
    assert rs.multiplier(50) == 0.5


def test_unknown_arg_names_the_schedule_that_takes_it():
    found = problems(ScheduleRequest("cosine", {"power": 2.0}, max_train_steps=100))
    text = found["lr_scheduler_args.power"]
    assert "cosine takes no `power`" in text and "did you mean polynomial" in text


def test_misspelled_arg_gets_did_you_mean():
    found = problems(ScheduleRequest("cosine", {"num_cycle": 2}, max_train_steps=100))
    assert "did you mean `num_cycles`?" in found["lr_scheduler_args.num_cycle"]
    found = problems(ScheduleRequest("constant", {"gamma": 0.5}, max_train_steps=100))
    assert "no arguments" in found["lr_scheduler_args.gamma"]


def test_args_keyed_by_the_kohya_global_key():
    req = ScheduleRequest(
        "cosine_with_restarts",
        {"num_cycles": 2.5},
        max_train_steps=100,
        arg_keys={"num_cycles": "lr_scheduler_num_cycles"},
    )
    found = problems(req)
    assert set(found) == {"lr_scheduler_num_cycles"} and "an int" in found["lr_scheduler_num_cycles"]


def test_missing_required_and_duplicated_alias():
    found = problems(ScheduleRequest("step", {}, max_train_steps=100))
    assert "step needs `step_size`" in found["lr_scheduler_args.step_size"]
    found = problems(ScheduleRequest("rex", {"restart_decay": 0.9, "gamma": 0.8}, max_train_steps=100))
    assert "`restart_decay` and `gamma` both set `restart_decay`" in found["lr_scheduler_args.gamma"]


def test_cross_parameter_checks():
    found = problems(ScheduleRequest("polynomial", {"lr_end": 1e-3}, max_train_steps=100, base_lr=1e-4))
    assert "absolute LR below learning_rate" in found["lr_scheduler_args.lr_end"]
    found = problems(ScheduleRequest("rex", {"num_cycles": 2, "cycle_warmup": 50}, max_train_steps=100))
    assert "fewer steps than one cycle" in found["lr_scheduler_args.cycle_warmup"]
    found = problems(ScheduleRequest("step", {"step_size": 0.001}, max_train_steps=100))
    assert "it resolved to 0 steps" in found["lr_scheduler_args.step_size"]


def test_warmup_refused_where_the_schedule_has_its_own():
    found = problems(ScheduleRequest("one_cycle", warmup=10, max_train_steps=100))
    assert "one_cycle takes no warmup" in found["lr_warmup_steps"]


def test_every_problem_in_one_request_is_reported_at_once():
    req = ScheduleRequest(
        "cosine",
        {"power": 2.0, "num_cycles": -1, "min_lr_ratio": 1.5},
        warmup=50.0,
        warmup_type="cosin",
        warmup_start=2.0,
        max_train_steps=100,
    )
    assert set(problems(req)) == {
        "lr_scheduler_args.power",
        "lr_scheduler_args.num_cycles",
        "lr_scheduler_args.min_lr_ratio",
        "lr_warmup_steps",
        "warmup_type",
        "warmup_start",
    }


def test_every_problem_reported_even_without_a_horizon():
    req = ScheduleRequest("cosine", {"power": 2.0}, warmup="3tok", max_train_steps=0, scale_schedule_ratio=-1)
    assert set(problems(req)) == {
        "lr_scheduler_args.power",
        "lr_warmup_steps",
        "max_train_steps",
        "scale_schedule_ratio",
    }
    req = ScheduleRequest("step", {"step_size": "1.5ep"}, warmup=50.0, max_train_steps=10, scale_schedule_ratio=0.01)
    assert set(problems(req)) == {"lr_scheduler_args.step_size", "lr_warmup_steps", "scale_schedule_ratio"}


def test_unknown_schedule_name():
    with pytest.raises(ConfigError, match="did you mean `cosine`"):
        resolve(ScheduleRequest("cosin", max_train_steps=10))


def test_alias_defaults_and_round_trip():
    rs = resolve(ScheduleRequest("cosine_schedule_with_warmup", max_train_steps=100, warmup=10))
    assert rs.name == "cosine" and rs.requested_name == "cosine_schedule_with_warmup"
    assert rs.params["min_lr_ratio"] == 0.1 and rs.multiplier(100) == pytest.approx(0.1, abs=1e-15)
    back = ResolvedSchedule.from_dict(rs.to_dict())
    assert back.curve_changes(rs) == []
    np.testing.assert_array_equal(back.multipliers(), rs.multipliers())
    other = resolve(ScheduleRequest("cosine", {"num_cycles": 2}, max_train_steps=100, warmup=5))
    assert [str(change) for change in rs.curve_changes(other)] == [
        "warmup: 10 -> 5",
        "params.min_lr_ratio: 0.1 -> 0.0",
        "params.num_cycles: 1.0 -> 2.0",
    ]
    ms = ResolvedSchedule.from_dict(
        resolve(ScheduleRequest("multistep", {"milestones": [5, 2]}, max_train_steps=9)).to_dict()
    )
    assert ms.params["milestones"] == (2, 5)


def test_multipliers_steps_argument():
    rs = ours("linear", 10, 0)
    np.testing.assert_array_equal(rs.multipliers(), 1 - np.arange(10) / 10)
    assert rs.multipliers([]).shape == (0,)
    with pytest.raises(ValueError, match="finite and >= 0"):
        rs.multipliers([-1])
    with pytest.raises(ValueError, match="finite and >= 0"):
        rs.multipliers([float("nan")])


# ---- edge cases, every schedule: T = 1, W = 0, W = T - 1, huge T, past the horizon ----

EDGE_NAMES = sorted(s.name for s in all_specs())


def _edge(name: str, T: int, W: int, **kw):
    spec_warmup = get_spec(name).accepts_warmup
    return ours(name, T, W if spec_warmup else 0, edge_args(name), **kw)


@pytest.mark.parametrize("name", EDGE_NAMES)
@pytest.mark.parametrize(("T", "W"), [(1, 0), (2, 0), (2, 1), (7, 6), (100, 0), (100, 99), (10_000_000, 1_000_000)])
def test_every_schedule_at_the_edges(name, T, W):
    rs = _edge(name, T, W)
    W = rs.warmup
    steps = np.unique(np.array([0, 1, W // 2, max(W - 1, 0), W, min(W + 1, T), T // 2, T - 1, T]))
    m = rs.multipliers(steps)
    assert np.all(np.isfinite(m)) and np.all(m >= 0.0) and np.all(m <= 1.0 + 1e-12), m
    if W > 0:
        at_w = rs.multiplier(W)
        assert rs.multiplier(0) == 0.0  # warmup_start defaults to 0 (kohya/diffusers: first update at LR 0)
        assert 0.0 <= rs.multiplier(W - 1) <= at_w
        assert rs.multiplier(W - 1) == pytest.approx(at_w * (W - 1) / W, rel=1e-12, abs=1e-300)
    held = _edge(name, T, W, max_train_steps=T + 5, schedule_steps=T, hold_after_horizon=True)
    past = held.multipliers(np.array([T, T + 1, T + 4, T + 10**6]))
    assert np.all(past == past[0]) and past[0] == rs.multiplier(T)
