"""Property tests of the form: every state the widgets allow either saves a valid config or shows an error."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lora_sched.config import load_config
from lora_sched.notebook import SchedulerForm
from lora_sched.schedules import Param, all_specs, get_spec

NAMES = [s.name for s in all_specs()]
DURATIONS = ["0", "1", "10", "40", "0.05", "0.5", "5%", "2ep", "100ba", "64sp", "0.3dur", "50.0", "-3", "1.5", "tok"]
LR_TEXTS = ["1e-4", "2e-4", "5e-5", "0", "-1", "1e-3", "nan", "inf", "11", "abc", "", " 3e-4 "]
TRICKY = st.sampled_from(['a "quoted" name', "back\\slash", "new\nline", "tab\there", "ünï ✨ 日本", "'single'", "]]"])
FREE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.fixture(scope="module")
def form() -> SchedulerForm:
    return SchedulerForm()


def _number(param: Param, integer: bool) -> st.SearchStrategy[Any]:
    """Values near and beyond the bounds, the default, and anything else the widget holds."""
    marks = [v for v in (param.field.low, param.field.high, param.default) if isinstance(v, (int, float))]
    marks += [m + d for m in list(marks) for d in (-1, 1)] + [0, 1, 2, 3]
    if integer:
        return st.one_of(st.sampled_from([int(m) for m in marks]), st.integers(-5, 200))
    return st.one_of(
        st.sampled_from([float(m) for m in marks] + [0.5, 0.9, 1e-7]),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def _param_value(param: Param) -> st.SearchStrategy[Any]:
    kind = param.control().kind
    if kind == "float":
        return _number(param, integer=False)
    if kind == "int":
        return _number(param, integer=True)
    if kind == "bool":
        return st.booleans()
    if kind == "choice":
        return st.sampled_from(param.field.choices)
    if kind == "list":
        return st.lists(st.sampled_from(DURATIONS), max_size=3).map(", ".join) | FREE_TEXT
    if param.field.kind == "str":  # piecewise_constant's step_rules
        return st.sampled_from(["1", "1:50,0.5:100,0.1", "1:x", "0.5:10,0.5:10,1", ""]) | FREE_TEXT
    numeric = st.sampled_from(["", "0.1", "0.99", "1.5", "-2", "5", "100", "abc", "0"])
    return st.sampled_from(DURATIONS) | numeric | FREE_TEXT


#: Values that satisfy the required parameters.
REQUIRED_VALID = {"min_lr_ratio": "0.1", "t_0": "50", "step_size": "40", "milestones": "50, 0.75", "gamma": "0.99"}


def mostly(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a sensible value, sometimes anything the widget holds (about half the states stay valid)."""
    return st.integers(0, 99).flatmap(lambda i: wild if i < 4 else valid)


def _sensible(param: Param) -> st.SearchStrategy[Any]:
    kind = param.control().kind
    if param.required:
        return st.just(REQUIRED_VALID[param.name])
    if kind == "float":
        low = param.field.low if param.field.low is not None else 0.0
        high = param.field.high if param.field.high is not None else low + 10.0
        return st.floats(
            low, min(high, low + 10.0), exclude_min=param.field.low_open, exclude_max=param.field.high_open
        )
    if kind == "int":
        low = int(param.field.low) if param.field.low is not None else 1
        return st.integers(low, low + 3)
    if kind in ("text", "list"):
        return st.sampled_from([param_defaults_of(param), "0", "5", "0.05"])
    return _param_value(param)


def param_defaults_of(param: Param) -> Any:
    return param.form_value(param.default)


@st.composite
def form_states(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(NAMES))
    spec = get_spec(name)
    ints = {  # key: (sensible range, wild range)
        "warmup_steps": ((0, 20), (-3, 250)),
        "max_train_steps": ((30, 400), (-2, 3000)),
        "max_train_epochs": ((1, 6), (-1, 12)),
        "num_images": ((1, 40), (0, 40)),
        "num_repeats": ((1, 4), (0, 4)),
        "train_batch_size": ((1, 6), (0, 6)),
        "gradient_accumulation_steps": ((1, 3), (0, 3)),
        "network_dim": ((1, 64), (-1, 2000)),
        "seed": ((0, 2**32 - 1), (-1, 2**33)),
    }
    state: dict[str, Any] = {
        key: draw(mostly(st.integers(*good), st.integers(*wild))) for key, (good, wild) in ints.items()
    }
    adafactor = name == "adafactor" and draw(st.booleans())
    state |= {
        "lr_scheduler": name,
        "args": {p.name: draw(mostly(_sensible(p), _param_value(p))) for p in spec.params},
        "warmup_mode": draw(st.sampled_from(["steps", "percent"])),
        "warmup_percent": draw(
            mostly(st.floats(0, 20), st.one_of(st.floats(-5, 120), st.sampled_from([99.9, math.nan])))
        ),
        "length_mode": draw(st.sampled_from(["steps", "epochs"])),
        "learning_rate": draw(mostly(st.sampled_from(LR_TEXTS[:3]), st.sampled_from(LR_TEXTS) | FREE_TEXT)),
        "unet_lr": draw(mostly(st.sampled_from(["", "1e-4"]), st.sampled_from(LR_TEXTS))),
        "text_encoder_lr": draw(mostly(st.sampled_from(["", "0", "5e-5"]), st.sampled_from(LR_TEXTS))),
        "output_name": draw(TRICKY | FREE_TEXT.filter(str.strip)),
        "output_dir": draw(TRICKY | FREE_TEXT.filter(str.strip)),
        "resolution": draw(mostly(st.sampled_from(["64", "512,768"]), st.sampled_from(["63", "0", "abc", "", "64.0"]))),
        "network_alpha": draw(mostly(st.floats(0.5, 64), st.floats(allow_nan=True, allow_infinity=True))),
        "mixed_precision": draw(st.sampled_from(["no", "fp16", "bf16"])),
        "optimizer_type": "Adafactor"
        if adafactor
        else draw(
            mostly(st.sampled_from(["AdamW", "Lion", "torch.optim.SGD"]), st.sampled_from(["AdamWW", "", "Adafactor"]))
        ),
        "optimizer_args": "relative_step=True"
        if adafactor
        else draw(
            mostly(
                st.sampled_from(["", "weight_decay=0.1 betas=[0.9,0.99]"]),
                st.sampled_from(['"open', "noequals", "relative_step=True"]),
            )
        ),
    }
    if name in ("one_cycle", "adafactor") and draw(st.booleans()):
        state["warmup_steps"], state["warmup_mode"] = 0, "steps"
    return state


@SETTINGS
@given(state=form_states())
def test_any_widget_state_saves_a_valid_config_or_shows_an_error(form: SchedulerForm, state: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "form.toml"
        form.path.value = str(target)
        form.set_values(state)
        form.save_button.click()
        event("valid" if form.config is not None else "invalid")
        if form.config is not None:
            assert form.error_text == ""
            assert len(form.preview_data["unet"]) == form.resolved.run_length
            loaded = load_config(target)
            assert loaded.values == form.config.values
            for key in ("output_name", "output_dir"):
                assert loaded.values[key] == state[key]
        else:
            assert form.error_text, "an invalid state must say why"
            assert not form.error_text.startswith("internal error"), form.error_text
            assert "Traceback" not in form.error_text
            assert form.preview_data == {}
            assert not target.exists(), "an invalid form must write nothing"
            assert "not saved" in form.status.value


TEXT_KEYS = ("output_name", "output_dir", "train_data_dir", "pretrained_model_name_or_path")


def _refused(key: str, text: str) -> bool:
    """What the config layer refuses in a text field: blank or a NUL; for output_dir a folder name over
    255 bytes; for output_name (a file name inside output_dir) a / or more than 243 bytes."""
    if not text.strip() or "\0" in text:
        return True
    if key == "output_dir":
        return any(len(part.encode()) > 255 for part in text.split("/"))
    return key == "output_name" and ("/" in text or len(text.encode()) > 243)


@SETTINGS
@given(texts=st.tuples(*[TRICKY | st.text(st.characters(exclude_categories=("Cs",)), min_size=1)] * len(TEXT_KEYS)))
def test_text_fields_round_trip_through_the_saved_toml(form: SchedulerForm, texts: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "text.toml"
        form.path.value = str(target)
        form.set_values(
            {"lr_scheduler": "linear", "args": {"min_lr_ratio": 0.0}, "length_mode": "steps", "max_train_steps": 50}
            | {"warmup_mode": "steps", "warmup_steps": 0, "learning_rate": "1e-4", "optimizer_type": "AdamW"}
            | {"optimizer_args": "", "resolution": "64", "train_batch_size": 1, "network_dim": 4}
            | {"network_alpha": 1.0, "seed": 1, "gradient_accumulation_steps": 1, "unet_lr": "", "text_encoder_lr": ""}
            | dict(zip(TEXT_KEYS, texts))
        )
        refused = [k for k, v in zip(TEXT_KEYS, texts) if _refused(k, v)]
        if form.config is None:  # only the texts the config layer refuses
            assert refused and all(k in form.error_text for k in refused), form.error_text
            return
        assert not refused
        form.save_button.click()
        loaded = load_config(target)
        for key, text in zip(TEXT_KEYS, texts):
            assert loaded.values[key] == text
