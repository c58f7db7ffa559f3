"""`register` refuses schedule specs whose parameters would collide with the torch adapter."""

from __future__ import annotations

import pytest

from lora_sched.schedules import Param, ScheduleSpec, all_names, all_specs, register
from lora_sched.schedules.spec import ADAPTER_KEYWORDS


def _flat(s, rs):
    """m(s) = 1"""
    return s * 0 + 1.0


def _spec(name: str, param: Param) -> ScheduleSpec:
    return ScheduleSpec(name=name, summary="test only", params=(param,), curve=_flat, reference="none")


@pytest.mark.parametrize("keyword", ["horizon", "warmup", "base_lr", "run_length", "num_processes", "schedule"])
def test_param_named_like_an_adapter_keyword_is_refused(keyword: str):
    spec = _spec("test_collides", Param(keyword, "float", "clashes", default=1.0))
    with pytest.raises(ValueError, match=rf"parameter name '{keyword}' is a keyword of the torch adapter"):
        register(spec)
    assert "test_collides" not in all_names()


def test_param_alias_named_like_an_adapter_keyword_is_refused():
    spec = _spec("test_alias_collides", Param("span", "float", "clashes", default=1.0, aliases=("warmup_start",)))
    with pytest.raises(ValueError, match="parameter name 'warmup_start'"):
        register(spec)
    assert "test_alias_collides" not in all_names()


def test_no_catalogue_parameter_collides():
    names = {n for spec in all_specs() for p in spec.params for n in (p.name, *p.aliases)}
    assert names.isdisjoint(ADAPTER_KEYWORDS)
