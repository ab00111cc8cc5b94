"""conftest of the property suite: Hypothesis profiles and shared settings (shipped with the suite,
so an installed copy runs as the checkout does).

Profiles (select with ``--hypothesis-profile NAME``; default ``ci`` when CI=true, else ``dev``):
- ``dev``:  quick local runs, 50 examples per property.
- ``ci``:   Hypothesis's own ``ci`` profile (derandomised, no example database, no deadline),
            extended with 100 examples per property.
- ``deep``: 2000 examples per property, no deadline; takes as long as it needs.
- ``selfcheck``: the self-check's runs against broken variants of the reference.
"""

import gc
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before any torch import (2-core machines)

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

from ddpm_verify.pytest_plugin import reported  # noqa: E402

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", parent=settings.get_profile("ci"), max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# the self-check's nested runs (properties/support/mutation.py): explicit examples and 8 derandomised
# draws per property, unshrunk, under each broken variant of the reference
settings.register_profile("selfcheck", max_examples=8, derandomize=True, database=None, deadline=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker computes with one thread (torch, OpenMP, BLAS): the
    workers share the machine's cores, and a worker with several threads only competes with the
    others. Set here, in the controlling process, before it starts the workers. And xdist's default
    distribution becomes ``loadgroup``: the tests of one xdist_group (a module with module-wide
    fixtures) go to one worker; the workers, which parse the command line afresh, learn it from
    the environment."""
    if hasattr(config, "workerinput"):
        if os.environ.get(_LOADGROUP) == "1":
            config.option.loadgroup = True
        return
    if getattr(config.option, "numprocesses", None):
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        if config.option.dist == "load":
            config.option.dist = "loadgroup"
        os.environ[_LOADGROUP] = "1" if config.option.dist == "loadgroup" else "0"


_LOADGROUP = "DDPM_VERIFY_XDIST_LOADGROUP"


def pytest_collection_finish(session):
    """What exists once the tests are collected (the imported libraries, the collected items) lives
    for the whole run: move it out of the garbage collector's reach (`gc.freeze`), so that each
    collection during the run scans only what the tests made. With the frozen objects no longer
    counted as long-lived, a full collection would follow every 10 collections of the middle
    generation; one in 100 keeps them about as rare as before the freeze. The collector took
    4 to 5 s of each worker's run before, about 2 s after."""
    gc.freeze()
    gc.set_threshold(*gc.get_threshold()[:2], 100)


@pytest.fixture
def show_matrix(request):
    """show_matrix(title, lines): a self-check's matrix, printed after the run (by the process that
    reports, so it is shown under pytest-xdist too); kept in the test report's user_properties."""
    def show(title: str, lines: list[str]) -> None:
        request.node.user_properties.append(("matrix", "\n".join([title, *lines])))
    return show


def pytest_terminal_summary(terminalreporter):
    matrices = reported(terminalreporter, "matrix")
    if matrices:
        terminalreporter.section("self-check matrices")
        for text in matrices:
            terminalreporter.write_line(text + "\n")
