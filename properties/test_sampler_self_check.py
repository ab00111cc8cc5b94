"""Power of the sampler checks: every deliberately broken sampler with fewer steps than training fails.

Each target of `properties/support/broken_samplers.py` is a real diffusers scheduler,
guided-diffusion or lucidrains object with one realistic bug (DDIM's sigma without its square root, the
direction term without sigma, the previous abar off by one, the last step to abar_1, eta squared
or ignored, clipping ignored, the sqrt coefficients swapped, the steps_offset applied twice, a
strided DDPM stepping to t - 1, the learned range or the variance taken from the training chain,
noise on the last strided step, linspace truncated, inversion stepping down or from the wrong
abar, respaced betas taken from the base, the model called with the index, timestep_map off by
one, alphas_cumprod_prev unshifted, inversion with the previous abar, fixed-large variance from
the training betas, DDIM with sigma^2 for sigma, lucidrains' loss weights inverted, its DDIM
without clipping, its log-variance not floored). Each must fail at least one named check; each
stock control in the same configuration must pass them all. The last test prints which checks
caught which bug.
"""

from __future__ import annotations

import os
import warnings

import pytest

from ddpm_verify import conformance
from ddpm_verify.targets import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

from properties.support.broken_samplers import BROKEN, CONTROLS  # noqa: E402 - after the filter

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, so the matrix reads the
#: outcomes its tests kept in CAUGHT instead of checking every target again
pytestmark = pytest.mark.xdist_group("sampler_self_check")

CAUGHT: dict[str, list[str]] = {}


def failing_checks(name: str) -> list[str]:
    results = conformance.run(resolve(f"properties.support.broken_samplers:{name}"))
    return [c.name for c, r in zip(conformance.CHECKS, results) if r.status in ("fail", "error")]


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_sampler_fails_a_check(name):
    CAUGHT[name] = failing_checks(name)
    assert CAUGHT[name], f"{name}: no check failed"


@pytest.mark.parametrize("name", list(CONTROLS))
def test_stock_sampler_passes_every_check(name):
    results = conformance.run(resolve(f"properties.support.broken_samplers:{name}"))
    bad = [f"{r.name}: {r.status}: {r.detail}" for r in results if r.status in ("fail", "error")]
    assert not bad, bad
    assert sum(r.status == "pass" for r in results) >= 4


def test_matrix_of_broken_samplers_and_the_checks_that_caught_them(show_matrix):
    rows = {name: CAUGHT[name] if name in CAUGHT else failing_checks(name) for name in BROKEN}
    show_matrix("sampler self-check: which checks caught which broken sampler",
                [f"  {name:48s} caught by {len(checks):2d}: {', '.join(checks)}" for name, checks in rows.items()])
    assert len(rows) >= 20 and all(rows.values()), [name for name, checks in rows.items() if not checks]
