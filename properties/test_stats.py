"""The exact tests of standard normal draws (`stats.assert_standard_normal_mean` and `_variance`),
on which the end-to-end sampler check rests: sound (a true claim fails at most at the stated
rate) and powerful (a discrepancy of the stated detectable size fails with at least the stated
probability), as TFP tests its own statistical assertions.

Each is run on 4000 replicates drawn directly from the statistic's law (the sum of n normals is
N(0, n); the sum of their squares is r chi2_n for variance ratio r), at a false-fail rate of 0.01
so that failures are frequent enough to count. The counts are then tested with a binomial bound
at 1e-6: sound means at most 0.01 of replicates fail, up to the binomial's tolerance; powerful
means at least 0.95 fail at the detectable discrepancy.
"""

import math

import numpy as np
import pytest
from scipy.stats import binom

from ddpm_verify import stats

REPLICATES, RATE = 4000, 0.01


def _fails(check) -> bool:
    try:
        check()
    except AssertionError:
        return True
    return False


def _at_most(k: int, p: float) -> bool:
    """k failures out of REPLICATES are consistent with a failure probability <= p (binomial, 1e-6)."""
    return binom.sf(k - 1, REPLICATES, p) > 1e-6


def _at_least(k: int, p: float) -> bool:
    return binom.cdf(k, REPLICATES, p) > 1e-6


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_the_mean_test_is_sound_and_has_its_stated_power(n):
    rng = np.random.default_rng(n)
    shift = stats.min_discrepancy_mean(n, 1.0, RATE)
    null = sum(_fails(lambda s=s: stats.assert_standard_normal_mean(s, n, false_fail_rate=RATE))
               for s in rng.normal(0, math.sqrt(n), REPLICATES))
    alt = sum(_fails(lambda s=s: stats.assert_standard_normal_mean(s, n, false_fail_rate=RATE))
              for s in rng.normal(n * shift, math.sqrt(n), REPLICATES))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed at rate {RATE}"
    assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} shifted samples failed"


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_the_variance_test_is_sound_and_has_its_stated_power(n):
    rng = np.random.default_rng(n + 1)
    d = stats.min_discrepancy_variance(n, RATE)
    null = sum(_fails(lambda s=s: stats.assert_standard_normal_variance(s, n, false_fail_rate=RATE))
               for s in rng.chisquare(n, REPLICATES))
    assert _at_most(null, RATE), f"{null} of {REPLICATES} true claims failed at rate {RATE}"
    # the detectable discrepancy holds on either side; the weaker side is at least as well detected
    for ratio in (1 + d, max(1 - d, 1e-9)):
        alt = sum(_fails(lambda s=s: stats.assert_standard_normal_variance(s, n, false_fail_rate=RATE))
                  for s in ratio * rng.chisquare(n, REPLICATES))
        assert _at_least(alt, 0.95), f"only {alt} of {REPLICATES} draws with variance ratio {ratio:.4g} failed"


def test_sample_planning_inverts_the_detectable_discrepancy():
    for d in (0.3, 0.05, 0.01):
        n = stats.min_samples_variance(d)
        assert stats.min_discrepancy_variance(n) <= d < stats.min_discrepancy_variance(n - 1)


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
