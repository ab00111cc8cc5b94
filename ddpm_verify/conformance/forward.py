"""Checks of the schedule, the forward process, the posterior and the parameterisations."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

import reference

from ._core import (
    SEED,
    CheckResult,
    alpha_bar_tolerance,
    battery,
    beta_tolerance,
    coef_error,
    compare,
    from_verdict,
    labels,
    mix_tolerance,
    sqrt_errors,
    table_roundoff,
    worst,
)


def check_betas(target) -> CheckResult:
    """beta_t against the schedule the target's configuration names (`beta_tolerance`)."""
    if not getattr(target, "schedule_is_named", True):
        return CheckResult("betas", "skip", detail=f"{target.name} takes its betas as input: there is no "
                                                   "named schedule to check them against")
    ref = target.reference_schedule()
    return compare("schedule: beta_t", target.tables()["beta"], ref.beta(), beta_tolerance(target, ref),
                   labels(np.arange(1, ref.T + 1)))


def check_alpha_bar(target) -> CheckResult:
    """abar_t = prod_{s <= t} (1 - beta_s) (`alpha_bar_tolerance`)."""
    ref = target.reference_schedule()
    return compare("schedule: abar_t", target.tables()["alpha_bar"], ref.alpha_bar(),
                   alpha_bar_tolerance(target, ref), labels(np.arange(1, ref.T + 1)))


def check_q_marginal(target) -> CheckResult:
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): mean (as q_sample with eps = 0), variance
    (the table's error plus 2u) and log-variance (log(1 - abar_t): error (delta + u_t) / (1 - abar_t)
    + 2u |log(1 - abar_t)|)."""
    ref = target.reference_schedule()
    t, x0, _ = battery(ref.T)
    mean, var, log_var = target.q_mean_variance(x0, t)
    u = target.unit_roundoff
    om = ref.one_minus_alpha_bar(t).reshape(-1, 1)
    delta = alpha_bar_tolerance(target, ref)[t - 1].reshape(-1, 1) + table_roundoff(target)
    where = labels(t)
    return worst("forward: q(x_t | x_0) mean, variance, log-variance",
                 compare("mean", mean, reference.q_xt_given_x0(ref, x0, t).mean,
                         mix_tolerance(target, ref, t, x0, 0.0), where),
                 compare("variance", var, np.broadcast_to(om, x0.shape), 2 * (delta + 2 * u * om), where),
                 compare("log-variance", log_var, np.broadcast_to(np.log(om), x0.shape),
                         2 * (delta / om + 2 * u * np.abs(np.log(om))), where))


def check_q_sample(target) -> CheckResult:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; inputs rounded to the target's dtype (u each)."""
    ref = target.reference_schedule()
    t, x0, eps = battery(ref.T)
    return compare("forward: q_sample (add_noise)", target.q_sample(x0, t, eps),
                   reference.q_sample(ref, x0, t, eps), mix_tolerance(target, ref, t, x0, eps), labels(t))


def check_q_sample_distribution(target) -> CheckResult:
    """The target's own noise: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) ~ N(0, 1) i.i.d., by a DKW
    test on 40,000 values at t = T/2 (false-fail rate 1e-6; detects a CDF distance of 0.0136)."""
    from ..stats import assert_cdf

    ref = target.reference_schedule()
    t = max(ref.T // 2, 1)
    x0 = np.random.default_rng(SEED + 2).uniform(-1, 1, (10_000, 4))
    xt = target.q_sample_random(x0, t, seed=SEED + 3)
    z = (xt - np.sqrt(ref.alpha_bar(t)) * x0) / np.sqrt(ref.one_minus_alpha_bar(t))
    return from_verdict("forward: q_sample's own noise is N(0, I)",
                        lambda: assert_cdf(z.ravel(), ndtr, name=f"q_sample noise at t={t}"), z)


def check_velocity(target) -> CheckResult:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (MATH.md 5); same error terms as q_sample."""
    ref = target.reference_schedule()
    t, x0, eps = battery(ref.T)
    return compare("parameterisation: v (get_velocity)", target.velocity(x0, t, eps),
                   reference.v_from_x0_eps(ref, x0, t, eps), mix_tolerance(target, ref, t, eps, x0), labels(t))


def check_conversions(target) -> CheckResult:
    """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) and eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
    (MATH.md 5), at x_t from the battery, where abar_t > 0. Budget: the sqrt tables' errors
    (`sqrt_errors`) over the divisor, plus 6u of each term's magnitude; 2x margin."""
    ref = target.reference_schedule()
    t, x0, eps = battery(ref.T)
    keep = ref.alpha_bar(t) > 0
    t, x0, eps = t[keep], x0[keep], eps[keep]
    xt = reference.q_sample(ref, x0, t, eps)
    u = target.unit_roundoff
    sa, s1 = np.sqrt(ref.alpha_bar(t)).reshape(-1, 1), np.sqrt(ref.one_minus_alpha_bar(t)).reshape(-1, 1)
    e_a, e_1 = sqrt_errors(target, ref, t)
    tol_x0 = 2 * ((np.abs(xt) + s1 * np.abs(eps)) * e_a / sa ** 2 + np.abs(eps) * e_1 / sa
                  + 6 * u * (np.abs(xt) + s1 * np.abs(eps)) / sa)
    tol_eps = 2 * ((np.abs(xt) + sa * np.abs(x0)) * e_1 / s1 ** 2 + np.abs(x0) * e_a / s1
                   + 6 * u * (np.abs(xt) + sa * np.abs(x0)) / s1)
    where = labels(t)
    return worst("parameterisation: x0 from eps, eps from x0",
                 compare("x0_from_eps", target.x0_from_eps(xt, t, eps), reference.x0_from_eps(ref, xt, t, eps),
                         tol_x0, where),
                 compare("eps_from_x0", target.eps_from_x0(xt, t, x0), reference.eps_from_x0(ref, xt, t, x0),
                         tol_eps, where))


def check_posterior(target) -> CheckResult:
    """q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I) (MATH.md 4): the mean (coefficients off
    by `coef_error` each, plus 4u of the result), beta_tilde_t (for t >= 2: relative `coef_error`;
    t = 1: 0 exactly, or the clipped value a library may store there) and log beta_tilde_t clipped at
    t = 1 to log beta_tilde_2 (absolute `coef_error` + u |log|)."""
    ref = target.reference_schedule()
    t, x0, eps = battery(ref.T)
    xt = reference.q_sample(ref, x0, t, eps)
    mean, var, log_var = target.q_posterior(x0, xt, t)
    q = reference.q_posterior(ref, x0, xt, t)
    c = coef_error(target, ref, t)
    u = target.unit_roundoff
    c0, c1 = ref.posterior_coef_x0(t).reshape(-1, 1), ref.posterior_coef_xt(t).reshape(-1, 1)
    mean_tol = c * (c0 * np.abs(x0) + c1 * np.abs(xt)) + 4 * u * np.abs(q.mean)
    bt = np.broadcast_to(ref.beta_tilde(t).reshape(-1, 1), x0.shape)
    lv = np.broadcast_to(ref.log_beta_tilde_clipped(t).reshape(-1, 1), x0.shape)
    where = labels(t)
    later = t >= 2
    return worst("posterior: mean, variance, log-variance (clipped)",
                 compare("mean", mean, q.mean, mean_tol, where),
                 compare("variance (t >= 2)", var[later], bt[later], (c * bt)[later],
                         [w for w, k in zip(where, later) if k]),
                 compare("log-variance", log_var, lv, c + u * np.abs(lv), where))
