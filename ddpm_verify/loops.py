"""Per-timestep versions of the reference's negative-ELBO estimators, written the plain way.

They loop over t in Python with the whole batch at each step, as improved-diffusion's
``calc_bpd_loop`` does, and consume the random draws in the same order as the vectorised
estimators of `reference.elbo`, so the two must agree to rounding on the same seed. Each term is
the reference's own public per-term function (`kl_term`, `decoder_nll`, `prior_term`,
`normal_log_density`): these loops check the vectorisation (the solved forward recursion, the
chunking, the order of the draws), not the formulas, which are proved elsewhere (sympy,
50-digit exact values). They are also the baseline of ``benchmarks/elbo_estimators.py``.
"""

from __future__ import annotations

import math

import numpy as np

from reference import ElboEstimate, Schedule, call_model, decoder_nll, kl_term, normal_log_density, prior_term


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
        terms[:, t - 1] = (decoder_nll(x0, mean, var, decoder) if t == 1 else
                           kl_term(schedule, x0, xt, np.full(n, t), mean, var))
    terms[:, T] = prior_term(schedule, x0)
    return ElboEstimate(terms.sum(axis=1), terms.mean(axis=0), d)


def neg_elbo_trajectory_loop(schedule: Schedule, model, x0: np.ndarray, rng: np.random.Generator,
                             decoder: str = "continuous") -> ElboEstimate:
    """Trajectory estimator, running the kernel x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z_t step by
    step; log q(x_t | x_{t-1}) = sum_d log N(z; 0, 1) - (d / 2) log beta_t, from the draws z."""
    n, d = x0.shape
    T = schedule.T
    z_all = rng.standard_normal((n, T, d))
    terms = np.empty((n, T + 1))
    x_prev = x0
    for t in range(1, T + 1):
        z = z_all[:, t - 1]
        x = math.sqrt(schedule.alpha(t)) * x_prev + math.sqrt(schedule.beta(t)) * z
        mean, var = _step(model, x, t, n)
        neg_log_p = (decoder_nll(x0, mean, var, decoder) if t == 1
                     else -np.sum(normal_log_density(x_prev, mean, var), axis=-1))
        log_q = np.sum(normal_log_density(z, 0.0, 1.0), axis=-1) - 0.5 * d * schedule.log_beta(t)
        terms[:, t - 1] = log_q + neg_log_p
        x_prev = x
    terms[:, T] = -np.sum(normal_log_density(x_prev, 0.0, 1.0), axis=-1)
    return ElboEstimate(terms.sum(axis=1), terms.mean(axis=0), d)
