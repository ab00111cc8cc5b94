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
