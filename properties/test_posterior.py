"""The forward-process posterior q(x_{t-1} | x_t, x_0) (docs/math.md §4).

Routes independent of `reference/posterior.py`:
- Bayes' rule, pointwise: log q(x_{t-1}|x_t,x_0) + log q(x_t|x_0) = log q(x_t|x_{t-1}) + log q(x_{t-1}|x_0),
  the four densities evaluated with `reference.normal_log_density` on the reference
  distributions (three of them from forward.py, whose closed forms test_forward.py checks);
- the law of total expectation / variance against the forward marginal q(x_{t-1} | x_0), with
  abar_t, 1 - abar_t from the kernel iteration (plain float64 from the betas, no tables);
- the algebraic identity beta_t - beta_tilde_t = abar_{t-1} beta_t^2 / (1 - abar_t);
- the noise form of mu_tilde against its x_0 form on x_t = q_sample(x_0, t, eps).

Error model (EPS = 2^-52): + - * / sqrt correctly rounded (<= EPS/2), numpy's log, log1p, exp,
expm1 within 1 ulp (<= EPS). Every schedule table entry at t (abar, 1 - abar, their square roots,
the posterior coefficients, beta_tilde) carries relative error <= TAB = EPS (2 |log abar_t| + 12):
exp of a compensated sum of log1p's (absolute error <= 2 EPS |log abar_t|), then at most two
-expm1's (3 EPS each) and three roundings. The kernel iteration over t steps carries
<= 1.5 t EPS (relative) in sqrt(abar_t) and in 1 - abar_t. TINY = 1e-300 covers gradual underflow.
Reproduce a failure: the falsifying example printed by Hypothesis (user betas in a note);
``CI=true python3 -m pytest properties/test_posterior.py -k NAME`` replays the derandomised run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import reference as ref
from ddpm_verify import strategies as S
from properties._numerics import EPS, TINY, assert_close, kernel_iteration, log_density, log_density_error, tab_error

LOG_2PI = math.log(2 * math.pi)


# -- cases ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Triple:
    """A point (x_0, x_{t-1}, x_t) at step t of `schedule`; `kind` says how it was drawn:
    'forward' (a forward trajectory built from noise) or 'arbitrary' (independent data arrays)."""

    schedule: ref.Schedule
    t: int
    kind: str
    x0: np.ndarray
    x_prev: np.ndarray
    xt: np.ndarray


@st.composite
def triples(draw):
    """Bayes-identity points: t in 2..T; half the time a forward trajectory
    x_{t-1} = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1}) e1, x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2
    (typical points), otherwise arbitrary x_{t-1}, x_t (every point must satisfy the identity)."""
    schedule = draw(S.schedules(T=S.horizons(min_T=2)))
    t = draw(S.timesteps(schedule, lo=2))
    x0 = draw(S.data_arrays(max_abs=10.0))
    if draw(st.booleans()):
        e1, e2 = draw(S.noise_arrays(x0.shape)), draw(S.noise_arrays(x0.shape))
        x_prev = ref.q_sample(schedule, x0, t - 1, e1)
        xt = math.sqrt(schedule.alpha(t)) * x_prev + math.sqrt(schedule.beta(t)) * e2
        return Triple(schedule, t, "forward", x0, x_prev, xt)
    arrays = S.data_arrays(n=x0.shape[0], d=x0.shape[1], max_abs=10.0)
    return Triple(schedule, t, "arbitrary", x0, draw(arrays), draw(arrays))


@st.composite
def noise_cases(draw):
    """(schedule, t, x0, eps) with alpha_t > 0 (the noise form divides by sqrt(alpha_t))."""
    schedule = draw(S.schedules())
    t = draw(S.timesteps(schedule, positive_alpha=True))
    x0 = draw(S.data_arrays())
    return schedule, t, x0, draw(S.noise_arrays(x0.shape))


X0 = np.array([[0.5, -1.25, 3.0]])
E1 = np.array([[1.0, -2.0, 0.25]])
E2 = np.array([[-0.5, 0.75, 1.5]])


def _forward_triple(schedule, t):
    x_prev = ref.q_sample(schedule, X0, t - 1, E1)
    xt = math.sqrt(schedule.alpha(t)) * x_prev + math.sqrt(schedule.beta(t)) * E2
    return Triple(schedule, t, "forward", X0, x_prev, xt)


# -- properties -----------------------------------------------------------------------------------

@given(triples())
@example(_forward_triple(ref.linear(2), 2))                                   # T = 2, t = T
@example(_forward_triple(ref.linear(1000), 2))                                # smallest t
@example(_forward_triple(ref.linear(1000), 1000))                             # t = T
@example(_forward_triple(ref.cosine(100), 100))                               # beta_T = 0.999
@example(_forward_triple(ref.zero_terminal_snr(ref.linear(30)), 30))          # abar_T = 0
@example(Triple(ref.linear(10), 2, "arbitrary", X0, E1, E2))
def test_bayes_identity_holds_pointwise(case: Triple):
    """log q(x_{t-1}|x_t,x_0) + log q(x_t|x_0) = log q(x_t|x_{t-1}) + log q(x_{t-1}|x_0) at every
    point, t >= 2 (docs/math.md §4)."""
    s, t = case.schedule, case.t
    post = ref.q_posterior(s, case.x0, case.xt, t)
    marg_t = ref.q_xt_given_x0(s, case.x0, t)
    kernel = ref.q_xt_given_xtm1(s, case.x_prev, t)
    marg_prev = ref.q_xt_given_x0(s, case.x0, t - 1)
    lhs = log_density(case.x_prev, post) + log_density(case.xt, marg_t)
    rhs = log_density(case.xt, kernel) + log_density(case.x_prev, marg_prev)
    tab = tab_error(s, t)
    # each density: its mean's absolute error is TAB times the magnitudes summed into it
    # (posterior: |c0 x_0| + |c1 x_t|), its variance's relative error TAB; plus the two sums
    mean_scale = np.abs(s.posterior_coef_x0(t) * case.x0) + np.abs(s.posterior_coef_xt(t) * case.xt)
    tol = (log_density_error(case.x_prev, post.mean, post.variance, tab * mean_scale, tab)
           + log_density_error(case.xt, marg_t.mean, marg_t.variance, tab * np.abs(marg_t.mean), tab)
           + log_density_error(case.xt, kernel.mean, kernel.variance, tab * np.abs(kernel.mean), tab)
           + log_density_error(case.x_prev, marg_prev.mean, marg_prev.variance, tab * np.abs(marg_prev.mean), tab)
           + EPS * (np.abs(lhs) + np.abs(rhs)))
    assert_close("bayes identity", lhs, rhs, tol, f"schedule {case.schedule!r}, t={t}, kind={case.kind}, "
                 f"lhs terms {log_density(case.x_prev, post)!r} + {log_density(case.xt, marg_t)!r}.")


@st.composite
def schedule_and_t(draw):
    """(schedule, t) with t in 1..T, t = 1 and t = T often."""
    schedule = draw(S.schedules())
    return schedule, draw(S.timesteps(schedule))


@given(schedule_and_t())
@example((ref.linear(1), 1))
@example((ref.linear(1000), 1))
@example((ref.linear(1000), 1000))
@example((ref.cosine(40), 40))
@example((ref.zero_terminal_snr(ref.cosine(40)), 40))
def test_posterior_is_consistent_with_the_forward_marginal(case):
    """Averaging q(x_{t-1} | x_t, x_0) over x_t ~ q(x_t | x_0) gives q(x_{t-1} | x_0) (docs/math.md §3-§4),
    computed exactly from the coefficients: mu_tilde = c0 x_0 + c1 x_t, so
    E[mu_tilde] = (c0 + c1 sqrt(abar_t)) x_0 = sqrt(abar_{t-1}) x_0 and
    beta_tilde_t + c1^2 (1 - abar_t) = 1 - abar_{t-1}; t = 1..T (t = 1: 1 = 1 and 0 = 0).
    c0, c1 are read off `posterior_mean` at (x_0, x_t) = (1, 0) and (0, 1); beta_tilde_t from
    `q_posterior`; sqrt(abar), 1 - abar from the kernel iteration."""
    schedule, t = case
    one, zero = np.ones((1, 1)), np.zeros((1, 1))
    c0 = float(ref.posterior_mean(schedule, one, zero, t)[0, 0])
    c1 = float(ref.posterior_mean(schedule, zero, one, t)[0, 0])
    bt = float(ref.q_posterior(schedule, zero, zero, t).variance[0, 0])
    sa_t, om_t = kernel_iteration(schedule.beta(), 0, t)
    sa_prev, om_prev = kernel_iteration(schedule.beta(), 0, t - 1)
    tab = tab_error(schedule, t)
    ctx = f"schedule {schedule!r}, t={t}, c0={c0!r}, c1={c1!r}, beta_tilde={bt!r}."
    # c0 + c1 sqrt(abar_t): both terms >= 0, so relative error TAB + iteration (1.5 t EPS) + 1
    # rounding; the expected sqrt(abar_{t-1}) carries 1.5 (t - 1) EPS
    assert_close("posterior mean coefficient", c0 + c1 * sa_t, sa_prev,
                 (tab + EPS * (3 * t + 1)) * sa_prev + TINY, ctx)
    # beta_tilde + c1^2 (1 - abar_t): terms >= 0; c1^2 doubles c1's TAB; the iteration adds 1.5 t EPS
    # per side; exact 0 = 0 at t = 1
    assert_close("posterior total variance", bt + c1 * c1 * om_t, om_prev,
                 (3 * tab + EPS * (3 * t + 2)) * om_prev, ctx)


@given(S.schedules())
@example(ref.linear(1))
@example(ref.linear(1000))
@example(ref.cosine(1000))
@example(ref.zero_terminal_snr(ref.linear(1000)))
def test_beta_tilde_is_below_beta_and_vanishes_at_t1(schedule):
    """beta_tilde_t <= beta_t, with beta_t - beta_tilde_t = abar_{t-1} beta_t^2 / (1 - abar_t)
    (docs/math.md §4), and beta_tilde_1 = 0 exactly: q(x_0 | x_1, x_0) is the point mass at x_0."""
    beta, bt = schedule.beta(), schedule.beta_tilde()
    T = schedule.T
    it = np.array([kernel_iteration(beta, 0, t) for t in range(0, T + 1)])         # rows t = 0..T
    sa, om = it[:, 0], it[:, 1]
    gap = sa[:-1] ** 2 * beta ** 2 / om[1:]                                    # abar_{t-1} beta_t^2 / (1 - abar_t)
    ctx = f"schedule {schedule!r}."
    # beta_tilde's three roundings and two -expm1's: <= 7 EPS relative, while exactly <= beta_t
    assert_close("beta_tilde <= beta", np.minimum(bt, beta * (1 + 7 * EPS)), bt, 0.0, ctx)
    # beta - beta_tilde: beta_tilde's 7 EPS and the subtraction's EPS / 2 of beta; the expected
    # gap carries the iteration's 3 (t - 1) + 1.5 t EPS and 3 roundings
    t = np.arange(1, T + 1)
    assert_close("beta - beta_tilde", beta - bt, gap, EPS * (7 * bt + 0.5 * beta) + EPS * (4.5 * t + 3) * gap, ctx)
    post = ref.q_posterior(schedule, X0, E1, 1)
    assert bt[0] == 0.0 and np.all(post.variance == 0.0) and np.all(post.log_variance == -np.inf), (
        f"beta_tilde_1 must be exactly 0 (1 - abar_0 = 0); got table {bt[0]!r}, q_posterior variance "
        f"{post.variance!r}, log-variance {post.log_variance!r}; schedule {schedule!r}")
    # mu_tilde_1 = c0 x_0 with c0 = beta_1 / (1 - abar_1) = 1 up to 3 EPS (one -expm1, one division),
    # and c1 = 0 exactly (1 - abar_0 = 0)
    assert_close("mu_tilde_1 = x_0", post.mean, X0, 3 * EPS * np.abs(X0), ctx)


@given(noise_cases())
@example((ref.linear(1), 1, X0, E1))
@example((ref.linear(1000), 1, X0, E1))
@example((ref.linear(1000), 1000, X0, E1))
@example((ref.cosine(200), 200, X0, E1))                                     # alpha_T = 0.001
@example((ref.zero_terminal_snr(ref.linear(20)), 19, X0, E1))               # largest t with alpha_t > 0
def test_noise_form_equals_x0_form_on_forward_samples(case):
    """On x_t = q_sample(x_0, t, eps): (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) equals
    sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t (docs/math.md §4)."""
    schedule, t, x0, eps = case
    xt = ref.q_sample(schedule, x0, t, eps)
    noise_form = ref.posterior_mean_from_eps(schedule, xt, t, eps)
    x0_form = ref.posterior_mean(schedule, x0, xt, t)
    tab = tab_error(schedule, t)
    c0, c1 = schedule.posterior_coef_x0(t), schedule.posterior_coef_xt(t)
    ra = 1 / math.sqrt(schedule.alpha(t))
    k = schedule.beta(t) / math.sqrt(schedule.one_minus_alpha_bar(t))
    sa, s1 = math.sqrt(schedule.alpha_bar(t)), math.sqrt(schedule.one_minus_alpha_bar(t))
    # x_0 form: TAB of |c0 x_0| + |c1 x_t|; noise form: TAB of (|x_t| + |k eps|) / sqrt(alpha_t);
    # x_t's own error (TAB of |sqrt(abar) x_0| + |sqrt(1 - abar) eps|) moves the two forms by
    # c1 and 1 / sqrt(alpha_t) times itself
    tol = tab * (np.abs(c0 * x0) + np.abs(c1 * xt) + ra * (np.abs(xt) + np.abs(k * eps))
                 + (c1 + ra) * (np.abs(sa * x0) + np.abs(s1 * eps))) + TINY
    assert_close("noise form", noise_form, x0_form, tol, f"schedule {schedule!r}, t={t}, x_t={xt!r}.")
