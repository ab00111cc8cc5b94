"""Run tests of the suite, by node id, against the intact reference and against each broken variant
of it (`mutants`): the self-check's matrix.

`matrix(node_ids, mutants)` runs one pytest session (in a fresh interpreter) over the named tests, their
asserts not rewritten (an assert still raises AssertionError; only the outcome is kept). Each
test is set up once and then called once per variant: first on the intact reference (the
control), then with each mutant active; a Hypothesis test draws its examples once and runs each
under every variant (`_Matrix`). An outcome is "." (passed), "X" (failed with an
AssertionError: the test caught the mutant) or "E" (another exception: not counted as a catch).
Verdicts reached on broken variants are unobserved (not the suite's, for --stats-report), and
the precision measurements' caches of reference outputs are cleared before every call.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from ddpm_verify import precision, stats

#: the tests run with their explicit examples and 8 derandomised draws, unshrunk
PROFILE = "selfcheck"
SUITE = Path(__file__).resolve().parents[1]


class _Interactive(Exception):
    """A Hypothesis test drew inside its body (st.data()): its examples are not shared."""


class _Matrix:
    """pytest plugin: each test function is called under every variant; outcomes by node id.

    A Hypothesis test draws its examples once, and each example runs under every variant whose
    outcome is not yet decided (`_shared_examples`), each variant from the global random states
    (random's, numpy's) Hypothesis set for the example: the same examples, in the same order, as
    one run per variant, since the profile derandomises them and the seed is the test's digest,
    which the wrapper keeps (functools.wraps); a variant's record stops at its first failure, as
    its own run would. Two
    cases differ: a test that draws inside its body (st.data()) runs once per variant; an example
    that only a broken variant rejects (assume) gives that variant no verdict, where its own run
    would have drawn another example (no catcher rejects examples)."""

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
            handle = getattr(pyfuncitem.obj, "hypothesis", None)
            outcomes = None if handle is None else self._shared_examples(pyfuncitem, handle)
            if outcomes is None:
                outcomes = {name: self._call(pyfuncitem.runtest, name, variant) for name, variant in self.variants}
            self.outcomes[pyfuncitem.nodeid] = outcomes
        finally:
            self._inner = False
        return True

    def _shared_examples(self, item, handle) -> dict[str, str] | None:
        """{variant: outcome} of a Hypothesis test from one run of its examples; None when it draws
        inside its body. An example that the control rejects (assume) is rejected for all; one that
        only a broken variant rejects gives that variant no verdict."""
        from hypothesis.errors import UnsatisfiedAssumption
        from hypothesis.strategies import DataObject

        original, decided = handle.inner_test, {}

        @functools.wraps(original)
        def every_variant(*args, **kwargs):
            if any(isinstance(a, DataObject) for a in (*args, *kwargs.values())):
                raise _Interactive
            seeded = random.getstate(), np.random.get_state()          # as Hypothesis set them
            for name, variant in self.variants:
                if name not in decided:
                    random.setstate(seeded[0])
                    np.random.set_state(seeded[1])
                    outcome = self._call(lambda: original(*args, **kwargs), name, variant, UnsatisfiedAssumption)
                    if outcome == "reject" and name == "control":
                        raise UnsatisfiedAssumption
                    if outcome in ("X", "E"):
                        decided[name] = outcome

        handle.inner_test = every_variant
        try:
            item.runtest()
        except _Interactive:
            return None
        except Exception:  # noqa: BLE001 - Hypothesis itself gave up (no valid example): E for the undecided
            return {name: decided.get(name, "E") for name, _ in self.variants}
        finally:
            handle.inner_test = original
        return {name: decided.get(name, ".") for name, _ in self.variants}

    @staticmethod
    def _call(run, name: str, variant, rejection: type | None = None) -> str:
        precision.clear_caches()
        with contextlib.ExitStack() as stack:
            stack.enter_context(stats.unobserved())
            if name != "control":       # a broken variant may divide by zero or overflow: not the suite's warnings
                stack.enter_context(np.errstate(all="ignore"))
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            stack.enter_context(variant())
            try:
                run()
            except AssertionError:
                return "X"
            except Exception as exc:  # noqa: BLE001 - shown as E in the matrix, not counted as a catch
                return "reject" if rejection is not None and isinstance(exc, rejection) else "E"
        return "."


def matrix(node_ids: list[str], mutants) -> dict[str, dict[str, str]]:
    """{node id: {"control" or mutant name: outcome}} for the tests `node_ids` (relative to the
    suite's folder, "test_forward.py::test_x[id]") against `mutants` (a list of `mutants.Mutant`
    of `mutants.MUTANTS`, by name). The tests run in a pytest session of a fresh interpreter, so
    that neither the Hypothesis profile of the run nor the state of this process (its caches,
    its heap) leaks in or out; a node id that collects nothing is an error."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outcomes.json"
        env = {**os.environ, MUTANTS_ENV: ",".join(m.name for m in mutants), OUTCOMES_ENV: str(out),
               "OMP_WAIT_POLICY": "PASSIVE"}
        proc = subprocess.run([sys.executable, "-m", "pytest", *(str(SUITE / n) for n in node_ids),
                               "-p", __name__, "-p", "no:cacheprovider", "-q", "--no-header", "--assert=plain",
                               "--hypothesis-profile", PROFILE, "-W", "ignore", "--rootdir", str(SUITE.parent)],
                              cwd=SUITE.parent, env=env, capture_output=True, text=True, check=False)
        outcomes = json.loads(out.read_text()) if out.exists() else {}
    missing = [n for n in node_ids if not any(k.endswith(n) for k in outcomes)]
    if missing or proc.returncode not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise RuntimeError(f"the self-check's run did not run every test (exit {proc.returncode}); missing: "
                           f"{missing}; {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return outcomes


# -- the plugin of that session (-p properties.support.mutation) -------------------------------------

MUTANTS_ENV, OUTCOMES_ENV = "DDPM_VERIFY_MUTANTS", "DDPM_VERIFY_MUTATION_OUTCOMES"


def pytest_configure(config):
    names = os.environ.get(MUTANTS_ENV)
    if names is None:
        return
    from .mutants import MUTANTS

    chosen = [m for m in MUTANTS if m.name in set(names.split(","))]
    config.pluginmanager.register(_Matrix(chosen), "ddpm-verify-mutation-matrix")


def pytest_unconfigure(config):
    plugin = config.pluginmanager.get_plugin("ddpm-verify-mutation-matrix")
    if plugin is not None:
        Path(os.environ[OUTCOMES_ENV]).write_text(json.dumps(plugin.outcomes))
