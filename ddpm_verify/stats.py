"""Statistical assertions with a stated false-fail rate and the discrepancy they detect.

Every stochastic check of the suite goes through this module. Each assertion:
- fails with probability at most `false_fail_rate` (default 1e-6) when the claim is true,
  exactly (DKW, Hoeffding) or to the stated approximation (CLT with a known or estimated
  standard deviation);
- reports, next to its verdict, the smallest discrepancy it detects with probability `power`
  (default 0.95) at its sample size, so a passing test says how much it could have seen.
Planning helpers (`min_samples_*`, `min_discrepancy_*`) give the same numbers before a test
is written. Each verdict is a `results.Result` (statistic, threshold, n, rate, power, detectable
discrepancy); an assertion returns it when it passed and raises `results.CheckFailed` (an
AssertionError carrying it) when it failed. `observed(callback)` shows every verdict to a callback.
Seeds are the caller's: pass draws made from an explicit np.random.Generator.
No retries: one draw, one verdict.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from contextvars import ContextVar

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri, rel_entr
from scipy.stats import chi2, norm

from .results import Result

DEFAULT_FALSE_FAIL = 1e-6
DEFAULT_POWER = 0.95


_OBSERVERS: ContextVar[tuple] = ContextVar("stats_observers", default=())


@contextlib.contextmanager
def observed(callback):
    """Within the block, `callback(result)` sees every statistical verdict reached (in this context),
    pass or fail; the pytest plugin uses it for --stats-report. Nested blocks add observers."""
    token = _OBSERVERS.set(_OBSERVERS.get() + (callback,))
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


@contextlib.contextmanager
def unobserved():
    """Within the block no observer sees a verdict (the self-checks' verdicts on broken code)."""
    token = _OBSERVERS.set(())
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


# -- quantiles, computed once per argument: scipy's distribution methods cost ~100 us a call, and a
#    check made thousands of times (a soundness simulation, a per-timestep battery) asks for the same few

@functools.lru_cache(maxsize=1024)
def _norm_isf(p: float) -> float:
    return float(norm.isf(p))


@functools.lru_cache(maxsize=1024)
def _norm_ppf(p: float) -> float:
    return float(norm.ppf(p))


@functools.lru_cache(maxsize=1024)
def _chi2_ppf(p: float, n: int) -> float:
    return float(chi2.ppf(p, n))


@functools.lru_cache(maxsize=1024)
def _chi2_isf(p: float, n: int) -> float:
    return float(chi2.isf(p, n))


def _verdict(name: str, passed: bool, statistic: float, threshold: float, detectable: float,
             false_fail_rate: float, power: float, n: int, detail: str = "") -> Result:
    """The verdict as a Result, shown to the observers; raises CheckFailed when it failed."""
    result = Result(name, "pass" if passed else "fail", float(statistic), float(threshold), detail, values=int(n),
                    false_fail_rate=float(false_fail_rate), power=float(power), detectable=float(detectable))
    for observe in _OBSERVERS.get():
        observe(result)
    return result.check()


def summarise(verdicts: list[Result]) -> list[str]:
    """One line per kind of check (its name up to " at t=", " (" or "; "):
    count, passes, false-fail rate, range of detectable discrepancies."""
    by_name: dict[str, list[Result]] = {}
    for v in verdicts:
        kind = re.split(r" at t=| \(|; ", v.name)[0] or v.name
        by_name.setdefault(kind, []).append(v)
    lines = [f"{'check':<58}{'runs':>6}{'passed':>8}{'rate':>9}{'detects (power 0.95)':>26}"]
    for name, vs in sorted(by_name.items()):
        lo, hi = min(v.detectable for v in vs), max(v.detectable for v in vs)
        det = f"{lo:.3g}" if lo == hi else f"{lo:.3g} .. {hi:.3g}"
        lines.append(f"{name[:57]:<58}{len(vs):>6}{sum(v.passed for v in vs):>8}"
                     f"{max(v.false_fail_rate for v in vs):>9.0e}{det:>26}")
    return lines


def _rate(false_fail_rate: float, power: float) -> None:
    if not 0 < false_fail_rate < 1:
        raise ValueError(f"false_fail_rate must lie in (0, 1); got {false_fail_rate!r}")
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1); got {power!r}")


def _samples(name: str, x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size < 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold at least 2 finite values; got {a.size} values")
    return a


# -- means (CLT z-test; known sigma, or the sample's) --------------------------------------------

def min_discrepancy_mean(n: int, sigma: float, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                         power: float = DEFAULT_POWER) -> float:
    """Smallest |mean - expected| that a two-sided z-test with n samples of standard deviation
    sigma detects with probability `power`: (z_{rate/2} + z_{1-power}) sigma / sqrt(n)."""
    _rate(false_fail_rate, power)
    return (_norm_isf(false_fail_rate / 2) + _norm_ppf(power)) * sigma / math.sqrt(n)


def min_samples_mean(discrepancy: float, sigma: float, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                     power: float = DEFAULT_POWER) -> int:
    """Samples needed for the z-test to detect a mean shift `discrepancy` with probability `power`."""
    _rate(false_fail_rate, power)
    return math.ceil(((_norm_isf(false_fail_rate / 2) + _norm_ppf(power)) * sigma / discrepancy) ** 2)


def assert_mean(samples, expected: float, *, sigma: float | None = None,
                false_fail_rate: float = DEFAULT_FALSE_FAIL, power: float = DEFAULT_POWER,
                name: str = "mean") -> Result:
    """Two-sided test of E[X] = expected from i.i.d. samples: |mean - expected| <= z sigma / sqrt(n).

    sigma: the standard deviation of X, or an upper bound on it; None uses the sample standard
    deviation (the rate then holds as n grows large, by the CLT and Slutsky; use n >= 1000).
    """
    x = _samples("samples", samples)
    _rate(false_fail_rate, power)
    s = float(np.std(x, ddof=1)) if sigma is None else float(sigma)
    se = s / math.sqrt(x.size)
    stat = abs(float(np.mean(x)) - float(expected))
    thr = _norm_isf(false_fail_rate / 2) * se
    return _verdict(name, stat <= thr, stat, thr, min_discrepancy_mean(x.size, s, false_fail_rate, power),
                   false_fail_rate, power, x.size,
                   f"mean {np.mean(x):.6g} +- {se:.3g} (se), expected {float(expected):.6g}")


def assert_mean_in(samples, lo: float, hi: float, **kwargs) -> Result:
    """`assert_mean` of the hypothesis lo <= E[X] <= hi (either end may be infinite): the expected
    value handed to it is the point of [lo, hi] nearest the sample mean, so the check fails only
    when the mean lies more than z se outside the interval. If E[X] is in [lo, hi], the distance
    from the mean to the interval is at most its distance to E[X], so the false-fail rate is at
    most assert_mean's."""
    m = float(np.mean(_samples("samples", samples)))
    return assert_mean(samples, min(max(m, lo), hi), **kwargs)


def assert_means_equal(a, b, *, false_fail_rate: float = DEFAULT_FALSE_FAIL, power: float = DEFAULT_POWER,
                       name: str = "two means") -> Result:
    """Two-sided test that two independent samples have the same mean (Welch z-statistic, CLT)."""
    a, b = _samples("a", a), _samples("b", b)
    _rate(false_fail_rate, power)
    se = math.sqrt(np.var(a, ddof=1) / a.size + np.var(b, ddof=1) / b.size)
    stat = abs(float(np.mean(a) - np.mean(b)))
    thr = _norm_isf(false_fail_rate / 2) * se
    detect = (_norm_isf(false_fail_rate / 2) + _norm_ppf(power)) * se
    return _verdict(name, stat <= thr, stat, thr, detect, false_fail_rate, power, min(a.size, b.size),
                   f"means {np.mean(a):.6g} and {np.mean(b):.6g}, se of difference {se:.3g}")


# -- standard normal draws from their sums (exact: z-test and chi-square) ------------------------------

def assert_standard_normal_mean(sum_z: float, n: int, *, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                                power: float = DEFAULT_POWER, name: str = "mean of N(0, 1) draws",
                                detail: str = "") -> Result:
    """n i.i.d. N(0, 1) draws summing to sum_z: |sum_z / n| <= z_{rate/2} / sqrt(n) (exact for normal
    draws: the mean is N(0, 1/n)). Detects a mean shift of `min_discrepancy_mean(n, 1)`."""
    _rate(false_fail_rate, power)
    n = int(n)
    stat, thr = abs(float(sum_z)) / n, _norm_isf(false_fail_rate / 2) / math.sqrt(n)
    return _verdict(name, stat <= thr, stat, thr, min_discrepancy_mean(n, 1.0, false_fail_rate, power),
                   false_fail_rate, power, n, detail)


def chi2_bounds(n: int, false_fail_rate: float) -> tuple[float, float]:
    """The rate/2 and 1 - rate/2 quantiles of chi2_n: where the sum of n squared N(0, 1) draws lies
    with probability 1 - rate."""
    return _chi2_ppf(false_fail_rate / 2, n), _chi2_isf(false_fail_rate / 2, n)


def min_discrepancy_variance(n: int, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                             power: float = DEFAULT_POWER) -> float:
    """Smallest |ratio - 1| of the true to the claimed variance that `assert_standard_normal_variance`
    detects with probability `power`, on either side: the ratio r with P(r chi2_n > upper bound) =
    power, or P(r chi2_n < lower bound) = power; the larger of the two distances to 1."""
    _rate(false_fail_rate, power)
    lo, hi = chi2_bounds(n, false_fail_rate)
    return max(hi / _chi2_ppf(1 - power, n) - 1, 1 - lo / _chi2_isf(1 - power, n))


def min_samples_variance(discrepancy: float, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                         power: float = DEFAULT_POWER) -> int:
    """Draws for `assert_standard_normal_variance` to detect |ratio - 1| = `discrepancy` with
    probability `power` (bisection on the decreasing `min_discrepancy_variance`)."""
    _rate(false_fail_rate, power)
    if discrepancy <= 0:
        raise ValueError(f"discrepancy must be > 0; got {discrepancy}")
    lo, hi = 2, 2
    while min_discrepancy_variance(hi, false_fail_rate, power) > discrepancy:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if min_discrepancy_variance(mid, false_fail_rate, power) > discrepancy else (lo, mid)
    return hi


def assert_standard_normal_variance(sum_z2: float, n: int, *, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                                    power: float = DEFAULT_POWER, name: str = "variance of N(0, 1) draws",
                                    detail: str = "") -> Result:
    """n i.i.d. N(0, 1) draws whose squares sum to sum_z2 ~ chi2_n: it lies between the rate/2 and
    1 - rate/2 quantiles (exact). The statistic is |sum_z2 / n - 1|, against the bound on its side."""
    _rate(false_fail_rate, power)
    n = int(n)
    lo, hi = chi2_bounds(n, false_fail_rate)
    ratio = float(sum_z2) / n
    thr = hi / n - 1 if ratio >= 1 else 1 - lo / n
    return _verdict(name, lo <= sum_z2 <= hi, abs(ratio - 1), thr, min_discrepancy_variance(n, false_fail_rate, power),
                   false_fail_rate, power, n, detail or f"variance ratio {ratio:.5g}")


# -- bounded variables (Hoeffding: exact, no CLT) --------------------------------------------------

def _bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)) in nats (0 log 0 = 0; inf where q excludes what p has)."""
    return float(rel_entr(p, q) + rel_entr(1 - p, 1 - q))


def _kl_root(kl, level: float, lo: float, hi: float) -> float:
    """The e in (lo, hi] with kl(e) = level for kl increasing there (kl(lo) < level), rounded up
    by brentq's tolerance so that kl(e) >= level; hi when kl stays below level short of hi (kl(hi)
    may be infinite: a Bernoulli law at 0 or 1, where the root is searched up to one float inside)."""
    xtol, rtol = 1e-15, 1e-12
    top = hi if math.isfinite(kl(hi)) else math.nextafter(hi, lo)
    if not kl(top) >= level:
        return hi
    root = brentq(lambda e: kl(e) - level, lo, top, xtol=xtol, rtol=rtol)
    return min(hi, root + 2 * (xtol + rtol * abs(root)))


@functools.lru_cache(maxsize=1024)
def hoeffding_kl_bounds(n: int, mean: float, false_fail_rate: float, power: float = DEFAULT_POWER
                        ) -> tuple[float, float, float, float]:
    """For n i.i.d. draws on [0, 1] with mean `mean`: (below, above, detect_below, detect_above).

    Hoeffding's inequality in its Kullback-Leibler form (Hoeffding 1963, Theorem 1), exact for
    every law on [0, 1]: P(X_bar >= m + e) <= exp(-n KL(m + e || m)), likewise below, with KL
    between Bernoulli laws. `above` and `below` solve n KL = log(2 / rate), so each side fails
    with probability at most rate / 2; a side that cannot fail so rarely (m^n > rate / 2 above)
    keeps the whole range. detect_above is the smallest shift d for which every law with mean
    m + d lies at or below m + above with probability at most 1 - power (the same bound about
    m + d: n KL(m + above || m + d) = log(1 / (1 - power))), or the whole range when no shift short
    of its end does (a point mass at the end is always caught); likewise below; inf where the side
    cannot fail. Pinsker's inequality makes above, below <= sqrt(log(2 / rate) / (2 n)), the
    bound's quadratic form; near 0 or 1 they are much smaller."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: must be an integer >= 1; got {n!r}")
    if not 0 <= mean <= 1:
        raise ValueError(f"mean: must lie in [0, 1]; got {mean!r}")
    _rate(false_fail_rate, power)
    level, miss = math.log(2 / false_fail_rate) / n, math.log(1 / (1 - power)) / n

    def side(room: float, sign: int) -> tuple[float, float]:
        kl = lambda e: _bernoulli_kl(mean + sign * e, mean)  # noqa: E731
        if room <= 0 or kl(room) < level:
            return room, math.inf
        edge = _kl_root(kl, level, 0.0, room)
        if edge >= room:
            return room, math.inf
        # the shift whose own lower (upper) tail reaches back to the edge with probability 1 - power;
        # the whole room (a point mass at the end, always caught) when no shift short of it does
        return edge, _kl_root(lambda dd: _bernoulli_kl(mean + sign * edge, mean + sign * dd), miss, edge, room)

    below, detect_below = side(mean, -1)
    above, detect_above = side(1 - mean, 1)
    return below, above, detect_below, detect_above


def assert_mean_bounded(samples, expected: float, lo: float, hi: float, *,
                        false_fail_rate: float = DEFAULT_FALSE_FAIL, power: float = DEFAULT_POWER,
                        name: str = "bounded mean") -> Result:
    """i.i.d. X in [lo, hi] have mean `expected`: expected - below <= mean <= expected + above, by
    Hoeffding's bound in its Kullback-Leibler form (`hoeffding_kl_bounds`, on (X - lo) / (hi - lo)),
    exact with no CLT; the threshold is the side's where the mean lies. Detects the larger of the
    two sides' detectable shifts."""
    x = _samples("samples", samples)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"lo, hi: must be finite with lo < hi; got {lo!r}, {hi!r}")
    if not lo <= expected <= hi:
        raise ValueError(f"expected: must lie in [lo, hi] = [{lo}, {hi}]; got {expected!r}")
    if np.any((x < lo) | (x > hi)):
        raise ValueError(f"samples must lie in [{lo}, {hi}] for Hoeffding's bound")
    width, expected = hi - lo, float(expected)
    below, above, det_below, det_above = (width * b for b in hoeffding_kl_bounds(
        x.size, (expected - lo) / width, float(false_fail_rate), float(power)))          # validates the rate
    m = float(np.mean(x))
    stat = abs(m - expected)
    thr = above if m >= expected else below
    return _verdict(name, stat <= thr, stat, thr, max(det_below, det_above), false_fail_rate, power, x.size,
                    f"mean {m:.6g}, expected {expected:.6g}, accepted {expected - below:.6g} .. {expected + above:.6g}")


# -- distributions (Dvoretzky-Kiefer-Wolfowitz with Massart's constant: exact) -----------------------

def dkw_epsilon(n: int, rate: float) -> float:
    """P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2) = rate, solved for eps."""
    return math.sqrt(math.log(2 / rate) / (2 * n))


def min_discrepancy_cdf(n: int, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                        power: float = DEFAULT_POWER) -> float:
    """Smallest sup-distance between the true and the claimed CDF that `assert_cdf` detects with
    probability `power`: dkw(n, rate) + dkw(n, 1 - power)."""
    _rate(false_fail_rate, power)
    return dkw_epsilon(n, false_fail_rate) + dkw_epsilon(n, 1 - power)


def min_samples_cdf(discrepancy: float, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                    power: float = DEFAULT_POWER) -> int:
    """Samples for `assert_cdf` to detect a sup-distance `discrepancy` with probability `power`."""
    _rate(false_fail_rate, power)
    root = math.sqrt(math.log(2 / false_fail_rate) / 2) + math.sqrt(math.log(2 / (1 - power)) / 2)
    return math.ceil((root / discrepancy) ** 2)


def ks_distance(x: np.ndarray, cdf) -> float:
    """sup_x |F_n(x) - F(x)| of the sample x against the continuous CDF `cdf`."""
    x = np.sort(x)
    f = cdf(x)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def normal_scores(x, mean, variance, step: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """(x - m) / sqrt(V): N(0, 1) when x ~ N(m, V) (arrays broadcast together). With step > 0, x is
    a rounded value, the centre of its bin [x - step/2, x + step/2), and the score is the
    randomised probability integral transform Phi^-1(F(a) + U (F(b) - F(a))) over the bin's
    standardised ends a < b, U ~ Uniform(0, 1) from `rng`: exactly N(0, 1) when x is N(m, V)
    rounded to its bin. Computed in the lower tail for a < 0 and in the upper one otherwise, so
    that no bin loses its digits to cancellation."""
    x, mean, variance = (np.asarray(v, dtype=np.float64) for v in (x, mean, variance))
    if np.any(variance <= 0) or not np.all(np.isfinite(variance)):
        raise ValueError("variance: must be finite and > 0")
    if not (math.isfinite(step) and step >= 0):
        raise ValueError(f"step: must be a finite number >= 0; got {step!r}")
    sd = np.sqrt(variance)
    if step == 0:
        return (x - mean) / sd
    if rng is None:
        raise ValueError("rng: a np.random.Generator is required when step > 0")
    a, b = (x - step / 2 - mean) / sd, (x + step / 2 - mean) / sd
    u = rng.random(np.broadcast(a, b).shape)
    with np.errstate(divide="ignore"):
        low = ndtri(ndtr(a) + u * (ndtr(b) - ndtr(a)))
        high = -ndtri(ndtr(-b) + (1 - u) * (ndtr(-a) - ndtr(-b)))
    return np.where(a < 0, low, high)


def assert_cdf(samples, cdf, *, false_fail_rate: float = DEFAULT_FALSE_FAIL, power: float = DEFAULT_POWER,
               name: str = "distribution") -> Result:
    """i.i.d. samples have the continuous CDF `cdf`: KS distance <= DKW epsilon (exact for every n)."""
    x = _samples("samples", samples)
    _rate(false_fail_rate, power)
    stat = ks_distance(x, cdf)
    return _verdict(name, stat <= dkw_epsilon(x.size, false_fail_rate), stat,
                   dkw_epsilon(x.size, false_fail_rate), min_discrepancy_cdf(x.size, false_fail_rate, power),
                   false_fail_rate, power, x.size)


def assert_same_distribution(a, b, *, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                             power: float = DEFAULT_POWER, name: str = "two samples") -> Result:
    """Two independent i.i.d. samples share one CDF: sup|F_a - F_b| <= eps_a + eps_b, each DKW
    epsilon at rate / 2 (triangle inequality; exact, conservative)."""
    a, b = np.sort(_samples("a", a)), np.sort(_samples("b", b))
    _rate(false_fail_rate, power)
    grid = np.concatenate([a, b])
    stat = float(np.max(np.abs(np.searchsorted(a, grid, side="right") / a.size
                               - np.searchsorted(b, grid, side="right") / b.size)))
    thr = dkw_epsilon(a.size, false_fail_rate / 2) + dkw_epsilon(b.size, false_fail_rate / 2)
    detect = thr + dkw_epsilon(a.size, (1 - power) / 2) + dkw_epsilon(b.size, (1 - power) / 2)
    return _verdict(name, stat <= thr, stat, thr, detect, false_fail_rate, power, min(a.size, b.size))


# -- variance ratios (delta method on log variances, CLT) ----------------------------------------

def _log_var_and_se2(x: np.ndarray) -> tuple[float, float]:
    """log of the sample variance and its squared standard error, (kurtosis - 1) / n."""
    c = x - x.mean()
    m2, m4 = float(np.mean(c ** 2)), float(np.mean(c ** 4))
    return math.log(float(np.var(x, ddof=1))), (m4 / m2 ** 2 - 1) / x.size


def variance_ratio_interval(a, b, false_fail_rate: float = DEFAULT_FALSE_FAIL) -> tuple[float, float, float]:
    """Var(a) / Var(b) and a two-sided interval that covers the true ratio with probability
    1 - rate: exp(log ratio +- z se), se^2 = (kurt_a - 1)/n_a + (kurt_b - 1)/n_b (delta method, CLT;
    independent samples, finite fourth moments)."""
    a, b = _samples("a", a), _samples("b", b)
    _rate(false_fail_rate, DEFAULT_POWER)
    la, sa = _log_var_and_se2(a)
    lb, sb = _log_var_and_se2(b)
    half = _norm_isf(false_fail_rate / 2) * math.sqrt(sa + sb)
    return math.exp(la - lb), math.exp(la - lb - half), math.exp(la - lb + half)


def assert_variance_ratio_below(a, b, bound: float, *, false_fail_rate: float = DEFAULT_FALSE_FAIL,
                                power: float = DEFAULT_POWER, name: str = "variance ratio") -> Result:
    """Var(a) / Var(b) < bound, shown by the upper end of `variance_ratio_interval` lying below it.

    It passes wrongly (true ratio >= bound) with probability <= rate / 2; when the true ratio is
    at most `detectable` it passes with probability >= `power` (so fails with at most 1 - power).
    """
    a, b = _samples("a", a), _samples("b", b)
    ratio, lo, hi = variance_ratio_interval(a, b, false_fail_rate)
    se = math.log(hi / lo) / (2 * _norm_isf(false_fail_rate / 2))
    detect = bound * math.exp(-(_norm_isf(false_fail_rate / 2) + _norm_ppf(power)) * se)
    return _verdict(name, hi < bound, hi, bound, detect, false_fail_rate, power, min(a.size, b.size),
                   f"ratio {ratio:.4g}, interval [{lo:.4g}, {hi:.4g}]")
