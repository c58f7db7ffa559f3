"""Schedules checked against their catalogue formulas with values computed by hand.

Composer-style schedules (polynomial, step, multistep with warmup, exponential with decay_period,
warm restarts), sqrt, warmup composition in front of schedules whose references take none, and
Composer's scale_schedule_ratio (SSR). Every expected number is written out here, not computed
with lora_sched.
"""

from __future__ import annotations

import math

import numpy as np
from conftest import ours

from lora_sched.schedules import ScheduleRequest, TrainingShape, resolve


def at(rs, *steps) -> np.ndarray:
    return rs.multipliers(np.array(steps))


def close(got, want) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_composer_polynomial_with_warmup():
    """Composer PolynomialWithWarmup: alpha_f + (1 - alpha_f)(1 - p)^power after a linear warmup."""
    rs = ours("composer_polynomial", 100, 10, {"power": 2.0, "alpha_f": 0.1})
    # s=5: warmup 5/10 of the way to 1; s=55: p=0.5 -> 0.1 + 0.9 x 0.25; s=82: p=0.8 -> 0.1 + 0.9 x 0.04
    close(at(rs, 0, 5, 10, 55, 82, 100), [0.0, 0.5, 1.0, 0.325, 0.136, 0.1])
    rs = ours("composer_polynomial", 100, 0)  # defaults: power 2, alpha_f 0
    close(at(rs, 0, 50, 90, 100), [1.0, 0.25, 0.01, 0.0])
    rs = ours("composer_polynomial", 9, 1, {"power": 0.5})
    close(at(rs, 0, 1, 5, 9), [0.0, 1.0, math.sqrt(0.5), 0.0])


def test_step_with_warmup():
    """gamma^floor(s / step_size), boundaries absolute; the warmup rises to the value at W."""
    rs = ours("step", 100, 15, {"step_size": 10, "gamma": 0.5})
    # m(15) = 0.5; s=6 -> 0.5 x 6/15 = 0.2; s=20 -> 0.25; s=99 -> 0.5^9
    close(at(rs, 0, 6, 15, 19, 20, 99, 100), [0.0, 0.2, 0.5, 0.5, 0.25, 0.001953125, 0.0009765625])
    rs = ours("step", 100, 0, {"step_size": "25%"})  # a fraction of the horizon, gamma 0.1
    close(at(rs, 0, 24, 25, 74, 75, 100), [1.0, 1.0, 0.1, 0.01, 0.001, 0.0001])


def test_multistep_with_warmup_composer_style():
    """Composer MultiStepWithWarmup: linear warmup, milestones absolute (not shifted by W)."""
    rs = ours("multistep", 100, 10, {"milestones": [30, 60], "gamma": 0.1})
    close(at(rs, 0, 5, 10, 29, 30, 59, 60, 100), [0.0, 0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    rs = ours("multistep", 200, 0, {"milestones": ["0.5dur", 50], "gamma": 0.5})
    assert rs.params["milestones"] == (50, 100)
    close(at(rs, 49, 50, 99, 100, 200), [1.0, 0.5, 0.5, 0.25, 0.25])


def test_exponential_with_decay_period():
    """Composer Exponential: gamma^(s / decay_period), continuous in s."""
    rs = ours("exponential", 100, 0, {"gamma": 0.5, "decay_period": 10})
    close(at(rs, 0, 5, 10, 25, 100), [1.0, 0.7071067811865476, 0.5, 0.17677669529663687, 0.0009765625])
    rs = ours("exponential", 100, 4, {"gamma": 0.9})
    # target at W = 0.9^4 = 0.6561; s = 2: half of it
    close(at(rs, 2, 4, 5), [0.32805, 0.6561, 0.59049])


def test_cosine_annealing_warm_restarts_after_warmup():
    """Cycles of t_0, t_0 t_mult, ... counted from the end of the warmup; r the floor ratio."""
    rs = ours("cosine_annealing_warm_restarts", 100, 5, {"t_0": 10, "t_mult": 2, "min_lr_ratio": 0.2})
    # j = s - 5; cycles [0, 10), [10, 30), [30, 70), [70, 150)
    # s=10: j=5 of 10 -> 0.2 + 0.8 x 0.5; s=15: restart; s=25: j=20, 10 of 20; s=35: restart;
    # s=45: 10 of 40; s=75: restart; s=95: 20 of 80
    quarter = 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4))
    want = [0.4, 1.0, 0.6, 1.0, 0.6, 1.0, quarter, 1.0, quarter]
    close(at(rs, 2, 5, 10, 15, 25, 35, 45, 75, 95), want)
    rs = ours("cosine_annealing_warm_restarts", 12, 0, {"t_0": "0.25dur"})  # t_0 = 3 steps, t_mult 1
    assert rs.params["t_0"] == 3
    close(at(rs, 0, 1, 2, 3, 4, 12), [1.0, 0.75, 0.25, 1.0, 0.75, 1.0])


def test_sqrt_schedule():
    """`scheduled` SqrtSchedule: 1/sqrt(s - W + 1), with an optional cooldown over the last D steps."""
    rs = ours("sqrt", 100, 0)
    close(at(rs, 0, 3, 8, 99, 100), [1.0, 0.5, 1 / 3, 0.1, 1 / math.sqrt(101)])
    rs = ours("sqrt", 100, 4)  # warmup to m(4) = 1, then 1/sqrt(s - 3)
    close(at(rs, 2, 4, 7, 12), [0.5, 1.0, 0.5, 1 / 3])
    rs = ours("sqrt", 100, 0, {"decay": 20})  # cooldown from m(80) = 1/9 to 0 over 20 steps
    close(at(rs, 79, 80, 90, 95, 100), [1 / math.sqrt(80), 1 / 9, 1 / 18, 1 / 36, 0.0])
    rs = ours("sqrt", 100, 0, {"decay": 0.2, "decay_type": "1-sqrt", "min_lr_ratio": 0.01})
    # q = 0.25 at s = 85: 0.01 + (1/9 - 0.01)(1 - 0.5)
    close(at(rs, 80, 85, 100), [1 / 9, 0.01 + (1 / 9 - 0.01) * 0.5, 0.01])


def test_wsd_formula_each_decay_type():
    rs = ours("wsd", 100, 10, {"decay": 40, "decay_type": "cosine", "min_lr_ratio": 0.1})
    # stable until 60; q = (s - 60) / 40: s=70 -> q=0.25, cosine 0.5(1 + cos(pi/4))
    close(at(rs, 5, 10, 59, 60, 70, 80, 100), [0.5, 1.0, 1.0, 1.0, 0.1 + 0.9 * 0.5 * (1 + math.sqrt(0.5)), 0.55, 0.1])
    rs = ours("wsd", 100, 0, {"decay": 40, "decay_type": "1-sqrt"})
    close(at(rs, 70, 90, 100), [0.5, 1 - math.sqrt(0.75), 0.0])


def test_warmup_composition_in_front_of_reference_without_warmup():
    """diffusers' piecewise_constant takes no warmup: ours rises to the rule's value at W (rules stay absolute)."""
    rs = ours("piecewise_constant", 50, 15, {"step_rules": "1:10,0.1:20,0.01"})
    close(at(rs, 0, 5, 15, 19, 20, 50), [0.0, 0.1 / 3, 0.1, 0.1, 0.01, 0.01])
    # cosine-shaped warmup from warmup_start 0.2: 0.2 + (1 - 0.2) 0.5 (1 - cos(pi s / W))
    rs = ours("constant", 10, 4, warmup_start=0.2, warmup_type="cosine")
    close(
        at(rs, 0, 1, 2, 3, 4),
        [0.2, 0.2 + 0.8 * 0.5 * (1 - math.sqrt(0.5)), 0.6, 0.2 + 0.8 * 0.5 * (1 + math.sqrt(0.5)), 1.0],
    )


def test_inverse_sqrt_formula():
    rs = ours("inverse_sqrt", 100, 4)  # timescale = W = 4: 1 / sqrt(s / 4)
    close(at(rs, 2, 4, 16, 100), [0.5, 1.0, 0.5, 0.2])
    rs = ours("inverse_sqrt", 100, 0, {"timescale": 9})
    close(at(rs, 0, 27, 72), [1.0, 0.5, 1 / 3])


# ---- Composer's scale_schedule_ratio ----


def test_ssr_composer_doc_example():
    """MultiStepWithWarmup(t_warmup=4ep, milestones=[10ep, 20ep]) with SSR 0.5:
    warmup stays 4ep, milestones become 5ep and 10ep (100 steps per epoch, 30 epochs -> 1500 steps)."""
    shape = TrainingShape(steps_per_epoch=100, samples_per_step=4)
    req = ScheduleRequest(
        "multistep",
        args={"milestones": ["10ep", "20ep"], "gamma": 0.1},
        warmup="4ep",
        max_train_epochs=30,
        scale_schedule_ratio=0.5,
    )
    rs = resolve(req, shape)
    assert (rs.run_length, rs.horizon, rs.warmup) == (1500, 1500, 400)
    assert rs.params["milestones"] == (500, 1000)
    close(at(rs, 200, 400, 499, 500, 1000), [0.5, 1.0, 1.0, 0.1, 0.01])
    req.scale_warmup = True
    assert resolve(req, shape).warmup == 200


def test_ssr_dur_follows_the_scaled_horizon_and_floors_after_scaling():
    shape = TrainingShape(steps_per_epoch=10, samples_per_step=8)
    rs = resolve(
        ScheduleRequest(
            "step",
            args={"step_size": "0.3dur"},
            warmup="80sp",  # 10 steps, not scaled
            max_train_steps=101,
            scale_schedule_ratio=0.7,
        ),
        shape,
    )
    # horizon floor(101 x 0.7) = 70; 0.3dur of the scaled horizon = 21
    assert (rs.horizon, rs.params["step_size"], rs.warmup) == (70, 21, 10)
    rs = resolve(ScheduleRequest("step", args={"step_size": 7}, max_train_steps=7, scale_schedule_ratio=0.3))
    assert (rs.horizon, rs.params["step_size"]) == (2, 2)  # floor(2.1) both
    rs = resolve(ScheduleRequest("cosine", warmup=3, max_train_steps=10, scale_schedule_ratio=2.5, scale_warmup=True))
    assert (rs.horizon, rs.warmup) == (25, 7)  # floor(7.5)


def test_cosine_with_restarts_floor_decay_and_cycle_warmup():
    """r + (1 - r) g^k 0.5 (1 + cos(pi u)), u measured after each cycle's own warmup (no reference has these)."""
    rs = ours("cosine_with_restarts", 40, 0, {"num_cycles": 2, "min_lr_ratio": 0.1, "gamma": 0.5, "cycle_warmup": 2})
    # cycles of 20 steps: warmup offsets 0, 1 -> ramp 0, 1/2; then u = (offset - 2) / 18
    # s=11: u = 0.5 -> shape 0.5; s=20: cycle 1 starts at the floor; s=22: peak 0.5; s=31: 0.5 x 0.5
    close(
        at(rs, 0, 1, 2, 11, 20, 21, 22, 31, 39, 40),
        [
            0.1,
            0.55,
            1.0,
            0.55,
            0.1,
            0.1 + 0.9 * 0.5 * 0.5,
            0.1 + 0.9 * 0.5,
            0.325,
            0.1 + 0.9 * 0.5 * 0.5 * (1 + math.cos(math.pi * 17 / 18)),
            0.1,
        ],
    )
