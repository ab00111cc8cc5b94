"""Gaussian data: exact oracles for whole sampling loops and losses (docs/math.md §11).

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

from .conventions import Prediction, Variance
from ._checks import as_data, as_float, as_positive, as_scalar, as_timestep, expand_to
from .ddim import ddim_coefficients
from .gaussian import DiagonalNormal
from .parameterisations import v_from_x0_eps, velocity, x0_and_eps, x0_from_eps
from .respacing import as_sequence
from .schedules import Schedule, check_schedule

PROCESSES = ("ddpm", "ddim")
DDPM_VARIANCES = Variance.FIXED
PREDICTIONS = Prediction.REFERENCE


class GaussianData:
    """x_0 ~ N(mean, variance) independently per dimension: mean (d,), variance (d,) > 0 (a
    scalar variance is the same in every dimension). docs/math.md §11."""

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

    def prediction(self, schedule: Schedule, t,
                   prediction_type: str = Prediction.EPSILON) -> tuple[np.ndarray, np.ndarray]:
        """(slope, intercept), each of shape t.shape + (d,), of the optimal prediction, affine in x_t:
        ``sample``: E[x_0 | x_t] = mu + sqrt(abar_t) s^2 (x_t - sqrt(abar_t) mu) / D_t;
        ``epsilon``: E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / D_t;
        ``v_prediction``: E[v | x_t] = sqrt(abar_t) eps* - sqrt(1 - abar_t) x0*."""
        if prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTIONS)}; got {prediction_type!r}")
        ab, om, D = self._abar(schedule, t, None)
        x0 = np.sqrt(ab) * self.variance / D, self.mean * om / D
        eps = np.sqrt(om) / D, -np.sqrt(ab * om) * self.mean / D
        if prediction_type == Prediction.SAMPLE:
            return x0
        if prediction_type == Prediction.EPSILON:
            return eps
        return (velocity(np.sqrt(ab), np.sqrt(om), x0[0], eps[0]),
                velocity(np.sqrt(ab), np.sqrt(om), x0[1], eps[1]))

    def _predict(self, xt, schedule: Schedule, t, prediction_type: str) -> np.ndarray:
        xt = self._x("xt", xt)
        t = as_timestep("t", t, check_schedule(schedule).T)
        slope, intercept = self.prediction(schedule, expand_to(t, xt.shape[:-1], x_name="xt"), prediction_type)
        return slope * xt + intercept

    def x0_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[x_0 | x_t] (`prediction` ``sample``), shape of xt."""
        return self._predict(xt, schedule, t, Prediction.SAMPLE)

    def eps_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[eps | x_t], the optimal noise predictor (`prediction` ``epsilon``), shape of xt."""
        return self._predict(xt, schedule, t, Prediction.EPSILON)

    def v_star(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[v | x_t] = sqrt(abar_t) eps* - sqrt(1 - abar_t) x0* (`prediction` ``v_prediction``)."""
        return self._predict(xt, schedule, t, Prediction.V)

    def eps_variance(self, schedule: Schedule, t) -> np.ndarray:
        """Var(eps | x_t) = abar_t s^2 / D_t per dimension, shape t.shape + (d,): the least
        achievable E(eps - f(x_t))^2 per dimension."""
        ab, _, D = self._abar(schedule, t, None)
        return ab * self.variance / D

    def regression_error(self, schedule: Schedule, t, *, target: str, prediction_type: str, offset=0.0,
                         gain=0.0) -> DiagonalNormal:
        """The distribution N(mean, variance) per dimension of e = y - y_hat at t, shape t.shape + (d,),
        for a loss regressing `target` y (``epsilon``, ``sample`` = x_0, ``v_prediction``) on a network
        whose output, of type `prediction_type`, is the optimal prediction plus delta = offset +
        gain x_t, converted to the target's type with the tables at t.

        At fixed x_t every type is affine in the true eps with slope g_y (1; -sqrt((1 - abar_t) /
        abar_t); 1 / sqrt(abar_t)), so y - E[y | x_t] = g_y (eps - eps*), independent of x_t with
        variance g_y^2 Var(eps | x_t), and y_hat - E[y | x_t] = (g_y / g_p) delta. Hence e is
        Gaussian with mean -(g_y / g_p)(offset + gain sqrt(abar_t) mu) and variance
        g_y^2 abar_t s^2 / D_t + (g_y / g_p)^2 gain^2 D_t (docs/math.md §11). E[e^2] = mean^2 + variance;
        Var[e^2] = 2 variance^2 + 4 mean^2 variance."""
        for name, kind in (("target", target), ("prediction_type", prediction_type)):
            if kind not in PREDICTIONS:
                raise ValueError(f"{name} must be one of {', '.join(PREDICTIONS)}; got {kind!r}")
        offset, gain = as_scalar("offset", offset), as_scalar("gain", gain)
        ab, _, D = self._abar(schedule, t, None)
        t = as_timestep("t", t, schedule.T)
        slope = {kind: self._eps_slope(schedule, t, kind) for kind in {target, prediction_type}}
        r = slope[target] / slope[prediction_type]
        mean = -r * (offset + gain * np.sqrt(ab) * self.mean)
        variance = slope[target] ** 2 * self.eps_variance(schedule, t) + (r * gain) ** 2 * D
        return DiagonalNormal(mean, variance, np.log(variance))

    def _eps_slope(self, schedule: Schedule, t, kind: str) -> np.ndarray:
        """d y / d eps at fixed x_t for y of `kind`, shape t.shape + (1,): the conversions of
        `parameterisations` at x_t = 0, eps = 1."""
        one = np.ones(t.shape + (1,))
        if kind == Prediction.EPSILON:
            return one
        x0 = x0_from_eps(schedule, 0 * one, t, one)
        return x0 if kind == Prediction.SAMPLE else v_from_x0_eps(schedule, x0, t, one)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws of x_0, shape (n, d)."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1; got {n!r}")
        return self.mean + np.sqrt(self.variance) * rng.standard_normal((int(n), self.d))

    def step_coefficients(self, schedule: Schedule, tau, *, process: str = "ddpm", variance: str = Variance.FIXED_SMALL,
                          eta: float = 0.0, final_alpha_bar: float = 1.0, prediction_type: str = Prediction.EPSILON,
                          next_tau=None, model_tau=None, step_schedule: Schedule | None = None):
        """(A, B, sigma), each of shape (S, d): step i of the loop over `tau` (paper t, strictly
        decreasing, then 0) run with the optimal predictor is x_prev = A_i x + B_i + sigma_i z.

        The step from t = tau_i to s (`next_tau`, default tau_{i+1}, then 0) takes the prediction
        of type `prediction_type` at `model_tau`_i (default t; another t models a network called
        with the wrong timestep), turns it into x0_hat and eps_hat with the tables at t of
        `step_schedule` (default `schedule`; another models a loop whose tables differ from the
        schedule the data were noised with) (`parameterisations`), and applies `ddim.ddim_coefficients`: with eta for ``ddim`` (the
        last step to abar `final_alpha_bar`), with eta = 1 for ``ddpm``, whose mean is then the
        strided posterior mean (docs/math.md §10) and whose variance is beta_tilde' (fixed_small) or
        beta' = 1 - abar_t / abar_s (fixed_large), no noise on a step to s = 0."""
        check_schedule(schedule)
        tables = schedule if step_schedule is None else check_schedule(step_schedule, "step_schedule")
        if tables.T != schedule.T:
            raise ValueError(f"step_schedule must have T = {schedule.T} like schedule; got T = {tables.T}")
        tau = as_sequence("tau", tau, schedule.T)
        if process not in PROCESSES:
            raise ValueError(f"process must be one of {', '.join(PROCESSES)}; got {process!r}")
        if variance not in DDPM_VARIANCES:
            raise ValueError(f"variance must be one of {', '.join(DDPM_VARIANCES)}; got {variance!r}")
        s = np.concatenate([tau[1:], [0]]) if next_tau is None else _per_step("next_tau", next_tau, tau.shape)
        m = tau if model_tau is None else _per_step("model_tau", model_tau, tau.shape)
        m = as_timestep("model_tau", m, schedule.T)
        t2 = np.broadcast_to(tau[:, None], (tau.size, self.d))
        slope, intercept = self.prediction(schedule, m, prediction_type)     # (S, d)
        # the conversions are linear in (x_t, output): the slope's image at x_t = 1, the intercept's at 0
        (x0_a, eps_a), (x0_b, eps_b) = (x0_and_eps(tables, np.ones_like(slope), t2, slope, prediction_type),
                                        x0_and_eps(tables, np.zeros_like(slope), t2, intercept, prediction_type))
        x0, eps = (x0_a, x0_b), (eps_a, eps_b)
        step_eta = 1.0 if process == "ddpm" else eta
        final = final_alpha_bar if process == "ddim" else 1.0
        a_x0, a_eps, sigma = (a[:, None] for a in ddim_coefficients(tables, tau, s, step_eta,
                                                                     final_alpha_bar=final))
        if process == "ddpm" and variance == Variance.FIXED_LARGE:
            sigma = np.sqrt(tables.one_minus_alpha_bar_ratio(s, tau))[:, None]
        if process == "ddpm":
            sigma = np.where(s[:, None] > 0, sigma, 0.0)
        A = a_x0 * x0[0] + a_eps * eps[0]
        B = a_x0 * x0[1] + a_eps * eps[1]
        return A, B, np.broadcast_to(sigma, A.shape).copy()

    def chain_states(self, A, B, sigma) -> DiagonalNormal:
        """The distribution N(m_i, V_i) per dimension of the loop's state before step i, i = 0..S
        (i = S: the output), started at x ~ N(0, I), through x <- A_i x + B_i + sigma_i z
        (`step_coefficients`): m <- A m + B, V <- A^2 V + sigma^2. Arrays of shape (S + 1, d)."""
        A, B, sigma = (as_float(name, a) for name, a in (("A", A), ("B", B), ("sigma", sigma)))
        if A.ndim != 2 or A.shape[1] != self.d or B.shape != A.shape or sigma.shape != A.shape:
            raise ValueError(f"A, B and sigma must have one shape (S, d = {self.d}); got {A.shape}, {B.shape}, "
                             f"{sigma.shape}")
        m, V = np.zeros((A.shape[0] + 1, self.d)), np.ones((A.shape[0] + 1, self.d))
        for i, (a, b, s) in enumerate(zip(A, B, sigma)):
            m[i + 1], V[i + 1] = a * m[i] + b, a ** 2 * V[i] + s ** 2
        with np.errstate(divide="ignore"):                # V = 0: a deterministic state, log V = -inf
            return DiagonalNormal(m, V, np.log(V))

    def sampler_output(self, schedule: Schedule, tau, **process) -> DiagonalNormal:
        """The exact distribution N(m, V) per dimension of the loop's output x_0, started at
        x_{tau_1} ~ N(0, I), for the process of `step_coefficients` (same keywords)."""
        states = self.chain_states(*self.step_coefficients(schedule, tau, **process))
        return DiagonalNormal(states.mean[-1], states.variance[-1], states.log_variance[-1])


def _per_step(name: str, values, shape) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != shape or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array of shape {shape}, one entry per step; got {a.shape} "
                         f"of dtype {a.dtype}")
    return a.astype(np.int64)
