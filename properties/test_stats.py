"""The statistical assertions of `ddpm_verify.stats`, on which every stochastic verdict of the
project rests, tested as TFP tests its own (docs/math.md §12): each is sound (on draws for which
its claim is true, the measured false-fail rate is within the stated rate) and powerful (draws
off by the discrepancy it says it detects fail with at least the stated probability).

Each is run on many cheap replicates at a loosened false-fail rate of 0.01 (so that failures are
frequent enough to count); the counts are then tested with a binomial bound at 1e-6: sound means
at most 0.01 of replicates fail, up to the binomial's tolerance; powerful means at least 0.95 of
replicates at the detectable discrepancy fail. The CLT-based assertions (estimated standard
deviations, Welch, the variance ratio) are run at n = 1000 on normal and on skewed
(exponential) draws, where their rate holds only as n grows. Replicates run unobserved: their
verdicts are not the suite's (--stats-report).
"""

import math

import numpy as np
import pytest
from scipy.stats import binom, entropy

from ddpm_verify import stats

REPLICATES, RATE = 4000, 0.01


def _fails(check) -> bool:
    try:
        with stats.unobserved():
            check()
    except AssertionError:
        return True
    return False


def _count(check, draws) -> int:
    """How many of the replicates `draws` (an iterable of arguments) fail `check`."""
    return sum(_fails(lambda d=d: check(d)) for d in draws)


def _at_most(k: int, p: float, n: int = REPLICATES) -> bool:
    """k failures out of n are consistent with a failure probability <= p (binomial, 1e-6)."""
    return binom.sf(k - 1, n, p) > 1e-6


def _at_least(k: int, p: float, n: int = REPLICATES) -> bool:
    return binom.cdf(k, n, p) > 1e-6


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_the_mean_test_is_sound_and_has_its_stated_power(n):
    rng = np.random.default_rng(n)
    shift = stats.min_discrepancy_mean(n, 1.0, RATE)
    check = lambda s: stats.assert_standard_normal_mean(s, n, false_fail_rate=RATE)  # noqa: E731
    null = _count(check, rng.normal(0, math.sqrt(n), REPLICATES))
    alt = _count(check, rng.normal(n * shift, math.sqrt(n), REPLICATES))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed at rate {RATE}"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} shifted samples failed"


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_the_variance_test_is_sound_and_has_its_stated_power(n):
    rng = np.random.default_rng(n + 1)
    d = stats.min_discrepancy_variance(n, RATE)
    check = lambda s: stats.assert_standard_normal_variance(s, n, false_fail_rate=RATE)  # noqa: E731
    null = _count(check, rng.chisquare(n, REPLICATES))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed at rate {RATE}"
    # the detectable discrepancy holds on either side; the weaker side is at least as well detected
    for ratio in (1 + d, max(1 - d, 1e-9)):
        alt = _count(check, ratio * rng.chisquare(n, REPLICATES))
        assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} draws with variance ratio {ratio:.4g} failed"


def test_sample_planning_inverts_the_detectable_discrepancy():
    """min_samples_* is the smallest n whose min_discrepancy_* is at most the discrepancy."""
    for d in (0.3, 0.05, 0.01):
        n = stats.min_samples_variance(d)
        assert stats.min_discrepancy_variance(n) <= d < stats.min_discrepancy_variance(n - 1)
        n = stats.min_samples_mean(d, 2.0)
        assert stats.min_discrepancy_mean(n, 2.0) <= d < stats.min_discrepancy_mean(n - 1, 2.0)
        n = stats.min_samples_cdf(d)
        assert stats.min_discrepancy_cdf(n) <= d < stats.min_discrepancy_cdf(n - 1)


# -- means: z-test with known or estimated sigma, an interval, two samples, Hoeffding -----------------

N_CLT = 1000


def _draws(rng, kind: str, shape, mean: float = 0.0) -> np.ndarray:
    """Draws of standard deviation 1 and the given mean: normal, or exponential (skewness 2)."""
    base = rng.standard_normal(shape) if kind == "normal" else rng.exponential(1.0, shape) - 1.0
    return base + mean


@pytest.mark.parametrize("n", [10, 1000])
def test_the_mean_test_with_known_sigma_is_sound_and_has_its_stated_power(n):
    """assert_mean(sigma=2): exact for normal draws of standard deviation 2."""
    rng = np.random.default_rng(100 + n)
    check = lambda x: stats.assert_mean(x, 0.0, sigma=2.0, false_fail_rate=RATE)  # noqa: E731
    shift = stats.min_discrepancy_mean(n, 2.0, RATE)
    null = _count(check, 2 * rng.standard_normal((REPLICATES, n)))
    alt = _count(check, 2 * rng.standard_normal((REPLICATES, n)) + shift)
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed at rate {RATE}"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} samples shifted by {shift:.3g} failed"


@pytest.mark.parametrize("kind", ["normal", "exponential"])
def test_the_mean_test_with_estimated_sigma_is_sound_and_has_its_stated_power(kind):
    """assert_mean(sigma=None) at n = 1000: the rate holds to the CLT's approximation."""
    rng = np.random.default_rng(7 if kind == "normal" else 8)
    reps = REPLICATES // 2
    check = lambda x: stats.assert_mean(x, 0.0, false_fail_rate=RATE)  # noqa: E731
    shift = stats.min_discrepancy_mean(N_CLT, 1.0, RATE)
    null = _count(check, _draws(rng, kind, (reps, N_CLT)))
    alt = _count(check, _draws(rng, kind, (reps, N_CLT), shift))
    assert _at_most(null, RATE, reps), f"{null} of {reps} true claims failed at rate {RATE}"
    assert _at_least(alt, 0.95, reps), f"only {alt} of {reps} shifted samples failed"


def test_the_interval_test_is_sound_at_its_ends_and_has_its_stated_power():
    """assert_mean_in(lo, hi): a true mean on the interval's end fails at most at the rate; a mean
    beyond it by the detectable shift fails with probability 0.95."""
    rng = np.random.default_rng(11)
    n = 100
    check = lambda x: stats.assert_mean_in(x, -1.0, 0.0, sigma=1.0, false_fail_rate=RATE)  # noqa: E731
    shift = stats.min_discrepancy_mean(n, 1.0, RATE)
    null = _count(check, rng.standard_normal((REPLICATES, n)))
    alt = _count(check, rng.standard_normal((REPLICATES, n)) + shift)
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} means beyond the interval failed"


@pytest.mark.parametrize("kind", ["normal", "exponential"])
def test_the_two_sample_mean_test_is_sound_and_has_its_stated_power(kind):
    """assert_means_equal (Welch z) at n = 1000 per sample; power at the shift
    (z_{rate/2} + z_power) sqrt(2 / n) of unit-variance draws."""
    rng = np.random.default_rng(21 if kind == "normal" else 22)
    reps = REPLICATES // 2
    check = lambda ab: stats.assert_means_equal(ab[0], ab[1], false_fail_rate=RATE)  # noqa: E731
    shift = stats.min_discrepancy_mean(N_CLT, math.sqrt(2.0), RATE)
    null = _count(check, zip(_draws(rng, kind, (reps, N_CLT)), _draws(rng, kind, (reps, N_CLT))))
    alt = _count(check, zip(_draws(rng, kind, (reps, N_CLT), shift), _draws(rng, kind, (reps, N_CLT))))
    assert _at_most(null, RATE, reps), f"{null} of {reps} true claims failed"
    assert _at_least(alt, 0.95, reps), f"only {alt} of {reps} shifted pairs failed"


@pytest.mark.parametrize("p", [0.5, 0.125])
def test_the_bounded_mean_test_is_sound_and_has_its_stated_power(p):
    """assert_mean_bounded (Hoeffding's bound in its KL form, exact for any law on [lo, hi]) on
    Bernoulli(p) draws, the laws that reach its tails; power at each side's detectable shift (at
    p = 1/8 the two sides differ), the verdict stating the larger."""
    rng = np.random.default_rng(31 if p == 0.5 else 32)
    n = 400
    check = lambda x: stats.assert_mean_bounded(x, p, 0.0, 1.0, false_fail_rate=RATE)  # noqa: E731
    _, _, det_below, det_above = stats.hoeffding_kl_bounds(n, p, RATE)
    with stats.unobserved():
        assert check(np.full(n, p)).detectable == max(det_below, det_above)
    null = _count(check, (rng.random((REPLICATES, n)) < p).astype(float))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed"
    for shift in (det_above, -det_below):
        alt = _count(check, (rng.random((REPLICATES, n)) < p + shift).astype(float))
        assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} draws off by {shift:+.3g} failed"


def _kl(a: float, b: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(b)) by scipy's entropy (independent of the code under test)."""
    return float(entropy([a, 1 - a], [b, 1 - b]))


@pytest.mark.parametrize("n, p", [(1, 0.5), (10, 0.03), (10, 0.23), (100, 0.137), (400, 0.125),
                                  (2200, 0.125), (100_000, 0.999)])
def test_the_bounded_mean_bounds_hold_exactly_for_bernoulli_draws(n, p):
    """The KL-form bounds: each side's threshold solves n KL(p +- e || p) = log(2 / rate) (to 1e-9,
    rounded up; KL by scipy), unless even the end of the range is that likely, when the side keeps
    the whole range; each is at most the quadratic form sqrt(log(2 / rate) / (2n)) (Pinsker); against
    the exact binomial law P(fail) <= rate / 2 on each side; each side's detectable shift solves
    n KL(edge || p +- shift) = log(1 / (1 - power)), or is the whole range (a point mass at the end,
    always caught), and there P(pass) <= 1 - power."""
    rate, power = 1e-6, 0.95
    below, above, det_below, det_above = stats.hoeffding_kl_bounds(n, p, rate)
    level, miss = math.log(2 / rate), math.log(1 / (1 - power))
    k = np.arange(n + 1)
    passes = k[(k / n - p <= above) & (p - k / n <= below)]
    quadratic = math.sqrt(level / (2 * n))
    for edge, det, room, sign in ((above, det_above, 1 - p, 1), (below, det_below, p, -1)):
        assert edge <= min(quadratic, room)
        fails = k[sign * (k / n - p) > edge]
        assert binom.pmf(fails, n, p).sum() <= rate / 2
        if edge == room:                    # the side cannot fail at this rate
            assert n * _kl(p + sign * room, p) < level * (1 + 1e-9) and math.isinf(det)
            continue
        assert level <= n * _kl(p + sign * edge, p) <= level * (1 + 1e-9)
        if det < room:
            assert miss <= n * _kl(p + sign * edge, p + sign * det) <= miss * (1 + 1e-9)
        else:
            assert det == room
        assert binom.pmf(passes, n, p + sign * det).sum() <= 1 - power


# -- distributions: DKW, one and two samples ---------------------------------------------------------

def test_the_cdf_test_is_sound_and_has_its_stated_power():
    """assert_cdf (DKW with Massart's constant, exact) on Uniform(0, 1); power on draws shifted by the
    detectable sup-distance (a shift by delta moves the CDF by delta)."""
    rng = np.random.default_rng(41)
    n = 200
    uniform = lambda x: np.clip(x, 0.0, 1.0)  # noqa: E731
    check = lambda x: stats.assert_cdf(x, uniform, false_fail_rate=RATE)  # noqa: E731
    delta = stats.min_discrepancy_cdf(n, RATE)
    null = _count(check, rng.random((REPLICATES, n)))
    alt = _count(check, rng.random((REPLICATES, n)) * (1 - delta) + delta)
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} shifted samples failed"


@pytest.mark.parametrize("n, m", [(200, 200), (100, 1000)])
def test_the_two_sample_distribution_test_is_sound_and_has_its_stated_power(n, m):
    """assert_same_distribution (two DKW bands at rate / 2 each) on two uniform samples of sizes n
    and m; power at the verdict's detectable sup-distance."""
    rng = np.random.default_rng(51 + m)
    check = lambda ab: stats.assert_same_distribution(ab[0], ab[1], false_fail_rate=RATE)  # noqa: E731
    with stats.unobserved():
        detect = check((np.linspace(0, 1, n), np.linspace(0, 1, m))).detectable
    null = _count(check, zip(rng.random((REPLICATES, n)), rng.random((REPLICATES, m))))
    alt = _count(check, zip(rng.random((REPLICATES, n)) * (1 - detect) + detect, rng.random((REPLICATES, m))))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} shifted pairs failed"


# -- variance ratios ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["normal", "exponential"])
def test_the_variance_ratio_bound_is_sound_and_has_its_stated_power(kind):
    """assert_variance_ratio_below(a, b, bound) at n = 1000: with the true ratio at the bound it
    passes (wrongly) at most at rate / 2; with the true ratio at the detectable value it passes with
    probability 0.95. Scale factors: sqrt(bound) and sqrt(detectable) on a."""
    rng = np.random.default_rng(61 if kind == "normal" else 62)
    reps = REPLICATES // 2
    bound = 1.5
    check = lambda ab: stats.assert_variance_ratio_below(ab[0], ab[1], bound, false_fail_rate=RATE)  # noqa: E731
    kurt = 3.0 if kind == "normal" else 9.0
    se = math.sqrt(2 * (kurt - 1) / N_CLT)
    detect = bound * math.exp(-(stats.norm.isf(RATE / 2) + stats.norm.ppf(0.95)) * se)
    at_bound = reps - _count(check, zip(math.sqrt(bound) * _draws(rng, kind, (reps, N_CLT)),
                                        _draws(rng, kind, (reps, N_CLT))))
    at_detect = reps - _count(check, zip(math.sqrt(detect) * _draws(rng, kind, (reps, N_CLT)),
                                         _draws(rng, kind, (reps, N_CLT))))
    assert _at_most(at_bound, RATE / 2, reps), f"{at_bound} of {reps} ratios at the bound passed"
    assert _at_least(at_detect, 0.95, reps), f"only {at_detect} of {reps} ratios at {detect:.3g} passed"


def test_a_verdict_is_one_result_and_observers_see_it():
    """A statistical verdict is a results.Result (statistic, threshold, n, rate, power, detectable);
    a failing one raises CheckFailed carrying it; observers see both, unobserved blocks neither."""
    from ddpm_verify.results import CheckFailed, Result

    seen = []
    with stats.unobserved(), stats.observed(seen.append):
        ok = stats.assert_standard_normal_mean(0.0, 100)
        with pytest.raises(CheckFailed) as info:
            stats.assert_standard_normal_mean(100.0, 100)
        with stats.unobserved():
            stats.assert_standard_normal_mean(0.0, 100)
    assert isinstance(ok, Result) and ok.passed and ok.n == 100 and ok.false_fail_rate == 1e-6
    assert not info.value.result.passed and info.value.result.statistic == 1.0
    assert [r.passed for r in seen] == [True, False]


# -- normal scores of rounded values (the randomised probability integral transform) -----------------

def _rounded(x: np.ndarray, step: float) -> np.ndarray:
    """x rounded down to a grid of `step` (as a cast to uint8 truncates), reported as the bin centre."""
    return (np.floor(x / step) + 0.5) * step


@pytest.mark.parametrize("step_in_sd", [0.0, 0.26, 2.0])
def test_normal_scores_of_rounded_normal_draws_are_standard_normal(step_in_sd):
    """Draws of N(m, V) rounded to bins of width step (0.26 sd: uint8 images of the narrow oracle
    group; 2 sd: coarse) give exactly N(0, 1) scores: DKW against Phi on 10^6 scores at rate 1e-6
    (detects a sup-distance of 0.0028); and scores of draws whose mean is off by 0.02 sd fail it
    (a CDF shift of about 0.008, three times the detectable one)."""
    rng = np.random.default_rng(20261203)
    m, sd, n = -0.1, 0.03, 1_000_000
    step = step_in_sd * sd
    for shift, passes in ((0.0, True), (0.02, False)):
        x = rng.normal(m + shift * sd, sd, n)
        z = stats.normal_scores(_rounded(x, step) if step else x, m, sd ** 2, step, rng)
        failed = _fails(lambda: stats.assert_cdf(z, stats.norm.cdf, name="scores"))
        assert failed != passes, (step_in_sd, shift)


def test_normal_scores_stay_within_their_bins_far_in_the_tails():
    """Each score lies in its bin's standardised ends [a, b], also at a = 30 or b = -30 where
    Phi(a) rounds to 1 or Phi(b) to 0 (computed in the tail the bin lies in)."""
    rng = np.random.default_rng(3)
    centres = np.array([-30.0, -8.0, -0.1, 0.0, 0.1, 8.0, 30.0])
    z = stats.normal_scores(centres, 0.0, 1.0, 0.2, rng)
    assert np.all(np.isfinite(z)) and np.all(np.abs(z - centres) <= 0.1), z
