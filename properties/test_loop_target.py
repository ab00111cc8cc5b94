"""The whole loop or loss named by ``--ddpm-sampler TARGET`` / ``--ddpm-loss TARGET`` (the checks of
``ddpm-verify check-sampler`` / ``check-loss``), one test per result: "fail" fails with its detail,
"error" (the code raised) is reported by pytest as an error in one line, "skip" skips with its
reason, a convention passes and prints its line. The code runs once per session, at collection.
Collected only when one of the two options is given (`ddpm_verify.pytest_plugin`).
"""

import pytest

from ddpm_verify.pytest_plugin import loop_results


def pytest_generate_tests(metafunc):
    if "loop_result" in metafunc.fixturenames:
        results = loop_results(metafunc.config)
        metafunc.parametrize("loop_result", [r for _, r in results],
                             ids=[r.name for _, r in results])


def test_loop(loop_result):
    r = loop_result
    if r.status == "error":
        pytest.fail(f"{r.name}: the code raised: {r.detail}", pytrace=False)
    if r.status == "fail":
        where = f" at {r.where_failed}" if r.where_failed else ""
        pytest.fail(f"{r.name}: fails{where}; {r.detail}", pytrace=False)
    if r.status == "skip":
        pytest.skip(reason=f"{r.name}: {r.detail or 'not applicable to this loop'}")  # the check's own skip
    print(f"{r.name}: {r.detail}")
    assert r.status in ("pass", "note", "convention"), r
