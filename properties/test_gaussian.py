"""Diagonal-Gaussian primitives (docs/math.md §6): KL divergence, log-density, discretised decoder.

Independent routes: 50-digit mpmath (the sign and zero of the KL), 1-D quadrature of
p log(p / q) (scipy.integrate.quad), torch.distributions.kl_divergence (float64, CPU),
scipy.stats.norm.logpdf and scipy.stats.norm.cdf (bin masses).

Error model (EPS = 2^-52): + - * / sqrt correctly rounded (<= EPS / 2 relative); log, exp,
log1p, the normal CDF within 1 ulp. Each tolerance adds the bounds of the two routes compared,
written next to the assertion. Reproduce a failure: the falsifying example printed by
Hypothesis; ``CI=true python3 -m pytest properties/test_gaussian.py -k NAME``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate
from scipy.stats import norm

import reference as ref
from ddpm_verify import strategies as S
from properties._numerics import EPS, TINY, assert_close

torch.set_num_threads(1)        # 2-core machines: one torch thread (DESIGN.md, "Machines")

DBL_MIN = float(np.finfo(np.float64).tiny)
LOG_2PI = math.log(2 * math.pi)
H = ref.BIN_HALF_WIDTH                       # 1/255
GRID = np.arange(256) / 127.5 - 1.0          # the 256 levels of 8-bit data on [-1, 1]


# -- cases ----------------------------------------------------------------------------------------

@st.composite
def kl_pairs(draw):
    """(m1, v1, m2, v2), arrays of one shape (n, d). Per element, q's mean is p's or shifted by a
    drawn amount (down to a few ulps), q's variance p's or p's times (1 + r), r drawn down to 1e-16
    or arbitrary: equal pairs, near-equal pairs and far pairs all occur."""
    m1 = draw(S.data_arrays())
    shape = m1.shape
    v1 = draw(hnp.arrays(np.float64, shape, elements=S.variances()))
    shift = draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.just(0.0), S.finite_floats(100.0), S.log_uniform(1e-15, 1.0))))
    r = draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.just(0.0), S.log_uniform(1e-16, 1.0), st.floats(-0.999, 10.0))))
    return m1, v1, m1 + shift * np.maximum(np.abs(m1), 1.0), v1 * (1.0 + r)


def exact_kl(m1, v1, m2, v2) -> np.ndarray:
    """docs/math.md §6 KL per element in 50-digit mpmath (float64 inputs taken as exact), as floats."""
    with mpmath.workdps(50):
        f = np.frompyfunc(lambda a, b, c, e: float(
            (mpmath.log(mpmath.mpf(e) / b) + (mpmath.mpf(b) + (mpmath.mpf(a) - c) ** 2) / e - 1) / 2), 4, 1)
        return np.asarray(f(m1, v1, m2, v2), dtype=np.float64)


X = np.array([[0.5, -1.25, 3.0]])
V = np.array([[1e-4, 1.0, 2.5]])


# -- KL ------------------------------------------------------------------------------------------

@given(kl_pairs())
@example((X, V, X, V))                                          # equal: KL = 0 exactly
@example((X, V, np.nextafter(X, 10), V))                         # one ulp apart in the mean
@example((X, V, X, V * (1 + 2 * EPS)))                           # two ulps apart in the variance
@example((X, V, -X, 1e4 * V))
def test_kl_is_nonnegative_and_zero_iff_equal(case):
    """kl_normal >= 0 for every pair, exactly 0 when (m1, v1) = (m2, v2), and > 0 whenever the pair
    differs and the exact KL (mpmath) is a normal float64 (>= DBL_MIN): Gibbs' inequality (docs/math.md §6)."""
    m1, v1, m2, v2 = case
    kl = ref.kl_normal(m1, v1, m2, v2)
    equal = (m1 == m2) & (v1 == v2)
    exact = exact_kl(m1, v1, m2, v2)
    ctx = f"kl={kl!r}, exact={exact!r}, equal={equal!r}."
    # KL = ((m1 - m2)^2 / v2 + g(u)) / 2 with g(u) = u - log1p(u) >= 0 evaluated without cancellation:
    # a sum of non-negative rounded terms, so no rounding can make it negative
    assert np.all(kl >= 0), f"KL < 0: {kl[kl < 0]!r}; {ctx} Reproduce: the falsifying example printed above."
    assert np.all(kl[equal] == 0), f"KL(p || p) != 0: {kl[equal]!r}; {ctx}"
    positive = ~equal & (exact >= DBL_MIN)
    assert np.all(kl[positive] > 0), (f"KL = 0 for different distributions with exact KL >= DBL_MIN: "
                                      f"{kl[positive]!r} vs exact {exact[positive]!r}; {ctx}")


@st.composite
def scalar_pairs(draw):
    """Scalar (m1, v1, m2, v2): means in [-10, 10], variances log-uniform in [1e-3, 1e3]."""
    m = st.floats(-10.0, 10.0)
    v = S.variances(1e-3, 1e3)
    return draw(m), draw(v), draw(m), draw(v)


@given(scalar_pairs())
@example((0.0, 1.0, 0.0, 1.0))
@example((0.3, 1e-3, -2.0, 1e3))
@example((10.0, 1e3, -10.0, 1e-3))
def test_kl_equals_quadrature(case):
    """kl_normal = integral of p(x) log(p(x) / q(x)) dx (scipy.integrate.quad; the densities from
    their formula, log N(x; m, sd^2) = -((x - m) / sd)^2 / 2 - log sd - log(2 pi) / 2, in Python
    floats: scipy.stats.norm's per-call cost is 100 times the integrand's, and its logpdf is the
    reference's own check below), integrated in p's standard units z = (x - m1) / sd1 over
    [-40, 40] (the tail beyond carries < 1e-340)."""
    m1, v1, m2, v2 = case
    sd1, sd2 = math.sqrt(v1), math.sqrt(v2)

    def log_density(x, m, sd):
        return -0.5 * ((x - m) / sd) ** 2 - math.log(sd) - 0.5 * LOG_2PI

    def integrand(z):
        x = m1 + sd1 * z
        return math.exp(-0.5 * z * z - 0.5 * LOG_2PI) * (log_density(x, m1, sd1) - log_density(x, m2, sd2))

    kink = (m2 - m1) / sd1
    points = [0.0] + ([kink] if abs(kink) < 40 else [])
    value, abserr = integrate.quad(integrand, -40, 40, points=points, epsabs=1e-14, epsrel=1e-13, limit=200)
    kl = float(ref.kl_normal(m1, v1, m2, v2))
    # quadrature: its own error estimate (must be small for the check to have teeth), and the
    # integrand's rounding, 8 EPS of E_p|log p| + E_p|log q| (each log-density to ~4 EPS of its size)
    mag = 0.5 * (LOG_2PI + abs(math.log(v1)) + 1) + 0.5 * (LOG_2PI + abs(math.log(v2)) + (v1 + (m1 - m2) ** 2) / v2)
    assert abserr <= 1e-9 * (1 + mag), f"quad did not resolve the integral: abserr {abserr:.3e}, case {case!r}"
    tol = 2 * abserr + 8 * EPS * mag + 4 * EPS * kl
    assert_close("KL vs quadrature", kl, value, tol, f"case {case!r}, quad abserr {abserr:.3e}.")


@given(kl_pairs())
@example((X, V, X, V))
@example((X, V, -X, 1e4 * V))
def test_kl_equals_torch_kl_divergence(case):
    """kl_normal = torch.distributions.kl_divergence(Normal(m1, sqrt v1), Normal(m2, sqrt v2)), float64."""
    m1, v1, m2, v2 = case
    p = torch.distributions.Normal(torch.from_numpy(m1), torch.from_numpy(np.sqrt(v1)))
    q = torch.distributions.Normal(torch.from_numpy(m2), torch.from_numpy(np.sqrt(v2)))
    want = torch.distributions.kl_divergence(p, q).numpy()
    kl = ref.kl_normal(m1, v1, m2, v2)
    vr, t1 = v1 / v2, (m1 - m2) ** 2 / v2
    # torch: 0.5 (vr + t1 - 1 - log vr) with vr = (s1 / s2)^2, t1 = ((m1 - m2) / s2)^2: each of vr, t1
    # to 3 EPS, log vr to EPS |log vr| + 3 EPS, the sums EPS / 2 of the magnitudes -- it cancels
    # when vr ~ 1, so its absolute error is EPS-sized, not KL-sized.
    # reference: 0.5 (t1 + g(u)), u = vr - 1; for |u| >= 0.1 g(u) = u - (log v1 - log v2), and the
    # difference of the two logs carries 1 ulp of each, EPS (|log v1| + |log v2|) (not EPS |log vr|);
    # for |u| < 0.1 a series, 4 EPS of KL; t1 to 2 EPS
    tol = (EPS * 2.5 * (vr + t1 + 2 + np.abs(np.log(vr)))
           + EPS * (t1 + 0.5 * (np.abs(np.log(v1)) + np.abs(np.log(v2))) + 4 * kl) + TINY)
    assert_close("KL vs torch", kl, want, tol, f"vr={vr!r}, t1={t1!r}.")


# -- log-density ---------------------------------------------------------------------------------

@st.composite
def density_points(draw):
    """(x, mean, variance), arrays of one shape (n, d)."""
    x = draw(S.data_arrays())
    mean = draw(S.data_arrays(n=x.shape[0], d=x.shape[1]))
    return x, mean, draw(hnp.arrays(np.float64, x.shape, elements=S.variances()))


@given(density_points())
@example((X, X, V))
@example((X, -X, V))
def test_normal_log_density_equals_scipy_logpdf(case):
    """normal_log_density(x, mean, var) = scipy.stats.norm.logpdf(x, loc=mean, scale=sqrt(var))."""
    x, mean, var = case
    got = ref.normal_log_density(x, mean, var)
    want = norm.logpdf(x, loc=mean, scale=np.sqrt(var))
    q = (x - mean) ** 2 / var
    # reference -(log 2pi + log v + q) / 2: q to 2 EPS, log v to 1 ulp, sums EPS/2 of magnitudes;
    # scipy -z^2/2 - log(sd) - log(2pi)/2 with z = (x - m) / sd: z^2 to 3.5 EPS, log sd to 1 ulp + EPS/2
    tol = EPS * (3 * q + 2 * np.abs(np.log(var)) + 4)
    assert_close("logpdf vs scipy", got, want, tol, f"q={q!r}.")


# -- discretised decoder --------------------------------------------------------------------------

@st.composite
def decoder_params(draw):
    """(mean, variance) arrays of shape (n,): means on the data range, exactly on bin centres or
    edges, or far outside; variances log-uniform in [1e-10, 1e4] (bins 1e-10 to 1e2 sd wide)."""
    n = draw(st.integers(1, 4))
    means = st.one_of(st.floats(-1.5, 1.5), st.sampled_from(GRID.tolist()),
                      st.sampled_from((GRID + H).tolist()), S.finite_floats(30.0))
    mean = np.array(draw(st.lists(means, min_size=n, max_size=n)))
    var = np.array(draw(st.lists(S.variances(1e-10, 1e4), min_size=n, max_size=n)))
    return mean, var


def bin_masses(mean, var):
    """exp of the reference's discretised log-likelihood of all 256 levels, shape (256, n)."""
    x = np.broadcast_to(GRID[:, None], (256, mean.size)).copy()
    m = np.broadcast_to(mean, x.shape).copy()
    v = np.broadcast_to(var, x.shape).copy()
    return np.exp(ref.discretized_gaussian_log_likelihood(x, m, v)), x, m, v


@given(decoder_params())
@example((np.array([0.0]), np.array([1e-4])))
@example((np.array([GRID[3] + H]), np.array([1e-10])))         # the mean on a bin edge, a very narrow Gaussian
@example((np.array([-30.0, 30.0]), np.array([1.0, 1e-2])))     # far outside: all mass in an end bin
@example((np.array([0.1]), np.array([1e4])))
def test_discretized_decoder_masses_sum_to_one(case):
    """The 256 bin masses of the discretised Gaussian decoder (edges at -inf for x = -1, +inf for
    x = 1) sum to 1 (docs/math.md §6), summed exactly with math.fsum."""
    mean, var = case
    masses, *_ = bin_masses(mean, var)
    total = np.array([math.fsum(masses[:, j].tolist()) for j in range(mean.size)])
    sd = np.sqrt(var)
    delta = 2 * H / sd                                   # bin width in standard units
    # Adjacent bins meet at one edge in exact arithmetic, but each bin places its own edges,
    # (x_k -+ 1/255 - mean) / sd: the float grid point x_k = fl(k / 127.5) - 1 (<= EPS/2 absolute), 1/255,
    # the subtraction, the sum and the scaling put an edge off by <= EPS (1 + 5 (|x_k - mean| + h)) / sd
    # in standard units -- an intrinsic 1/sd conditioning of the formula (the float levels are not
    # exactly 2/255 apart). Each misplaced edge costs the density there; over the edges
    # sum phi(e_k) <= min(1/delta + 0.4, 102) and sum phi(e_k) |e_k| <= min(0.8/delta + 0.5, 64).
    # Far-tail bins, where log Phi(b) - log Phi(a) cancels, add EPS sum phi |e|; exp and fsum 4 EPS.
    s_phi, s_phi_e = np.minimum(1 / delta + 0.4, 102.0), np.minimum(0.8 / delta + 0.5, 64.0)
    tol = EPS * ((1 + 5 * H) / sd * s_phi + 6 * s_phi_e + 4)
    assert_close("mass sum", total, np.ones_like(total), tol, f"mean={mean!r}, var={var!r}, delta={delta!r}.")


@given(decoder_params())
@example((np.array([0.0]), np.array([1e-4])))
@example((np.array([-30.0, 30.0]), np.array([1.0, 1e-2])))
def test_discretized_decoder_masses_equal_cdf_differences(case):
    """Each bin mass equals Phi(b) - Phi(a) from scipy.stats.norm.cdf with the bin of level k,
    a = ((2k - 1)/255 - 1 - mean) / sd, b = ((2k + 1)/255 - 1 - mean) / sd, a = -inf at x = -1 and
    b = +inf at x = 1 (docs/math.md §6; x = k/127.5 - 1)."""
    mean, var = case
    masses, x, m, v = bin_masses(mean, var)
    sd = np.sqrt(v)
    k = np.rint((x + 1) * 127.5)
    a = np.where(x == -1.0, -np.inf, ((2 * k - 256) / 255 - m) / sd)   # edges with one rounding each
    b = np.where(x == 1.0, np.inf, ((2 * k - 254) / 255 - m) / sd)
    want = norm.cdf(b) - norm.cdf(a)
    with np.errstate(invalid="ignore"):
        # each edge (2k -+ 1 - 255) / 255 is rounded once (relative EPS / 2 of |edge| <= |x| + H), then
        # the mean is subtracted (EPS of |edge - mean|): in standard units
        edge_err = 3 * EPS * (np.abs(x) + H + np.abs(x - m)) / sd
        dens = np.maximum(np.nan_to_num(norm.pdf(a)), np.nan_to_num(norm.pdf(b)))
    # scipy's difference of two CDFs: <= 2 EPS absolute (each Phi within 1 ulp of a value <= 1); the
    # reference: 4 EPS of the mass; both routes place each edge to within edge_err: density x 2 edge_err
    tol = 2 * EPS + 4 * EPS * masses + 2 * dens * edge_err + TINY
    assert_close("bin mass vs scipy cdf", masses, want, tol, f"mean={mean!r}, var={var!r}.")
