"""REX: kohya-colab's "rex" (LoRA_Easy RexAnnealingWarmRestarts) and pytorch_optimizer's REX (d = 0.5);
cosine_warmup_restarts (LoRA_Easy CosineAnnealingWarmRestarts).

kohya-colab maps "rex" to lr_scheduler_type = RexAnnealingWarmRestarts with min_lr = 1e-9,
gamma = 0.9, d = 0.9, first_cycle_max_steps = steps // num_cycles and
warmup_steps = round(steps x warmup_ratio) // num_cycles: for 1000 steps, 3 cycles and a 5% warmup
ratio that is cycles of 333 steps with a 16-step warmup each, and a fourth cycle from step 999.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ours

from lora_sched.api import loads_config
from lora_sched.config import preview
from lora_sched.errors import ConfigError

LR, MIN_LR, T = 3e-4, 1e-9, 1000
KOHYA_COLAB_REX = {
    "num_cycles": 3,
    "restart_decay": 0.9,
    "d": 0.9,
    "cycle_warmup": 16,
    "min_lr_ratio": MIN_LR / LR,
}


class LoraEasyCyclesModel:
    """A step-by-step model of one param group under LoRA_Easy's RexAnnealingWarmRestarts
    (shape "rex") or CosineAnnealingWarmRestarts (shape "cosine").

    Facts the classes have: each call advances a counter inside the current cycle; when the counter
    reaches the cycle length the cycle index goes up, the counter wraps, the next length becomes
    round((length - warmup) x cycle_multiplier) + warmup and the peak lr x gamma^cycle; the REX
    class's floor is min_lr when min_lr < lr, else 0, the cosine class's is min_lr always; within a
    cycle the LR rises linearly from the floor to the peak over warmup_steps, then falls from the peak
    towards the floor (REX with curvature d, or half a cosine) over the rest of the cycle; a peak at
    or below the floor gives the floor.
    """

    def __init__(
        self,
        lr: float,
        gamma: float,
        cycle_steps: int,
        min_lr: float,
        warmup: int,
        d: float = 0.9,
        multiplier: float = 1.0,
        shape: str = "rex",
    ) -> None:
        self.lr, self.gamma, self.warmup, self.d, self.multiplier, self.shape = lr, gamma, warmup, d, multiplier, shape
        self.floor = min_lr if shape == "cosine" or min_lr < lr else 0.0
        self.length = cycle_steps
        self.cycle = 0
        self.pos = -1
        self.peak = lr

    def next_lr(self) -> float:
        self.pos += 1
        if self.pos >= self.length:
            self.pos -= self.length
            self.cycle += 1
            self.length = round((self.length - self.warmup) * self.multiplier) + self.warmup
            self.peak = self.lr * self.gamma**self.cycle
        if self.peak <= self.floor:
            return self.floor
        span = self.peak - self.floor
        if self.pos < self.warmup:
            return self.floor + span * self.pos / self.warmup
        t = (self.pos - self.warmup) / (self.length - self.warmup)
        if self.shape == "cosine":
            return self.floor + span * (1 + math.cos(math.pi * t)) / 2
        return self.floor + span * (1 - t) / ((1 - self.d) + self.d * (1 - t))

    def lrs(self, steps: int) -> np.ndarray:
        return np.array([self.next_lr() for _ in range(steps)])


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
    model = LoraEasyCyclesModel(LR, gamma=0.9, cycle_steps=333, min_lr=MIN_LR, warmup=16, d=0.9)
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
    model = LoraEasyCyclesModel(LR, gamma=gamma, cycle_steps=length, min_lr=min_lr, warmup=warmup, d=d)
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


# -- every param group: min_lr is an absolute floor ---------------------------------------------
UNET_LR, TE_LR = 3e-4, 6e-5


def test_kohya_colab_rex_text_encoder_falls_to_the_same_absolute_floor():
    """kohya-colab XL: unet 3e-4, text encoder 6e-5, min_lr 1e-9: both groups start and end at 1e-9."""
    rs = ours("rex", T, 0, {**KOHYA_COLAB_REX, "min_lr_ratio": 0.0, "min_lr": MIN_LR}, base_lr=UNET_LR)
    for lr in (UNET_LR, TE_LR):
        expected = LoraEasyCyclesModel(lr, gamma=0.9, cycle_steps=333, min_lr=MIN_LR, warmup=16).lrs(T)
        got = rs.group_lrs(lr, np.arange(T))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        assert got[0] == MIN_LR and got[999] == MIN_LR  # a ratio of the unet LR would give 2e-10 here
    # step 8, halfway up the first warmup: the floor is not scaled by the group's LR
    assert rs.group_lrs(TE_LR, [8])[0] == pytest.approx(MIN_LR + (TE_LR - MIN_LR) / 2, rel=1e-15)


@pytest.mark.parametrize(
    ("shape", "steps", "first", "warmup", "gamma", "d", "multiplier", "min_lr", "lrs"),
    [
        ("rex", 400, 40, 5, 0.7, 0.8, 1.5, 1e-5, (1e-4, 5e-6)),  # second group below min_lr: no floor
        ("rex", 300, 1, 0, 0.98, 0.9, 1.0, 1e-6, (1e-4, 2e-5)),  # the class's 1-step cycles: lr g^s
        ("rex", 1000, 97, 7, 0.85, 0.95, 0.7, 2e-6, (2e-4, 1e-5, 4e-5)),  # shrinking cycles
        ("cosine", 301, 100, 10, 0.8, 0.0, 1.0, 1e-5, (1e-3, 2e-4, 5e-6)),  # the cosine class holds min_lr
        ("cosine", 500, 64, 3, 0.95, 0.0, 0.6, 1e-7, (1e-4, 3e-5)),  # cycles shrink to their warmup
        ("cosine", 257, 50, 0, 1.0, 0.0, 2.0, 0.0, (1e-3, 1e-4)),
    ],
)
def test_every_group_matches_the_lora_easy_classes(shape, steps, first, warmup, gamma, d, multiplier, min_lr, lrs):
    name = "rex" if shape == "rex" else "cosine_warmup_restarts"
    args = {"cycle_steps": first, "cycle_warmup": warmup, "restart_decay": gamma, "cycle_multiplier": multiplier}
    args["min_lr"] = min_lr
    if shape == "rex":
        args["d"] = d
    rs = ours(name, steps, 0, args, base_lr=lrs[0])
    for lr in lrs:
        model = LoraEasyCyclesModel(lr, gamma, first, min_lr, warmup, d=d, multiplier=multiplier, shape=shape)
        np.testing.assert_allclose(rs.group_lrs(lr, np.arange(steps)), model.lrs(steps), rtol=1e-12, atol=1e-20)


def test_growing_cycles_hand_values():
    """cycle_steps 40, warmup 5, multiplier 1.5: cycles of 40, 57 (round(52.5) = 52, Python rounds
    halves to even, + 5) and 83 (round(78) + 5) steps, as the classes compute them."""
    rs = ours("rex", 200, 0, {"cycle_steps": 40, "cycle_warmup": 5, "cycle_multiplier": 1.5, "restart_decay": 0.5})
    m = rs.multipliers()
    assert (m[40], m[97]) == (0.0, 0.0)  # cycles 2 and 3 start (at their floor) at 40 and 40 + 57
    assert (m[45], m[102]) == (0.5, 0.25)  # ... and peak 5 steps later at 0.5 and 0.25
    assert m[96] > 0 and m[44] == pytest.approx(0.5 * 4 / 5, rel=1e-15)


def test_a_zero_step_cycle_is_an_error_unless_below_the_floor():
    """round(0.5 x 1) = 0: LoRA_Easy's classes divide by zero in a 0-step cycle whose peak is above
    the floor (sd-scripts computes the step after the last update too); below it they hold the floor."""
    with pytest.raises(ConfigError) as err:
        ours("rex", 3, 0, {"cycle_steps": 1, "cycle_multiplier": 0.5})
    (p,) = err.value.problems
    assert p.key == "lr_scheduler_args.cycle_multiplier" and "cycle 1 (from step 1) would last 0 steps" in p.hint
    rs = ours("rex", 3, 0, {"cycle_steps": 1, "cycle_multiplier": 0.5, "restart_decay": 0.1, "min_lr": 0.5})
    np.testing.assert_array_equal(rs.multipliers(), [1.0, 0.5, 0.5])


def test_min_lr_and_min_lr_ratio_are_one_floor():
    with pytest.raises(ConfigError) as err:
        ours("rex", 100, 0, {"min_lr": 1e-6, "min_lr_ratio": 0.1}, base_lr=1e-4)
    assert err.value.problems[0].key == "lr_scheduler_args.min_lr"


# -- the real classes: LRs stepped from LoRA_Easy's code (tools/gen_lora_easy_golden.py) -------
GOLDEN = Path(__file__).parent / "data" / "lora_easy"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


def _class_config(case: dict) -> str:
    args = ", ".join(f'"{k}={v!r}"' for k, v in case["args"].items())
    lrs = case["group_lrs"]
    return (
        f"learning_rate = {lrs[0]!r}\ntext_encoder_lr = {lrs[1]!r}\nmax_train_steps = {case['steps']}\n"
        f'lr_scheduler_type = "LoraEasyCustomOptimizer.{case["class"]}.{case["class"]}"\n'
        f"lr_scheduler_args = [{args}]\n"
    )


def test_golden_files_name_their_source():
    assert MANIFEST["commit"] == "162e56de18e4d4ab96b066380606d657a68c66fa"
    assert set(MANIFEST["files"]) == {"RexAnnealingWarmRestarts", "CosineAnnealingWarmRestarts"}
    assert len(MANIFEST["cases"]) == 5


@pytest.mark.parametrize("case", sorted(MANIFEST["cases"]))
def test_lora_easy_class_config_equals_the_real_class_every_group(case):
    """The class named in a config, read as our schedule: every group's LR equals the class's, step for step."""
    spec = MANIFEST["cases"][case]
    table = np.loadtxt(GOLDEN / f"{case}.csv", delimiter=",", skiprows=1)
    cfg = loads_config(_class_config(spec))
    assert cfg.scheduler_type is None  # a catalogue schedule, not the class
    rs = cfg.resolve()
    assert rs.run_length == spec["steps"] == table.shape[0]
    for i, lr in enumerate(spec["group_lrs"]):
        np.testing.assert_allclose(rs.group_lrs(lr), table[:, i + 1], rtol=1e-12, atol=1e-20, err_msg=f"group {i}")
    c = preview.curve(cfg)
    lrs = c.lrs(c.steps, c.m)  # the preview's two columns are the first two groups
    np.testing.assert_allclose(lrs["unet"], table[:, 1], rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(lrs["text_encoder"], table[:, 2], rtol=1e-12, atol=1e-20)


# -- the classes in a config ------------------------------------------------------------------
def _problems(text: str) -> list:
    with pytest.raises(ConfigError) as err:
        loads_config(text)
    return [p for p in err.value.problems if p.severity == "error"]


REX_PATH = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"
COSINE_PATH = "LoraEasyCustomOptimizer.CosineAnnealingWarmRestarts.CosineAnnealingWarmRestarts"


def test_class_defaults_fill_what_the_file_leaves_out():
    cfg = loads_config(
        f'learning_rate = 1e-4\nmax_train_steps = 50\nlr_scheduler_type = "{COSINE_PATH}"\n'
        'lr_scheduler_args = ["gamma=0.9"]\n'
    )
    rs = cfg.resolve()
    assert rs.name == "cosine_warmup_restarts"
    assert (rs.params["cycle_steps"], rs.params["cycle_warmup"], rs.params["min_lr"]) == (1, 0, 1e-6)
    assert rs.multipliers()[3] == pytest.approx(0.9**3, rel=1e-15)  # 1-step cycles: peaks g^s


def test_a_missing_gamma_or_an_argument_the_class_lacks_is_an_error():
    text = f'learning_rate = 1e-4\nmax_train_steps = 50\nlr_scheduler_type = "{REX_PATH}"\n'
    (p,) = _problems(text + 'lr_scheduler_args = ["min_lr=1e-6"]\n')
    assert p.key == "lr_scheduler_args.gamma" and "needs `gamma`" in p.expected
    found = {p.key: p for p in _problems(text + 'lr_scheduler_args = ["gamma=0.9", "num_cycles=3", "dd=0.5"]\n')}
    assert set(found) == {"lr_scheduler_args.num_cycles", "lr_scheduler_args.dd"}
    assert "did you mean `d`?" in found["lr_scheduler_args.dd"].hint
    (p,) = _problems(text + 'lr_scheduler_args = ["gamma=0.9", "first_cycle_max_steps=10", "warmup_steps=10"]\n')
    assert p.key == "lr_scheduler_args.warmup_steps"  # the class raises ValueError: warmup >= first cycle


def test_torch_cosine_annealing_warm_restarts_stays_torch():
    cfg = loads_config(
        'max_train_steps = 50\nlr_scheduler_type = "CosineAnnealingWarmRestarts"\nlr_scheduler_args = ["T_0=10"]\n'
    )
    assert cfg.scheduler_type == "CosineAnnealingWarmRestarts"


def test_a_zero_step_cycle_in_one_param_group_only_is_an_error():
    """Cycles of 333, 166, 83, 42, 21, 10, 5, 2, 1 and then 0 steps (from step 663): the UNet's peak
    0.3^9 is below its floor 1e-6 / 1e-4 there, so the class holds the floor; the text encoder's LR
    5e-7 is below min_lr, the REX class gives it no floor and divides by zero at that step."""
    text = (
        "learning_rate = 1e-4\ntext_encoder_lr = 5e-7\nmax_train_steps = 1000\n"
        f'lr_scheduler_type = "{REX_PATH}"\n'
        'lr_scheduler_args = ["gamma=0.3", "first_cycle_max_steps=333", "cycle_multiplier=0.5", "min_lr=1e-6"]\n'
    )
    (p,) = _problems(text)
    assert (p.key, p.line) == ("lr_scheduler_args.cycle_multiplier", 5)
    assert p.hint == "cycle 9 (from step 663) would last 0 steps (the param group at LR 5e-07)"
    cfg = loads_config(text.replace("text_encoder_lr = 5e-7", "text_encoder_lr = 2e-6"))
    assert cfg.resolve().group_lrs(2e-6)[999] == 1e-6  # both groups hold the floor through the 0-step cycles


@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_rex_d_half_matches_pytorch_optimizer_rexscheduler_step_by_step(min_lr_ratio):
    """pytorch_optimizer's REXScheduler, one cycle, no warmup, d = 0.5, driven as torch schedulers are
    (the LR of update s is the LR after s step() calls): equal to ours at every step s >= 1.

    Step 0 differs on purpose. torch's scheduler constructor takes the initial step (f(0), the
    peak), then REXScheduler's constructor overwrites the LR with min_lr. We follow f(0) = the peak
    at step 0: REX's profile starts at the peak (the paper, and pytorch_optimizer's own formula at
    progress 0), and with min_lr = 0 the reset would make the first update of every run a no-op.
    """
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer (optimizers extra)")
    torch = pytest.importorskip("torch")
    steps, floor = 100, LR * min_lr_ratio
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    theirs = pytorch_optimizer.REXScheduler(optimizer, total_steps=steps, max_lr=LR, min_lr=floor)
    reference = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps + 5):
        theirs.step()
        reference.append(optimizer.param_groups[0]["lr"])
    rs = ours("rex", steps, 0, {"d": 0.5, "min_lr_ratio": min_lr_ratio})
    mine = LR * rs.multipliers(np.arange(steps + 1))
    np.testing.assert_allclose(mine[1:], reference[1 : steps + 1], rtol=1e-12, atol=1e-18)
    assert reference[0] == floor and mine[0] == LR  # theirs: the constructor's reset; ours: the peak
    assert reference[steps:] == [floor] * 6  # both hold the floor from total_steps on
    assert mine[steps] == pytest.approx(floor, abs=1e-18)
