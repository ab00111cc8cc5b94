"""The one runner: from a TARGET string to a `Run` (what was checked, and one `Result` per check),
which `report` prints as a table and writes as JSON, for every command that checks something.

- `check(spec)`: ``reference`` runs the property suite (the package ``properties``, installed with
  the project) in this process, one Result per test, grouped by property module; any other
  TARGET is resolved to an adapter (`targets.resolve`) and checked against the reference by the
  conformance checks (`conformance.run`).
- `check_loop(spec, kind)`: a whole sampling loop or training loss by the exact oracles of
  `endtoend`.

A target that cannot be checked raises `TargetError` (exit status 2); a failure of the suite to
run at all (a test module that does not import) is an `InternalError` (exit status 3).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import SEED, __version__
from .errors import InternalError, TargetError
from .results import Result


@dataclass
class Run:
    """What one command checked: its title, the target's name and version, a caption of the facts
    the checks ran under, the declaration, the seed, and the results (conventions last)."""

    title: str
    name: str
    version: str
    caption: str
    results: list[Result]
    declaration: dict = field(default_factory=dict)
    seed: int = SEED
    facts: dict = field(default_factory=dict)
    grouped: bool = False                         # many results: the table shows one row per group


def check(spec: str, pytest_args: tuple[str, ...] = ()) -> Run:
    """`ddpm-verify check TARGET`."""
    from .targets import resolve

    target = resolve(spec)
    if target is None:
        return check_reference(pytest_args)
    from . import conformance

    target = conformance.checked(target)
    return Run("ddpm-verify check", target.name, target.version, _caption(target), conformance.run(target),
               target.declaration(), facts={"unit_roundoff": target.unit_roundoff,
                                            "data_shape": list(target.data_shape)})


def check_loop(spec: str, kind: str, seed: int = SEED) -> Run:
    """`ddpm-verify check-sampler TARGET` / `check-loss TARGET`."""
    from . import endtoend

    target, results = endtoend.run(spec, kind, seed)
    return Run(f"ddpm-verify check-{kind}", target.name, target.version, _caption(target), results,
               target.declaration(), seed, {"unit_roundoff": target.unit_roundoff,
                                            "data_shape": list(target.data_shape)})


def _caption(target) -> str:
    return f"data shape {target.data_shape}, unit roundoff {target.unit_roundoff:.3g}, T = {target.T}"


# -- the reference: the property suite, one Result per test ---------------------------------------

def suite_dir() -> Path:
    """The folder of the installed property suite (the package ``properties``)."""
    spec = importlib.util.find_spec("properties")
    if spec is None or not spec.submodule_search_locations:
        raise TargetError("the property suite (the package 'properties') is not installed: install ddpm-verify "
                          "as the README says")
    return Path(next(iter(spec.submodule_search_locations)))


#: the suite's run across the machine's cores (pytest-xdist), unless the pytest arguments choose
PARALLEL = ("-n", "auto")


def check_reference(pytest_args: tuple[str, ...] = ()) -> Run:
    """The property suite against the float64 reference, run by pytest in this process."""
    import pytest

    suite = suite_dir()
    collector = _Collector()
    workers = () if any(a == "-n" or a.startswith(("-n", "--numprocesses", "no:xdist")) for a in pytest_args) \
        else PARALLEL
    # the project's modules are imported already (this is its CLI): pytest cannot rewrite their asserts
    code = pytest.main([str(suite), "-q", "--no-header", "-p", "no:cacheprovider", "--rootdir", str(suite.parent),
                        "-W", "ignore::pytest.PytestAssertRewriteWarning", *workers, *pytest_args],
                       plugins=[collector])
    if collector.broken:
        raise InternalError("the property suite", RuntimeError(f"{len(collector.broken)} test modules do not "
                                                               f"collect: {'; '.join(collector.broken[:3])}"))
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise InternalError("the property suite", RuntimeError(f"pytest exit status {int(code)}"))
    return Run("ddpm-verify check", "reference", f"ddpm-verify {__version__}",
               f"the property suite at {suite}", collector.results, {"kind": "reference"}, grouped=True)


class _Collector:
    """pytest plugin: one Result per test (pass, fail, error in its set-up or tear-down, skip),
    grouped by its module; the modules that fail to collect."""

    def __init__(self):
        self.results: list[Result] = []
        self.broken: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.broken.append(f"{report.nodeid}: {_first_line(report)}")

    def pytest_runtest_logreport(self, report):
        nodeid = _XDIST_GROUP.sub("", report.nodeid)
        group = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        if report.when == "call" or (report.when == "setup" and not report.passed):
            status = ("skip" if report.skipped else "pass" if report.passed else
                      "fail" if report.when == "call" else "error")
            detail = (report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple)
                      else _first_line(report) if report.failed else "")
            self.results.append(Result(nodeid, status, detail=detail, group=group))
        elif report.when == "teardown" and report.failed:
            self.results.append(Result(nodeid, "error", detail=f"tear-down: {_first_line(report)}",
                                       group=group))


#: the "@group" pytest-xdist appends to the node id of a test in an xdist_group (--dist loadgroup)
_XDIST_GROUP = re.compile(r"@\w+$")


def _first_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return " ".join(text.split())[:2000]
