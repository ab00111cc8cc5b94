"""Exact values of the docs/math.md formulas in 50-digit mpmath, and the error measures of the
precision checks (`ddpm_verify.precision`: properties/test_precision.py, benchmarks/precision.py).

Independence: this module never imports `reference`. Every function evaluates the formula as
docs/math.md writes it (products, quotients, logs), not the reference's rearrangements. float64
inputs (data, and the float64 betas a reference schedule built) are taken as exact.

Values are numpy object arrays of `mpmath.mpf`. Every formula runs inside ``mpmath.workdps(DPS)``
(some locally raise the precision further where a formula cancels), so the global mpmath context
is left as it was found; each is memoised on its inputs' values and returns read-only arrays
(`_exact`).
"""

from __future__ import annotations

import functools
import math
import types

import mpmath
import numpy as np
from mpmath import mp
from mpmath.libmp import fzero, from_float, mpf_sub, round_nearest, to_float

from .results import Result

DPS = 50                      # decimal digits of every exact evaluation
BOUND = 1e-12                 # the error bound the suite asserts
DBL_MIN = float(np.finfo(np.float64).tiny)   # smallest normal float64


def _exact(fn):
    """An exact evaluation: `fn` run inside mpmath.workdps(DPS) (the previous precision is restored
    afterwards), memoised on the content of its arguments (`_key`). The same inputs give the same
    exact values, computed once per process, so a run that measures many variants of the reference
    on the same inputs (the self-check) evaluates each formula once. Arrays and tables returned are
    read-only."""
    memo: dict = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = _key((args, tuple(sorted(kwargs.items()))))
        if key is not None and key in memo:
            return memo[key]
        with mpmath.workdps(DPS):
            value = _read_only(fn(*args, **kwargs))
        if key is not None:
            memo[key] = value
        return value
    return wrapper


class _Same:
    """An argument that cannot change, keyed by identity (and kept alive by the key)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj


def _key(a):
    """A hashable key that determines `a`'s value, or None (not memoised): numeric arrays by dtype,
    shape and bytes; read-only object arrays and tables (this module's own results) by identity,
    other object arrays by their elements; floats by their bits (-0.0 is not 0.0); mpf by its exact
    binary value."""
    if isinstance(a, np.ndarray):
        if a.dtype != object:
            return ("array", a.dtype.str, a.shape, a.tobytes())
        if not a.flags.writeable:
            return _Same(a)
        keys = tuple(_key(x) for x in a.ravel())
        return None if any(k is None for k in keys) else ("objects", a.shape, keys)
    if isinstance(a, types.MappingProxyType):
        return _Same(a)
    if isinstance(a, (tuple, list)):
        keys = tuple(_key(x) for x in a)
        return None if any(k is None for k in keys) else (type(a).__name__, keys)
    if isinstance(a, mp.mpf):
        return ("mpf", a._mpf_)
    if isinstance(a, (float, np.floating)):
        return ("float", float(a).hex())
    if isinstance(a, (bool, int, str, np.integer, np.bool_)) or a is None:
        return (type(a).__name__, a)
    return None


def _read_only(value):
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, tuple):
        for v in value:
            _read_only(v)
    elif isinstance(value, dict):
        for v in value.values():
            _read_only(v)
        return types.MappingProxyType(value)
    return value


def _vec(f, nin=1):
    """Elementwise version of a scalar mpmath function on object arrays (returns an array)."""
    uf = np.frompyfunc(f, nin, 1)
    return lambda *a: np.asarray(uf(*a), dtype=object)


def mpf_array(x) -> np.ndarray:
    """float64 array -> object array of mpf, exactly (mpf of a double is exact at >= 53 bits)."""
    return _vec(mp.mpf)(np.asarray(x, dtype=np.float64))


_sqrt = _vec(lambda v: mp.sqrt(v))
_log = _vec(lambda v: mp.log(v))
_exp = _vec(lambda v: mp.exp(v))


def _digits_lost(r) -> int:
    """Decimal digits lost when a quantity of size |r| << 1 is squared out of O(1) terms."""
    return 0 if r == 0 or abs(r) >= 1 else int(-mp.log10(abs(r))) + 5


# -- schedules (docs/math.md §2) -------------------------------------------------------------------

@_exact
def linear_betas(T: int, *, scale_with_T: bool = False, start="1e-4", end="0.02") -> np.ndarray:
    """beta_t = start + (end - start) (t - 1) / (T - 1), ends scaled by 1000 / T if asked; T = 1: start."""
    scale = mp.mpf(1000) / T if scale_with_T else mp.mpf(1)
    lo, hi = mp.mpf(start) * scale, mp.mpf(end) * scale
    if T == 1:
        return np.array([lo], dtype=object)
    return np.array([lo + (hi - lo) * (t - 1) / (T - 1) for t in range(1, T + 1)], dtype=object)


@_exact
def cosine_betas(T: int, *, s="0.008", max_beta="0.999") -> np.ndarray:
    """beta_t = min(1 - f(t) / f(t-1), max_beta), f(u) = cos^2(((u / T) + s) / (1 + s) * pi / 2)."""
    s, cap = mp.mpf(s), mp.mpf(max_beta)
    f = [mp.cos((mp.mpf(u) / T + s) / (1 + s) * mp.pi / 2) ** 2 for u in range(T + 1)]
    return np.array([min(1 - f[t] / f[t - 1], cap) for t in range(1, T + 1)], dtype=object)


@_exact
def sigmoid_alpha_bar_betas(T: int, *, start="-3", end="3", tau="1", max_beta="0.999") -> np.ndarray:
    """beta_t = min(1 - abar_t / abar_{t-1}, max_beta), abar_u = (sig(e) - sig(x_u)) / (sig(e) - sig(x_0)),
    x_u = ((u / T)(end - start) + start) / tau, e = end / tau, sig the logistic function."""
    start, end, tau, cap = mp.mpf(start), mp.mpf(end), mp.mpf(tau), mp.mpf(max_beta)
    sig = lambda v: 1 / (1 + mp.exp(-v))                                    # noqa: E731
    abar = [(sig(end / tau) - sig(((mp.mpf(u) / T) * (end - start) + start) / tau))
            / (sig(end / tau) - sig(start / tau)) for u in range(T + 1)]
    return np.array([min(1 - abar[t] / abar[t - 1], cap) for t in range(1, T + 1)], dtype=object)


@_exact
def schedule_tables(betas) -> dict[str, np.ndarray]:
    """Every per-timestep table of docs/math.md §1-§4 for t = 1..T, from float64 betas taken as exact.

    abar_t is the plain product of alpha_s = 1 - beta_s (abar_0 = 1); log abar_t = log(abar_t);
    1 - abar_t is a subtraction at 50 digits. t = 1: 1 - abar_0 = 0, beta_tilde_1 = 0 exactly, and
    log_beta_tilde_clipped is log beta_tilde_2 (log beta_1 when T = 1; improved-diffusion).
    """
    b = mpf_array(betas)
    T = b.size
    alpha = 1 - b
    abar = np.empty(T, dtype=object)
    acc = mp.mpf(1)
    for i in range(T):
        acc = acc * alpha[i]
        abar[i] = acc
    abar_prev = np.concatenate([np.array([mp.mpf(1)], dtype=object), abar[:-1]])
    om, om_prev = 1 - abar, 1 - abar_prev
    beta_tilde = om_prev / om * b
    log_beta_tilde = _log(beta_tilde)                    # -inf at t = 1
    clipped = log_beta_tilde.copy()
    clipped[0] = log_beta_tilde[1] if T > 1 else mp.log(b[0])
    return {
        "beta": b,
        "log_beta": _log(b),
        "alpha": alpha,
        "log_alpha": _log(alpha),
        "log_alpha_bar": _log(abar),
        "alpha_bar": abar,
        "one_minus_alpha_bar": om,
        "log_one_minus_alpha_bar": _log(om),
        "alpha_bar_prev": abar_prev,
        "one_minus_alpha_bar_prev": om_prev,
        "posterior_coef_x0": _sqrt(abar_prev) * b / om,
        "posterior_coef_xt": _sqrt(alpha) * om_prev / om,
        "beta_tilde": beta_tilde,
        "log_beta_tilde": log_beta_tilde,
        "log_beta_tilde_clipped": clipped,
    }


@_exact
def zero_terminal_snr_betas(betas) -> np.ndarray:
    """The betas of a schedule rescaled to abar_T = 0 (Lin et al. 2024, algorithm 1) from float64
    betas taken as exact, by the definition: r_t = sqrt(abar_t), r'_t = (r_t - r_T) r_1 / (r_1 - r_T),
    abar'_t = r'_t^2, beta'_t = 1 - abar'_t / abar'_{t-1} (abar'_0 = 1), so beta'_T = 1."""
    abar = schedule_tables(betas)["alpha_bar"]
    r = _sqrt(abar)
    r_new = (r - r[-1]) * r[0] / (r[0] - r[-1])
    abar_new = r_new * r_new
    prev = np.concatenate([np.array([mp.mpf(1)], dtype=object), abar_new[:-1]])
    return 1 - abar_new / prev


def _repeat(shape, *cols):
    """Per-row columns (n, 1) repeated over the data dimension to `shape`."""
    return tuple(np.broadcast_to(c, shape) for c in cols)


def _col(tab, key, t):
    """Table `key` at paper timesteps t (int array (n,)), as an (n, 1) column for broadcasting."""
    return tab[key][np.asarray(t) - 1][:, None]


# -- forward process, posterior, parameterisations (docs/math.md §3-§5); rows of x <-> entries of t --

@_exact
def q_xt_given_x0(tab, t, x0):
    """(mean, variance, log variance) of N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
    x0 = mpf_array(x0)
    var = 1 - _col(tab, "alpha_bar", t)
    return _sqrt(_col(tab, "alpha_bar", t)) * x0, *_repeat(x0.shape, var, _log(var))


@_exact
def q_sample(tab, t, x0, eps):
    """sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    ab = _col(tab, "alpha_bar", t)
    return _sqrt(ab) * mpf_array(x0) + _sqrt(1 - ab) * mpf_array(eps)


@_exact
def q_xt_given_xtm1(tab, t, x_prev):
    """(mean, variance, log variance) of N(sqrt(alpha_t) x_{t-1}, beta_t I), alpha_t = 1 - beta_t."""
    x = mpf_array(x_prev)
    b = _col(tab, "beta", t)
    return _sqrt(1 - b) * x, *_repeat(x.shape, b, _log(b))


@_exact
def q_xt_given_xs(tab, s, t, xs):
    """(mean, variance, log variance) of N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I), abar_0 = 1."""
    xs = mpf_array(xs)
    abar0 = np.concatenate([np.array([mp.mpf(1)], dtype=object), tab["alpha_bar"]])
    ratio = (abar0[np.asarray(t)] / abar0[np.asarray(s)])[:, None]
    return _sqrt(ratio) * xs, *_repeat(xs.shape, 1 - ratio, _log(1 - ratio))


@_exact
def posterior_mean(tab, t, x0, xt):
    """mu_tilde_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t."""
    abp, b, ab = _col(tab, "alpha_bar_prev", t), _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    return (_sqrt(abp) * b / (1 - ab) * mpf_array(x0)
            + _sqrt(1 - b) * (1 - abp) / (1 - ab) * mpf_array(xt))


@_exact
def x0_from_posterior_mean(tab, t, xt, mean):
    """x_0 with mu_tilde_t(x_0, x_t) = mean: (mean - sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t)
    / (sqrt(abar_{t-1}) beta_t / (1 - abar_t))."""
    abp, b, ab = _col(tab, "alpha_bar_prev", t), _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    return ((mpf_array(mean) - _sqrt(1 - b) * (1 - abp) / (1 - ab) * mpf_array(xt))
            / (_sqrt(abp) * b / (1 - ab)))


@_exact
def posterior_variance(tab, t, shape):
    """(beta_tilde_t, log beta_tilde_t) repeated to `shape`: (1 - abar_{t-1}) / (1 - abar_t) beta_t (0 at t = 1)."""
    abp, b, ab = _col(tab, "alpha_bar_prev", t), _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    var = (1 - abp) / (1 - ab) * b
    return _repeat(shape, var, _log(var))


@_exact
def posterior_mean_from_eps(tab, t, xt, eps):
    """(x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)."""
    b, ab = _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    return (mpf_array(xt) - b / _sqrt(1 - ab) * mpf_array(eps)) / _sqrt(1 - b)


def _sa_s1(tab, t):
    ab = _col(tab, "alpha_bar", t)
    return _sqrt(ab), _sqrt(1 - ab)


@_exact
def x0_from_eps(tab, t, xt, eps):
    sa, s1 = _sa_s1(tab, t)
    return (mpf_array(xt) - s1 * mpf_array(eps)) / sa


@_exact
def eps_from_x0(tab, t, xt, x0):
    sa, s1 = _sa_s1(tab, t)
    return (mpf_array(xt) - sa * mpf_array(x0)) / s1


@_exact
def v_from_x0_eps(tab, t, x0, eps):
    sa, s1 = _sa_s1(tab, t)
    return sa * mpf_array(eps) - s1 * mpf_array(x0)


@_exact
def x0_from_v(tab, t, xt, v):
    sa, s1 = _sa_s1(tab, t)
    return sa * mpf_array(xt) - s1 * mpf_array(v)


@_exact
def eps_from_v(tab, t, xt, v):
    sa, s1 = _sa_s1(tab, t)
    return s1 * mpf_array(xt) + sa * mpf_array(v)


@_exact
def score_from_eps(tab, t, eps):
    return -mpf_array(eps) / _sa_s1(tab, t)[1]


@_exact
def eps_from_score(tab, t, score):
    return -_sa_s1(tab, t)[1] * mpf_array(score)


# -- Gaussians (docs/math.md §6) --------------------------------------------------------------------

def _normal_logpdf(x, m, v):
    return -(mp.log(2 * mp.pi * v) + (x - m) ** 2 / v) / 2


def _g(u):
    """u - log(1 + u), with the working precision raised by the digits the difference cancels."""
    with mpmath.workdps(DPS + _digits_lost(u)):
        return u - mp.log1p(u)


def _kl(m1, v1, m2, v2):
    """0.5 (log(v2 / v1) + (v1 + (m1 - m2)^2) / v2 - 1), evaluated at 50 + 2 * (digits lost) digits
    (the variance part is ~ (v1/v2 - 1)^2 / 4 when v1 ~ v2)."""
    with mpmath.workdps(DPS + 2 * _digits_lost(v1 / v2 - 1)):
        return (mp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2


def _log_mass(a, b):
    """log(Phi(b) - Phi(a)) for a < b (either may be infinite), with the tail complement used so
    that nothing cancels near 0 or 1: Phi(-z) = erfc(z / sqrt 2) / 2."""
    r2 = mp.sqrt(2)
    if a >= 0:          # both in the right tail
        return mp.log((mp.erfc(a / r2) - mp.erfc(b / r2)) / 2)
    if b <= 0:          # both in the left tail
        return mp.log((mp.erfc(-b / r2) - mp.erfc(-a / r2)) / 2)
    return mp.log1p(-(mp.erfc(-a / r2) + mp.erfc(b / r2)) / 2)   # straddles 0: 1 - both tails


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0 (mpmath's expm1 / log1p keep tiny arguments exact)."""
    if x == 0:
        return mp.mpf("-inf")
    return mp.log(-mp.expm1(x)) if x > -1 else mp.log1p(-mp.exp(x))


@_exact
def normal_log_density(x, mean, variance):
    """log N(x; mean, variance), elementwise."""
    return _vec(_normal_logpdf, 3)(mpf_array(x), mpf_array(mean), mpf_array(variance))


@_exact
def kl_normal(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) per element (docs/math.md §6)."""
    return _vec(_kl, 4)(mpf_array(m1), mpf_array(v1), mpf_array(m2), mpf_array(v2))


@_exact
def u_minus_log1p(u):
    """u - log(1 + u), elementwise."""
    return _vec(_g)(mpf_array(u))


@_exact
def log1mexp(x):
    """log(1 - exp(x)), elementwise, x <= 0."""
    return _vec(_log1mexp)(mpf_array(x))


def _disc_loglik(x, m, v):
    k = int(mp.nint((x + 1) * mp.mpf(255) / 2))              # level of x = k / 127.5 - 1
    sd = mp.sqrt(v)
    # the bin of level k is [(2k - 1) / 255 - 1, (2k + 1) / 255 - 1], exactly
    a = mp.mpf("-inf") if k == 0 else (mp.mpf(2 * k - 1) / 255 - 1 - m) / sd
    b = mp.mpf("inf") if k == 255 else (mp.mpf(2 * k + 1) / 255 - 1 - m) / sd
    return _log_mass(a, b)


@_exact
def discretized_gaussian_log_likelihood(x0, mean, variance):
    """log of the N(mean, variance) mass of x0's bin [(2k - 1)/255 - 1, (2k + 1)/255 - 1] (x0 = k/127.5 - 1),
    edges -inf at k = 0 and +inf at k = 255."""
    return _vec(_disc_loglik, 3)(mpf_array(x0), mpf_array(mean), mpf_array(variance))


# -- ELBO terms (docs/math.md §6) -------------------------------------------------------------------

@_exact
def prior_term(tab, x0):
    """L_T = sum over the last axis of KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1))."""
    ab = tab["alpha_bar"][-1]
    kl = _vec(lambda x: _kl(mp.sqrt(ab) * x, 1 - ab, mp.mpf(0), mp.mpf(1)))(mpf_array(x0))
    return _sum_last(kl)


@_exact
def kl_term(tab, t, x0, xt, model_mean, model_var):
    """sum over the last axis of KL(N(mu_tilde_t, beta_tilde_t) || N(model_mean, model_var))."""
    mu = posterior_mean(tab, t, x0, xt)
    var, _ = posterior_variance(tab, t, mu.shape)
    return _sum_last(_vec(_kl, 4)(mu, var, mpf_array(model_mean), mpf_array(model_var)))


@_exact
def decoder_nll(x0, mean, variance, decoder):
    """-sum over the last axis of log p(x_0 | x_1): normal density, or the discretised bin mass."""
    f = normal_log_density if decoder == "continuous" else discretized_gaussian_log_likelihood
    return -_sum_last(f(x0, mean, variance))


@_exact
def model_variance(tab, t, kind, v=None):
    """(sigma_t^2, log sigma_t^2): beta_t (fixed_large), clipped beta_tilde_t (fixed_small), or
    log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t (clipped) (learned_range, v of shape (n, d))."""
    lb, lbt = tab["log_beta"][np.asarray(t) - 1], tab["log_beta_tilde_clipped"][np.asarray(t) - 1]
    if kind == "fixed_large":
        log_var = lb
    elif kind == "fixed_small":
        log_var = lbt
    else:
        v = mpf_array(v)
        log_var = v * lb[:, None] + (1 - v) * lbt[:, None]
    return _exp(log_var), log_var


@_exact
def nats_to_bits_per_dim(nats, d):
    """nats / (d ln 2)."""
    return mpf_array(nats) / (d * mp.log(2))


def _sum_last(a):
    return np.asarray(np.sum(a, axis=-1), dtype=object)


# -- exact oracles (docs/math.md §7) ------------------------------------------------------------------

@_exact
def chain_log_prob(a, b, sigma2, x0):
    """log p_theta(x_0) of the reverse chain N(a_t x_t + b_t, sigma_t^2 I) from p(x_T) = N(0, I):
    mean and variance propagated down from t = T."""
    a, b, s2, x0 = mpf_array(a), mpf_array(b), mpf_array(sigma2), mpf_array(x0)
    T, d = b.shape
    m, v = np.array([mp.mpf(0)] * d, dtype=object), mp.mpf(1)
    for i in range(T - 1, -1, -1):
        m, v = a[i] * m + b[i], a[i] ** 2 * v + s2[i]
    return np.array([-(d * mp.log(2 * mp.pi * v) + sum((row - m) ** 2) / v) / 2 for row in x0],
                    dtype=object)


@_exact
def chain_neg_elbo(tab, a, b, sigma2, x0):
    """Exact -ELBO = L_T + sum_{t=2}^T L_{t-1} + L_0 for the linear-Gaussian chain.

    With x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the Gaussian expectations are exact:
    L_{t-1} = sum_d [KL(N(., beta_tilde_t) || N(., sigma_t^2)) variance part + E r^2 / (2 sigma_t^2)],
    r = mu_tilde_t(x_0, x_t) - a_t x_t - b_t; L_0 = sum_d [log(2 pi sigma_1^2) / 2 + E r_0^2 / (2 sigma_1^2)],
    r_0 = x_0 - a_1 x_1 - b_1. E r^2 = (mean of r)^2 + (coefficient of eps)^2.
    """
    a, b, s2, X = mpf_array(a), mpf_array(b), mpf_array(sigma2), mpf_array(x0)
    T, d = b.shape
    beta, abar, abar_prev = tab["beta"], tab["alpha_bar"], tab["alpha_bar_prev"]
    out = []
    for x in X:
        total = sum(_kl(mp.sqrt(abar[-1]) * xi, 1 - abar[-1], mp.mpf(0), mp.mpf(1)) for xi in x)
        for i in range(1, T):
            c0 = mp.sqrt(abar_prev[i]) * beta[i] / (1 - abar[i])
            c1 = mp.sqrt(1 - beta[i]) * (1 - abar_prev[i]) / (1 - abar[i])
            bt = (1 - abar_prev[i]) / (1 - abar[i]) * beta[i]
            noise2 = (c1 - a[i]) ** 2 * (1 - abar[i])
            for j in range(d):
                mean_r = (c0 + (c1 - a[i]) * mp.sqrt(abar[i])) * x[j] - b[i, j]
                total += _kl(0, bt, 0, s2[i]) + (mean_r ** 2 + noise2) / (2 * s2[i])
        noise2 = a[0] ** 2 * (1 - abar[0])
        for j in range(d):
            mean_r = (1 - a[0] * mp.sqrt(abar[0])) * x[j] - b[0, j]
            total += mp.log(2 * mp.pi * s2[0]) / 2 + (mean_r ** 2 + noise2) / (2 * s2[0])
        out.append(total)
    return np.array(out, dtype=object)


@_exact
def mixture_quantities(weights, means, covs, x, abar):
    """For q_t = sum_k w_k N(sqrt(abar) m_k, abar S_k + (1 - abar) I) (abar = 1: the data):
    (log q_t(x), score, E[x_0 | x_t], eps*) per row of x; abar: one value (mpf or float64) per row.

    Dense mpmath matrices: C_k^{-1}, det C_k; responsibilities r_k = w_k N_k / q_t;
    score = -sum r_k C_k^{-1} (x - sqrt(abar) m_k); E[x_0|x_t] = sum r_k (m_k + sqrt(abar) S_k C_k^{-1} (x - sqrt(abar) m_k));
    eps* = -sqrt(1 - abar) score.
    """
    w, M, S, X = mpf_array(weights), mpf_array(means), mpf_array(covs), mpf_array(x)
    AB = np.asarray(abar, dtype=object) if np.asarray(abar).dtype == object else mpf_array(abar)
    K, d = M.shape
    Smat = [mp.matrix(S[k].tolist()) for k in range(K)]
    logq, score, post, eps = [], [], [], []
    for xrow, ab in zip(X, AB):
        xv = mp.matrix(xrow.tolist())
        logs, sc_terms, pm_terms = [], [], []
        for k in range(K):
            C = ab * Smat[k] + (1 - ab) * mp.eye(d)
            Ci = C ** -1
            diff = xv - mp.sqrt(ab) * mp.matrix(M[k].tolist())
            quad = (diff.T * Ci * diff)[0, 0]
            logs.append(mp.log(w[k]) - (d * mp.log(2 * mp.pi) + mp.log(mp.det(C)) + quad) / 2)
            sc_terms.append(Ci * diff)
            pm_terms.append(mp.matrix(M[k].tolist()) + mp.sqrt(ab) * Smat[k] * (Ci * diff))
        top = max(logs)
        lse = top + mp.log(mp.fsum(mp.exp(lk - top) for lk in logs))
        r = [mp.exp(lk - lse) for lk in logs]
        sc = -sum((r[k] * sc_terms[k] for k in range(1, K)), r[0] * sc_terms[0])
        pm = sum((r[k] * pm_terms[k] for k in range(1, K)), r[0] * pm_terms[0])
        logq.append(lse)
        score.append([sc[i] for i in range(d)])
        post.append([pm[i] for i in range(d)])
        eps.append([-mp.sqrt(1 - ab) * sc[i] for i in range(d)])
    return tuple(np.array(v, dtype=object) for v in (logq, score, post, eps))


# -- inference-time processes and Gaussian data (docs/math.md §10, §11) ----------------------------------

@_exact
def respaced_tables(tab, kept) -> dict[str, np.ndarray]:
    """The tables of the chain over the kept steps (paper t, increasing), straight from docs/math.md §10:
    abar'_j = abar_{k_j}, beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}} (abar_0 = 1), and from them the
    posterior's coefficients and variance as in `schedule_tables`."""
    abar = tab["alpha_bar"][np.asarray(kept) - 1]
    prev = np.concatenate([np.array([mp.mpf(1)], dtype=object), abar[:-1]])
    beta = 1 - abar / prev
    om, om_prev = 1 - abar, 1 - prev
    beta_tilde = om_prev / om * beta
    log_bt = _log(beta_tilde)
    clipped = log_bt.copy()
    clipped[0] = log_bt[1] if abar.size > 1 else mp.log(beta[0])
    return {"alpha_bar": abar, "one_minus_alpha_bar": om, "log_alpha_bar": _log(abar), "beta": beta,
            "beta_tilde": beta_tilde, "log_beta_tilde_clipped": clipped,
            "posterior_coef_x0": _sqrt(prev) * beta / om, "posterior_coef_xt": _sqrt(abar / prev) * om_prev / om}


@_exact
def ddim_coefficients(tab, t, s, eta, final_alpha_bar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sqrt(abar_s), sqrt(1 - abar_s - sigma^2), sigma), sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t)
    (1 - abar_t / abar_s) (Song et al. eq. 16), abar_0 = final_alpha_bar; per entry of t, s."""
    e = mp.mpf(eta)
    out = ([], [], [])
    for tk, sk in zip(np.asarray(t).tolist(), np.asarray(s).tolist()):
        ab_t = tab["alpha_bar"][tk - 1]
        ab_s = tab["alpha_bar"][sk - 1] if sk >= 1 else mp.mpf(final_alpha_bar)
        sigma2 = e ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        for lst, v in zip(out, (mp.sqrt(ab_s), mp.sqrt(1 - ab_s - sigma2), mp.sqrt(sigma2))):
            lst.append(v)
    return tuple(np.array(v, dtype=object) for v in out)


@_exact
def ddim_step(tab, t, s, eta, final_alpha_bar, xt, x0_hat, noise):
    """x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z, eps_hat =
    (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t); rows of the arrays <-> entries of t."""
    a, b, c = (v[:, None] for v in ddim_coefficients(tab, t, s, eta, final_alpha_bar))
    xt, x0_hat, z = mpf_array(xt), mpf_array(x0_hat), mpf_array(noise)
    sa, s1 = _sa_s1(tab, t)
    return a * x0_hat + b * (xt - sa * x0_hat) / s1 + c * z


@_exact
def ddim_invert(tab, s, t, xs, x0_hat):
    """x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) (x_s - sqrt(abar_s) x0_hat) / sqrt(1 - abar_s)."""
    xs, x0 = mpf_array(xs), mpf_array(x0_hat)
    sa_s, s1_s = _sa_s1(tab, s)
    sa_t, s1_t = _sa_s1(tab, t)
    return sa_t * x0 + s1_t * (xs - sa_s * x0) / s1_s


@_exact
def gaussian_data(tab, t, mean, variance, xt):
    """(x0*, eps*, v*, Var(eps | x_t), D_t) of data N(mean, variance) per dimension (docs/math.md §11):
    x0* = mu + sqrt(abar) s2 (x - sqrt(abar) mu) / D, eps* = sqrt(1 - abar) (x - sqrt(abar) mu) / D,
    v* = sqrt(abar) eps* - sqrt(1 - abar) x0*, Var = abar s2 / D, D = abar s2 + 1 - abar."""
    ab = _col(tab, "alpha_bar", t)
    mu, s2, x = mpf_array(mean)[None, :], mpf_array(variance)[None, :], mpf_array(xt)
    D = ab * s2 + (1 - ab)
    sa, s1 = _sqrt(ab), _sqrt(1 - ab)
    x0 = mu + sa * s2 * (x - sa * mu) / D
    eps = s1 * (x - sa * mu) / D
    return x0, eps, sa * eps - s1 * x0, ab * s2 / D, D


@_exact
def gaussian_sampler_output(tab, tau, mean, variance, process, eta=0.0, final_alpha_bar=1.0, fixed="small",
                            prediction="epsilon", model_tau=None, next_tau=None):
    """Mean and variance of the output of the loop over tau run with the optimal predictor of
    Gaussian data, by propagating N(m, V) from N(0, 1) through each step written out. The
    prediction (x0*, eps* or v*, affine in x) is taken at model_tau (default t) and turned into
    x0_hat and eps_hat with abar_t; DDPM x_s = c0 x0_hat + c1 x + sigma z with the strided
    posterior's c0 = sqrt(abar_s) beta' / (1 - abar_t), c1 = sqrt(abar_t / abar_s) (1 - abar_s) /
    (1 - abar_t), sigma^2 = beta_tilde' or beta' (none to x_0); DDIM x_s = sqrt(abar_s) x0_hat +
    sqrt(1 - abar_s - sigma^2) eps_hat + sigma z. s = next_tau (default the next of tau, then 0).
    One dimension at a time (the data's per-dimension mean and variance)."""
    out_m, out_v = [], []
    e = mp.mpf(eta)
    seq = [int(v) for v in np.asarray(tau).tolist()]
    nxt = seq[1:] + [0] if next_tau is None else [int(v) for v in next_tau]
    mod = seq if model_tau is None else [int(v) for v in model_tau]
    ab_at = lambda k: tab["alpha_bar"][k - 1]                                  # noqa: E731
    for mu, s2 in zip(mpf_array(mean).tolist(), mpf_array(variance).tolist()):
        m, V = mp.mpf(0), mp.mpf(1)
        for tk, sk, mk in zip(seq, nxt, mod):
            ab_t, ab_m = ab_at(tk), ab_at(mk)
            ab_s = ab_at(sk) if sk >= 1 else (mp.mpf(1) if process == "ddpm" else mp.mpf(final_alpha_bar))
            D = ab_m * s2 + 1 - ab_m
            k, c = mp.sqrt(ab_m) * s2 / D, mu * (1 - ab_m) / D                    # x0* = k x + c at model t
            ek, ec = mp.sqrt(1 - ab_m) / D, -mp.sqrt(ab_m * (1 - ab_m)) * mu / D  # eps* = ek x + ec
            sa, s1 = mp.sqrt(ab_t), mp.sqrt(1 - ab_t)
            if prediction == "epsilon":                                         # x0_hat = (x - s1 eps) / sa
                k, c = (1 - s1 * ek) / sa, -s1 * ec / sa
            elif prediction == "v_prediction":                                  # x0_hat = sa x - s1 v
                vk, vc = mp.sqrt(ab_m) * ek - mp.sqrt(1 - ab_m) * k, mp.sqrt(ab_m) * ec - mp.sqrt(1 - ab_m) * c
                k, c = sa - s1 * vk, -s1 * vc
            ek, ec = (1 - sa * k) / s1, -sa * c / s1                            # eps_hat from x0_hat at t
            if process == "ddpm":
                beta_ = 1 - ab_t / ab_s
                c0, c1 = mp.sqrt(ab_s) * beta_ / (1 - ab_t), mp.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
                var = 0 if sk == 0 else ((1 - ab_s) / (1 - ab_t) * beta_ if fixed == "small" else beta_)
                A, B = c0 * k + c1, c0 * c
            else:
                var = e ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
                g = mp.sqrt(1 - ab_s - var)
                A, B = mp.sqrt(ab_s) * k + g * ek, mp.sqrt(ab_s) * c + g * ec
            m, V = A * m + B, A ** 2 * V + var
        out_m.append(m)
        out_v.append(V)
    return np.array(out_m, dtype=object), np.array(out_v, dtype=object)


# -- error measures -----------------------------------------------------------------------------

@_exact
def to_double_double(exact) -> tuple[np.ndarray, np.ndarray]:
    """exact ~ hi + lo with hi = float(exact) and lo = float(exact - hi) (both rounded to nearest, the
    difference at DPS digits); lo = 0 where hi is infinite. On raw mpf values: float() and
    subtraction without the mpf objects' conversions."""
    exact = np.asarray(exact, dtype=object)
    raw = [_raw(e) for e in exact.ravel()]
    prec = mp.prec
    hi = [to_float(r, rnd=round_nearest) for r in raw]
    lo = [0.0 if math.isinf(h) else to_float(mpf_sub(r, from_float(h), prec, round_nearest), rnd=round_nearest)
          for r, h in zip(raw, hi)]
    return (np.array(hi, dtype=np.float64).reshape(exact.shape), np.array(lo, dtype=np.float64).reshape(exact.shape))


def _raw(e):
    return e._mpf_ if isinstance(e, mp.mpf) else mp.mpf(e)._mpf_


def _is_zero(exact) -> np.ndarray:
    """exact == 0 per element (an exact value below the float64 range is not 0)."""
    exact = np.asarray(exact, dtype=object)
    return np.array([_raw(e) == fzero for e in exact.ravel()], dtype=bool).reshape(exact.shape)


def _abs_diff(computed, hi, lo):
    """|computed - exact| from the double-double exact value (computed - hi is exact when close);
    0 where both are the same infinity, inf where only one is infinite."""
    c = np.asarray(computed, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs((c - hi) - lo)
    same_inf = np.isinf(hi) & (c == hi)
    return np.where(same_inf, 0.0, np.where(np.isinf(hi) | ~np.isfinite(c), np.inf, diff))


def elementwise_relative_error(computed, exact, *, zero: str = "absolute") -> np.ndarray:
    """|computed - exact| / |exact| per element.

    Where the exact value is 0: ``zero="exact"`` demands an exact 0 (error 0, else inf);
    ``zero="absolute"`` uses the absolute error. Where 0 < |exact| < DBL_MIN (below the normal
    range, where float64 has no relative precision) the denominator is DBL_MIN.
    """
    hi, lo = to_double_double(exact)
    c = np.asarray(computed, dtype=np.float64)
    diff = _abs_diff(c, hi, lo)
    exact_zero = _is_zero(exact)
    with np.errstate(invalid="ignore", over="ignore"):   # a broken variant may differ by inf
        rel = diff / np.maximum(np.abs(hi), DBL_MIN)
        rel = np.where(np.isinf(hi), diff, rel)
    if zero == "exact":
        return np.where(exact_zero, np.where(c == 0, 0.0, np.inf), rel)
    return np.where(exact_zero, np.abs(c), rel)


def normwise_relative_error(computed, exact) -> np.ndarray:
    """max_j |computed_ij - exact_ij| / max_j |exact_ij| per row i (last axis = data dimension d).

    Used for outputs that are differences/sums of terms (means, conversions), where a component
    can cancel to near 0 while the vector as a whole is well-determined.
    """
    hi, lo = to_double_double(exact)
    diff = _abs_diff(computed, hi, lo)
    scale = np.max(np.abs(hi), axis=-1)
    with np.errstate(invalid="ignore"):
        return np.max(diff, axis=-1) / np.where(scale > 0, scale, 1.0)


def _show(e) -> str:
    with mpmath.workdps(DPS):
        return mp.nstr(e, 25) if isinstance(e, mp.mpf) else repr(e)


def measure(name, case, computed, exact, labels, *, kind="elementwise", zero="absolute", bound=BOUND) -> Result:
    """Worst error of `computed` against `exact` (object array of mpf, same shape), as a Result:
    named "name [case]", its worst error against `bound` (BOUND, or a tighter one), the detail
    saying the measure, where the worst error occurred and both values there.

    kind: "elementwise" (relative per element) or "normwise" (per row over the last axis).
    labels[i] describes row i (e.g. "t=17"); the element index within a row is appended.
    """
    computed = np.asarray(computed, dtype=np.float64)
    exact = np.asarray(exact, dtype=object)
    title = f"{name} [{case}]"
    if computed.shape != exact.shape:
        return Result(title, "fail", math.inf, bound, f"shape {computed.shape}, expected {exact.shape}")
    if kind == "normwise":
        err = normwise_relative_error(computed, exact)
        i = int(np.argmax(err)) if err.size else 0
        row_idx = np.unravel_index(i, err.shape)
        hi, lo = to_double_double(exact[row_idx])
        j = int(np.argmax(_abs_diff(computed[row_idx], hi, lo)))
        idx = row_idx + (j,)
        desc = "normwise relative (per row: max|c-e| / max|e| over d)"
    else:
        err = elementwise_relative_error(computed, exact, zero=zero)
        i = int(np.argmax(err)) if err.size else 0
        idx = np.unravel_index(i, err.shape)
        desc = "elementwise relative"
    idx = tuple(int(k) for k in idx)
    where = str(labels[idx[0]]) + (f", dim {idx[1] if len(idx) == 2 else idx[1:]}" if len(idx) > 1 else "")
    worst = float(err.flat[i]) if err.size else 0.0
    passed = bool(worst <= bound)
    return Result(title, "pass" if passed else "fail", worst, bound,
                  f"{desc} error {worst:.3e} {'<=' if passed else '>'} {bound:.0e} at {where}: computed "
                  f"{float(computed[idx])!r}, exact {_show(exact[idx])}", values=int(computed.size))


def worst_of(*results: Result) -> Result:
    """The measurement with the largest error (ties: the first)."""
    return max(results, key=lambda r: r.worst_error)
