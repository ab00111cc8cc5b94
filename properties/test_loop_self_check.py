"""The end-to-end checks catch whole loops and losses written with the bugs from-scratch DDPM code
has shipped, and pass the correct ones (properties/support/loops.py), for vector and image data.

Each broken variant must fail (or error) the check its bug belongs to; each correct one must pass
every check. Seeds are fixed (the checker's own), so each verdict is reproducible; the checks'
false-fail rate is 1e-6 per row and each broken variant is caught far beyond its threshold.
"""

import math

import numpy as np
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



@pytest.mark.parametrize("buffer", [1, 37, 1 << 20])
def test_the_record_of_the_law_of_x_t_is_its_direct_sums(buffer, monkeypatch):
    """`oracle.ForwardLaw` holds the rows of many calls and adds them up a buffer at a time: its counts
    and sums of z and z^2 per (t, group) equal a value-by-value sum of z = (x - sqrt(abar_t) mu_j) /
    sqrt(abar_t s_j^2 + (1 - abar_t)), for calls of 1 to 300 rows and any buffer (every call added at
    once, or every few), with more dimensions than groups and fewer; it keeps its own copy of x."""
    import reference as ref
    from ddpm_verify.endtoend.oracle import ForwardLaw, OracleData, loss_groups

    monkeypatch.setattr(ForwardLaw, "BUFFER", buffer)
    rng = np.random.default_rng(7)
    schedule = ref.linear(50)
    abar, om = schedule.alpha_bar(np.arange(1, 51)), schedule.one_minus_alpha_bar(np.arange(1, 51))
    for d in (3, 9):
        od = OracleData.build(d, loss_groups())
        law = ForwardLaw(od, schedule)
        want, size = np.zeros((3, schedule.T, len(od.params))), np.zeros((3, schedule.T, len(od.params)))
        for n in (1, 300, 5, 1, 64):
            paper, x = rng.integers(1, schedule.T + 1, n), rng.standard_normal((n, d))
            for row, t in zip(x, paper):
                for j, value in enumerate(row):
                    mu, s = od.params[od.group[j]]
                    z = (value - math.sqrt(abar[t - 1]) * mu) / math.sqrt(abar[t - 1] * s * s + om[t - 1])
                    want[:, t - 1, od.group[j]] += (1.0, z, z * z)
                    size[:, t - 1, od.group[j]] += (1.0, abs(z), z * z)
            law.add(x, paper)
            x[:] = np.nan
        for got, expected, scale in zip((law.count, law.sum_z, law.sum_z2), want, size):
            # each z to a few ulp, summed in another order: the sum of at most 900 values, each off
            # by a few ulp, within 1e-13 of the sum of their sizes
            assert np.all(np.abs(got - expected) <= 1e-13 * scale), np.max(np.abs(got - expected) / scale)
