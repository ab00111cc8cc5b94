"""Checks of the reverse model p_theta(x_{t-1} | x_t) and of one reverse step."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from reference.conventions import Variance

from .. import SEED
from ..results import Result, compare, from_verdict, skip
from .inputs import rows_for, timesteps, x0_defined
from .model import compared, convention_hint, expected_model, model_outputs, processes_x0


def check_previous_t(target) -> Result:
    """With every training step used for inference, the reverse step from t goes to t - 1."""
    ts = timesteps(target.T)
    got = np.array([target.previous_t(int(k)) for k in ts], dtype=np.float64)
    return compare(got, ts - 1, 0.5, ts)


def model_inputs(target, rows: int = 6, seed: int = SEED + 1):
    """Per timestep: x_t ~ N(0, I) and a model output for the target's types (`model_outputs`);
    for epsilon prediction only t with abar_t > 0 (x0 from eps divides by sqrt(abar_t))."""
    ref = target.schedule
    rng = np.random.default_rng(seed)
    t = np.repeat(x0_defined(target, timesteps(ref.T)), rows)
    xt = rng.standard_normal((t.size, target.d))
    return t, xt, model_outputs(target, ref, t, xt, rng)


def _expected(target, t, xt, out):
    return expected_model(target, target.schedule, t, xt, out, clip=processes_x0(target))


def check_predict_x0(target) -> Result:
    """x0_hat = a x_t + b out for the prediction type, clipped or thresholded as the target
    declares (`expected_model`'s budget)."""
    t, xt, out = model_inputs(target)
    exp = _expected(target, t, xt, out)
    return compare(target.predict_x0(out, xt, t), exp.x0, exp.x0_tol, t)


def check_p_mean(target) -> Result:
    """The mean of p_theta(x_{t-1} | x_t): mu_tilde_t(x0_hat, x_t) (the output itself for previous_x)."""
    t, xt, out = model_inputs(target)
    exp = _expected(target, t, xt, out)
    return compare(target.p_mean(out, xt, t), exp.mean, exp.mean_tol, t)


def check_p_variance(target) -> Result:
    """sigma_t^2 of p_theta for the target's variance type (`expected_log_variance`), for t >= 2:
    at t = 1 no noise is added, and the value there is the target's t = 1 convention. Budget:
    relative exp of the log-variance budget."""
    t, xt, out = model_inputs(target)
    later = t >= 2
    if not later.any():
        return skip(f"{target.name}: T = 1 has no t >= 2")
    exp = _expected(target, t, xt, out)
    got = target.p_variance(out, xt, t)
    var = np.exp(exp.log_var)
    return compare(got[later], var[later], (var * np.expm1(exp.log_var_tol))[later], t[later])


def check_p_log_variance(target) -> Result:
    """log sigma_t^2 of p_theta (`expected_log_variance`; t = 1 by the declared conventions)."""
    t, xt, out = model_inputs(target)
    exp = _expected(target, t, xt, out)
    got = target.p_log_variance(out, xt, t)
    keep = compared(target, t)
    with np.errstate(invalid="ignore"):
        tol = np.where(np.isfinite(exp.log_var), exp.log_var_tol, 0.0)
    result = compare(got[keep], exp.log_var[keep], tol[keep], t[keep])
    return convention_hint(result, target, got[keep], t[keep]) if target.variance_type == Variance.FIXED_SMALL else result


def check_reverse_step(target) -> Result:
    """One reverse step x_{t-1} = mean + sigma_t z, z the step's own noise (regenerated from its
    seed), sigma_t from the target's variance type; at t = 1 no noise is added. Budget: the
    mean's, plus sigma |z| (log-variance budget / 2 + u), plus 4u of the result."""
    t, xt, out = model_inputs(target)
    exp = _expected(target, t, xt, out)
    u = target.unit_roundoff
    prev, noise = target.reverse_step(out, xt, t, SEED)
    noisy = (t > 1)[:, None]
    with np.errstate(invalid="ignore"):
        sd = np.where(noisy, np.exp(0.5 * exp.log_var), 0.0)
        sd_err = np.where(noisy, sd * np.abs(noise) * (exp.log_var_tol / 2 + u), 0.0)
    want = exp.mean + sd * noise
    tol = exp.mean_tol + sd_err + 4 * u * np.abs(want)
    return compare(prev, want, tol, t)


def check_reverse_step_distribution(target) -> Result:
    """The step's own noise, not regenerated: (x_{t-1} - mean) / sigma_t ~ N(0, 1) i.i.d. over at
    least 40,000 values at t = T/2 (DKW, false-fail rate 1e-6; detects a CDF distance of 0.0136).
    Catches noise of the wrong scale or law even where a step does not draw it as `reverse_step`
    says."""
    from ..stats import assert_cdf

    ref = target.schedule
    if ref.T < 2:
        return skip(f"{target.name}: with T = 1 no step adds noise")
    k = max(ref.T // 2, 2)
    rng = np.random.default_rng(SEED + 4)
    t = np.full(rows_for(40_000, target.d), k)
    xt = rng.standard_normal((t.size, target.d))
    out = model_outputs(target, ref, t, xt, rng)
    exp = _expected(target, t, xt, out)
    prev, _ = target.reverse_step(out, xt, t, SEED + 5)
    z = (prev - exp.mean) / np.exp(0.5 * exp.log_var)
    return from_verdict(lambda: assert_cdf(z.ravel(), ndtr, name=f"reverse-step noise at t={k}"), z)


def check_last_step_noiseless(target) -> Result:
    """Metamorphic: the step from t = 1 adds no noise, so two different seeds give the same x_0
    bit for bit."""
    rng = np.random.default_rng(SEED + 6)
    t = np.full(8, 1)
    xt = rng.standard_normal((8, target.d))
    out = model_outputs(target, target.schedule, t, xt, rng)
    a, _ = target.reverse_step(out, xt, t, SEED + 7)
    b, _ = target.reverse_step(out, xt, t, SEED + 8)
    return compare(a, b, 0.0, t)
