"""Checks of the likelihood terms: L_{t-1}, the decoder L_0, the prior L_T, the total bound and
the training loss, all compared in nats per example (the adapter converts the target's units)."""

from __future__ import annotations

import math

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from .. import SEED
from ..results import Result, compare, skip, worst
from .budgets import (
    alpha_bar_tolerance,
    coef_error,
    continuous_decoder_tolerance,
    decoder_tolerance,
    kl_tolerance,
    mix_tolerance,
    normal_cdf_approximation,
    sqrt_errors,
)
from .inputs import grid_data, timesteps, x0_defined
from .model import expected_model, model_outputs, output_for_x0, processes_x0

TANH_LABEL = "tanh approximation of the normal CDF in the discretised decoder"


def likelihood_inputs(target, rows: int = 6, seed: int = SEED + 10):
    """x0 on the 8-bit grid, eps, x_t = q_sample, and a model output whose x0_hat is x0 plus
    N(0, 0.3^2) noise (N(0, 0.005^2) at t = 1, so the decoder's bin masses are not vanishing),
    with a variance part for learned variances. For epsilon prediction only t with abar_t > 0."""
    ref = target.schedule
    rng = np.random.default_rng(seed)
    t = np.repeat(x0_defined(target, timesteps(ref.T)), rows)
    x0 = grid_data(rng, (t.size, target.d))
    eps = rng.standard_normal(x0.shape)
    xt = reference.q_sample(ref, x0, t, eps)
    spread = np.where(t == 1, 0.005, 0.3).reshape(-1, 1)
    out = model_outputs(target, ref, t, xt, rng)
    out[:, :target.d] = output_for_x0(target, ref, t, xt, x0 + spread * rng.standard_normal(x0.shape))
    return t, x0, eps, xt, out


def _posterior_budget(target, ref, t, x0, xt, xt_err=0.0):
    """mu_tilde_t, log beta_tilde_t (clipped) and their budgets (as in `check_posterior_mean`)."""
    u = target.unit_roundoff
    c = coef_error(target, ref, t)
    m1 = reference.posterior_mean(ref, x0, xt, t)
    c0, c1 = ref.posterior_coef_x0(t).reshape(-1, 1), ref.posterior_coef_xt(t).reshape(-1, 1)
    d_m1 = c * (c0 * np.abs(x0) + c1 * np.abs(xt)) + c1 * xt_err + 4 * u * np.abs(m1)
    lv1 = np.broadcast_to(ref.log_beta_tilde_clipped(t).reshape(-1, 1), x0.shape)
    return m1, d_m1, lv1, c + u * np.abs(lv1)


def expected_vlb(target, t, x0, xt, out, clip, xt_err=0.0, out_err=0.0):
    """Per example, nats: KL(q(x_{t-1}|x_t,x_0) || p_theta) for t >= 2, the decoder NLL at t = 1
    (docs/math.md §6; discretised or continuous as declared), with (value, float budget, approximation
    budget, the model's expectation)."""
    ref = target.schedule
    u = target.unit_roundoff
    exp = expected_model(target, ref, t, xt, out, clip, xt_err, out_err)
    m1, d_m1, lv1, d_lv1 = _posterior_budget(target, ref, t, x0, xt, xt_err)
    value, tol, approx = np.zeros(len(t)), np.zeros(len(t)), np.zeros(len(t))
    kl = t >= 2
    if kl.any():
        value[kl] = reference.kl_term(ref, x0[kl], xt[kl], t[kl], exp.mean[kl], np.exp(exp.log_var[kl]))
        tol[kl] = kl_tolerance(m1[kl], lv1[kl], exp.mean[kl], exp.log_var[kl], d_m1[kl], d_lv1[kl],
                               exp.mean_tol[kl], exp.log_var_tol[kl], u)
    dec = ~kl
    if dec.any():
        value[dec] = reference.decoder_nll(x0[dec], exp.mean[dec], np.exp(exp.log_var[dec]), target.decoder)
        if target.decoder == "discretized":
            tol[dec], approx[dec] = decoder_tolerance(x0[dec], exp.mean[dec], exp.log_var[dec], exp.mean_tol[dec],
                                                      exp.log_var_tol[dec], u, normal_cdf_approximation(target))
        else:
            tol[dec] = continuous_decoder_tolerance(x0[dec], exp.mean[dec], exp.log_var[dec], exp.mean_tol[dec],
                                                    exp.log_var_tol[dec], u)
    return value, tol, approx, exp


def check_vlb_terms(target) -> Result:
    """L_{t-1} integrands (t >= 2) and the decoder NLL (t = 1) from a given model output, in nats
    per example; budgets from `kl_tolerance` and the decoder's (the tanh CDF's error is the
    approximation budget)."""
    t, x0, _, xt, out = likelihood_inputs(target)
    want, tol, approx, _ = expected_vlb(target, t, x0, xt, out, processes_x0(target))
    return compare(target.vlb_term(out, x0, xt, t), want, tol, t, approx, TANH_LABEL)


def _prior_budget(target, ref, x0):
    """Budget of L_T = sum_d KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)) (`kl_tolerance` with the
    tables' errors: sqrt(abar_T) by `sqrt_errors`, log(1 - abar_T) by (delta + u_t) / (1 - abar_T))."""
    u, T = target.unit_roundoff, ref.T
    e_a, _ = sqrt_errors(target, ref, np.array([T]))
    m1 = math.sqrt(ref.alpha_bar(T)) * x0
    om = ref.one_minus_alpha_bar(T)
    lv1 = np.full(x0.shape, ref.log_one_minus_alpha_bar(T))
    d_lv1 = (alpha_bar_tolerance(target, ref)[-1] + target.table_roundoff) / om + 2 * u * np.abs(lv1)
    zero = np.zeros_like(x0)
    return kl_tolerance(m1, lv1, zero, zero, e_a * np.abs(x0) + 2 * u * np.abs(m1), d_lv1, zero, zero, u)


def check_prior(target) -> Result:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in nats per example (`_prior_budget`)."""
    ref = target.schedule
    x0 = np.random.default_rng(SEED + 11).uniform(-1, 1, (16, target.d))
    return compare(target.prior_term(x0), reference.prior_term(ref, x0), _prior_budget(target, ref, x0), "t=T")


def total_bpd_model(target):
    """A deterministic model of x_t alone (flat), Lipschitz constant <= 0.9: mean part 0.5 tanh(x_t);
    for learned_range a variance part 0.9 tanh(x_t); for learned_log_variance a log-variance
    -7 + tanh(x_t), for learned_variance its exp."""
    def model(xt):
        mean = 0.5 * np.tanh(xt)
        kind = target.variance_type
        if kind == Variance.LEARNED_RANGE:
            return np.concatenate([mean, 0.9 * np.tanh(xt)], axis=1)
        if kind == Variance.LEARNED_LOG_VARIANCE:
            return np.concatenate([mean, -7 + np.tanh(xt)], axis=1)
        if kind == Variance.LEARNED_VARIANCE:
            return np.concatenate([mean, np.exp(-7 + np.tanh(xt))], axis=1)
        return mean
    return model, 0.9


def check_total_bpd(target) -> Result:
    """The whole bound as the target's loop computes it (its own noise, regenerated): every term
    L_{t-1} (t = T..1) against `expected_vlb` at the same x_t (x_t's float budget `mix_tolerance`
    carried through the model, Lipschitz <= 0.9), L_T, the total = L_T + sum of terms (plus the
    float sum's T u sum |terms|), and the per-t MSE of x0_hat where the target reports it."""
    ref = target.schedule
    T, u = ref.T, target.unit_roundoff
    if not x0_defined(target, [T]).size:
        return skip(f"{target.name}: x0 from eps is undefined at abar_T = 0")
    x0 = grid_data(np.random.default_rng(SEED + 12), (4, target.d))
    n, d = x0.shape
    model, lipschitz = total_bpd_model(target)
    res = target.total_bpd(model, x0, SEED + 13)
    t = np.repeat(np.arange(1, T + 1), n)
    x0_all = np.tile(x0, (T, 1))
    eps = res["eps"].reshape(T * n, d)
    xt = reference.q_sample(ref, x0_all, t, eps)
    xt_err = mix_tolerance(target, ref, t, x0_all, eps)
    want, tol, approx, exp = expected_vlb(target, t, x0_all, xt, model(xt), processes_x0(target),
                                          xt_err, lipschitz * xt_err)
    want, tol, approx = (a.reshape(T, n).T for a in (want, tol, approx))
    prior, prior_tol = reference.prior_term(ref, x0), _prior_budget(target, ref, x0)
    total = prior + want.sum(axis=1)
    total_tol = prior_tol + tol.sum(axis=1) + T * u * np.abs(res["terms"]).sum(axis=1)
    per_t = np.arange(1, T + 1)
    parts = [compare(res["terms"].T, want.T, tol.T, per_t, approx.T, TANH_LABEL, part="terms"),
             compare(res["prior"], prior, prior_tol, "t=T", part="prior"),
             compare(res["total"], total, total_tol, "all t", approx.sum(axis=1), TANH_LABEL, part="total")]
    if "x0_mse" in res:
        x0_mse = (((exp.x0 - x0_all) ** 2).mean(axis=1)).reshape(T, n).T
        x0_mse_tol = ((2 * np.abs(exp.x0 - x0_all) * exp.x0_tol + exp.x0_tol ** 2).mean(axis=1)
                      ).reshape(T, n).T + (d + 4) * u * x0_mse
        parts.append(compare(res["x0_mse"].T, x0_mse.T, x0_mse_tol.T, per_t, part="x0_hat MSE"))
    return worst(*parts)


def _regression_target(target, ref, t, x0, eps, xt, xt_err):
    """The loss's regression target and its error: eps, x0, v (sqrt(abar) eps - sqrt(1 - abar) x0,
    `mix_tolerance`) or mu_tilde_t(x0, x_t) (`_posterior_budget`)."""
    u = target.unit_roundoff
    kind = target.loss_target
    if kind == Prediction.EPSILON:
        return eps, u * np.abs(eps)
    if kind == Prediction.SAMPLE:
        return x0, u * np.abs(x0)
    if kind == Prediction.V:
        return reference.v_from_x0_eps(ref, x0, t, eps), mix_tolerance(target, ref, t, eps, x0)
    goal, goal_err, _, _ = _posterior_budget(target, ref, t, x0, xt, xt_err)
    return goal, goal_err


def weight_with_budget(target, ref, t, u):
    """(w_t, its absolute error) of the regression term: 1, or min-SNR-gamma in the form that makes
    each target the eps loss (`reference.loss_weight`). Error: snr_t = abar_t / (1 - abar_t) from the
    tables carries table_roundoff / (1 - abar_t) relative (the 1 - abar cancellation) plus u; 4 of
    those for w."""
    if target.loss_weighting == "none":
        return np.ones(len(t)), np.zeros(len(t))
    w = reference.loss_weight(ref, t, target.loss_weighting, target=target.loss_target, gamma=target.min_snr_gamma)
    return w, 4 * (target.table_roundoff / ref.one_minus_alpha_bar(t) + u) * w


def check_training_loss(target) -> Result:
    """The per-example training loss for the declared loss: the mean (or sum) over the data
    dimensions of (goal - output)^2, goal the `loss_target` (docs/math.md §6.6, L_simple), weighted by
    `loss_weight`, plus `loss_vb_weight` times the VB term in bits per dimension (nats / (d ln 2))
    with x0_hat unclipped. Budget: 2 |goal - output| times their errors, (d + 4) u of the squares, the VB
    budget scaled, and 4u of the total."""
    ref = target.schedule
    u = target.unit_roundoff
    t, x0, eps, xt, out = likelihood_inputs(target, seed=SEED + 14)
    d = x0.shape[1]
    xt_err = mix_tolerance(target, ref, t, x0, eps)
    scale = 1.0 if target.loss_reduction == "sum" else 1.0 / d
    if target.loss_target is None:
        mse, mse_tol = np.zeros(len(t)), np.zeros(len(t))
    else:
        goal, goal_err = _regression_target(target, ref, t, x0, eps, xt, xt_err)
        m_out = out[:, :d]
        sq = (goal - m_out) ** 2
        mse = scale * sq.sum(axis=1)
        err = goal_err + u * np.abs(m_out)              # the output is rounded to the dtype too
        mse_tol = scale * (2 * np.abs(goal - m_out) * err + err ** 2).sum(axis=1) + (d + 4) * u * mse
    w, w_err = weight_with_budget(target, ref, t, u)
    mse, mse_tol = w * mse, w * mse_tol + w_err * mse
    weight = target.loss_vb_weight
    approx = np.zeros(len(t))
    want, tol = mse, mse_tol
    if weight:
        vb, vb_tol, vb_approx, _ = expected_vlb(target, t, x0, xt, out, False, xt_err)
        to_bits = reference.nats_to_bits_per_dim(weight, d)
        want, tol, approx = mse + vb * to_bits, mse_tol + vb_tol * to_bits, vb_approx * to_bits
    tol = tol + 4 * u * np.abs(want)
    return compare(target.training_loss(out, x0, t, eps), want, tol, t, approx, TANH_LABEL)
