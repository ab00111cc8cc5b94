"""Adapters: the one interface through which a third-party implementation is checked.

An adapter wraps a library object and exposes the operations of `Target`, translating the
library's 0-based timestep indices to paper t = 1..T, its units to nats per example and its
tensors to float64 NumPy arrays of the values it computed (in its own dtype), all in one
place. Data are (n, d) arrays; `t` is a Python int or one integer per row. `operations` names
what the target supports; a check whose operation is missing is skipped with a reason naming
the target and the operation.

Model outputs are given, never learned: operations that need a network take the network's
output (`model_output`, of shape (n, d), or (n, 2d) for learned variances: the mean part
then the variance part) or, for `total_bpd`, a deterministic function of x_t.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

import reference

#: every operation a target may support, with the method that provides it (checks are keyed
#: by these names)
OPERATIONS = {
    "schedule": "tables() -> {'beta': (T,), 'alpha_bar': (T,)}",
    "q_marginal": "q_mean_variance(x0, t) -> (mean, variance, log_variance) of q(x_t | x_0)",
    "q_sample": "q_sample(x0, t, eps) -> x_t for the given noise",
    "q_sample_random": "q_sample_random(x0, t, seed) -> x_t with the target's own noise",
    "posterior": "q_posterior(x0, xt, t) -> (mean, variance, log_variance_clipped) of q(x_{t-1}|x_t,x_0)",
    "conversions": "x0_from_eps(xt, t, eps), eps_from_x0(xt, t, x0) -> arrays",
    "velocity": "velocity(x0, t, eps) -> v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0",
    "model_variance": "model_variance(t, model_output) -> variance of p_theta(x_{t-1}|x_t) per element",
    "p_mean_variance": "p_mean_variance(model_output, xt, t) -> (mean, variance, log_variance, x0_hat)",
    "reverse_step": "reverse_step(model_output, xt, t, seed) -> (x_{t-1}, the standard normal noise used)",
    "previous_t": "previous_t(t) -> the timestep one reverse step goes to",
    "vlb_terms": "vlb_term(model_output, x0, xt, t) -> L_{t-1} integrand (t >= 2) or decoder NLL (t = 1), nats",
    "prior": "prior_term(x0) -> L_T = KL(q(x_T | x_0) || N(0, I)), nats",
    "total_bpd": "total_bpd(model_fn, x0, seed) -> {'total', 'prior', 'terms' (n, T), 'eps' (T, n, d), ...}",
    "training_loss": "training_loss(model_output, x0, t, eps) -> the per-example training loss",
}


@runtime_checkable
class Target(Protocol):
    """What a checked implementation provides (all timesteps are paper t = 1..T).

    Besides these attributes, a target defines the methods named in `OPERATIONS` for each
    operation it lists in `operations`, and, where it takes model outputs, the semantics they
    follow:

    - ``prediction_type``: ``epsilon``, ``sample`` (x_0), ``v_prediction`` or ``previous_x``;
    - ``intended_variance``: the p_theta variance it stands for, one of ``fixed_small``,
      ``fixed_large``, ``learned_range`` (log sigma^2 = v log beta + (1 - v) log beta_tilde,
      v = (output + 1) / 2), ``learned`` (the output is log sigma^2) or ``learned_variance`` (the
      output is sigma^2);
    - ``large_variance_at_1``: ``beta`` (sigma_1^2 = beta_1) or ``beta_tilde_2`` (improved
      DDPM's choice for fixed_large at t = 1);
    - ``clip_sample`` and ``clip_range``: whether x0_hat is clipped to [-r, r];
    - ``table_roundoff``: unit roundoff of the dtype its schedule tables are computed in
      (coefficients are then rounded to ``unit_roundoff`` when used);
    - ``decoder``: ``discretized`` or ``continuous``, and ``normal_cdf``: ``exact`` or ``tanh``
      (the approximation 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))).
    """

    name: str                 # for reports, e.g. "diffusers.DDPMScheduler(variance_type=fixed_small)"
    version: str              # the library's version
    unit_roundoff: float      # of the dtype its outputs are computed in (2**-24 for float32)
    operations: frozenset     # subset of OPERATIONS

    def reference_schedule(self) -> reference.Schedule:
        """The float64 reference schedule the target claims to implement."""


ModelFn = Callable[[np.ndarray], np.ndarray]
