"""Hypothesis strategies for the property suite, built constructively (docs/math.md §2-§7).

Every strategy builds a valid object directly (no ``filter``/``assume`` loops), so Hypothesis
spends its examples on the properties and shrinks towards small, readable cases:

- `horizons`: T in 1..200, with T = 1, T = 2 and small T drawn often.
- schedules: `linear_schedules`, `cosine_schedules`, `scaled_linear_schedules`,
  `sigmoid_schedules`, `zero_terminal_snr_schedules`, `user_schedules` (arbitrary betas in
  (0, 1), very small ones down to 1e-12 and near-one ones up to 1 - 1e-9), and the two
  extremes `schedules_abar_T_near_zero` (abar_T <= 1e-3, or 0 exactly) and
  `schedules_abar_near_one` (1 - abar_T <= 2e-4); `schedules` draws from all of them.
- `timesteps(schedule)`: paper t in lo..hi with t = lo (usually 1) and t = hi (usually T) often.
- arrays: `data_arrays` (n, d) of independent finite elements, `noise_arrays`, `variances`.
- oracle parameters: `gaussian_mixtures`, `linear_gaussian_chains`.
- `seeds`: integers for ``np.random.default_rng`` inside a Hypothesis test (stochastic checks
  draw their seed from Hypothesis, so a failure is reproduced by its printed example).

Bounds that keep every derived quantity representable (stated once, relied on by the tests):
user betas lie in [1e-12, 1 - 1e-9], at most 20 of them above 1/2, so for T <= 200
log abar_T >= -(200 ln 2 + 20 ln 1e9) > -560 and abar_t >= 1e-243 > 0 (no underflow), and
1 - abar_1 >= 1e-12. Zero-terminal-SNR schedules have abar_T = 0 exactly (and alpha_T = 0);
`timesteps(..., positive_abar=True)` and `positive_alpha=True` leave that t out where a
formula divides by sqrt(abar_t) or sqrt(alpha_t).

Schedules are labelled: each carries a ``name`` with its constructor call, and user betas are
recorded with ``hypothesis.note`` so a failing example prints them in full.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref

#: largest T drawn by default (the Schedule constructor and the tests are O(T))
T_MAX = 200
#: smallest / largest user beta: 1 - abar_1 stays a normal number, alpha_t >= 1e-9
BETA_MIN, BETA_NEAR_ONE_MAX = 1e-12, 1.0 - 1e-9
#: at most this many user betas above 1/2 (keeps log abar_T > -560, see the module docstring)
MAX_NEAR_ONE = 20


def _shared(factory):
    """The same strategy object for the same arguments. Hypothesis works out a strategy's
    properties (whether it can be empty, how it recurses) once per object, so a strategy built
    afresh at every draw of a composite strategy repeats that work each time."""
    cached = functools.lru_cache(maxsize=None)(factory)

    @functools.wraps(factory)
    def get(*args, **kwargs):
        try:
            return cached(*args, **kwargs)
        except TypeError:           # an unhashable argument (a list for a shape): built afresh
            return factory(*args, **kwargs)
    return get


@_shared
def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats spread evenly over the decades of [lo, hi] (0 < lo < hi), both ends included.

    10**e with e uniform on [log10 lo, log10 hi], clipped to [lo, hi] against rounding, plus
    the two ends themselves (boundaries are where formulas lose digits).
    """
    if not 0 < lo < hi:
        raise ValueError(f"log_uniform needs 0 < lo < hi; got lo={lo!r}, hi={hi!r}")
    spread = st.floats(math.log10(lo), math.log10(hi)).map(lambda e: min(max(10.0 ** e, lo), hi))
    return st.one_of(st.sampled_from([lo, hi]), spread)


@_shared
def horizons(max_T: int = T_MAX, min_T: int = 1) -> st.SearchStrategy[int]:
    """T in min_T..max_T; T = min_T and min_T + 1 (by default 1 and 2) and small T (<= 12) drawn often."""
    small_hi = max(min_T, min(12, max_T))
    return st.one_of(st.just(min_T), st.just(min(min_T + 1, max_T)),
                     st.integers(min_T, small_hi), st.integers(min_T, max_T))


@_shared
def _beta_ends(default_start: float, default_end: float, hi: float = 0.5, increasing: bool = False):
    """(beta_start, beta_end): the family's defaults, or both drawn log-uniformly in [1e-8, hi]."""
    drawn = st.tuples(log_uniform(1e-8, hi), log_uniform(1e-8, hi))
    if increasing:
        drawn = drawn.map(lambda p: (min(p), max(p)))
    return st.one_of(st.just((default_start, default_end)), drawn)


@_shared
@st.composite
def linear_schedules(draw, T=None, increasing: bool = False) -> ref.Schedule:
    """DDPM linear schedules (docs/math.md §2): beta_t evenly spaced from beta_start to beta_end.

    Ends: the DDPM defaults (1e-4, 0.02) or drawn in [1e-8, 0.5] (in either order unless
    `increasing`); for T >= 50 sometimes with improved-diffusion's 1000 / T scaling (only
    where the scaled ends stay below 1).
    """
    T = draw(horizons() if T is None else T)
    lo, hi = draw(_beta_ends(1e-4, 0.02, increasing=increasing))
    scale = draw(st.booleans()) and T >= 50 and 1000.0 / T * max(lo, hi) < 1
    return ref.linear(T, beta_start=lo, beta_end=hi, scale_with_T=scale)


@_shared
@st.composite
def cosine_schedules(draw, T=None) -> ref.Schedule:
    """Nichol & Dhariwal cosine schedules (docs/math.md §2): s = 0.008 or drawn in [0, 0.2];
    max_beta = 0.999 or drawn in [0.5, 0.999]. abar_T <= 1 - max_beta (tiny)."""
    T = draw(horizons() if T is None else T)
    s = draw(st.one_of(st.just(0.008), st.floats(0.0, 0.2)))
    max_beta = draw(st.one_of(st.just(0.999), st.floats(0.5, 0.999)))
    return ref.cosine(T, s=s, max_beta=max_beta)


@_shared
@st.composite
def scaled_linear_schedules(draw, T=None, increasing: bool = False) -> ref.Schedule:
    """Scaled-linear schedules (sqrt(beta) linear; diffusers' defaults 0.00085, 0.012, or drawn)."""
    T = draw(horizons() if T is None else T)
    lo, hi = draw(_beta_ends(0.00085, 0.012, increasing=increasing))
    return ref.scaled_linear(T, beta_start=lo, beta_end=hi)


@_shared
@st.composite
def sigmoid_schedules(draw, T=None, increasing: bool = False) -> ref.Schedule:
    """Sigmoid schedules (diffusers' "sigmoid"; ends 1e-4, 0.02 or drawn)."""
    T = draw(horizons() if T is None else T)
    lo, hi = draw(_beta_ends(1e-4, 0.02, increasing=increasing))
    return ref.sigmoid(T, beta_start=lo, beta_end=hi)


@_shared
@st.composite
def zero_terminal_snr_schedules(draw, T=None) -> ref.Schedule:
    """Lin et al. rescaling of a linear, cosine, scaled-linear or sigmoid schedule with T >= 2
    and increasing ends: abar_T = 0 and alpha_T = 0 exactly (beta_T = 1). docs/math.md §2."""
    T = horizons(min_T=2) if T is None else T.map(lambda v: max(v, 2))
    base = draw(st.one_of(linear_schedules(T, increasing=True), cosine_schedules(T),
                          scaled_linear_schedules(T, increasing=True),
                          sigmoid_schedules(T, increasing=True)))
    return ref.zero_terminal_snr(base)


@_shared
def _ordinary_betas() -> st.SearchStrategy[float]:
    """Betas in [1e-12, 1/2]: very small ones (log-uniform down to 1e-12) and moderate ones."""
    return st.one_of(log_uniform(BETA_MIN, 1e-3), st.floats(1e-3, 0.5))


@_shared
def _near_one_betas() -> st.SearchStrategy[float]:
    """Betas in [1/2, 1 - 1e-9]: 1 - e with e log-uniform in [1e-9, 1/2]."""
    return log_uniform(1.0 - BETA_NEAR_ONE_MAX, 0.5).map(lambda e: 1.0 - e)


@_shared
@st.composite
def user_betas(draw, T=None, near_one_last: bool = False) -> np.ndarray:
    """An arbitrary beta array of shape (T,) in [1e-12, 1 - 1e-9] (docs/math.md §2, "any user array").

    Built in two steps: T betas in [1e-12, 1/2] (hypothesis.extra.numpy arrays: constant
    stretches with scattered different values), then up to 20 positions overwritten with
    near-one betas in [1/2, 1 - 1e-9]. With ``near_one_last`` beta_T is drawn in
    [1 - 1e-3, 1 - 1e-9], so abar_T <= alpha_T <= 1e-3.
    """
    T = draw(horizons() if T is None else T)
    betas = draw(hnp.arrays(np.float64, T, elements=_ordinary_betas()))
    k = draw(st.integers(0, min(T, MAX_NEAR_ONE - int(near_one_last))))
    for _ in range(k):
        betas[draw(st.integers(0, T - 1))] = draw(_near_one_betas())
    if near_one_last:
        betas[-1] = 1.0 - draw(log_uniform(1.0 - BETA_NEAR_ONE_MAX, 1e-3))
    return betas


class _BetasNote:
    """A schedule's user betas for ``hypothesis.note``, printed in full (17 digits) only when a
    failing example is reported."""

    def __init__(self, betas: np.ndarray):
        self.betas = betas.copy()

    def __repr__(self) -> str:
        return f"user betas (T={self.betas.size}): {np.array2string(self.betas, precision=17, threshold=10**6)}"


@_shared
@st.composite
def user_schedules(draw, T=None, near_one_last: bool = False) -> ref.Schedule:
    """A `Schedule` of `user_betas`; the betas are recorded with ``note`` (printed on failure)."""
    betas = draw(user_betas(T, near_one_last=near_one_last))
    note(_BetasNote(betas))
    return ref.Schedule(betas, name=f"user(T={betas.size})")


@_shared
@st.composite
def _tiny_linear(draw, T=None) -> ref.Schedule:
    T = draw(horizons() if T is None else T)
    lo, hi = draw(st.tuples(log_uniform(BETA_MIN, 1e-6), log_uniform(BETA_MIN, 1e-6)))
    return ref.linear(T, beta_start=lo, beta_end=hi)


@_shared
@st.composite
def _tiny_user(draw, T=None) -> ref.Schedule:
    T = draw(horizons() if T is None else T)
    betas = draw(hnp.arrays(np.float64, T, elements=log_uniform(BETA_MIN, 1e-6)))
    note(_BetasNote(betas))
    return ref.Schedule(betas, name=f"user_tiny(T={betas.size})")


@_shared
def schedules_abar_near_one(T=None) -> st.SearchStrategy[ref.Schedule]:
    """Schedules whose every beta lies in [1e-12, 1e-6], so 1 - abar_T <= T * 1e-6 <= 2e-4:
    abar_t is near 1 at every t, where the naive 1 - cumprod loses its digits (docs/math.md §2)."""
    return st.one_of(_tiny_linear(T), _tiny_user(T))


@_shared
def schedules_abar_T_near_zero(T=None) -> st.SearchStrategy[ref.Schedule]:
    """Schedules with abar_T <= 1e-3 or abar_T = 0: cosine (beta_T = max_beta >= 1/2 caps it,
    abar_T <= 1 - max_beta), zero terminal SNR (abar_T = 0), user betas ending near one."""
    return st.one_of(cosine_schedules(T), zero_terminal_snr_schedules(T),
                     user_schedules(T, near_one_last=True))


@_shared
def schedules(T=None, zero_terminal: bool = True) -> st.SearchStrategy[ref.Schedule]:
    """Any schedule of the families above (docs/math.md §2), the two abar extremes included.

    ``zero_terminal=False`` leaves out zero-terminal-SNR schedules (abar_T = 0).
    """
    parts = [linear_schedules(T), cosine_schedules(T), scaled_linear_schedules(T),
             sigmoid_schedules(T), user_schedules(T), user_schedules(T, near_one_last=True),
             schedules_abar_near_one(T)]
    if zero_terminal:
        parts.append(zero_terminal_snr_schedules(T))
    return st.one_of(parts)


def timesteps(schedule: ref.Schedule, lo: int = 1, hi: int | None = None, *,
              positive_abar: bool = False, positive_alpha: bool = False) -> st.SearchStrategy[int]:
    """Paper timesteps t in lo..hi (default 1..T), with t = lo and t = hi drawn often.

    ``positive_abar`` / ``positive_alpha`` lower hi by one where abar_hi = 0 / alpha_hi = 0
    (t = T of a zero-terminal-SNR schedule; only t = T can have either). Requires lo <= hi.
    """
    hi = schedule.T if hi is None else hi
    if (positive_abar and schedule.alpha_bar(hi) == 0) or (positive_alpha and schedule.alpha(hi) == 0):
        hi -= 1
    if not 1 <= lo <= hi <= schedule.T:
        raise ValueError(f"timesteps: need 1 <= lo <= hi <= T; got lo={lo}, hi={hi}, T={schedule.T}")
    return _int_range(lo, hi)


@_shared
def _int_range(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in lo..hi, with lo and hi drawn often."""
    return st.one_of(st.just(lo), st.just(hi), st.integers(lo, hi))


@st.composite
def kept_steps(draw, schedule: ref.Schedule) -> np.ndarray:
    """The kept steps of a strided sampler: a non-empty, strictly increasing subset of 1..T (paper
    t), with the full set and {T} drawn often (docs/math.md §10)."""
    T = schedule.T
    kind = draw(st.sampled_from(["full", "last", "subset"]))
    if kind == "full":
        return np.arange(1, T + 1)
    if kind == "last":
        return np.array([T])
    return np.array(sorted(draw(st.sets(st.integers(1, T), min_size=1, max_size=min(T, 12)))))


@st.composite
def step_pairs(draw, schedule: ref.Schedule, positive_abar: bool = False) -> tuple[int, int]:
    """(t, s) with 1 <= t <= T and 0 <= s < t: one step of a strided sampler (s = 0 is x_0);
    s = t - 1 and s = 0 drawn often."""
    t = draw(timesteps(schedule, positive_abar=positive_abar))
    s = draw(st.one_of(st.just(t - 1), st.just(0), st.integers(0, t - 1)))
    return t, s


@_shared
def finite_floats(max_abs: float = 100.0) -> st.SearchStrategy[float]:
    """Finite float64 values in [-max_abs, max_abs], no subnormals (0, +-tiny normals included)."""
    return st.floats(-max_abs, max_abs, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@_shared
def dims(max_d: int = 4) -> st.SearchStrategy[int]:
    """Data dimension d in 1..max_d, d = 1 often."""
    return st.one_of(st.just(1), st.integers(1, max_d))


@_shared
def data_arrays(n=None, d=None, max_abs: float = 100.0) -> st.SearchStrategy[np.ndarray]:
    """Data x of shape (n, d) (n examples, d dimensions) with independent finite elements.

    n and d: ints or strategies (defaults 1..4 each). hypothesis.extra.numpy arrays.
    """
    n = st.integers(1, 4) if n is None else n
    d = dims() if d is None else d
    n, d = (st.just(v) if isinstance(v, int) else v for v in (n, d))
    return st.tuples(n, d).flatmap(
        lambda nd: hnp.arrays(np.float64, nd, elements=finite_floats(max_abs)))


@_shared
def noise_arrays(shape) -> st.SearchStrategy[np.ndarray]:
    """Noise eps of `shape` with independent elements in [-8, 8] (the range of N(0, 1) draws),
    0 and tiny values included; for identities that hold for every eps."""
    return hnp.arrays(np.float64, shape, elements=finite_floats(8.0))


@_shared
def variances(lo: float = 1e-8, hi: float = 1e4) -> st.SearchStrategy[float]:
    """Positive variances: log-uniform over [lo, hi] (and its ends), or plain floats in [lo, hi]."""
    return st.one_of(log_uniform(lo, hi), st.floats(lo, hi))


@_shared
def seeds() -> st.SearchStrategy[int]:
    """A seed for np.random.default_rng, drawn by Hypothesis (so it is printed and replayed)."""
    return st.integers(0, 2 ** 32 - 1)


@st.composite
def gaussian_mixtures(draw, max_K: int = 4, d=None, max_abs_mean: float = 3.0) -> ref.GaussianMixture:
    """Gaussian-mixture data sum_k pi_k N(m_k, S_k) (docs/math.md §7), constructively valid:

    weights: positive draws in [0.05, 1] normalised (sum 1 to a few ulps, within the 1e-12 the
    class demands); means in [-max_abs_mean, max_abs_mean]; S_k = (A_k A_k^T + delta_k I),
    symmetrised, with A_k entries in [-1, 1] and delta_k in [1e-2, 1] (eigenvalues >= 1e-2).
    Or the default 8-component ring (radius 1, std 0.1) when d allows 2.
    """
    d = draw(st.integers(1, 3) if d is None else (st.just(d) if isinstance(d, int) else d))
    if d == 2 and draw(st.booleans()):
        return ref.GaussianMixture.ring()
    K = draw(st.integers(1, max_K))
    w = draw(hnp.arrays(np.float64, K, elements=st.floats(0.05, 1.0)))
    means = draw(hnp.arrays(np.float64, (K, d), elements=st.floats(-max_abs_mean, max_abs_mean)))
    A = draw(hnp.arrays(np.float64, (K, d, d), elements=st.floats(-1.0, 1.0)))
    delta = draw(hnp.arrays(np.float64, K, elements=st.floats(1e-2, 1.0)))
    cov = A @ np.swapaxes(A, 1, 2) + delta[:, None, None] * np.eye(d)
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    return ref.GaussianMixture(w / w.sum(), means, cov)


@st.composite
def linear_gaussian_chains(draw, schedule=None, d=None) -> ref.LinearGaussianChain:
    """Linear-Gaussian reverse chains p_theta(x_{t-1} | x_t) = N(a_t x_t + b_t, sigma_t^2 I) (docs/math.md §7).

    schedule: a strategy (default `schedules(T=horizons(60))`); a_t in [0, 1.05] (so the
    propagated variance stays below 1.05^(2T)); b_t in [-1, 1]^d; sigma_t^2 = beta_t times a
    factor log-uniform in [1e-2, 1e2] or equal to 1 (the "fixed large" variance).
    """
    sched = draw(schedules(T=horizons(60)) if schedule is None else schedule)
    d = draw(dims(3) if d is None else (st.just(d) if isinstance(d, int) else d))
    T = sched.T
    a = draw(hnp.arrays(np.float64, T, elements=st.floats(0.0, 1.05)))
    b = draw(hnp.arrays(np.float64, (T, d), elements=st.floats(-1.0, 1.0)))
    factor = draw(hnp.arrays(np.float64, T, elements=st.one_of(st.just(1.0), log_uniform(1e-2, 1e2))))
    return ref.LinearGaussianChain(sched, a, b, sched.beta() * factor)
