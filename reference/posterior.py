"""The forward-process posterior q(x_{t-1} | x_t, x_0) (docs/math.md §4). Paper indexing t = 1..T.

The posterior variance beta_tilde_t and its clipped log (improved-diffusion's
``posterior_log_variance_clipped``) are schedule tables: ``schedule.beta_tilde(t)`` and
``schedule.log_beta_tilde_clipped(t)``.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data, same_shape
from .gaussian import DiagonalNormal
from .schedules import Schedule, check_schedule, coef_at


def mu_tilde(coef_x0, coef_xt, x0, xt) -> np.ndarray:
    """mu_tilde = coef_x0 x_0 + coef_xt x_t from the posterior coefficients (the schedule's
    `posterior_coef_x0`, `posterior_coef_xt`), broadcasting, not validated: the one place the
    posterior mean is formed (`posterior_mean` and the vectorised ELBO estimators call it)."""
    return coef_x0 * x0 + coef_xt * xt


def posterior_mean(schedule: Schedule, x0, xt, t) -> np.ndarray:
    """mu_tilde_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t.

    docs/math.md §4.
    """
    check_schedule(schedule)
    x0, xt = as_data("x0", x0), as_data("xt", xt)
    same_shape(x0=x0, xt=xt)
    return mu_tilde(coef_at(schedule, "posterior_coef_x0", t, x0.shape, "x0"),
                    coef_at(schedule, "posterior_coef_xt", t, x0.shape, "x0"), x0, xt)


def x0_from_posterior_mean(schedule: Schedule, xt, t, mean) -> np.ndarray:
    """x_0 = (mu_tilde_t - coef_xt x_t) / coef_x0, the x_0 whose posterior mean at x_t is `mean`
    (a network that predicts the previous state, improved-diffusion's ``previous_x``).

    docs/math.md §4.
    """
    check_schedule(schedule)
    xt, mean = as_data("xt", xt), as_data("mean", mean)
    same_shape(xt=xt, mean=mean)
    return ((mean - coef_at(schedule, "posterior_coef_xt", t, xt.shape, "xt") * xt)
            / coef_at(schedule, "posterior_coef_x0", t, xt.shape, "xt"))


def posterior_mean_from_eps(schedule: Schedule, xt, t, eps) -> np.ndarray:
    """Noise form mu_tilde_t = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t).

    With a predicted eps this is the DDPM model mean mu_theta(x_t, t). Undefined where
    alpha_t = 0 (t = T of a zero-terminal-SNR schedule): that raises.
    docs/math.md §4.
    """
    check_schedule(schedule)
    xt, eps = as_data("xt", xt), as_data("eps", eps)
    same_shape(xt=xt, eps=eps)
    alpha = coef_at(schedule, "alpha", t, xt.shape, "xt")
    if np.any(alpha == 0):
        raise ValueError("t: the noise form of mu_tilde_t divides by sqrt(alpha_t), and alpha_t = 0 at "
                         f"t = T = {schedule.T} of this schedule; use posterior_mean with x_0")
    beta = coef_at(schedule, "beta", t, xt.shape, "xt")
    one_minus = coef_at(schedule, "one_minus_alpha_bar", t, xt.shape, "xt")
    return mean_from_eps(1.0 / np.sqrt(alpha), beta / np.sqrt(one_minus), xt, eps)


def mean_from_eps(inv_sqrt_alpha, eps_coef, xt, eps) -> np.ndarray:
    """(x_t - eps_coef eps) inv_sqrt_alpha, eps_coef = beta_t / sqrt(1 - abar_t), broadcasting, not
    validated: the one place the noise form of mu_tilde is formed (`posterior_mean_from_eps`, and
    `elbo.eps_model`'s model, which precomputes the coefficients)."""
    return (xt - eps_coef * eps) * inv_sqrt_alpha


def q_posterior(schedule: Schedule, x0, xt, t) -> DiagonalNormal:
    """The distribution q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I).

    log_variance is log beta_tilde_t itself: -inf at t = 1, where the posterior is a point mass
    at x_0 (use ``schedule.log_beta_tilde_clipped`` for the clipped value).
    docs/math.md §4.
    """
    mean = posterior_mean(schedule, x0, xt, t)
    variance = coef_at(schedule, "beta_tilde", t, mean.shape, "x0").copy()
    with np.errstate(divide="ignore"):
        return DiagonalNormal(mean, variance, np.log(variance))
