"""The model p_theta(x_{t-1} | x_t) a target stands for: what its outputs mean under its declared
prediction and variance types, and the expected values the checks compare them with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import reference
from reference.conventions import Prediction, Variance
from reference.elbo import learned_range_log_variance

from ..adapters.protocol import LEARNED_VARIANCES
from ..results import Result
from .budgets import coef_error, threshold_with_budget


def split_output(target, out):
    """(mean part, variance part or None) of a flat model output ((n, d), or (n, 2d) for the
    learned variances: the mean part, then the variance part)."""
    if target.variance_type in LEARNED_VARIANCES:
        return out[:, :target.d], out[:, target.d:]
    return out, None


def x0_coefficients(target, ref, t):
    """(a, b) with x0_hat = a x_t + b out (before clipping) for the target's prediction type: the
    conversion's coefficients, for its error budget (the value is `x0_from_output`'s)."""
    t = np.asarray(t)
    sa = np.sqrt(ref.alpha_bar(t))
    s1 = np.sqrt(ref.one_minus_alpha_bar(t))
    kind = target.prediction_type
    with np.errstate(divide="ignore"):
        if kind == Prediction.EPSILON:
            a, b = 1 / sa, -s1 / sa
        elif kind == Prediction.SAMPLE:
            a, b = np.zeros_like(sa), np.ones_like(sa)
        elif kind == Prediction.V:
            a, b = sa, -s1
        else:                                   # previous_x: the output is mu_tilde_t(x0_hat, x_t)
            a, b = -ref.posterior_coef_xt(t) / ref.posterior_coef_x0(t), 1 / ref.posterior_coef_x0(t)
    return a.reshape(-1, 1), b.reshape(-1, 1)


def x0_from_output(target, ref, t, xt, out) -> np.ndarray:
    """x0_hat (before clipping) from the mean part `out` of a model output of the target's
    prediction type at x_t (rows of one paper t each), by the reference's conversions."""
    t = np.asarray(t)
    kind = target.prediction_type
    if kind == Prediction.SAMPLE:
        return np.array(out, dtype=np.float64)
    convert = {Prediction.EPSILON: reference.x0_from_eps, Prediction.V: reference.x0_from_v,
               Prediction.PREVIOUS_X: reference.x0_from_posterior_mean}[kind]
    with np.errstate(divide="ignore", invalid="ignore"):
        return convert(ref, xt, t, out)


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
    """log sigma_t^2 of p_theta for the target's variance type (docs/math.md §6), per element.

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
    if kind == Variance.FIXED_SMALL:
        return np.broadcast_to(small, (t.shape[0], 1)).astype(float)
    if kind == Variance.FIXED_LARGE:
        return np.broadcast_to(large, (t.shape[0], 1)).astype(float)
    if kind == Variance.LEARNED_RANGE:
        return learned_range_log_variance((v_out + 1) / 2, ref.log_beta(t), small)
    if kind == Variance.LEARNED_LOG_VARIANCE:
        return v_out
    return np.log(v_out)                        # learned_variance


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
    x0 = x0_from_output(target, ref, t, xt, m_out)
    x0_tol = (c + 4 * u) * (np.abs(a * xt) + np.abs(b * m_out)) + np.abs(a) * xt_err + np.abs(b) * out_err
    if clip and target.thresholding:
        x0, x0_tol = threshold_with_budget(x0, np.broadcast_to(x0_tol, x0.shape), *target.thresholding, u)
    elif clip:
        x0 = np.clip(x0, -target.clip_range, target.clip_range)
    c0, c1 = ref.posterior_coef_x0(t).reshape(-1, 1), ref.posterior_coef_xt(t).reshape(-1, 1)
    if target.prediction_type == Prediction.PREVIOUS_X:
        mean, mean_tol = m_out.copy(), out_err + u * np.abs(m_out)     # the output, rounded to the dtype
    else:
        mean = reference.posterior_mean(ref, x0, xt, t)
        mean_tol = c * (c0 * np.abs(x0) + c1 * np.abs(xt)) + c0 * x0_tol + c1 * xt_err + 4 * u * np.abs(mean)
    log_var = expected_log_variance(target, ref, t, v_out)
    log_var_tol = c + u * np.abs(log_var)
    if target.variance_type == Variance.LEARNED_RANGE:
        small = log_beta_tilde_at(target, ref, t)
        with np.errstate(invalid="ignore"):
            spread = np.abs(ref.log_beta(t).reshape(-1, 1) - small)
        log_var_tol = log_var_tol + 4 * u * (np.abs(ref.log_beta(t).reshape(-1, 1)) + np.abs(small)) \
            + spread * out_err / 2
    elif target.variance_type == Variance.LEARNED_LOG_VARIANCE:
        log_var_tol = log_var_tol + out_err
    elif target.variance_type == Variance.LEARNED_VARIANCE:
        log_var_tol = log_var_tol + out_err / np.abs(v_out) + u
    return ModelExpectation(x0, np.broadcast_to(x0_tol, x0.shape), mean, np.broadcast_to(mean_tol, mean.shape),
                            np.broadcast_to(log_var, mean.shape), np.broadcast_to(log_var_tol, mean.shape))


def model_outputs(target, ref, t, xt, rng, spread: float = 1.0):
    """A model output for the target's prediction and variance types: N(0, spread^2) for the
    mean part; for learned_range a variance part in [-1, 1]; for learned_log_variance a
    log-variance between log beta_tilde_t (clipped) and log beta_t; for learned_variance the exp
    of one."""
    out = spread * rng.standard_normal(xt.shape)
    if target.variance_type == Variance.LEARNED_RANGE:
        out = np.concatenate([out, rng.uniform(-1, 1, xt.shape)], axis=1)
    elif target.variance_type in (Variance.LEARNED_LOG_VARIANCE, Variance.LEARNED_VARIANCE):
        lo = ref.log_beta_tilde_clipped(np.asarray(t)).reshape(-1, 1)
        hi = ref.log_beta(np.asarray(t)).reshape(-1, 1)
        log_var = lo + (hi - lo) * rng.uniform(0, 1, xt.shape)
        part = log_var if target.variance_type == Variance.LEARNED_LOG_VARIANCE else np.exp(log_var)
        out = np.concatenate([out, part], axis=1)
    return out


def output_for_x0(target, ref, t, xt, x0_hat):
    """The mean part of a model output whose x0_hat (before clipping) is `x0_hat`, by the
    reference's conversions."""
    t = np.asarray(t)
    kind = target.prediction_type
    if kind == Prediction.SAMPLE:
        return np.array(x0_hat, dtype=np.float64)
    if kind == Prediction.PREVIOUS_X:
        return reference.posterior_mean(ref, x0_hat, xt, t)
    eps = reference.eps_from_x0(ref, xt, t, x0_hat)
    return eps if kind == Prediction.EPSILON else reference.v_from_x0_eps(ref, x0_hat, t, eps)


