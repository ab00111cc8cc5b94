"""The exact oracles of docs/math.md §7 checked by routes that share no code with them."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import reference as ref

EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("T", [1, 2, 10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chain_gap_equals_log_likelihood_minus_elbo(T, seed):
    """log p_theta(x_0) - ELBO (marginal propagation and the ELBO's terms) equals the KL between
    the two joint Gaussians of x_{1:T} (precision matrices), and is >= 0."""
    schedule = ref.linear(T, scale_with_T=T >= 50)
    rng = np.random.default_rng(seed)
    chain = ref.LinearGaussianChain(schedule, rng.uniform(0.5, 1.2, T), rng.normal(0, 0.3, (T, 3)),
                                    rng.uniform(1e-3, 0.1, T))
    x0 = rng.normal(size=(4, 3))
    log_p, neg_elbo, gap = chain.log_prob(x0), chain.neg_elbo(x0), chain.gap(x0)
    # Worst-case rounding of either route: each of its O(T) terms carries eps relative to the
    # totals it is summed into (|log p|, |neg ELBO|); the gap is their small difference.
    tol = 64 * EPS * T * (np.abs(log_p) + np.abs(neg_elbo))
    assert np.all(np.abs(log_p + neg_elbo - gap) <= tol), (log_p + neg_elbo, gap, tol)
    assert np.all(gap >= -tol)


def _mixture(seed, K=3, d=2, aligned=False):
    """Random weights and means; covariances A A^T + 0.05 I (rotated), or with aligned=True diagonal
    with variances increasing along the axes (every eigenbasis U_k = I: no rotation is applied)."""
    rng = np.random.default_rng(seed)
    if aligned:
        cov = np.stack([np.diag(np.sort(rng.uniform(0.05, 0.5, d))) for _ in range(K)])
    else:
        A = rng.normal(size=(K, d, d)) * 0.4
        cov = A @ np.swapaxes(A, 1, 2) + 0.05 * np.eye(d)
    return ref.GaussianMixture(rng.dirichlet(np.ones(K)), rng.normal(size=(K, d)), cov)


def _assert_log_prob_matches_scipy(g, x):
    schedule = ref.cosine(50)
    for t in (None, 1, 25, 50):
        ab = 1.0 if t is None else float(schedule.alpha_bar(t))
        dens = sum(w * multivariate_normal(np.sqrt(ab) * m, ab * c + (1 - ab) * np.eye(g.d)).pdf(x)
                   for w, m, c in zip(g.weights, g.means, g.covariances))
        got = g.log_prob(x) if t is None else g.log_prob(x, schedule, t)
        # scipy works with densities (no log-sum-exp); values are O(1), so a few ulps of log
        assert np.allclose(got, np.log(dens), rtol=1e-13, atol=1e-13)


def _assert_score_matches_finite_differences(g, x):
    schedule = ref.linear(100)
    h = 1e-5
    for t in (1, 10, 100):
        fd = np.stack([(g.log_prob(x + h * e, schedule, t) - g.log_prob(x - h * e, schedule, t)) / (2 * h)
                       for e in np.eye(g.d)], axis=-1)
        # central difference: truncation h^2 |f'''| / 6 and rounding eps |f| / h; with |f'''| <=
        # ~1e3 / min-variance^(3/2) for these components, both are below 1e-6
        assert np.allclose(g.score(x, schedule, t), fd, rtol=1e-6, atol=1e-6)


def _assert_tweedie_and_optimal_eps(g, rng):
    schedule = ref.linear(200)
    t = rng.integers(1, 201, 50)
    xt = rng.normal(size=(50, g.d)) * 1.5
    ab = schedule.alpha_bar(t)[:, None]
    om = schedule.one_minus_alpha_bar(t)[:, None]
    tweedie = (xt + om * g.score(xt, schedule, t)) / np.sqrt(ab)
    direct = g.posterior_mean_x0(xt, schedule, t)
    # both routes are O(1) sums; Tweedie divides by sqrt(abar) >= 0.2 here after adding terms of
    # size |x_t| ~ 5: relative 5 / 0.2 * 16 eps
    assert np.allclose(direct, tweedie, rtol=0, atol=400 * EPS * (1 + np.abs(xt).max()))
    eps_star = g.optimal_eps(xt, schedule, t)
    assert np.allclose(eps_star, (xt - np.sqrt(ab) * direct) / np.sqrt(om), rtol=0,
                       atol=400 * EPS * (1 + np.abs(xt).max()) / np.sqrt(om.min()))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_mixture_log_prob_matches_scipy(seed, d):
    _assert_log_prob_matches_scipy(_mixture(seed, d=d), np.random.default_rng(seed + 10).normal(size=(20, d)))


def test_mixture_score_matches_finite_differences():
    _assert_score_matches_finite_differences(_mixture(3), np.random.default_rng(4).normal(size=(10, 2)))


def test_mixture_tweedie_and_optimal_eps():
    """E[x_0 | x_t] from the components' Gaussian conditionals equals Tweedie's formula from the
    score, and eps* = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar)."""
    _assert_tweedie_and_optimal_eps(_mixture(5), np.random.default_rng(6))


@pytest.mark.parametrize("d", [2, 3])
def test_axis_aligned_mixture_matches_scipy_finite_differences_and_tweedie(d):
    """The same three checks for axis-aligned components (the ring's kind), which take no rotation."""
    g = _mixture(20 + d, d=d, aligned=True)
    rng = np.random.default_rng(30 + d)
    _assert_log_prob_matches_scipy(g, rng.normal(size=(20, d)))
    _assert_score_matches_finite_differences(g, rng.normal(size=(10, d)))
    _assert_tweedie_and_optimal_eps(g, rng)


@pytest.mark.parametrize("K", [1, 3, 8])
def test_ring_is_k_equal_components_at_equal_angles_on_the_circle(K):
    """GaussianMixture.ring(K, radius, std): weights 1/K, means radius (cos 2 pi k / K, sin 2 pi k / K)
    (checked by their complex form: the K-th roots of unity times the radius), covariances std^2 I."""
    ring = ref.GaussianMixture.ring(K, radius=2.5, std=0.3)
    roots = 2.5 * np.exp(2j * np.pi * np.arange(K) / K)
    assert np.array_equal(ring.weights, np.full(K, 1.0 / K))
    np.testing.assert_allclose(ring.means[:, 0] + 1j * ring.means[:, 1], roots, rtol=0, atol=4e-16 * 2.5)
    np.testing.assert_array_equal(ring.covariances, np.broadcast_to(0.3 ** 2 * np.eye(2), (K, 2, 2)))
