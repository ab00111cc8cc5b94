"""Exact oracles: models and data for which the truth is known in closed form (docs/math.md §7).

- `LinearGaussianChain`: reverse chain p_theta(x_{t-1} | x_t) = N(a_t x_t + b_t, sigma_t^2 I),
  p(x_T) = N(0, I); exact log p_theta(x_0), exact negative ELBO, and the exact gap
  KL(q(x_{1:T} | x_0) || p_theta(x_{1:T} | x_0)) by the chain rule of KL in forward time.
- `GaussianMixture`: data x_0 ~ sum_k pi_k N(m_k, S_k); exact log q_t, score, E[x_0 | x_t] and the
  optimal noise predictor eps*(x_t) = E[eps | x_t].

Paper indexing t = 1..T; data of shape (..., d) with per-example values of shape (...).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from ._checks import as_data, as_float, as_positive, as_timestep, expand_to
from .gaussian import LOG_2PI, _u_minus_log1p
from .elbo import _sum_last, prior_term
from .parameterisations import eps_from_score
from .schedules import Schedule, check_schedule


class LinearGaussianChain:
    """Reverse chain with linear-Gaussian steps p_theta(x_{t-1} | x_t) = N(a_t x_t + b_t, sigma_t^2 I).

    a: (T,) slopes; b: (T, d) offsets; sigma2: (T,) variances > 0; element t-1 belongs to step t
    (t = 1 is the decoder p_theta(x_0 | x_1)). Data dimension d = b.shape[1].
    docs/math.md §7.
    """

    def __init__(self, schedule: Schedule, a, b, sigma2):
        self.schedule = check_schedule(schedule)
        T = schedule.T
        self.a = as_float("a", a)
        self.b = as_float("b", b)
        self.sigma2 = as_positive("sigma2", sigma2)
        if self.a.shape != (T,):
            raise ValueError(f"a must have shape (T,) = ({T},); got {self.a.shape}")
        if self.b.ndim != 2 or self.b.shape[0] != T or self.b.shape[1] < 1:
            raise ValueError(f"b must have shape (T, d) = ({T}, d); got {self.b.shape}")
        if self.sigma2.shape != (T,):
            raise ValueError(f"sigma2 must have shape (T,) = ({T},); got {self.sigma2.shape}")
        self.d = self.b.shape[1]

    def _x0(self, x0, name="x0"):
        x0 = as_data(name, x0)
        if x0.shape[-1] != self.d:
            raise ValueError(f"{name} must have last axis d = {self.d}; got shape {x0.shape}")
        return x0

    def model(self, xt, t):
        """The chain as an `elbo` model: (a_t x_t + b_t, sigma_t^2) for xt (m, d), t (m,)."""
        xt = self._x0(xt, "xt")
        t = as_timestep("t", t, self.schedule.T)
        i = t - 1
        return expand_to(self.a[i], xt.shape, x_name="xt") * xt + self.b[i], self.sigma2[i]

    def marginal_x0(self) -> tuple[np.ndarray, float]:
        """Mean (d,) and isotropic variance of p_theta(x_0), propagated down from N(0, I):
        m_{t-1} = a_t m_t + b_t, v_{t-1} = a_t^2 v_t + sigma_t^2."""
        m, v = np.zeros(self.d), 1.0
        for t in range(self.schedule.T, 0, -1):
            m, v = self.a[t - 1] * m + self.b[t - 1], self.a[t - 1] ** 2 * v + self.sigma2[t - 1]
        return m, v

    def log_prob(self, x0) -> np.ndarray:
        """Exact log p_theta(x_0) per example, nats."""
        x0 = self._x0(x0)
        m, v = self.marginal_x0()
        return -0.5 * (self.d * (LOG_2PI + math.log(v)) + np.sum((x0 - m) ** 2, axis=-1) / v)

    def neg_elbo(self, x0) -> np.ndarray:
        """Exact negative ELBO per example (continuous decoder), nats: L_T + sum_{t>=2} L_{t-1} + L_0.

        With x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the residual mu_tilde_t - a_t x_t - b_t
        has mean (c0_t + (c1_t - a_t) sqrt(abar_t)) x_0 - b_t and variance (c1_t - a_t)^2 (1 - abar_t)
        per dimension, so L_{t-1} = d g(beta_tilde_t / sigma_t^2 - 1) / 2 + E||residual||^2 / (2 sigma_t^2).
        """
        x0 = self._x0(x0)
        s, d = self.schedule, self.d
        sa, om = np.sqrt(s.alpha_bar()), s.one_minus_alpha_bar()
        a, b, s2 = self.a, self.b, self.sigma2
        total = prior_term(s, x0)
        for t in range(2, s.T + 1):
            i = t - 1
            c0, c1 = s.posterior_coef_x0(t), s.posterior_coef_xt(t)
            resid = (c0 + (c1 - a[i]) * sa[i]) * x0 - b[i]
            sq = np.sum(resid ** 2, axis=-1) + d * (c1 - a[i]) ** 2 * om[i]
            g = _u_minus_log1p((s.beta_tilde(t) - s2[i]) / s2[i], s.log_beta_tilde_clipped(t) - math.log(s2[i]))
            total = total + 0.5 * d * g + sq / (2 * s2[i])
        resid = (1 - a[0] * sa[0]) * x0 - b[0]
        sq = np.sum(resid ** 2, axis=-1) + d * a[0] ** 2 * om[0]
        return total + 0.5 * d * (LOG_2PI + math.log(s2[0])) + sq / (2 * s2[0])

    def gap(self, x0) -> np.ndarray:
        """KL(q(x_{1:T} | x_0) || p_theta(x_{1:T} | x_0)) per example, nats, by the chain rule of KL.

        Both conditionals are Markov in forward time: q by construction, and p_theta because
        conditioning a Markov chain on x_0 keeps it Markov, with p_theta(x_t | x_{t-1}) =
        N(A_t x_{t-1} + B_t, S_t) read off the joint of (x_{t-1}, x_t) under p_theta:
        A_t = a_t v_t / v_{t-1}, B_t = m_t - A_t m_{t-1}, S_t = v_t sigma_t^2 / v_{t-1}, where
        (m_t, v_t) is the marginal of x_t. Hence, with x_{t-1} ~ q(x_{t-1} | x_0) =
        N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}) and c_t = sqrt(alpha_t) - A_t, per dimension
        KL = sum_t [g(beta_t / S_t - 1) + ((c_t sqrt(abar_{t-1}) x_0 - B_t)^2 + c_t^2 (1 - abar_{t-1})) / S_t] / 2,
        a sum of non-negative closed-form terms in forward time, sharing nothing with the
        reverse-time terms of `neg_elbo`; log p_theta(x_0) - ELBO(x_0) must equal it.
        """
        x0 = self._x0(x0)
        s, T, d = self.schedule, self.schedule.T, self.d
        a, b, s2 = self.a, self.b, self.sigma2
        m, v = np.zeros((T + 1, d)), np.ones(T + 1)          # marginal of x_t under p_theta, t = 0..T
        for t in range(T, 0, -1):
            m[t - 1] = a[t - 1] * m[t] + b[t - 1]
            v[t - 1] = a[t - 1] ** 2 * v[t] + s2[t - 1]
        A = a * v[1:] / v[:-1]                                # index t - 1 holds step t
        B = m[1:] - A[:, None] * m[:-1]
        S = v[1:] * s2 / v[:-1]
        c = np.sqrt(s.alpha()) - A
        beta = s.beta()
        resid = c[:, None] * np.sqrt(s.alpha_bar_prev())[:, None] * x0[..., None, :] - B   # (..., T, d)
        quad = np.sum(resid ** 2, axis=-1) + d * c ** 2 * s.one_minus_alpha_bar_prev()
        const = d * _u_minus_log1p((beta - S) / S, np.log(beta) - np.log(S))
        return 0.5 * np.sum(const + quad / S, axis=-1)


def _rows_times(v: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Row vectors times matrices, batched over the leading axes: out[..., i] = sum_j v[..., j] A[..., j, i]
    (v (..., n), A (..., n, p) broadcast); with A = U_k (K, d, d) and v (..., K, d) this is U_k^T v_k per k."""
    return (v[..., None, :] @ A)[..., 0, :]


class GaussianMixture:
    """Data distribution x_0 ~ sum_k pi_k N(m_k, S_k) and its diffused marginals (docs/math.md §7).

    weights: (K,) >= 0 summing to 1 (within 1e-12); means: (K, d); covariances: (K, d, d)
    symmetric positive definite. Each S_k is diagonalised once, S_k = U_k diag(lam_k) U_k^T, so
    q_t's covariances abar_t S_k + (1 - abar_t) I = U_k diag(abar_t lam_k + 1 - abar_t) U_k^T are
    exact at every t without further factorisation.
    """

    def __init__(self, weights, means, covariances):
        w = as_float("weights", weights)
        m = as_float("means", means)
        c = as_float("covariances", covariances)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1; got {w.shape}")
        K = w.size
        if m.ndim != 2 or m.shape[0] != K or m.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) = ({K}, d); got {m.shape}")
        d = m.shape[1]
        if c.shape != (K, d, d):
            raise ValueError(f"covariances must have shape (K, d, d) = ({K}, {d}, {d}); got {c.shape}")
        if np.any(w < 0) or abs(w.sum() - 1) > 1e-12:
            raise ValueError(f"weights must be >= 0 and sum to 1; got sum {w.sum()!r}, min {w.min()!r}")
        if not np.allclose(c, np.swapaxes(c, 1, 2), rtol=0, atol=1e-12 * np.abs(c).max()):
            raise ValueError("covariances must be symmetric")
        lam, U = np.linalg.eigh(c)
        if np.any(lam <= 0):
            raise ValueError(f"covariances must be positive definite; smallest eigenvalue {lam.min()!r}")
        self.weights, self.means, self.covariances = w, m, c
        self.K, self.d = K, d
        self._lam, self._U = lam, U
        # every U_k = I (axis-aligned components, eigenvalues in axis order): no rotation to apply
        self._U_T = None if np.array_equal(U, np.broadcast_to(np.eye(d), U.shape)) else \
            np.ascontiguousarray(np.swapaxes(U, 1, 2))
        with np.errstate(divide="ignore"):
            self._log_w = np.log(w)

    @classmethod
    def ring(cls, K: int = 8, radius: float = 1.0, std: float = 0.1) -> GaussianMixture:
        """K equal-weight isotropic components N(radius (cos 2 pi k / K, sin 2 pi k / K), std^2 I)."""
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
            raise ValueError(f"K must be an integer >= 1; got {K!r}")
        std = float(as_positive("std", std))
        angle = 2 * np.pi * np.arange(K) / K
        means = float(as_float("radius", radius)) * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return cls(np.full(K, 1.0 / K), means, np.broadcast_to(std ** 2 * np.eye(2), (K, 2, 2)).copy())

    # -- helpers ---------------------------------------------------------------------------
    def _x(self, name, x):
        x = as_data(name, x)
        if x.shape[-1] != self.d:
            raise ValueError(f"{name} must have last axis d = {self.d}; got shape {x.shape}")
        return x

    def _abar(self, schedule, t, x):
        """(abar_t, 1 - abar_t) of shape x.shape[:-1] + (1, 1); no schedule means the data itself."""
        if schedule is None:
            if t is not None:
                raise ValueError("t was given without a schedule; pass both (q_t) or neither (the data)")
            one = np.ones(x.shape[:-1] + (1, 1))
            return one, np.zeros_like(one)
        check_schedule(schedule)
        t = as_timestep("t", t, schedule.T)
        lead = x.shape[:-1]
        ab = expand_to(schedule.alpha_bar(t), lead, t_name="t", x_name="x (leading axes)")
        om = expand_to(schedule.one_minus_alpha_bar(t), lead, t_name="t", x_name="x (leading axes)")
        return ab[..., None, None], om[..., None, None]

    def _to_eigenbasis(self, v):
        """U_k^T v_k for each component k (v of shape (..., K, d))."""
        return v if self._U_T is None else _rows_times(v, self._U)

    def _from_eigenbasis(self, y):
        """U_k y_k for each component k (y of shape (..., K, d))."""
        return y if self._U_T is None else _rows_times(y, self._U_T)

    def _components(self, x, ab, om):
        """Per component: log-density terms, eigen-coordinates y and eigenvalues of q_t's covariance."""
        centred = np.sqrt(ab) * self.means                                   # (..., K, d)
        np.subtract(x[..., None, :], centred, out=centred)                   # x - sqrt(abar) m_k
        y = self._to_eigenbasis(centred)                                     # U_k^T (x - sqrt(abar) m_k)
        ev = ab * self._lam + om                                             # (..., K, d)
        log_comp = -0.5 * (self.d * LOG_2PI + _sum_last(np.log(ev) + y ** 2 / ev))
        return self._log_w + log_comp, y, ev

    # -- densities and derived quantities -----------------------------------------------------
    def log_prob(self, x, schedule: Schedule | None = None, t=None) -> np.ndarray:
        """log q_t(x) per example (log of the data density when schedule is None)."""
        x = self._x("x", x)
        ab, om = self._abar(schedule, t, x)
        log_joint, _, _ = self._components(x, ab, om)
        return logsumexp(log_joint, axis=-1)

    def responsibilities(self, x, schedule: Schedule | None = None, t=None) -> np.ndarray:
        """r_k(x) = pi_k N(x; sqrt(abar_t) m_k, C_k) / q_t(x), shape x.shape[:-1] + (K,); rows sum to 1."""
        x = self._x("x", x)
        ab, om = self._abar(schedule, t, x)
        log_joint, _, _ = self._components(x, ab, om)
        return np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))

    def score(self, x, schedule: Schedule | None = None, t=None) -> np.ndarray:
        """grad_x log q_t(x) = -sum_k r_k(x) C_k^{-1} (x - sqrt(abar_t) m_k), r_k the responsibilities."""
        x = self._x("x", x)
        ab, om = self._abar(schedule, t, x)
        log_joint, y, ev = self._components(x, ab, om)
        r = np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))
        return -_rows_times(r, self._from_eigenbasis(y / ev))

    def posterior_mean_x0(self, xt, schedule: Schedule, t) -> np.ndarray:
        """E[x_0 | x_t] = sum_k r_k(x_t) (m_k + sqrt(abar_t) S_k C_k^{-1} (x_t - sqrt(abar_t) m_k)).

        Computed from each component's Gaussian conditional, not from the score, so Tweedie's
        formula is a genuine check of the two.
        """
        xt = self._x("xt", xt)
        ab, om = self._abar(check_schedule(schedule), t, xt)
        log_joint, y, ev = self._components(xt, ab, om)
        r = np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))
        r /= r.sum(axis=-1, keepdims=True)
        gain = np.sqrt(ab) * self._lam / ev                       # eigenvalues of sqrt(abar) S C^{-1}
        cond = self.means + self._from_eigenbasis(gain * y)
        return _rows_times(r, cond)

    def optimal_eps(self, xt, schedule: Schedule, t) -> np.ndarray:
        """eps*(x_t) = E[eps | x_t] = -sqrt(1 - abar_t) grad log q_t(x_t): the best noise predictor."""
        xt = self._x("xt", xt)
        return eps_from_score(schedule, self.score(xt, schedule, t), t)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n independent draws from the data distribution, shape (n, d)."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1; got {n!r}")
        k = rng.choice(self.K, size=n, p=self.weights)
        z = rng.standard_normal((n, self.d))
        return self.means[k] + np.einsum("nij,nj->ni", self._U[k], np.sqrt(self._lam[k]) * z)

    def entropy(self, rng: np.random.Generator, n: int) -> tuple[float, float]:
        """Monte Carlo estimate of the data entropy H = -E log q_0(x_0), nats: (mean, standard error)."""
        logp = self.log_prob(self.sample(rng, n))
        if n < 2:
            raise ValueError(f"n must be >= 2 to give a standard error; got {n}")
        return float(-logp.mean()), float(logp.std(ddof=1) / math.sqrt(n))
