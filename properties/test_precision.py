"""Precision of every `reference` function against an independent 50-digit mpmath evaluation
(`ddpm_verify.precision`: the inputs of each function, the exact values from
`ddpm_verify.highprec`, which never calls `reference`, and the error measures). One test per
function and case: ``test_matches_mpmath[<function>-<case>]``, each within BOUND = 1e-12.
"""

import pytest

from ddpm_verify import precision

CASES = precision.cases()


@pytest.mark.parametrize("name, case", CASES, ids=[f"{name}-{case}" for name, case in CASES])
def test_matches_mpmath(name, case):
    precision.measure(name, case).check()
