"""The seeds' other claims (docs/math.md §8) and the seeds' statements as written (docs/math.md §9).

Small closed-form models on which the claims of the seed documents can be evaluated exactly,
and the seeds' erroneous statements transcribed literally, so that `properties/test_seeds.py`
can evaluate each statement as written next to its correction. Float64 NumPy/SciPy; every
log-density and divergence in nats.

- GAN (seeds/001_afc8e6d75670c661.txt, 003): value V(D, G) on a discrete space, the optimal discriminator.
- `LinearGaussianLatent`: p(z) = N(0, 1), p(x | z) = N(w z + b, s2); exact marginal, posterior,
  ELBO of any Gaussian q(z) = N(m, v), log importance weights, and the exact mean of the
  importance-weighted bound for every K (a one-dimensional integral, see `iw_gap_exact`).
- SimSiam linear dynamics (seeds/003_41986d511ba79145.txt, Q4): the seed's Kronecker-product matrix H and the
  matrix form of the gradient flow it vectorises.
- Seeds as written: `seed001_C_of_G_as_written`, `seed003_iw_log_estimate_as_written`,
  `seed003_L0_weight_as_written`, `seed003_telescoped_sum_as_written`, `seed004_m_t_as_written`,
  each beside its corrected counterpart.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate
from scipy.special import logsumexp, xlogy

LOG_2PI = math.log(2.0 * math.pi)
LOG_4 = math.log(4.0)


def _positive(name: str, x) -> float:
    v = float(x)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {x!r}")
    return v


def _distribution(name: str, p) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 1 or a.size < 1 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be a 1-D array of finite probabilities >= 0; got {p!r}")
    if abs(a.sum() - 1.0) > 1e-12:
        raise ValueError(f"{name} must sum to 1 (within 1e-12); got sum {a.sum()!r}")
    return a


# -- GAN (seeds/001_afc8e6d75670c661.txt section 2.2, seeds/003_41986d511ba79145.txt question 3) --------------------------------------------

def optimal_discriminator(p_data, p_g) -> np.ndarray:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) (seeds/001_afc8e6d75670c661.txt Proposition 2, eq. 2.4), on a discrete
    space; atoms where both masses are 0 are not allowed. Shape (n,)."""
    p, q = _distribution("p_data", p_data), _distribution("p_g", p_g)
    if p.shape != q.shape:
        raise ValueError(f"p_data and p_g must have the same shape; got {p.shape} and {q.shape}")
    if np.any(p + q == 0):
        raise ValueError("p_data + p_g must be > 0 on every atom (drop the atoms outside both supports)")
    return p / (p + q)


def gan_value(p_data, p_g, D) -> float:
    """V(D, G) = E_{p_data} log D + E_{p_g} log(1 - D) = sum_x p_data log D + p_g log(1 - D)
    (seeds/001_afc8e6d75670c661.txt eq. 2.5) on a discrete space, with 0 log 0 = 0; nats."""
    p, q = _distribution("p_data", p_data), _distribution("p_g", p_g)
    D = np.asarray(D, dtype=np.float64)
    if D.shape != p.shape or np.any((D < 0) | (D > 1)):
        raise ValueError(f"D must have shape {p.shape} with values in [0, 1]")
    return float(np.sum(xlogy(p, D)) + np.sum(xlogy(q, 1.0 - D)))


def seed001_C_of_G_as_written(jsd: float) -> float:
    """seeds/001_afc8e6d75670c661.txt, proof of Theorem 3, last line: C(G) = D_JS(p_data, p_g) - log 4 (AS WRITTEN; wrong)."""
    return jsd - LOG_4


def C_of_G(jsd: float) -> float:
    """max_D V(D, G) = 2 D_JS(p_data, p_g) - log 4, with D_JS the seed's (the one with the 1/2)."""
    return 2.0 * jsd - LOG_4


# -- the linear-Gaussian latent model (VAE claims, importance-weighted bound) ------------------

class LinearGaussianLatent:
    """p(z) = N(0, 1), p(x | z) = N(w z + b, s2); scalar x and z.

    Exact: p(x) = N(x; b, w^2 + s2); posterior p(z | x) = N(mu, tau2) with
    tau2 = s2 / (s2 + w^2), mu = w (x - b) / (s2 + w^2). A variational q(z) = N(m, v).
    """

    def __init__(self, w: float, b: float, s2: float):
        self.w, self.b = float(w), float(b)
        self.s2 = _positive("s2", s2)
        if not (math.isfinite(self.w) and math.isfinite(self.b)):
            raise ValueError(f"w and b must be finite; got {w!r}, {b!r}")

    def log_marginal(self, x):
        """log p(x) = -(log(2 pi (w^2 + s2)) + (x - b)^2 / (w^2 + s2)) / 2."""
        c = self.w ** 2 + self.s2
        return -0.5 * (LOG_2PI + math.log(c) + (np.asarray(x, dtype=np.float64) - self.b) ** 2 / c)

    def posterior(self, x):
        """(mean, variance) of p(z | x): (w (x - b) / (s2 + w^2), s2 / (s2 + w^2))."""
        c = self.w ** 2 + self.s2
        return self.w * (np.asarray(x, dtype=np.float64) - self.b) / c, self.s2 / c

    def log_joint(self, x, z):
        """log p(x, z) = log N(z; 0, 1) + log N(x; w z + b, s2), elementwise."""
        z = np.asarray(z, dtype=np.float64)
        return (-0.5 * (LOG_2PI + z ** 2)
                - 0.5 * (LOG_2PI + math.log(self.s2) + (x - self.w * z - self.b) ** 2 / self.s2))

    def elbo_terms(self, x: float, m, v) -> np.ndarray:
        """The ELBO of q = N(m, v) as its closed-form terms (sum them for the ELBO), shape (5,) + m's:

        E_q log p(x | z) = -(log(2 pi s2)) / 2 - ((x - b - w m)^2 + w^2 v) / (2 s2)   (2 terms)
        E_q log p(z)     = -(log 2 pi) / 2 - (m^2 + v) / 2                             (2 terms)
        H(q)             = (log(2 pi v) + 1) / 2                                       (1 term)
        The sum of absolute values of the terms is the scale for rounding-error tolerances.
        """
        m, v = np.asarray(m, dtype=np.float64), np.asarray(v, dtype=np.float64)
        if np.any(v <= 0):
            raise ValueError("v must be > 0 (a variance)")
        return np.stack([
            np.broadcast_to(-0.5 * (LOG_2PI + math.log(self.s2)), m.shape),
            -((x - self.b - self.w * m) ** 2 + self.w ** 2 * v) / (2 * self.s2),
            np.broadcast_to(-0.5 * LOG_2PI, m.shape),
            -(m ** 2 + v) / 2,
            0.5 * (LOG_2PI + np.log(v) + 1.0),
        ])

    def elbo(self, x: float, m, v):
        """ELBO(q) = E_q[log p(x, z) - log q(z)] for q = N(m, v), closed form (`elbo_terms`)."""
        return np.sum(self.elbo_terms(x, m, v), axis=0)

    def log_weights(self, x: float, z, m: float, v: float):
        """log w = log p(x, z) - log q(z), q = N(m, v), elementwise in z."""
        _positive("v", v)
        z = np.asarray(z, dtype=np.float64)
        return self.log_joint(x, z) + 0.5 * (LOG_2PI + math.log(v) + (z - m) ** 2 / v)

    def ratio_moment_log(self, x: float, m: float, v: float, n: int) -> float:
        """log E_q[r^n], r = p(z | x) / q(z) = w / p(x): the Renyi integral of two Gaussians,
        log int p^n q^(1-n) dz = n (n - 1) (mu - m)^2 / (2 v_n) - log(v_n / (tau2^(1-n) v^n)) / 2,
        v_n = n v - (n - 1) tau2; +inf when v_n <= 0 (the moment diverges)."""
        mu, tau2 = self.posterior(x)
        vn = n * v - (n - 1) * tau2
        if vn <= 0:
            return math.inf
        return n * (n - 1) * (float(mu) - m) ** 2 / (2 * vn) - 0.5 * (math.log(vn) - (1 - n) * math.log(tau2)
                                                                      - n * math.log(v))

    def iw_gap_exact(self, x: float, m: float, v: float, K: int, *, nodes: int = 4001) -> tuple[float, float]:
        """E[L_K] - log p(x) for the importance-weighted bound L_K = log (1/K) sum_k w_k, z_k ~ q
        i.i.d., by an exact one-dimensional integral; returns (value, quadrature error estimate).

        With r_k = w_k / p(x) = p(z_k | x) / q(z_k) and S = (1/K) sum_k r_k > 0, Frullani's
        integral log S = int_0^inf (e^(-t) - e^(-t S)) dt / t gives
            E log S = int_0^inf (e^(-t) - phi(t / K)^K) dt / t,   phi(u) = E_q exp(-u r(z)),
        and with t = e^s the integrand is smooth on the whole line. phi is a Gaussian expectation of
        a function bounded by 1: the trapezoid rule on `nodes` points of the standardised variable over
        [-40, 40] (weights normalised to sum to 1; exponentially accurate, the neglected Gaussian mass is
        below e^(-800)). e^(-t) - phi^K is formed as phi^K expm1(-t - K log phi), with 1 - phi summed
        from expm1 terms, so no cancellation between two numbers near 1 occurs for small t. The outer
        integral runs over s in [-40, 100] (integrand O(e^(2 s)) below, and at most phi^K above, which
        for v / tau2 <= 4 decays at least like e^(-s K / 3)).
        Valid for 0.5 tau2 < v <= 4 tau2 and |m - mu| <= 3 sqrt(tau2) (checked).
        """
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
            raise ValueError(f"K must be an integer >= 1; got {K!r}")
        _positive("v", v)
        mu, tau2 = self.posterior(x)
        mu = float(mu)
        if not (0.5 * tau2 < v <= 4 * tau2) or abs(m - mu) > 3 * math.sqrt(tau2):
            raise ValueError(f"iw_gap_exact needs 0.5 tau2 < v <= 4 tau2 and |m - mu| <= 3 sqrt(tau2); got "
                             f"v / tau2 = {v / tau2:.3g}, (m - mu) / sqrt(tau2) = {(m - mu) / math.sqrt(tau2):.3g}")
        u = np.linspace(-40.0, 40.0, nodes)
        z = m + math.sqrt(v) * u
        wts = np.exp(-0.5 * u * u)
        wts /= wts.sum()
        r = np.exp(-0.5 * (math.log(tau2) + (z - mu) ** 2 / tau2) + 0.5 * (math.log(v) + u * u))

        def integrand(s: float) -> float:
            t = math.exp(s)
            e = np.expm1(-(t / K) * r)                 # exp(-u r) - 1, u = t / K
            one_minus_phi = -float(np.dot(wts, e))
            if one_minus_phi < 0.5:
                k_log_phi = K * math.log1p(-one_minus_phi)
            else:
                phi = float(np.dot(wts, e + 1.0))
                if phi <= 0.0:
                    return math.exp(-t)
                k_log_phi = K * math.log(phi)
            return math.exp(k_log_phi) * math.expm1(-t - k_log_phi)

        value, abserr = integrate.quad(integrand, -40.0, 100.0, epsabs=1e-15, epsrel=1e-13, limit=500)
        return value, abserr


def iw_log_estimate(log_w) -> np.ndarray:
    """log (1/K) sum_k w_k from log weights of shape (..., K): log-mean-exp (docs/math.md §8)."""
    log_w = np.asarray(log_w, dtype=np.float64)
    return logsumexp(log_w, axis=-1) - math.log(log_w.shape[-1])


def seed003_iw_log_estimate_as_written(log_w) -> np.ndarray:
    """seeds/003_41986d511ba79145.txt, 1.4.1, second line AS WRITTEN: log p(x) ~ sum_k [log p(x, z_k) - log q(z_k | x)] - log K."""
    log_w = np.asarray(log_w, dtype=np.float64)
    return np.sum(log_w, axis=-1) - math.log(log_w.shape[-1])


# -- DDPM statements of seeds/003_41986d511ba79145.txt and 004 ------------------------------------------------------

def L0_weight(beta1, alpha1, sigma1_sq):
    """Weight of ||eps - eps_theta||^2 in L_0 (docs/math.md §6): beta_1 / (2 alpha_1 sigma_1^2)
    (= beta_1^2 / (2 alpha_1 (1 - abar_1) sigma_1^2), since 1 - abar_1 = beta_1)."""
    return beta1 / (2.0 * alpha1 * sigma1_sq)


def seed003_L0_weight_as_written(beta1, alpha1, abar1, sigma1_sq):
    """seeds/003_41986d511ba79145.txt, 2.6, last line for L_0 AS WRITTEN: 1 / (2 sigma_1^2) * beta_1^2 / (2 alpha_1 (1 - abar_1))."""
    return 1.0 / (2.0 * sigma1_sq) * beta1 ** 2 / (2.0 * alpha1 * (1.0 - abar1))


def seed003_L0_weight_penultimate(alpha1, sigma1_sq):
    """seeds/003_41986d511ba79145.txt, 2.6, the line before the last: 1 / (2 sigma_1^2) * (1 - alpha_1) / alpha_1 (correct)."""
    return 1.0 / (2.0 * sigma1_sq) * (1.0 - alpha1) / alpha1


def seed003_telescoped_sum_as_written(log_q_xT_given_x0):
    """seeds/003_41986d511ba79145.txt, 2.3 AS WRITTEN: sum_{t=1}^T log q(x_{t-1}|x_0) / q(x_t|x_0) = log q(x_T|x_0)."""
    return log_q_xT_given_x0


def seed004_m_t_as_written(x, z_t, alpha_prev, alpha_t, beta_t):
    """seeds/004_f9d86d600491b253.txt AS WRITTEN (garbled by extraction), in its notation (alpha = cumulative product abar,
    z_t = x_t, x = x_0): m_t = (1 - alpha_{t-1}) sqrt(1 - beta_t z_t + sqrt(alpha_{t-1}) beta_t x) / (1 - alpha_t).
    nan where the square root's argument is negative."""
    arg = 1.0 - beta_t * z_t + np.sqrt(alpha_prev) * beta_t * x
    with np.errstate(invalid="ignore"):
        return (1.0 - alpha_prev) * np.sqrt(arg) / (1.0 - alpha_t)


def seed004_m_t(x, z_t, alpha_prev, alpha_t, beta_t):
    """seeds/004_f9d86d600491b253.txt corrected (docs/math.md §9), its notation: m_t = ((1 - alpha_{t-1}) sqrt(1 - beta_t) z_t
    + sqrt(alpha_{t-1}) beta_t x) / (1 - alpha_t)."""
    return ((1.0 - alpha_prev) * np.sqrt(1.0 - beta_t) * z_t + np.sqrt(alpha_prev) * beta_t * x) / (1.0 - alpha_t)


# -- SimSiam linear dynamics (seeds/003_41986d511ba79145.txt, question 4.3) -------------------------------------------

def simsiam_H(X, X_prime, W_p) -> np.ndarray:
    """The seed's H = X' (x) (W_p^T W_p + I) + X (x) (W~_p^T W~_p), W~_p = W_p - I, Kronecker
    products, so that d vec(W)/dt = -H vec(W) with column-major vec. Shape (n1 n2, n1 n2) for
    X, X' of shape (n1, n1) and W_p of shape (n2, n2)."""
    X, X_prime, W_p = (np.asarray(a, dtype=np.float64) for a in (X, X_prime, W_p))
    I = np.eye(W_p.shape[0])
    Wt = W_p - I
    return np.kron(X_prime, W_p.T @ W_p + I) + np.kron(X, Wt.T @ Wt)


def simsiam_flow(W, X, X_prime, W_p) -> np.ndarray:
    """The matrix form dW/dt = -(W_p^T W_p + I) W X' - W~_p^T W~_p W X (seeds/003_41986d511ba79145.txt, 4.3), shape of W."""
    W, X, X_prime, W_p = (np.asarray(a, dtype=np.float64) for a in (W, X, X_prime, W_p))
    I = np.eye(W_p.shape[0])
    Wt = W_p - I
    return -(W_p.T @ W_p + I) @ W @ X_prime - Wt.T @ Wt @ W @ X
