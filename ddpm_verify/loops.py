"""Per-timestep versions of the reference ELBO estimators, written the plain way.

They loop over t in Python with the whole batch at each step, as improved-diffusion's
``calc_bpd_loop`` does, and consume the random draws in the same order as the vectorised
estimators of `reference.elbo`, so the two must agree to rounding on the same seed. They
serve as a cross-check of the vectorised code and as the baseline in ``benchmarks/``.
"""

from __future__ import annotations

import math

import numpy as np

from reference.elbo import ElboEstimate, _decoder_log_prob, call_model, prior_term
from reference.gaussian import LOG_2PI, _kl_normal, _normal_log_density
from reference.schedules import Schedule


def _step(model, x, t, n):
    return call_model(model, x, np.full(n, t, dtype=np.int64))


def neg_elbo_kl_loop(schedule: Schedule, model, x0: np.ndarray, rng: np.random.Generator,
                     decoder: str = "continuous") -> ElboEstimate:
    """Closed-form-KL estimator, one Python iteration per t (same draws as the vectorised one)."""
    n, d = x0.shape
    T = schedule.T
    eps_all = rng.standard_normal((n, T, d))
    terms = np.empty((n, T + 1))
    for t in range(1, T + 1):
        eps = eps_all[:, t - 1]
        xt = math.sqrt(schedule.alpha_bar(t)) * x0 + math.sqrt(schedule.one_minus_alpha_bar(t)) * eps
        mean, var = _step(model, xt, t, n)
        if t == 1:
            terms[:, 0] = -np.sum(_decoder_log_prob(decoder, x0, mean, var), axis=-1)
        else:
            mu = schedule.posterior_coef_x0(t) * x0 + schedule.posterior_coef_xt(t) * xt
            terms[:, t - 1] = np.sum(_kl_normal(mu, schedule.beta_tilde(t), mean, var), axis=-1)
    terms[:, T] = prior_term(schedule, x0)
    return ElboEstimate(terms.sum(axis=1), terms.mean(axis=0), d)


def neg_elbo_trajectory_loop(schedule: Schedule, model, x0: np.ndarray, rng: np.random.Generator,
                             decoder: str = "continuous") -> ElboEstimate:
    """Trajectory estimator, running the kernel x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z_t step by step."""
    n, d = x0.shape
    T = schedule.T
    z_all = rng.standard_normal((n, T, d))
    terms = np.empty((n, T + 1))
    x_prev = x0
    for t in range(1, T + 1):
        z = z_all[:, t - 1]
        x = math.sqrt(schedule.alpha(t)) * x_prev + math.sqrt(schedule.beta(t)) * z
        mean, var = _step(model, x, t, n)
        log_p = (_decoder_log_prob(decoder, x0, mean, var) if t == 1
                 else _normal_log_density(x_prev, mean, var))
        log_q = -0.5 * (d * (LOG_2PI + schedule.log_beta(t)) + np.sum(z ** 2, axis=-1))
        terms[:, t - 1] = log_q - np.sum(log_p, axis=-1)
        x_prev = x
    terms[:, T] = 0.5 * (d * LOG_2PI + np.sum(x_prev ** 2, axis=-1))
    return ElboEstimate(terms.sum(axis=1), terms.mean(axis=0), d)
