"""Conversions between the eps, x_0, v and score parameterisations (docs/math.md §5).

Routes: round trips (the expected value is the input itself), and the score of Gaussian data
in closed form: for x_0 ~ N(m, s2 I), q_t = N(sqrt(abar_t) m, (abar_t s2 + 1 - abar_t) I), so
E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / (abar_t s2 + 1 - abar_t) and
grad log q_t(x_t) = -(x_t - sqrt(abar_t) m) / (abar_t s2 + 1 - abar_t) (docs/math.md §7 with K = 1);
sqrt(abar_t) and 1 - abar_t there come from the kernel iteration (plain float64 from the betas).

Error model (EPS = 2^-52): + - * / sqrt correctly rounded (<= EPS/2); schedule tables carry
relative error <= TAB = EPS (2 |log abar_t| + 12) (see test_posterior.py); the kernel iteration
over t steps <= 1.5 t EPS. Each tolerance is TAB times the magnitudes that cancel, divided by the
coefficient the formula divides by (its condition number), written next to the assertion.
Reproduce a failure: the falsifying example printed by Hypothesis (user betas in a note);
``CI=true python3 -m pytest properties/test_parameterisations.py -k NAME``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import reference as ref
from ddpm_verify import strategies as S
from properties._numerics import EPS, TINY, assert_close, kernel_iteration, tab_error


@st.composite
def conversion_cases(draw, positive_abar: bool = False):
    """(schedule, t, x0, eps, xt): t an int or one per row; x0, eps, xt independent arrays
    (the round trips hold for every x_t; the v ones take x_t = q_sample(x0, t, eps) instead)."""
    schedule = draw(S.schedules())
    x0 = draw(S.data_arrays())
    n, d = x0.shape
    ts = S.timesteps(schedule, positive_abar=positive_abar)
    t = draw(ts) if draw(st.booleans()) else np.array(draw(st.lists(ts, min_size=n, max_size=n)), dtype=np.int64)
    return schedule, t, x0, draw(S.noise_arrays((n, d))), draw(S.data_arrays(n=n, d=d))


def coefficients(schedule, t, shape):
    """sqrt(abar_t), sqrt(1 - abar_t) (schedule tables, for sizing tolerances) and TAB, per row."""
    t_rows = np.broadcast_to(np.asarray(t), shape[:1])
    sa = np.sqrt(schedule.alpha_bar(t_rows))[:, None]
    s1 = np.sqrt(schedule.one_minus_alpha_bar(t_rows))[:, None]
    return sa, s1, tab_error(schedule, t_rows)[:, None]


X0 = np.array([[0.5, -1.25, 3.0]])
E1 = np.array([[1.0, -2.0, 0.25]])
XT = np.array([[-0.3, 2.5, -7.0]])
EXAMPLES = [(ref.linear(1), 1), (ref.linear(1000), 1), (ref.linear(1000), 1000), (ref.cosine(1000), 1000),
            (ref.Schedule(np.full(50, 1e-12)), 1)]


def examples(positive_abar: bool):
    """Pin t = 1, t = T, T = 1, abar_T ~ 0 (cosine) and abar_1 ~ 1 - 1e-12; with abar_T = 0 where allowed."""
    def deco(f):
        cases = EXAMPLES + ([] if positive_abar else [(ref.zero_terminal_snr(ref.linear(10)), 10)])
        for schedule, t in cases:
            f = example((schedule, t, X0, E1, XT))(f)
        return f
    return deco


@given(conversion_cases(positive_abar=True))
@examples(positive_abar=True)
def test_eps_to_x0_to_eps_round_trip(case):
    """eps_from_x0(x_t, t, x0_from_eps(x_t, t, eps)) = eps for every x_t, eps (docs/math.md §5)."""
    schedule, t, _, eps, xt = case
    x0 = ref.x0_from_eps(schedule, xt, t, eps)
    back = ref.eps_from_x0(schedule, xt, t, x0)
    sa, s1, tab = coefficients(schedule, t, xt.shape)
    # x_0 = (x_t - s1 eps) / sa, then (x_t - sa x_0) / s1: x_t cancels against sa x_0 up to
    # TAB (|x_t| + s1 |eps|) (both conversions' tables and roundings), then the division by s1
    tol = 2 * tab * (np.abs(xt) + s1 * np.abs(eps)) / s1 + TINY
    assert_close("eps->x0->eps", back, eps, tol, f"schedule {schedule!r}, t={t!r}, x0={x0!r}.")


@given(conversion_cases(positive_abar=True))
@examples(positive_abar=True)
def test_x0_to_eps_to_x0_round_trip(case):
    """x0_from_eps(x_t, t, eps_from_x0(x_t, t, x_0)) = x_0 for every x_t, x_0 (docs/math.md §5)."""
    schedule, t, x0, _, xt = case
    eps = ref.eps_from_x0(schedule, xt, t, x0)
    back = ref.x0_from_eps(schedule, xt, t, eps)
    sa, s1, tab = coefficients(schedule, t, xt.shape)
    # mirror image: x_t cancels against s1 eps up to TAB (|x_t| + sa |x_0|), then / sa
    tol = 2 * tab * (np.abs(xt) + sa * np.abs(x0)) / sa + TINY
    assert_close("x0->eps->x0", back, x0, tol, f"schedule {schedule!r}, t={t!r}, eps={eps!r}.")


@given(conversion_cases())
@examples(positive_abar=False)
def test_v_round_trips(case):
    """With x_t = q_sample(x_0, t, eps) and v = v_from_x0_eps(x_0, t, eps) = sqrt(abar) eps - sqrt(1 - abar) x_0:
    x0_from_v(x_t, t, v) = x_0 and eps_from_v(x_t, t, v) = eps (docs/math.md §5); also at abar_t = 0."""
    schedule, t, x0, eps, _ = case
    xt = ref.q_sample(schedule, x0, t, eps)
    v = ref.v_from_x0_eps(schedule, x0, t, eps)
    sa, s1, tab = coefficients(schedule, t, x0.shape)
    # sa x_t - s1 v = (sa^2 + s1^2) x_0 + 0 eps: every product is at most |x_0| + |eps| in size
    # (sa, s1 <= 1), each carries TAB, and sa^2 + s1^2 = 1 to within 2 TAB
    tol = 4 * tab * (np.abs(x0) + np.abs(eps)) + TINY
    ctx = f"schedule {schedule!r}, t={t!r}, x_t={xt!r}, v={v!r}."
    assert_close("v->x0", ref.x0_from_v(schedule, xt, t, v), x0, tol, ctx)
    assert_close("v->eps", ref.eps_from_v(schedule, xt, t, v), eps, tol, ctx)


@given(conversion_cases())
@examples(positive_abar=False)
def test_score_eps_round_trip(case):
    """eps_from_score(score_from_eps(eps)) = eps (docs/math.md §5): a division and a multiplication by
    the same sqrt(1 - abar_t), 3 roundings."""
    schedule, t, _, eps, _ = case
    back = ref.eps_from_score(schedule, ref.score_from_eps(schedule, eps, t), t)
    assert_close("score->eps", back, eps, 2 * EPS * np.abs(eps) + TINY, f"schedule {schedule!r}, t={t!r}.")


@st.composite
def gaussian_data_cases(draw):
    """(schedule, t, m, s2, xt): Gaussian data N(m, s2 I) (m of shape (1, d)) and points x_t."""
    schedule = draw(S.schedules())
    t = draw(S.timesteps(schedule))
    xt = draw(S.data_arrays(max_abs=10.0))
    m = draw(S.data_arrays(n=1, d=xt.shape[1], max_abs=10.0))
    return schedule, t, m, draw(S.variances(1e-6, 1e2)), xt


@given(gaussian_data_cases())
@example((ref.linear(1), 1, np.array([[0.1, 0.2, -0.3]]), 0.01, XT))
@example((ref.linear(1000), 1000, np.array([[0.1, 0.2, -0.3]]), 0.01, XT))
@example((ref.zero_terminal_snr(ref.linear(10)), 10, np.array([[0.1, 0.2, -0.3]]), 0.01, XT))
def test_score_from_eps_of_the_optimal_noise_is_the_gaussian_score(case):
    """For Gaussian data N(m, s2 I): score_from_eps(E[eps | x_t]) = grad log q_t(x_t) =
    -(x_t - sqrt(abar_t) m) / (abar_t s2 + 1 - abar_t), both written in closed form (docs/math.md §5, §7)."""
    schedule, t, m, s2, xt = case
    sa, om = kernel_iteration(schedule.beta(), 0, t)
    y = xt - sa * m
    var = sa * sa * s2 + om
    eps_star = math.sqrt(om) * y / var
    want = -y / var
    got = ref.score_from_eps(schedule, eps_star, t)
    # both sides divide the same y by the same var; they differ by sqrt(om) / sqrt(1 - abar_t)_table:
    # iteration 0.75 t EPS + table TAB, plus 3 roundings
    tol = (float(tab_error(schedule, t)) + EPS * (0.75 * t + 2)) * np.abs(want) + TINY
    assert_close("score of Gaussian data", got, want, tol, f"schedule {schedule!r}, t={t}, m={m!r}, s2={s2!r}.")


def _threshold_by_loop(x0: np.ndarray, ratio: float, max_value: float) -> np.ndarray:
    """Dynamic thresholding written out per example: the `ratio` quantile of |x0| by sorting and
    linear interpolation at position (n - 1) ratio, s clamped to [1, max_value], then clip / s."""
    out = np.empty_like(x0)
    for r, row in enumerate(x0):
        a = sorted(abs(v) for v in row)
        pos = (len(a) - 1) * ratio
        lo = math.floor(pos)
        q = a[lo] if lo + 1 >= len(a) else a[lo] + (pos - lo) * (a[lo + 1] - a[lo])
        s = min(max(q, 1.0), max_value)
        out[r] = [min(max(v, -s), s) / s for v in row]
    return out


@given(x0=S.data_arrays(), ratio=st.floats(0.01, 1.0), max_value=st.floats(1.0, 10.0),
       scale=st.sampled_from([0.5, 1.0, 4.0]))
def test_dynamic_threshold_equals_a_loop_and_torch_quantile(x0, ratio, max_value, scale):
    """reference.dynamic_threshold against a per-example loop and against torch.quantile (what
    diffusers' _threshold_sample uses). Tolerance: the interpolation weight and position carry a
    few EPS relative, moving s by at most 4 EPS |s|; the output then by 4 EPS (|y| + 1) + 2 EPS."""
    import torch

    x0 = scale * x0
    got = ref.dynamic_threshold(x0, ratio, max_value)
    assert np.all(np.abs(got) <= 1.0)
    assert_close("dynamic threshold vs loop", got, _threshold_by_loop(x0, ratio, max_value),
                 4 * EPS * (np.abs(got) + 1) + 2 * EPS)
    s = torch.quantile(torch.as_tensor(np.abs(x0)), ratio, dim=1).clamp(1.0, max_value).numpy()[:, None]
    assert_close("dynamic threshold vs torch.quantile", got, np.clip(x0, -s, s) / s,
                 4 * EPS * (np.abs(got) + 1) + 2 * EPS)


@given(x0=S.data_arrays(), ratio=st.floats(0.01, 1.0))
def test_dynamic_threshold_with_max_value_one_is_clipping(x0, ratio):
    """s is clamped to [1, 1]: thresholding is exactly clipping to [-1, 1]."""
    assert np.array_equal(ref.dynamic_threshold(3 * x0, ratio, 1.0), np.clip(3 * x0, -1.0, 1.0))
