"""LoraSchedLR: stepping the torch scheduler gives exactly the preview's LRs, for every schedule."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.schedules import ScheduleRequest, all_specs, get_spec, resolve  # noqa: E402
from lora_sched.torch import LoraSchedLR, build_scheduler  # noqa: E402

#: Tuned arguments (non-default ones where a default would hide a bug); a schedule without an
#: entry runs with its spec's example.
ARGS: dict[str, dict] = {
    "linear": {"min_lr_ratio": 0.1},
    "cosine": {"num_cycles": 1.5, "min_lr_ratio": 0.05},
    "cosine_with_min_lr": {"min_lr_ratio": 0.2},
    "one_cycle": {"pct_start": 0.25},
    "cosine_with_restarts": {"num_cycles": 3, "restart_decay": 0.9, "cycle_warmup": 3},
    "rex": {"num_cycles": 3, "restart_decay": 0.9, "cycle_warmup": 2, "d": 0.9},
    # an absolute floor between the two groups' base LRs: each group falls to it from its own LR
    "cosine_warmup_restarts": {"num_cycles": 3, "restart_decay": 0.8, "cycle_warmup": 2, "min_lr": 5e-4},
    "cosine_annealing_warm_restarts": {"t_0": 13, "t_mult": 2, "min_lr_ratio": 0.1},
    "polynomial": {"power": 2.0, "lr_end": 1e-6},
    "composer_polynomial": {"power": 2.0, "alpha_f": 0.1},
    "inverse_sqrt": {"timescale": 7},
    "warmup_stable_decay": {"decay": 0.3, "decay_type": "cosine", "min_lr_ratio": 0.1},
    "sqrt": {"decay": 20, "decay_type": "1-sqrt"},
    "piecewise_constant": {"step_rules": "1:30,0.5:60,0.1"},
    "step": {"step_size": 17, "gamma": 0.5},
    "multistep": {"milestones": [25, 60], "gamma": 0.3},
    "exponential": {"gamma": 0.97},
}


def _optimizer(lrs: tuple[float, ...] = (1e-3, 2.5e-4)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _lrs_by_stepping(sched, optimizer, steps: int) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        sched.step()
    return seen


def _args(name: str) -> dict:
    """The tuned arguments above, else the spec's own example (a new schedule needs no entry)."""
    return dict(ARGS.get(name, get_spec(name).example))


CASES = [(s.name, warmup) for s in all_specs() for warmup in (0, 10) if s.accepts_warmup or not warmup]


@pytest.mark.parametrize(("name", "warmup"), CASES)
def test_stepping_equals_preview(name: str, warmup: int):
    total = 120
    rs = resolve(ScheduleRequest(name, args=_args(name), warmup=warmup, max_train_steps=total, base_lr=1e-3))
    opt = _optimizer()
    sched = build_scheduler(rs, opt)
    seen = _lrs_by_stepping(sched, opt, total)
    for g, base in enumerate((1e-3, 2.5e-4)):
        lrs = rs.group_lrs(base)  # base x m(s); per group when the schedule has an absolute floor
        for s in range(total):
            assert seen[s][g] == pytest.approx(lrs[s], rel=0, abs=1e-12), (name, s, g)


def test_horizon_hold_and_overrun():
    rs = resolve(ScheduleRequest("cosine", max_train_steps=30, schedule_steps=20, hold_after_horizon=True, base_lr=1.0))
    opt = _optimizer((1.0,))
    sched = LoraSchedLR(opt, resolved=rs)
    seen = [row[0] for row in _lrs_by_stepping(sched, opt, 40)]  # 10 steps past the run too
    assert seen[:30] == pytest.approx(rs.multipliers().tolist(), abs=1e-15)
    assert seen[20:] == [0.0] * 20  # holds m(T) = 0; diffusers' cosine climbs back up here


def test_block_boundaries_are_seamless(monkeypatch):
    import lora_sched.torch.scheduler as mod

    monkeypatch.setattr(mod, "BLOCK", 7)
    rs = resolve(ScheduleRequest("linear", warmup=5, max_train_steps=50, base_lr=1.0))
    opt = _optimizer((1.0,))
    seen = [row[0] for row in _lrs_by_stepping(LoraSchedLR(opt, resolved=rs), opt, 50)]
    assert seen == pytest.approx(rs.multipliers().tolist(), abs=1e-15)


def test_flat_kwargs_like_sd_scripts():
    rs = resolve(
        ScheduleRequest(
            "rex",
            args={"num_cycles": 3, "restart_decay": 0.9, "cycle_warmup": 4},
            warmup=0,
            max_train_steps=90,
            base_lr=1e-4,
        )
    )
    opt = _optimizer((1e-4,))
    # strings as an unparsed "key=value" would give them are read as literals
    sched = LoraSchedLR(opt, schedule="rex", horizon="90", num_cycles="3", restart_decay=0.9, cycle_warmup=4)
    assert sched.resolved == rs
    seen = [row[0] for row in _lrs_by_stepping(sched, opt, 90)]
    assert seen == pytest.approx((1e-4 * rs.multipliers()).tolist(), abs=1e-16)
    steps = LoraSchedLR(_optimizer((1e-4,)), schedule="multistep", horizon="40", milestones="[20, 10]", gamma="0.5")
    assert steps.resolved.params["milestones"] == (10, 20) and steps.resolved.params["gamma"] == 0.5
    with pytest.raises(ConfigError, match=r'gamma: expected a number .*, got "half" \(a string\)'):
        LoraSchedLR(_optimizer((1e-4,)), schedule="multistep", horizon="40", milestones="[10]", gamma="half")


def test_flat_kwargs_errors_name_the_argument():
    with pytest.raises(ConfigError, match=r"lr_scheduler_args\.power") as info:
        LoraSchedLR(_optimizer(), schedule="cosine", horizon=100, power=2)
    assert "polynomial" in str(info.value)
    with pytest.raises(ConfigError, match=r"lr_scheduler_args\.schedule"):
        LoraSchedLR(_optimizer(), horizon=100)
    with pytest.raises(ConfigError, match=r"lr_scheduler_args\.horizon"):
        LoraSchedLR(_optimizer(), schedule="cosine")


def test_num_processes_counts_calls_per_update():
    """accelerate steps a prepared scheduler once per process; num_processes=N undoes that."""
    rs = resolve(ScheduleRequest("linear", warmup=4, max_train_steps=20, base_lr=1.0))
    opt = _optimizer((1.0,))
    sched = LoraSchedLR(opt, resolved=rs, num_processes=3)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        for _ in range(3):
            sched.step()
    assert seen == pytest.approx(rs.multipliers().tolist(), abs=1e-15)


@pytest.mark.parametrize(
    "name", ["linear", "cosine", "cosine_with_restarts", "rex", "warmup_stable_decay", "inverse_sqrt"]
)
@pytest.mark.parametrize(("total", "warmup"), [(1, 0), (2, 1), (9, 8), (500, 499)])
def test_edge_lengths(name: str, total: int, warmup: int):
    args = {"decay": 1} if name == "warmup_stable_decay" else {}  # the default 20% does not fit W = T - 1
    rs = resolve(ScheduleRequest(name, args=args, warmup=warmup, max_train_steps=total, base_lr=1.0))
    opt = _optimizer((1.0,))
    seen = [row[0] for row in _lrs_by_stepping(build_scheduler(rs, opt), opt, total)]
    assert seen == pytest.approx(rs.multipliers().tolist(), abs=1e-12)


def test_huge_horizon_evaluates_only_the_blocks_it_reaches():
    rs = resolve(ScheduleRequest("cosine", warmup=1000, max_train_steps=50_000_000, base_lr=1.0))
    opt = _optimizer((1.0,))
    sched = LoraSchedLR(opt, resolved=rs)
    for _ in range(3):
        opt.step()
        sched.step()
    for s in (3, 999, 1000, 25_000_000, 49_999_999):
        assert sched.multiplier(s) == pytest.approx(rs.multiplier(s), abs=1e-15)
    assert [len(curve.block) for curve in sched._curves.values()] == [8192]  # one block cached, not the run


def test_tensor_learning_rates_are_filled_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=torch.tensor(1e-3))
    rs = resolve(ScheduleRequest("linear", warmup=3, max_train_steps=10, base_lr=1e-3))
    sched = LoraSchedLR(opt, resolved=rs)
    lr_tensor = opt.param_groups[0]["lr"]
    seen = []
    for _ in range(10):
        seen.append(float(opt.param_groups[0]["lr"]))
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] is lr_tensor
    assert seen == pytest.approx((1e-3 * rs.multipliers()).tolist(), rel=1e-6)  # float32 tensor


def test_resuming_with_another_number_of_processes_keeps_the_update():
    """num_processes counts calls per update: the curve over updates, and the update reached, stay."""
    import torch

    from lora_sched.schedules import ScheduleRequest, resolve
    from lora_sched.torch import LoraSchedLR

    rs = resolve(ScheduleRequest("cosine", warmup=3, max_train_steps=20))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    two = LoraSchedLR(opt, resolved=rs, num_processes=2)
    for _ in range(14):  # 7 updates
        two.step()
    state = two.state_dict()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    one = LoraSchedLR(opt, resolved=rs, num_processes=1)
    one.load_state_dict(state)
    assert one.last_epoch == 7
    assert opt.param_groups[0]["lr"] == rs.multiplier(7)


def test_adapter_keywords_cover_every_lora_sched_lr_keyword():
    """The schedules layer's ADAPTER_KEYWORDS (what `register` refuses as param names) is the adapter's
    own keyword set: its signature and every non-parameter key the export writes for it."""
    import inspect

    from lora_sched.schedules.spec import ADAPTER_KEYWORDS
    from lora_sched.torch.export import lora_sched_lr_args

    signature = set(inspect.signature(LoraSchedLR.__init__).parameters) - {"self", "kwargs"}
    assert signature <= ADAPTER_KEYWORDS
    rs = resolve(
        ScheduleRequest(
            "rex",
            warmup=5,
            max_train_steps=90,
            schedule_steps=100,
            warmup_start=0.1,
            warmup_type="cosine",
            hold_after_horizon=True,
        )
    )
    frame = set(lora_sched_lr_args(rs, 2)) - set(rs.params)
    assert frame == {
        "schedule",
        "horizon",
        "run_length",
        "warmup",
        "warmup_start",
        "warmup_type",
        "hold_after_horizon",
        "base_lr",
        "num_processes",
    }
    assert frame <= ADAPTER_KEYWORDS
