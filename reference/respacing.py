"""Fewer steps than training: the timestep sequences samplers visit, and the strided chain.

A sampler visits a strictly decreasing sequence tau_1 > ... > tau_S of paper timesteps in 1..T
and ends at 0 (abar_0 = 1). The chain over the kept steps k_1 < ... < k_S (tau reversed) is a
DDPM of its own (Nichol & Dhariwal 2021, respacing): `respace` returns it as a `Schedule` with
beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}} (k_0 = 0), whose cumulative products are abar at the
kept steps, so every formula of the reference (posterior, model variances, the ELBO, the chain
oracle) holds for the strided chain with the respaced schedule's index j in place of t.

The libraries' sequences (0-based indices i in the libraries; paper t = i + 1 here):
diffusers `set_timesteps(n)` (`diffusers_timesteps`), improved-diffusion's `space_timesteps`
(`space_timesteps`) and lucidrains' `ddim_sample` (`lucidrains_timesteps`). docs/math.md §10.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._checks import _show
from .schedules import Schedule, _check_T, check_schedule

SPACINGS = ("leading", "linspace", "trailing")


def _count(name: str, n, T: int) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= T:
        raise ValueError(f"{name} must be an integer in 1..T = 1..{T}; got {n!r}")
    return int(n)


def as_sequence(name: str, tau, T: int, *, increasing: bool = False) -> np.ndarray:
    """`tau` as an int64 array of paper timesteps in 1..T, strictly decreasing (a sampler's visits),
    or strictly increasing (kept steps) with `increasing`."""
    raw = np.asarray(tau)
    if raw.dtype == bool or raw.dtype.kind not in "iu" or raw.ndim != 1 or raw.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D integer array of timesteps; got {_show(raw)}")
    a = raw.astype(np.int64)
    if a.min() < 1 or a.max() > T:
        raise ValueError(f"{name} must lie in 1..T = 1..{T} (paper indexing); got {_show(a[(a < 1) | (a > T)][:3])}")
    step = -np.diff(a) if increasing else np.diff(a)
    if np.any(step >= 0):
        i = int(np.flatnonzero(step >= 0)[0])
        raise ValueError(f"{name} must be strictly {'increasing' if increasing else 'decreasing'}; "
                         f"{name}[{i}] = {a[i]}, {name}[{i + 1}] = {a[i + 1]}")
    return a


def diffusers_timesteps(T: int, n: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
    """The n paper timesteps diffusers' `set_timesteps(n)` means to visit, decreasing.

    In diffusers' 0-based indices, for k = 0..n-1 from the last step: ``leading``: k (T // n) +
    `steps_offset`; ``linspace``: round(k (T - 1) / (n - 1)); ``trailing``: round(T (k + 1) / n) - 1.
    Computed in exact rational arithmetic, rounding halves to even as NumPy's round does; paper
    t = index + 1. (diffusers evaluates the same rules in float64, with np.linspace and
    np.arange(T, 0, -T / n): where a value sits on a half the float may round the other way, and
    the float arange can yield one element too many.) Raises if `steps_offset` pushes an index
    past T - 1.
    """
    T = _check_T(T)
    n = _count("n", n, T)
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}; got {spacing!r}")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, numbers.Integral) or steps_offset < 0:
        raise ValueError(f"steps_offset must be an integer >= 0; got {steps_offset!r}")
    # Python ints past int64's exact range of the products (T^2 < 2^62)
    k = np.arange(n - 1, -1, -1, dtype=np.int64 if T < 2 ** 31 else object)
    if spacing == "leading":
        index = k * (T // n) + int(steps_offset)
    elif spacing == "linspace":
        index = _round_half_even(k * (T - 1), n - 1) if n > 1 else np.zeros(1, dtype=np.int64)
    else:
        index = _round_half_even(T * (k + 1), n) - 1
    if index[0] > T - 1:
        raise ValueError(f"steps_offset = {steps_offset} moves the first timestep to index {index[0]}, past "
                         f"T - 1 = {T - 1}")
    return index.astype(np.int64) + 1


def _round_half_even(num: np.ndarray, den: int) -> np.ndarray:
    """round(num / den) for integers num >= 0 and den >= 1, exactly, halves to the even integer."""
    q, r = num // den, num % den
    return q + ((2 * r > den) | ((2 * r == den) & (q % 2 == 1)))


def space_timesteps(T: int, section_counts) -> np.ndarray:
    """The kept steps of improved-diffusion's `space_timesteps(T, section_counts)`, increasing paper t.

    ``"ddimN"``: the integer stride i for which range(0, T, i) has N elements. Otherwise a
    comma-separated string (or sequence) of counts: T is cut into that many near-equal sections
    (the first T % len sections one step longer), and in a section of `size` steps `count`
    steps are taken at start + round(c), c advancing by (size - 1) / (count - 1) from 0 (Python's
    round, half to even, on the running sum, as the library does).
    """
    T = _check_T(T)
    if isinstance(section_counts, str) and section_counts.startswith("ddim"):
        try:
            wanted = int(section_counts[len("ddim"):])
        except ValueError:
            raise ValueError(f"section_counts {section_counts!r}: 'ddim' must be followed by a count") from None
        for stride in range(1, T):
            if len(range(0, T, stride)) == wanted:
                return np.arange(0, T, stride, dtype=np.int64) + 1
        raise ValueError(f"section_counts {section_counts!r}: no integer stride gives exactly {wanted} of T = {T} steps")
    try:
        counts = [int(c) for c in (section_counts.split(",") if isinstance(section_counts, str) else section_counts)]
    except (TypeError, ValueError):
        raise ValueError(f"section_counts must be 'ddimN' or comma-separated counts; got {section_counts!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"section_counts must be positive counts; got {section_counts!r}")
    size_per, extra = divmod(T, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"section_counts {section_counts!r}: cannot take {count} steps from a section of {size}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return np.array(sorted(set(kept)), dtype=np.int64) + 1


def lucidrains_timesteps(T: int, sampling_steps: int) -> np.ndarray:
    """The paper timesteps lucidrains' `ddim_sample` visits, decreasing (then 0).

    Its 0-based times are int(linspace(-1, T - 1, S + 1)) (truncation toward zero), reversed;
    the step from each time goes to the next, the last from its smallest time to -1 (x_0).
    Here the linspace is exact: -1 + i T / S rounded toward zero.
    """
    T = _check_T(T)
    S = _count("sampling_steps", sampling_steps, T)
    i = np.arange(1, S + 1, dtype=np.int64)
    index = -1 + (i * T) // S                 # floor = truncation toward zero: every value is >= -1 + T/S > -1
    return index[::-1] + 1


def respace(schedule: Schedule, kept) -> Schedule:
    """The DDPM over the kept steps k_1 < ... < k_S (paper t, strictly increasing): its betas are
    beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}} (k_0 = 0), computed as -expm1 of the accurate log
    ratio (`Schedule.log_alpha_bar_ratio`), so no digits cancel, and the ratio's log itself is
    kept (beta' near 1 would lose 1 - beta'): its abar'_j = abar_{k_j} to a few ulps.
    docs/math.md §10.
    """
    check_schedule(schedule)
    k = as_sequence("kept", kept, schedule.T, increasing=True)
    prev = np.concatenate([[0], k[:-1]])
    return Schedule(schedule.one_minus_alpha_bar_ratio(prev, k), name=f"{schedule.name} respaced to {k.size} steps",
                    log_alphas=schedule.log_alpha_bar_ratio(prev, k))
