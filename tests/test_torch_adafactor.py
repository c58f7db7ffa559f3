"""The adafactor schedule: its preview is the step size Adafactor(relative_step=True) really uses."""

from __future__ import annotations

import math

import pytest

from lora_sched.config.adafactor import check_adafactor
from lora_sched.errors import ConfigError
from lora_sched.schedules import ScheduleRequest, resolve


def test_curve_is_the_relative_step_size():
    rs = resolve(ScheduleRequest("adafactor", max_train_steps=20_000, base_lr=1e-4))
    m = rs.multipliers([0, 1, 9_998, 9_999, 10_000, 19_999])
    lr = 1e-4 * m
    assert lr[:4].tolist() == pytest.approx([1e-2] * 4, rel=1e-15)  # capped until 1/sqrt(step) < 1e-2
    assert lr[4] == pytest.approx(1 / math.sqrt(10_001), rel=1e-15)
    assert lr[5] == pytest.approx(1 / math.sqrt(20_000), rel=1e-15)
    warm = resolve(ScheduleRequest("adafactor", args={"warmup_init": True}, max_train_steps=10, base_lr=1e-4))
    assert (1e-4 * warm.multipliers()).tolist() == pytest.approx([1e-6 * (s + 1) for s in range(10)], rel=1e-12)


def test_adafactor_takes_no_warmup():
    with pytest.raises(ConfigError, match="adafactor takes no warmup"):
        resolve(ScheduleRequest("adafactor", warmup=10, max_train_steps=100))


@pytest.mark.parametrize("warmup_init", [False, True])
def test_torch_adapter_logs_the_step_adafactor_takes(warmup_init):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from lora_sched.torch import AdafactorLR, build_scheduler

    rs = resolve(ScheduleRequest("adafactor", args={"warmup_init": warmup_init}, max_train_steps=50, base_lr=1e-4))
    p = torch.nn.Parameter(torch.ones(4, 4))
    opt = transformers.optimization.Adafactor(
        [p], lr=None, relative_step=True, scale_parameter=False, warmup_init=warmup_init
    )
    sched = build_scheduler(rs, opt)
    assert isinstance(sched, AdafactorLR)
    for _ in range(50):
        logged = sched.get_last_lr()[0]
        p.grad = torch.full_like(p, 0.1)
        opt.step()
        used = opt._get_lr(opt.param_groups[0], opt.state[p])  # the step size Adafactor just applied
        assert logged == pytest.approx(used, rel=1e-15)
        sched.step()


OK = ["relative_step=True", "scale_parameter=False"]


@pytest.mark.parametrize(
    ("optimizer_type", "optimizer_args", "scheduler", "sched_args", "key"),
    [
        ("AdamW", [], "adafactor", None, "optimizer_type"),
        ("Adafactor", ["relative_step=False"], "adafactor", None, "optimizer_args.relative_step"),
        ("Adafactor", ["relative_step=1"], "adafactor", None, "optimizer_args.relative_step"),
        ("Adafactor", [*OK, "warmup_init=True"], "adafactor", None, "optimizer_args.warmup_init"),
        ("Adafactor", OK, "adafactor", {"warmup_init": True}, "optimizer_args.warmup_init"),
        ("Adafactor", OK, "cosine", None, "lr_scheduler"),
        ("adafactor", [], "linear", None, "lr_scheduler"),  # relative_step defaults to True
    ],
)
def test_check_adafactor_problems(optimizer_type, optimizer_args, scheduler, sched_args, key):
    problems = check_adafactor(optimizer_type, optimizer_args, scheduler, sched_args)
    assert [p.key for p in problems] == [key]
    assert problems[0].hint or problems[0].expected


@pytest.mark.parametrize(
    ("optimizer_type", "optimizer_args", "scheduler", "sched_args"),
    [
        ("Adafactor", OK, "adafactor", None),
        ("Adafactor", [], "adafactor", None),
        ("Adafactor", [*OK, "warmup_init=True"], "adafactor", {"warmup_init": True}),
        ("Adafactor", ["relative_step=False"], "cosine", None),
        ("AdamW", ["weight_decay=0.01"], "cosine", None),
        ("Adafactor", {"relative_step": True}, "adafactor", None),
    ],
)
def test_check_adafactor_accepts_valid_pairs(optimizer_type, optimizer_args, scheduler, sched_args):
    assert check_adafactor(optimizer_type, optimizer_args, scheduler, sched_args) == []
