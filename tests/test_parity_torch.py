"""Parity with torch's own LR schedulers, step by step over s = 0..T, to 1e-9.

torch's StepLR, MultiStepLR, ExponentialLR, CosineAnnealingWarmRestarts and OneCycleLR take no
warmup: they are compared with W = 0 (warmup composition is tested in test_composer_formulas.py).
torch's eta_min is an absolute LR: eta_min = r x base_lr, so two param groups with different LRs
only agree when r = 0. OneCycleLR is compared on steps 0..T-1 (torch extrapolates at T).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import HORIZONS, assert_lr_close, our_lrs, ours, reference_lrs

lr_scheduler = pytest.importorskip("torch.optim.lr_scheduler")

from lora_sched.errors import ConfigError  # noqa: E402


def cases(params: list[dict]) -> list:
    return [pytest.param(T, dict(a), id=f"T{T}-p{i}") for T in HORIZONS for i, a in enumerate(params)]


def compare(rs, make, n: int, T: int, two_groups: bool = True) -> None:
    sets = [(1.0,), (1.0, 0.3)] if T <= 1000 else [(1.0, 0.3)]
    if not two_groups:
        sets = [(1.0,)]
    for lrs in sets:
        assert_lr_close(our_lrs(rs, lrs, n), reference_lrs(make, lrs, n), f"{rs.name} lrs={lrs}")


STEP = [{"step_size": 1}, {"step_size": 3, "gamma": 0.5}, {"step_size": 10, "gamma": 0.9}]


@pytest.mark.parametrize(("T", "args"), cases(STEP))
def test_step(T, args):
    make = lambda opt: lr_scheduler.StepLR(opt, args["step_size"], gamma=args.get("gamma", 0.1))  # noqa: E731
    compare(ours("step", T, 0, args), make, T + 1, T)


MULTI = [
    {"milestones": [0, 5]},
    {"milestones": [50, 3, 3], "gamma": 0.5},
    {"milestones": [1, 2, 6, 99, 5000], "gamma": 0.9},
]


@pytest.mark.parametrize(("T", "args"), cases(MULTI))
def test_multistep(T, args):
    make = lambda opt: lr_scheduler.MultiStepLR(opt, args["milestones"], gamma=args.get("gamma", 0.1))  # noqa: E731
    rs = ours("multistep", T, 0, args)
    assert rs.params["milestones"] == tuple(sorted(args["milestones"]))
    compare(rs, make, T + 1, T)


@pytest.mark.parametrize(("T", "args"), cases([{"gamma": 0.9}, {"gamma": 0.99}, {"gamma": 0.5}]))
def test_exponential(T, args):
    make = lambda opt: lr_scheduler.ExponentialLR(opt, gamma=args["gamma"])  # noqa: E731
    compare(ours("exponential", T, 0, args), make, T + 1, T)


CAWR = [
    {"t_0": 10},
    {"t_0": 3, "t_mult": 2, "min_lr_ratio": 0.1},
    {"t_0": 1, "t_mult": 2},
    {"t_0": 7, "min_lr_ratio": 0.2},
    {"T_0": 5, "T_mult": 3},
]


@pytest.mark.parametrize(("T", "args"), cases(CAWR))
def test_cosine_annealing_warm_restarts(T, args):
    t0 = args.get("t_0", args.get("T_0"))
    tm = args.get("t_mult", args.get("T_mult", 1))
    r = args.get("min_lr_ratio", 0.0)
    base = 1.0
    make = lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=tm, eta_min=r * base)  # noqa: E731
    # torch's eta_min is absolute: one value for every group, so a second group only agrees when r = 0
    compare(ours("cosine_annealing_warm_restarts", T, 0, args, base_lr=base), make, T + 1, T, two_groups=r == 0.0)


def test_cawr_refuses_a_fractional_t_mult():
    with pytest.raises(ConfigError, match="t_mult"):
        ours("cosine_annealing_warm_restarts", 100, 0, {"t_0": 10, "t_mult": 1.5})


ONE_CYCLE = [
    {},
    {"pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 100.0, "anneal_strategy": "linear"},
    {"pct_start": 0.1, "div_factor": 4.0, "final_div_factor": 1e3},
]


def _one_cycle_ref(args: dict, T: int):
    def make(opt):
        lrs = [g["lr"] for g in opt.param_groups]
        return lr_scheduler.OneCycleLR(
            opt,
            max_lr=lrs,
            total_steps=T,
            pct_start=args.get("pct_start", 0.3),
            anneal_strategy=args.get("anneal_strategy", "cos"),
            div_factor=args.get("div_factor", 25.0),
            final_div_factor=args.get("final_div_factor", 1e4),
            three_phase=False,
        )

    return make


@pytest.mark.parametrize(("T", "args"), cases(ONE_CYCLE))
def test_one_cycle(T, args):
    rs = ours("one_cycle", T, 0, args)
    make = _one_cycle_ref(args, T)
    floor = 1.0 / (args.get("div_factor", 25.0) * args.get("final_div_factor", 1e4))
    assert rs.multiplier(T) == pytest.approx(floor, rel=1e-12)  # torch extrapolates at T; we end on the floor
    if float(args.get("pct_start", 0.3) * T) - 1 == 0:
        # torch divides by the zero-length rising phase here and crashes; our curve stays finite
        with pytest.raises(ZeroDivisionError):
            reference_lrs(make, [1.0], T)
        assert np.all(np.isfinite(rs.multipliers(np.arange(T + 1))))
        return
    compare(rs, make, T, T)


@pytest.mark.parametrize(("T", "pct_start"), [(2, 0.5), (10, 0.1), (100, 0.01)])
def test_one_cycle_where_torch_crashes_is_finite(T, pct_start):
    """pct_start x T = 1: torch's first phase has zero length (ZeroDivisionError); ours peaks at step 0."""
    args = {"pct_start": pct_start}
    with pytest.raises(ZeroDivisionError):
        reference_lrs(_one_cycle_ref(args, T), [1.0], T)
    m = ours("one_cycle", T, 0, args).multipliers(np.arange(T + 1))
    assert np.all(np.isfinite(m)) and m[0] == 1.0
    assert m[T] == pytest.approx(1 / 25 / 1e4, rel=1e-12)


def test_one_cycle_refuses_a_warmup():
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        ours("one_cycle", 100, 10)


@pytest.mark.parametrize("name", ["step", "multistep", "exponential", "cosine_annealing_warm_restarts"])
def test_huge_horizon_subset(name):
    """T = 1e7 on a subset of steps, against torch's closed forms computed by hand here."""
    T = 10_000_000
    s = np.array([0, 1, 2, 3, 4_999_999, 9_999_998, 9_999_999, T])
    if name == "step":
        rs, want = ours(name, T, 0, {"step_size": 1_000_000, "gamma": 0.5}), 0.5 ** np.floor(s / 1_000_000)
    elif name == "multistep":
        rs = ours(name, T, 0, {"milestones": [2, 5_000_000], "gamma": 0.5})
        want = np.array([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
    elif name == "exponential":
        rs, want = ours(name, T, 0, {"gamma": 0.9999999}), 0.9999999**s
    else:
        rs = ours(name, T, 0, {"t_0": 1, "t_mult": 2})
        # cycles start at 2^k - 1: 0, 1, 3, 7, ..., 8388607 (k = 23, length 2^23, ending after T)
        starts = [0, 1, 1, 3, 4_194_303, 8_388_607, 8_388_607, 8_388_607]
        lengths = [1, 2, 2, 4, 2**22, 2**23, 2**23, 2**23]
        want = np.array([0.5 * (1 + math.cos(math.pi * (x - a) / n)) for x, a, n in zip(s, starts, lengths)])
    assert_lr_close(rs.multipliers(s), want)


def test_cawr_t_mult_2_matches_torch_long_run_with_floor():
    """Cycle boundaries from the log formula must match torch's counting over many doublings (realistic LR)."""
    T, lr = 10007, 2e-3
    rs = ours("cosine_annealing_warm_restarts", T, 0, {"t_0": 1, "t_mult": 2, "min_lr_ratio": 0.05}, base_lr=lr)
    make = lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2, eta_min=0.05 * lr)  # noqa: E731
    got, ref = our_lrs(rs, [lr], T + 1), reference_lrs(make, [lr], T + 1)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)


def test_one_cycle_holds_its_floor_where_torch_raises():
    T = 50
    rs = ours("one_cycle", T, 0, max_train_steps=T + 10, schedule_steps=T, hold_after_horizon=True)
    with pytest.raises(ValueError, match="Tried to step"):
        reference_lrs(_one_cycle_ref({}, T), [1.0], T + 3)
    m = rs.multipliers(np.arange(T + 10))
    assert np.all(m[T:] == 1 / 25 / 1e4)
    assert_lr_close(m[:T], reference_lrs(_one_cycle_ref({}, T), [1.0], T)[:, 0])
