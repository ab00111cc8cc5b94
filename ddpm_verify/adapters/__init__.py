"""Adapters: the one interface through which a third-party implementation is checked.

An adapter wraps a library object and exposes the operations of `Target`, translating the
library's 0-based timestep indices to paper t = 1..T in one place and returning float64
NumPy arrays of the values the library computed (in its own dtype). `operations` names what
it supports; a check whose operation is missing is skipped with a reason naming both.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

import reference

#: every operation a target may support (checks are keyed by these names)
OPERATIONS = (
    "schedule",          # tables(): beta_t and abar_t for t = 1..T
    "q_sample",          # q_sample(x0, t, eps): x_t with the given noise
    "velocity",          # velocity(x0, t, eps): v = sqrt(abar) eps - sqrt(1 - abar) x0
    "reverse_step",      # reverse_step(model_output, xt, t, seed): (x_{t-1}, the noise it used)
    "previous_t",        # previous_t(t): the timestep a reverse step goes to
)


@runtime_checkable
class Target(Protocol):
    """What a checked implementation provides (all timesteps are paper t = 1..T)."""

    name: str                 # for reports, e.g. "diffusers.DDPMScheduler(variance_type=fixed_small)"
    version: str              # the library's version
    unit_roundoff: float      # of the dtype its tables and outputs use (2**-24 for float32)
    operations: frozenset     # subset of OPERATIONS

    def reference_schedule(self) -> reference.Schedule:
        """The float64 reference schedule the target claims to implement."""

    def tables(self) -> dict[str, np.ndarray]:
        """{'beta': (T,), 'alpha_bar': (T,)} as the target holds them."""
