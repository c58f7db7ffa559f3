"""A warmup sd-scripts refuses (constant, custom classes): trained by lora-sched, with a warning."""

from __future__ import annotations

import pytest

from lora_sched.api import loads_config


def _warnings(text: str) -> list[str]:
    return [f"{p.key}: {p.severity}" for p in loads_config(text).warnings if p.severity == "warning"]


@pytest.mark.parametrize(
    "schedule",
    ['lr_scheduler = "constant"', 'lr_scheduler_type = "torch.optim.lr_scheduler.ConstantLR"'],
)
def test_a_warmup_sdscripts_refuses_is_a_warning(schedule: str) -> None:
    text = f"{schedule}\nlr_warmup_steps = 10\nmax_train_steps = 100\n"
    assert _warnings(text) == ["lr_warmup_steps: warning"]
    assert _warnings(text.replace("lr_warmup_steps = 10", "lr_warmup_steps = 0")) == []


@pytest.mark.parametrize("schedule", ["constant_with_warmup", "cosine", "linear"])
def test_schedules_that_take_a_warmup_get_no_warning(schedule: str) -> None:
    assert _warnings(f'lr_scheduler = "{schedule}"\nlr_warmup_steps = 10\nmax_train_steps = 100\n') == []
