"""pytest plugin: ``--ddpm-impl TARGET`` picks the implementation the property suite checks.

TARGET follows the rules of ``ddpm-verify check TARGET`` (`ddpm_verify.targets.resolve`). It is
resolved and validated once per session; a target that cannot be checked ends the run with a
one-line usage error (exit status 4). With the default ``reference`` the suite checks the float64
reference itself; any other target is handed to ``properties/test_target.py`` (one test per check
of `conformance.CHECKS`) through the session fixture ``ddpm_target``, and only that module runs:
the others check the reference. The report header names the target, its version, its
conventions and its options that change nothing checked. ``--ddpm-sampler TARGET`` and
``--ddpm-loss TARGET`` name a whole loop or loss (as ``ddpm-verify check-sampler`` /
``check-loss``), checked once per session, one test per result in
``properties/test_loop_target.py`` (the only module run then). ``--stats-report`` lists every
statistical verdict the run reached.
"""

from __future__ import annotations

import pytest


_target_key = pytest.StashKey[object]()


_loops_key = pytest.StashKey[dict]()
LOOP_MODULE = "test_loop_target.py"
TARGET_MODULE = "test_target.py"


def pytest_addoption(parser):
    from .targets import TARGET_HELP

    group = parser.getgroup("ddpm-verify")
    group.addoption("--ddpm-impl", metavar="TARGET", default="reference",
                    help=f"implementation to check (default: reference); one of {TARGET_HELP}")
    group.addoption("--ddpm-sampler", metavar="TARGET", default=None,
                    help="a whole sampling loop to check (package.module:attr; as ddpm-verify check-sampler); "
                         f"its checks are the tests of properties/{LOOP_MODULE}")
    group.addoption("--ddpm-loss", metavar="TARGET", default=None,
                    help="a whole training loss to check (package.module:attr; as ddpm-verify check-loss)")
    group.addoption("--stats-report", action="store_true",
                    help="after the run, list every statistical check with its false-fail rate and the "
                         "discrepancy it detects with power 0.95")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Each statistical verdict a test reaches (ddpm_verify.stats) goes into its report's
    user_properties as ("stats", verdict dict): read by --stats-report, here or from xdist workers."""
    from .stats import observed

    def keep(r):
        item.user_properties.append(("stats", {"name": r.name, "passed": r.passed, "detectable": r.detectable,
                                               "false_fail_rate": r.false_fail_rate}))
    with observed(keep):
        yield


def reported(terminalreporter, key: str) -> list:
    """The values the tests' calls kept in their reports' user_properties under `key`, in report
    order (the reports reach the reporting process from pytest-xdist's workers too)."""
    return [value for reports in terminalreporter.stats.values() for rep in reports
            if getattr(rep, "when", "") == "call" for k, value in getattr(rep, "user_properties", ()) if k == key]


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("stats_report"):
        return
    from .results import Result
    from .stats import summarise

    verdicts = [Result(d["name"], "pass" if d["passed"] else "fail", false_fail_rate=d["false_fail_rate"],
                       detectable=d["detectable"]) for d in reported(terminalreporter, "stats")]
    terminalreporter.section("statistical checks")
    for line in summarise(verdicts):
        terminalreporter.write_line(line)


def pytest_configure(config):
    if config.option.help:
        return
    from .errors import TargetError
    from .targets import resolve

    # the conformance checks and the loop oracles (torch) are imported only when a target or a loop
    # is given: a run against the reference, and every worker of it, starts without them
    spec = config.getoption("ddpm_impl")
    try:
        target = resolve(spec)
        if target is not None:
            from .conformance import checked
            target = checked(target)
        config.stash[_target_key] = target
    except TargetError as exc:
        raise pytest.UsageError(f"--ddpm-impl {spec}: {' '.join(str(exc).split())}") from None
    loops = {}
    for kind in ("sampler", "loss"):
        loop_spec = config.getoption(f"ddpm_{kind}")
        if loop_spec:
            from .endtoend import load
            try:
                loops[kind] = load(loop_spec, kind)
            except TargetError as exc:
                raise pytest.UsageError(f"--ddpm-{kind} {loop_spec}: {' '.join(str(exc).split())}") from None
    config.stash[_loops_key] = loops


def pytest_report_header(config):
    if _target_key not in config.stash:
        return None
    target = config.stash[_target_key]
    if target is None:
        from . import __version__
        return f"ddpm-verify target: reference (float64 reference, ddpm-verify {__version__})"
    from .conformance import conventions, option_notes
    return [f"ddpm-verify target: {target.name} ({target.version})"] + [
        f"ddpm-verify {r.name}: {r.detail}" for r in conventions(target) + option_notes(target)]


def _not_for_this_run(path, config) -> bool:
    """Which modules of the property suite a run leaves out: with --ddpm-impl naming a target
    other than the reference, or --ddpm-sampler / --ddpm-loss, every module but the one that
    checks what they name (test_target.py, test_loop_target.py): the others check the reference.
    Without them, those two."""
    if path.suffix != ".py" or not path.name.startswith("test_") or not (path.parent / TARGET_MODULE).exists():
        return False
    wanted = ({TARGET_MODULE} if config.stash.get(_target_key, None) is not None else set()) | (
        {LOOP_MODULE} if config.stash.get(_loops_key, {}) else set())
    return path.name not in wanted if wanted else path.name in (TARGET_MODULE, LOOP_MODULE)


def pytest_ignore_collect(collection_path, config):
    return True if _not_for_this_run(collection_path, config) else None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    """pytest collects a path named on the command line without asking pytest_ignore_collect:
    there, a module this run leaves out becomes a collector of no tests."""
    if _not_for_this_run(module_path, parent.config):
        return _NoTests.from_parent(parent, path=module_path)
    return None


class _NoTests(pytest.File):
    def collect(self):
        return []


@pytest.fixture(scope="session")
def ddpm_target(pytestconfig):
    """The adapter ``--ddpm-impl`` names (None for the reference)."""
    return pytestconfig.stash[_target_key]


def loop_results(config) -> list:
    """[(kind, result)] of the loops and losses named by --ddpm-sampler / --ddpm-loss, each run once."""
    cache = config.stash.get(_loops_key, {})
    if "results" not in cache:
        from .endtoend import loss, sampler
        cache["results"] = []
        for kind, target in [(k, t) for k, t in cache.items() if k in ("sampler", "loss")]:
            module = sampler if kind == "sampler" else loss
            results, facts = (module.check_sampler if kind == "sampler" else module.check_loss)(target)
            cache["results"] += [(kind, r) for r in results + module.conventions(target, facts)]
    return cache["results"]
