"""Gaussian data as an oracle of whole loops and losses (docs/math.md §11): the laws the end-to-end checks
compare a user's code with.

Routes, none sharing the derivation it checks:
- linearity: e = y - y_hat of a loss is affine in (x_0, eps), so its mean and variance are read
  off exactly from three evaluations through the forward process and the parameterisation
  conversions (`reference.q_sample`, `x0_from_eps`, ...), against `GaussianData.regression_error`'s
  closed form in the eps slopes;
- the min-SNR weights: each target's weighted loss is the eps loss weighted by min(snr, gamma) /
  snr (the reason for the three forms), checked through `regression_error`'s own scaling;
- the nearby processes the sampler check names: a loop run with the prediction of another type
  and no change of t is the same process (the conversions are exact inverses), and each change
  (network t, next t, tables) is checked against `highprec.gaussian_sampler_output` in
  test_precision.py at 50 digits; here Monte Carlo loops written out step by step.

Float tolerances: U = 2^-53 times the magnitudes that cancel, stated next to each assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from reference.conventions import Prediction
from ddpm_verify import stats
from ddpm_verify import strategies as S
from properties._numerics import EPS, assert_close

U = EPS / 2
KINDS = Prediction.REFERENCE


def _target_of(schedule, x0, t, eps, kind):
    return {"epsilon": eps, "sample": x0}.get(kind) if kind != "v_prediction" else ref.v_from_x0_eps(schedule, x0, t,
                                                                                                     eps)


def _to_kind(schedule, xt, t, out, have, want):
    """`out` of type `have` as type `want`, through the reference's conversions."""
    if have == want:
        return out
    x0 = out if have == "sample" else (ref.x0_from_eps if have == "epsilon" else ref.x0_from_v)(schedule, xt, t, out)
    eps = out if have == "epsilon" else (ref.eps_from_x0 if have == "sample" else ref.eps_from_v)(schedule, xt, t, out)
    return _target_of(schedule, x0, t, eps, want)


@given(data=st.data())
def test_regression_error_is_the_law_of_the_affine_error(data):
    """mean and variance of e = y - y_hat from its affine coefficients in (x_0, eps), evaluated at
    (0, 0), (1, 0), (0, 1), against the closed form. Tolerance: the coefficients are differences of
    values up to M = the largest |term| (1/sqrt(abar_t) scales), 64 U M^2 on the variance."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t = data.draw(S.timesteps(schedule), label="t")
    target, pred = (data.draw(st.sampled_from(KINDS), label=k) for k in ("target", "prediction"))
    offset, gain = (data.draw(st.floats(-0.5, 0.5), label=k) for k in ("offset", "gain"))
    mu, s2 = data.draw(st.floats(-1, 1), label="mu"), data.draw(st.floats(1e-3, 1.0), label="s^2")
    gauss = ref.GaussianData(np.array([mu]), s2)
    slope, intercept = gauss.prediction(schedule, np.array([t]), pred)

    def e(x0, eps):
        x0, eps = np.array([[x0]]), np.array([[eps]])
        xt = ref.q_sample(schedule, x0, t, eps)
        out = slope * xt + intercept + offset + gain * xt
        return (_target_of(schedule, x0, t, eps, target) - _to_kind(schedule, xt, t, out, pred, target))[0, 0]
    c = e(0.0, 0.0)
    a, b = e(1.0, 0.0) - c, e(0.0, 1.0) - c
    got = gauss.regression_error(schedule, np.array([t]), target=target, prediction_type=pred, offset=offset,
                                 gain=gain)
    # conversions divide by sqrt(abar_t) (to x_0) or sqrt(1 - abar_t) (to eps): the route's values grow by those
    M = max(1.0, abs(a), abs(b), abs(c), 1 / math.sqrt(float(schedule.alpha_bar(t))),
            1 / math.sqrt(float(schedule.one_minus_alpha_bar(t))))
    assert_close("E[e]", float(got.mean[0, 0]), a * mu + c, 64 * U * M ** 2)
    assert_close("Var[e]", float(got.variance[0, 0]), a * a * s2 + b * b, 64 * U * M ** 4)


@given(data=st.data())
def test_min_snr_weights_make_every_target_the_weighted_eps_loss(data):
    """w_y E[e_y^2] is one number for y = eps, x_0, v when the network errs by the same delta in eps
    space (Hang et al.'s three forms): relative 32 U (the weights' and slopes' roundings)."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t = np.array([data.draw(S.timesteps(schedule), label="t")])
    gamma = data.draw(st.floats(0.1, 20), label="gamma")
    gauss = ref.GaussianData(np.array([0.2]), 0.3)
    values = []
    for kind in KINDS:
        e = gauss.regression_error(schedule, t, target=kind, prediction_type="epsilon", offset=0.1, gain=0.05)
        w = ref.loss_weight(schedule, t, "min_snr", target=kind, gamma=gamma)
        values.append(float(w[0] * (e.mean[0, 0] ** 2 + e.variance[0, 0])))
    for kind, value in zip(KINDS[1:], values[1:]):
        assert_close(f"w E[e^2] ({kind} vs epsilon)", value, values[0], 32 * U * abs(values[0]))


def test_loss_weights_at_their_limits():
    """min-SNR's eps form is 1 where snr < gamma and gamma / snr above; at snr = 0 (zero terminal SNR)
    it is 1, not 0/0, and with gamma = inf (no clipping) it is 1, snr and snr / (snr + 1) for the eps, x0
    and v targets; p2 is (k + snr)^-gamma; "snr" is abar_t / (1 - abar_t) from a plain cumulative
    product of 1 - beta_t (relative error up to u / (1 - abar_t) = 1e-12 at t = 1: tolerance 1e-10),
    0 at zero terminal SNR; "none" is 1."""
    schedule = ref.zero_terminal_snr(ref.linear(1000))
    t = np.array([1, 500, 1000])
    snr = ref.snr(schedule, t)
    w = ref.loss_weight(schedule, t, "min_snr", target="epsilon", gamma=5.0)
    assert snr[-1] == 0 and w[-1] == 1.0
    assert_close("min-SNR eps weight", w, np.minimum(1.0, 5.0 / np.where(snr > 0, snr, 1.0)), 4 * U)
    assert_close("p2", ref.loss_weight(schedule, t, "p2", gamma=0.5, k=1.0), (1 + snr) ** -0.5, 8 * U)
    assert np.all(ref.loss_weight(schedule, t) == 1.0)
    unclipped = {kind: ref.loss_weight(schedule, t, "min_snr", target=kind, gamma=math.inf) for kind in KINDS}
    assert np.all(unclipped["epsilon"] == 1.0)                      # min(snr, inf) / snr, 1 at snr = 0
    assert_close("min-SNR, gamma = inf, x0", unclipped["sample"], snr, 4 * U * snr)
    assert_close("min-SNR, gamma = inf, v", unclipped["v_prediction"], snr / (snr + 1), 4 * U * snr / (snr + 1))
    abar = np.cumprod(1 - schedule.beta())[t - 1]
    w = ref.loss_weight(schedule, t, "snr", target="sample")
    assert w[-1] == 0.0
    assert_close("snr weight", w[:-1], abar[:-1] / (1 - abar[:-1]), 1e-10 * abar[:-1] / (1 - abar[:-1]))


@given(data=st.data())
def test_the_prediction_type_does_not_change_the_process(data):
    """The optimal prediction of any type, turned into x0_hat and eps_hat at the same t, is the same
    step: the chain's states agree across types to rounding. Tolerance: each step's conversions
    amplify relative errors by up to kappa = max(1 / abar_t, 1 / (1 - abar_t)), and the eps -> x_0
    conversion of the optimal slope cancels to abar_t s^2 / D_t of its terms (C = D_t / (abar_t s^2)
    for the narrowest data); 64 U kappa C per step."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    tau = data.draw(S.kept_steps(schedule), label="kept")[::-1][:20]
    process = data.draw(st.sampled_from(["ddpm", "ddim"]), label="process")
    gauss = ref.GaussianData(np.array([0.2, -0.4]), np.array([0.01, 0.5]))
    states = [gauss.chain_states(*gauss.step_coefficients(schedule, tau, process=process, eta=0.5,
                                                          prediction_type=kind)) for kind in KINDS]
    ab = schedule.alpha_bar(tau)
    s2 = float(gauss.variance.min())
    cancel = (ab * s2 + 1 - ab) / (ab * s2)
    rel = 64 * U * tau.size * float(np.max(np.maximum(1 / ab, 1 / (1 - ab)) * cancel))
    # each state's error is relative to the size of the state its step started from
    size = np.abs(states[0].mean) + np.sqrt(states[0].variance)
    scale = np.maximum(size, np.vstack([np.ones((1, size.shape[1])), size[:-1]]))
    for kind, other in zip(KINDS[1:], states[1:]):
        assert_close(f"state means ({kind})", other.mean, states[0].mean, rel * scale)
        assert_close(f"state standard deviations ({kind})", np.sqrt(other.variance), np.sqrt(states[0].variance),
                     rel * scale)


NEARBY = [("network at t + 1, eps", dict(prediction_type="epsilon", model_shift=1)),
          ("network at t - 1, x0", dict(prediction_type="sample", model_shift=-1)),
          ("tables with an extra factor, v", dict(prediction_type="v_prediction", extra_factor=True))]


@pytest.mark.parametrize("label, change", NEARBY, ids=[n[0] for n in NEARBY])
def test_a_nearby_process_is_the_loop_it_describes(label, change):
    """A DDPM loop written out step by step with the change (the network called at a shifted t, or
    the step's tables from another schedule) against `step_coefficients` with the same change:
    output mean and variance by z-tests on 20,000 values per dimension (false-fail rate 1e-6 each;
    the verdicts state the detectable shift, about 0.04 sd, and variance ratio, about 6%)."""
    schedule = ref.linear(100, scale_with_T=True)
    gauss = ref.GaussianData(np.array([0.3, -0.1]), np.array([0.04, 0.0009]))
    tau = np.arange(100, 0, -1)
    kind = change["prediction_type"]
    model_tau = np.clip(tau + change.get("model_shift", 0), 1, 100)
    tables = schedule
    if change.get("extra_factor"):
        betas = schedule.beta().copy()
        betas[0] = 1 - (1 - betas[0]) ** 2
        tables = ref.Schedule(betas)
    law = gauss.chain_states(*gauss.step_coefficients(schedule, tau, prediction_type=kind, model_tau=model_tau,
                                                      step_schedule=tables))
    rng = np.random.default_rng(20261130)
    x = rng.standard_normal((20_000, 2))
    chain = ref.respace(tables, tau[::-1])
    for i, t in enumerate(tau):
        slope, intercept = gauss.prediction(schedule, np.array([model_tau[i]]), kind)
        x0_hat = _to_kind(tables, x, int(t), slope * x + intercept, kind, "sample")
        j = tau.size - i
        x = ref.posterior_mean(chain, x0_hat, x, j) + (math.sqrt(chain.beta_tilde(j)) * rng.standard_normal(x.shape)
                                                        if j > 1 else 0.0)
    z = (x - law.mean[-1]) / np.sqrt(law.variance[-1])
    stats.assert_standard_normal_mean(z.sum(), z.size, name=f"{label}: output mean")
    stats.assert_standard_normal_variance((z ** 2).sum(), z.size, name=f"{label}: output variance")
