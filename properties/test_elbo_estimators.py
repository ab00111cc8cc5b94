"""The two Monte Carlo estimators of the negative ELBO (reference/elbo.py, docs/math.md §6).

Routes: (1) each vectorised estimator against a plain per-timestep loop on the same draws
(ddpm_verify.loops), which must agree to rounding; (2) their means against the exact negative
ELBO of a linear-Gaussian reverse chain (reference/oracles.py, docs/math.md §7).
"""

import math

import numpy as np
import pytest

import reference as ref
from ddpm_verify import stats
from ddpm_verify.loops import neg_elbo_kl_loop, neg_elbo_trajectory_loop

EPS = np.finfo(np.float64).eps

SCHEDULES = {
    "linear-50": lambda: ref.linear(50),
    "cosine-30": lambda: ref.cosine(30),
    "zero-snr-40": lambda: ref.zero_terminal_snr(ref.linear(40, scale_with_T=True)),
    "T=1": lambda: ref.linear(1),
}
ESTIMATORS = {
    "kl": (ref.neg_elbo_kl_estimator, neg_elbo_kl_loop),
    "trajectory": (ref.neg_elbo_trajectory_estimator, neg_elbo_trajectory_loop),
}


def _tanh_model(schedule, variance):
    """A non-linear x_0-predicting model, mean mu_tilde_t(x_t, tanh(x_t)): defined at every t,
    also at t = T of a zero-terminal-SNR schedule where the eps form divides by sqrt(alpha_T) = 0.
    Its variance: a fixed kind (one per t, isotropic), ``per_row`` (isotropic, (m,), depending on
    x_t) or ``per_dimension`` ((m, d), depending on x_t): each form the estimators take apart."""
    def model(xt, t):
        mean = ref.posterior_mean(schedule, np.tanh(xt), xt, t)
        if variance == "per_row":
            return mean, schedule.beta(t) * (1 + 0.5 * np.tanh(np.sum(xt ** 2, axis=-1)))
        if variance == "per_dimension":
            return mean, schedule.beta(t)[:, None] * np.exp(0.3 * np.tanh(xt))
        return mean, ref.model_variance(schedule, t, variance)[0]
    return model


@pytest.mark.parametrize("decoder", ref.DECODERS)
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "per_row", "per_dimension"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("schedule_name", SCHEDULES)
def test_vectorised_estimator_equals_per_timestep_loop(schedule_name, estimator, variance, decoder):
    schedule = SCHEDULES[schedule_name]()
    model = _tanh_model(schedule, variance)
    k = np.random.default_rng(7).integers(0, 256, (64, 3))
    x0 = k / 127.5 - 1.0                                   # on the 8-bit grid for both decoders
    vec, loop = ESTIMATORS[estimator]
    a = vec(schedule, model, x0, np.random.default_rng(11), decoder=decoder, chunk_elements=500)
    b = loop(schedule, model, x0, np.random.default_rng(11), decoder=decoder)
    # Same draws, same formulas, different association order (the solved recursion for x_t,
    # chunked sums): each of the ~T terms carries a few ulps of its own size.
    scale = np.sum(np.abs(b.terms_nats)) * schedule.T
    tol = 64 * EPS * scale
    err = np.max(np.abs(a.per_sample_nats - b.per_sample_nats))
    assert err <= tol, f"{schedule_name}/{estimator}: vectorised vs loop differ by {err:.3e} > {tol:.3e}"
    assert np.allclose(a.terms_nats, b.terms_nats, rtol=0, atol=tol)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimate_does_not_depend_on_chunk_size(estimator):
    schedule = ref.linear(30)
    model = _tanh_model(schedule, "fixed_large")
    x0 = np.random.default_rng(3).uniform(-1, 1, (40, 2))
    vec = ESTIMATORS[estimator][0]
    results = [vec(schedule, model, x0, np.random.default_rng(5), chunk_elements=c).per_sample_nats
               for c in (1, 77, 1 << 18)]
    # rows are processed independently and the draws are consumed in row order: bitwise equal
    assert all(np.array_equal(results[0], r) for r in results[1:])


def _chain(schedule, d, seed):
    rng = np.random.default_rng(seed)
    T = schedule.T
    return ref.LinearGaussianChain(schedule, a=rng.uniform(0.9, 1.05, T), b=rng.normal(0, 0.02, (T, d)),
                                   sigma2=schedule.beta() * rng.uniform(0.5, 1.5, T))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("schedule_name", ["linear-50", "cosine-30", "T=1"])
def test_estimator_mean_matches_exact_neg_elbo(schedule_name, estimator):
    """Mean of 20 000 independent draws (seed 99) against the exact negative ELBO: CLT z-test,
    false-fail rate 1e-6; the verdict reports the bias detectable with power 0.95."""
    schedule = SCHEDULES[schedule_name]()
    chain = _chain(schedule, d=2, seed=21)
    x0 = np.array([0.3, -0.7])
    exact = float(chain.neg_elbo(x0))
    est = ESTIMATORS[estimator][0](schedule, chain.model, np.tile(x0, (20_000, 1)), np.random.default_rng(99))
    stats.assert_mean(est.per_sample_nats, exact, name=f"{schedule_name}/{estimator} negative ELBO")
    assert est.mean_bpd == pytest.approx(est.mean_nats / (2 * math.log(2)), rel=4 * EPS)
