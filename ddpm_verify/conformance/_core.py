"""Results, comparison and the error budgets shared by the checks.

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
from dataclasses import dataclass, replace

import numpy as np

import reference

from ..adapters.protocol import LEARNED_VARIANCES
from ..results import CheckFailed, Result

SEED = 20261122
#: max |Phi_tanh(x) - Phi(x)| of 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), measured against
#: scipy.special.ndtr on a grid of step 1e-5 over [-12, 12] (1.789e-4 at x = -2.592), rounded up
TANH_CDF_ERROR = 1.8e-4


def from_verdict(run, samples=None, name: str = "") -> Result:
    """A statistical check (ddpm_verify.stats) as a result: its statistic against its threshold;
    non-finite `samples` (where the math is finite) fail before any test."""
    if samples is not None and not np.all(np.isfinite(samples)):
        bad = int(np.sum(~np.isfinite(samples)))
        return Result(name, "fail", float("inf"), values=int(np.size(samples)),
                      detail=f"{bad} of {np.size(samples)} values are NaN or inf where the math is finite")
    try:
        v = run()
    except CheckFailed as exc:
        v = exc.result
    return replace(v, name=name, detail=str(v))


def skip(reason: str) -> Result:
    return Result("", "skip", detail=reason)


# -- inputs --------------------------------------------------------------------------------------

def timesteps(T: int) -> np.ndarray:
    return np.unique(np.clip([1, 2, 3, T // 10, T // 2, T - 1, T], 1, T))


def battery(T: int, d: int, rows: int = 8, seed: int = SEED):
    """Seeded inputs: `rows` rows per timestep of a fixed set, x0 in [-1, 1]^d, eps ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    t = np.repeat(timesteps(T), rows)
    x0 = rng.uniform(-1, 1, (t.size, d))
    eps = rng.standard_normal((t.size, d))
    return t, x0, eps


def rows_for(values: int, d: int) -> int:
    """Rows of d elements that hold at least `values` values."""
    return -(-values // d)


def grid_data(rng, shape) -> np.ndarray:
    """x0 on the 8-bit grid k / 127.5 - 1 (the discretised decoder's data)."""
    return rng.integers(0, 256, shape) / 127.5 - 1.0


# -- error budgets of the tables ---------------------------------------------------------------------

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


# -- the model p_theta(x_{t-1} | x_t) the target stands for ------------------------------------------

def split_output(target, out):
    """(mean part, variance part or None) of a flat model output ((n, d), or (n, 2d) for the
    learned variances: the mean part, then the variance part)."""
    if target.variance_type in LEARNED_VARIANCES:
        return out[:, :target.d], out[:, target.d:]
    return out, None


def x0_coefficients(target, ref, t):
    """(a, b) with x0_hat = a x_t + b out (before clipping) for the target's prediction type."""
    t = np.asarray(t)
    sa = np.sqrt(ref.alpha_bar(t))
    s1 = np.sqrt(ref.one_minus_alpha_bar(t))
    kind = target.prediction_type
    with np.errstate(divide="ignore"):
        if kind == "epsilon":
            a, b = 1 / sa, -s1 / sa
        elif kind == "sample":
            a, b = np.zeros_like(sa), np.ones_like(sa)
        elif kind == "v_prediction":
            a, b = sa, -s1
        else:                                   # previous_x: the output is mu_tilde_t(x0_hat, x_t)
            a, b = -ref.posterior_coef_xt(t) / ref.posterior_coef_x0(t), 1 / ref.posterior_coef_x0(t)
    return a.reshape(-1, 1), b.reshape(-1, 1)


def log_beta_tilde_at(target, ref, t) -> np.ndarray:
    """log beta_tilde_t, shape (n, 1), with t = 1 (where beta_tilde_1 = 0) by the target's
    `log_variance_at_1`: log beta_tilde_2 (clipped, and where absent: those rows are not
    compared, see `compared`), log(variance_floor) (floor) or -inf."""
    t = np.asarray(t).reshape(-1, 1)
    lv = ref.log_beta_tilde_clipped(t)
    if target.log_variance_at_1 == "floor":
        lv = np.where(t == 1, math.log(target.variance_floor), lv)
    elif target.log_variance_at_1 == "-inf":
        lv = np.where(t == 1, -np.inf, lv)
    return lv


def compared(target, t) -> np.ndarray:
    """Rows whose log-variance is compared: all but t = 1 where the target declares it absent."""
    t = np.asarray(t)
    return t >= 2 if target.log_variance_at_1 == "absent" else np.ones(t.shape, dtype=bool)


def convention_hint(result: Result, target, got, t) -> Result:
    """A failure only at t = 1 where every value is -inf, or one value below log beta_tilde_2, is
    most likely an undeclared convention: say which declaration would describe it."""
    t = np.asarray(t)
    if result.status != "fail" or result.failed_timesteps != [1] or target.log_variance_at_1 != "clipped":
        return result
    at_1 = np.unique(np.asarray(got)[t == 1])
    if at_1.size != 1 or target.T < 2 or not at_1[0] < target.schedule.log_beta_tilde_clipped(1):
        return result
    if np.isneginf(at_1[0]):
        declare = "log_variance_at_1 = '-inf'"
    else:
        declare = f"log_variance_at_1 = 'floor' and variance_floor = {math.exp(at_1[0]):.6g}"
    result.detail += (f"; only at t = 1, where every value is {at_1[0]:.6g}: if the code keeps log beta_tilde_1 "
                      f"that way on purpose, declare {declare}")
    return result


def expected_log_variance(target, ref, t, v_out):
    """log sigma_t^2 of p_theta for the target's variance type (MATH.md 6), per element.

    fixed_small: log beta_tilde_t (t = 1 by `log_beta_tilde_at`); fixed_large: log beta_t, or
    log beta_tilde_2 at t = 1 where the target declares `large_variance_at_1 = "beta_tilde_2"`;
    learned_range: v log beta_t + (1 - v) log beta_tilde_t, v = (out + 1) / 2; learned_log_variance:
    the output itself; learned_variance: the log of the output.
    """
    t = np.asarray(t).reshape(-1, 1)
    small = log_beta_tilde_at(target, ref, t)
    large = ref.log_beta(t)
    if target.large_variance_at_1 == "beta_tilde_2":
        large = np.where(t == 1, ref.log_beta_tilde_clipped(t), large)
    kind = target.variance_type
    if kind == "fixed_small":
        return np.broadcast_to(small, (t.shape[0], 1)).astype(float)
    if kind == "fixed_large":
        return np.broadcast_to(large, (t.shape[0], 1)).astype(float)
    if kind == "learned_range":
        frac = (v_out + 1) / 2
        return frac * ref.log_beta(t) + (1 - frac) * small
    if kind == "learned_log_variance":
        return v_out
    return np.log(v_out)                        # learned_variance


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


def processes_x0(target) -> bool:
    """Whether the target clips or thresholds x0_hat before using it."""
    return target.clip_sample or target.thresholding is not None


@dataclass
class ModelExpectation:
    """p_theta(x_{t-1} | x_t) in float64 and the target's error budget on each part (abs)."""

    x0: np.ndarray
    x0_tol: np.ndarray
    mean: np.ndarray
    mean_tol: np.ndarray
    log_var: np.ndarray
    log_var_tol: np.ndarray


def expected_model(target, ref, t, xt, out, clip: bool, xt_err=0.0, out_err=0.0,
                   t_run=None) -> ModelExpectation:
    """The mean, variance and x0_hat the target should compute from `out` at x_t, with budgets.

    x0_hat = a x_t + b out (`x0_coefficients`): error (c + 4u)(|a x_t| + |b out|) + |a| dx_t + |b| dout,
    c the coefficients' relative error (`coef_error`), dx_t and dout errors already in the inputs;
    with `clip`, thresholded as the target declares (`threshold_with_budget`) or clipped to [-r, r]
    (clipping is 1-Lipschitz, so errors do not grow).
    mean = mu_tilde_t(x0_hat, x_t) = c0 x0_hat + c1 x_t (previous_x: the output itself): error
    c (c0 |x0_hat| + c1 |x_t|) + c0 dx0 + c1 dx_t + 4u |mean|.
    log sigma^2: c from the tables, plus for learned_range 4u (|log beta| + |log beta_tilde|) + the
    output's error times |log beta - log beta_tilde| / 2; for learned_log_variance the output's error.
    """
    u = target.unit_roundoff
    t = np.asarray(t)
    m_out, v_out = split_output(target, out)
    c = coef_error(target, ref, t, t_run)
    a, b = x0_coefficients(target, ref, t)
    x0 = a * xt + b * m_out
    x0_tol = (c + 4 * u) * (np.abs(a * xt) + np.abs(b * m_out)) + np.abs(a) * xt_err + np.abs(b) * out_err
    if clip and target.thresholding:
        x0, x0_tol = threshold_with_budget(x0, np.broadcast_to(x0_tol, x0.shape), *target.thresholding, u)
    elif clip:
        x0 = np.clip(x0, -target.clip_range, target.clip_range)
    c0, c1 = ref.posterior_coef_x0(t).reshape(-1, 1), ref.posterior_coef_xt(t).reshape(-1, 1)
    if target.prediction_type == "previous_x":
        mean, mean_tol = m_out.copy(), out_err + u * np.abs(m_out)     # the output, rounded to the dtype
    else:
        mean = c0 * x0 + c1 * xt
        mean_tol = c * (c0 * np.abs(x0) + c1 * np.abs(xt)) + c0 * x0_tol + c1 * xt_err + 4 * u * np.abs(mean)
    log_var = expected_log_variance(target, ref, t, v_out)
    log_var_tol = c + u * np.abs(log_var)
    if target.variance_type == "learned_range":
        small = log_beta_tilde_at(target, ref, t)
        with np.errstate(invalid="ignore"):
            spread = np.abs(ref.log_beta(t).reshape(-1, 1) - small)
        log_var_tol = log_var_tol + 4 * u * (np.abs(ref.log_beta(t).reshape(-1, 1)) + np.abs(small)) \
            + spread * out_err / 2
    elif target.variance_type == "learned_log_variance":
        log_var_tol = log_var_tol + out_err
    elif target.variance_type == "learned_variance":
        log_var_tol = log_var_tol + out_err / np.abs(v_out) + u
    return ModelExpectation(x0, np.broadcast_to(x0_tol, x0.shape), mean, np.broadcast_to(mean_tol, mean.shape),
                            np.broadcast_to(log_var, mean.shape), np.broadcast_to(log_var_tol, mean.shape))


def model_outputs(target, ref, t, xt, rng, spread: float = 1.0):
    """A model output for the target's prediction and variance types: N(0, spread^2) for the
    mean part; for learned_range a variance part in [-1, 1]; for learned_log_variance a
    log-variance between log beta_tilde_t (clipped) and log beta_t; for learned_variance the exp
    of one."""
    out = spread * rng.standard_normal(xt.shape)
    if target.variance_type == "learned_range":
        out = np.concatenate([out, rng.uniform(-1, 1, xt.shape)], axis=1)
    elif target.variance_type in ("learned_log_variance", "learned_variance"):
        lo = ref.log_beta_tilde_clipped(np.asarray(t)).reshape(-1, 1)
        hi = ref.log_beta(np.asarray(t)).reshape(-1, 1)
        log_var = lo + (hi - lo) * rng.uniform(0, 1, xt.shape)
        out = np.concatenate([out, log_var if target.variance_type == "learned_log_variance" else np.exp(log_var)],
                             axis=1)
    return out


def output_for_x0(target, ref, t, xt, x0_hat):
    """The mean part of a model output whose x0_hat (before clipping) is `x0_hat`."""
    a, b = x0_coefficients(target, ref, t)
    if target.prediction_type == "previous_x":
        t = np.asarray(t)
        return ref.posterior_coef_x0(t).reshape(-1, 1) * x0_hat + ref.posterior_coef_xt(t).reshape(-1, 1) * xt
    return (x0_hat - a * xt) / b


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
