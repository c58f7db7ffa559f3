"""The field system: one object per kind reads values, names what it expected, and describes its
JSON Schema and form input, for config keys and schedule parameters alike."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from lora_sched.config.keys import KEY_BY_NAME, KEYS
from lora_sched.errors import ConfigError, FieldError, raw
from lora_sched.schedules import all_specs, get_spec
from lora_sched.schedules.durations import Duration as DurationValue
from lora_sched.schedules.durations import TimeContext
from lora_sched.schedules.fields import (
    Bool,
    Choice,
    Duration,
    Durations,
    Float,
    Floats,
    Int,
    Path,
    Resolution,
    Str,
    parse_list,
    parse_text,
    text_of,
)


def error_of(field, value) -> FieldError:
    with pytest.raises(FieldError) as info:
        field.parse(value)
    return info.value


def test_numbers_parse_to_their_type_and_refuse_with_a_hint() -> None:
    unit = Float(low=0, high=1, high_open=True)
    assert unit.parse(0) == 0.0 and isinstance(unit.parse(0), float)
    assert unit.expected() == "a number in [0, 1)"
    assert (error_of(unit, -0.5).hint, error_of(unit, 1.0).hint) == ("negative values are not allowed", "")
    assert error_of(unit, "0.5").hint == "remove the quotes: 0.5"
    assert error_of(unit, math.nan).hint == "NaN and infinity are not allowed"
    assert error_of(Float(), 10**400).hint == "huge numbers are not allowed"
    assert error_of(unit, True).found is True  # a bool is no number
    steps = Int(low=1, high=100, multiple_of=4)
    assert steps.parse(8) == 8
    assert steps.expected() == "an int in [1, 100], a multiple of 4"
    assert error_of(steps, 8.0).hint == "write 8"
    assert error_of(steps, 6).expected == steps.expected()


def test_list_items_are_located_inside_the_value() -> None:
    lrs = Floats(low=0, high=10)
    assert lrs.parse([1, 2e-4]) == [1.0, 2e-4]
    err = error_of(lrs, [1e-4, "x"])
    assert (err.at, err.expected) == ("[1]", "a number, or a list of numbers (one per text encoder) in [0, 10]")
    assert err.problem_at("text_encoder_lr").key == "text_encoder_lr[1]"
    assert error_of(Durations(), [10, -1]).problem_at("milestones").key == "milestones[1]"
    assert (
        error_of(KEY_BY_NAME["optimizer_args"].field, ["a=1", "b"]).problem_at("optimizer_args").key
        == "optimizer_args[1]"
    )


def test_strings_choices_and_paths() -> None:
    assert Choice("no", "fp16").parse("fp16") == "fp16"
    assert error_of(Choice("no", "fp16"), "fp61").hint == "did you mean `fp16`?"
    assert Choice("no", "fp16").expected() == 'one of "no", "fp16"'
    assert error_of(Str(non_empty=True), "  ").expected == "a non-empty string"
    assert Str().parse("") == ""
    nul = error_of(Path(), "a\0b")
    assert nul.expected == "a non-empty string (a path) without a NUL character"
    assert nul.found == raw("'a\\x00b' (a string)")

    def no_x(text: str) -> None:
        if "x" in text:
            raise FieldError("a name without x", text)

    assert error_of(Str(rule=no_x), "box").expected == "a name without x"


def test_durations_parse_then_become_steps() -> None:
    ctx = TimeContext(horizon=200, ssr=2.0)
    assert Duration().parse("5%") == DurationValue(0.05, "dur")
    assert Duration().in_steps(DurationValue(10, "ba"), ctx, "k") == 20
    assert Duration(is_warmup=True).in_steps(DurationValue(10, "ba"), ctx, "k") == 10  # warmup is not scaled
    assert Durations().in_steps(Durations().parse([0.5, 10]), ctx, "k") == (20, 100)
    assert error_of(Duration(), 50.0).hint.startswith("write 50 for 50 steps")


def test_resolution_and_bool() -> None:
    res = Resolution(8, 8192, multiple_of=64)
    assert res.parse("512,768") == "512,768"
    assert res.expected() == 'an int (square) or "W,H" in [8, 8192], a multiple of 64'
    assert error_of(res, "512x768").hint == 'write 512 or "512,768"'
    assert error_of(res, 500).expected == res.expected()
    assert Bool().parse(False) is False
    assert error_of(Bool(), 1).expected == "true or false"


def test_json_schema_fragments() -> None:
    assert Float(low=0, low_open=True, high=10).json_schema() == {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 10,
    }
    assert Int(low=1, multiple_of=8).json_schema() == {"type": "integer", "minimum": 1, "multipleOf": 8}
    assert Choice("a", "b").json_schema() == {"type": "string", "enum": ["a", "b"]}
    assert Str(non_empty=True).json_schema() == {"type": "string", "minLength": 1}
    assert Durations().json_schema()["type"] == "array"


def test_form_controls_say_which_input_and_convert_its_content() -> None:
    assert Float(low=0).control(blank=False).kind == "float"
    assert Float(low=0).control(blank=True).kind == "text"  # no concrete default: may stay blank
    assert Int().control(blank=False).shown(3.0) == 3  # Colab's number fields give floats
    assert (Bool().control(False).kind, Choice("a").control(False).options) == ("bool", ("a",))
    listed = Durations().control(blank=False)
    assert (listed.kind, listed.shown((100, "0.3dur")), listed.read("100,0.3dur")) == (
        "list",
        "100, 0.3dur",
        [100, "0.3dur"],
    )
    text = Duration().control(blank=False)
    assert (text.shown(None), text.shown(0.05), text.read(" 2ep "), text.read("")) == ("", "0.05", " 2ep ", None)


def test_text_fields_read_like_toml() -> None:
    assert [parse_text(t) for t in ("", "100", "1e-4", "true", "[1, 2]", "2ep")] == [
        None,
        100,
        1e-4,
        True,
        [1, 2],
        "2ep",
    ]
    assert parse_list("100, 0.5") == [100, 0.5]
    assert [text_of(v) for v in (True, 1e-4, 3, "x")] == ["true", "0.0001", "3", "x"]


def test_param_parse_raises_config_error_keyed_by_its_path() -> None:
    gamma = get_spec("step").param("gamma")
    with pytest.raises(ConfigError) as info:
        gamma.parse(2.0, "lr_scheduler_args.gamma")
    assert str(info.value) == "lr_scheduler_args.gamma: expected a number in (0, 1], got 2.0 (a float)"


def test_a_key_and_a_param_of_one_kind_refuse_alike() -> None:
    """unet_lr (a key) and min_lr (a parameter) are both floats >= 0: the same found and hint."""
    key, param = KEY_BY_NAME["unet_lr"], get_spec("rex").param("min_lr")
    for value in (-1.0, "1e-4", math.inf):
        with pytest.raises(ConfigError) as info:
            param.parse(value, "unet_lr")
        from_param = info.value.problems[0]
        assert from_param.hint  # each of these values gets one
        with pytest.raises(FieldError) as from_key:
            key.parse(value)
        assert from_key.value.problem_at("unet_lr")._replace(expected="") == from_param._replace(expected=""), value


def test_keys_store_durations_and_scheduler_args_as_written() -> None:
    """The resolver reads durations against the run, and args.py the schedule's arguments."""
    assert KEY_BY_NAME["lr_warmup_steps"].parse("2ep") == "2ep"
    assert KEY_BY_NAME["lr_scheduler_args"].parse({"gamma": 0.5}) == {"gamma": 0.5}
    with pytest.raises(FieldError) as table:
        KEY_BY_NAME["learning_rate"].parse({"a": 1})
    assert (table.value.found, table.value.hint) == (raw("a table"), "sections nest one level: write key = value")


def test_every_key_and_param_has_a_field_that_describes_itself() -> None:
    for key in KEYS:
        assert key.field.expected() and key.field.type_text() and key.field.json_schema(), key.name
    for spec in all_specs():
        for param in spec.params:
            assert param.expected() and param.field.json_schema() and param.control().kind, param.name


def test_fields_import_no_widgets() -> None:
    code = "import sys, lora_sched.schedules.fields\nassert 'ipywidgets' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
