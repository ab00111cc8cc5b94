"""The negative ELBO of a DDPM, its terms, and two Monte Carlo estimators (docs/math.md §6).

Conventions: paper indexing t = 1..T; data x0 of shape (n, d) (one example per row) unless
stated; every term is per example, in nats, summed over the d dimensions; bits per dimension
= nats / (d ln 2).

A *model* is any callable ``model(xt, t) -> (mean, variance)`` giving p_theta(x_{t-1} | x_t) =
N(mean, diag(variance)), where xt has shape (m, d), t is an int64 array of shape (m,) with
values in 1..T, mean has shape (m, d) and variance shape (m, d) or (m,) (isotropic).
`eps_model` builds one from a noise predictor.

    L = L_T + sum_{t=2}^T L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))
    L_{t-1} = E_{q(x_t | x_0)} KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
    L_0     = -E_{q(x_1 | x_0)} log p_theta(x_0 | x_1)   (continuous density or discretised mass)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._checks import as_data, as_float, as_timestep, expand_to, same_shape
from .gaussian import (LOG_2PI, _discretized_log_likelihood, kl_normal_unchecked, normal_log_density_unchecked,
                       _u_minus_log1p, grid_levels)
from .conventions import Variance
from .forward import noised
from .posterior import mean_from_eps, mu_tilde, q_posterior
from .schedules import Schedule, check_schedule, coef_at

VARIANCE_KINDS = Variance.REFERENCE
DECODERS = ("continuous", "discretized")
Model = Callable[[np.ndarray, np.ndarray], tuple]


def _choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


# -- model variances and the DDPM model -------------------------------------------------

def model_variance(schedule: Schedule, t, kind: str, v=None) -> tuple[np.ndarray, np.ndarray]:
    """sigma_t^2 and log sigma_t^2 of p_theta(x_{t-1} | x_t) (docs/math.md §6). Returns (variance, log_variance).

    - ``fixed_large``: sigma_t^2 = beta_t.
    - ``fixed_small``: sigma_t^2 = beta_tilde_t, with t = 1 clipped to beta_tilde_2 (beta_tilde_1 = 0
      would make the decoder a point mass); improved-diffusion's ``posterior_log_variance_clipped``.
    - ``learned_range``: log sigma_t^2 = v log beta_t + (1 - v) log beta_tilde_t (clipped), v in [0, 1]
      of the data's shape (t = its leading axes). Improved DDPM's network outputs v' in [-1, 1]
      and uses v = (v' + 1) / 2.
    Shapes: t.shape for the fixed kinds, v.shape for learned_range.
    """
    check_schedule(schedule)
    _choice("kind", kind, VARIANCE_KINDS)
    if t is None:
        raise ValueError(f"t is required: an integer or integer array in 1..T={schedule.T}")
    if kind != Variance.LEARNED_RANGE:
        if v is not None:
            raise ValueError(f"v is only used with kind='learned_range'; got kind={kind!r} and a v")
        log_var = schedule.log_beta(t) if kind == Variance.FIXED_LARGE else schedule.log_beta_tilde_clipped(t)
        return np.exp(log_var), log_var
    if v is None:
        raise ValueError("v is required with kind='learned_range' (the interpolation weight in [0, 1])")
    v = as_float("v", v)
    if np.any((v < 0) | (v > 1)):
        raise ValueError(f"v must lie in [0, 1] (log sigma^2 = v log beta + (1 - v) log beta_tilde); "
                         f"got {v[(v < 0) | (v > 1)][:3]}")
    log_var = learned_range_log_variance(v, coef_at(schedule, "log_beta", t, v.shape, "v"),
                                         coef_at(schedule, "log_beta_tilde_clipped", t, v.shape, "v"))
    return np.exp(log_var), log_var


def noise_error_weight(schedule: Schedule, t=None, variance: str = Variance.FIXED_LARGE) -> np.ndarray:
    """lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)): the weight of ||eps - eps_theta||^2 in
    the t-th term of the negative ELBO of a noise-predicting model with a fixed variance (the KL
    for t >= 2; the continuous decoder at t = 1, where it is beta_1 / (2 sigma_1^2 alpha_1)),
    sigma_t^2 by `model_variance`. Shape of t (every t = 1..T when t is None); nats per unit of
    squared error. docs/math.md §6.
    """
    check_schedule(schedule)
    _choice("variance", variance, Variance.FIXED)
    t = np.arange(1, schedule.T + 1) if t is None else as_timestep("t", t, schedule.T)
    if np.any(schedule.alpha(t) == 0):
        raise ValueError("t: lambda_t divides by alpha_t, which is 0 at t = T of a zero-terminal-SNR schedule")
    sigma2, _ = model_variance(schedule, t, variance)
    return schedule.beta(t) ** 2 / (2 * sigma2 * schedule.alpha(t) * schedule.one_minus_alpha_bar(t))


def learned_range_log_variance(v, log_beta, log_beta_tilde) -> np.ndarray:
    """log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t (improved DDPM's learned range, v in
    [0, 1]), broadcasting, not validated: the one place the interpolation is formed
    (`model_variance`, and the checks, which give log beta_tilde_1 by the target's convention)."""
    return v * log_beta + (1 - v) * log_beta_tilde


def eps_model(schedule: Schedule, eps_fn: Callable, variance: str = Variance.FIXED_SMALL) -> Model:
    """The DDPM model built from a noise predictor (docs/math.md §6).

    mean = mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t); variance by
    `model_variance`. ``eps_fn(xt, t)`` returns eps_theta of xt's shape, or for
    ``variance='learned_range'`` a pair (eps_theta, v) with v in [0, 1] of xt's shape.
    """
    check_schedule(schedule)
    _choice("variance", variance, VARIANCE_KINDS)
    if not callable(eps_fn):
        raise ValueError(f"eps_fn must be callable as eps_fn(xt, t); got {type(eps_fn).__name__}")

    alpha = schedule.alpha()
    live = alpha > 0
    inv_sqrt_alpha = np.where(live, 1.0 / np.sqrt(np.where(live, alpha, 1.0)), np.nan)
    eps_coef = schedule.beta() / np.sqrt(schedule.one_minus_alpha_bar())
    all_t = np.arange(1, schedule.T + 1)
    fixed_var = None if variance == Variance.LEARNED_RANGE else model_variance(schedule, all_t, variance)[0]
    first_dead_t = int(all_t[~live][0]) if not live.all() else schedule.T + 1

    def model(xt, t):
        xt = as_data("xt", xt, copy=False)
        t = as_timestep("t", t, schedule.T)
        expand_to(t, xt.shape, x_name="xt")
        out = eps_fn(xt, t)
        if variance == Variance.LEARNED_RANGE:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError("eps_fn must return (eps, v) when variance='learned_range'")
            eps, v = out
            if np.shape(v) != xt.shape:
                raise ValueError(f"eps_fn's v must have the shape of xt {xt.shape}; got {np.shape(v)}")
            var, _ = model_variance(schedule, t, Variance.LEARNED_RANGE, v)
        else:
            eps = out
            var = np.take(fixed_var, t - 1)
        eps = as_data("eps", eps, copy=False)
        if eps.shape != xt.shape:
            raise ValueError(f"eps_fn must return eps of the shape of xt {xt.shape}; got {eps.shape}")
        if t.size and t.max() >= first_dead_t:
            raise ValueError("t: the noise form of mu_tilde_t divides by sqrt(alpha_t), and alpha_t = 0 at "
                             f"t = T = {schedule.T} of this schedule; use posterior_mean with x_0")
        grid = coefficient_rows(int(np.prod(xt.shape[t.ndim:], dtype=np.int64)))
        coef = np.take(grid, t.reshape(-1) - 1, axis=1).reshape((2,) + xt.shape)
        return mean_from_eps(coef[0], coef[1], xt, eps), var

    @functools.lru_cache(maxsize=8)
    def coefficient_rows(r: int) -> np.ndarray:
        """1 / sqrt(alpha_t) and beta_t / sqrt(1 - abar_t), each repeated r times per t: (2, T, r).
        Taken by rows (np.take), several times faster than indexing a (T,) table and repeating or
        broadcasting over a short trailing axis."""
        return np.repeat(np.stack([inv_sqrt_alpha, eps_coef]), r, axis=1).reshape(2, -1, r)

    return model


def call_model(model: Model, xt: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate `model` on xt (m, d) and t (m,); check its output: (mean, variance), both (m, d)
    float64 (a variance of shape (m,) is isotropic), finite, variance > 0.
    docs/math.md §6.
    """
    mean, var = _checked_output(model, xt, t)
    return mean, np.broadcast_to(var[..., None], mean.shape) if var.shape != mean.shape else var


def _checked_output(model: Model, xt: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`call_model`'s checks, the variance left of shape (m,) where the model gives it isotropic."""
    if not callable(model):
        raise ValueError(f"model must be callable as model(xt, t); got {type(model).__name__}")
    xt = as_data("xt", xt)
    out = model(xt, t)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(f"model must return a pair (mean, variance); got {type(out).__name__}")
    mean, var = (np.asarray(a, dtype=np.float64) for a in out)
    if mean.shape != xt.shape:
        raise ValueError(f"model mean must have shape {xt.shape} (that of xt); got {mean.shape}")
    if var.shape not in (xt.shape, xt.shape[:-1]):
        raise ValueError(f"model variance must have shape {xt.shape} or {xt.shape[:-1]}; got {var.shape}")
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise ValueError("model returned a non-finite mean or variance")
    if (var <= 0).any():
        raise ValueError("model returned a variance <= 0")
    return mean, var


# -- the terms ----------------------------------------------------------------------------

def prior_term(schedule: Schedule, x0) -> np.ndarray:
    """L_T = KL(q(x_T | x_0) || N(0, I)) = sum_d (abar_T x0^2 + g(-abar_T)) / 2 per example, nats.

    g(u) = u - log1p(u), with log1p(-abar_T) = log(1 - abar_T) from the schedule's accurate table
    (accurate also when abar_T is near 0 or near 1). Shape x0.shape[:-1].
    docs/math.md §6.
    """
    check_schedule(schedule)
    x0 = as_data("x0", x0)
    abar_T = schedule.alpha_bar(schedule.T)
    g = _u_minus_log1p(-abar_T, schedule.log_one_minus_alpha_bar(schedule.T))
    return 0.5 * (abar_T * np.sum(x0 ** 2, axis=-1) + x0.shape[-1] * g)


def kl_term(schedule: Schedule, x0, xt, t, model_mean, model_var) -> np.ndarray:
    """KL(q(x_{t-1} | x_t, x_0) || N(model_mean, model_var I)) per example, nats, for t in 2..T.

    The integrand of L_{t-1}; its q(x_t | x_0)-expectation is L_{t-1}. x0, xt, model_mean share a
    shape; model_var has that shape or is a scalar. t = 1 is the decoder term (`decoder_nll`).
    docs/math.md §6.
    """
    check_schedule(schedule)
    x0, xt = as_data("x0", x0), as_data("xt", xt)
    model_mean, model_var = as_float("model_mean", model_mean), as_float("model_var", model_var)
    same_shape(x0=x0, xt=xt, model_mean=model_mean, model_var=model_var)
    if np.any(model_var <= 0):
        raise ValueError(f"model_var must be > 0; got {model_var[model_var <= 0][:3]}")
    as_timestep("t", t, schedule.T, lo=2)
    posterior = q_posterior(schedule, x0, xt, t)
    return np.sum(kl_normal_unchecked(posterior.mean, posterior.variance, model_mean, model_var), axis=-1)


def decoder_nll(x0, model_mean, model_var, decoder: str = "continuous") -> np.ndarray:
    """-log p_theta(x_0 | x_1) per example, nats: the integrand of L_0.

    ``continuous``: -log N(x0; model_mean, model_var I). ``discretized``: -log of the Gaussian mass
    of x0's 8-bit bin (`gaussian.discretized_gaussian_log_likelihood`); x0 must be on that grid.
    docs/math.md §6.
    """
    _choice("decoder", decoder, DECODERS)
    x0 = as_data("x0", x0)
    model_mean, model_var = as_float("model_mean", model_mean), as_float("model_var", model_var)
    same_shape(x0=x0, model_mean=model_mean, model_var=model_var)
    if np.any(model_var <= 0):
        raise ValueError(f"model_var must be > 0; got {model_var[model_var <= 0][:3]}")
    return -np.sum(_decoder_log_prob(decoder, *np.broadcast_arrays(x0, model_mean, model_var)), axis=-1)


def _per_dim(var, d: int) -> np.ndarray:
    """An isotropic variance (...,) repeated over the d data dimensions; a (..., d) one as it is."""
    return var if var.ndim == 2 else np.broadcast_to(var[:, None], var.shape + (d,))


def _decoder_log_prob(decoder, x0, mean, var, k=None):
    if decoder == "continuous":
        return normal_log_density_unchecked(x0, mean, var)
    return _discretized_log_likelihood(x0, grid_levels(x0) if k is None else k, mean, var)


def nats_to_bits_per_dim(nats, d: int) -> np.ndarray:
    """bits per dimension = nats / (d ln 2).

    docs/math.md §6.
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1 (the number of data dimensions); got {d!r}")
    nats = as_float("nats", nats, allow_nonfinite=True)      # +inf (-log 0) converts to +inf
    if np.any(np.isnan(nats)):
        raise ValueError("nats must not be nan")
    return nats / (d * math.log(2.0))


# -- estimators ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ElboEstimate:
    """Monte Carlo estimate of E[-ELBO] over the rows of x0, one independent draw per row.

    per_sample_nats: (n,) the estimator's value for each row.
    terms_nats: (T + 1,) mean contribution of each term; index 0 is the t = 1 (decoder) term,
        index t - 1 the term of step t, index T the prior term; they sum to mean_nats.
    docs/math.md §6.
    """

    per_sample_nats: np.ndarray
    terms_nats: np.ndarray
    d: int

    @property
    def n(self) -> int:
        return self.per_sample_nats.size

    @property
    def mean_nats(self) -> float:
        return float(np.mean(self.per_sample_nats))

    @property
    def stderr_nats(self) -> float:
        """Sample standard deviation / sqrt(n)."""
        return float(np.std(self.per_sample_nats, ddof=1) / math.sqrt(self.n))

    @property
    def mean_bpd(self) -> float:
        return float(nats_to_bits_per_dim(self.mean_nats, self.d))

    @property
    def stderr_bpd(self) -> float:
        return float(nats_to_bits_per_dim(self.stderr_nats, self.d))


def _estimator_inputs(schedule, model, x0, rng, decoder, chunk_elements):
    check_schedule(schedule)
    if not callable(model):
        raise ValueError(f"model must be callable as model(xt, t); got {type(model).__name__}")
    x0 = as_data("x0", x0)
    if x0.ndim != 2 or x0.shape[0] < 2:
        raise ValueError(f"x0 must have shape (n, d) with n >= 2 rows (one draw per row); got {x0.shape}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)); "
                         f"got {type(rng).__name__}")
    _choice("decoder", decoder, DECODERS)
    k = grid_levels(x0) if decoder == "discretized" else None
    if isinstance(chunk_elements, bool) or not isinstance(chunk_elements, (int, np.integer)) or chunk_elements < 1:
        raise ValueError(f"chunk_elements must be a positive integer; got {chunk_elements!r}")
    rows = max(1, int(chunk_elements) // (schedule.T * x0.shape[1]))
    return x0, k, rows


def _model_on_grid(model, x, T):
    """Evaluate the model at every (row, t) of x (m, T, d) in one call: the mean (m, T, d) and the
    variance, (m, T) where the model gives it isotropic, else (m, T, d)."""
    m, _, d = x.shape
    t = np.broadcast_to(np.arange(1, T + 1, dtype=np.int64), (m, T)).reshape(-1)
    mean, var = _checked_output(model, x.reshape(m * T, d), t)
    return mean.reshape(m, T, d), var.reshape((m, T) + var.shape[1:])


def _one_per_t(var: np.ndarray) -> bool:
    """An isotropic model variance (rows, T) that does not depend on the row (a fixed-variance
    model), so a function of it need be formed once per t."""
    return var.ndim >= 2 and bool((var == var[:1]).all())


def _kl_to_model(mu, v_q, mean, var) -> np.ndarray:
    """sum over the last axis of KL(N(mu, v_q) || N(mean, var)) for mu, mean (..., d), v_q (...) or
    broadcasting to it, and var (..., d) or isotropic (...): with an isotropic model variance the
    variance part d g(u) / 2 (`gaussian.kl_normal_unchecked`) is formed once per (row, t), and
    once per t where the variance does not depend on the row (a fixed-variance model)."""
    if var.ndim == mean.ndim:
        return np.sum(kl_normal_unchecked(mu, np.broadcast_to(v_q[..., None], mu.shape), mean, var), axis=-1)
    diff = mu - mean
    quad = _sum_last(diff * diff) / var
    v_q = np.broadcast_to(v_q, var.shape)
    if _one_per_t(var):                                        # the KL's constant once per t
        const = kl_normal_unchecked(np.zeros(1), v_q[:1], np.zeros(1), var[:1])
        return 0.5 * quad + mean.shape[-1] * const
    return 0.5 * quad + mean.shape[-1] * kl_normal_unchecked(np.zeros(1), v_q, np.zeros(1), var)


def _log_density_to_model(x, mean, var) -> np.ndarray:
    """sum over the last axis of log N(x; mean, var), var (..., d) or isotropic (...)."""
    if var.ndim == mean.ndim:
        return np.sum(normal_log_density_unchecked(x, mean, var), axis=-1)
    diff = x - mean
    log_var = np.log(var[:1]) if _one_per_t(var) else np.log(var)           # once per t where it can be
    return -0.5 * (mean.shape[-1] * (LOG_2PI + log_var) + _sum_last(diff * diff) / var)


def _sum_last(a: np.ndarray) -> np.ndarray:
    """The sum over the last axis; for a short one (d <= 8) as d - 1 additions of strided views,
    several times faster than a reduction over it."""
    d = a.shape[-1]
    if d > 8:
        return a.sum(axis=-1)
    out = a[..., 0].copy()
    for j in range(1, d):
        out += a[..., j]
    return out


class _Terms:
    """The estimators' terms L_0..L_T of one chunk of rows at a time, (m, T + 1), in one buffer kept for
    every chunk, so no (n, T + 1) array is formed (80 MB at n = 10 000, T = 1000). Kept: each row's total, and the column sums over the rows
    so far, added row after row in row order (the buffer's row 0 carries them into the next
    chunk), as a sum over the whole (n, T + 1) array adds them: the same numbers, whatever the
    chunks."""

    def __init__(self, n: int, rows: int, T: int):
        self._buf = np.empty((min(rows, n) + 1, T + 1))
        self._rows = 0
        self.per_sample = np.empty(n)

    def block(self, m: int) -> np.ndarray:
        """The (m, T + 1) terms of the next chunk, to be filled."""
        self._rows = m
        return self._buf[1:1 + m]

    def add(self, lo: int) -> None:
        """Take in the chunk of rows lo..lo + m - 1."""
        m = self._rows
        self.per_sample[lo:lo + m] = self._buf[1:1 + m].sum(axis=1)
        self._buf[0] = np.add.reduce(self._buf[(1 if lo == 0 else 0):1 + m], axis=0)

    def estimate(self, d: int) -> ElboEstimate:
        return ElboEstimate(self.per_sample, self._buf[0] / self.per_sample.size, d)


COUPLINGS = ("independent", "trajectory")


def neg_elbo_kl_estimator(schedule: Schedule, model: Model, x0, rng: np.random.Generator, *,
                          decoder: str = "continuous", coupling: str = "independent",
                          chunk_elements: int = 1 << 17) -> ElboEstimate:
    """Closed-form-KL estimator of the negative ELBO (docs/math.md §6), nats per example.

    For each row of x0 and every t = 1..T, draw x_t ~ q(x_t | x_0) and evaluate the L_{t-1} KL in
    closed form (t >= 2) or -log p_theta(x_0 | x_1) (t = 1); add L_T exactly. ``coupling``:
    ``independent`` draws each x_t afresh (as improved-diffusion's calc_bpd_loop does);
    ``trajectory`` takes all x_t from one forward trajectory (`forward_trajectories`), the
    Rao-Blackwellised trajectory estimator. Both are unbiased; their variances differ.
    Vectorised over t: the model is called once per chunk of rows on all (row, t) pairs.
    Draws: rng.standard_normal((n, T, d)) in row order, so the result does not depend on
    chunk_elements (the number of array elements processed at once).
    """
    x0, k, rows = _estimator_inputs(schedule, model, x0, rng, decoder, chunk_elements)
    _choice("coupling", coupling, COUPLINGS)
    n, d = x0.shape
    T = schedule.T
    # every per-t coefficient as a (T, d) grid, and x_0 repeated over t: the arithmetic then runs
    # over (m, T, d) arrays broadcast along m only, in long contiguous inner loops
    sa, s1 = _grid(np.sqrt(schedule.alpha_bar()), d), _grid(np.sqrt(schedule.one_minus_alpha_bar()), d)
    c0, c1 = _grid(schedule.posterior_coef_x0()[1:], d), _grid(schedule.posterior_coef_xt()[1:], d)
    trajectory = _TrajectoryGrid(schedule, d) if coupling == "trajectory" else None
    bt = schedule.beta_tilde()[1:]
    terms = _Terms(n, rows, T)
    for lo in range(0, n, rows):
        xc = np.repeat(x0[lo:lo + rows], T, axis=0).reshape(-1, T, d)         # (m, T, d)
        noise = rng.standard_normal(xc.shape)
        xt = (noised(sa, s1, xc, noise) if coupling == "independent"
              else _trajectories(trajectory, xc[:, 0], noise))
        mean, var = _model_on_grid(model, xt, T)
        block = terms.block(xc.shape[0])
        kc = None if k is None else k[lo:lo + rows]
        block[:, 0] = -np.sum(_decoder_log_prob(decoder, xc[:, 0], mean[:, 0], _per_dim(var[:, 0], d), kc), axis=-1)
        block[:, 1:T] = _kl_to_model(mu_tilde(c0, c1, xc[:, 1:], xt[:, 1:]), bt, mean[:, 1:], var[:, 1:])
        block[:, T] = prior_term(schedule, xc[:, 0])
        terms.add(lo)
    return terms.estimate(d)


def forward_trajectories(schedule: Schedule, x0: np.ndarray, z: np.ndarray) -> np.ndarray:
    """x_{1:T} of the forward chain x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z_t, shape (m, T, d).

    Vectorised over t with the solved recursion x_t = sqrt(abar_t) (x_0 + sum_{s<=t} sqrt(beta_s / abar_s) z_s);
    a step with abar_t = 0 (zero terminal SNR, t = T) is taken by the kernel itself.
    x0: (m, d); z: (m, T, d) standard normals.
    docs/math.md §3, §6.
    """
    check_schedule(schedule)
    x0, z = as_data("x0", x0), as_data("z", z)
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (m, d); got {x0.shape}")
    if z.shape != (x0.shape[0], schedule.T, x0.shape[1]):
        raise ValueError(f"z must have shape (m, T, d) = {(x0.shape[0], schedule.T, x0.shape[1])} to match "
                         f"x0 of shape {x0.shape} and T = {schedule.T}; got z of shape {z.shape}")
    return _trajectories(_TrajectoryGrid(schedule, x0.shape[1]), x0, z)


class _TrajectoryGrid:
    """The solved recursion's coefficients sqrt(abar_t) and sqrt(beta_t / abar_t) as (T, d) grids,
    formed once per estimate (materialised: a broadcast over a short last axis d is several times
    slower than arrays of one shape)."""

    def __init__(self, schedule: Schedule, d: int):
        abar, beta = schedule.alpha_bar(), schedule.beta()
        live = abar > 0
        w = np.zeros_like(abar)
        w[live] = np.sqrt(beta[live] / abar[live])
        self.sqrt_abar, self.w = _grid(np.sqrt(abar), d), _grid(w, d)
        # only t = T can have abar_t = 0; that step is taken by the kernel itself
        self.dead = [(i, math.sqrt(schedule.alpha(i + 1)), math.sqrt(beta[i])) for i in np.flatnonzero(~live)]


def _grid(c: np.ndarray, d: int) -> np.ndarray:
    """A per-t coefficient (T,) repeated over d data dimensions: (T, d)."""
    return np.repeat(c, d).reshape(-1, d)


def _trajectories(grid: _TrajectoryGrid, x0: np.ndarray, z: np.ndarray) -> np.ndarray:
    """`forward_trajectories` without its checks, in one buffer of z's shape."""
    x = np.multiply(grid.w, z)
    x[:, 0] += x0                                          # x_0 + sum_{s<=t} sqrt(beta_s / abar_s) z_s
    np.cumsum(x, axis=1, out=x)
    x *= grid.sqrt_abar
    for i, sqrt_alpha, sqrt_beta in grid.dead:
        prev = x[:, i - 1] if i else x0
        x[:, i] = sqrt_alpha * prev + sqrt_beta * z[:, i]
    return x


def neg_elbo_trajectory_estimator(schedule: Schedule, model: Model, x0, rng: np.random.Generator, *,
                                  decoder: str = "continuous",
                                  chunk_elements: int = 1 << 17) -> ElboEstimate:
    """Trajectory Monte Carlo estimator of the negative ELBO (docs/math.md §6, seeds/001_afc8e6d75670c661.txt eq. 4.9), nats.

    One forward trajectory x_{1:T} per row of x0, and the value
    -log p(x_T) - sum_{t=1}^T [log p_theta(x_{t-1} | x_t) - log q(x_t | x_{t-1})],
    with log p_theta(x_0 | x_1) the continuous or discretised decoder. log q(x_t | x_{t-1}) is
    evaluated from the drawn noise, -(log(2 pi beta_t) + z_t^2) / 2 per dimension, without
    cancellation. Vectorised over samples and t (one model call per chunk of rows).
    Draws: rng.standard_normal((n, T, d)) in row order.
    """
    x0, k, rows = _estimator_inputs(schedule, model, x0, rng, decoder, chunk_elements)
    n, d = x0.shape
    T = schedule.T
    log_beta = schedule.log_beta()
    grid = _TrajectoryGrid(schedule, d)
    terms = _Terms(n, rows, T)
    for lo in range(0, n, rows):
        xc = x0[lo:lo + rows]
        z = rng.standard_normal((xc.shape[0], T, d))
        x = _trajectories(grid, xc, z)
        mean, var = _model_on_grid(model, x, T)
        block = terms.block(xc.shape[0])
        kc = None if k is None else k[lo:lo + rows]
        log_q = -0.5 * (d * (LOG_2PI + log_beta) + _sum_last(z * z))                       # (m, T)
        block[:, 0] = np.sum(_decoder_log_prob(decoder, xc, mean[:, 0], _per_dim(var[:, 0], d), kc), axis=-1)
        block[:, 1:T] = _log_density_to_model(x[:, :-1], mean[:, 1:], var[:, 1:])
        block[:, :T] = log_q - block[:, :T]
        block[:, T] = 0.5 * (d * LOG_2PI + np.sum(x[:, -1] ** 2, axis=-1))
        terms.add(lo)
    return terms.estimate(d)
