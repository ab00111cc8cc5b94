"""Checks of the schedule, the forward process, the posterior and the parameterisations.

Each check takes a `Checked` target (ddpm_verify.adapters.protocol) and returns a `Result`;
inputs are flat (n, d) float64 arrays (the target sees them in its `data_shape`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

import reference

from .. import SEED
from ..results import Result, compare, from_verdict, skip
from .budgets import alpha_bar_tolerance, beta_tolerance, coef_error, mix_tolerance, sqrt_errors
from .inputs import battery, rows_for
from .model import compared, convention_hint, log_beta_tilde_at


def check_betas(target) -> Result:
    """beta_t against the schedule the target's configuration names (`beta_tolerance`, plus the
    rounding to the dtype the table is stored in)."""
    if not target.schedule_is_named:
        return skip(f"{target.name} takes its betas as input: there is no named schedule to check them against")
    ref = target.schedule
    got, u_store = target.stored_table("betas")
    tol = beta_tolerance(target, ref) + u_store * ref.beta()
    return compare(got, ref.beta(), tol, np.arange(1, ref.T + 1))


def check_alpha_bar(target) -> Result:
    """abar_t = prod_{s <= t} (1 - beta_s) (`alpha_bar_tolerance`, plus the storage rounding)."""
    ref = target.schedule
    got, u_store = target.stored_table("alpha_bar")
    tol = alpha_bar_tolerance(target, ref) + u_store * ref.alpha_bar()
    return compare(got, ref.alpha_bar(), tol, np.arange(1, ref.T + 1))


def _q_variance_budget(target, ref, t):
    """1 - abar_t and its budget: the table's error delta plus u_t, plus 2u; 2x margin."""
    om = ref.one_minus_alpha_bar(t).reshape(-1, 1)
    delta = alpha_bar_tolerance(target, ref)[t - 1].reshape(-1, 1) + target.table_roundoff
    return om, delta


def check_q_mean(target) -> Result:
    """Mean of q(x_t | x_0) = sqrt(abar_t) x_0 (docs/math.md §3); the budget of q_sample with eps = 0."""
    ref = target.schedule
    t, x0, _ = battery(ref.T, target.d)
    return compare(target.q_mean(x0, t), reference.q_xt_given_x0(ref, x0, t).mean,
                   mix_tolerance(target, ref, t, x0, 0.0), t)


def check_q_variance(target) -> Result:
    """Variance of q(x_t | x_0) = 1 - abar_t: the table's error plus 2u, 2x margin."""
    ref = target.schedule
    t, x0, _ = battery(ref.T, target.d)
    om, delta = _q_variance_budget(target, ref, t)
    u = target.unit_roundoff
    return compare(target.q_variance(x0, t), np.broadcast_to(om, x0.shape), 2 * (delta + 2 * u * om), t)


def check_q_log_variance(target) -> Result:
    """log(1 - abar_t): error (delta + u_t) / (1 - abar_t) + 2u |log(1 - abar_t)|, 2x margin."""
    ref = target.schedule
    t, x0, _ = battery(ref.T, target.d)
    om, delta = _q_variance_budget(target, ref, t)
    u = target.unit_roundoff
    return compare(target.q_log_variance(x0, t), np.broadcast_to(np.log(om), x0.shape),
                   2 * (delta / om + 2 * u * np.abs(np.log(om))), t)


def check_q_sample(target) -> Result:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; inputs rounded to the target's dtype (u each)."""
    ref = target.schedule
    t, x0, eps = battery(ref.T, target.d)
    return compare(target.q_sample(x0, t, eps), reference.q_sample(ref, x0, t, eps),
                   mix_tolerance(target, ref, t, x0, eps), t)


def check_q_sample_distribution(target) -> Result:
    """The target's own noise: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) ~ N(0, 1) i.i.d., by a DKW
    test on at least 40,000 values at t = T/2 (false-fail rate 1e-6; detects a CDF distance of
    0.0136)."""
    from ..stats import assert_cdf

    ref = target.schedule
    t = max(ref.T // 2, 1)
    x0 = np.random.default_rng(SEED + 2).uniform(-1, 1, (rows_for(40_000, target.d), target.d))
    xt = target.q_sample_random(x0, np.full(len(x0), t), SEED + 3)
    z = (xt - np.sqrt(ref.alpha_bar(t)) * x0) / np.sqrt(ref.one_minus_alpha_bar(t))
    return from_verdict(lambda: assert_cdf(z.ravel(), ndtr, name=f"q_sample noise at t={t}"), z)


def check_velocity(target) -> Result:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (docs/math.md §5); same error terms as q_sample."""
    ref = target.schedule
    t, x0, eps = battery(ref.T, target.d)
    return compare(target.velocity(x0, t, eps), reference.v_from_x0_eps(ref, x0, t, eps),
                   mix_tolerance(target, ref, t, eps, x0), t)


def _conversion_inputs(target):
    """The battery where abar_t > 0 (x0 from eps divides by sqrt(abar_t)), with x_t = q_sample."""
    ref = target.schedule
    t, x0, eps = battery(ref.T, target.d)
    keep = ref.alpha_bar(t) > 0
    t, x0, eps = t[keep], x0[keep], eps[keep]
    sa, s1 = np.sqrt(ref.alpha_bar(t)).reshape(-1, 1), np.sqrt(ref.one_minus_alpha_bar(t)).reshape(-1, 1)
    e_a, e_1 = sqrt_errors(target, ref, t)
    return ref, t, x0, eps, reference.q_sample(ref, x0, t, eps), sa, s1, e_a, e_1


def check_x0_from_eps(target) -> Result:
    """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (docs/math.md §5), where abar_t > 0. Budget: the sqrt
    tables' errors (`sqrt_errors`) over the divisor, plus 6u of each term's magnitude; 2x margin."""
    ref, t, x0, eps, xt, sa, s1, e_a, e_1 = _conversion_inputs(target)
    u = target.unit_roundoff
    tol = 2 * ((np.abs(xt) + s1 * np.abs(eps)) * e_a / sa ** 2 + np.abs(eps) * e_1 / sa
               + 6 * u * (np.abs(xt) + s1 * np.abs(eps)) / sa)
    return compare(target.x0_from_eps(xt, t, eps), reference.x0_from_eps(ref, xt, t, eps), tol, t)


def check_eps_from_x0(target) -> Result:
    """eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar) (docs/math.md §5); budget as `check_x0_from_eps`."""
    ref, t, x0, eps, xt, sa, s1, e_a, e_1 = _conversion_inputs(target)
    u = target.unit_roundoff
    tol = 2 * ((np.abs(xt) + sa * np.abs(x0)) * e_1 / s1 ** 2 + np.abs(x0) * e_a / s1
               + 6 * u * (np.abs(xt) + sa * np.abs(x0)) / s1)
    return compare(target.eps_from_x0(xt, t, x0), reference.eps_from_x0(ref, xt, t, x0), tol, t)


def _posterior_inputs(target):
    ref = target.schedule
    t, x0, eps = battery(ref.T, target.d)
    return ref, t, x0, reference.q_sample(ref, x0, t, eps)


def check_posterior_mean(target) -> Result:
    """mu_tilde_t of q(x_{t-1} | x_t, x_0) (docs/math.md §4): each coefficient off by `coef_error`, plus
    4u of the result."""
    ref, t, x0, xt = _posterior_inputs(target)
    c = coef_error(target, ref, t)
    c0, c1 = ref.posterior_coef_x0(t).reshape(-1, 1), ref.posterior_coef_xt(t).reshape(-1, 1)
    want = reference.posterior_mean(ref, x0, xt, t)
    tol = c * (c0 * np.abs(x0) + c1 * np.abs(xt)) + 4 * target.unit_roundoff * np.abs(want)
    return compare(target.posterior_mean(x0, xt, t), want, tol, t)


def check_posterior_variance(target) -> Result:
    """beta_tilde_t for t >= 2, relative budget `coef_error`. At t = 1 (beta_tilde_1 = 0) no noise is
    added and libraries keep the value as their t = 1 convention makes it: not compared."""
    ref, t, x0, xt = _posterior_inputs(target)
    got = target.posterior_variance(x0, xt, t)
    later = t >= 2
    bt = np.broadcast_to(ref.beta_tilde(t).reshape(-1, 1), x0.shape)
    return compare(got[later], bt[later], (coef_error(target, ref, t) * bt)[later], t[later])


def check_posterior_log_variance(target) -> Result:
    """log beta_tilde_t, with t = 1 by the target's `log_variance_at_1` (`log_beta_tilde_at`);
    absolute budget `coef_error` + u |log|."""
    ref, t, x0, xt = _posterior_inputs(target)
    got = target.posterior_log_variance(x0, xt, t)
    keep = compared(target, t)
    lv = np.broadcast_to(log_beta_tilde_at(target, ref, t), x0.shape)
    with np.errstate(invalid="ignore"):
        tol = np.where(np.isfinite(lv), coef_error(target, ref, t) + target.unit_roundoff * np.abs(lv), 0.0)
    return convention_hint(compare(got[keep], lv[keep], tol[keep], t[keep]), target, got[keep], t[keep])
