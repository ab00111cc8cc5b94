"""The forward process q (docs/math.md §3) against the kernel applied step by step.

Independent route: the kernel q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I) applied to a
point mass at x_s, step after step, propagating the mean and the variance exactly in plain
float64 from the betas alone (m <- sqrt(1 - beta_r) m, v <- (1 - beta_r) v + beta_r): no
logarithm, no cumulative-product table, nothing from `reference` but the schedule's betas.

Error model, in units of EPS = 2^-52 (machine epsilon): + - * / sqrt are correctly rounded
(<= EPS / 2 relative); numpy's log1p, exp, expm1 are within 1 ulp (<= EPS).
- iteration, t - s steps: the mean coefficient gains <= 1.5 EPS per step (1 - beta, sqrt, *);
  the variance is a sum of two positive terms, so it gains <= 1.5 EPS per step as well.
- reference, L = log(abar_t / abar_s) <= 0: a compensated sum of log1p(-beta_r), all of one
  sign, so |error of L| <= 2 EPS |L|; then exp(L / 2) has relative error <= EPS (|L| + 2), and
  1 - abar_t / abar_s = -expm1(L) relative error <= EPS (2 r |L| / (1 - r) + 1) <= 3 EPS
  (r |L| / (1 - r) <= 1 for r = e^L in [0, 1)).
Each tolerance below adds the two routes' bounds; TINY = 1e-300 covers gradual underflow
(absolute error <= 2^-1074 per operation once a product is subnormal).
Reproduce a failure: Hypothesis prints the falsifying example (with the user betas in a note);
``CI=true python3 -m pytest properties/test_forward.py -k NAME`` replays the derandomised run.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import reference as ref
from ddpm_verify import strategies as S
from properties._numerics import EPS, TINY, assert_close, kernel_iteration


def log_ratio(betas: np.ndarray, s: int, t: int) -> float:
    """|log(abar_t / abar_s)| by math.fsum (for sizing tolerances only); 0 when abar_t = 0
    (then the quantities it conditions are exact zeros and ones)."""
    if np.any(betas[s:t] == 1.0):
        return 0.0
    return abs(math.fsum(np.log1p(-betas[s:t]).tolist()))


# -- cases ----------------------------------------------------------------------------------------

@st.composite
def step_pairs(draw):
    """(schedule, s, t, x_s) with 0 <= s < t <= T; s = 0 (q(x_t | x_0)), t = s + 1 and t = T often."""
    schedule = draw(S.schedules())
    t = draw(S.timesteps(schedule))
    s = draw(st.one_of(st.just(0), st.just(t - 1), st.integers(0, t - 1)))
    xs = draw(S.data_arrays())
    return schedule, s, t, xs


@st.composite
def step_triples(draw):
    """(schedule, s, u, t, x_s) with 0 <= s < u < t <= T (needs T >= 2)."""
    schedule = draw(S.schedules(T=S.horizons(min_T=2)))
    t = draw(S.timesteps(schedule, lo=2))
    u = draw(st.one_of(st.just(1), st.just(t - 1), st.integers(1, t - 1)))
    s = draw(st.one_of(st.just(0), st.just(u - 1), st.integers(0, u - 1)))
    return schedule, s, u, t, draw(S.data_arrays())


@st.composite
def sample_cases(draw):
    """(schedule, t, x0, eps): t a Python int or one t per row (int64 array of shape (n,))."""
    schedule = draw(S.schedules())
    x0 = draw(S.data_arrays())
    n, d = x0.shape
    if draw(st.booleans()):
        t = draw(S.timesteps(schedule))
    else:
        t = np.array(draw(st.lists(S.timesteps(schedule), min_size=n, max_size=n)), dtype=np.int64)
    return schedule, t, x0, draw(S.noise_arrays((n, d)))


X1 = np.array([[0.5, -1.25, 3.0]])


# -- properties -----------------------------------------------------------------------------------

@given(step_pairs())
@example((ref.linear(1), 0, 1, X1))                                   # T = 1
@example((ref.linear(1000), 0, 1, X1))                                # t = 1
@example((ref.linear(1000), 0, 1000, X1))                             # t = T
@example((ref.linear(1000), 999, 1000, X1))                           # one step at t = T
@example((ref.cosine(50), 0, 50, X1))                                 # abar_T ~ 0
@example((ref.zero_terminal_snr(ref.linear(20)), 0, 20, X1))          # abar_T = 0
@example((ref.zero_terminal_snr(ref.linear(20)), 7, 20, X1))
def test_iterated_kernel_equals_closed_form_marginal(case):
    """Applying q(x_r | x_{r-1}) for r = s+1..t to x_s gives q(x_t | x_s) =
    N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I); for s = 0 also q(x_t | x_0) (docs/math.md §3)."""
    schedule, s, t, xs = case
    betas = schedule.beta()
    m, v = kernel_iteration(betas, s, t)
    L = log_ratio(betas, s, t)
    ctx = f"schedule {schedule!r}, s={s}, t={t}, kernel iteration m={m!r}, v={v!r}."
    # mean: iteration 1.5 (t - s) EPS + reference EPS (|L| + 2), relative to |m x_s|
    mean_tol = EPS * (1.5 * (t - s) + L + 2) * np.abs(m * xs) + TINY
    # variance: iteration 1.5 (t - s) EPS + reference 3 EPS, relative
    var_tol = EPS * (1.5 * (t - s) + 3) * v
    # log-variance: the variance's relative error, plus 1 ulp (<= EPS |log v|) of log v in each route
    logvar_tol = EPS * (1.5 * (t - s) + 3) + 2 * EPS * abs(math.log(v))
    dists = {"q_xt_given_xs": ref.q_xt_given_xs(schedule, xs, s, t)}
    if s == 0:
        dists["q_xt_given_x0"] = ref.q_xt_given_x0(schedule, xs, t)
    for name, q in dists.items():
        assert_close(f"{name} mean", q.mean, m * xs, mean_tol, ctx)
        assert_close(f"{name} variance", q.variance, np.full(xs.shape, v), var_tol, ctx)
        assert_close(f"{name} log_variance", q.log_variance, np.full(xs.shape, math.log(v)), logvar_tol, ctx)


@given(step_triples())
@example((ref.linear(2), 0, 1, 2, X1))                                # T = 2: the smallest triple
@example((ref.linear(1000), 0, 1, 1000, X1))
@example((ref.linear(1000), 998, 999, 1000, X1))                      # t = T
@example((ref.zero_terminal_snr(ref.cosine(30)), 0, 29, 30, X1))      # abar_T = 0
def test_transition_kernels_compose(case):
    """q(x_u | x_s) followed by q(x_t | x_u) is q(x_t | x_s) (Chapman-Kolmogorov, docs/math.md §3):
    the Gaussian N(mu, V I) pushed through N(c x_u, w I) is N(c mu, (c^2 V + w) I)."""
    schedule, s, u, t, xs = case
    first = ref.q_xt_given_xs(schedule, xs, s, u)
    c = float(ref.q_xt_given_xs(schedule, np.ones((1, 1)), u, t).mean[0, 0])     # sqrt(abar_t / abar_u)
    w = float(ref.q_xt_given_xs(schedule, np.ones((1, 1)), u, t).variance[0, 0])
    direct = ref.q_xt_given_xs(schedule, xs, s, t)
    betas = schedule.beta()
    L = log_ratio(betas, s, t)            # |log abar_t / abar_s| = |L_su| + |L_ut|
    ctx = f"schedule {schedule!r}, s={s}, u={u}, t={t}, c={c!r}, w={w!r}."
    # three reference means, each EPS (|L_.| + 2) relative, summing to EPS (2 |L| + 6), + 1 product
    assert_close("compose mean", c * first.mean, direct.mean, EPS * (2 * L + 7) * np.abs(direct.mean) + TINY, ctx)
    # c^2 V + w: positive sum; c^2 carries 2 EPS (|L_ut| + 2), V and w 3 EPS each, direct 3 EPS, + 3 roundings
    composed_var = c * c * first.variance + w
    assert_close("compose variance", composed_var, direct.variance, EPS * (2 * L + 15) * direct.variance, ctx)


@given(sample_cases())
@example((ref.linear(1), 1, X1, np.array([[1.0, -2.0, 0.25]])))
@example((ref.linear(1000), 1000, X1, np.array([[1.0, -2.0, 0.25]])))
@example((ref.cosine(100), np.array([1], dtype=np.int64), X1, np.array([[1.0, -2.0, 0.25]])))
@example((ref.zero_terminal_snr(ref.linear(10)), 10, X1, np.array([[1.0, -2.0, 0.25]])))
def test_q_sample_is_mean_plus_sqrt_variance_times_noise(case):
    """q_sample(x_0, t, eps) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with the coefficients of the
    kernel iteration (docs/math.md §3), for a scalar t and for one t per row."""
    schedule, t, x0, eps = case
    betas = schedule.beta()
    ts = np.broadcast_to(np.asarray(t), x0.shape[:1])
    mv = np.array([kernel_iteration(betas, 0, int(ti)) for ti in ts])          # (n, 2)
    m, v = mv[:, :1], mv[:, 1:]
    L = np.array([log_ratio(betas, 0, int(ti)) for ti in ts])[:, None]
    want = m * x0 + np.sqrt(v) * eps
    # per element: the mean term carries (1.5 t + |L| + 2) EPS, the noise term (0.75 t + 2) EPS
    # (sqrt halves the variance's error) of its own size; the two sums add EPS/2 each
    tol = (EPS * (1.5 * ts[:, None] + L + 3) * np.abs(m * x0)
           + EPS * (0.75 * ts[:, None] + 3) * np.abs(np.sqrt(v) * eps) + TINY)
    got = ref.q_sample(schedule, x0, t, eps)
    assert_close("q_sample", got, want, tol, f"schedule {schedule!r}, t={t!r}.")
