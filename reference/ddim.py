"""The DDIM step (Song, Meng, Ermon 2021, eq. 12 and 16) and its inversion (docs/math.md §10).

A step goes from timestep t to an earlier s (0 <= s < t; s = 0 is x_0, whose abar is
`final_alpha_bar`: 1 by the math, abar_1 under diffusers' ``set_alpha_to_one=False``):

    eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)          (unless given)
    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
    sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s).

Numerics: 1 - abar_t / abar_s = -expm1(log ratio) from the schedule's compensated sums, and
1 - abar_s - sigma^2 = (1 - abar_s) [(1 - eta^2)(1 - abar_t) + eta^2 r (1 - abar_s)] / (1 - abar_t)
with r = abar_t / abar_s, a sum of non-negative terms: no cancellation for any eta in [0, 1].
Paper indexing; `t`, `s` are ints or one per leading index of the data; data (..., d).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data, as_scalar, as_step_pair, expand_to, same_shape
from .forward import noised
from .parameterisations import noise_from
from .schedules import Schedule, check_schedule


def _eta(eta) -> float:
    eta = as_scalar("eta", eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1]; got {eta!r}")
    return eta


def _final(schedule: Schedule, final_alpha_bar) -> float:
    value = as_scalar("final_alpha_bar", final_alpha_bar)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"final_alpha_bar must lie in (0, 1]; got {value!r}")
    return value


def _tables(schedule: Schedule, t, s, final_alpha_bar: float):
    """abar_t, 1 - abar_t, abar_s, 1 - abar_s and 1 - abar_t / abar_s (accurate), arrays of t's shape."""
    abar_t, om_t = schedule.alpha_bar(t), schedule.one_minus_alpha_bar(t)
    later = s >= 1
    s_at = np.maximum(s, 1)
    abar_s = np.where(later, schedule.alpha_bar(s_at), final_alpha_bar)
    om_s = np.where(later, schedule.one_minus_alpha_bar(s_at), 1.0 - final_alpha_bar)
    log_r = schedule.log_alpha_bar_ratio(s, t) - np.where(later, 0.0, np.log(final_alpha_bar))
    return abar_t, om_t, abar_s, om_s, -np.expm1(log_r), np.exp(log_r)


def ddim_coefficients(schedule: Schedule, t, s, eta, *, final_alpha_bar=1.0):
    """(sqrt(abar_s), sqrt(1 - abar_s - sigma^2), sigma) of the DDIM step from t to s (eq. 12, 16):
    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z, with
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)). eta = 1 gives the strided
    DDPM posterior (`respacing.respace`'s beta_tilde'); eta = 0 the deterministic step. Arrays of
    the shape of t and s."""
    check_schedule(schedule)
    t, s = as_step_pair(schedule.T, t, s)
    eta = _eta(eta)
    _, om_t, abar_s, om_s, one_minus_r, r = _tables(schedule, t, s, _final(schedule, final_alpha_bar))
    if np.any(om_t == 0):
        raise ValueError("t: 1 - abar_t = 0, the step divides by it")
    direction2 = om_s * ((1 - eta ** 2) * om_t + eta ** 2 * r * om_s) / om_t
    return np.sqrt(abar_s), np.sqrt(direction2), eta * np.sqrt(om_s / om_t * one_minus_r)


def ddim_sigma(schedule: Schedule, t, s, eta, *, final_alpha_bar=1.0) -> np.ndarray:
    """sigma_t(eta), the standard deviation of the DDIM step from t to s (`ddim_coefficients`)."""
    return ddim_coefficients(schedule, t, s, eta, final_alpha_bar=final_alpha_bar)[2]


def ddim_step(schedule: Schedule, xt, t, s, x0_hat, *, eta=0.0, noise=None, eps_hat=None,
              final_alpha_bar=1.0) -> np.ndarray:
    """x_s from x_t by the DDIM step (eq. 12) with predicted x0_hat (after any clipping), the noise
    eps_hat (default: the one x0_hat implies, as above), sigma = `ddim_sigma` and z = `noise`
    (required when eta > 0). Shapes: xt, x0_hat, eps_hat, noise (..., d); t, s per leading index."""
    a_x0, a_eps, sigma = ddim_coefficients(schedule, t, s, eta, final_alpha_bar=final_alpha_bar)
    t, _ = as_step_pair(schedule.T, t, s)
    xt, x0_hat = as_data("xt", xt), as_data("x0_hat", x0_hat)
    arrays = {"xt": xt, "x0_hat": x0_hat}
    if eps_hat is not None:
        arrays["eps_hat"] = eps_hat = as_data("eps_hat", eps_hat)
    if _eta(eta) > 0:
        if noise is None:
            raise ValueError("noise is required when eta > 0 (the step adds sigma z)")
        arrays["noise"] = noise = as_data("noise", noise)
    same_shape(**arrays)
    at = lambda a: expand_to(np.asarray(a, dtype=np.float64), xt.shape, x_name="xt")   # noqa: E731
    if eps_hat is None:
        eps_hat = noise_from(at(np.sqrt(schedule.alpha_bar(t))), at(np.sqrt(schedule.one_minus_alpha_bar(t))), xt, x0_hat)
    out = at(a_x0) * x0_hat + at(a_eps) * eps_hat
    return out + at(sigma) * noise if _eta(eta) > 0 else out


def ddim_invert(schedule: Schedule, xs, s, t, x0_hat, *, eps_hat=None, final_alpha_bar=1.0) -> np.ndarray:
    """x_t from x_s (s < t) by the eta = 0 map run forward (DDIM inversion): eps_hat from x_s and
    x0_hat at s, x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps_hat. From s = 0 eps_hat must be
    given when final_alpha_bar = 1 (x_0 carries no noise)."""
    check_schedule(schedule)
    t, s = as_step_pair(schedule.T, t, s)
    xs, x0_hat = as_data("xs", xs), as_data("x0_hat", x0_hat)
    arrays = {"xs": xs, "x0_hat": x0_hat}
    if eps_hat is not None:
        arrays["eps_hat"] = eps_hat = as_data("eps_hat", eps_hat)
    same_shape(**arrays)
    abar_t, om_t, abar_s, om_s, _, _ = _tables(schedule, t, s, _final(schedule, final_alpha_bar))
    at = lambda a: expand_to(np.asarray(a, dtype=np.float64), xs.shape, x_name="xs")   # noqa: E731
    if eps_hat is None:
        if np.any(om_s == 0):
            raise ValueError("eps_hat: required at s where 1 - abar_s = 0 (x_0 carries no noise)")
        eps_hat = noise_from(at(np.sqrt(abar_s)), at(np.sqrt(om_s)), xs, x0_hat)
    return noised(at(np.sqrt(abar_t)), at(np.sqrt(om_t)), x0_hat, eps_hat)

