"""Per-timestep weights of the regression loss (docs/math.md §6 and §11).

snr_t = abar_t / (1 - abar_t). Each weighting multiplies the per-example mean squared error of
the loss's target (``epsilon``, ``sample`` = x_0, ``v_prediction`` = v) at paper t:

- ``none``: 1;
- ``min_snr`` (Hang et al. 2023, min-SNR-gamma) in the form that makes every target the eps
  loss weighted by min(snr, gamma) / snr: w = min(snr, gamma) / snr (epsilon), min(snr, gamma)
  (sample), min(snr, gamma) / (snr + 1) (v);
- ``p2`` (Choi et al. 2022, perception-prioritised): w = (k + snr)^(-gamma);
- ``snr``: w = snr_t (for the eps target, the x_0 loss of Ho et al.'s ELBO weighting up to
  constants; 0 at zero terminal SNR).
"""

from __future__ import annotations

import math

import numpy as np

from .conventions import Prediction
from ._checks import as_scalar, as_timestep
from .schedules import Schedule, check_schedule

WEIGHTINGS = ("none", "min_snr", "p2", "snr")
TARGETS = Prediction.REFERENCE


def snr(schedule: Schedule, t) -> np.ndarray:
    """snr_t = abar_t / (1 - abar_t), shape of t (inf nowhere for t >= 1: 1 - abar_t > 0)."""
    t = as_timestep("t", t, check_schedule(schedule).T)
    return schedule.alpha_bar(t) / schedule.one_minus_alpha_bar(t)


def loss_weight(schedule: Schedule, t, weighting: str = "none", *, target: str = Prediction.EPSILON, gamma: float = 5.0,
                k: float = 1.0) -> np.ndarray:
    """w_t of `weighting` for a loss on `target` (module docstring), shape of t. `gamma`: min-SNR's
    gamma > 0 (inf: no clipping, the snr-weighted form of each target), or p2's exponent >= 0;
    `k`: p2's offset > 0."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    s = snr(schedule, t)
    if weighting == "none":
        return np.ones_like(s)
    if weighting == "snr":
        return s
    unclipped = weighting == "min_snr" and isinstance(gamma, (int, float)) and gamma == math.inf
    gamma = math.inf if unclipped else as_scalar("gamma", gamma)
    if weighting == "p2":
        k = as_scalar("k", k)
        if gamma < 0 or k <= 0:
            raise ValueError(f"p2 weighting needs gamma >= 0 and k > 0; got gamma={gamma}, k={k}")
        return (k + s) ** -gamma
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0 for min-SNR weighting; got {gamma}")
    clipped = np.minimum(s, gamma)
    if target == Prediction.EPSILON:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.minimum(1.0, gamma / s)                 # min(snr, gamma) / snr, 1 at snr = 0 and gamma = inf
    return clipped if target == Prediction.SAMPLE else clipped / (s + 1)
