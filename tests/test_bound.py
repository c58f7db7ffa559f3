"""The convex bound against two independent references and the paper's numbers.

The `scheduled` package (fabian-sp/lr-scheduling) is not installable here: the PyPI name `scheduled`
belongs to an unrelated placeholder. So the references are written out below:

* `direct_bound`: the Theorem's formula transcribed term by term, O(T^2), every sum with math.fsum;
* `prefix_bound`: the way `scheduled`'s `ScheduleBase._compute_refined_rate` and
  `compute_optimal_base` compute it (suffix sums as the total minus a running prefix sum).

That package's algorithm runs here in extended precision (np.longdouble): in float64 its
"total minus prefix" suffix sums lose digits to cancellation when the last step sizes are tiny
next to their sum (cosine ends at ~(pi/2T)^2: at T = 4000 its term 3 is off by 2e-6 relative),
while ours accumulates suffix sums from the end and stays within 1e-14 of the exact value.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_sched.analysis import (
    BoundTerms,
    bound_over_time,
    bound_summary,
    bound_terms,
    optimal_scale,
    sample_steps,
    schedule_bound,
    step_sizes,
    transfer_lr,
)
from lora_sched.analysis.bound import bound, suffix_sums
from lora_sched.analysis.bound import harmonic as bound_harmonic
from lora_sched.schedules import ScheduleRequest, resolve

REL = 1e-9


# ---------------------------------------------------------------- references


def direct_bound(eta, D=1.0, G=1.0) -> tuple[float, float, float]:
    """Omega_T's three terms, straight from the formula (O(T^2))."""
    eta = [float(e) for e in eta]
    T = len(eta)
    g = [float(G)] * T if np.ndim(G) == 0 else [float(x) for x in G]
    sq = [eta[t] ** 2 * g[t] ** 2 for t in range(T)]
    S = math.fsum(eta)
    if S == 0:
        return math.inf, 0.0, 0.0
    t1 = D**2 / (2 * S)
    t2 = math.fsum(sq) / (2 * S)
    parts = []
    for k in range(T - 1):  # k = 1..T-1 in the paper's numbering
        if eta[k] == 0:
            continue
        after = math.fsum(eta[k + 1 :])
        if after == 0:
            return t1, t2, math.inf
        # the ratio last: eta_k / after alone can overflow (4 / 2.2e-308) where the whole term is 0
        parts.append(eta[k] * (math.fsum(sq[k:]) / math.fsum(eta[k:])) / after)
    return t1, t2, 0.5 * math.fsum(parts)


def prefix_bound(eta, D=1.0, G=1.0, dtype=np.longdouble) -> tuple[float, float, float]:
    """`scheduled`'s refined rate: alpha_k = S - cumsum_k, beta_k = alpha_k + eta_k,
    gamma_k = total - cumsum_k + (eta_k G_k)^2; term 3 = 0.5 sum_{k < T} eta_k / alpha_k * gamma_k / beta_k."""
    eta = np.asarray(eta, dtype=dtype)
    sq = eta**2 * np.asarray(G, dtype=dtype) ** 2
    total, total_sq = eta.sum(), sq.sum()
    alpha = total - eta.cumsum()
    alpha[-1] += 1e-10  # the package's guard; the last entry is not summed
    beta = alpha + eta
    gam = total_sq - sq.cumsum() + sq
    t3 = 0.5 * ((eta / alpha) * (gam / beta))[:-1].sum()
    return float(D**2 / (2 * total)), float(total_sq / (2 * total)), float(t3)


def prefix_optimal(m, D=1.0, G=1.0) -> tuple[float, float]:
    """`scheduled`'s compute_optimal_base: terms at base LR 1, then sqrt(t1/(t2+t3)), 2 sqrt(t1 (t2+t3))."""
    t1, t2, t3 = prefix_bound(m, D, G)
    return math.sqrt(t1 / (t2 + t3)), 2 * math.sqrt(t1 * (t2 + t3))


def harmonic(n: int) -> float:
    return math.fsum(1.0 / i for i in range(1, n + 1))


def multipliers(name: str, T: int, warmup=0, **args) -> np.ndarray:
    """m(s), s = 0..T-1, of a catalogue schedule over horizon T."""
    return resolve(ScheduleRequest(name, args=args, warmup=warmup, max_train_steps=T)).multipliers()


def assert_terms(actual: BoundTerms, expected, rel=REL) -> None:
    for name, a, e in zip(("t1", "t2", "t3"), (actual.t1, actual.t2, actual.t3), expected):
        assert a == pytest.approx(e, rel=rel, abs=0), f"{name}: {a!r} != {e!r}"


SCHEDULES = [
    ("constant", {}, 0),
    ("linear", {}, 0),
    ("cosine", {}, 0),
    ("warmup_stable_decay", {"decay": 0.2, "decay_type": "linear"}, 0),
    ("warmup_stable_decay", {"decay": 0.3, "decay_type": "1-sqrt"}, 0.05),
    ("cosine", {"min_lr_ratio": 0.1}, 0.1),
    ("inverse_sqrt", {}, 50),
    ("sqrt", {"decay": 0.2}, 0),
    ("rex", {}, 20),
    ("step", {"step_size": 100, "gamma": 0.5}, 0),
    ("one_cycle", {}, 0),
]


# ---------------------------------------------------------------- agreement with the references


@pytest.mark.parametrize("T", [1, 2, 3, 57, 1000])
@pytest.mark.parametrize(("name", "args", "warmup"), SCHEDULES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SCHEDULES)])
def test_terms_match_both_references_on_catalogue_arrays(T, name, args, warmup):
    if warmup and (warmup if isinstance(warmup, int) else int(warmup * T)) >= T:
        warmup = 0
    if name in ("warmup_stable_decay", "sqrt") and T < 5:
        args = {**args, "decay": 1} if T > 1 else {**args, "decay": 0}
    if name == "step":
        args = {**args, "step_size": max(1, T // 7)}
    m = multipliers(name, T, warmup, **args)
    for D, G, lr in ((1.0, 1.0, 1.0), (3.0, 0.5, 1e-4), (10.0, 5.0, 0.02)):
        eta = lr * m
        ours = bound_terms(eta, D, G)
        assert_terms(ours, direct_bound(eta, D, G))
        if np.all(eta > 0) or (eta[0] == 0 and np.all(eta[1:] > 0)):
            assert_terms(ours, prefix_bound(eta, D, G))
        gamma, best = optimal_scale(m, D, G)
        if T > 1 and np.all(m > 0):
            ref_gamma, ref_best = prefix_optimal(m, D, G)
            assert gamma == pytest.approx(ref_gamma, rel=REL)
            assert best == pytest.approx(ref_best, rel=REL)


@settings(max_examples=60, deadline=None)
@given(
    # subnormal step sizes (~1e-311) are no learning rates, and the direct formula overflows on them
    # (eta_k / A_k first) where the O(T) form stays finite: zeros, tiny and large normal values only
    st.lists(st.floats(0.0, 10.0, allow_subnormal=False), min_size=1, max_size=60),
    st.floats(0.1, 10.0),
    st.one_of(st.floats(0.1, 10.0), st.none()),
    st.randoms(use_true_random=False),
)
def test_matches_the_direct_formula_on_arbitrary_step_sizes(eta, D, G, rnd):
    """Zeros anywhere (start, middle, tail) included; per-step G when G is None."""
    g = np.array([rnd.uniform(0.0, 4.0) for _ in eta]) if G is None else G
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings escape
        ours = bound_terms(eta, D, g)
    expected = direct_bound(eta, D, g)
    for a, e in zip((ours.t1, ours.t2, ours.t3), expected):
        if math.isinf(e):
            assert a == math.inf
        else:
            assert a == pytest.approx(e, rel=REL, abs=1e-300)


def test_per_step_G_matches_the_prefix_reference():
    rng = np.random.default_rng(0)
    eta = 0.01 * multipliers("cosine", 2000, 100)[1:]  # drop the 0 of the warmup start
    G = rng.uniform(0.2, 3.0, eta.size)
    assert_terms(bound_terms(eta, 2.0, G), prefix_bound(eta, 2.0, G))
    assert_terms(bound_terms(eta, 2.0, np.full(eta.size, 1.5)), bound_terms(eta, 2.0, 1.5).__dict__.values())


def exact_integer_bound(w: list[int], D: float = 1.0, G: float = 1.0) -> tuple[float, float, float]:
    """The formula in exact integer arithmetic for integer step sizes: every suffix sum is exact and each
    term of the sum is one correctly rounded int / int division, so the result is exact to ~1e-15."""
    S, sq = sum(w), sum(x * x for x in w)
    parts, after, q_after = [], 0, 0
    for k in range(len(w) - 1, -1, -1):  # walk back: after = A_k, then B_k = A_k + w_k
        if k < len(w) - 1 and w[k]:
            parts.append(w[k] * (q_after + w[k] * w[k]) / (after * (after + w[k])))
        after += w[k]
        q_after += w[k] * w[k]
    return D**2 / (2 * S), G**2 * (sq / (2 * S)), 0.5 * G**2 * math.fsum(parts)


@pytest.mark.parametrize(
    ("name", "args", "scale"),
    [("linear", {}, 1_000_000), ("wsd", {"decay": 0.2}, 200_000)],  # wsd: the linear decay
)
def test_one_million_steps_match_exact_arithmetic(name, args, scale):
    """T = 1e6: m(s) * scale is an integer for these schedules, so the exact reference is cheap."""
    m = multipliers(name, 1_000_000, **args)
    w = np.rint(m * scale)
    assert np.array_equal(w / scale, m) or np.allclose(w / scale, m, rtol=0, atol=1e-15)
    assert_terms(bound_terms(w, D=2.0, G=3.0), exact_integer_bound([int(x) for x in w], D=2.0, G=3.0))


@pytest.mark.parametrize(("name", "args"), [("cosine", {}), ("one_cycle", {}), ("linear", {})])
def test_schedules_ending_near_zero_stay_exact(name, args):
    """Where float64 prefix sums cancel (tiny last step sizes), the suffix sums keep full accuracy."""
    m = multipliers(name, 4000, **args)
    assert_terms(bound_terms(m), direct_bound(m), rel=1e-13)


# ---------------------------------------------------------------- closed forms and the paper's numbers


@pytest.mark.parametrize("T", [10, 100, 1000])
@pytest.mark.parametrize("D", [1.0, 5.0, 10.0])
@pytest.mark.parametrize("G", [1.0, 5.0, 10.0])
@pytest.mark.parametrize("gamma", [1e-4, 0.3])
def test_constant_schedule_closed_form(T, D, G, gamma):
    """D^2 / (2 gamma T), gamma G^2 / 2, (gamma / 2) G^2 H_{T-1}."""
    rs = resolve(ScheduleRequest("constant", max_train_steps=T, base_lr=gamma))
    b = schedule_bound(rs, D=D, G=G)
    assert_terms(b.terms, (D**2 / (2 * gamma * T), gamma * G**2 / 2, gamma / 2 * G**2 * harmonic(T - 1)))
    # gamma* = (D / G) / sqrt(T (1 + H_{T-1})), optimal bound = D G sqrt((1 + H_{T-1}) / T)
    assert b.optimal_base_lr == pytest.approx(D / G / math.sqrt(T * (1 + harmonic(T - 1))), rel=REL)
    assert b.optimal_bound == pytest.approx(D * G * math.sqrt((1 + harmonic(T - 1)) / T), rel=REL)


@pytest.mark.parametrize(
    ("head", "value", "count"),
    [
        ([], 0.7, 1),
        ([], 0.7, 2),
        ([], 0.7, 1500),
        ([0.0, 0.25, 0.5, 0.75], 1.0, 300),  # a warmup from 0, then the constant
        ([1.0, 0.5, 0.2], 0.2, 40),  # a decay held after its horizon
        ([1.0, 0.5], 0.0, 5),  # held at 0: infinite
        ([0.0, 0.0], 0.0, 5),  # all zero
        ([0.3, 0.1], 0.4, 0),  # no tail: the plain bound
    ],
)
@pytest.mark.parametrize("G", [1.0, 2.5])
def test_a_flat_tail_in_closed_form_equals_the_steps_written_out(head, value, count, G):
    """bound_terms(head, flat_value=c, flat_steps=n) is the bound of head followed by n steps of c."""
    written = [*head, *[value] * count]
    terms = bound_terms(np.array(head), D=1.5, G=G, flat_value=value, flat_steps=count)
    assert_terms(terms, direct_bound(written, D=1.5, G=G), rel=1e-12)
    per_step_g = np.linspace(0.5, 2.0, len(written))  # per-step G: the tail is written out internally
    assert_terms(
        bound_terms(np.array(head), D=1.5, G=per_step_g, flat_value=value, flat_steps=count),
        direct_bound(written, D=1.5, G=per_step_g),
        rel=1e-12,
    )


@pytest.mark.parametrize("n", [0, 1, 2, 999, 1000, 1001, 5000, 123_457])
def test_harmonic_numbers_are_exact_on_both_sides_of_the_series_switch(n):
    assert bound_harmonic(n) == pytest.approx(harmonic(n), rel=2e-16, abs=0)


@pytest.mark.parametrize(
    "request_",
    [
        ScheduleRequest("constant_with_warmup", warmup=37, max_train_steps=5000),
        ScheduleRequest("constant", max_train_steps=1),
        ScheduleRequest("cosine", max_train_steps=900, schedule_steps=600, hold_after_horizon=True),
        ScheduleRequest(
            "cosine", args={"min_lr_ratio": 0.1}, max_train_steps=900, schedule_steps=600, hold_after_horizon=True
        ),
    ],
    ids=["constant-warmup", "constant-one-step", "cosine-held-at-0", "cosine-held-at-floor"],
)
def test_schedule_bound_of_a_flat_tail_equals_the_bound_of_every_step(request_):
    """Constant curves and runs held after their horizon take the closed-form tail; the result is the
    bound of the whole array of step sizes."""
    rs = resolve(request_)
    b = schedule_bound(rs, 2e-4, D=3.0, G=2.0)
    every = bound_terms(step_sizes(rs), D=3.0, G=2.0)
    assert b.steps == rs.run_length
    if math.isinf(every.t3):
        assert math.isinf(b.unit_terms.t3) and b.zero_tail == 300
    else:
        assert_terms(b.unit_terms, (every.t1, every.t2, every.t3), rel=1e-12)


PAPER_T = 4000
PAPER_TUNED = [  # Schaipp et al. 2025: tuned bound x sqrt(T), T = 4000, G = D = 1, no warmup
    ("linear", {}, 2.00),
    ("cosine", {}, 2.06),
    ("warmup_stable_decay", {"decay": 0.2, "decay_type": "linear"}, 2.16),
    ("constant", {}, 3.14),
]


@pytest.mark.parametrize(("name", "args", "expected"), PAPER_TUNED, ids=[p[0] for p in PAPER_TUNED])
def test_tuned_bound_times_sqrt_T_matches_the_paper(name, args, expected):
    """eta_t = gamma m(t - 1), t = 1..T: the T updates of a T-step run (steps 0..T-1)."""
    rs = resolve(ScheduleRequest(name, args=args, max_train_steps=PAPER_T))
    b = schedule_bound(rs)
    assert b.steps == PAPER_T
    assert b.optimal_bound * math.sqrt(PAPER_T) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(("cooldown", "expected"), [(0.1, 2.17), (0.2, 1.95), (0.4, 1.65), (0.6, 1.41), (0.8, 1.20)])
def test_lr_transfer_ratio_linear_over_wsd(cooldown, expected):
    """gamma*(linear decay) / gamma*(WSD with cooldown c) at T = 4000: linear's optimal LR is the larger."""
    linear = schedule_bound(resolve(ScheduleRequest("linear", max_train_steps=PAPER_T)))
    wsd = schedule_bound(
        resolve(ScheduleRequest("wsd", args={"decay": cooldown, "decay_type": "linear"}, max_train_steps=PAPER_T))
    )
    assert linear.optimal_base_lr / wsd.optimal_base_lr == pytest.approx(expected, rel=0.02)


def test_longer_cooldown_raises_the_optimal_lr_by_the_stated_factor():
    """Going from a 20% to a 60% cooldown raises the optimal base LR by about 1.95 / 1.41 = 1.38x."""

    def gamma(c):
        rs = resolve(ScheduleRequest("wsd", args={"decay": c}, max_train_steps=PAPER_T))
        return schedule_bound(rs).optimal_base_lr

    assert gamma(0.6) / gamma(0.2) == pytest.approx(1.95 / 1.41, rel=0.02)


def test_wsd_has_no_log_factor_while_constant_grows():
    def scaled(name, T, **args):
        b = schedule_bound(resolve(ScheduleRequest(name, args=args, max_train_steps=T)))
        return b.optimal_bound * math.sqrt(T)

    horizons = (1_000, 10_000, 100_000)
    wsd = [scaled("warmup_stable_decay", T, decay=0.2) for T in horizons]
    assert max(wsd) / min(wsd) - 1 < 0.03, wsd
    const = [scaled("constant", T) for T in horizons]
    assert const[0] < const[1] < const[2]
    assert const[2] / const[0] > 1.2  # sqrt(1 + H_{T-1}): 2.91 -> 3.62
    for T, v in zip(horizons, const):
        assert v == pytest.approx(math.sqrt(1 + harmonic(T - 1)), rel=REL)


# ---------------------------------------------------------------- edges and invariances


def test_leading_zero_step_sizes_change_nothing():
    """A warmup from LR 0 gives eta_1 = 0: that term contributes 0 and S is unchanged."""
    m = multipliers("cosine", 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        padded = bound_terms(np.concatenate([[0.0, 0.0], m]))
    assert_terms(padded, (bound_terms(m).t1, bound_terms(m).t2, bound_terms(m).t3), rel=1e-12)
    warm = multipliers("cosine", 500, warmup=50)
    assert warm[0] == 0.0 and math.isfinite(bound(warm))


def test_tail_of_zeros_is_infinite_not_a_crash():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        terms = bound_terms([1.0, 0.5, 0.0, 0.0])
    assert terms.t3 == math.inf and terms.total == math.inf
    assert terms.optimal_scale == 0.0 and terms.optimal_total == math.inf
    # a linear decay held past its horizon reaches LR 0 and stays there
    rs = resolve(ScheduleRequest("linear", max_train_steps=120, schedule_steps=100, hold_after_horizon=True))
    b = schedule_bound(rs, 1e-3)
    assert b.bound == math.inf and b.zero_tail == 20
    assert "last 20 step(s) have LR 0" in bound_summary(rs, 1e-3)["note"]


def test_all_zero_and_single_step():
    zero = bound_terms([0.0, 0.0, 0.0])
    assert zero.t1 == math.inf and zero.total == math.inf and math.isnan(zero.optimal_scale)
    one = bound_terms([0.2], D=3.0, G=2.0)  # T = 1: no term 3
    assert_terms(one, (9 / 0.4, 0.2 * 4 / 2, 0.0))
    assert one.optimal_scale * 0.2 == pytest.approx(3.0 / 2.0, rel=REL)  # one step: the best LR is D / G


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 5.0), min_size=2, max_size=40), st.floats(1e-3, 1e3))
def test_terms_scale_with_the_base_lr_and_gamma_star_minimises(m, gamma):
    unit = bound_terms(m)
    assert_terms(bound_terms(gamma * np.asarray(m)), (unit.t1 / gamma, unit.t2 * gamma, unit.t3 * gamma), rel=1e-9)
    best, value = unit.optimal_scale, unit.optimal_total
    assert bound(best * np.asarray(m)) == pytest.approx(value, rel=1e-9)
    for off in (0.9, 1.1):
        assert bound(best * off * np.asarray(m)) > value


@pytest.mark.parametrize(
    ("etas", "kwargs", "message"),
    [
        ([], {}, "non-empty"),
        ([[1.0, 2.0]], {}, "1-D"),
        ([1.0, -0.1], {}, ">= 0"),
        ([1.0, float("nan")], {}, "finite"),
        ([1.0, 1.0], {"D": 0.0}, "D must be"),
        ([1.0, 1.0], {"G": [1.0, 2.0, 3.0]}, "G must be a scalar or an array"),
        ([1.0, 1.0], {"G": -1.0}, "G must be finite and >= 0"),
    ],
)
def test_bad_input_is_a_clear_value_error(etas, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bound_terms(etas, **kwargs)


# ---------------------------------------------------------------- bound over time, summary, transfer


def test_bound_over_time_is_the_bound_of_each_prefix():
    eta = 0.02 * multipliers("warmup_stable_decay", 300, warmup=30, decay=0.3)
    ts = np.array([1, 2, 31, 150, 299, 300])
    values = bound_over_time(eta, ts, D=2.0, G=1.5)
    for t, v in zip(ts, values):
        assert v == pytest.approx(sum(direct_bound(eta[:t], 2.0, 1.5)), rel=REL)
    with pytest.raises(ValueError, match=r"t must be in \[1, 300\]"):
        bound_over_time(eta, [0])


@pytest.mark.parametrize("n", [1, 5, 200, 201, 10_000, 1_000_000])
def test_sample_steps_covers_the_run(n):
    ts = sample_steps(n)
    assert ts[0] >= 1 and ts[-1] == n and np.all(np.diff(ts) > 0)
    assert len(ts) == min(n, len(ts)) and len(ts) <= 201


def test_bound_summary_is_consistent():
    rs = resolve(ScheduleRequest("cosine", max_train_steps=4000, warmup=0.05))
    s = bound_summary(rs, 1e-4, D=2.0, G=3.0)
    direct = bound_terms(1e-4 * step_sizes(rs), 2.0, 3.0)
    assert s["steps"] == 4000 and s["base_lr"] == 1e-4 and s["note"] == ""
    assert s["bound"] == pytest.approx(direct.total, rel=REL)
    assert s["optimal_base_lr"] == pytest.approx(bound_terms(step_sizes(rs), 2.0, 3.0).optimal_scale, rel=REL)
    assert s["lr_factor"] == pytest.approx(s["optimal_base_lr"] / 1e-4, rel=REL)
    assert s["bound_x_sqrt_T"] == pytest.approx(s["optimal_bound"] * math.sqrt(4000), rel=REL)
    # gamma* scales as D / G for a scalar G
    assert bound_summary(rs, 1e-4)["optimal_base_lr"] * 2.0 / 3.0 == pytest.approx(s["optimal_base_lr"], rel=REL)


def test_transfer_of_a_constant_schedule_follows_the_closed_form():
    """gamma*(T) = 1 / sqrt(T (1 + H_{T-1})) for constant: the factor is gamma*(N) / gamma*(T)."""
    t = transfer_lr(ScheduleRequest("constant", max_train_steps=1000, base_lr=3e-4), 4000)
    expected = math.sqrt(1000 * (1 + harmonic(999)) / (4000 * (1 + harmonic(3999))))
    assert (t.steps_from, t.steps_to) == (1000, 4000)
    assert t.factor == pytest.approx(expected, rel=REL)
    assert t.new_lr == pytest.approx(3e-4 * expected, rel=REL)


def test_transfer_keeps_step_durations_and_scales_fractions():
    frac = transfer_lr(ScheduleRequest("cosine", warmup=0.1, max_train_steps=1000), 3000, base_lr=1e-4)
    assert frac.resolved_to.warmup == 300 and frac.resolved_to.run_length == 3000
    steps = transfer_lr(ScheduleRequest("cosine", warmup=100, max_train_steps=1000), 3000, base_lr=1e-4)
    assert steps.resolved_to.warmup == 100
    old = resolve(ScheduleRequest("cosine", warmup=100, max_train_steps=1000))
    expected = optimal_scale(step_sizes(steps.resolved_to))[0] / optimal_scale(step_sizes(old))[0]
    assert steps.factor == pytest.approx(expected, rel=REL)
    horizon = transfer_lr(
        ScheduleRequest("linear", max_train_steps=800, schedule_steps=1000), 1600, base_lr=1e-4
    ).resolved_to
    assert (horizon.run_length, horizon.horizon) == (1600, 2000)


def test_transfer_to_a_run_too_short_for_the_warmup_is_a_config_error():
    from lora_sched.errors import ConfigError

    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        transfer_lr(ScheduleRequest("cosine", warmup=500, max_train_steps=1000), 300)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e3), min_size=1, max_size=300),
    st.integers(1, 40),
    st.integers(0, 5),
    st.booleans(),
)
def test_suffix_sums_equal_the_exact_suffix_sums(values, width, zeros, in_place):
    """Any length (remainders included), any row width, in place or not; a zero tail stays exactly 0."""
    x = np.array(values + [0.0] * zeros)
    expected = [math.fsum(values[k:]) if k < len(values) else 0.0 for k in range(x.size)]
    out = suffix_sums(x, x if in_place else np.empty_like(x), width)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert np.all(out[len(values) :] == 0.0)


def test_the_papers_T_plus_1_arrays_evaluated_at_T_are_our_runs():
    """The `scheduled` package builds schedules with steps=T+1 (their last entry is LR 0) and evaluates the
    bound at T, i.e. on the first T entries: for linear decay (its WSD with cooldown_len=1: one step at 1,
    then 1 - (t+1)/T for t < T) and cosine (0.5 (1 + cos(pi i / T)), i = 0..T) those are exactly our
    m(0..T-1) over horizon T. The whole T+1 array would end on a step with LR 0: an infinite bound."""
    T = PAPER_T
    package_linear = np.concatenate([[1.0], 1.0 - (np.arange(T) + 1) / T])
    package_cosine = 0.5 * (1.0 + np.cos(np.arange(T + 1) / T * np.pi))
    for name, package in (("linear", package_linear), ("cosine", package_cosine)):
        assert package.size == T + 1 and package[-1] == pytest.approx(0.0, abs=1e-15)
        np.testing.assert_allclose(package[:T], multipliers(name, T), rtol=1e-12, atol=1e-15)
        assert bound_terms(package[:T]).optimal_total == pytest.approx(bound_terms(multipliers(name, T)).optimal_total)
    assert bound(package_linear) == math.inf
