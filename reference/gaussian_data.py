"""Gaussian data: exact oracles for whole sampling loops and losses (MATH.md 11).

With x_0 ~ N(mu, s^2) independently in each dimension and D_t = abar_t s^2 + 1 - abar_t,
q(x_t) = N(sqrt(abar_t) mu, D_t), and the optimal predictions are affine in x_t:
E[x_0 | x_t] = mu + sqrt(abar_t) s^2 (x_t - sqrt(abar_t) mu) / D_t,
E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / D_t, Var(eps | x_t) = abar_t s^2 / D_t.
So every DDPM or DDIM step run with them is x_prev = A x_t + B + sigma z, and the output of a
whole loop started at x ~ N(0, 1) is N(m, V) per dimension exactly, by m <- A m + B,
V <- A^2 V + sigma^2 through the steps.

Paper indexing; data of shape (..., d); mean and variance per dimension, shape (d,).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_data, as_float, as_positive, as_timestep, expand_to
from .ddim import ddim_coefficients
from .gaussian import DiagonalNormal
from .respacing import as_sequence, respace
from .schedules import Schedule, check_schedule

PROCESSES = ("ddpm", "ddim")
DDPM_VARIANCES = ("fixed_small", "fixed_large")


class GaussianData:
    """x_0 ~ N(mean, variance) independently per dimension: mean (d,), variance (d,) > 0 (a
    scalar variance is the same in every dimension). MATH.md section 11."""

    def __init__(self, mean, variance):
        self.mean = as_float("mean", mean)
        if self.mean.ndim != 1 or self.mean.size < 1:
            raise ValueError(f"mean must have shape (d,) with d >= 1; got {self.mean.shape}")
        self.d = self.mean.size
        var = as_positive("variance", variance)
        if var.shape not in ((), (self.d,)):
            raise ValueError(f"variance must be a number or have shape (d,) = ({self.d},); got {var.shape}")
        self.variance = np.broadcast_to(var, (self.d,)).copy()

    def _x(self, name, x):
        x = as_data(name, x)
        if x.shape[-1] != self.d:
            raise ValueError(f"{name} must have last axis d = {self.d}; got shape {x.shape}")
        return x

    def _abar(self, schedule: Schedule, t, shape):
        check_schedule(schedule)
        t = as_timestep("t", t, schedule.T)
        lead = shape[:-1] if shape is not None else t.shape
        ab = expand_to(schedule.alpha_bar(t), lead, x_name="xt")[..., None]
        om = expand_to(schedule.one_minus_alpha_bar(t), lead, x_name="xt")[..., None]
        return ab, om, ab * self.variance + om

    def marginal(self, schedule: Schedule, t) -> DiagonalNormal:
        """q(x_t) = N(sqrt(abar_t) mu, D_t) per dimension; arrays of shape t.shape + (d,)."""
        ab, _, D = self._abar(schedule, t, None)
        return DiagonalNormal(np.sqrt(ab) * self.mean, D, np.log(D))

    def x0_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[x_0 | x_t] = mu + sqrt(abar_t) s^2 (x_t - sqrt(abar_t) mu) / D_t."""
        xt = self._x("xt", xt)
        ab, _, D = self._abar(schedule, t, xt.shape)
        return self.mean + np.sqrt(ab) * self.variance * (xt - np.sqrt(ab) * self.mean) / D

    def eps_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / D_t, the optimal noise predictor."""
        xt = self._x("xt", xt)
        ab, om, D = self._abar(schedule, t, xt.shape)
        return np.sqrt(om) * (xt - np.sqrt(ab) * self.mean) / D

    def v_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[v | x_t] = sqrt(abar_t) eps* - sqrt(1 - abar_t) x0*."""
        xt = self._x("xt", xt)
        ab, om, _ = self._abar(schedule, t, xt.shape)
        return np.sqrt(ab) * self.eps_star(xt, schedule, t) - np.sqrt(om) * self.x0_star(xt, schedule, t)

    def eps_variance(self, schedule: Schedule, t) -> np.ndarray:
        """Var(eps | x_t) = abar_t s^2 / D_t per dimension, shape t.shape + (d,): the least
        achievable E(eps - f(x_t))^2 per dimension."""
        ab, _, D = self._abar(schedule, t, None)
        return ab * self.variance / D

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws of x_0, shape (n, d)."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1; got {n!r}")
        return self.mean + np.sqrt(self.variance) * rng.standard_normal((int(n), self.d))

    def step_coefficients(self, schedule: Schedule, tau, *, process: str = "ddpm", variance: str = "fixed_small",
                          eta: float = 0.0, final_alpha_bar: float = 1.0):
        """(A, B, sigma), each of shape (S, d): step i of the loop over `tau` (paper t, strictly
        decreasing, then 0) run with the optimal predictor is x_prev = A_i x + B_i + sigma_i z.
        ``ddpm``: the strided posterior mean mu_tilde'(x0*, x) and variance beta_tilde'
        (fixed_small) or beta' (fixed_large) of `respacing.respace`, no noise on the last step;
        ``ddim``: `ddim.ddim_coefficients` with eta, the last step to abar `final_alpha_bar`."""
        check_schedule(schedule)
        tau = as_sequence("tau", tau, schedule.T)
        if process not in PROCESSES:
            raise ValueError(f"process must be one of {', '.join(PROCESSES)}; got {process!r}")
        if variance not in DDPM_VARIANCES:
            raise ValueError(f"variance must be one of {', '.join(DDPM_VARIANCES)}; got {variance!r}")
        s_seq = np.concatenate([tau[1:], [0]])
        ab, om, D = self._abar(schedule, tau, None)                       # (S, d)
        k = np.sqrt(ab) * self.variance / D                               # x0* = k x + c
        c = self.mean * om / D
        if process == "ddpm":
            chain = respace(schedule, tau[::-1])
            j = np.arange(tau.size, 0, -1)                                # index of each step in the chain
            c0, c1 = chain.posterior_coef_x0(j)[:, None], chain.posterior_coef_xt(j)[:, None]
            var = (chain.beta_tilde(j) if variance == "fixed_small" else chain.beta(j))[:, None]
            sigma = np.where(j[:, None] > 1, np.sqrt(var), 0.0)
            return c0 * k + c1, c0 * c, np.broadcast_to(sigma, k.shape)
        a_x0, a_eps, sig = (a[:, None] for a in ddim_coefficients(schedule, tau, s_seq, eta,
                                                                   final_alpha_bar=final_alpha_bar))
        e_k, e_c = np.sqrt(om) / D, -np.sqrt(ab * om) * self.mean / D      # eps* = e_k x + e_c
        return a_x0 * k + a_eps * e_k, a_x0 * c + a_eps * e_c, np.broadcast_to(sig, k.shape)

    def sampler_output(self, schedule: Schedule, tau, **process) -> DiagonalNormal:
        """The exact distribution N(m, V) per dimension of the loop's output x_0, started at
        x_{tau_1} ~ N(0, I), for the process of `step_coefficients` (same keywords)."""
        A, B, sigma = self.step_coefficients(schedule, tau, **process)
        m, V = np.zeros(self.d), np.ones(self.d)
        for a, b, s in zip(A, B, sigma):
            m, V = a * m + b, a ** 2 * V + s ** 2
        return DiagonalNormal(m, V, np.log(V))
