"""Durations: every form users write, and every way to get one wrong."""

from __future__ import annotations

import pytest

from lora_sched.errors import ConfigError
from lora_sched.schedules import Duration, TimeContext, parse_duration, resolve_duration, steps_per_epoch


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (0, Duration(0, "ba")),
        (100, Duration(100, "ba")),
        (0.0, Duration(0.0, "dur")),
        (0.05, Duration(0.05, "dur")),
        ("5%", Duration(0.05, "dur")),
        ("100%", Duration(1.0, "dur")),
        ("100ba", Duration(100, "ba")),
        (" 2ep ", Duration(2, "ep")),
        ("512sp", Duration(512, "sp")),
        ("0.3dur", Duration(0.3, "dur")),
        ("1dur", Duration(1.0, "dur")),
        ("1e2ba", Duration(100, "ba")),
    ],
)
def test_parse_every_form(value, want):
    assert parse_duration(value, "k") == want


def _error(value, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "lr_warmup_steps", **kw)
    (p,) = info.value.problems
    assert p.key == "lr_warmup_steps"
    return str(info.value)


def test_float_of_one_or_more_is_an_error_naming_both_readings():
    text = _error(50.0)
    assert "50" in text and "0.5" in text and "50.0" in text
    assert "whole run" in text
    text = _error(1.0)
    assert "write 1 for 1 steps or 0.01" in text


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1.5ep", ["whole number of epochs", '"1ep"']),
        ("2.5ba", ["whole number of steps"]),
        ("3tok", ["tokens", "image training"]),
        (-1, ["cannot be negative"]),
        (-0.1, ["cannot be negative"]),
        ("-5ba", ["cannot be negative"]),
        ("150%", ["between 0 and 1"]),
        ("1.2dur", ["between 0 and 1"]),
        (float("nan"), ["NaN"]),
        (float("inf"), ["NaN and infinity"]),
        ("100", ["remove the quotes: 100"]),
        ("ten steps", ['"ten steps" (a string)']),
        (True, ["true (a boolean)"]),
        ([10], ["(a list)"]),
        (2_000_000_000, ["at most 1,000,000,000"]),
    ],
)
def test_bad_durations(value, words):
    text = _error(value)
    for word in words:
        assert word in text


def test_fractions_refused_where_steps_are_needed():
    assert "fraction has no meaning here" in _error(0.5, allow_fraction=False)
    assert "fraction has no meaning here" in _error("10%", allow_fraction=False)
    assert parse_duration(0.0, "k", allow_fraction=False) == Duration(0.0, "dur")


def test_resolve_each_unit():
    ctx = TimeContext(horizon=1000, steps_per_epoch=37, samples_per_step=8)
    assert resolve_duration(Duration(120, "ba"), ctx, "k") == 120
    assert resolve_duration(Duration(2, "ep"), ctx, "k") == 74
    assert resolve_duration(Duration(100, "sp"), ctx, "k") == 12  # 100 // 8: a partial step is not a step
    assert resolve_duration(Duration(0.3, "dur"), ctx, "k") == 300
    assert resolve_duration(Duration(0.0555, "dur"), ctx, "k") == 55  # floor


def test_resolve_with_ssr_scales_all_but_dur_and_warmup():
    ctx = TimeContext(horizon=500, ssr=0.5, steps_per_epoch=37)
    assert resolve_duration(Duration(2, "ep"), ctx, "k") == 37
    assert resolve_duration(Duration(101, "ba"), ctx, "k") == 50  # floor(50.5)
    assert resolve_duration(Duration(0.3, "dur"), ctx, "k") == 150  # of the (already scaled) horizon
    assert resolve_duration(Duration(101, "ba"), ctx, "k", is_warmup=True) == 101
    ctx = TimeContext(horizon=500, ssr=0.5, scale_warmup=True)
    assert resolve_duration(Duration(101, "ba"), ctx, "k", is_warmup=True) == 50


def test_epochs_and_samples_need_the_training_shape():
    with pytest.raises(ConfigError, match="epochs need the dataset size"):
        resolve_duration(Duration(2, "ep"), TimeContext(horizon=100), "lr_warmup_steps")
    with pytest.raises(ConfigError, match="samples need the batch size"):
        resolve_duration(Duration(64, "sp"), TimeContext(horizon=100), "lr_warmup_steps")


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((100, 3), 34),  # ceil(100 / 3)
        ((100, 3, 2), 17),  # ceil(34 / 2): the last partial accumulation window still updates
        ((100, 3, 1, 2), 17),  # each of 2 processes sees ceil(34 / 2) batches
        ((100, 3, 2, 2), 9),
        ((10, 4, 4), 1),
        ((1, 1, 1, 8), 1),
        ((1000, 1, 1, 1), 1000),
    ],
)
def test_steps_per_epoch(args, want):
    assert steps_per_epoch(*args) == want


def test_duration_text():
    assert str(Duration(0.3, "dur")) == "0.3dur"
    assert str(Duration(2, "ep")) == "2ep"
