"""The forward (noising) process q (docs/math.md §3). Paper indexing t = 1..T; data of shape (..., d).

t may be a Python int (one timestep for all data) or an integer array equal in shape to the
leading axes of the data (one timestep per example). Variances are isotropic and returned
repeated to the mean's shape.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data, expand_to, same_shape
from .gaussian import DiagonalNormal
from .schedules import Schedule, _log1mexp, check_schedule, coef_at


def q_xt_given_x0(schedule: Schedule, x0, t) -> DiagonalNormal:
    """The distribution q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).

    docs/math.md §3.
    """
    check_schedule(schedule)
    x0 = as_data("x0", x0)
    mean = np.sqrt(coef_at(schedule, "alpha_bar", t, x0.shape, "x0")) * x0
    variance = coef_at(schedule, "one_minus_alpha_bar", t, x0.shape, "x0").copy()
    log_variance = coef_at(schedule, "log_one_minus_alpha_bar", t, x0.shape, "x0").copy()
    return DiagonalNormal(mean, variance, log_variance)


def q_sample(schedule: Schedule, x0, t, eps) -> np.ndarray:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, a draw from q(x_t | x_0) given the noise eps.

    docs/math.md §3.
    """
    check_schedule(schedule)
    x0, eps = as_data("x0", x0), as_data("eps", eps)
    same_shape(x0=x0, eps=eps)
    return noised(np.sqrt(coef_at(schedule, "alpha_bar", t, x0.shape, "x0")),
                  np.sqrt(coef_at(schedule, "one_minus_alpha_bar", t, x0.shape, "x0")), x0, eps)


def noised(sqrt_abar, sqrt_one_minus_abar, x0, eps) -> np.ndarray:
    """x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps from the two square roots, broadcasting, not
    validated: the one place this combination is formed (q_sample, the vectorised ELBO
    estimator, DDIM inversion)."""
    return sqrt_abar * x0 + sqrt_one_minus_abar * eps


def q_xt_given_xtm1(schedule: Schedule, x_prev, t) -> DiagonalNormal:
    """The kernel q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I); `x_prev` is x_{t-1}.

    docs/math.md §3.
    """
    check_schedule(schedule)
    x_prev = as_data("x_prev", x_prev)
    mean = np.sqrt(coef_at(schedule, "alpha", t, x_prev.shape, "x_prev")) * x_prev
    variance = coef_at(schedule, "beta", t, x_prev.shape, "x_prev").copy()
    log_variance = coef_at(schedule, "log_beta", t, x_prev.shape, "x_prev").copy()
    return DiagonalNormal(mean, variance, log_variance)


def q_xt_given_xs(schedule: Schedule, xs, s, t) -> DiagonalNormal:
    """q(x_t | x_s) = N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I) for 0 <= s < t <= T.

    s = 0 gives q(x_t | x_0) (abar_0 = 1). The ratio is exp(log abar_t - log abar_s), and
    1 - ratio is -expm1(log abar_t - log abar_s) (`Schedule.log_alpha_bar_ratio`). s and t must
    have the same shape, or be scalars.
    docs/math.md §3.
    """
    check_schedule(schedule)
    xs = as_data("xs", xs)
    log_ratio = schedule.log_alpha_bar_ratio(s, t)
    log_ratio = expand_to(log_ratio, xs.shape, t_name="s and t", x_name="xs")
    variance = expand_to(schedule.one_minus_alpha_bar_ratio(s, t), xs.shape, t_name="s and t", x_name="xs")
    return DiagonalNormal(np.exp(0.5 * log_ratio) * xs, 0.0 + variance, _log1mexp(log_ratio))
