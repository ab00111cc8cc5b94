"""End-to-end checks of a user's whole sampling loop or training loss by exact oracles (docs/math.md §11).

The checker hands the user's code a network that is the exact optimum for Gaussian data
(`oracle`), runs the code untouched, records what it asks the network, and tests what comes out
against the exact law: `sampler.check_sampler` for `sample(model, n)`, `loss.check_loss` for
`loss(model, x0)` (and `loss_at`). What the code declares is read by `declaration.load`.
"""

from __future__ import annotations

from .. import SEED
from ..results import Result
from . import loss, sampler
from .declaration import LoopTarget, load



def run(spec: str, kind: str, seed: int = SEED) -> tuple[LoopTarget, list[Result]]:
    """The `kind` ("sampler" or "loss") target `spec` and its results, conventions last."""
    target = load(spec, kind)
    module = sampler if kind == "sampler" else loss
    check = sampler.check_sampler if kind == "sampler" else loss.check_loss
    results, facts = check(target, seed)
    return target, results + module.conventions(target, facts)


__all__ = ["LoopTarget", "load", "run"]
