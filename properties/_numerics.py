"""Helpers shared by the property modules: unit roundoff, the comparison with a stated
tolerance, and independent routes used by several modules."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

import reference as ref
from ddpm_verify.results import CheckFailed, compare
from reference.gaussian import LOG_2PI

EPS = float(np.finfo(np.float64).eps)
TINY = 1e-300


def assert_close(what: str, got, want, tol, context: str = "") -> None:
    """Elementwise |got - want| <= tol (equal values, infinities included, pass), by the project's one
    comparator (`results.compare`); the failure shows the count of values beyond tolerance, the
    worst, both values, the tolerance and how to reproduce."""
    got, want, tol = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (got, want, tol)))
    result = compare(got, want, tol, "all", part=what)
    if not result.passed:
        raise CheckFailed(replace(result, detail=(
            f"{len(result.failures)} of {result.values} values beyond tolerance; {result.detail}. {context} "
            "Reproduce: rerun this test with the same Hypothesis profile (the falsifying example is printed "
            "above; the ci profile is derandomised).")))


def kernel_iteration(betas: np.ndarray, s: int, t: int) -> tuple[float, float]:
    """(m, v) with q(x_t | x_s) = N(m x_s, v I), by applying the kernel of steps s+1..t to a point
    mass (m = 1, v = 0): m <- sqrt(1 - beta_r) m, v <- (1 - beta_r) v + beta_r (docs/math.md §3).
    With s = 0 this is (sqrt(abar_t), 1 - abar_t)."""
    m, v = 1.0, 0.0
    for b in betas[s:t].tolist():
        alpha = 1.0 - b
        m, v = math.sqrt(alpha) * m, alpha * v + b
    return m, v


def tab_error(schedule: ref.Schedule, t) -> np.ndarray:
    """Relative error bound of the schedule tables at t (and t - 1): EPS (2 |log abar_t| + 12), with
    |log abar_t| summed over the steps with beta < 1 (abar_T = 0 under zero terminal SNR makes the
    tables at T exact zeros and ones)."""
    beta = schedule.beta()
    la = np.abs(np.cumsum(np.log1p(-np.where(beta < 1, beta, 0.0))))
    return EPS * (2 * la[np.asarray(t) - 1] + 12)


def log_density(x, dist: ref.DiagonalNormal) -> np.ndarray:
    """sum over the last axis of reference.normal_log_density(x, dist.mean, dist.variance), nats."""
    return ref.normal_log_density(x, dist.mean, dist.variance).sum(axis=-1)


def log_density_error(x, mean, var, mean_err, var_rel_err) -> np.ndarray:
    """Bound on |computed - exact| of sum_d log N(x; mean, var) (per row) when the mean carries
    absolute error <= mean_err and the variance relative error <= var_rel_err (docs/math.md §6 formula
    -(log(2 pi var) + (x - mean)^2 / var) / 2):
      log var: var_rel_err + 1 ulp of log var;
      q = (x - mean)^2 / var: q (2 EPS + var_rel_err) + 2 |x - mean| mean_err / var + mean_err^2 / var;
      the sum of the three terms: EPS / 2 of their magnitudes, twice; the sum over d: d EPS / 2."""
    q = (x - mean) ** 2 / var
    lv = np.abs(np.log(var))
    per = 0.5 * (var_rel_err + EPS * lv + q * (2 * EPS + var_rel_err)
                 + 2 * np.abs(x - mean) * mean_err / var + mean_err ** 2 / var) + EPS * (LOG_2PI + lv + q)
    mag = 0.5 * (LOG_2PI + lv + q)
    return per.sum(axis=-1) + 0.5 * EPS * x.shape[-1] * mag.sum(axis=-1)
