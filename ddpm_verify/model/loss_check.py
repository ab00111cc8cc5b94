"""Check (a): the model's torch loss code against `reference` on the same (x_0, t, eps).

The network is evaluated once, at the x_t that torch's `q_sample` computed; the reference gets the
same float32 values (x_0, eps, that x_t and eps_theta, widened exactly to float64) and computes
every quantity in float64. Each tolerance is u = 2^-24 times the condition number of the
float32 formula at that input (first order; the float64 reference's own error is below 2^-50
relative and covered by the bounds' rounding up of constants):

- q_sample: x_t = a + b, a = sqrt(abar_t) x_0, b = sqrt(1 - abar_t) eps; each coefficient is
  rounded (u), each product (u), the sum (u |x_t|): 3u (|a| + |b|).
- mu~_t = c0 x_0 + c1 x_t: 3u (|c0 x_0| + |c1 x_t|), the same way.
- mu_theta = r (x_t - c eps_theta), r = 1/sqrt(alpha_t), c = beta_t / sqrt(1 - abar_t):
  u (r (|x_t| + 3 |c eps_theta|) + 2 |mu_theta|).
- log sigma^2, log beta~: the table rounded once, u |log v|.
- the KL of each L_{t-1}: `conformance.budgets.kl_tolerance` with the input errors above.
- the decoder -log N(x_0; mu, e^lv): `conformance.continuous_decoder_tolerance`.
- L_T = (abar_T sum x_0^2 + d g) / 2, all parts >= 0: (d + 4) u L_T.
- L_simple = sum_d (eps - eps_theta)^2, all parts >= 0: (d + 3) u L_simple.
- bits per dimension: the nats' budget / (d ln 2) plus 2u of the value.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import reference

from ..conformance.budgets import continuous_decoder_tolerance, kl_tolerance
from ..results import Result, compare, worst
from . import losses
from .losses import VARIANCES

U32 = 2.0 ** -24


def loss_battery(mixture: reference.GaussianMixture, T: int, rng: np.random.Generator, per_t: int = 4):
    """(x0, t, eps) as float32 numpy arrays: `per_t` rows for every t = 1..T, x0 from the data,
    eps standard normal."""
    t = np.repeat(np.arange(1, T + 1, dtype=np.int64), per_t)
    x0 = mixture.sample(rng, t.size).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    return x0, t, eps


def check_loss_code(net: torch.nn.Module, tab: losses.Tables, schedule: reference.Schedule,
                    x0: np.ndarray, t: np.ndarray, eps: np.ndarray) -> tuple[Result, list[Result]]:
    """Compare q_sample, L_simple, mu_theta, every VLB term (both fixed variances; nats and bits per
    dimension) and L_T of `losses` with `reference`; returns (the worst, all results)."""
    u, d = U32, x0.shape[1]
    x0_t, t_t, eps_t = torch.from_numpy(x0), torch.from_numpy(t), torch.from_numpy(eps)
    with torch.no_grad():
        xt_t = losses.q_sample(tab, x0_t, t_t, eps_t)
        eps_theta_t = net(xt_t, t_t)
        l_simple_t = losses.l_simple(eps_t, eps_theta_t)
        mean_t = losses.model_mean(tab, xt_t, t_t, eps_theta_t)
        terms_t = {v: losses.vlb_term(tab, x0_t, xt_t, t_t, eps_theta_t, v) for v in VARIANCES}
        prior_t = losses.prior_term(tab, x0_t)
    f64 = lambda a: a.double().numpy()
    x0d, epsd, xt, eps_theta = x0.astype(np.float64), eps.astype(np.float64), f64(xt_t), f64(eps_theta_t)

    results = []
    a = np.sqrt(schedule.alpha_bar(t))[:, None] * x0d
    b = np.sqrt(schedule.one_minus_alpha_bar(t))[:, None] * epsd
    results.append(compare(xt, reference.q_sample(schedule, x0d, t, epsd),
                           3 * u * (np.abs(a) + np.abs(b)), t, part="q_sample"))
    want = np.sum((epsd - eps_theta) ** 2, axis=-1)
    results.append(compare(f64(l_simple_t), want, (d + 3) * u * want, t, part="L_simple"))

    mu_theta = reference.posterior_mean_from_eps(schedule, xt, t, eps_theta)
    r = (1 / np.sqrt(schedule.alpha(t)))[:, None]
    c = (schedule.beta(t) / np.sqrt(schedule.one_minus_alpha_bar(t)))[:, None]
    d_mu_theta = u * (r * (np.abs(xt) + 3 * np.abs(c * eps_theta)) + 2 * np.abs(mu_theta))
    results.append(compare(f64(mean_t), mu_theta, d_mu_theta, t, part="mu_theta"))

    mu_tilde = reference.posterior_mean(schedule, x0d, xt, t)
    c0, c1 = schedule.posterior_coef_x0(t)[:, None], schedule.posterior_coef_xt(t)[:, None]
    d_mu_tilde = 3 * u * (np.abs(c0 * x0d) + np.abs(c1 * xt))
    lv_tilde = np.broadcast_to(schedule.log_beta_tilde_clipped(t)[:, None], xt.shape)
    kl_rows, dec_rows = t >= 2, t == 1
    for variance in VARIANCES:
        var, lv = reference.model_variance(schedule, t, variance)
        var, lv = np.broadcast_to(var[:, None], xt.shape), np.broadcast_to(lv[:, None], xt.shape)
        want, tol = np.empty(t.size), np.empty(t.size)
        k = kl_rows
        want[k] = reference.kl_term(schedule, x0d[k], xt[k], t[k], mu_theta[k], var[k])
        tol[k] = kl_tolerance(mu_tilde[k], lv_tilde[k], mu_theta[k], lv[k], d_mu_tilde[k], u * np.abs(lv_tilde[k]),
                              d_mu_theta[k], u * np.abs(lv[k]), u)
        k = dec_rows
        want[k] = reference.decoder_nll(x0d[k], mu_theta[k], var[k])
        tol[k] = continuous_decoder_tolerance(x0d[k], mu_theta[k], lv[k], d_mu_theta[k], u * np.abs(lv[k]), u)
        got = f64(terms_t[variance])
        results.append(compare(got, want, tol, t, part=f"VLB terms ({variance}, nats)"))
        got_bpd = f64(losses.to_bits_per_dim(terms_t[variance], d))
        want_bpd = reference.nats_to_bits_per_dim(want, d)
        results.append(compare(got_bpd, want_bpd,
                               tol / (d * math.log(2)) + 2 * u * np.abs(want_bpd), t,
                               part=f"VLB terms ({variance}, bits/dim)"))
    want = reference.prior_term(schedule, x0d)
    results.append(compare(f64(prior_t), want, (d + 4) * u * want, t, part="L_T (prior)"))
    return worst(*results, name="loss code vs reference"), results
