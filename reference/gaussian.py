"""Diagonal Gaussians: log-density, KL divergence, discretised decoder likelihood (docs/math.md §6).

All functions here are elementwise (one value per data dimension, in nats); sum over the
last axis for a per-example value. Arrays combined elementwise must have identical shapes;
0-d values broadcast (see `_checks.same_shape`). Variances must be finite and > 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erf, log_ndtr, ndtr

from ._checks import as_float, as_positive, same_shape
from .schedules import _log1mexp

LOG_2PI = math.log(2.0 * math.pi)

#: half-width of one bin of 8-bit data scaled to [-1, 1] (256 levels, spacing 2/255)
BIN_HALF_WIDTH = 1.0 / 255.0


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


def log_normal_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for float64 arrays a < b of one shape (a may be -inf, b may be +inf),
    accurate in both tails: the log-probability that a standard normal lands in [a, b]. Not
    validated (the discretised decoder's kernel); nats.

    Both ends in one tail: log Phi(hi) + log1mexp(log Phi(lo) - log Phi(hi)), reflected so the
    tail is on the left. Straddling 0: log1p(-(Phi(a) + Phi(-b))) when the mass exceeds 1/2,
    else log((erf(b / sqrt 2) + erf(-a / sqrt 2)) / 2), a sum of two non-negative terms.
    """
    out = np.empty(np.broadcast(a, b).shape)
    right, left = a >= 0, b <= 0
    mid = ~(right | left)
    for mask, hi, lo in ((left, b, a), (right, -a, -b)):
        if mask.any():
            lh, ll = log_ndtr(hi[mask]), log_ndtr(lo[mask])
            out[mask] = lh + _log1mexp(ll - lh)
    if mid.any():
        am, bm = a[mid], b[mid]
        c = ndtr(am) + ndtr(-bm)
        with np.errstate(divide="ignore"):
            out[mid] = np.where(c < 0.5, np.log1p(-np.minimum(c, 0.5)),
                                np.log(0.5 * (erf(bm / math.sqrt(2.0)) + erf(-am / math.sqrt(2.0)))))
    return out


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
    inv_sd = 1.0 / np.sqrt(variance)
    lower = (2.0 * k - 256.0) * BIN_HALF_WIDTH        # (2k - 1)/255 - 1, the same float as bin k - 1's upper edge
    upper = (2.0 * k - 254.0) * BIN_HALF_WIDTH
    a = np.where(k == 0, -np.inf, (lower - mean) * inv_sd)
    b = np.where(k == 255, np.inf, (upper - mean) * inv_sd)
    return log_normal_mass(a, b)
