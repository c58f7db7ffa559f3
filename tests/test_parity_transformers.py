"""Parity with transformers' schedulers, step by step over s = 0..T, to 1e-9.

Conventions: our num_cycles is sd-scripts' (transformers' num_cycles = n / 2, as kohya passes it);
transformers' WSD warmup starts at min_lr_ratio (we set warmup_start = min_lr_ratio to compare) and
its default decay_type is cosine while ours is linear (every type is compared explicitly).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_lr_close, grid, our_lrs, ours, reference_lrs

pytest.importorskip("transformers")

from transformers.optimization import (
    get_cosine_with_min_lr_schedule_with_warmup,
    get_inverse_sqrt_schedule,
    get_wsd_schedule,
)

from lora_sched.errors import ConfigError


def compare(rs, make, T: int) -> None:
    for lrs in [(1.0, 0.3)] if T > 1000 else [(1.0,), (1.0, 0.3)]:
        assert_lr_close(our_lrs(rs, lrs, T + 1), reference_lrs(make, lrs, T + 1), f"{rs.name} lrs={lrs}")


@pytest.mark.parametrize(("T", "W", "args"), grid([{}, {"timescale": 7}, {"timescale": 1000}]))
def test_inverse_sqrt(T, W, args):
    make = lambda opt: get_inverse_sqrt_schedule(opt, W, timescale=args.get("timescale"))  # noqa: E731
    rs = ours("inverse_sqrt", T, W, args)
    assert rs.params["timescale"] == args.get("timescale", W or 10_000)
    compare(rs, make, T)


COSINE_MIN = [{"min_lr_ratio": 0.1}, {"min_lr_ratio": 0.0, "num_cycles": 0.5}, {"min_lr_ratio": 0.5, "num_cycles": 3}]


@pytest.mark.parametrize(("T", "W", "args"), grid(COSINE_MIN))
@pytest.mark.parametrize("name", ["cosine_with_min_lr", "cosine"])
def test_cosine_with_min_lr(name, T, W, args):
    n, r = args.get("num_cycles", 1.0), args["min_lr_ratio"]
    make = lambda opt: get_cosine_with_min_lr_schedule_with_warmup(  # noqa: E731
        opt, W, T, num_cycles=n / 2, min_lr_rate=r
    )
    compare(ours(name, T, W, args), make, T)


def test_cosine_with_min_lr_requires_the_floor():
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        ours("cosine_with_min_lr", 100, 10)


WSD = [{}, {"decay": 0.5, "min_lr_ratio": 0.1}, {"decay": "100%", "min_lr_ratio": 0.3}]


def _decay_steps(decay, T: int) -> int:
    """The decay length in steps, computed here by hand from the forms used in WSD."""
    if isinstance(decay, str):  # "100%"
        return T
    return int(decay * T) if isinstance(decay, float) else decay


def _wsd_grid() -> list:
    # a decay longer than the T - W steps after warmup is refused by our check (tested below);
    # transformers would start its decay part-way through, in the warmup
    fits = [
        c for c in grid(WSD) if _decay_steps(c.values[2].get("decay", 0.2), c.values[0]) <= c.values[0] - c.values[1]
    ]
    return fits + [
        pytest.param(T, W, {"decay": T - W, "min_lr_ratio": 0.3}, id=f"T{T}-W{W}-full")
        for T, W in [(2, 1), (7, 1), (100, 10), (100, 99), (10007, 1000)]
    ]


@pytest.mark.parametrize(("T", "W", "args"), _wsd_grid())
@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
def test_warmup_stable_decay(decay_type, T, W, args):
    r = args.get("min_lr_ratio", 0.0)
    rs = ours("warmup_stable_decay", T, W, {**args, "decay_type": decay_type}, warmup_start=r)
    D = rs.params["decay"]
    make = lambda opt: get_wsd_schedule(  # noqa: E731
        opt, W, D, num_training_steps=T, decay_type=decay_type, min_lr_ratio=r, num_cycles=0.5
    )
    compare(rs, make, T)


@pytest.mark.parametrize("T", [1, 2, 7, 100])
def test_wsd_without_decay_ends_at_the_floor_at_the_horizon(T):
    """D = 0: transformers holds 1 until T and is at min_lr_ratio from T on."""
    r = 0.25
    rs = ours("wsd", T, 0, {"decay": 0, "min_lr_ratio": r})
    make = lambda opt: get_wsd_schedule(opt, 0, 0, num_training_steps=T, min_lr_ratio=r)  # noqa: E731
    compare(rs, make, T)


@pytest.mark.parametrize(("T", "W", "decay"), [(100, 10, "100%"), (100, 99, 0.2), (7, 6, 0.5), (100, 10, 91)])
def test_wsd_decay_longer_than_the_room_after_warmup_is_an_error(T, W, decay):
    with pytest.raises(ConfigError, match=f"at most the {T - W} steps between warmup and horizon"):
        ours("warmup_stable_decay", T, W, {"decay": decay})


def test_wsd_warmup_start_default_differs_from_transformers():
    """Our warmup starts at 0 (kohya/diffusers); transformers' at min_lr_ratio: different at s = 0 only then."""
    T, W, r = 100, 10, 0.2
    ours_default = ours("warmup_stable_decay", T, W, {"min_lr_ratio": r, "decay_type": "cosine"})
    ref = reference_lrs(lambda opt: get_wsd_schedule(opt, W, 20, num_training_steps=T, min_lr_ratio=r), [1.0], T + 1)[
        :, 0
    ]
    m = ours_default.multipliers(np.arange(T + 1))
    assert m[0] == 0.0 and ref[0] == pytest.approx(r)
    assert_lr_close(m[W:], ref[W:])


def test_past_the_horizon_we_hold_where_transformers_keeps_going():
    """inverse_sqrt keeps decaying in transformers after T; with hold_after_horizon ours holds m(T)."""
    T, run = 100, 130
    rs = ours("inverse_sqrt", T, 10, max_train_steps=run, schedule_steps=T, hold_after_horizon=True)
    ref = reference_lrs(lambda opt: get_inverse_sqrt_schedule(opt, 10), [1.0], run)[:, 0]
    m = rs.multipliers(np.arange(run))
    assert_lr_close(m[: T + 1], ref[: T + 1])
    assert np.all(m[T:] == m[T]) and ref[-1] < m[T]
