"""Exact identities behind the DDPM negative ELBO (docs/math.md §6).

- Telescoping, per trajectory (not only in expectation): for every x_{0:T},
  sum_{t=1}^T log q(x_t | x_{t-1}) = log q(x_T | x_0) + sum_{t=2}^T log q(x_{t-1} | x_t, x_0),
  on trajectories built here from drawn noise with a plain loop, densities from
  `reference.normal_log_density` on the reference distributions.
- With fixed sigma_t^2 and the noise parameterisation, for every eps_theta:
  KL(q(x_{t-1} | x_t, x_0) || N(mu_theta(eps_theta), sigma_t^2 I)) = lambda_t ||eps - eps_theta||^2 + C_t,
  lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)),
  C_t = (d / 2) (beta_tilde_t / sigma_t^2 - 1 - log(beta_tilde_t / sigma_t^2)),
  with `reference.kl_term` and `reference.posterior_mean_from_eps` on x_t = q_sample(x_0, t, eps), and
  lambda_t, C_t written from docs/math.md with 1 - abar_t, 1 - abar_{t-1} from the kernel iteration.
- Continuous decoder: -log N(x_0; mu_theta(x_1, 1), sigma_1^2 I)
  = beta_1 / (2 sigma_1^2 alpha_1) ||eps - eps_theta||^2 + (d / 2) log(2 pi sigma_1^2) (`reference.decoder_nll`).

Error model (EPS = 2^-52) as in test_posterior.py: schedule tables carry relative error
<= TAB_t = EPS (2 |log abar_t| + 12); the kernel iteration over t steps <= 1.5 t EPS; a
Gaussian log-density is bounded term by term (`log_density_error`). TINY = 1e-300.
Reproduce a failure: the falsifying example printed by Hypothesis (user betas in a note);
``CI=true python3 -m pytest properties/test_elbo_identities.py -k NAME``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import reference as ref
from ddpm_verify import strategies as S
from properties._numerics import EPS, TINY, assert_close, kernel_iteration, log_density, log_density_error

LOG_2PI = math.log(2 * math.pi)


def tab_errors(schedule: ref.Schedule) -> np.ndarray:
    """TAB_t = EPS (2 |log abar_t| + 12) for t = 1..T (beta_T = 1 adds nothing: the tables at
    t = T of a zero-terminal-SNR schedule are exact zeros and ones or conditioned by abar_{T-1})."""
    beta = schedule.beta()
    return EPS * (2 * np.abs(np.cumsum(np.log1p(-np.where(beta < 1, beta, 0.0)))) + 12)


# -- telescoping -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trajectory:
    """A forward trajectory x_{0:T} (shape (n, T + 1, d)) of `schedule`, built from standard normals
    drawn with np.random.default_rng(seed) and multiplied by `scale` (scale > 1: atypical points)."""

    schedule: ref.Schedule
    x0: np.ndarray
    seed: int
    scale: float

    def points(self) -> np.ndarray:
        """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) scale z_t, t = 1..T (docs/math.md §3), a plain loop."""
        n, d = self.x0.shape
        z = self.scale * np.random.default_rng(self.seed).standard_normal((n, self.schedule.T, d))
        x = [self.x0]
        for i, b in enumerate(self.schedule.beta().tolist()):
            x.append(math.sqrt(1.0 - b) * x[-1] + math.sqrt(b) * z[:, i])
        return np.stack(x, axis=1)


@st.composite
def trajectories(draw):
    schedule = draw(S.schedules())
    return Trajectory(schedule, draw(S.data_arrays(max_abs=10.0)), draw(S.seeds()),
                      draw(st.sampled_from([1.0, 0.1, 5.0])))


X0 = np.array([[0.5, -1.25, 3.0], [0.0, 2.0, -0.1]])


@given(trajectories())
@example(Trajectory(ref.linear(1), X0, 0, 1.0))                        # T = 1: both sides are log q(x_1|x_0)
@example(Trajectory(ref.linear(2), X0, 0, 1.0))
@example(Trajectory(ref.linear(1000), X0, 1, 1.0))
@example(Trajectory(ref.cosine(200), X0, 2, 1.0))
@example(Trajectory(ref.zero_terminal_snr(ref.linear(100)), X0, 3, 1.0))
def test_trajectory_log_likelihood_telescopes(traj: Trajectory):
    """sum_{t=1}^T log q(x_t|x_{t-1}) = log q(x_T|x_0) + sum_{t=2}^T log q(x_{t-1}|x_t,x_0) for a drawn
    trajectory (docs/math.md §6: the identity holds for every trajectory, not only in expectation)."""
    s, T = traj.schedule, traj.schedule.T
    x = traj.points()                                             # (n, T + 1, d)
    n, _, d = x.shape
    tab = tab_errors(s)                                           # (T,)
    t_all = np.broadcast_to(np.arange(1, T + 1), (n, T))
    kernel = ref.q_xt_given_xtm1(s, x[:, :-1], t_all)
    lhs_terms = log_density(x[:, 1:], kernel)                     # (n, T)
    marg = ref.q_xt_given_x0(s, x[:, 0], T)
    rhs_terms = [log_density(x[:, T], marg)[:, None]]
    err = [log_density_error(x[:, 1:], kernel.mean, kernel.variance, tab[:, None] * np.abs(kernel.mean),
                             tab[:, None]),
           log_density_error(x[:, T], marg.mean, marg.variance, tab[-1] * np.abs(marg.mean), tab[-1])[:, None]]
    if T >= 2:
        t_post = np.broadcast_to(np.arange(2, T + 1), (n, T - 1))
        x0_rep = np.broadcast_to(x[:, :1], (n, T - 1, d))
        post = ref.q_posterior(s, x0_rep, x[:, 2:], t_post)
        rhs_terms.append(log_density(x[:, 1:T], post))
        tab_p = tab[1:, None]
        scale = (np.abs(s.posterior_coef_x0()[1:, None] * x0_rep) + np.abs(s.posterior_coef_xt()[1:, None] * x[:, 2:]))
        err.append(log_density_error(x[:, 1:T], post.mean, post.variance, tab_p * scale, tab_p))
    rhs_terms = np.concatenate(rhs_terms, axis=1)
    lhs, rhs = lhs_terms.sum(axis=1), rhs_terms.sum(axis=1)
    # the 2T log-densities' own bounds, plus the two sums over t (T EPS / 2 of the summed magnitudes each)
    tol = (sum(e.sum(axis=1) for e in err)
           + 0.5 * EPS * T * (np.abs(lhs_terms).sum(axis=1) + np.abs(rhs_terms).sum(axis=1)))
    assert_close("telescoping", lhs, rhs, tol, f"{traj!r}; lhs terms {lhs_terms!r}.")


# -- the KL term as weighted noise-prediction error --------------------------------------------------

@dataclass(frozen=True)
class KLCase:
    """x_t = q_sample(x0, t, eps) at step t; the model predicts eps_theta (`pred` says how it was
    drawn) with variance sigma2 (`var_kind`: fixed_large = beta_t, fixed_small = beta_tilde_t, drawn)."""

    schedule: ref.Schedule
    t: int
    x0: np.ndarray
    eps: np.ndarray
    pred: str
    eps_theta: np.ndarray
    var_kind: str
    sigma2: float


@st.composite
def kl_cases(draw, decoder: bool = False):
    """KL-identity cases: t in 2..T with alpha_t > 0 (mu_theta divides by sqrt(alpha_t)), or t = 1 for
    the ``decoder``; eps_theta equal to eps, eps plus a small perturbation, or arbitrary; sigma_t^2
    fixed large, fixed small (t >= 2) or beta_t times a factor log-uniform in [1e-3, 1e3]."""
    if decoder:
        schedule = draw(S.schedules())
    else:   # a zero-terminal-SNR schedule needs T >= 3 to have a t >= 2 with alpha_t > 0
        schedule = draw(st.one_of(S.schedules(T=S.horizons(min_T=2), zero_terminal=False),
                                  S.zero_terminal_snr_schedules(T=S.horizons(min_T=3))))
    t = 1 if decoder else draw(S.timesteps(schedule, lo=2, positive_alpha=True))
    x0 = draw(S.data_arrays(max_abs=10.0))
    eps = draw(S.noise_arrays(x0.shape))
    pred = draw(st.sampled_from(["exact", "perturbed", "arbitrary"]))
    if pred == "exact":
        eps_theta = eps.copy()
    elif pred == "perturbed":
        eps_theta = eps + draw(S.log_uniform(1e-12, 1e-2)) * draw(S.noise_arrays(x0.shape))
    else:
        eps_theta = draw(S.noise_arrays(x0.shape))
    kinds = ["fixed_large", "drawn"] + (["fixed_small"] if t >= 2 else [])
    var_kind = draw(st.sampled_from(kinds))
    if var_kind == "drawn":
        sigma2 = float(schedule.beta(t)) * draw(S.log_uniform(1e-3, 1e3))
    else:
        sigma2 = float(ref.model_variance(schedule, t, var_kind)[0])
    return KLCase(schedule, t, x0, eps, pred, eps_theta, var_kind, sigma2)


E = np.array([[1.0, -2.0, 0.25], [0.3, 0.0, -1.5]])
ET = np.array([[0.9, -1.0, 0.0], [0.3, 0.5, 2.0]])


def mean_difference_error(s, t, x0, xt, eps, eps_theta):
    """Bound on the error of mu_tilde(x_0, x_t) - mu_theta(x_t, eps_theta) as computed from the
    tables (see test_posterior.py's noise-form test): TAB times |c0 x0| + |c1 x_t| (x_0 form),
    (|x_t| + |k eps_theta|) / sqrt(alpha_t) (noise form, k = beta_t / sqrt(1 - abar_t)), and x_t's own
    error TAB (|sqrt(abar) x_0| + |sqrt(1 - abar) eps|) moved by c1 + 1 / sqrt(alpha_t)."""
    tab = tab_errors(s)[t - 1]
    c0, c1 = s.posterior_coef_x0(t), s.posterior_coef_xt(t)
    ra = 1 / math.sqrt(s.alpha(t))
    k = s.beta(t) / math.sqrt(s.one_minus_alpha_bar(t))
    sa, s1 = math.sqrt(s.alpha_bar(t)), math.sqrt(s.one_minus_alpha_bar(t))
    return tab * (np.abs(c0 * x0) + np.abs(c1 * xt) + ra * (np.abs(xt) + np.abs(k * eps_theta))
                  + (c1 + ra) * (np.abs(sa * x0) + np.abs(s1 * eps))) + TINY


@given(kl_cases())
@example(KLCase(ref.linear(2), 2, X0, E, "arbitrary", ET, "fixed_large", 0.02))
@example(KLCase(ref.linear(1000), 2, X0, E, "arbitrary", ET, "fixed_small",
                float(ref.model_variance(ref.linear(1000), 2, "fixed_small")[0])))
@example(KLCase(ref.linear(1000), 1000, X0, E, "exact", E, "fixed_large", 0.02))
@example(KLCase(ref.cosine(100), 100, X0, E, "arbitrary", ET, "fixed_large", float(ref.cosine(100).beta(100))))
@example(KLCase(ref.zero_terminal_snr(ref.linear(20)), 19, X0, E, "arbitrary", ET, "drawn", 0.5))
def test_kl_term_is_weighted_noise_error_plus_constant(case: KLCase):
    """KL(q(x_{t-1}|x_t,x_0) || N(mu_theta(eps_theta), sigma_t^2 I)) = lambda_t ||eps - eps_theta||^2 + C_t
    for every eps_theta and fixed sigma_t^2, t >= 2 (docs/math.md §6)."""
    s, t, d = case.schedule, case.t, case.x0.shape[1]
    xt = ref.q_sample(s, case.x0, t, case.eps)
    mean_theta = ref.posterior_mean_from_eps(s, xt, t, case.eps_theta)
    got = ref.kl_term(s, case.x0, xt, t, mean_theta, case.sigma2)
    beta = float(s.beta(t))
    alpha = 1.0 - beta
    _, om = kernel_iteration(s.beta(), 0, t)
    _, om_prev = kernel_iteration(s.beta(), 0, t - 1)
    beta_tilde = om_prev / om * beta
    lam = beta ** 2 / (2 * case.sigma2 * alpha * om)
    r = beta_tilde / case.sigma2
    C = 0.5 * d * (r - 1 - math.log(r))
    sq = np.sum((case.eps - case.eps_theta) ** 2, axis=-1)
    want = lam * sq + C
    tab = tab_errors(s)[t - 1]
    # expected: lambda to (1.5 t + 4) EPS, the squared norm to (d + 1) EPS; C cancels for r ~ 1:
    # d/2 (|r - 1| dr + EPS (r + 1 + |log r|)) with dr = (3 t + 3) EPS the relative error of r
    want_err = lam * sq * EPS * (1.5 * t + 5 + d) + 0.5 * d * (abs(r - 1) * EPS * (3 * t + 3)
                                                              + 2 * EPS * (r + 1 + abs(math.log(r))))
    # kl_term: (mu_tilde - mu_theta)^2 / (2 sigma^2) from a difference with error ddiff (see
    # mean_difference_error), plus d/2 g(beta_tilde / sigma^2 - 1) with beta_tilde's TAB: d/2 |r - 1| TAB
    diff = np.abs(mean_theta - ref.posterior_mean(s, case.x0, xt, t))
    ddiff = mean_difference_error(s, t, case.x0, xt, case.eps, case.eps_theta)
    got_err = (np.sum((2 * diff * ddiff + ddiff ** 2) / (2 * case.sigma2) + 2 * EPS * diff ** 2 / case.sigma2, axis=-1)
               + 0.5 * d * (abs(r - 1) * tab + 4 * EPS * (r + 1 + abs(math.log(r)))))
    assert_close("kl identity", got, want, want_err + got_err + TINY,
                 f"{case!r}; lambda_t={lam!r}, C_t={C!r}, beta_tilde/sigma^2={r!r}.")


@given(kl_cases(decoder=True))
@example(KLCase(ref.linear(1), 1, X0, E, "arbitrary", ET, "fixed_large", 1e-4))
@example(KLCase(ref.linear(1000), 1, X0, E, "exact", E, "fixed_large", 1e-4))
@example(KLCase(ref.cosine(100), 1, X0, E, "arbitrary", ET, "drawn", 1e-7))
def test_continuous_decoder_nll_is_weighted_noise_error(case: KLCase):
    """-log N(x_0; mu_theta(x_1, 1), sigma_1^2 I) = beta_1 / (2 sigma_1^2 alpha_1) ||eps - eps_theta||^2
    + (d / 2) log(2 pi sigma_1^2) with x_1 = q_sample(x_0, 1, eps) (docs/math.md §6, L_0)."""
    s, d, s2 = case.schedule, case.x0.shape[1], case.sigma2
    x1 = ref.q_sample(s, case.x0, 1, case.eps)
    mean_theta = ref.posterior_mean_from_eps(s, x1, 1, case.eps_theta)
    got = ref.decoder_nll(case.x0, mean_theta, np.full(case.x0.shape, s2), "continuous")
    beta = float(s.beta(1))
    alpha = 1.0 - beta
    sq = np.sum((case.eps - case.eps_theta) ** 2, axis=-1)
    want = beta / (2 * s2 * alpha) * sq + 0.5 * d * math.log(2 * math.pi * s2)
    # expected: the weight to 4 EPS, the squared norm to (d + 1) EPS, the log term to 1 ulp, the sum EPS/2
    want_err = beta / (2 * s2 * alpha) * sq * EPS * (5 + d) + 0.5 * d * EPS * (abs(math.log(2 * math.pi * s2)) + 1)
    # decoder_nll: (x_0 - mu_theta)^2 / (2 sigma^2), where x_0 - mu_theta carries the mean difference's
    # error (at t = 1 mu_tilde = x_0), plus the log term
    diff = np.abs(case.x0 - mean_theta)
    ddiff = mean_difference_error(s, 1, case.x0, x1, case.eps, case.eps_theta)
    got_err = (np.sum((2 * diff * ddiff + ddiff ** 2) / (2 * s2) + 2 * EPS * diff ** 2 / s2, axis=-1)
               + d * EPS * (LOG_2PI + abs(math.log(s2)) + 1) + 0.5 * EPS * d * np.abs(got))
    assert_close("decoder identity", got, want, want_err + got_err + TINY,
                 f"{case!r}; weight beta_1 / (2 sigma^2 alpha_1) = {beta / (2 * s2 * alpha)!r}.")


# -- the prior term ---------------------------------------------------------------------------------

@st.composite
def prior_cases(draw):
    schedule = draw(S.schedules())
    return schedule, draw(S.data_arrays(max_abs=10.0))


@given(prior_cases())
@example((ref.linear(1), X0))                                          # abar_T = 1 - 1e-4
@example((ref.linear(1000), X0))
@example((ref.cosine(1000), X0))                                       # abar_T ~ 1e-9: KL ~ abar_T^2
@example((ref.zero_terminal_snr(ref.linear(50)), X0))                  # abar_T = 0: L_T = 0 exactly
@example((ref.Schedule(np.full(3, 1e-10)), X0))                        # abar_T = 1 - 3e-10
def test_prior_term_is_kl_of_forward_marginal_to_standard_normal(case):
    """L_T = KL(q(x_T | x_0) || N(0, I)) = sum_d (abar_T x_0^2 + (1 - abar_T) - 1 - log(1 - abar_T)) / 2
    (docs/math.md §6, the Gaussian KL with m1 = sqrt(abar_T) x_0, v1 = 1 - abar_T, m2 = 0, v2 = 1), i.e.
    (abar_T sum x_0^2 + d g(abar_T)) / 2 with g(a) = -a - log(1 - a) >= 0; abar_T and 1 - abar_T from the
    kernel iteration, g by its series sum_{k>=2} a^k / k for a < 1/2 (no cancellation) and by
    -a - log(1 - a) for a >= 1/2 (g >= 0.19 there)."""
    schedule, x0 = case
    T, d = schedule.T, x0.shape[1]
    sa, om = kernel_iteration(schedule.beta(), 0, T)
    a = sa * sa
    it_err = EPS * (3 * T + 1)                         # relative error of a and of 1 - a (iteration)
    if a < 0.5:
        k = np.arange(2, 80)
        g = float(np.sum(a ** k / k))                   # terms below 2^-80 a^2 beyond k = 80
        g_err = (2 * it_err + 2 * EPS) * g              # g ~ a^2: twice a's relative error
    else:
        g = -a - math.log(om)
        g_err = EPS * a + it_err + EPS * abs(math.log(om))
    want = 0.5 * (a * np.sum(x0 ** 2, axis=-1) + d * g)
    want_err = 0.5 * ((it_err + d * EPS) * a * np.sum(x0 ** 2, axis=-1) + d * g_err)
    # A reference using its accurate tables (abar_T and 1 - abar_T, TAB relative each) is within
    # 0.5 d TAB (2 g) for a < 0.1 (series in a) and 0.5 d TAB (1 + a + |log(1 - a)|) otherwise (the
    # difference a - log(1 - a): 1 - a's TAB becomes TAB absolute in its log), plus TAB of a x_0^2
    tab = float(tab_errors(schedule)[-1])
    ref_err = 0.5 * (tab * a * np.sum(x0 ** 2, axis=-1)
                     + d * tab * (2 * g if a < 0.1 else 1 + a + abs(math.log(om))))
    got = ref.prior_term(schedule, x0)
    assert_close("prior term", got, want, want_err + ref_err + EPS * np.abs(want) + TINY,
                 f"schedule {schedule!r}, abar_T={a!r} (iteration), 1-abar_T={om!r}, g(abar_T)={g!r}.")


def test_noise_error_weight_of_every_t_is_its_value_at_each_t():
    """noise_error_weight(schedule) (t omitted) is the table of lambda_t over t = 1..T."""
    for schedule in (ref.linear(20), ref.cosine(9)):
        for variance in ("fixed_small", "fixed_large"):
            table = ref.noise_error_weight(schedule, variance=variance)
            each = [float(ref.noise_error_weight(schedule, t, variance)) for t in range(1, schedule.T + 1)]
            assert np.array_equal(table, np.array(each)), variance
