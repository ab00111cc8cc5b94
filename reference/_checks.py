"""Input validation shared by every public function of `reference`.

Each helper raises ``ValueError`` whose message starts with the argument's name and shows
the offending value, so a caller never sees a traceback from deep inside NumPy.
Shape rule used throughout: arrays that are combined elementwise must have identical
shapes; a 0-d value (a Python float or a 0-d array) is the only thing that broadcasts.
"""

from __future__ import annotations

import numbers

import numpy as np


def _show(x) -> str:
    """Short printable form of a (possibly large) value for an error message."""
    a = np.asarray(x)
    if a.size <= 6:
        return np.array2string(a, precision=6, threshold=6) if a.ndim else repr(a.item())
    return f"array of shape {a.shape}"


def as_float(name: str, x, *, allow_nonfinite: bool = False, copy: bool = True) -> np.ndarray:
    """`x` as a new float64 array (``copy=False``: the caller's own float64 array where it is one, for
    callers that only read it); raises if it is not numeric or (by default) not finite."""
    if isinstance(x, (str, bytes)) or x is None:
        raise ValueError(f"{name} must be a real number or array of real numbers; got {x!r}")
    try:
        a = np.array(x, dtype=np.float64, copy=copy or None)  # by default a copy: the caller's array is never touched
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or array of real numbers; got {x!r}") from exc
    if np.iscomplexobj(np.asarray(x)):
        raise ValueError(f"{name} must be real; got a complex value")
    # a sum is finite only when every term is: one fast reduction, the elementwise test only on failure
    if not allow_nonfinite and not (np.isfinite(np.add.reduce(a, axis=None)) or np.all(np.isfinite(a))):
        bad = a[~np.isfinite(a)]
        raise ValueError(f"{name} must be finite; it contains {_show(bad[:3])}")
    return a


def as_scalar(name: str, x) -> float:
    """`x` as a finite Python float; raises unless it is a single real number."""
    a = as_float(name, x)
    if a.ndim:
        raise ValueError(f"{name} must be a single number; got an array of shape {a.shape}")
    return float(a)


def as_positive(name: str, x) -> np.ndarray:
    """`x` as a float64 array of finite values > 0 (variances under a logarithm)."""
    a = as_float(name, x)
    if np.any(a <= 0):
        raise ValueError(f"{name} must be > 0 (it is a variance under a logarithm); got {_show(a[a <= 0][:3])}")
    return a


def same_shape(**arrays: np.ndarray) -> tuple[int, ...]:
    """Common shape of the given arrays; 0-d arrays broadcast, anything else must match exactly."""
    shaped = {k: v.shape for k, v in arrays.items() if np.ndim(v) > 0}
    shapes = set(shaped.values())
    if len(shapes) > 1:
        listing = ", ".join(f"{k} {s}" for k, s in shaped.items())
        raise ValueError(f"shape mismatch: {listing}; these arguments must have identical shapes "
                         "(only scalars broadcast)")
    return shapes.pop() if shapes else ()


def as_data(name: str, x, *, min_ndim: int = 1, copy: bool = True) -> np.ndarray:
    """Data array of shape (..., d): float64, finite, at least `min_ndim` dimensions, d >= 1."""
    a = as_float(name, x, copy=copy)
    if a.ndim < min_ndim or (a.ndim and a.shape[-1] == 0):
        raise ValueError(f"{name} must have shape (..., d) with d >= 1; got shape {a.shape}")
    return a


def as_timestep(name: str, t, T: int, *, lo: int = 1, hi: int | None = None) -> np.ndarray:
    """Integer timesteps in lo..hi (default 1..T, paper indexing) as an int64 array."""
    hi = T if hi is None else hi
    if isinstance(t, bool) or (isinstance(t, np.ndarray) and t.dtype == bool):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}; got a boolean")
    if isinstance(t, numbers.Integral):
        a = np.array(int(t), dtype=np.int64)
    else:
        raw = np.asarray(t)
        if raw.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer (or an integer array) in {lo}..{hi}; "
                             f"got dtype {raw.dtype} value {_show(raw)}")
        a = raw.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        outside = a[(a < lo) | (a > hi)]
        raise ValueError(f"{name} must lie in {lo}..{hi} (paper indexing, T={T}); got {_show(outside[:3])}")
    return a


def as_step_pair(T: int, t, s) -> tuple[np.ndarray, np.ndarray]:
    """A step back from paper t in 1..T to s in 0..T-1 with s < t: t and s of the same shape (or
    scalars), validated by `as_timestep` and broadcast to one shape."""
    t = as_timestep("t", t, T)
    s = as_timestep("s", s, T, lo=0, hi=T - 1)
    if t.shape != s.shape and t.ndim and s.ndim:
        raise ValueError(f"shape mismatch: t {t.shape}, s {s.shape}; t and s must have identical shapes "
                         "(only scalars broadcast)")
    if np.any(s >= t):
        raise ValueError(f"s must be smaller than t (a step goes back in time); got t={t.tolist()}, s={s.tolist()}")
    return tuple(np.broadcast_arrays(t, s))


def expand_to(coef: np.ndarray, shape: tuple[int, ...], *, t_name: str = "t", x_name: str = "x") -> np.ndarray:
    """Broadcast a per-timestep coefficient (shape t.shape) over data of `shape`.

    Rule (as in improved-diffusion's ``_extract_into_tensor``): t's shape must equal the
    leading axes of the data; the coefficient is repeated over the remaining axes.
    """
    if coef.shape != shape[: coef.ndim]:
        raise ValueError(f"{t_name} has shape {coef.shape}, which must equal the leading axes of "
                         f"{x_name} (shape {shape}); pass a scalar t or one t per leading index")
    return np.broadcast_to(coef.reshape(coef.shape + (1,) * (len(shape) - coef.ndim)), shape)
