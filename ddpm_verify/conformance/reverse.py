"""Checks of the reverse model p_theta(x_{t-1} | x_t) and of one reverse step."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ._core import (
    SEED,
    CheckResult,
    compare,
    expected_model,
    from_verdict,
    labels,
    model_outputs,
    timesteps,
    worst,
)


def check_previous_t(target) -> CheckResult:
    """With every training step used for inference, the reverse step from t goes to t - 1."""
    T = target.reference_schedule().T
    ts = timesteps(T)
    got = np.array([target.previous_t(k) for k in ts])
    return compare("reverse: previous timestep = t - 1", got, ts - 1, 0.5, labels(ts))


def model_inputs(target, ref, rows: int = 6, seed: int = SEED + 1):
    """Per timestep: x_t ~ N(0, I) and a model output for the target's types (`model_outputs`);
    for epsilon prediction only t with abar_t > 0 (x0 from eps divides by sqrt(abar_t))."""
    rng = np.random.default_rng(seed)
    ts = timesteps(ref.T)
    if target.prediction_type == "epsilon":
        ts = ts[ref.alpha_bar(ts) > 0]
    t = np.repeat(ts, rows)
    xt = rng.standard_normal((t.size, 4))
    return t, xt, model_outputs(target, ref, t, xt, rng)


def check_model_variance(target) -> CheckResult:
    """sigma_t^2 of p_theta for the target's variance type (`expected_log_variance`), t >= 2: at
    t = 1 a reverse step adds no noise, and libraries differ in how they keep log beta_tilde_1
    finite there. Budget: relative exp of the log-variance budget."""
    ref = target.reference_schedule()
    t, xt, out = model_inputs(target, ref)
    keep = t >= 2
    if not keep.any():
        return CheckResult("model_variance", "skip", detail=f"{target.name}: T = 1 has no t >= 2")
    t, xt, out = t[keep], xt[keep], out[keep]
    exp = expected_model(target, ref, t, xt, out, clip=False)
    got = np.stack([target.model_variance(int(k), out[i:i + 1])[0] for i, k in enumerate(t)])
    var = np.exp(exp.log_var)
    return compare(f"reverse: model variance ({target.variance_type})", got, var,
                   var * np.expm1(exp.log_var_tol), labels(t))


def check_p_mean_variance(target) -> CheckResult:
    """p_theta(x_{t-1} | x_t) from a given model output: x0_hat, the mean mu_tilde_t(x0_hat, x_t)
    (the output itself for previous_x), the log-variance and the variance (t >= 2, see
    `check_model_variance`), with the budgets of `expected_model`."""
    ref = target.reference_schedule()
    t, xt, out = model_inputs(target, ref)
    mean, var, log_var, x0_hat = target.p_mean_variance(out, xt, t)
    exp = expected_model(target, ref, t, xt, out, clip=target.clip_sample)
    where = labels(t)
    later = t >= 2
    v = np.exp(exp.log_var)
    name = (f"reverse: p_mean_variance ({target.prediction_type}, {target.variance_type}, "
            f"clip={target.clip_sample})")
    return worst(name,
                 compare("x0_hat", x0_hat, exp.x0, exp.x0_tol, where),
                 compare("mean", mean, exp.mean, exp.mean_tol, where),
                 compare("log-variance", log_var, exp.log_var, exp.log_var_tol, where),
                 compare("variance (t >= 2)", var[later], v[later], (v * np.expm1(exp.log_var_tol))[later],
                         [w for w, k in zip(where, later) if k]))


def check_reverse_step(target) -> CheckResult:
    """One reverse step x_{t-1} = mean + sigma_t z, z the step's own noise (regenerated from its
    seed), sigma_t from the target's intended variance; at t = 1 no noise is added. Budget: the
    mean's, plus sigma |z| (log-variance budget / 2 + u), plus 4u of the result."""
    ref = target.reference_schedule()
    t, xt, out = model_inputs(target, ref)
    exp = expected_model(target, ref, t, xt, out, clip=target.clip_sample)
    u = target.unit_roundoff
    got, want, tol = [], [], []
    for k in np.unique(t):
        rows = t == k
        prev, noise = target.reverse_step(out[rows], xt[rows], int(k), seed=SEED + int(k))
        sd = np.exp(0.5 * exp.log_var[rows]) if k > 1 else np.zeros_like(exp.mean[rows])
        expected = exp.mean[rows] + sd * noise
        got.append(prev)
        want.append(expected)
        tol.append(exp.mean_tol[rows] + sd * np.abs(noise) * (exp.log_var_tol[rows] / 2 + u)
                   + 4 * u * np.abs(expected))
    return compare(f"reverse: step ({target.prediction_type}, {target.variance_type}, "
                   f"clip={target.clip_sample})", np.concatenate(got), np.concatenate(want),
                   np.concatenate(tol), labels(np.sort(t)))


def check_reverse_step_distribution(target) -> CheckResult:
    """The step's own noise, not regenerated: (x_{t-1} - mean) / sigma_t ~ N(0, 1) i.i.d. over
    40,000 values at t = T/2 (DKW, false-fail rate 1e-6; detects a CDF distance of 0.0136). Catches
    noise of the wrong scale or law even where a step does not draw it as `reverse_step` says."""
    from ..stats import assert_cdf

    ref = target.reference_schedule()
    if ref.T < 2:
        return CheckResult("reverse_step_distribution", "skip", detail=f"{target.name}: with T = 1 no step adds noise")
    k = max(ref.T // 2, 2)
    rng = np.random.default_rng(SEED + 4)
    t = np.full(10_000, k)
    xt = rng.standard_normal((t.size, 4))
    out = model_outputs(target, ref, t, xt, rng)
    exp = expected_model(target, ref, t, xt, out, clip=target.clip_sample)
    prev, _ = target.reverse_step(out, xt, k, seed=SEED + 5)
    z = (prev - exp.mean) / np.exp(0.5 * exp.log_var)
    return from_verdict("reverse: the step's noise is N(0, sigma_t^2 I)",
                        lambda: assert_cdf(z.ravel(), ndtr, name=f"reverse-step noise at t={k}"), z)


def check_last_step_noiseless(target) -> CheckResult:
    """Metamorphic: the step from t = 1 adds no noise, so two different seeds give the same x_0
    bit for bit."""
    ref = target.reference_schedule()
    rng = np.random.default_rng(SEED + 6)
    t = np.full(8, 1)
    xt = rng.standard_normal((8, 4))
    out = model_outputs(target, ref, t, xt, rng)
    a, _ = target.reverse_step(out, xt, 1, seed=SEED + 7)
    b, _ = target.reverse_step(out, xt, 1, seed=SEED + 8)
    return compare("reverse: the last step (t = 1) adds no noise", a, b, 0.0, ["t=1"] * 8)
