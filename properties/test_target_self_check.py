"""Power of `ddpm-verify check`: every deliberately broken third-party target fails it.

Each target of properties.support.broken_targets.BROKEN (a diffusers DDPMScheduler or a guided-diffusion
GaussianDiffusion with one realistic bug: abar_{t-1} off by one, a KL with swapped arguments,
nats reported as bits, ...) must make `ddpm-verify check` exit 1, with at least one named check
failing; each stock configuration of CONTROLS must exit 0. The last test prints which checks
caught which broken target.
"""

from __future__ import annotations

import os
import warnings

import pytest

from ddpm_verify import conformance, stats
from ddpm_verify.cli import main
from ddpm_verify.targets import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

# imported after the filter: guided_diffusion warns on import
from properties.support.broken_targets import BROKEN, CONTROLS

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, so the matrix reads the
#: outcomes its tests kept in CAUGHT instead of checking every target again
pytestmark = pytest.mark.xdist_group("target_self_check")

#: broken target -> names of the checks that failed on it (filled as the tests run)
CAUGHT: dict[str, list[str]] = {}


def _spec(name: str) -> str:
    return f"properties.support.broken_targets:{name}"


def failing(results) -> list[str]:
    """Names (as in conformance.CHECKS) of the checks that failed in a conformance run's `results`."""
    return [c.name for c, r in zip(conformance.CHECKS, results) if r.status in ("fail", "error")]


def failing_checks(name: str) -> list[str]:
    """Names of the checks that fail on the target `name`."""
    return failing(conformance.run(resolve(_spec(name))))


@pytest.fixture
def conformance_runs(monkeypatch):
    """The results of every conformance run made during the test (by `ddpm-verify check`), in order:
    the matrix reads the run the command made instead of repeating it."""
    runs = []
    run = conformance.run

    def kept(target):
        runs.append(run(target))
        return runs[-1]
    monkeypatch.setattr(conformance, "run", kept)
    return runs


@pytest.fixture
def forget_verdicts():
    """Statistical verdicts reached on broken targets are not the suite's (--stats-report)."""
    with stats.unobserved():
        yield


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_target_fails_the_check(name, capsys, forget_verdicts, conformance_runs):
    status = main(["check", _spec(name)])
    out = capsys.readouterr().out
    assert status == 1, out
    assert len(conformance_runs) == 1, f"ddpm-verify check made {len(conformance_runs)} conformance runs"
    CAUGHT[name] = failing(conformance_runs[0])
    assert CAUGHT[name], f"{name}: exit status 1 but no check failed"


@pytest.mark.parametrize("name", list(CONTROLS))
def test_stock_control_passes_the_check(name, capsys):
    status = main(["check", _spec(name)])
    out = capsys.readouterr().out
    assert status == 0, out


def test_matrix_of_broken_targets_and_the_checks_that_caught_them(show_matrix, forget_verdicts):
    rows = {name: CAUGHT[name] if name in CAUGHT else failing_checks(name) for name in BROKEN}
    counts = {c.name: sum(c.name in caught for caught in rows.values()) for c in conformance.CHECKS}
    show_matrix("target self-check: which checks caught which broken target",
                [f"  {name:34s} caught by {len(checks):2d}: {', '.join(checks)}" for name, checks in rows.items()]
                + ["  per check: " + ", ".join(f"{name} {n}" for name, n in counts.items() if n)])
    assert len(rows) >= 22
    assert all(rows.values()), [name for name, checks in rows.items() if not checks]
