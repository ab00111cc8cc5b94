"""The seeded inputs every check feeds a target: a fixed set of timesteps, data in [-1, 1]^d,
standard normal noise, and data on the discretised decoder's grid."""

from __future__ import annotations

import numpy as np

from reference.conventions import Prediction

from .. import SEED


def timesteps(T: int) -> np.ndarray:
    return np.unique(np.clip([1, 2, 3, T // 10, T // 2, T - 1, T], 1, T))


def x0_defined(target, t) -> np.ndarray:
    """The timesteps of `t` at which the target's x0_hat is defined: all, except where abar_t = 0
    (t = T of a zero-terminal-SNR schedule) for epsilon prediction, whose x0 divides by sqrt(abar_t)."""
    t = np.asarray(t)
    if target.prediction_type != Prediction.EPSILON:
        return t
    return t[target.schedule.alpha_bar(t) > 0]


def battery(T: int, d: int, rows: int = 8, seed: int = SEED):
    """Seeded inputs: `rows` rows per timestep of a fixed set, x0 in [-1, 1]^d, eps ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    t = np.repeat(timesteps(T), rows)
    x0 = rng.uniform(-1, 1, (t.size, d))
    eps = rng.standard_normal((t.size, d))
    return t, x0, eps


def rows_for(values: int, d: int) -> int:
    """Rows of d elements that hold at least `values` values."""
    return -(-values // d)


def grid_data(rng, shape) -> np.ndarray:
    """x0 on the 8-bit grid k / 127.5 - 1 (the discretised decoder's data)."""
    return rng.integers(0, 256, shape) / 127.5 - 1.0


