"""REX: kohya-colab's "rex" (LoRA_Easy RexAnnealingWarmRestarts) and pytorch_optimizer's REX (d = 0.5).

kohya-colab maps "rex" to lr_scheduler_type = RexAnnealingWarmRestarts with min_lr = 1e-9,
gamma = 0.9, d = 0.9, first_cycle_max_steps = steps // num_cycles and
warmup_steps = round(steps x warmup_ratio) // num_cycles: for 1000 steps, 3 cycles and a 5% warmup
ratio that is cycles of 333 steps with a 16-step warmup each, and a fourth cycle from step 999.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ours

LR, MIN_LR, T = 3e-4, 1e-9, 1000
KOHYA_COLAB_REX = {
    "num_cycles": 3,
    "restart_decay": 0.9,
    "d": 0.9,
    "cycle_warmup": 16,
    "min_lr_ratio": MIN_LR / LR,
}


class LoraEasyRexModel:
    """A step-by-step model of LoRA_Easy's RexAnnealingWarmRestarts for one param group.

    Facts the class has: each call advances a counter inside the current cycle; when the counter
    reaches the cycle length the cycle index goes up, the counter wraps and the peak becomes
    lr x gamma^cycle; the floor is min_lr when min_lr < lr, else 0; within a cycle the LR rises
    linearly from the floor to the peak over warmup_steps, then follows REX from the peak to the
    floor over the rest of the cycle; a peak at or below the floor gives the floor.
    """

    def __init__(self, lr: float, gamma: float, cycle_steps: int, min_lr: float, warmup: int, d: float) -> None:
        self.lr, self.gamma, self.warmup, self.d = lr, gamma, warmup, d
        self.floor = min_lr if min_lr < lr else 0.0
        self.length = cycle_steps
        self.cycle = 0
        self.pos = -1
        self.peak = lr

    def next_lr(self) -> float:
        self.pos += 1
        if self.pos >= self.length:
            self.pos -= self.length
            self.cycle += 1
            self.peak = self.lr * self.gamma**self.cycle
        if self.peak <= self.floor:
            return self.floor
        span = self.peak - self.floor
        if self.pos < self.warmup:
            return self.floor + span * self.pos / self.warmup
        t = (self.pos - self.warmup) / (self.length - self.warmup)
        return self.floor + span * (1 - t) / ((1 - self.d) + self.d * (1 - t))


def kohya_colab_rex():
    return ours("rex", T, 0, KOHYA_COLAB_REX, base_lr=LR)


def test_kohya_colab_rex_hand_values():
    rs = kohya_colab_rex()
    assert rs.params["cycle_steps"] in (None, 333)
    m = rs.multipliers(np.arange(T + 1))
    r = MIN_LR / LR
    assert m[0] == pytest.approx(r, abs=1e-15)  # each cycle starts at the floor
    assert m[8] == pytest.approx(r + (1 - r) * 8 / 16, rel=1e-12)  # halfway up the first cycle's warmup
    assert m[16] == pytest.approx(1.0, rel=1e-12)  # peak 1.0 after 16 warmup steps
    # step 300: 284 of the 317 decay steps done, 1 - q = 33/317
    left = 33 / 317
    assert m[300] == pytest.approx(r + (1 - r) * left / (0.1 + 0.9 * left), rel=1e-12)
    assert m[300] == pytest.approx(0.5374, abs=1e-4)
    assert m[332] == pytest.approx(0.0307, abs=1e-4)  # last step of cycle 1: 1 - q = 1/317
    assert m[333] == pytest.approx(0.0, abs=1e-5)  # cycle 2 starts at the floor
    assert m[349] == pytest.approx(0.9, rel=1e-12)  # second peak 0.9
    assert m[682] == pytest.approx(0.81, rel=1e-12)  # third peak 0.81 (666 + 16)
    assert m[999] == pytest.approx(r, abs=1e-15)  # a fourth cycle starts at step 999 ...
    assert m[998] > 10 * m[999]  # ... right after the third one's low end
    assert m[T] == pytest.approx(r, abs=1e-15)


def test_kohya_colab_rex_matches_lora_easy_class_every_step():
    model = LoraEasyRexModel(LR, gamma=0.9, cycle_steps=333, min_lr=MIN_LR, warmup=16, d=0.9)
    expected = np.array([model.next_lr() for _ in range(T)])
    got = LR * kohya_colab_rex().multipliers(np.arange(T))
    # LRs are ~3e-4: a relative tolerance of 1e-9 (the floor 1e-9 itself is exact to 1e-15)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(
    ("steps", "cycles", "warmup", "gamma", "d", "min_lr"),
    [
        (100, 1, 0, 1.0, 0.9, 0.0),
        (101, 2, 5, 0.5, 0.7, 1e-5),
        (7, 3, 1, 0.9, 0.9, 1e-6),
        (5000, 4, 100, 0.8, 0.95, 1e-4),
        (10, 2, 0, 0.01, 0.5, 2e-4),  # the third "cycle" peaks below the floor: the class holds min_lr
    ],
)
def test_rex_with_restarts_matches_lora_easy_class(steps, cycles, warmup, gamma, d, min_lr):
    length = steps // cycles
    model = LoraEasyRexModel(LR, gamma=gamma, cycle_steps=length, min_lr=min_lr, warmup=warmup, d=d)
    expected = np.array([model.next_lr() for _ in range(steps)])
    args = {"num_cycles": cycles, "restart_decay": gamma, "d": d, "cycle_warmup": warmup, "min_lr_ratio": min_lr / LR}
    got = LR * ours("rex", steps, 0, args, base_lr=LR).multipliers(np.arange(steps))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


def test_cycle_steps_alias_first_cycle_max_steps():
    rs = ours("rex", T, 0, {**KOHYA_COLAB_REX, "num_cycles": 1, "first_cycle_max_steps": 333}, base_lr=LR)
    assert rs.params["cycle_steps"] == 333
    np.testing.assert_allclose(
        rs.multipliers(np.arange(T)), kohya_colab_rex().multipliers(np.arange(T)), rtol=1e-12, atol=1e-15
    )


def test_pytorch_optimizer_rex_d_half_hand_values():
    """d = 0.5, one cycle, no warmup: m = (1 - p) / (1 - p / 2) from 1 to 0, the floor from total_steps on."""
    rs = ours("rex", 100, 0, {"d": 0.5})
    s = np.array([0, 10, 50, 90, 99, 100])
    want = [1.0, 0.9 / 0.95, 0.5 / 0.75, 0.1 / 0.55, 0.01 / 0.505, 0.0]
    np.testing.assert_allclose(rs.multipliers(s), want, rtol=1e-12, atol=1e-15)
    # with a floor: min + (max - min) f, and exactly the floor at step >= total_steps
    rs = ours(
        "rex", 100, 0, {"d": 0.5, "min_lr_ratio": 0.1}, max_train_steps=120, schedule_steps=100, hold_after_horizon=True
    )
    s = np.array([0, 50, 100, 119])
    np.testing.assert_allclose(rs.multipliers(s), [1.0, 0.1 + 0.9 * 2 / 3, 0.1, 0.1], rtol=1e-12)


def test_rex_d_zero_is_linear_and_paper_default():
    """d = 0 reduces REX to linear decay; the paper's profile (d = 0.5) stays above linear."""
    lin = ours("rex", 64, 0, {"d": 0.0}).multipliers(np.arange(65))
    np.testing.assert_allclose(lin, 1 - np.arange(65) / 64, rtol=0, atol=1e-15)
    half = ours("rex", 64, 0, {"d": 0.5}).multipliers(np.arange(1, 64))
    assert np.all(half > 1 - np.arange(1, 64) / 64)


def test_rex_with_global_warmup_counts_cycles_after_it():
    """A global warmup W comes first; cycles of (T - W) // n steps start at W."""
    rs = ours("rex", 110, 10, {"num_cycles": 2, "d": 0.9})
    m = rs.multipliers(np.arange(111))
    assert m[10] == 1.0 and m[60] == 1.0  # both cycles start at their peak (no cycle warmup)
    np.testing.assert_allclose(m[:10], np.arange(10) / 10, rtol=1e-12)
    left = 1 - 25 / 50
    assert m[35] == pytest.approx(left / (0.1 + 0.9 * left), rel=1e-12)
    assert math.isclose(m[110], 0.0, abs_tol=1e-15)
