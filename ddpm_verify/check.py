"""Run the property suite (``properties/``) against a target and summarise the outcome."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .errors import TargetError

BUILTIN_TARGETS = ("reference",)


def properties_dir() -> Path:
    """The property suite beside the installed package (an editable install of the checkout)."""
    path = Path(__file__).resolve().parent.parent / "properties"
    if not path.is_dir():
        raise TargetError(f"the property suite was not found at {path}; install the project from its "
                          "checkout with 'pip install -e .' as the README says")
    return path


@dataclass
class SuiteOutcome:
    """Counts of test outcomes per property module."""

    per_module: dict[str, Counter] = field(default_factory=dict)
    exit_code: int = 0

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.per_module.values())


class _Collector:
    """pytest plugin recording each test's outcome under its module name."""

    def __init__(self, outcome: SuiteOutcome):
        self.outcome = outcome

    def pytest_runtest_logreport(self, report):
        module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        counts = self.outcome.per_module.setdefault(module, Counter())
        if report.when == "call" or (report.when == "setup" and not report.passed):
            counts["skipped" if report.skipped else "failed" if report.failed else "passed"] += 1
        elif report.when == "teardown" and report.failed:
            counts["failed"] += 1


def run_suite(target: str, extra_args: list[str] | None = None) -> SuiteOutcome:
    """Run ``pytest properties/`` in this process for `target`; returns the per-module outcome."""
    if target not in BUILTIN_TARGETS:
        raise TargetError(f"unknown target {target!r}; built-in targets: {', '.join(BUILTIN_TARGETS)}")
    suite = properties_dir()
    outcome = SuiteOutcome()
    args = [str(suite), "-q", "--no-header", "-p", "no:cacheprovider", "--rootdir", str(suite.parent),
            *(extra_args or [])]
    outcome.exit_code = int(pytest.main(args, plugins=[_Collector(outcome)]))
    if outcome.exit_code not in (0, 1):
        raise TargetError(f"the property suite did not run (pytest exit status {outcome.exit_code})")
    return outcome
