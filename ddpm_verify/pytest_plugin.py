"""pytest plugin: ``--ddpm-impl TARGET`` picks the implementation the property suite checks.

TARGET follows the rules of ``ddpm-verify check TARGET`` (`ddpm_verify.targets.resolve`). It is
resolved and validated once per session; a target that cannot be checked ends the run with a
one-line usage error (exit status 4). With the default ``reference`` the suite checks the
float64 reference itself and ``properties/test_target.py`` is not collected; any other target is
handed to that module through the session fixture ``ddpm_target``, and the report header names
it, its version, its conventions and its options that change nothing checked.
"""

from __future__ import annotations

import pytest

TARGET_FORMS = ("reference, diffusers, diffusers[key=value,...], guided-diffusion, "
                "guided-diffusion[key=value,...], package.module:attr")

_target_key = pytest.StashKey[object]()


def pytest_addoption(parser):
    parser.getgroup("ddpm-verify").addoption(
        "--ddpm-impl", metavar="TARGET", default="reference",
        help=f"implementation to check (default: reference); one of {TARGET_FORMS}")


def pytest_configure(config):
    if config.option.help:
        return
    from .conformance import checked
    from .errors import TargetError
    from .targets import resolve

    spec = config.getoption("ddpm_impl")
    try:
        target = resolve(spec)
        config.stash[_target_key] = None if target is None else checked(target)
    except TargetError as exc:
        raise pytest.UsageError(f"--ddpm-impl {spec}: {' '.join(str(exc).split())}") from None


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


def _not_for_reference(path, config) -> bool:
    """True for properties/test_target.py when the target is the reference."""
    return (config.stash.get(_target_key, None) is None
            and path == config.rootpath / "properties" / "test_target.py")


def pytest_ignore_collect(collection_path, config):
    return True if _not_for_reference(collection_path, config) else None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    """pytest collects a path named on the command line without asking pytest_ignore_collect:
    there, test_target.py becomes a collector of no tests."""
    if _not_for_reference(module_path, parent.config):
        return _NoTests.from_parent(parent, path=module_path)
    return None


class _NoTests(pytest.File):
    def collect(self):
        return []


@pytest.fixture(scope="session")
def ddpm_target(pytestconfig):
    """The adapter ``--ddpm-impl`` names (None for the reference)."""
    return pytestconfig.stash[_target_key]
