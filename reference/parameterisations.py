"""Conversions between the eps, x_0, v and score parameterisations (docs/math.md §5).

Paper indexing t = 1..T; `t` is an int or one integer per leading index of the data.
x_0 is not identifiable from eps where abar_t = 0 and the score is undefined where
abar_t = 1; neither happens for t >= 1 except abar_T = 0 under zero terminal SNR, which raises.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data, as_scalar, same_shape
from .conventions import Prediction
from .schedules import Schedule, check_schedule, coef_at


def _pair(schedule, a_name, a, b_name, b):
    check_schedule(schedule)
    a, b = as_data(a_name, a), as_data(b_name, b)
    same_shape(**{a_name: a, b_name: b})
    return a, b


def _sqrt_abar(schedule: Schedule, t, shape, x_name, *, nonzero: bool = False):
    abar = coef_at(schedule, "alpha_bar", t, shape, x_name)
    if nonzero and np.any(abar == 0):
        raise ValueError("t: x_0 cannot be recovered where abar_t = 0 (t = T of a zero-terminal-SNR "
                         "schedule): x_t carries no information about x_0 there")
    return np.sqrt(abar), np.sqrt(coef_at(schedule, "one_minus_alpha_bar", t, shape, x_name))


def x0_from_eps(schedule: Schedule, xt, t, eps) -> np.ndarray:
    """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).

    docs/math.md §5.
    """
    xt, eps = _pair(schedule, "xt", xt, "eps", eps)
    sa, s1 = _sqrt_abar(schedule, t, xt.shape, "xt", nonzero=True)
    return (xt - s1 * eps) / sa


def eps_from_x0(schedule: Schedule, xt, t, x0) -> np.ndarray:
    """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t).

    docs/math.md §5.
    """
    xt, x0 = _pair(schedule, "xt", xt, "x0", x0)
    return noise_from(*_sqrt_abar(schedule, t, xt.shape, "xt"), xt, x0)


def noise_from(sqrt_abar, sqrt_one_minus_abar, xt, x0) -> np.ndarray:
    """eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar) from the two square roots, broadcasting, not
    validated: the one place this map is formed (`eps_from_x0`, the DDIM step and its inversion,
    whose abar may be the last step's `final_alpha_bar`)."""
    return (xt - sqrt_abar * x0) / sqrt_one_minus_abar


def v_from_x0_eps(schedule: Schedule, x0, t, eps) -> np.ndarray:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho).

    docs/math.md §5.
    """
    x0, eps = _pair(schedule, "x0", x0, "eps", eps)
    return velocity(*_sqrt_abar(schedule, t, x0.shape, "x0"), x0, eps)


def velocity(sqrt_abar, sqrt_one_minus_abar, x0, eps) -> np.ndarray:
    """v = sqrt(abar) eps - sqrt(1 - abar) x_0 from the two square roots, broadcasting, not
    validated: the one place v is formed (`v_from_x0_eps`, and the affine optimal v of Gaussian
    data, applied to slopes and intercepts)."""
    return sqrt_abar * eps - sqrt_one_minus_abar * x0


def x0_from_v(schedule: Schedule, xt, t, v) -> np.ndarray:
    """x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v.

    docs/math.md §5.
    """
    xt, v = _pair(schedule, "xt", xt, "v", v)
    sa, s1 = _sqrt_abar(schedule, t, xt.shape, "xt")
    return sa * xt - s1 * v


def eps_from_v(schedule: Schedule, xt, t, v) -> np.ndarray:
    """eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v.

    docs/math.md §5.
    """
    xt, v = _pair(schedule, "xt", xt, "v", v)
    sa, s1 = _sqrt_abar(schedule, t, xt.shape, "xt")
    return s1 * xt + sa * v


def x0_and_eps(schedule: Schedule, xt, t, output, prediction_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(x0_hat, eps_hat) that a network output of `prediction_type` (epsilon, sample, v_prediction)
    at x_t stands for, by the conversions above.

    docs/math.md §5.
    """
    if prediction_type not in Prediction.REFERENCE:
        raise ValueError(f"prediction_type must be one of {', '.join(Prediction.REFERENCE)}; got {prediction_type!r}")
    xt, output = _pair(schedule, "xt", xt, "output", output)
    if prediction_type == Prediction.EPSILON:
        return x0_from_eps(schedule, xt, t, output), output
    if prediction_type == Prediction.SAMPLE:
        return output, eps_from_x0(schedule, xt, t, output)
    return x0_from_v(schedule, xt, t, output), eps_from_v(schedule, xt, t, output)


def score_from_eps(schedule: Schedule, eps, t) -> np.ndarray:
    """score = grad_x log q_t(x_t) = -eps / sqrt(1 - abar_t) (for eps = E[eps | x_t]).

    docs/math.md §5.
    """
    check_schedule(schedule)
    eps = as_data("eps", eps)
    return -eps / np.sqrt(coef_at(schedule, "one_minus_alpha_bar", t, eps.shape, "eps"))


def eps_from_score(schedule: Schedule, score, t) -> np.ndarray:
    """eps = -sqrt(1 - abar_t) score.

    docs/math.md §5.
    """
    check_schedule(schedule)
    score = as_data("score", score)
    return -np.sqrt(coef_at(schedule, "one_minus_alpha_bar", t, score.shape, "score")) * score


def dynamic_threshold(x0, ratio: float, max_value: float) -> np.ndarray:
    """Dynamic thresholding of a predicted x_0 (Saharia et al. 2022, Imagen, section 2.3).

    Per example (each leading index; its last axis holds all its elements, so flatten images
    first): s = clip(q_ratio(|x0|), 1, max_value), q the `ratio` quantile with linear
    interpolation between order statistics (NumPy's and torch.quantile's default), then
    x0 <- clip(x0, -s, s) / s. With max_value = 1 this is clipping to [-1, 1].
    ratio in (0, 1]; max_value >= 1. Returns an array of x0's shape.
    """
    x0 = as_data("x0", x0)
    ratio, max_value = as_scalar("ratio", ratio), as_scalar("max_value", max_value)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must lie in (0, 1]; got {ratio!r}")
    if max_value < 1:
        raise ValueError(f"max_value must be >= 1; got {max_value!r}")
    s = np.clip(np.quantile(np.abs(x0), ratio, axis=-1, keepdims=True), 1.0, max_value)
    return np.clip(x0, -s, s) / s
