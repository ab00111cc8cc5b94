"""The x_t a loss hands the network, against its exact law q(x_t) (docs/math.md §11).

A loss builds x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps from its own tables and hands it to
the network with t. With Gaussian data each dimension's x_t is N(sqrt(abar_t) mu, D_t),
D_t = abar_t s^2 + 1 - abar_t, so z = (x - sqrt(abar_t) mu) / sqrt(D_t) is N(0, 1) when the
tables are those of the declared betas (`oracle.ForwardLaw` records the sums of z and z^2). The
test: per band of t (1, 2, 3..4, 5..8, ...: the bugs of forward tables show at small t, where
1 - abar_t is small) and data group, a z-test of the mean of z and a chi-square test of the sum
of z^2, both exact, Bonferroni over bands, groups and the two tests at a false-fail rate of 1e-6.

The nearby forward processes are those of the bugs found in real code: tables whose abar carries
an extra factor (1 - beta_0) (T + 1 betas, `nearby.extra_beta`), x_t made at t - 1 or t + 1 (an index read as paper
t), the variance 1 - abar_t used as the standard deviation, abar_t used for sqrt(abar_t). Each
is x_t = a_t x_0 + c_t eps; under it z has mean delta_t = (a_t - sqrt(abar_t)) mu / sqrt(D_t) and
variance r_t = (a_t^2 s^2 + c_t^2) / D_t, which give its likelihood on a failure and, before the
run, the examples needed to tell it apart with power 0.95 (`examples_needed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, norm

import reference

from ..results import Failure, Result
from .nearby import extra_beta
from .oracle import ForwardLaw, OracleData, group_label

NAME = "loss: the x_t it hands the network"


def bands(T: int) -> list[tuple[int, int]]:
    """(lo, hi] bands of paper t: (0, 1], (1, 2], (2, 4], (4, 8], ..., up to T."""
    edges = [0]
    while edges[-1] < T:
        edges.append(min(T, max(1, 2 * edges[-1])))
    return list(zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class Alternative:
    """x_t = a_t x_0 + c_t eps, t = 1..T (arrays (T,)), under the name of the bug it models."""

    name: str
    a: np.ndarray
    c: np.ndarray

    def moments(self, data: reference.GaussianData, schedule: reference.Schedule) -> tuple[np.ndarray, np.ndarray]:
        """(delta, r) of z under this process, each (T, d)."""
        ab = schedule.alpha_bar(np.arange(1, schedule.T + 1))[:, None]
        D = ab * data.variance + schedule.one_minus_alpha_bar(np.arange(1, schedule.T + 1))[:, None]
        delta = (self.a[:, None] - np.sqrt(ab)) * data.mean / np.sqrt(D)
        r = (self.a[:, None] ** 2 * data.variance + self.c[:, None] ** 2) / D
        return delta, r


def alternatives(schedule: reference.Schedule) -> list[Alternative]:
    T = schedule.T
    ts = np.arange(1, T + 1)
    ab, om = schedule.alpha_bar(ts), schedule.one_minus_alpha_bar(ts)
    ab_prev, om_prev = schedule.alpha_bar_prev(ts), schedule.one_minus_alpha_bar_prev(ts)
    ab_next = np.concatenate([ab[1:], ab[-1:]])
    om_next = np.concatenate([om[1:], om[-1:]])
    extra = ab * (1 - extra_beta(schedule))
    return [Alternative("abar with an extra factor (1 - beta_0)", np.sqrt(extra), np.sqrt(1 - extra)),
            Alternative("x_t made at t - 1", np.sqrt(ab_prev), np.sqrt(om_prev)),
            Alternative("x_t made at t + 1", np.sqrt(ab_next), np.sqrt(om_next)),
            Alternative("the variance 1 - abar_t used as the standard deviation", np.sqrt(ab), om),
            Alternative("abar_t used for sqrt(abar_t)", ab, np.sqrt(om))]


def _per_group(values: np.ndarray, od: OracleData, empty: float) -> np.ndarray:
    """(T, d) -> (T, groups): the value of the group's first dimension (equal across a group), or
    `empty` for a group with no dimension (d smaller than the number of groups)."""
    return np.stack([values[:, int(np.flatnonzero(od.group == g)[0])] if np.any(od.group == g)
                     else np.full(values.shape[0], empty) for g in range(len(od.params))], axis=1)


def _moments(alt: Alternative, od: OracleData, schedule: reference.Schedule) -> tuple[np.ndarray, np.ndarray]:
    delta, r = alt.moments(od.data, schedule)
    return _per_group(delta, od, 0.0), _per_group(r, od, 1.0)


def _rate(T: int, groups: int, rate: float) -> float:
    return rate / (2 * len(bands(T)) * groups)


def examples_needed(od: OracleData, schedule: reference.Schedule, rate: float, power: float) -> dict[str, float]:
    """For each nearby process, the examples (t uniform on 1..T) at which the mean or the variance
    test of some band and group sees it with probability `power`: with w_t = d_g / T values per
    example at t, k >= ((z_a sqrt(sum w) + z_b sqrt(sum w r)) / |sum w delta|)^2 for the mean and
    ((z_a sqrt(2 sum w) + z_b sqrt(sum w (2 r^2 + 4 r delta^2))) / |sum w (r + delta^2 - 1)|)^2
    for the variance (normal approximations of the two statistics)."""
    T, groups = schedule.T, len(od.params)
    z_a, z_b = norm.isf(_rate(T, groups, rate) / 2), norm.isf(1 - power)
    dims = np.bincount(od.group, minlength=groups).astype(np.float64)
    needed = {}
    for alt in alternatives(schedule):
        delta, r = _moments(alt, od, schedule)
        best = math.inf
        for lo, hi in bands(T):
            w = np.broadcast_to(dims / T, (hi - lo, groups))
            d, v = delta[lo:hi], r[lo:hi]
            with np.errstate(divide="ignore", invalid="ignore"):
                mean_k = ((z_a * np.sqrt(w.sum(0)) + z_b * np.sqrt((w * v).sum(0))) / np.abs((w * d).sum(0))) ** 2
                var_k = ((z_a * np.sqrt(2 * w.sum(0)) + z_b * np.sqrt((w * (2 * v ** 2 + 4 * v * d ** 2)).sum(0)))
                         / np.abs((w * (v + d ** 2 - 1)).sum(0))) ** 2
            both = np.concatenate([mean_k, var_k])
            both = both[np.isfinite(both)]
            if both.size:
                best = min(best, float(both.min()))
        needed[alt.name] = math.ceil(best) if math.isfinite(best) else math.inf
    return needed


def result(law: ForwardLaw, od: OracleData, schedule: reference.Schedule, rate: float) -> Result:
    """The test of the module docstring on what `law` recorded, with the most likely nearby
    process on a failure."""
    T, groups = schedule.T, len(od.params)
    per_test = _rate(T, groups, rate)
    thr = norm.isf(per_test / 2)
    failures, used, first = [], [], None
    for lo, hi in bands(T):
        for g in range(groups):
            n = float(law.count[lo:hi, g].sum())
            if n == 0:
                continue
            s1, s2 = float(law.sum_z[lo:hi, g].sum()), float(law.sum_z2[lo:hi, g].sum())
            used.append(hi)
            lo_v, hi_v = chi2.ppf(per_test / 2, n), chi2.isf(per_test / 2, n)
            bad_mean, bad_var = abs(s1) / math.sqrt(n) > thr, not lo_v <= s2 <= hi_v
            if bad_mean or bad_var:
                where = f"{lo + 1}" if hi == lo + 1 else f"{lo + 1}..{hi}"
                what = (f"mean of z {s1 / n:+.4g} beyond +-{thr / math.sqrt(n):.3g}" if bad_mean else
                        f"variance ratio {s2 / n:.5g} outside [{lo_v / n:.5g}, {hi_v / n:.5g}]")
                failures.append(Failure(where, (g,), s2 / n, 1.0, hi_v / n - 1, part=group_label(*od.params[g])))
                first = first or f"t in {where}, data {group_label(*od.params[g])}: {what} ({int(n)} values)"
    examples = int(law.count.sum(axis=1).sum() / od.data.d)
    tests = 2 * len(bands(T)) * groups
    if failures:
        return Result(NAME, "fail", values=len(used), failures=failures,
                      detail=f"{first}; {len(failures)} of {len(used)} band-groups depart (false-fail rate {rate:g} "
                             f"over {tests} tests, {examples} examples); {diagnosis(law, od, schedule)}")
    return Result(NAME, "pass", values=len(used),
                  detail=f"{examples} examples: z = (x - sqrt(abar_t) mu) / sqrt(D_t) in {len(bands(T))} bands of t x "
                         f"{groups} data groups, mean and variance each within their bounds (false-fail rate {rate:g} "
                         f"over {tests} tests)")


def diagnosis(law: ForwardLaw, od: OracleData, schedule: reference.Schedule) -> str:
    """The nearby process under which the recorded sums are most likely, in nats per example above
    the declared one: sum over t and groups of -n/2 log r - (S2 - 2 delta S1 + n delta^2) / (2 r) + S2 / 2."""
    examples = max(1.0, law.count.sum() / od.data.d)
    scored = []
    for alt in alternatives(schedule):
        delta, r = _moments(alt, od, schedule)
        n, s1, s2 = law.count, law.sum_z, law.sum_z2
        gain = -0.5 * n * np.log(r) - (s2 - 2 * delta * s1 + n * delta ** 2) / (2 * r) + s2 / 2
        scored.append((float(np.sum(gain)) / examples, alt.name))
    scored.sort(reverse=True)
    if scored[0][0] <= 0:
        return "none of the nearby forward processes fits better than the declared one"
    runner = f"; next: {scored[1][1]} ({scored[1][0]:+.4g})" if len(scored) > 1 else ""
    return (f"most likely nearby process: {scored[0][1]} (log-likelihood {scored[0][0]:+.4g} nats per example above "
            f"the declared tables){runner}")
