"""The implementation named by ``--ddpm-impl`` against the float64 reference.

One test per entry of `ddpm_verify.conformance.CHECKS`, run through `conformance.run_check`,
its outcome kept apart: "fail" fails with the worst error, the tolerance there and where it
failed; "error" (the target raised on valid input) is reported by pytest as an error, in one
line; "skip" is skipped with its reason; "note" passes and prints its detail. The target's
conventions are in the report header. With the default target, ``reference``, the plugin
(`ddpm_verify.pytest_plugin`) does not collect this module: the rest of the property suite
checks the reference itself.
"""

import warnings

import pytest

from ddpm_verify import conformance

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture
def result(ddpm_target, request):
    """The check's result; an error (the target raised) is raised here, so pytest reports an error."""
    r = conformance.run_check(ddpm_target, request.param)
    if r.status == "error":
        pytest.fail(f"{r.name}: the target raised on valid input: {r.detail}", pytrace=False)
    return r


@pytest.mark.parametrize("result", [pytest.param(c, id=c.name) for c in conformance.CHECKS], indirect=True)
def test_target(result):
    if result.status == "fail":
        where = f" at {result.where_failed}" if result.where_failed else ""
        pytest.fail(f"{result.name}: fails{where}; worst error {result.worst_error:.3g}, tolerance "
                    f"{result.tolerance:.3g}; {result.detail}", pytrace=False)
    if result.status == "skip":
        pytest.skip(reason=f"{result.name}: {result.detail or 'not applicable to this target'}")  # the check's own skip
    if result.status == "note":
        print(f"{result.name}: {result.detail}")
    assert result.status in ("pass", "note"), result
