"""The end-to-end checks catch whole loops and losses written with the bugs from-scratch DDPM code
has shipped, and pass the correct ones (properties/support/loops.py), for vector and image data.

Each broken variant must fail (or error) the check its bug belongs to; each correct one must pass
every check. Seeds are fixed (the checker's own), so each verdict is reproducible; the checks'
false-fail rate is 1e-6 per row and each broken variant is caught far beyond its threshold.
"""

import pytest

from ddpm_verify.endtoend import declaration, loss, sampler
from properties.support import loops


def _verdict(results, expected):
    failing = [(r.name, r.status, r.detail[:300]) for r in results if r.status in ("fail", "error")]
    if expected == "pass":
        assert not failing, failing
        assert sum(r.status == "pass" for r in results) >= 4
    else:
        assert any(name.startswith(expected) for name, _, _ in failing), (expected, failing)


@pytest.mark.parametrize("factory, expected", list(loops.SAMPLERS.items()),
                         ids=[f.__name__ for f in loops.SAMPLERS])
def test_sampler(factory, expected):
    results, _ = sampler.check_sampler(declaration.declare(factory(), "sampler"))
    _verdict(results, expected)


@pytest.mark.parametrize("factory, expected", list(loops.LOSSES.items()), ids=[f.__name__ for f in loops.LOSSES])
def test_loss(factory, expected):
    results, _ = loss.check_loss(declaration.declare(factory(), "loss"))
    _verdict(results, expected)
