"""Precision of every `reference` function against an independent 50-digit evaluation
(`ddpm_verify.precision`: the inputs of each function, the exact values from
`ddpm_verify.highprec`, which never calls `reference`, and the error measures). One test per
function and case: ``test_matches_exact[<function>-<case>]``, each within BOUND = 1e-12 (the
decoder within 1e-13), the exact values in arb ball arithmetic.

The exact values' second route: every formula once (`precision.small_cases`) and the decoder at
all its points (edge bins at standard deviations down to 1e-4, log-masses in the far tails) are
evaluated again in mpmath, ``test_mpmath_gives_the_same_measurement``: the float64 result is
within its bound of mpmath's value too, and the two measured errors agree to 2^-99 relative
(both exact values are within 2^-100 of the truth: arb's ball radius, mpmath's rounding at 166
bits).
"""

import flint
import mpmath
import numpy as np
import pytest

from ddpm_verify import highprec, precision

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, so each exact value (memoised
#: per process by highprec) is computed once per run
pytestmark = pytest.mark.xdist_group("precision")

CASES = precision.cases()
DECODER = [(name, case) for name, case in CASES
           if name.startswith(("discretized_gaussian_log_likelihood", "decoder_nll"))]
TWO_ENGINES = precision.small_cases() + [c for c in DECODER if c not in precision.small_cases()]


def _ids(cases):
    return [f"{name}-{case}" for name, case in cases]


@pytest.mark.parametrize("name, case", CASES, ids=_ids(CASES))
def test_matches_exact(name, case):
    precision.measure(name, case).check()


@pytest.mark.parametrize("name, case", TWO_ENGINES, ids=_ids(TWO_ENGINES))
def test_mpmath_gives_the_same_measurement(name, case):
    in_arb = precision.measure(name, case)
    precision.clear_caches()             # grouped measurements keep their Results: make mpmath's afresh
    try:
        with highprec.engine("mpmath"):
            in_mpmath = precision.measure(name, case)
    finally:
        precision.clear_caches()
    in_mpmath.check()
    tol = 2.0 ** -99 * (1 + in_arb.worst_error)
    assert abs(in_arb.worst_error - in_mpmath.worst_error) <= tol, (
        f"{name} [{case}]: the error measured against arb's value, {in_arb.worst_error!r}, and against "
        f"mpmath's, {in_mpmath.worst_error!r}, differ by more than {tol:.2g}\n arb:    {in_arb.detail}\n"
        f" mpmath: {in_mpmath.detail}")


def test_a_ball_is_read_as_the_nearest_double_double():
    """arb's reading of a ball's midpoint (hi = float(m), lo = float(m - hi)) equals mpmath's
    correctly rounded conversion of the same binary value: at ties (to even), just past a tie,
    in the subnormal range, at the overflow threshold and for values needing all 53 + 53 bits."""
    arb = flint.arb
    with flint.ctx.workprec(300):
        two = arb(2)
        values = [1 + two ** -53, 1 + 3 * two ** -53, 1 + two ** -53 + two ** -200, -(1 + two ** -53 + two ** -200),
                  3 * two ** -1075, 7 * two ** -1076, two ** 1024 * (1 - two ** -54), two ** 1024 * (1 - two ** -53),
                  arb(1) / 3, arb(-2) / 7, arb(10) ** -310 / 3, two ** -1080]
        for v in values:
            mid = mpmath.mp.make_mpf(highprec.ENGINES["arb"].parts(v)[0])
            assert highprec.ENGINES["arb"].double_double(v) == highprec.ENGINES["mpmath"].double_double(mid), v


def test_an_undetermined_value_is_an_error_not_a_reference():
    """A ball wider than 2^-100 of its midpoint (here x - x for an inexact x, which contains 0 but
    is not 0) cannot serve as the exact value: reading it raises, naming the cause."""
    third = flint.arb(1) / 3
    with pytest.raises(ValueError, match="not determined to 100 bits"):
        highprec.to_double_double(np.array([third - third], dtype=object))
