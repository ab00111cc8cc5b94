"""Exact values of the docs/math.md formulas at 50 digits, and the error measures of the precision
checks (`ddpm_verify.precision`: properties/test_precision.py, benchmarks/precision.py).

Independence: this module never imports `reference`. Every function evaluates the formula as
docs/math.md writes it (products, quotients, logs), not the reference's rearrangements. float64
inputs (data, and the float64 betas a reference schedule built) are taken as exact.

Engines: the formulas are written once, in operators and this module's scalar functions, and run
in one of two arbitrary-precision libraries. ``arb`` (python-flint, the default) evaluates in
ball arithmetic: every value is an interval certain to contain the exact one, and a value whose
ball is wider than 2^-100 of its size is an error, never a reference value (`to_double_double`).
``mpmath`` evaluates the same formulas at the same precision in its own arithmetic; `engine`
switches to it, and the suite checks that both give the same measurements
(properties/test_precision.py). Values are numpy object arrays of the engine's numbers. Every
formula runs at DPS digits inside the engine's own precision context (some locally raise it where
a formula cancels), so the global precision is left as it was found; each is memoised on its
inputs' values and the engine, and returns read-only arrays (`_exact`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from fractions import Fraction

import flint
import mpmath
import numpy as np
from mpmath import mp
from mpmath.libmp import finf, fninf, from_float, from_man_exp, fzero, mpf_sub, round_nearest, to_float, to_str

from .results import Result

DPS = 50                      # decimal digits of every exact evaluation
BOUND = 1e-12                 # the error bound the suite asserts
DBL_MIN = float(np.finfo(np.float64).tiny)   # smallest normal float64
BALL_BITS = 100               # a value's ball radius is at most 2^-BALL_BITS of its magnitude


def _on_ball(method):
    """An arb method as a function of a ball, or of an int or float (taken exactly)."""
    arb = flint.arb
    return lambda v: method(v if type(v) is arb else arb(v))


class _Arb:
    """Ball arithmetic (python-flint's arb): a value is mid +- rad with the exact value inside."""

    name = "arb"
    number = flint.arb
    types = (flint.arb,)
    sqrt, log, exp, log1p, expm1, erfc, cos = (staticmethod(_on_ball(f)) for f in (
        flint.arb.sqrt, flint.arb.log, flint.arb.exp, flint.arb.log1p, flint.arb.expm1, flint.arb.erfc, flint.arb.cos))
    pi = staticmethod(flint.arb.pi)
    workdps = staticmethod(flint.ctx.workdps)

    @staticmethod
    def parts(e) -> tuple:
        """(midpoint, radius) as raw mpmath values (exact); (None, inf) for an undetermined ball."""
        mid = e.mid()
        if not mid.is_finite():                  # +-inf, or nan
            f = float(mid)
            return (None, finf) if math.isnan(f) else ((finf if f > 0 else fninf), fzero)
        man, exp = mid.man_exp()
        rad_man, rad_exp = e.rad().man_exp()
        return from_man_exp(int(man), int(exp)), from_man_exp(int(rad_man), int(rad_exp))

    @staticmethod
    def double_double(e) -> tuple[float, float]:
        """(hi, lo) of the midpoint m: hi = float(m), lo = float(m - hi) (arb's float() rounds to
        nearest, ties to even; m - hi is exact); the radius checked first."""
        if not e.rel_accuracy_bits() >= BALL_BITS:
            raise _undetermined(e)
        mid = e.mid()
        hi = float(mid)
        return hi, (0.0 if math.isinf(hi) else float(mid - hi))

    @staticmethod
    def is_zero(e) -> bool:
        return e.is_zero()


class _Mpmath:
    """mpmath's multiprecision floats (each operation rounded to the working precision)."""

    name = "mpmath"
    number = staticmethod(mp.mpf)
    types = (mp.mpf,)
    sqrt, log, exp, log1p, expm1, erfc, cos = (staticmethod(f) for f in (mp.sqrt, mp.log, mp.exp, mp.log1p,
                                                                              mp.expm1, mp.erfc, mp.cos))
    pi = staticmethod(lambda: +mp.pi)
    workdps = staticmethod(mpmath.workdps)

    @staticmethod
    def parts(e) -> tuple:
        return e._mpf_, fzero

    @staticmethod
    def double_double(e) -> tuple[float, float]:
        hi = to_float(e._mpf_, rnd=round_nearest)
        return hi, (0.0 if math.isinf(hi) else to_float(mpf_sub(e._mpf_, from_float(hi)), rnd=round_nearest))

    @staticmethod
    def is_zero(e) -> bool:
        return e._mpf_ == fzero


def _undetermined(e) -> ValueError:
    return ValueError(f"an exact value is not determined to {BALL_BITS} bits: {e} (the formula cancels more "
                      f"than the working precision allows)")


ENGINES = {"arb": _Arb, "mpmath": _Mpmath}
_ENGINE_OF_TYPE = {t: eng for eng in ENGINES.values() for t in eng.types}
_engine = _Arb


@contextlib.contextmanager
def engine(name: str):
    """Evaluate in engine `name` ("arb" or "mpmath") inside the block."""
    global _engine
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")
    previous, _engine = _engine, ENGINES[name]
    try:
        yield
    finally:
        _engine = previous


def engine_name() -> str:
    return _engine.name


# -- the engine's scalar functions (elementwise use through _vec) ------------------------------------

def _num(x):
    """x (int, float, or a decimal string such as "1e-4") as the engine's number; floats exactly."""
    return _engine.number(x)


def _pi():
    return _engine.pi()


def _sqrt1(v):
    return _engine.sqrt(v)


def _log1(v):
    """log v, -inf at an exact 0 (which arb would make an undetermined ball)."""
    return -_num(math.inf) if v == 0 else _engine.log(v)


def _exp1(v):
    return _engine.exp(v)


def _exact(fn):
    """An exact evaluation: `fn` run at DPS digits in the current engine (the previous precision is
    restored afterwards), memoised on the engine and the content of its arguments (`_key`). The
    same inputs give the same exact values, computed once per process, so a run that measures many
    variants of the reference on the same inputs (the self-check) evaluates each formula once.
    Arrays and tables returned are read-only."""
    memo: dict = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = _key((_engine.name, args, tuple(sorted(kwargs.items()))))
        if key is not None and key in memo:
            return memo[key]
        with _engine.workdps(DPS):
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
    other object arrays by their elements; floats by their bits (-0.0 is not 0.0); an engine's
    number by its exact binary value (and radius)."""
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
    eng = _engine_of(a)
    if eng is not None:
        return (eng.name, eng.parts(a))
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
    """Elementwise version of a scalar function on object arrays (returns an array)."""
    uf = np.frompyfunc(f, nin, 1)
    return lambda *a: np.asarray(uf(*a), dtype=object)


def exact_array(x) -> np.ndarray:
    """float64 array -> object array of the engine's numbers, exactly."""
    return _vec(_num)(np.asarray(x, dtype=np.float64))


_sqrt = _vec(_sqrt1)
_log = _vec(_log1)
_exp = _vec(_exp1)


def _digits_lost(r) -> int:
    """Decimal digits lost when a quantity of size |r| << 1 is squared out of O(1) terms."""
    if r == 0 or abs(r) >= 1:
        return 0
    return int(-math.log10(max(abs(float(r)), 1e-300))) + 5


# -- schedules (docs/math.md §2) -------------------------------------------------------------------

@_exact
def linear_betas(T: int, *, scale_with_T: bool = False, start="1e-4", end="0.02") -> np.ndarray:
    """beta_t = start + (end - start) (t - 1) / (T - 1), ends scaled by 1000 / T if asked; T = 1: start."""
    scale = _num(1000) / T if scale_with_T else _num(1)
    lo, hi = _num(start) * scale, _num(end) * scale
    if T == 1:
        return np.array([lo], dtype=object)
    return np.array([lo + (hi - lo) * (t - 1) / (T - 1) for t in range(1, T + 1)], dtype=object)


@_exact
def cosine_betas(T: int, *, s="0.008", max_beta="0.999") -> np.ndarray:
    """beta_t = min(1 - f(t) / f(t-1), max_beta), f(u) = cos^2(((u / T) + s) / (1 + s) * pi / 2)."""
    s, cap = _num(s), _num(max_beta)
    f = [_engine.cos((_num(u) / T + s) / (1 + s) * _pi() / 2) ** 2 for u in range(T + 1)]
    return np.array([min(1 - f[t] / f[t - 1], cap) for t in range(1, T + 1)], dtype=object)


@_exact
def sigmoid_alpha_bar_betas(T: int, *, start="-3", end="3", tau="1", max_beta="0.999") -> np.ndarray:
    """beta_t = min(1 - abar_t / abar_{t-1}, max_beta), abar_u = (sig(e) - sig(x_u)) / (sig(e) - sig(x_0)),
    x_u = ((u / T)(end - start) + start) / tau, e = end / tau, sig the logistic function."""
    start, end, tau, cap = _num(start), _num(end), _num(tau), _num(max_beta)
    sig = lambda v: 1 / (1 + _exp1(-v))                                    # noqa: E731
    abar = [(sig(end / tau) - sig(((_num(u) / T) * (end - start) + start) / tau))
            / (sig(end / tau) - sig(start / tau)) for u in range(T + 1)]
    return np.array([min(1 - abar[t] / abar[t - 1], cap) for t in range(1, T + 1)], dtype=object)


@_exact
def schedule_tables(betas) -> dict[str, np.ndarray]:
    """Every per-timestep table of docs/math.md §1-§4 for t = 1..T, from float64 betas taken as exact.

    abar_t is the plain product of alpha_s = 1 - beta_s (abar_0 = 1); log abar_t = log(abar_t);
    1 - abar_t is a subtraction at 50 digits. t = 1: 1 - abar_0 = 0, beta_tilde_1 = 0 exactly, and
    log_beta_tilde_clipped is log beta_tilde_2 (log beta_1 when T = 1; improved-diffusion).
    """
    b = exact_array(betas)
    T = b.size
    alpha = 1 - b
    abar = np.empty(T, dtype=object)
    acc = _num(1)
    for i in range(T):
        acc = acc * alpha[i]
        abar[i] = acc
    abar_prev = np.concatenate([np.array([_num(1)], dtype=object), abar[:-1]])
    om, om_prev = 1 - abar, 1 - abar_prev
    beta_tilde = om_prev / om * b
    log_beta_tilde = _log(beta_tilde)                    # -inf at t = 1
    clipped = log_beta_tilde.copy()
    clipped[0] = log_beta_tilde[1] if T > 1 else _log1(b[0])
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
    prev = np.concatenate([np.array([_num(1)], dtype=object), abar_new[:-1]])
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
    x0 = exact_array(x0)
    var = 1 - _col(tab, "alpha_bar", t)
    return _sqrt(_col(tab, "alpha_bar", t)) * x0, *_repeat(x0.shape, var, _log(var))


@_exact
def q_sample(tab, t, x0, eps):
    """sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    ab = _col(tab, "alpha_bar", t)
    return _sqrt(ab) * exact_array(x0) + _sqrt(1 - ab) * exact_array(eps)


@_exact
def q_xt_given_xtm1(tab, t, x_prev):
    """(mean, variance, log variance) of N(sqrt(alpha_t) x_{t-1}, beta_t I), alpha_t = 1 - beta_t."""
    x = exact_array(x_prev)
    b = _col(tab, "beta", t)
    return _sqrt(1 - b) * x, *_repeat(x.shape, b, _log(b))


@_exact
def q_xt_given_xs(tab, s, t, xs):
    """(mean, variance, log variance) of N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I), abar_0 = 1."""
    xs = exact_array(xs)
    abar0 = np.concatenate([np.array([_num(1)], dtype=object), tab["alpha_bar"]])
    ratio = (abar0[np.asarray(t)] / abar0[np.asarray(s)])[:, None]
    return _sqrt(ratio) * xs, *_repeat(xs.shape, 1 - ratio, _log(1 - ratio))


@_exact
def posterior_mean(tab, t, x0, xt):
    """mu_tilde_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t."""
    abp, b, ab = _col(tab, "alpha_bar_prev", t), _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    return (_sqrt(abp) * b / (1 - ab) * exact_array(x0)
            + _sqrt(1 - b) * (1 - abp) / (1 - ab) * exact_array(xt))


@_exact
def x0_from_posterior_mean(tab, t, xt, mean):
    """x_0 with mu_tilde_t(x_0, x_t) = mean: (mean - sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t)
    / (sqrt(abar_{t-1}) beta_t / (1 - abar_t))."""
    abp, b, ab = _col(tab, "alpha_bar_prev", t), _col(tab, "beta", t), _col(tab, "alpha_bar", t)
    return ((exact_array(mean) - _sqrt(1 - b) * (1 - abp) / (1 - ab) * exact_array(xt))
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
    return (exact_array(xt) - b / _sqrt(1 - ab) * exact_array(eps)) / _sqrt(1 - b)


def _sa_s1(tab, t):
    ab = _col(tab, "alpha_bar", t)
    return _sqrt(ab), _sqrt(1 - ab)


@_exact
def x0_from_eps(tab, t, xt, eps):
    sa, s1 = _sa_s1(tab, t)
    return (exact_array(xt) - s1 * exact_array(eps)) / sa


@_exact
def eps_from_x0(tab, t, xt, x0):
    sa, s1 = _sa_s1(tab, t)
    return (exact_array(xt) - sa * exact_array(x0)) / s1


@_exact
def v_from_x0_eps(tab, t, x0, eps):
    sa, s1 = _sa_s1(tab, t)
    return sa * exact_array(eps) - s1 * exact_array(x0)


@_exact
def x0_from_v(tab, t, xt, v):
    sa, s1 = _sa_s1(tab, t)
    return sa * exact_array(xt) - s1 * exact_array(v)


@_exact
def eps_from_v(tab, t, xt, v):
    sa, s1 = _sa_s1(tab, t)
    return s1 * exact_array(xt) + sa * exact_array(v)


@_exact
def score_from_eps(tab, t, eps):
    return -exact_array(eps) / _sa_s1(tab, t)[1]


@_exact
def eps_from_score(tab, t, score):
    return -_sa_s1(tab, t)[1] * exact_array(score)


# -- Gaussians (docs/math.md §6) --------------------------------------------------------------------

def _normal_logpdf(x, m, v):
    return -(_log1(2 * _pi() * v) + (x - m) ** 2 / v) / 2


def _g(u):
    """u - log(1 + u), with the working precision raised by the digits the difference cancels."""
    with _engine.workdps(DPS + _digits_lost(u)):
        return u - _engine.log1p(u)


def _kl(m1, v1, m2, v2):
    """0.5 (log(v2 / v1) + (v1 + (m1 - m2)^2) / v2 - 1), evaluated at 50 + 2 * (digits lost) digits
    (the variance part is ~ (v1/v2 - 1)^2 / 4 when v1 ~ v2)."""
    with _engine.workdps(DPS + 2 * _digits_lost(v1 / v2 - 1)):
        return (_log1(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2


def _log_mass(a, b):
    """log(Phi(b) - Phi(a)) for a < b, a = None for -inf and b = None for +inf, with the tail
    complements used so that nothing cancels near 0 or 1: P(Z > z) = erfc(z / sqrt 2) / 2 and
    P(Z < z) = erfc(-z / sqrt 2) / 2 (0 at the infinite ends)."""
    r2 = _sqrt1(2)
    above = lambda z: 0 if z is None else _engine.erfc(z / r2) / 2            # noqa: E731
    below = lambda z: 0 if z is None else _engine.erfc(-z / r2) / 2           # noqa: E731
    if a is not None and a >= 0:        # both in the right tail
        return _log1(above(a) - above(b))
    if b is not None and b <= 0:        # both in the left tail
        return _log1(below(b) - below(a))
    return _engine.log1p(-(below(a) + above(b)))                              # straddles 0: 1 - both tails


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0 (expm1 / log1p keep tiny arguments exact)."""
    if x == 0:
        return -_num(math.inf)
    return _log1(-_engine.expm1(x)) if x > -1 else _engine.log1p(-_exp1(x))


@_exact
def normal_log_density(x, mean, variance):
    """log N(x; mean, variance), elementwise."""
    return _vec(_normal_logpdf, 3)(exact_array(x), exact_array(mean), exact_array(variance))


@_exact
def kl_normal(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) per element (docs/math.md §6)."""
    return _vec(_kl, 4)(exact_array(m1), exact_array(v1), exact_array(m2), exact_array(v2))


@_exact
def u_minus_log1p(u):
    """u - log(1 + u), elementwise."""
    return _vec(_g)(exact_array(u))


@_exact
def log1mexp(x):
    """log(1 - exp(x)), elementwise, x <= 0."""
    return _vec(_log1mexp)(exact_array(x))


def _disc_loglik(x, m, v):
    k = round((Fraction(x) + 1) * Fraction(255, 2))          # level of x = k / 127.5 - 1 (x a float64)
    sd = _sqrt1(v)
    # the bin of level k is [(2k - 1) / 255 - 1, (2k + 1) / 255 - 1], exactly
    a = None if k == 0 else (_num(2 * k - 1) / 255 - 1 - m) / sd
    b = None if k == 255 else (_num(2 * k + 1) / 255 - 1 - m) / sd
    return _log_mass(a, b)


@_exact
def discretized_gaussian_log_likelihood(x0, mean, variance):
    """log of the N(mean, variance) mass of x0's bin [(2k - 1)/255 - 1, (2k + 1)/255 - 1] (x0 = k/127.5 - 1),
    edges -inf at k = 0 and +inf at k = 255."""
    return _vec(_disc_loglik, 3)(np.asarray(x0, dtype=np.float64), exact_array(mean), exact_array(variance))


# -- ELBO terms (docs/math.md §6) -------------------------------------------------------------------

@_exact
def prior_term(tab, x0):
    """L_T = sum over the last axis of KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1))."""
    ab = tab["alpha_bar"][-1]
    kl = _vec(lambda x: _kl(_sqrt1(ab) * x, 1 - ab, _num(0), _num(1)))(exact_array(x0))
    return _sum_last(kl)


@_exact
def kl_term(tab, t, x0, xt, model_mean, model_var):
    """sum over the last axis of KL(N(mu_tilde_t, beta_tilde_t) || N(model_mean, model_var))."""
    mu = posterior_mean(tab, t, x0, xt)
    var, _ = posterior_variance(tab, t, mu.shape)
    return _sum_last(_vec(_kl, 4)(mu, var, exact_array(model_mean), exact_array(model_var)))


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
        v = exact_array(v)
        log_var = v * lb[:, None] + (1 - v) * lbt[:, None]
    return _exp(log_var), log_var


@_exact
def nats_to_bits_per_dim(nats, d):
    """nats / (d ln 2)."""
    return exact_array(nats) / (d * _log1(2))


def _sum_last(a):
    return np.asarray(np.sum(a, axis=-1), dtype=object)


# -- exact oracles (docs/math.md §7) ------------------------------------------------------------------

@_exact
def chain_log_prob(a, b, sigma2, x0):
    """log p_theta(x_0) of the reverse chain N(a_t x_t + b_t, sigma_t^2 I) from p(x_T) = N(0, I):
    mean and variance propagated down from t = T."""
    a, b, s2, x0 = exact_array(a), exact_array(b), exact_array(sigma2), exact_array(x0)
    T, d = b.shape
    m, v = np.array([_num(0)] * d, dtype=object), _num(1)
    for i in range(T - 1, -1, -1):
        m, v = a[i] * m + b[i], a[i] ** 2 * v + s2[i]
    return np.array([-(d * _log1(2 * _pi() * v) + sum((row - m) ** 2) / v) / 2 for row in x0],
                    dtype=object)


@_exact
def chain_neg_elbo(tab, a, b, sigma2, x0):
    """Exact -ELBO = L_T + sum_{t=2}^T L_{t-1} + L_0 for the linear-Gaussian chain.

    With x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the Gaussian expectations are exact:
    L_{t-1} = sum_d [KL(N(., beta_tilde_t) || N(., sigma_t^2)) variance part + E r^2 / (2 sigma_t^2)],
    r = mu_tilde_t(x_0, x_t) - a_t x_t - b_t; L_0 = sum_d [log(2 pi sigma_1^2) / 2 + E r_0^2 / (2 sigma_1^2)],
    r_0 = x_0 - a_1 x_1 - b_1. E r^2 = (mean of r)^2 + (coefficient of eps)^2.
    """
    a, b, s2, X = exact_array(a), exact_array(b), exact_array(sigma2), exact_array(x0)
    T, d = b.shape
    beta, abar, abar_prev = tab["beta"], tab["alpha_bar"], tab["alpha_bar_prev"]
    out = []
    for x in X:
        total = sum(_kl(_sqrt1(abar[-1]) * xi, 1 - abar[-1], _num(0), _num(1)) for xi in x)
        for i in range(1, T):
            c0 = _sqrt1(abar_prev[i]) * beta[i] / (1 - abar[i])
            c1 = _sqrt1(1 - beta[i]) * (1 - abar_prev[i]) / (1 - abar[i])
            bt = (1 - abar_prev[i]) / (1 - abar[i]) * beta[i]
            noise2 = (c1 - a[i]) ** 2 * (1 - abar[i])
            for j in range(d):
                mean_r = (c0 + (c1 - a[i]) * _sqrt1(abar[i])) * x[j] - b[i, j]
                total += _kl(0, bt, 0, s2[i]) + (mean_r ** 2 + noise2) / (2 * s2[i])
        noise2 = a[0] ** 2 * (1 - abar[0])
        for j in range(d):
            mean_r = (1 - a[0] * _sqrt1(abar[0])) * x[j] - b[0, j]
            total += _log1(2 * _pi() * s2[0]) / 2 + (mean_r ** 2 + noise2) / (2 * s2[0])
        out.append(total)
    return np.array(out, dtype=object)


def _solve_det(C, v):
    """(C^{-1} v, det C) for a symmetric positive definite C (list of rows) by Gaussian elimination
    (pivots are positive, no exchanges); v a list."""
    n = len(v)
    A = [list(row) + [v[i]] for i, row in enumerate(C)]
    det = 1
    for j in range(n):
        det = det * A[j][j]
        for i in range(j + 1, n):
            f = A[i][j] / A[j][j]
            A[i] = [A[i][c] - f * A[j][c] for c in range(n + 1)]
    u = [0] * n
    for i in range(n - 1, -1, -1):
        u[i] = (A[i][n] - sum(A[i][c] * u[c] for c in range(i + 1, n))) / A[i][i]
    return u, det


@_exact
def mixture_quantities(weights, means, covs, x, abar):
    """For q_t = sum_k w_k N(sqrt(abar) m_k, abar S_k + (1 - abar) I) (abar = 1: the data):
    (log q_t(x), score, E[x_0 | x_t], eps*) per row of x; abar: one value (exact or float64) per row.

    Per component C_k = abar S_k + (1 - abar) I, u_k = C_k^{-1} (x - sqrt(abar) m_k) and det C_k
    (`_solve_det`); responsibilities r_k = w_k N_k / q_t; score = -sum r_k u_k;
    E[x_0|x_t] = sum r_k (m_k + sqrt(abar) S_k u_k); eps* = -sqrt(1 - abar) score.
    """
    w, M, S, X = exact_array(weights), exact_array(means), exact_array(covs), exact_array(x)
    AB = np.asarray(abar, dtype=object) if np.asarray(abar).dtype == object else exact_array(abar)
    K, d = M.shape
    log_2pi = _log1(2 * _pi())
    logq, score, post, eps = [], [], [], []
    for xrow, ab in zip(X, AB):
        sa = _sqrt1(ab)
        logs, us, pms = [], [], []
        for k in range(K):
            C = [[ab * S[k, i, j] + ((1 - ab) if i == j else 0) for j in range(d)] for i in range(d)]
            diff = [xrow[i] - sa * M[k, i] for i in range(d)]
            u, det = _solve_det(C, diff)
            quad = sum(diff[i] * u[i] for i in range(d))
            logs.append(_log1(w[k]) - (d * log_2pi + _log1(det) + quad) / 2)
            us.append(u)
            pms.append([M[k, i] + sa * sum(S[k, i, j] * u[j] for j in range(d)) for i in range(d)])
        top = max(logs)
        lse = top + _log1(sum(_exp1(lk - top) for lk in logs))
        r = [_exp1(lk - lse) for lk in logs]
        sc = [-sum(r[k] * us[k][i] for k in range(K)) for i in range(d)]
        logq.append(lse)
        score.append(sc)
        post.append([sum(r[k] * pms[k][i] for k in range(K)) for i in range(d)])
        eps.append([-_sqrt1(1 - ab) * sc[i] for i in range(d)])
    return tuple(np.array(v, dtype=object) for v in (logq, score, post, eps))


# -- inference-time processes and Gaussian data (docs/math.md §10, §11) ----------------------------------

@_exact
def respaced_tables(tab, kept) -> dict[str, np.ndarray]:
    """The tables of the chain over the kept steps (paper t, increasing), straight from docs/math.md §10:
    abar'_j = abar_{k_j}, beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}} (abar_0 = 1), and from them the
    posterior's coefficients and variance as in `schedule_tables`."""
    abar = tab["alpha_bar"][np.asarray(kept) - 1]
    prev = np.concatenate([np.array([_num(1)], dtype=object), abar[:-1]])
    beta = 1 - abar / prev
    om, om_prev = 1 - abar, 1 - prev
    beta_tilde = om_prev / om * beta
    log_bt = _log(beta_tilde)
    clipped = log_bt.copy()
    clipped[0] = log_bt[1] if abar.size > 1 else _log1(beta[0])
    return {"alpha_bar": abar, "one_minus_alpha_bar": om, "log_alpha_bar": _log(abar), "beta": beta,
            "beta_tilde": beta_tilde, "log_beta_tilde_clipped": clipped,
            "posterior_coef_x0": _sqrt(prev) * beta / om, "posterior_coef_xt": _sqrt(abar / prev) * om_prev / om}


@_exact
def ddim_coefficients(tab, t, s, eta, final_alpha_bar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sqrt(abar_s), sqrt(1 - abar_s - sigma^2), sigma), sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t)
    (1 - abar_t / abar_s) (Song et al. eq. 16), abar_0 = final_alpha_bar; per entry of t, s."""
    e = _num(eta)
    out = ([], [], [])
    for tk, sk in zip(np.asarray(t).tolist(), np.asarray(s).tolist()):
        ab_t = tab["alpha_bar"][tk - 1]
        ab_s = tab["alpha_bar"][sk - 1] if sk >= 1 else _num(final_alpha_bar)
        sigma2 = e ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        for lst, v in zip(out, (_sqrt1(ab_s), _sqrt1(1 - ab_s - sigma2), _sqrt1(sigma2))):
            lst.append(v)
    return tuple(np.array(v, dtype=object) for v in out)


@_exact
def ddim_step(tab, t, s, eta, final_alpha_bar, xt, x0_hat, noise):
    """x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z, eps_hat =
    (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t); rows of the arrays <-> entries of t."""
    a, b, c = (v[:, None] for v in ddim_coefficients(tab, t, s, eta, final_alpha_bar))
    xt, x0_hat, z = exact_array(xt), exact_array(x0_hat), exact_array(noise)
    sa, s1 = _sa_s1(tab, t)
    return a * x0_hat + b * (xt - sa * x0_hat) / s1 + c * z


@_exact
def ddim_invert(tab, s, t, xs, x0_hat):
    """x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) (x_s - sqrt(abar_s) x0_hat) / sqrt(1 - abar_s)."""
    xs, x0 = exact_array(xs), exact_array(x0_hat)
    sa_s, s1_s = _sa_s1(tab, s)
    sa_t, s1_t = _sa_s1(tab, t)
    return sa_t * x0 + s1_t * (xs - sa_s * x0) / s1_s


@_exact
def gaussian_data(tab, t, mean, variance, xt):
    """(x0*, eps*, v*, Var(eps | x_t), D_t) of data N(mean, variance) per dimension (docs/math.md §11):
    x0* = mu + sqrt(abar) s2 (x - sqrt(abar) mu) / D, eps* = sqrt(1 - abar) (x - sqrt(abar) mu) / D,
    v* = sqrt(abar) eps* - sqrt(1 - abar) x0*, Var = abar s2 / D, D = abar s2 + 1 - abar."""
    ab = _col(tab, "alpha_bar", t)
    mu, s2, x = exact_array(mean)[None, :], exact_array(variance)[None, :], exact_array(xt)
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
    e = _num(eta)
    seq = [int(v) for v in np.asarray(tau).tolist()]
    nxt = seq[1:] + [0] if next_tau is None else [int(v) for v in next_tau]
    mod = seq if model_tau is None else [int(v) for v in model_tau]
    ab_at = lambda k: tab["alpha_bar"][k - 1]                                  # noqa: E731
    for mu, s2 in zip(exact_array(mean).tolist(), exact_array(variance).tolist()):
        m, V = _num(0), _num(1)
        for tk, sk, mk in zip(seq, nxt, mod):
            ab_t, ab_m = ab_at(tk), ab_at(mk)
            ab_s = ab_at(sk) if sk >= 1 else (_num(1) if process == "ddpm" else _num(final_alpha_bar))
            D = ab_m * s2 + 1 - ab_m
            k, c = _sqrt1(ab_m) * s2 / D, mu * (1 - ab_m) / D                    # x0* = k x + c at model t
            ek, ec = _sqrt1(1 - ab_m) / D, -_sqrt1(ab_m * (1 - ab_m)) * mu / D  # eps* = ek x + ec
            sa, s1 = _sqrt1(ab_t), _sqrt1(1 - ab_t)
            if prediction == "epsilon":                                         # x0_hat = (x - s1 eps) / sa
                k, c = (1 - s1 * ek) / sa, -s1 * ec / sa
            elif prediction == "v_prediction":                                  # x0_hat = sa x - s1 v
                vk, vc = _sqrt1(ab_m) * ek - _sqrt1(1 - ab_m) * k, _sqrt1(ab_m) * ec - _sqrt1(1 - ab_m) * c
                k, c = sa - s1 * vk, -s1 * vc
            ek, ec = (1 - sa * k) / s1, -sa * c / s1                            # eps_hat from x0_hat at t
            if process == "ddpm":
                beta_ = 1 - ab_t / ab_s
                c0, c1 = _sqrt1(ab_s) * beta_ / (1 - ab_t), _sqrt1(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
                var = 0 if sk == 0 else ((1 - ab_s) / (1 - ab_t) * beta_ if fixed == "small" else beta_)
                A, B = c0 * k + c1, c0 * c
            else:
                var = e ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
                g = _sqrt1(1 - ab_s - var)
                A, B = _sqrt1(ab_s) * k + g * ek, _sqrt1(ab_s) * c + g * ec
            m, V = A * m + B, A ** 2 * V + var
        out_m.append(m)
        out_v.append(V)
    return np.array(out_m, dtype=object), np.array(out_v, dtype=object)


# -- error measures -----------------------------------------------------------------------------

@_exact
def to_double_double(exact) -> tuple[np.ndarray, np.ndarray]:
    """exact ~ hi + lo with hi = float(exact) and lo = float(exact - hi), both rounded to nearest;
    lo = 0 where hi is infinite. A ball (arb) is read at its midpoint after checking that its
    radius is at most about 2^-BALL_BITS of it (else ValueError: the value is not known well
    enough to measure a float64 against it)."""
    exact = np.asarray(exact, dtype=object)
    pairs = _per_element(exact, "double_double", lambda e: (float(e), 0.0))     # an int or float: exact
    hi = np.array([p[0] for p in pairs], dtype=np.float64).reshape(exact.shape)
    return hi, np.array([p[1] for p in pairs], dtype=np.float64).reshape(exact.shape)


def _engine_of(e):
    """The engine whose number e is (None for an int or float)."""
    return _ENGINE_OF_TYPE.get(type(e))


def _per_element(exact: np.ndarray, method: str, plain) -> list:
    """[the engine's `method`(e), or plain(e) for an int or float e] over the elements of `exact`,
    the engine looked up once per type of element."""
    flat = exact.ravel().tolist()
    by_type = {}
    for kind in {type(e) for e in flat}:
        eng = _ENGINE_OF_TYPE.get(kind)
        by_type[kind] = plain if eng is None else getattr(eng, method)
    if len(by_type) == 1:
        (fn,) = by_type.values()
        return [fn(e) for e in flat]
    return [by_type[type(e)](e) for e in flat]


def _is_zero(exact) -> np.ndarray:
    """exact == 0 per element (an exact value below the float64 range is not 0)."""
    exact = np.asarray(exact, dtype=object)
    return np.array(_per_element(exact, "is_zero", lambda e: e == 0), dtype=bool).reshape(exact.shape)


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
    """An exact value to 25 digits (a ball: its midpoint)."""
    eng = _engine_of(e)
    mid = None if eng is None else eng.parts(e)[0]
    return repr(e) if mid is None else to_str(mid, 25)


def measure(name, case, computed, exact, labels, *, kind="elementwise", zero="absolute", bound=BOUND) -> Result:
    """Worst error of `computed` against `exact` (object array of exact numbers, same shape), as a Result:
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
