"""Noise schedules and the per-timestep tables derived from them (docs/math.md §1, §2, §4).

Index convention: **paper indexing**. Every accessor of `Schedule` takes t in 1..T and
returns the value at that t (``beta(1)`` is beta_1); ``t=None`` returns the whole table
for t = 1..T as a length-T array. Code written with 0-based arrays converts at exactly one
place: ``Schedule.index_from_t`` (t -> t - 1) and ``Schedule.t_from_index`` (i -> i + 1).

Numerics (docs/math.md §2): log abar_t is a compensated cumulative sum of
log1p(-beta_s); 1 - abar_t is -expm1(log abar_t); log(1 - abar_t) is log1mexp(log abar_t).
Every table is accurate to a few units in the last place, also where abar_t is near 1
(t = 1) or near 0 (cosine at t = T).
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_float, as_scalar, as_step_pair, as_timestep, expand_to


def log1mexp(x) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0 (x = -inf allowed, giving 0), accurate for x near 0 and for
    x very negative. Maechler's rule: log(-expm1(x)) for x > -ln 2, log1p(-exp(x)) otherwise.
    Returns -inf at x = 0.
    docs/math.md §2.2.
    """
    x = as_float("x", x, allow_nonfinite=True)
    if np.any(np.isnan(x) | (x > 0)):
        raise ValueError(f"x must be <= 0 (log(1 - exp(x)) is real only there) and not nan; "
                         f"got {x[np.isnan(x) | (x > 0)][:3]}")
    return _log1mexp(x)


def _log1mexp(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(np.minimum(x, 0.0))),
                        np.log1p(-np.exp(np.minimum(x, -math.log(2.0)))))


def _compensated_cumsum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sums with Neumaier compensation, as unevaluated pairs hi + lo (hi = fl(hi + lo)).

    Error O(eps) per partial sum, not O(T eps); the pairs also give differences of partial
    sums to O(eps) of the difference. Vectorised: the running sums s_i are NumPy's cumsum (the
    same additions in the same order as a loop), the exact error of each addition follows from
    s_{i-1}, x_i and s_i, and the compensation is the running sum of those errors.
    """
    s = np.cumsum(x)                                  # s_i = fl(s_{i-1} + x_i), in order
    prev = np.concatenate([[0.0], s[:-1]])
    with np.errstate(invalid="ignore"):
        # the rounding error of each addition, exact (Fast2Sum with the larger operand first)
        err = np.where(np.abs(prev) >= np.abs(x), (prev - s) + x, (x - s) + prev)
        # from the first infinite operand on, the sums are infinite and carry no compensation
        infinite = np.isinf(x) | np.isinf(prev)
        if infinite.any():
            err[np.argmax(infinite):] = 0.0
        c = np.cumsum(err)
        hi = s + c
        lo = np.where(np.isfinite(hi), c - (hi - s), 0.0)
    return hi, lo


def _checked_log_alphas(log_alphas, b: np.ndarray) -> np.ndarray:
    """log(1 - beta_t) given by the caller: shape (T,), <= 0, -inf only where beta_t = 1 (a finite
    one where beta_t rounds to 1 is kept: it carries what the rounded beta lost), and
    exp(log_alphas) within 1e-12 relative of 1 - beta_t (up to the rounding of beta_t)."""
    la = as_float("log_alphas", log_alphas, allow_nonfinite=True)
    if la.shape != b.shape:
        raise ValueError(f"log_alphas must have the betas' shape {b.shape}; got {la.shape}")
    if np.any(np.isnan(la) | (la > 0) | np.isposinf(la)) or np.any(np.isneginf(la) & (b < 1)):
        raise ValueError("log_alphas must be <= 0, and -inf only where beta_t = 1")
    with np.errstate(invalid="ignore"):
        off = np.abs(-np.expm1(la) - b) > 1e-12 * (1 - b) + 2.3e-16 * b
    if np.any(off):
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"log_alphas[{i}] = {la[i]!r} does not agree with beta_{i + 1} = {b[i]!r}")
    return la


class Schedule:
    """A variance schedule beta_1..beta_T and every table derived from it.

    Parameters
    ----------
    betas : array of shape (T,)
        beta_t for t = 1..T (element i is beta_{i+1}). Each in (0, 1); beta_T = 1 is allowed
        (zero terminal SNR, abar_T = 0) and nowhere else.
    name : str
        Label used in reports.
    log_alphas : array of shape (T,), optional
        log(1 - beta_t) where it is known more accurately than log1p(-beta_t) from the rounded
        betas (a respaced chain's log(abar_t / abar_s) when beta' is near 1); it must agree
        with the betas to 1e-12 relative in 1 - beta_t.

    The object is immutable; it keeps its own copy of `betas`.
    docs/math.md §1-§2, §4.
    """

    def __init__(self, betas, *, name: str = "custom", log_alphas=None):
        b = as_float("betas", betas)
        if b.ndim != 1 or b.size < 1:
            raise ValueError(f"betas must be a 1-D array of length T >= 1; got shape {b.shape}")
        bad = np.flatnonzero((b <= 0) | (b > 1))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"betas must lie in (0, 1]; beta_{i + 1} (betas[{i}]) = {b[i]!r}")
        with np.errstate(divide="ignore"):
            log_alpha = np.log1p(-b) if log_alphas is None else _checked_log_alphas(log_alphas, b)
        ones = np.flatnonzero(np.isneginf(log_alpha[:-1]))
        if ones.size:
            i = int(ones[0])
            raise ValueError(f"betas: beta_t = 1 is allowed only at t = T (zero terminal SNR); "
                             f"beta_{i + 1} (betas[{i}]) = 1")
        self.name = str(name)
        self.T = int(b.size)
        with np.errstate(divide="ignore"):
            log_abar, log_abar_lo = _compensated_cumsum(log_alpha)   # log abar_t, t = 1..T
            log_abar_prev = np.concatenate([[0.0], log_abar[:-1]])   # log abar_{t-1}, abar_0 = 1
            abar, abar_prev = np.exp(log_abar), np.exp(log_abar_prev)
            one_minus_abar = 0.0 - np.expm1(log_abar)         # 0.0 - : +0.0, never -0.0
            one_minus_abar_prev = 0.0 - np.expm1(log_abar_prev)
            log_one_minus_abar = _log1mexp(log_abar)
            log_one_minus_abar_prev = _log1mexp(log_abar_prev)   # -inf at t = 1
            # exact for beta >= 1/2 (Sterbenz); from the given logs, which keep 1 - beta where beta ~ 1
            alpha = 1.0 - b if log_alphas is None else np.exp(log_alpha)
            log_beta_tilde = log_one_minus_abar_prev - log_one_minus_abar + np.log(b)
        beta_tilde = one_minus_abar_prev / one_minus_abar * b
        # improved-diffusion clips the log-variance at t = 1 (beta_tilde_1 = 0) to beta_tilde_2;
        # with T = 1 there is no t = 2 and the clip falls back to beta_1 (the fixed-large value).
        log_beta_tilde_clipped = log_beta_tilde.copy()
        log_beta_tilde_clipped[0] = log_beta_tilde[1] if self.T > 1 else math.log(b[0])
        self._tables = {
            "beta": b,
            "log_beta": np.log(b),
            "alpha": alpha,
            "log_alpha": log_alpha,
            "log_alpha_bar": log_abar,
            "alpha_bar": abar,
            "one_minus_alpha_bar": one_minus_abar,
            "log_one_minus_alpha_bar": log_one_minus_abar,
            "alpha_bar_prev": abar_prev,
            "one_minus_alpha_bar_prev": one_minus_abar_prev,
            "posterior_coef_x0": np.sqrt(abar_prev) * b / one_minus_abar,
            "posterior_coef_xt": np.sqrt(alpha) * one_minus_abar_prev / one_minus_abar,
            "beta_tilde": beta_tilde,
            "log_beta_tilde_clipped": log_beta_tilde_clipped,
        }
        for table in self._tables.values():
            table.flags.writeable = False
        # log abar_t as hi + lo, t = 0..T, for accurate ratios abar_t / abar_s
        self._log_abar_pair = (np.concatenate([[0.0], log_abar]), np.concatenate([[0.0], log_abar_lo]))

    def __repr__(self) -> str:
        b = self._tables["beta"]
        return f"Schedule(name={self.name!r}, T={self.T}, beta_1={b[0]:.6g}, beta_T={b[-1]:.6g})"

    # -- index conversion: the one place where paper t and 0-based code indices meet --------
    def index_from_t(self, t) -> np.ndarray:
        """0-based code index i = t - 1 for paper t in 1..T (``alphas_cumprod[i] = abar_{i+1}``)."""
        return as_timestep("t", t, self.T) - 1

    def t_from_index(self, i) -> np.ndarray:
        """Paper t = i + 1 for 0-based code index i in 0..T-1."""
        return as_timestep("i", i, self.T, lo=0, hi=self.T - 1) + 1

    def log_alpha_bar_ratio(self, s, t) -> np.ndarray:
        """log(abar_t / abar_s) = sum_{s < r <= t} log alpha_r for 0 <= s < t <= T (abar_0 = 1).

        From the compensated prefix sums kept as hi + lo pairs, so the difference is accurate
        to a few ulps of itself even for s = t - 1 at large t. s and t: same shape or scalars.
        """
        t_arr, s_arr = as_step_pair(self.T, t, s)
        hi, lo = self._log_abar_pair
        with np.errstate(invalid="ignore"):
            out = (hi[t_arr] - hi[s_arr]) + (lo[t_arr] - lo[s_arr])
        return np.where(np.isneginf(hi[t_arr]), -np.inf, out)

    def one_minus_alpha_bar_ratio(self, s, t) -> np.ndarray:
        """1 - abar_t / abar_s = -expm1(log(abar_t / abar_s)) for 0 <= s < t <= T: the variance of
        q(x_t | x_s), and the beta of a step from s to t (respacing); no digits cancel."""
        return -np.expm1(self.log_alpha_bar_ratio(s, t))

    def _at(self, key: str, t) -> np.ndarray:
        table = self._tables[key]
        if t is None:
            return table.copy()
        return table[as_timestep("t", t, self.T) - 1]

    # -- tables, paper indexing t = 1..T --------------------------------------------------
    def beta(self, t=None):
        """beta_t."""
        return self._at("beta", t)

    def log_beta(self, t=None):
        """log beta_t (the upper end of the learned variance range)."""
        return self._at("log_beta", t)

    def alpha(self, t=None):
        """alpha_t = 1 - beta_t."""
        return self._at("alpha", t)

    def log_alpha(self, t=None):
        """log alpha_t = log1p(-beta_t) (-inf where beta_t = 1)."""
        return self._at("log_alpha", t)

    def log_alpha_bar(self, t=None):
        """log abar_t = sum_{s<=t} log1p(-beta_s) (compensated sum)."""
        return self._at("log_alpha_bar", t)

    def alpha_bar(self, t=None):
        """abar_t = prod_{s<=t} alpha_s = exp(log abar_t)."""
        return self._at("alpha_bar", t)

    def one_minus_alpha_bar(self, t=None):
        """1 - abar_t = -expm1(log abar_t): the variance of q(x_t | x_0)."""
        return self._at("one_minus_alpha_bar", t)

    def log_one_minus_alpha_bar(self, t=None):
        """log(1 - abar_t) = log1mexp(log abar_t): the log-variance of q(x_t | x_0)."""
        return self._at("log_one_minus_alpha_bar", t)

    def alpha_bar_prev(self, t=None):
        """abar_{t-1}, with abar_0 = 1 (code: ``alphas_cumprod_prev[t-1]``)."""
        return self._at("alpha_bar_prev", t)

    def one_minus_alpha_bar_prev(self, t=None):
        """1 - abar_{t-1} (0 at t = 1)."""
        return self._at("one_minus_alpha_bar_prev", t)

    def posterior_coef_x0(self, t=None):
        """sqrt(abar_{t-1}) beta_t / (1 - abar_t): weight of x_0 in mu_tilde_t (docs/math.md §4)."""
        return self._at("posterior_coef_x0", t)

    def posterior_coef_xt(self, t=None):
        """sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t): weight of x_t in mu_tilde_t (docs/math.md §4)."""
        return self._at("posterior_coef_xt", t)

    def beta_tilde(self, t=None):
        """beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, the posterior variance (0 at t = 1)."""
        return self._at("beta_tilde", t)

    def log_beta_tilde_clipped(self, t=None):
        """log beta_tilde_t, with t = 1 replaced by log beta_tilde_2 (log beta_1 when T = 1)."""
        return self._at("log_beta_tilde_clipped", t)


# -- schedule families -------------------------------------------------------------------

def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be an integer >= 1; got {T!r}")
    return int(T)


def _check_ends(beta_start, beta_end) -> tuple[float, float]:
    lo, hi = as_scalar("beta_start", beta_start), as_scalar("beta_end", beta_end)
    for name, v in (("beta_start", lo), ("beta_end", hi)):
        if not 0 < v <= 1:
            raise ValueError(f"{name} must lie in (0, 1]; got {v!r}")
    return lo, hi


def linear(T: int, *, beta_start: float = 1e-4, beta_end: float = 0.02,
           scale_with_T: bool = False) -> Schedule:
    """DDPM linear schedule: beta_t evenly spaced from beta_start (t = 1) to beta_end (t = T).

    With ``scale_with_T`` both ends are multiplied by 1000 / T (improved-diffusion), which keeps
    abar_T roughly fixed as T changes; for T < 50 that pushes beta_T past 1 and is rejected.
    docs/math.md §2.
    """
    T = _check_T(T)
    lo, hi = _check_ends(beta_start, beta_end)
    scale = 1000.0 / T if scale_with_T else 1.0
    if scale * max(lo, hi) > 1:
        raise ValueError(f"T = {T} with scale_with_T=True gives beta = {scale * max(lo, hi):.4g} > 1 "
                         f"(both ends are multiplied by 1000 / T); use a larger T or scale_with_T=False")
    return Schedule(np.linspace(scale * lo, scale * hi, T),
                    name=f"linear(T={T}{', scaled' if scale_with_T else ''})")


def scaled_linear(T: int, *, beta_start: float = 0.00085, beta_end: float = 0.012) -> Schedule:
    """sqrt(beta_t) evenly spaced from sqrt(beta_start) to sqrt(beta_end) (diffusers' "scaled_linear").

    docs/math.md §2.
    """
    T = _check_T(T)
    lo, hi = _check_ends(beta_start, beta_end)
    return Schedule(np.linspace(math.sqrt(lo), math.sqrt(hi), T) ** 2, name=f"scaled_linear(T={T})")


def sigmoid(T: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """beta_t = beta_start + (beta_end - beta_start) * sigmoid(u_t), u_t evenly spaced on [-6, 6]
    (diffusers' "sigmoid").
    docs/math.md §2.
    """
    T = _check_T(T)
    lo, hi = _check_ends(beta_start, beta_end)
    u = np.linspace(-6.0, 6.0, T)
    return Schedule(lo + (hi - lo) / (1.0 + np.exp(-u)), name=f"sigmoid(T={T})")


def cosine(T: int, *, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal cosine schedule (docs/math.md §2).

    f(u) = cos^2(((u / T) + s) / (1 + s) * pi / 2), abar_t = f(t) / f(0) before capping,
    beta_t = min(1 - f(t) / f(t-1), max_beta). Evaluated without cancellation:
    with phi_u = pi/2 (T - u) / (T (1 + s)) one has f(u) = sin^2(phi_u) and
    1 - f(t)/f(t-1) = sin(phi_{t-1} - phi_t) sin(phi_{t-1} + phi_t) / sin^2(phi_{t-1}).
    """
    T = _check_T(T)
    s = as_scalar("s", s)
    if s < 0:
        raise ValueError(f"s must be >= 0; got {s!r}")
    max_beta = as_scalar("max_beta", max_beta)
    if not 0 < max_beta <= 1:
        raise ValueError(f"max_beta must lie in (0, 1]; got {max_beta!r}")
    t = np.arange(1, T + 1, dtype=np.float64)
    c = math.pi / (2.0 * T * (1.0 + s))
    phi_prev = c * (T - t + 1)
    half_sum = c * (2 * T - 2 * t + 1)                 # phi_{t-1} + phi_t, in (0, pi)
    supplement = c * (2 * t - 1 + 2 * T * s)           # pi - (phi_{t-1} + phi_t)
    sin_sum = np.sin(np.minimum(half_sum, supplement))
    betas = np.sin(c) * sin_sum / np.sin(phi_prev) ** 2
    return Schedule(np.minimum(betas, max_beta), name=f"cosine(T={T})")


def sigmoid_alpha_bar(T: int, *, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                      max_beta: float = 0.999) -> Schedule:
    """The sigmoid schedule defined through abar (Jabri et al. 2022, RIN; lucidrains' "sigmoid").

    abar_t = (sig(e) - sig(x_t)) / (sig(e) - sig(x_0)), x_u = ((u / T)(end - start) + start) / tau,
    e = end / tau, so abar_0 = 1 and abar_T = 0; beta_t = min(1 - abar_t / abar_{t-1}, max_beta).
    Evaluated without cancellation: sig(b) - sig(a) = sinh((b - a) / 2) / (2 cosh(a / 2) cosh(b / 2)),
    so 1 - abar_t / abar_{t-1} = (sig(x_t) - sig(x_{t-1})) / (sig(e) - sig(x_{t-1})).
    docs/math.md §2.
    """
    T = _check_T(T)
    start, end, tau = as_scalar("start", start), as_scalar("end", end), as_scalar("tau", tau)
    if not start < end:
        raise ValueError(f"start must be smaller than end; got start={start!r}, end={end!r}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0; got {tau!r}")
    max_beta = as_scalar("max_beta", max_beta)
    if not 0 < max_beta <= 1:
        raise ValueError(f"max_beta must lie in (0, 1]; got {max_beta!r}")

    def sig_difference(b, a):
        return np.sinh((b - a) / 2) / (2 * np.cosh(a / 2) * np.cosh(b / 2))

    u = np.arange(T + 1, dtype=np.float64)
    x = ((u / T) * (end - start) + start) / tau
    e = end / tau
    betas = sig_difference(x[1:], x[:-1]) / sig_difference(e, x[:-1])
    return Schedule(np.minimum(betas, max_beta), name=f"sigmoid_alpha_bar(T={T})")


def zero_terminal_snr(schedule: Schedule) -> Schedule:
    """Rescale a schedule so that abar_T = 0 exactly (Lin et al. 2024, algorithm 1).

    r_t = sqrt(abar_t) is shifted and scaled, r'_t = (r_t - r_T) r_1 / (r_1 - r_T), so that
    r'_1 = r_1 and r'_T = 0; then beta'_t = 1 - (r'_t / r'_{t-1})^2, hence beta'_T = 1.
    Computed as beta'_t = (r'_{t-1} - r'_t)(r'_{t-1} + r'_t) / r'_{t-1}^2 with
    r_{t-1} - r_t = abar_{t-1} beta_t / (r_{t-1} + r_t), so small betas keep their digits.
    docs/math.md §2.
    """
    check_schedule(schedule)
    if schedule.T < 2:
        raise ValueError("schedule must have T >= 2 to be rescaled to zero terminal SNR")
    abar = schedule.alpha_bar()
    r = np.sqrt(abar)
    r1, rT = r[0], r[-1]
    scale = r1 / (r1 - rT)
    r_new = (r - rT) * scale
    r_new[-1] = 0.0
    diff = schedule.alpha_bar_prev()[1:] * schedule.beta()[1:] / (r[:-1] + r[1:]) * scale
    betas = np.empty(schedule.T)
    betas[0] = schedule.beta(1)                         # r'_1 = r_1, so beta'_1 = beta_1
    betas[1:] = diff * (r_new[:-1] + r_new[1:]) / r_new[:-1] ** 2
    betas[-1] = 1.0
    return Schedule(betas, name=f"zero_terminal_snr({schedule.name})")


def check_schedule(schedule, name: str = "schedule") -> Schedule:
    """`schedule` itself if it is a `Schedule`, else a ValueError naming the argument `name`."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"{name} must be a reference.Schedule (e.g. reference.linear(1000)); "
                         f"got {type(schedule).__name__}")
    return schedule


def coef_at(schedule: Schedule, table: str, t, shape: tuple[int, ...], x_name: str) -> np.ndarray:
    """Schedule table `table` at paper t, repeated over data of `shape` (t = leading axes)."""
    return expand_to(getattr(schedule, table)(t), shape, x_name=x_name)
