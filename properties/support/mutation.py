"""Run tests of the suite, by node id, against the intact reference and against each broken variant
of it (`mutants`): the self-check's matrix.

`matrix(node_ids, mutants)` runs one pytest session (in this process) over the named tests. Each
test is set up once and then called once per variant: first on the intact reference (the
control), then with each mutant active. An outcome is "." (passed), "X" (failed with an
AssertionError: the test caught the mutant) or "E" (another exception: not counted as a catch).
Verdicts reached on broken variants are unobserved (not the suite's, for --stats-report), and
the precision measurements' caches of reference outputs are cleared before every call.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from ddpm_verify import precision, stats

#: the tests run with their explicit examples and 8 derandomised draws, unshrunk
PROFILE = "selfcheck"
SUITE = Path(__file__).resolve().parents[1]


class _Matrix:
    """pytest plugin: each test function is called under every variant; outcomes by node id."""

    def __init__(self, mutants):
        self.variants = [("control", contextlib.nullcontext)] + [(m.name, m.active) for m in mutants]
        self.outcomes: dict[str, dict[str, str]] = {}
        self._inner = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        if self._inner:                     # the call made below: pytest's own implementation runs the test
            return None
        self._inner = True
        try:
            self.outcomes[pyfuncitem.nodeid] = {name: self._call(pyfuncitem, name, variant)
                                                for name, variant in self.variants}
        finally:
            self._inner = False
        return True

    @staticmethod
    def _call(item, name: str, variant) -> str:
        precision.clear_caches()
        with contextlib.ExitStack() as stack:
            stack.enter_context(stats.unobserved())
            if name != "control":       # a broken variant may divide by zero or overflow: not the suite's warnings
                stack.enter_context(np.errstate(all="ignore"))
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            stack.enter_context(variant())
            try:
                item.runtest()
            except AssertionError:
                return "X"
            except Exception:  # noqa: BLE001 - shown as E in the matrix, not counted as a catch
                return "E"
        return "."


def matrix(node_ids: list[str], mutants) -> dict[str, dict[str, str]]:
    """{node id: {"control" or mutant name: outcome}} for the tests `node_ids` (relative to the
    suite's folder, "test_forward.py::test_x[id]"); a node id that collects nothing is an error."""
    plugin = _Matrix(mutants)
    code = pytest.main([str(SUITE / n) for n in node_ids] + [
        "-p", "no:terminal", "-p", "no:cacheprovider", "--hypothesis-profile", PROFILE, "-W", "ignore"],
        plugins=[plugin])
    missing = [n for n in node_ids if not any(k.endswith(n) for k in plugin.outcomes)]
    if missing or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise RuntimeError(f"the self-check's nested run did not run every test (exit {code}); missing: {missing}")
    return plugin.outcomes
