"""Inference-time processes (docs/math.md §10): the respaced chain, the DDIM family, the libraries'
timestep sequences, and exact oracles of whole strided loops (docs/math.md §11).

Routes, none of which shares code with what it checks:
- sympy (`ddpm_verify.symbolic`): the strided posterior by completing the square; Lemma 1 of
  Song et al. (the DDIM family keeps the marginal q(x_s | x_0) for every sigma) by the moments
  of independent normals; eta = 1 as the strided posterior. Compared exactly with docs/math.md's
  formulas, and with the reference at Hypothesis-drawn points (40-digit mpmath evaluation).
- the libraries themselves for the timestep sequences (diffusers' set_timesteps, guided-
  diffusion's space_timesteps, torch.linspace as lucidrains calls it);
- linearity: a DDIM step with the true x_0 is affine in (the forward noise, z), so its variance
  is read off exactly from two evaluations;
- Monte Carlo: whole loops run with the reference's steps and the optimal predictor of
  `GaussianMixture` (a different implementation of eps* than `GaussianData`'s) against the exact
  output Gaussian, and the exact ELBO of a strided chain against the KL-form estimator; each test
  states its false-fail rate and the discrepancy it detects.

Float tolerances: U = 2^-53; schedule tables carry relative error <= tab_error (|log abar| terms);
each tolerance is a count of roundings times the magnitudes that cancel, stated next to it.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from ddpm_verify import stats
from ddpm_verify import strategies as S
from ddpm_verify import symbolic as sym
from ddpm_verify.symbolic import assert_identical
from properties._numerics import EPS, assert_close, tab_error

U = EPS / 2


# -- sympy: the strided posterior and the DDIM family -------------------------------------------------
# (on the worker of test_symbolic under pytest-xdist, so that each derivation runs once)

@pytest.mark.xdist_group("symbolic")
def test_strided_posterior_matches_math():
    """q(x_s | x_t, x_0) for a skip from t to s: mean coefficients sqrt(abar_s) beta' / (1 - abar_t) and
    sqrt(abar_t / abar_s) (1 - abar_s) / (1 - abar_t), variance (1 - abar_s) / (1 - abar_t) beta',
    beta' = 1 - abar_t / abar_s (docs/math.md §10)."""
    p = sym.strided_posterior()
    abar_s, r = p.symbols["abar_s"], p.symbols["r"]
    abar_t, beta_ = r * abar_s, 1 - r
    assert_identical(p.coef_x0, sp.sqrt(abar_s) * beta_ / (1 - abar_t), "coefficient of x_0")
    assert_identical(p.coef_xt, sp.sqrt(r) * (1 - abar_s) / (1 - abar_t), "coefficient of x_t")
    assert_identical(p.variance, (1 - abar_s) / (1 - abar_t) * beta_, "variance")


@pytest.mark.xdist_group("symbolic")
def test_ddim_family_keeps_the_forward_marginal_for_every_sigma():
    """Lemma 1: with x_t ~ q(x_t | x_0), the DDIM step's x_s has mean sqrt(abar_s) x_0 and variance
    1 - abar_s, sigma a free symbol."""
    d = sym.ddim_family()
    assert_identical(d.marginal_mean, sp.sqrt(d.symbols["abar_s"]) * d.symbols["x0"], "E[x_s | x_0]")
    assert_identical(d.marginal_variance, 1 - d.symbols["abar_s"], "Var[x_s | x_0]")


@pytest.mark.xdist_group("symbolic")
def test_ddim_with_eta_one_is_the_strided_posterior():
    """eta = 1: sigma^2 = beta_tilde' and the step's mean (z = 0, x_0 given) is mu_tilde'(x_0, x_t).
    Checked at exact rational points of the domain (sympy cannot drop |1 - abar_s| by itself)."""
    d, p = sym.ddim_family(), sym.strided_posterior()
    s2 = d.sigma2_of_eta.subs(d.symbols["eta"], 1)
    assert_identical(s2, p.variance, "sigma^2(eta = 1)")
    for a_s, r in [(sp.Rational(1, 2), sp.Rational(1, 3)), (sp.Rational(99, 100), sp.Rational(1, 7)),
                   (sp.Rational(1, 1000), sp.Rational(999, 1000))]:
        at = {d.symbols["abar_s"]: a_s, d.symbols["r"]: r}
        mean = d.step.subs(d.symbols["z"], 0).subs(d.symbols["sigma"], sp.sqrt(s2.subs(at))).subs(at)
        assert sp.simplify(mean - p.mean.subs(at)) == 0, (a_s, r)


@pytest.mark.xdist_group("symbolic")
@given(data=st.data())
def test_respaced_posterior_and_ddim_coefficients_match_the_derivations(data):
    """The reference (respace + q_posterior; ddim_coefficients) against the derived expressions at
    40 digits, abar_s and r = abar_t / abar_s the products of 1 - beta over the float64 betas taken
    exact. Tolerance: each table entry 2 tab_error relative; a coefficient of k entries, k + 2
    roundings: 16 tab_error."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t, s = data.draw(S.step_pairs(schedule), label="(t, s)")
    eta = data.draw(st.sampled_from([0.0, 0.3, 1.0]), label="eta")
    tol = 16 * float(tab_error(schedule, t))
    mpmath.mp.dps = 40
    alphas = [1 - mpmath.mpf(b) for b in schedule.beta().tolist()]
    ab_s, r = mpmath.fprod(alphas[:s]), mpmath.fprod(alphas[s:t])
    p = sym.strided_posterior()
    args = (p.symbols["abar_s"], p.symbols["r"])
    mp_value = lambda expr: sp.lambdify(args, expr, "mpmath")(ab_s, r)         # noqa: E731
    value = lambda expr: float(mp_value(expr))                                  # noqa: E731
    if s >= 1:
        chain = ref.respace(schedule, np.array([s, t]))
        for got, expr, name in [(chain.posterior_coef_x0(2), p.coef_x0, "coef x0"),
                                (chain.posterior_coef_xt(2), p.coef_xt, "coef xt"),
                                (chain.beta_tilde(2), p.variance, "beta_tilde'")]:
            want = value(expr)
            assert_close(name, float(got), want, tol * abs(want) + 4 * U * abs(want))
    d = sym.ddim_family()
    a_x0, a_eps, sigma = ref.ddim_coefficients(schedule, t, s, eta)
    sigma2 = mp_value(d.sigma2_of_eta.subs(d.symbols["eta"], eta)) if eta else mpmath.mpf(0)
    want_sigma = float(mpmath.sqrt(sigma2))
    assert_close("sigma", float(sigma), want_sigma, tol * want_sigma)
    assert_close("sqrt(abar_s)", float(a_x0), float(mpmath.sqrt(ab_s)), tol)
    # 1 - abar_s - sigma^2 cancels (to 2.9e-4 of 1 - abar_s at eta = 1 on cosine(T=2)): kept at 40 digits
    want_eps = float(mpmath.sqrt(1 - ab_s - sigma2)) if s else 0.0
    assert_close("sqrt(1 - abar_s - sigma^2)", float(a_eps), want_eps, tol * max(want_eps, 1e-300) + 4 * U)


# -- respacing and the libraries' timestep sequences ---------------------------------------------------

@given(data=st.data())
def test_respaced_cumulative_products_are_alpha_bar_at_the_kept_steps(data):
    """prod_{i <= j} (1 - beta'_i) = abar_{k_j}: the respaced tables against the original's, relative
    tab_error of both plus 4 ulps."""
    schedule = data.draw(S.schedules(), label="schedule")
    kept = data.draw(S.kept_steps(schedule), label="kept")
    chain = ref.respace(schedule, kept)
    tol = 2 * tab_error(schedule, kept) + 4 * EPS
    assert_close("abar'", chain.alpha_bar(), schedule.alpha_bar(kept), tol * schedule.alpha_bar(kept))
    assert_close("1 - abar'", chain.one_minus_alpha_bar(), schedule.one_minus_alpha_bar(kept),
                 tol * schedule.one_minus_alpha_bar(kept))
    if kept.size == schedule.T:
        assert_close("betas of the full set", chain.beta(), schedule.beta(), 4 * tol * schedule.beta())


def _half_integers(T: int, n: int, spacing: str) -> np.ndarray:
    """Where the exact rule's value before rounding is a half-integer (float rounding may go either
    way there), per returned position."""
    k = np.arange(n - 1, -1, -1)
    if spacing == "linspace":
        return (n > 1) & ((2 * k * (T - 1)) % (2 * max(n - 1, 1)) == (n - 1) % (2 * max(n - 1, 1)))
    if spacing == "trailing":
        return (2 * T * (k + 1)) % (2 * n) == n
    return np.zeros(n, dtype=bool)


@pytest.mark.parametrize("T", [1000, 50, 37])
@pytest.mark.parametrize("spacing", ref.SPACINGS)
def test_diffusers_timesteps_are_those_set_timesteps_visits(T, spacing):
    """Against diffusers' own DDPMScheduler.set_timesteps (0-based, + 1), for every n and offsets 0, 1:
    equal, except by one step where the exact value is a half-integer (float rounding), and except
    diffusers' trailing spacing, whose float arange yields one timestep too many (-1) for some n; the
    test counts those and asserts nothing else differs."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    extra = []
    for offset in (0, 1):
        scheduler.register_to_config(steps_offset=offset)
        for n in range(1, T + 1):
            if spacing == "leading" and offset and (n - 1) * (T // n) + offset > T - 1:
                with pytest.raises(ValueError, match="steps_offset"):
                    ref.diffusers_timesteps(T, n, spacing, offset)
                continue
            scheduler.set_timesteps(n)
            lib = scheduler.timesteps.numpy() + 1
            got = ref.diffusers_timesteps(T, n, spacing, offset)
            if spacing == "trailing" and lib.size == n + 1:
                assert lib[-1] == 0, (T, n, lib[-3:])         # the extra one is index -1
                extra.append(n)
                lib = lib[:-1]
            assert lib.size == n, (T, spacing, n, offset)
            differs = got != lib
            assert np.all(~differs | (_half_integers(T, n, spacing) & (np.abs(got - lib) == 1))), \
                (T, spacing, n, offset, got[differs], lib[differs])
    if spacing != "trailing":
        assert not extra
    if (spacing, T) == ("trailing", 1000):
        assert 61 in extra                                    # the README's finding
@given(T=st.integers(1, 2000), counts=st.lists(st.integers(1, 60), min_size=1, max_size=5),
       ddim=st.integers(1, 200))
def test_space_timesteps_are_improved_diffusions(T, counts, ddim):
    """Against guided-diffusion's (= improved-diffusion's) space_timesteps, errors included."""
    from guided_diffusion.respace import space_timesteps

    for spec in (",".join(map(str, counts)), f"ddim{ddim}"):
        try:
            want = np.array(sorted(space_timesteps(T, spec))) + 1
        except ValueError:
            with pytest.raises(ValueError, match="section_counts"):
                ref.space_timesteps(T, spec)
            continue
        got = ref.space_timesteps(T, spec)
        assert np.array_equal(got, want), (T, spec)
        assert np.all(np.diff(got) > 0) and 1 <= got[0] and got[-1] <= T


def test_lucidrains_timesteps_are_its_linspace_up_to_float32_rounding():
    """lucidrains truncates torch.linspace(-1, T - 1, S + 1) in float32; the reference truncates the exact
    values -1 + i T / S. They may differ only where the exact value is an integer that float32 rounding
    puts just below it (by one step, i.e. 1), and nowhere else."""
    import torch

    for T in (1000, 250, 37):
        for S_ in range(1, T + 1):
            lib = np.array(torch.linspace(-1, T - 1, steps=S_ + 1).int().tolist()[1:][::-1]) + 1
            got = ref.lucidrains_timesteps(T, S_)
            i = np.arange(S_, 0, -1)
            exact_integer = (i * T) % S_ == 0
            assert np.all((got == lib) | (exact_integer & (got - lib == 1))), (T, S_)
            assert np.all(np.diff(got) < 0) and got[0] == T and got[-1] >= 1


@given(T=st.integers(1, 3000), data=st.data())
def test_every_sequence_is_strictly_decreasing_in_range_with_n_steps(T, data):
    n = data.draw(st.integers(1, T), label="n")
    for spacing in ref.SPACINGS:
        tau = ref.diffusers_timesteps(T, n, spacing)
        assert tau.size == n and np.all(np.diff(tau) < 0) and tau[-1] >= 1 and tau[0] <= T, (spacing, tau)
    tau = ref.lucidrains_timesteps(T, n)
    assert tau.size == n and np.all(np.diff(tau) < 0) and tau[0] == T


# -- DDIM -------------------------------------------------------------------------------------------------

@given(data=st.data())
def test_ddim_step_keeps_the_forward_marginal_exactly(data):
    """With the true x_0 and x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) e, the step is affine in (e, z):
    x_s = sqrt(abar_s) x_0 + c_e e + c_z z. Reading c_e and c_z off the reference's step (e or z set to
    a unit vector), c_e^2 + c_z^2 = 1 - abar_s and the mean is sqrt(abar_s) x_0 (Lemma 1). Tolerance:
    the forward sample and the step each round a few times at magnitude |x_0| + 1: 32 tab_error."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t, s = data.draw(S.step_pairs(schedule), label="(t, s)")
    eta = data.draw(st.floats(0.0, 1.0), label="eta")
    x0 = data.draw(S.data_arrays(n=1, max_abs=5.0), label="x0")
    one, zero = np.ones_like(x0), np.zeros_like(x0)

    def step(e, z):
        xt = ref.q_sample(schedule, x0, t, e)
        return ref.ddim_step(schedule, xt, t, s, x0, eta=eta, noise=z)

    mean = step(zero, zero)
    c_e, c_z = step(one, zero) - mean, step(zero, one) - mean
    tol = 32 * float(tab_error(schedule, t)) * (np.abs(x0) + 1)
    abar_s = 1.0 if s == 0 else float(schedule.alpha_bar(s))
    assert_close("E[x_s | x_0]", mean, math.sqrt(abar_s) * x0, tol)
    assert_close("Var[x_s | x_0]", c_e ** 2 + c_z ** 2, np.full_like(x0, 1 - abar_s), 4 * tol)


@given(data=st.data())
def test_ddim_with_eta_one_is_the_respaced_ddpm_step(data):
    """eta = 1: the step from t to s is the respaced chain's posterior step, mean mu_tilde'(x0_hat, x_t)
    and sigma^2 = beta_tilde'. Tolerance: 16 tab_error of the magnitudes."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t, s = data.draw(S.step_pairs(schedule), label="(t, s)")
    xt = data.draw(S.data_arrays(n=1, max_abs=10.0), label="xt")
    x0_hat = data.draw(S.data_arrays(n=1, d=xt.shape[1], max_abs=3.0), label="x0_hat")
    zero = np.zeros_like(xt)
    got = ref.ddim_step(schedule, xt, t, s, x0_hat, eta=1.0, noise=zero)
    tol = 16 * float(tab_error(schedule, t)) * (np.abs(xt) + np.abs(x0_hat) + 1e-300)
    if s == 0:                              # to x_0: beta' = 1 - abar_t, mu_tilde' = x0_hat, no noise
        assert_close("mean to x_0", got, x0_hat, tol)
        assert float(ref.ddim_sigma(schedule, t, s, 1.0)) == 0.0
        return
    chain = ref.respace(schedule, np.array([s, t]))
    assert_close("mean", got, ref.posterior_mean(chain, x0_hat, xt, 2), tol)
    assert_close("sigma^2", float(ref.ddim_sigma(schedule, t, s, 1.0)) ** 2, float(chain.beta_tilde(2)),
                 16 * float(tab_error(schedule, t)) * float(chain.beta_tilde(2)))


@given(data=st.data())
def test_ddim_inversion_round_trip_error_is_the_derived_one(data):
    """Run eta = 0 from t to s with x0_hat = x0*(x_t) of Gaussian data, then invert from s to t with
    x0*(x_s). Derivation: eps_hat at s is eps_t + sqrt(abar_s) (x0_t - x0_s) / sqrt(1 - abar_s), so
    x_t' - x_t = kappa (x0_s - x0_t), kappa = sqrt(abar_t) - sqrt(abar_s (1 - abar_t) / (1 - abar_s)):
    exact, and small when s is close to t. Tolerance: 64 tab_error of the magnitudes involved, times
    1 + r, r = sqrt((1 - abar_t) / (1 - abar_s)): the inversion's eps_hat divides the rounded difference
    x_s - sqrt(abar_s) x0_s by sqrt(1 - abar_s) and multiplies it by sqrt(1 - abar_t), so rounding in
    x_s and x0_s reaches x_t' amplified by at most 1 + r (r = 3e4 at 1 - abar_s = 1e-12, 1 - abar_t = 1e-3)."""
    schedule = data.draw(S.schedules(zero_terminal=False), label="schedule")
    t, s = data.draw(S.step_pairs(schedule), label="(t, s)")
    if s == 0:
        s = t - 1
    if s == 0:
        return
    gauss = ref.GaussianData(np.array([0.3, -0.7]), data.draw(st.floats(1e-3, 1.0), label="s^2"))
    xt = data.draw(S.data_arrays(n=3, d=2, max_abs=4.0), label="xt")
    x0_t = gauss.x0_star(xt, schedule, t)
    xs = ref.ddim_step(schedule, xt, t, s, x0_t)
    x0_s = gauss.x0_star(xs, schedule, s)
    back = ref.ddim_invert(schedule, xs, s, t, x0_s)
    ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    kappa = math.sqrt(ab_t) - math.sqrt(ab_s * float(schedule.one_minus_alpha_bar(t))
                                        / float(schedule.one_minus_alpha_bar(s)))
    r = math.sqrt(float(schedule.one_minus_alpha_bar(t)) / float(schedule.one_minus_alpha_bar(s)))
    tol = 64 * float(tab_error(schedule, t)) * (1 + r) * (np.abs(xt) + np.abs(x0_t) + np.abs(x0_s) + np.abs(xs))
    assert_close("x_t' - x_t", back - xt, kappa * (x0_s - x0_t), tol)


# -- whole strided loops with Gaussian data: exact output distribution and ELBO ---------------------------

LOOPS = [("ddpm leading 50", ref.diffusers_timesteps(1000, 50), dict(process="ddpm")),
         ("ddpm trailing 37, fixed large", ref.diffusers_timesteps(1000, 37, "trailing"),
          dict(process="ddpm", variance="fixed_large")),
         ("ddim linspace 30, eta 0", ref.diffusers_timesteps(1000, 30, "linspace"), dict(process="ddim", eta=0.0)),
         ("ddim lucidrains 25, eta 0.5", ref.lucidrains_timesteps(1000, 25), dict(process="ddim", eta=0.5)),
         ("ddim ddim20, eta 1, final abar_1", ref.space_timesteps(1000, "ddim20")[::-1],
          dict(process="ddim", eta=1.0, final_alpha_bar="abar_1"))]


def run_loop(schedule, tau, mixture, rng, n, process="ddpm", variance="fixed_small", eta=0.0,
             final_alpha_bar=1.0):
    """n samples through the loop over tau with the reference's steps and GaussianMixture's eps*."""
    x = rng.standard_normal((n, mixture.d))
    kept = tau[::-1]
    chain = ref.respace(schedule, kept)
    for i, t in enumerate(tau):
        s = int(tau[i + 1]) if i + 1 < tau.size else 0
        x0_hat = ref.x0_from_eps(schedule, x, int(t), mixture.optimal_eps(x, schedule, int(t)))
        z = rng.standard_normal(x.shape)
        if process == "ddim":
            x = ref.ddim_step(schedule, x, int(t), s, x0_hat, eta=eta, noise=z, final_alpha_bar=final_alpha_bar)
            continue
        j = tau.size - i                                      # the step's index in the respaced chain
        var = chain.beta_tilde(j) if variance == "fixed_small" else chain.beta(j)
        x = ref.posterior_mean(chain, x0_hat, x, j) + (math.sqrt(var) * z if j > 1 else 0.0)
    return x


@pytest.mark.parametrize("label, tau, process", LOOPS, ids=[c[0] for c in LOOPS])
def test_a_strided_loop_with_the_optimal_predictor_outputs_the_oracle_gaussian(label, tau, process):
    """The loop's output against GaussianData.sampler_output: the mean by a z-test and the variance by a
    z-test of (x - m)^2 (sd sqrt(2) V under the null, x Gaussian), 40,000 values pooled over 2
    dimensions, false-fail rate 1e-6 each; the detectable discrepancies are in the verdicts (about
    0.03 sd in the mean and 4 % in the variance)."""
    schedule = ref.linear(1000)
    mean, var = np.array([0.3, -0.5]), 0.04
    if process.get("final_alpha_bar") == "abar_1":
        process = {**process, "final_alpha_bar": float(schedule.alpha_bar(1))}
    oracle = ref.GaussianData(mean, var).sampler_output(schedule, tau, **process)
    mixture = ref.GaussianMixture(np.ones(1), mean[None], var * np.eye(2)[None])
    x = run_loop(schedule, tau, mixture, np.random.default_rng(20261130), 20_000, **process)
    z = (x - oracle.mean) / np.sqrt(oracle.variance)
    stats.assert_mean(z.ravel(), 0.0, sigma=1.0, name=f"{label}: output mean")
    stats.assert_mean((z ** 2).ravel(), 1.0, sigma=math.sqrt(2.0), name=f"{label}: output variance")


def test_the_elbo_of_a_strided_chain_is_exact():
    """A strided DDPM is a DDPM on the respaced schedule, so the linear-Gaussian chain oracle gives its
    ELBO exactly: LinearGaussianChain(respace(...)).neg_elbo against the KL-form estimator with the same
    chain as the model (4000 draws of x_0, false-fail rate 1e-6), and log p - ELBO = the gap >= 0."""
    schedule = ref.linear(1000)
    chain_schedule = ref.respace(schedule, ref.diffusers_timesteps(1000, 40, "trailing")[::-1])
    S_ = chain_schedule.T
    rng = np.random.default_rng(7)
    a = 0.9 + 0.1 * rng.uniform(size=S_)
    b = 0.05 * rng.standard_normal((S_, 2))
    sigma2 = chain_schedule.beta_tilde(np.maximum(np.arange(1, S_ + 1), 2))
    chain = ref.LinearGaussianChain(chain_schedule, a, b, sigma2)
    x0 = rng.standard_normal((4000, 2)) * 0.5
    exact = chain.neg_elbo(x0)
    estimate = ref.neg_elbo_kl_estimator(chain_schedule, chain.model, x0, rng)
    stats.assert_mean(estimate.per_sample_nats - exact, 0.0, name="strided chain: KL-form estimator - exact -ELBO")
    assert np.all(chain.log_prob(x0) + exact >= -1e-9 * np.abs(exact))
    assert_close("log p + (-ELBO) = gap", chain.log_prob(x0) + exact, chain.gap(x0), 1e-9 * (np.abs(exact) + 1))
