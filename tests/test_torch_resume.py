"""Safe resume: a checkpointed scheduler continues the uninterrupted LR sequence, or refuses loudly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lora_sched.api import loads_config  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.torch import LoraSchedLR, ScheduleMismatchError, build_scheduler  # noqa: E402

BASE = """
[optimizer_arguments]
learning_rate = 1e-3
text_encoder_lr = 2e-4
lr_scheduler = "{name}"
lr_warmup_steps = {warmup}
{extra}
[training_arguments]
max_train_steps = {steps}
"""


def _cfg(
    name: str = "cosine_with_restarts", warmup: int = 10, steps: int = 80, extra: str = "lr_scheduler_num_cycles = 3"
):
    return loads_config(BASE.format(name=name, warmup=warmup, steps=steps, extra=extra), source="run.toml")


def _optimizer(cfg) -> torch.optim.Optimizer:
    lrs = cfg.group_lrs()
    groups = [{"params": [torch.nn.Parameter(torch.ones(3))], "lr": lr} for lr in (lrs["unet"], lrs["text_encoder"])]
    return torch.optim.AdamW(groups, lr=lrs["unet"])


def _train(opt, sched, steps: int, loss: float | None = None) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])
        for g in opt.param_groups:
            g["params"][0].grad = torch.ones(3)
        opt.step()
        if loss is None:
            sched.step()
        else:
            sched.step_update(loss)
    return seen


def _uninterrupted(cfg, steps: int) -> list[list[float]]:
    opt = _optimizer(cfg)
    return _train(opt, build_scheduler(cfg, opt), steps)


@pytest.mark.parametrize("k", [0, 1, 9, 10, 11, 47, 79])
@pytest.mark.parametrize("scheduler_first", [True, False])
def test_resume_continues_the_same_lr_sequence(tmp_path, k: int, scheduler_first: bool):
    cfg = _cfg()
    full = _uninterrupted(cfg, 80)
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    head = _train(opt, sched, k)
    path = tmp_path / "ckpt.pt"
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)

    # a fresh process: rebuild from the same config, then load (either order)
    cfg2 = _cfg()
    opt2 = _optimizer(cfg2)
    sched2 = build_scheduler(cfg2, opt2)
    state = torch.load(path, weights_only=True)
    if scheduler_first:
        sched2.load_state_dict(state["scheduler"])
        opt2.load_state_dict(state["optimizer"])
    else:
        opt2.load_state_dict(state["optimizer"])
        sched2.load_state_dict(state["scheduler"])
    tail = _train(opt2, sched2, 80 - k)
    assert head + tail == full  # exact: the same floats, not just close
    assert sched2.last_epoch == 80


def test_changed_schedule_is_refused_with_each_change_named(tmp_path):
    cfg = _cfg()
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    _train(opt, sched, 20)
    state = sched.state_dict()
    changed = _cfg(warmup=15, extra="lr_scheduler_num_cycles = 4")
    sched2 = build_scheduler(changed, _optimizer(changed))
    with pytest.raises(ScheduleMismatchError) as info:
        sched2.load_state_dict(state)
    text = str(info.value)
    assert "schedule.warmup: expected 10 (as in the checkpoint), got 15 in the current config" in text
    assert "schedule.params.num_cycles" in text and "3" in text and "4" in text
    assert "allow_schedule_change=True" in text
    assert isinstance(info.value, ConfigError)
    assert len(info.value.problems) == 2


def test_changed_group_lr_is_a_change_too():
    cfg = _cfg()
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    state = sched.state_dict()
    other = loads_config(
        BASE.format(name="cosine_with_restarts", warmup=10, steps=80, extra="lr_scheduler_num_cycles = 3").replace(
            "text_encoder_lr = 2e-4", "text_encoder_lr = 3e-4"
        ),
        source="run.toml",
    )
    with pytest.raises(ScheduleMismatchError, match=r"param_groups\[1\]\.base_lr"):
        build_scheduler(other, _optimizer(other)).load_state_dict(state)


def test_allow_schedule_change_keeps_the_step_and_uses_the_new_curve():
    cfg = _cfg()
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    _train(opt, sched, 30)
    changed = _cfg(name="linear", warmup=0, extra="")
    opt2 = _optimizer(changed)
    sched2 = build_scheduler(changed, opt2)
    sched2.load_state_dict(sched.state_dict(), allow_schedule_change=True)
    m = changed.resolve().multipliers()
    assert sched2.last_epoch == 30
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([1e-3 * m[30], 2e-4 * m[30]], abs=1e-18)
    nxt = _train(opt2, sched2, 5)
    assert [row[0] for row in nxt] == pytest.approx((1e-3 * m[30:35]).tolist(), abs=1e-18)


def test_longer_run_over_the_same_horizon_is_not_a_change():
    """The run length is not part of the curve (resuming to train further with a hold is allowed)."""
    cfg = _cfg(extra="lr_scheduler_num_cycles = 3\nschedule_steps = 80\n[lora_sched]\nhold_after_horizon = true")
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    _train(opt, sched, 80)
    longer = _cfg(
        steps=120, extra="lr_scheduler_num_cycles = 3\nschedule_steps = 80\n[lora_sched]\nhold_after_horizon = true"
    )
    opt2 = _optimizer(longer)
    sched2 = build_scheduler(longer, opt2)
    sched2.load_state_dict(sched.state_dict())
    assert _train(opt2, sched2, 40) == _uninterrupted(longer, 120)[80:]


def test_foreign_state_is_refused():
    cfg = _cfg()
    opt = _optimizer(cfg)
    plain = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(ConfigError, match="LoraSchedLR"):
        LoraSchedLR(opt, resolved=cfg.resolve()).load_state_dict(plain.state_dict())


CUSTOM = """
[optimizer_arguments]
learning_rate = 1e-3
lr_warmup_steps = 6
lr_scheduler_type = "{cls}"
lr_scheduler_args = {args}
[training_arguments]
max_train_steps = 60
"""


@pytest.mark.parametrize(
    ("cls", "args", "loss"),
    [
        ("StepLR", '["step_size=7", "gamma=0.5"]', None),
        ("CosineAnnealingWarmRestarts", '["T_0=9", "T_mult=2"]', None),
        ("ReduceLROnPlateau", '["patience=0", "factor=0.5"]', 1.0),
    ],
)
def test_custom_class_resume_continues(tmp_path, cls, args, loss):
    text = CUSTOM.format(cls=cls, args=args) + ("[lora_sched]\nplateau_every = 4\n" if loss else "")
    cfg = loads_config(text, source="c.toml")
    opt = _optimizer(cfg)
    full = _train(opt, build_scheduler(cfg, opt), 60, loss)
    opt = _optimizer(cfg)
    sched = build_scheduler(cfg, opt)
    head = _train(opt, sched, 23, loss)
    torch.save({"o": opt.state_dict(), "s": sched.state_dict()}, tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=False)
    opt2 = _optimizer(cfg)
    sched2 = build_scheduler(cfg, opt2)
    opt2.load_state_dict(state["o"])
    sched2.load_state_dict(state["s"])
    assert head + _train(opt2, sched2, 37, loss) == full
    if loss:  # the plateau really reduced the LR (a constant loss never improves)
        assert full[-1][0] < full[10][0]
    changed = loads_config(text.replace("lr_warmup_steps = 6", "lr_warmup_steps = 8"), source="c.toml")
    with pytest.raises(ScheduleMismatchError, match=r"schedule\.warmup"):
        build_scheduler(changed, _optimizer(changed)).load_state_dict(state["s"])
