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


def _build(factory, shape):
    return factory() if shape is None else factory(data_shape=shape)


def _id(case):
    return f"{case[0].__name__}{'' if case[1] is None else '-' + 'x'.join(map(str, case[1]))}"


@pytest.mark.parametrize("factory, shape, expected", loops.SAMPLERS, ids=[_id(c) for c in loops.SAMPLERS])
def test_sampler(factory, shape, expected):
    """The verdict, and for a bug that is one of the nearby processes, the diagnosis naming it first."""
    results, _ = sampler.check_sampler(declaration.declare(_build(factory, shape), "sampler"))
    _verdict(results, expected)
    if factory in loops.DIAGNOSES:
        output = next(r for r in results if r.name.startswith("sampler: output") and r.status == "fail")
        assert f"most likely nearby process: {loops.DIAGNOSES[factory]}" in output.detail, output.detail


@pytest.mark.parametrize("factory, shape, expected", loops.LOSSES, ids=[_id(c) for c in loops.LOSSES])
def test_loss(factory, shape, expected):
    results, _ = loss.check_loss(declaration.declare(_build(factory, shape), "loss"))
    _verdict(results, expected)
