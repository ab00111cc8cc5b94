"""Diagonal Gaussians: log-density, KL divergence, discretised decoder likelihood (docs/math.md §6).

All functions here are elementwise (one value per data dimension, in nats); sum over the
last axis for a per-example value. Arrays combined elementwise must have identical shapes;
0-d values broadcast (see `_checks.same_shape`). Variances must be finite and > 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erf, erfcx, log_ndtr, ndtr

from ._checks import as_float, as_positive, same_shape
from .schedules import _log1mexp

LOG_2PI = math.log(2.0 * math.pi)

#: the bins of 8-bit data scaled to [-1, 1] (256 levels, spacing 2/255) have their edges at
#: j / BIN_EDGE_DENOMINATOR for odd integers j, a half-width of 1 / BIN_EDGE_DENOMINATOR
BIN_EDGE_DENOMINATOR = 255.0
BIN_HALF_WIDTH = 1.0 / BIN_EDGE_DENOMINATOR


class DiagonalNormal(NamedTuple):
    """N(mean, diag(variance)); all three arrays have the mean's shape.

    docs/math.md §6.
    """

    mean: np.ndarray
    variance: np.ndarray
    log_variance: np.ndarray


def u_minus_log1p(u) -> np.ndarray:
    """g(u) = u - log(1 + u) >= 0 for u > -1, accurate also for |u| << 1.

    For |u| < 0.1, with z = u / (2 + u) (so log1p(u) = 2 atanh z):
    g(u) = u^2 / (2 + u) - 2 sum_{k>=1} z^(2k+1) / (2k+1), summed to z^15 (truncation < 1e-17
    relative); both parts are free of cancellation. For |u| >= 0.1 the direct difference loses
    at most a factor |u| / g(u) <= 22 in relative accuracy.
    docs/math.md §6.3.
    """
    u = as_float("u", u)
    if np.any(u <= -1):
        raise ValueError(f"u must be > -1 (g(u) = u - log(1 + u)); got {u[u <= -1][:3]}")
    return _u_minus_log1p(u)


def _u_minus_log1p(u: np.ndarray, log1p_u: np.ndarray | None = None) -> np.ndarray:
    """g(u); `log1p_u`, when given, is log(1 + u) computed by the caller without forming 1 + u."""
    u = np.asarray(u, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.array(u - (np.log1p(u) if log1p_u is None else log1p_u))
    small = np.abs(u) < 0.1
    if small.any():
        us = u[small]
        z = us / (2.0 + us)
        z2 = z * z
        tail = np.zeros_like(z)
        for k in range(7, 0, -1):                   # Horner in z^2: sum_{k=1}^{7} z^(2k-2) / (2k+1)
            tail = tail * z2 + 1.0 / (2 * k + 1)
        out[small] = us * us / (2.0 + us) - 2.0 * z * z2 * tail
    return out if out.ndim else out[()]


def normal_log_density(x, mean, variance) -> np.ndarray:
    """log N(x; mean, variance) = -(log(2 pi variance) + (x - mean)^2 / variance) / 2, elementwise, nats.

    docs/math.md §6.
    """
    x, mean = as_float("x", x), as_float("mean", mean)
    variance = as_positive("variance", variance)
    same_shape(x=x, mean=mean, variance=variance)
    return normal_log_density_unchecked(x, mean, variance)


def normal_log_density_unchecked(x, mean, variance):
    """`normal_log_density` without validation, broadcasting its arguments (the kernel the ELBO code
    calls on arrays of many shapes)."""
    return -0.5 * (LOG_2PI + np.log(variance) + (x - mean) ** 2 / variance)


def kl_normal(mean1, variance1, mean2, variance2) -> np.ndarray:
    """KL(N(mean1, variance1) || N(mean2, variance2)) per dimension, nats (docs/math.md §6).

    0.5 (log(v2 / v1) + (v1 + (m1 - m2)^2) / v2 - 1) = 0.5 ((m1 - m2)^2 / v2 + g(u)),
    u = (v1 - v2) / v2, g(u) = u - log1p(u) (a series when v1 ~ v2, where KL ~ u^2 / 4; else
    u - (log v1 - log v2), which keeps v1's digits also when v1 << v2).
    The first argument is the distribution the expectation is taken under.
    """
    m1, m2 = as_float("mean1", mean1), as_float("mean2", mean2)
    v1, v2 = as_positive("variance1", variance1), as_positive("variance2", variance2)
    same_shape(mean1=m1, variance1=v1, mean2=m2, variance2=v2)
    return kl_normal_unchecked(m1, v1, m2, v2)


def kl_normal_unchecked(m1, v1, m2, v2):
    """`kl_normal` without validation, broadcasting its arguments (the kernel the ELBO code calls)."""
    ratio = v1 / v2
    with np.errstate(divide="ignore"):   # log of the rounded ratio unless it under/overflowed
        log_ratio = np.where((ratio > 1e-300) & (ratio < 1e300), np.log(ratio), np.log(v1) - np.log(v2))
    return 0.5 * ((m1 - m2) ** 2 / v2 + _u_minus_log1p((v1 - v2) / v2, log_ratio))


def log_normal_mass(a: np.ndarray, b: np.ndarray, a_lo=0.0, b_lo=0.0) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for float64 arrays a < b of one shape (a may be -inf, b may be +inf),
    accurate in both tails: the log-probability that a standard normal lands in [a, b]. Not
    validated (the discretised decoder's kernel); nats. `a_lo`, `b_lo`: the low parts of ends
    known in double-double (a + a_lo), taken in by log Phi(x + x_lo) = log Phi(x) + lambda(x) x_lo,
    lambda = phi / Phi (so the rounding of the ends to float64 does not cost the tails their digits).

    Both ends in one tail: log Phi(hi) + log1mexp(log Phi(lo) - log Phi(hi)), reflected so the
    tail is on the left. Straddling 0: log1p(-(Phi(a) + Phi(-b))) when the mass exceeds 1/2, the
    tails by `_ndtr` (a tail mass below the normal range is kept, not flushed to 0), else
    log((erf(b / sqrt 2) + erf(-a / sqrt 2)) / 2), a sum of two non-negative terms.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a_lo, b_lo = np.broadcast_to(a_lo, a.shape), np.broadcast_to(b_lo, b.shape)
    out = np.empty(np.broadcast(a, b).shape)
    right, left = a >= 0, b <= 0
    mid = ~(right | left)
    for mask, hi, hi_lo, lo, lo_lo in ((left, b, b_lo, a, a_lo), (right, -a, -a_lo, -b, -b_lo)):
        if mask.any():
            lh, ll = _log_ndtr(hi[mask], hi_lo[mask]), _log_ndtr(lo[mask], lo_lo[mask])
            out[mask] = lh + _log1mexp(ll - lh)
    if mid.any():
        am, bm = a[mid], b[mid]
        c = _ndtr(am, a_lo[mid]) + _ndtr(-bm, -b_lo[mid])
        with np.errstate(divide="ignore"):
            out[mid] = np.where(c < 0.5, np.log1p(-np.minimum(c, 0.5)),
                                np.log(0.5 * (erf(bm / math.sqrt(2.0)) + erf(-am / math.sqrt(2.0)))))
    return out


def _ndtr(x: np.ndarray, x_lo: np.ndarray) -> np.ndarray:
    """Phi(x + x_lo) = Phi(x) (1 + lambda(x) x_lo). Phi(x) is scipy's ndtr for x >= -1; in the left
    tail it is erfcx(-x / sqrt 2) exp(-x^2 / 2) / 2 with x^2 = p + e exact (`_two_product`), so that
    the exponent's rounding (x^2 / 2 ~ 700 near the end of the float range) costs no digits; a
    tail below the normal range comes out subnormal, not flushed to 0."""
    p = ndtr(x)
    tail = (x < -1.0) & np.isfinite(x)                 # Phi(-inf) = 0 is ndtr's already
    if tail.any():
        xt = x[tail]
        sq, sq_lo = _two_product(xt, xt)
        p[tail] = 0.5 * erfcx(-xt / math.sqrt(2.0)) * np.exp(-0.5 * sq) * (1.0 - 0.5 * sq_lo)
    finite = np.isfinite(x) & (x_lo != 0)
    if not finite.any():
        return p
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lam = np.exp(-0.5 * x * x - 0.5 * LOG_2PI - log_ndtr(x))
    return p * (1.0 + np.where(finite, lam * x_lo, 0.0))


def _log_ndtr(x: np.ndarray, x_lo: np.ndarray) -> np.ndarray:
    """log Phi(x + x_lo) = log Phi(x) + lambda(x) x_lo to first order, lambda(x) = phi(x) / Phi(x)
    (x_lo ~ 2^-53 x, so the second-order term is below the rounding of the first)."""
    log_phi = log_ndtr(x)
    finite = np.isfinite(x) & (x_lo != 0)
    if not finite.any():
        return log_phi
    with np.errstate(over="ignore", invalid="ignore"):
        lam = np.exp(-0.5 * x * x - 0.5 * LOG_2PI - log_phi)
    return log_phi + np.where(finite, lam * x_lo, 0.0)


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = hi + lo, each with at most 26 significant bits (Veltkamp; |x| < 2^996)."""
    c = 134217729.0 * x                               # 2^27 + 1
    hi = c - (c - x)
    return hi, x - hi


def _two_product(x: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """(p, e) with p = fl(x y) and p + e = x y exactly (Dekker)."""
    p = x * y
    xh, xl = _split(x)
    yh, yl = _split(np.asarray(y, dtype=np.float64))
    return p, ((xh * yh - p) + xh * yl + xl * yh) + xl * yl


def _standardised_edge(j: np.ndarray, mean: np.ndarray, variance: np.ndarray,
                       denominator: float) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) with hi + lo = (j / c - mean) / sqrt(variance) in double-double, j an integer and c
    the `denominator` (the bin edge j / 255 is exact as a rational, not as a float): the
    numerator j - c mean exactly (c mean as an exact sum of two products), then the division by c
    and by sqrt(v) with their remainders (`_two_product`): hi + lo has about 2^-100 relative error."""
    p, e = _two_product(mean, denominator)
    s = j - p                                          # TwoSum(j, -p): s + err = j - p exactly
    bv = s - j
    err = (j - (s - bv)) + (-p - bv)
    n_hi, n_lo = s, err - e
    d_hi = n_hi / denominator
    p, q = _two_product(d_hi, denominator)
    d_lo = (((n_hi - p) - q) + n_lo) / denominator
    sd = np.sqrt(variance)
    p, q = _two_product(sd, sd)
    sd_lo = ((variance - p) - q) / (2.0 * sd)
    a_hi = d_hi / sd
    p, q = _two_product(a_hi, sd)
    a_lo = (((d_hi - p) - q) + d_lo - a_hi * sd_lo) / sd
    return a_hi, a_lo


def discretized_gaussian_log_likelihood(x0, mean, variance) -> np.ndarray:
    """log P(x0) under N(mean, variance) discretised to 256 levels on [-1, 1], per dimension, nats.

    DDPM section 3.3 (docs/math.md §6): the mass of x0's bin [x0 - 1/255, x0 + 1/255], with the lower
    edge at -inf for x0 = -1 and the upper edge at +inf for x0 = 1, computed with the exact normal
    CDF (scipy.special.log_ndtr). `x0` must lie on the grid k / 127.5 - 1, k = 0..255, to within
    1e-6 (float32-rounded data is accepted); the edges are taken from the level k,
    (2k -+ 1 - 255) / 255, so neighbouring bins share their edges exactly and the 256 masses
    sum to 1.
    """
    x0, mean = as_float("x0", x0), as_float("mean", mean)
    variance = as_positive("variance", variance)
    same_shape(x0=x0, mean=mean, variance=variance)
    k = grid_levels(x0)
    return _discretized_log_likelihood(*np.broadcast_arrays(x0, k, mean, variance))


def grid_levels(x0) -> np.ndarray:
    """Level k in 0..255 of each element of x0 = k / 127.5 - 1; raises if x0 is off the grid by > 1e-6.

    docs/math.md §6.5.
    """
    x0 = as_float("x0", x0)
    k = np.rint((x0 + 1.0) * 127.5)
    off_grid = (np.abs(x0 - (k / 127.5 - 1.0)) > 1e-6) | (k < 0) | (k > 255)
    if off_grid.any():
        raise ValueError(f"x0 must lie on the 256-level grid k/127.5 - 1 in [-1, 1] (8-bit data scaled "
                         f"to [-1, 1]); got {x0[off_grid][:3]}")
    return k


def _discretized_log_likelihood(x0, k, mean, variance):
    """The bin of level k is [(2k - 256) / 255, (2k - 254) / 255]: both ends standardised in
    double-double from the exact rational edges (`_standardised_edge`); -inf at k = 0, +inf at 255.
    Means beyond 2^900 (where the splitting would overflow) take the plain float64 edges."""
    huge = np.abs(mean) > 2.0 ** 900
    m = np.where(huge, 0.0, mean)
    a, a_lo = _standardised_edge(2.0 * k - 256.0, m, variance, BIN_EDGE_DENOMINATOR)
    b, b_lo = _standardised_edge(2.0 * k - 254.0, m, variance, BIN_EDGE_DENOMINATOR)
    if huge.any():
        sd = np.sqrt(variance)
        a = np.where(huge, ((2.0 * k - 256.0) / BIN_EDGE_DENOMINATOR - mean) / sd, a)
        b = np.where(huge, ((2.0 * k - 254.0) / BIN_EDGE_DENOMINATOR - mean) / sd, b)
        a_lo, b_lo = np.where(huge, 0.0, a_lo), np.where(huge, 0.0, b_lo)
    a, a_lo = np.where(k == 0, -np.inf, a), np.where(k == 0, 0.0, a_lo)
    b, b_lo = np.where(k == 255, np.inf, b), np.where(k == 255, 0.0, b_lo)
    return log_normal_mass(a, b, a_lo, b_lo)
