"""The error budgets of the checks: how far a correct target's float arithmetic may move each value.

Each check compares what the target computes with the float64 reference on a fixed, seeded
battery of inputs. Its tolerance is the target's unit roundoff u times the condition number
of the formula at each input (derived next to each helper), so float32 arithmetic passes with
its rounding reported as the fraction of the budget used, while a wrong formula, a NaN where
the math is finite, or wrong semantics fails. An approximation made by design (the tanh normal
CDF) gets a second budget of its own measured size: an error within it is a precision note,
not a failure.
"""

from __future__ import annotations

import math

import numpy as np

import reference

#: max |Phi_tanh(x) - Phi(x)| of 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), measured against
#: scipy.special.ndtr on a grid of step 1e-5 over [-12, 12] (1.789e-4 at x = -2.592), rounded up
TANH_CDF_ERROR = 1.8e-4



def beta_tolerance(target, ref):
    """Betas built in the target's table dtype (e.g. torch.linspace in float32): absolute error
    <= 2u max(beta), plus u |beta| for the final rounding; 2x margin.

    Cosine betas from 1 - f(t) / f(t - 1), f = cos^2(x) with x = (t/T + s)/(1 + s) pi/2, carry
    f's relative condition 2 x tan(x) at both t and t - 1, times (1 - beta_t).

    Betas recomputed from the tables as 1 - abar_t / abar_{t-1} (`betas_recomputed`): the ratio of
    two consecutive running products is alpha_t (1 + 3 delta), |delta| <= u, and the subtraction
    rounds once more: 3u alpha_t + u beta_t absolute; 2x margin.

    Betas rescaled to zero terminal SNR in that dtype (r'_t = (r_t - r_T) s, r = sqrt(abar),
    beta'_t = 1 - (r'_t / r'_{t-1})^2) also carry the cancellation in r_t - r_T: relative error
    e_t = u (r_t + r_T) / (r_t - r_T) + 2u in r'_t, hence alpha'_t (2 (e_t + e_{t-1}) + 2u) in beta'_t.
    """
    u = target.table_roundoff
    beta = ref.beta()
    tol = 4 * u * (np.abs(beta) + np.max(beta))
    if ref.name.startswith("cosine"):
        s, T = 0.008, ref.T
        x = (np.arange(0, T + 1) / T + s) / (1 + s) * np.pi / 2
        cond = 2 * x * np.tan(x) + 4
        tol = tol + 2 * u * (1 - beta) * (cond[1:] + cond[:-1])
    if target.betas_recomputed:
        tol = tol + 2 * (3 * u * (1 - beta) + u * beta)
    base = target.rescaled_from
    if base is not None:
        r = np.sqrt(base.alpha_bar())
        with np.errstate(divide="ignore"):
            e = np.where(r > r[-1], u * (r + r[-1]) / (r - r[-1]) + 2 * u, 0.0)
        e_prev = np.concatenate([[0.0], e[:-1]])
        tol = tol + 2 * (1 - beta) * (2 * (e + e_prev) + 2 * u)
    return tol


def alpha_bar_tolerance(target, ref):
    """abar_t as a running product in the table dtype: 2(t + 1)u relative from the products,
    plus the betas' errors propagated, sum_s delta beta_s / (1 - beta_s)."""
    u, T = target.table_roundoff, ref.T
    beta = ref.beta()
    with np.errstate(divide="ignore"):
        prop = np.cumsum(beta_tolerance(target, ref) / np.maximum(1 - beta, u))
    return ref.alpha_bar() * (2 * (np.arange(1, T + 1) + 1) * u + prop) + u * (ref.alpha_bar() == 0)


def sqrt_errors(target, ref, t):
    """Absolute errors of sqrt(abar_t) and sqrt(1 - abar_t) as used: the tables' error delta,
    d sqrt(a) = delta / (2 sqrt a), d sqrt(1 - a) = (delta + u_tab) / (2 sqrt(1 - a)), plus 2u each
    for their rounding to the compute dtype. Shapes (n, 1)."""
    u, ut = target.unit_roundoff, target.table_roundoff
    a = ref.alpha_bar(t)
    delta = alpha_bar_tolerance(target, ref)[np.asarray(t) - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        e_a = np.where(a > 0, delta / (2 * np.sqrt(a)), np.sqrt(delta)) + 2 * u * np.sqrt(a)
        e_1 = (delta + ut) / (2 * np.sqrt(1 - a)) + 2 * u * np.sqrt(1 - a)
    return e_a.reshape(-1, 1), e_1.reshape(-1, 1)


def mix_tolerance(target, ref, t, with_sa, with_s1):
    """Tolerance of sqrt(abar_t) a +- sqrt(1 - abar_t) b in the target's dtype: the tables' errors
    (`sqrt_errors`) times |a| and |b|, and 4u of each term for the inputs' and products' roundings;
    2x margin."""
    e_a, e_1 = sqrt_errors(target, ref, t)
    sa, s1 = np.sqrt(ref.alpha_bar(t)).reshape(-1, 1), np.sqrt(ref.one_minus_alpha_bar(t)).reshape(-1, 1)
    a, b = np.abs(with_sa), np.abs(with_s1)
    return 2 * (a * e_a + b * e_1 + 4 * target.unit_roundoff * (sa * a + s1 * b))


def coef_error(target, ref, t, t_run=None):
    """Relative error of the per-t coefficients (mu_tilde's, beta_t, beta_tilde_t) as used.

    From tables in the table dtype u_t: beta_t = 1 - abar_t / abar_{t-1} loses digits by 1 / beta_t,
    1 - abar_t by 1 / (1 - abar_t), 1 - abar_{t-1} (t >= 2) by 1 / (1 - abar_{t-1}), and the running
    product carries t u_t: 8 u_t (1 / beta_t + 1 / (1 - abar_t) + 1 / (1 - abar_{t-1}) + t); plus 4u
    for their rounding and products in the compute dtype. Shape (n, 1). For a respaced chain `ref`
    (index t of its steps) `t_run` is the training timestep, the length of the running product.
    """
    t = np.asarray(t)
    t_run = t if t_run is None else np.asarray(t_run)
    ut, u = target.table_roundoff, target.unit_roundoff
    prev = ref.one_minus_alpha_bar_prev(t)
    with np.errstate(divide="ignore"):
        inv_prev = np.where(prev > 0, 1 / prev, 0.0)
    c = 8 * ut * (1 / ref.beta(t) + 1 / ref.one_minus_alpha_bar(t) + inv_prev + t_run) + 4 * u
    return np.asarray(c, dtype=np.float64).reshape(-1, 1)


def threshold_with_budget(x0, x0_tol, ratio: float, max_value: float, u: float):
    """Dynamic thresholding (`reference.dynamic_threshold`) of x0_hat and its budget.

    s = clip(quantile, 1, max_value) moves by at most the row's largest input error plus 4u s
    (the interpolation and the clamps are 1-Lipschitz), or not at all where a clamp holds it
    whatever the error; y = clip(x, -s, s) / s then moves by
    (dx + ds) / s + |y| ds / s + 2u |y|.
    """
    y = reference.dynamic_threshold(x0, ratio, max_value)
    q = np.quantile(np.abs(x0), ratio, axis=-1, keepdims=True)
    s = np.clip(q, 1.0, max_value)
    ds = np.max(x0_tol, axis=-1, keepdims=True) + 4 * u * s
    ds = np.where((q + ds <= 1.0) | (q - ds >= max_value), 0.0, ds)      # held at a clamp: s is exact
    return y, (x0_tol + ds) / s + np.abs(y) * ds / s + 2 * u * np.abs(y)


def kl_tolerance(m1, lv1, m2, lv2, d_m1, d_lv1, d_m2, d_lv2, u):
    """Budget (abs, per example) of sum_d KL(N(m1, e^lv1) || N(m2, e^lv2)) evaluated as
    0.5 (-1 + lv2 - lv1 + e^(lv1 - lv2) + (m1 - m2)^2 e^(-lv2)) in the target's dtype.

    Rounding: 4u times the sum of the terms' magnitudes, with e^x's argument rounding (u |x| e^x);
    inputs: |dKL/dm| = |m1 - m2| / v2 (plus the second-order (dm)^2 / 2 v2), |dKL/dlv1| =
    |r - 1| / 2, |dKL/dlv2| = |1 - r - q| / 2, r = e^(lv1 - lv2), q = (m1 - m2)^2 / v2; then the
    sum over d in the dtype, (d + 4) u times the sum.
    """
    r = np.exp(lv1 - lv2)
    q = (m1 - m2) ** 2 * np.exp(-lv2)
    kl = 0.5 * (-1 + lv2 - lv1 + r + q)
    rounding = 4 * u * 0.5 * (1 + np.abs(lv1) + np.abs(lv2) + r + q) + u * (np.abs(lv1) + np.abs(lv2)) * (r + q)
    dm = d_m1 + d_m2
    inputs = (np.abs(m1 - m2) * dm + dm ** 2 / 2) * np.exp(-lv2) + np.abs(r - 1) / 2 * d_lv1 \
        + np.abs(1 - r - q) / 2 * d_lv2
    d = m1.shape[-1]
    return np.sum(rounding + inputs, axis=-1) + (d + 4) * u * np.sum(np.abs(kl), axis=-1)


def normal_cdf_approximation(target) -> float:
    """The largest error of the target's normal CDF (0 when it declares it exact)."""
    return TANH_CDF_ERROR if target.normal_cdf == "tanh" else 0.0


def continuous_decoder_tolerance(x0, mean, log_var, d_mean, d_log_var, u):
    """Budget (abs, per example) of -sum_d log N(x0; mean, e^log_var) = 0.5 sum_d (log 2 pi +
    log_var + q), q = (x0 - mean)^2 e^-log_var, in the target's dtype: inputs |d/d mean| =
    |x0 - mean| e^-log_var (plus (d mean)^2 e^-log_var / 2), |d/d log_var| = |1 - q| / 2; rounding
    4u of the terms' magnitudes and u |log_var| q for e^x's argument; the sum (d + 4) u."""
    q = (x0 - mean) ** 2 * np.exp(-log_var)
    nll = 0.5 * (math.log(2 * math.pi) + log_var + q)
    inputs = (np.abs(x0 - mean) * d_mean + d_mean ** 2 / 2) * np.exp(-log_var) + np.abs(1 - q) / 2 * d_log_var
    rounding = 4 * u * 0.5 * (math.log(2 * math.pi) + np.abs(log_var) + q) + u * np.abs(log_var) * q
    d = x0.shape[-1]
    return np.sum(inputs + rounding, axis=-1) + (d + 4) * u * np.sum(np.abs(nll), axis=-1)


def decoder_tolerance(x0, mean, log_var, d_mean, d_log_var, u, cdf_error):
    """Budgets (float, approximation) of -sum_d log P(bin of x0) under N(mean, e^log_var) (abs,
    per example).

    Float: |d log P / d mean| <= (phi(z_lo) + phi(z_hi)) / (sigma P), |d log P / d log sigma| <=
    (|z_lo| phi(z_lo) + |z_hi| phi(z_hi)) / P, with d log sigma = d log_var / 2; each CDF evaluated
    in the dtype is off by at most 4u (1 + |z|), so log P by 8u (1 + |z_lo| + |z_hi|) / P.
    Approximation: a CDF off by at most e moves P within [max(P - 2e, 1e-12), P + 2e] (the
    libraries clamp at 1e-12), which bounds |log P_approx - log P|.
    """
    from scipy.special import ndtr

    half = reference.BIN_HALF_WIDTH
    sigma = np.exp(0.5 * log_var)
    lo_edge = np.where(x0 <= -1 + 1e-6, -np.inf, x0 - half)
    hi_edge = np.where(x0 >= 1 - 1e-6, np.inf, x0 + half)
    z_lo, z_hi = (lo_edge - mean) / sigma, (hi_edge - mean) / sigma
    with np.errstate(invalid="ignore", over="ignore"):
        phi_lo = np.where(np.isfinite(z_lo), np.exp(-0.5 * z_lo ** 2) / math.sqrt(2 * math.pi), 0.0)
        phi_hi = np.where(np.isfinite(z_hi), np.exp(-0.5 * z_hi ** 2) / math.sqrt(2 * math.pi), 0.0)
        p = np.maximum(ndtr(z_hi) - ndtr(z_lo), 1e-300)
        az_lo, az_hi = np.where(np.isfinite(z_lo), np.abs(z_lo), 0), np.where(np.isfinite(z_hi), np.abs(z_hi), 0)
    float_tol = ((phi_lo + phi_hi) / (sigma * p) * d_mean + (az_lo * phi_lo + az_hi * phi_hi) / p * d_log_var / 2
                 + 8 * u * (1 + az_lo + az_hi) / p)
    approx = np.maximum(np.log1p(2 * cdf_error / p), np.log(p) - np.log(np.maximum(p - 2 * cdf_error, 1e-12)))
    approx = np.where(cdf_error > 0, approx, 0.0)
    nll = -np.log(p)
    d = x0.shape[-1]
    return (np.sum(float_tol, axis=-1) + (d + 4) * u * np.sum(nll, axis=-1), np.sum(approx, axis=-1))
