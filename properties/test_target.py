"""The implementation named by ``--ddpm-impl`` against the float64 reference.

One test per entry of `ddpm_verify.conformance.CHECKS`, run through `conformance.run_check`.
A "fail" fails with the worst error, the tolerance there and where it happened; a "skip"
(the target lacks the operation) is skipped with that reason; a "note" (rounding within the
approximation budget) passes and prints its detail. With the default target, ``reference``,
the plugin (`ddpm_verify.pytest_plugin`) does not collect this module: the rest of the
property suite checks the reference itself.
"""

import warnings

import pytest

from ddpm_verify import conformance

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.mark.parametrize("operation, check", [pytest.param(op, fn, id=conformance.check_name(fn))
                                              for op, fn in conformance.CHECKS])
def test_target(ddpm_target, operation, check):
    result = conformance.run_check(ddpm_target, operation, check)
    if result.status == "fail":
        pytest.fail(f"{result.name}: worst error {result.worst_error:.3g}, tolerance {result.tolerance:.3g}; "
                    f"{result.detail}", pytrace=False)
    if result.status == "skip":
        pytest.skip(result.detail)
    if result.status == "note":
        print(f"{result.name}: {result.detail}")
    assert result.status in ("pass", "note"), result
