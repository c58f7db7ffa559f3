"""Parity with diffusers' schedulers, step by step over s = 0..T, to 1e-9.

The reference is a real torch optimizer driven by diffusers' scheduler; ours is
base_lr x ResolvedSchedule.multipliers(0..T). Conventions that differ on purpose:
our cosine num_cycles is sd-scripts' (diffusers' num_cycles = n / 2); diffusers' constant and
piecewise_constant take no warmup (compared with W = 0; our warmup composition is tested against
the formula in test_composer_formulas.py).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from conftest import HORIZONS, assert_lr_close, grid, our_lrs, ours, reference_lrs

diffusers = pytest.importorskip("diffusers")

from diffusers.optimization import (  # noqa: E402
    get_cosine_schedule_with_warmup,
    get_cosine_with_hard_restarts_schedule_with_warmup,
    get_linear_schedule_with_warmup,
    get_polynomial_decay_schedule_with_warmup,
    get_scheduler,
)


def group_sets(T: int) -> list[tuple[float, ...]]:
    """One param group, and two with different LRs; the longest horizon runs two groups only."""
    return [(1.0, 0.3)] if T > 1000 else [(1.0,), (1.0, 0.3)]


def compare(rs, make, T: int, lrs_sets=None) -> None:
    for lrs in lrs_sets or group_sets(T):
        assert_lr_close(our_lrs(rs, lrs, T + 1), reference_lrs(make, lrs, T + 1), f"{rs.name} lrs={lrs}")


@pytest.mark.parametrize("T", HORIZONS)
def test_constant(T):
    compare(ours("constant", T), lambda opt: get_scheduler("constant", opt), T)


@pytest.mark.parametrize(("T", "W", "args"), grid([{}]))
def test_constant_with_warmup(T, W, args):
    make = lambda opt: get_scheduler("constant_with_warmup", opt, num_warmup_steps=W)  # noqa: E731
    compare(ours("constant_with_warmup", T, W), make, T)
    # our `constant` with a warmup is constant_with_warmup (kohya refuses the warmup there)
    compare(ours("constant", T, W), make, T)


@pytest.mark.parametrize(("T", "W", "args"), grid([{}, {"min_lr_ratio": 0.1}, {"min_lr_ratio": 0.5}]))
def test_linear(T, W, args):
    r = args.get("min_lr_ratio", 0.0)
    if r == 0.0:
        make = lambda opt: get_scheduler("linear", opt, num_warmup_steps=W, num_training_steps=T)  # noqa: E731
    else:
        if "f_min" not in inspect.signature(get_linear_schedule_with_warmup).parameters:
            pytest.skip(f"diffusers {diffusers.__version__}: its get_linear_schedule_with_warmup has no f_min")
        make = lambda opt: get_linear_schedule_with_warmup(opt, W, T, f_min=r)  # noqa: E731
    compare(ours("linear", T, W, args), make, T)


@pytest.mark.parametrize(("T", "W", "args"), grid([{}, {"num_cycles": 0.5}, {"num_cycles": 2.5}]))
def test_cosine(T, W, args):
    n = args.get("num_cycles", 1.0)
    if n == 1.0:  # get_scheduler passes no num_cycles to cosine: diffusers' 0.5 is our 1
        make = lambda opt: get_scheduler("cosine", opt, num_warmup_steps=W, num_training_steps=T)  # noqa: E731
    else:
        make = lambda opt: get_cosine_schedule_with_warmup(opt, W, T, num_cycles=n / 2)  # noqa: E731
    compare(ours("cosine", T, W, args), make, T)


def _restart_grid() -> list:
    # our check refuses more cycles than decay steps (a cycle shorter than one step); tested below
    return [
        c
        for c in grid([{}, {"num_cycles": 3}, {"num_cycles": 5}])
        if c.values[2].get("num_cycles", 1) <= c.values[0] - c.values[1]
    ]


@pytest.mark.parametrize(("T", "W", "args"), _restart_grid())
def test_cosine_with_restarts(T, W, args):
    n = args.get("num_cycles", 1)
    make = lambda opt: get_scheduler(  # noqa: E731
        "cosine_with_restarts", opt, num_warmup_steps=W, num_training_steps=T, num_cycles=n
    )
    compare(ours("cosine_with_restarts", T, W, args), make, T)


def test_cosine_with_restarts_refuses_cycles_shorter_than_a_step():
    from lora_sched.errors import ConfigError

    with pytest.raises(ConfigError, match="num_cycles"):
        ours("cosine_with_restarts", 7, 5, {"num_cycles": 3})


POLY = [{}, {"power": 2.0}, {"power": 0.5, "lr_end": 0.01}]


@pytest.mark.parametrize(("T", "W", "args"), grid(POLY))
def test_polynomial(T, W, args):
    power, lr_end = args.get("power", 1.0), args.get("lr_end", 1e-7)
    if lr_end == 1e-7:
        make = lambda opt: get_scheduler(  # noqa: E731
            "polynomial", opt, num_warmup_steps=W, num_training_steps=T, power=power
        )
    else:
        make = lambda opt: get_polynomial_decay_schedule_with_warmup(  # noqa: E731
            opt, W, T, lr_end=lr_end, power=power
        )
    # lr_end is absolute: diffusers divides by the optimizer's default LR, which is group 0's here
    for lrs in ([0.5], [0.5, 0.2]) if T <= 1000 else ([0.5, 0.2],):
        rs = ours("polynomial", T, W, args, base_lr=lrs[0])
        assert_lr_close(our_lrs(rs, lrs, T + 1), reference_lrs(make, lrs, T + 1))


RULES = ["1", "1:10,0.1:20,0.01", "0.5:3,2:1,0.25:5000,0.125"]


@pytest.mark.parametrize("T", HORIZONS)
@pytest.mark.parametrize("rules", RULES)
def test_piecewise_constant(T, rules):
    make = lambda opt: get_scheduler("piecewise_constant", opt, step_rules=rules)  # noqa: E731
    compare(ours("piecewise_constant", T, 0, {"step_rules": rules}), make, T)


# ---- traps past the horizon: diffusers' cosine climbs back up, its hard restarts drop to 0 ----


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("cosine", lambda opt, T: get_scheduler("cosine", opt, num_warmup_steps=10, num_training_steps=T)),
        (
            "cosine_with_restarts",
            lambda opt, T: get_scheduler(
                "cosine_with_restarts", opt, num_warmup_steps=10, num_training_steps=T, num_cycles=3
            ),
        ),
        ("linear", lambda opt, T: get_scheduler("linear", opt, num_warmup_steps=10, num_training_steps=T)),
    ],
)
def test_hold_after_horizon_is_not_the_reference_trap(name, make):
    T, run = 100, 160
    args = {"num_cycles": 3} if name == "cosine_with_restarts" else {}
    rs = ours(name, T, 10, args, max_train_steps=run, schedule_steps=T, hold_after_horizon=True)
    m = rs.multipliers(np.arange(run))
    ref = reference_lrs(lambda opt: make(opt, T), [1.0], run)[:, 0]
    assert_lr_close(m[: T + 1], ref[: T + 1])  # same curve up to the horizon
    assert np.all(m[T:] == m[T])  # then we hold m(T)
    assert m[T] == pytest.approx(0.0, abs=1e-12)
    if name == "cosine":
        assert ref[-1] > 0.1  # diffusers climbs back: the trap
    if name == "cosine_with_restarts":
        assert np.all(ref[T:] == 0.0)  # diffusers' 0 after T equals our floor 0 here; with a floor we hold r
        rs_floor = ours(
            name,
            T,
            10,
            {"num_cycles": 3, "min_lr_ratio": 0.2},
            max_train_steps=run,
            schedule_steps=T,
            hold_after_horizon=True,
        )
        assert np.allclose(rs_floor.multipliers(np.arange(T, run)), 0.2, rtol=0, atol=1e-15)


def test_huge_horizon_subset_matches_the_closed_form():
    """T = 1e7: evaluate a subset of steps and check them against diffusers' lambdas computed directly."""
    T, W = 10_000_000, 100_000
    steps = np.array([0, 1, W - 1, W, W + 1, T // 3, T // 2, T - 1, T])
    rs = ours("cosine", T, W, {"num_cycles": 1.5})
    lam = get_cosine_schedule_with_warmup(_opt(), W, T, num_cycles=0.75).lr_lambdas[0]
    assert_lr_close(rs.multipliers(steps), np.array([lam(int(s)) for s in steps]))
    rs = ours("cosine_with_restarts", T, W, {"num_cycles": 4})
    lam = get_cosine_with_hard_restarts_schedule_with_warmup(_opt(), W, T, num_cycles=4).lr_lambdas[0]
    assert_lr_close(rs.multipliers(steps), np.array([lam(int(s)) for s in steps]))
    rs = ours("linear", T, W)
    lam = get_scheduler("linear", _opt(), num_warmup_steps=W, num_training_steps=T).lr_lambdas[0]
    assert_lr_close(rs.multipliers(steps), np.array([lam(int(s)) for s in steps]))
    assert math.isclose(rs.multiplier(T // 2), (T - T // 2) / (T - W), rel_tol=1e-12)


def _opt():
    import torch

    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
