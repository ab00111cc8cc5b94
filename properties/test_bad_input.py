"""Input validation of every public name in `reference` (the bad-input contract).

Contract: every public function validates its inputs and raises ``ValueError`` whose message
names the offending argument (and shows the value) for out-of-range or non-integer t,
non-finite values, mismatched shapes (no silent broadcasting: only 0-d values broadcast; a
per-timestep t must equal the leading axes of the data), invalid betas / T, variances <= 0
under a logarithm, bad enum strings, a non-Generator rng, wrong-shaped model outputs,
off-grid data for the discretised decoder, invalid mixture / chain parameters. The caller's
arrays are never modified, and no bad input gives a NumPy warning or a number instead.

Structure: a `Spec` is a public callable with one valid set of keyword arguments; each bad
case replaces one (or a few) of them and names the argument the message must mention.
Batteries (`nonfinite`, `timesteps`, `schedules`, `mismatch`) generate the generic cases;
the specific ones are written out. `test_every_public_name_has_a_bad_input_case` fails when
a public function or method has no case.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest

import reference as R

#: under pytest-xdist (--dist loadgroup) this module's ~4100 tests of about a millisecond each go to
#: one worker as one unit: scheduled one by one, a worker would wait on the controller between them
pytestmark = pytest.mark.xdist_group("bad_input")

# -- fixtures (built once; small, so the whole file runs in a few seconds) ---------------------

T = 10
S = R.linear(T)                                   # the schedule used by most cases
T5 = 5
S5 = R.linear(T5)                                 # for the estimators and the chain
ZT = R.zero_terminal_snr(R.linear(T))             # abar_T = 0, alpha_T = 0
D = 3
_g = np.random.default_rng(1234)
X = _g.standard_normal((2, D))                    # generic data, leading shape (2,)
X2 = _g.standard_normal((2, D))
X3 = _g.standard_normal((2, D))
POS = np.exp(_g.standard_normal((2, D)))          # variances > 0
GRID = np.array([[0, 1, 255], [128, 254, 37], [3, 200, 127], [255, 0, 64]]) / 127.5 - 1.0  # (4, 3)
T_PER_ROW = np.array([2, 3], dtype=np.int64)      # one t per leading index of X


def good_model(xt, t):
    return 0.9 * np.asarray(xt), np.full(np.shape(xt)[:-1], 0.5)


def model_mean_short(xt, t):
    return np.asarray(xt)[..., :-1], np.full(np.shape(xt)[:-1], 0.5)


def model_mean_transposed(xt, t):
    return np.asarray(xt).T, np.full(np.shape(xt)[:-1], 0.5)


def model_var_wide(xt, t):
    return 0.9 * np.asarray(xt), np.full(np.shape(xt)[:-1] + (np.shape(xt)[-1] + 1,), 0.5)


def model_var_one_per_dim(xt, t):
    return 0.9 * np.asarray(xt), np.full(np.shape(xt)[-1], 0.5)     # (d,), not (m,) or (m, d)


def model_mean_nan(xt, t):
    m = 0.9 * np.asarray(xt)
    m[0, 0] = np.nan
    return m, np.full(np.shape(xt)[:-1], 0.5)


def model_var_inf(xt, t):
    v = np.full(np.shape(xt), 0.5)
    v[0, 0] = np.inf
    return 0.9 * np.asarray(xt), v


def model_var_zero(xt, t):
    return 0.9 * np.asarray(xt), np.zeros(np.shape(xt)[:-1])


def model_var_negative(xt, t):
    return 0.9 * np.asarray(xt), np.full(np.shape(xt), -0.5)


def model_single_array(xt, t):
    return 0.9 * np.asarray(xt)


def model_triple(xt, t):
    return 0.9 * np.asarray(xt), np.full(np.shape(xt)[:-1], 0.5), None


BAD_MODELS = [  # (model, argument the message must name)
    (model_mean_short, "mean"), (model_mean_transposed, "mean"), (model_var_wide, "variance"),
    (model_var_one_per_dim, "variance"), (model_mean_nan, "mean"), (model_var_inf, "variance"),
    (model_var_zero, "variance"), (model_var_negative, "variance"),
    (model_single_array, "model"), (model_triple, "model"),
]


def eps_good(xt, t):
    return 0.1 * np.asarray(xt)


def eps_wrong_shape(xt, t):
    return 0.1 * np.asarray(xt)[..., :-1]


def eps_broadcastable(xt, t):
    return 0.1 * np.asarray(xt)[:1]                  # (1, d) against xt (m, d)


def eps_nan(xt, t):
    e = 0.1 * np.asarray(xt)
    e[-1, -1] = np.nan
    return e


def eps_v_good(xt, t):
    return 0.1 * np.asarray(xt), np.full(np.shape(xt), 0.5)


def eps_v_not_pair(xt, t):
    return 0.1 * np.asarray(xt)


def eps_v_wide(xt, t):
    return 0.1 * np.asarray(xt), np.full(np.shape(xt)[:-1] + (np.shape(xt)[-1] + 1,), 0.5)


def eps_v_out_of_range(xt, t):
    return 0.1 * np.asarray(xt), np.full(np.shape(xt), 1.5)


def eps_v_nan(xt, t):
    return 0.1 * np.asarray(xt), np.full(np.shape(xt), np.nan)


GM = R.GaussianMixture(np.array([0.3, 0.7]), np.array([[0.0, 1.0], [-1.0, 0.5]]),
                       np.array([[[0.5, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.4]]]))
XG = _g.standard_normal((2, 2))                    # data for GM (d = 2), leading shape (2,)
CHAIN_ARGS = dict(schedule=S5, a=np.full(T5, 0.9), b=np.zeros((T5, D)), sigma2=np.full(T5, 0.1))
CHAIN = R.LinearGaussianChain(**CHAIN_ARGS)

NAN, INF = float("nan"), float("inf")


# -- case tables -------------------------------------------------------------------------------

class Case(NamedTuple):
    fn: Callable
    kwargs: dict
    arg: str                  # the argument the message must name ('a|b': either)
    label: str
    shows: str | None         # regex the message must also contain (the offending value)


CASES: list[Case] = []
SPECS: list["Spec"] = []
ENDS: list[Case] = []        # valid values at the ends of an argument's range: accepted (Case.arg: the argument)


def _label(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}{v.dtype}" + (f"={v.tolist()}" if v.size <= 3 else "")
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    r = repr(v)
    return r if len(r) <= 30 else type(v).__name__


class Spec:
    """A public callable and one valid set of keyword arguments for it."""

    def __init__(self, fn: Callable, **base):
        self.fn, self.base = fn, base
        SPECS.append(self)

    def bad(self, arg: str, value: Any, label: str | None = None, *, expect: str | None = None,
            shows: str | None = None, **more) -> "Spec":
        kwargs = {**self.base, arg: value, **more}
        extra = "".join(f",{k}={_label(v)}" for k, v in more.items())
        CASES.append(Case(self.fn, kwargs, expect or arg, f"{arg}={label or _label(value)}{extra}", shows))
        return self

    def end(self, arg: str, value: Any, label: str | None = None, **more) -> "Spec":
        """A valid value at an end of `arg`'s range (with `more` as the other arguments it needs),
        which must be accepted."""
        extra = "".join(f",{k}={_label(v)}" for k, v in more.items())
        ENDS.append(Case(self.fn, {**self.base, arg: value, **more}, arg, f"{arg}={label or _label(value)}{extra}",
                         None))
        return self


def _poison(base, value):
    """`base` with its last element replaced by `value` (a new array; a scalar stays a scalar)."""
    if np.ndim(base) == 0:
        return value
    a = np.array(base, dtype=np.float64, copy=True)
    a.flat[-1] = value
    return a


def nonfinite(spec: Spec, *args: str, values=(NAN, INF, -INF), non_numeric: bool = True) -> None:
    for a in args:
        for v in values:
            spec.bad(a, _poison(spec.base[a], v), f"{v} in {_label(np.asarray(spec.base[a]))}")
        if non_numeric:
            spec.bad(a, "abc")
            spec.bad(a, [[1.0, "x"]], "mixed-list")


def timesteps(spec: Spec, arg: str = "t", *, lo: int = 1, hi: int = T, lead: tuple | None = (2,),
              required: bool = True, at_s0: dict | None = None) -> None:
    """Bad timesteps for an argument that must be an integer in lo..hi, and its valid ends (with
    `at_s0`: the arguments an end with s = 0 also needs).

    With `lead` (the data's leading axes), array values are given that shape, and shapes that
    differ from it (also broadcastable ones) are rejected.
    """
    n = lead[0] if lead else 2
    ok = np.full(n, lo, dtype=np.int64)
    def arr(*vals, dtype=np.int64):
        a = ok.astype(dtype)
        a[: len(vals)] = vals
        return a
    bad = [
        (lo - 1, rf"{lo - 1}"), (hi + 1, rf"{hi + 1}"), (-1 if lo - 1 != -1 else -2, None),
        (hi + 1000, rf"{hi + 1000}"), (2 ** 40, None),
        (1.5, r"1\.5"), (float(lo + 1), None), (np.float64(lo + 1), None), (np.float32(lo + 1), None),
        (NAN, None), (INF, None), (1 + 0j, None),
        (True, None), (False, None), (np.bool_(True), None), (np.array([True] * n), None),
        (str(lo + 1), None), (b"3", None), (object(), None),
        (arr(lo - 1), None), (arr(hi + 1), rf"{hi + 1}"), (arr(lo, hi + 5), rf"{hi + 5}"),
        (arr(lo + 1, dtype=np.float64), None), (arr(lo, dtype=np.float64) + 0.5, None),
        (np.array([[lo + 1.0]] * n), None),
    ]
    if required:
        bad.append((None, None))
    for value, shows in bad:
        spec.bad(arg, value, shows=shows)
    # the valid ends lo and hi, as ints, NumPy integers and (with `lead`) arrays holding both; a step
    # s < t gets the partner the end needs (s = 0 for t = 1, t = s + 1 for s = T - 1), as a scalar
    def partner(value):
        v = int(np.max(value))
        return ({"s": 0, **(at_s0 or {})} if arg == "t" and "s" in spec.base else
                {"t": int(np.max(value)) + 1} if arg == "s" and "t" in spec.base and v + 1 > np.max(spec.base["t"])
                else {})
    for value in (lo, hi, np.int64(hi), np.uint8(lo) if lo >= 0 else np.int8(lo)):
        spec.end(arg, value, **partner(value))
    if lead is not None:
        for value, label in ((arr(lo, hi), f"[{lo}, {hi}, ...]"), (np.full(n, hi, dtype=np.int64), f"[{hi}] * {n}")):
            spec.end(arg, value, label, **partner(value))
    if lead is not None:
        # (the data's full shape, one t per element, is not tested: it equals leading axes too)
        for shape in [(n + 1,), (1,), (1, n), (n, 1), (n, D + 1), (n + 1, D)]:
            spec.bad(arg, np.full(shape, lo + 1, dtype=np.int64), f"shape{shape}")


def schedules(spec: Spec, arg: str = "schedule") -> None:
    for v in (None, "linear", S.beta(), T, {"betas": S.beta()}):
        spec.bad(arg, v)


def mismatch(spec: Spec, *group: str) -> None:
    """Arrays combined elementwise: each must have the others' shape; only 0-d broadcasts."""
    for a in group:
        base = np.asarray(spec.base[a])
        fill = base.flat[0]
        shapes = [(1,) + base.shape[1:], base.shape[1:], (1,) + base.shape,
                  base.shape[:-1] + (base.shape[-1] + 1,), (base.shape[0] + 1,) + base.shape[1:]]
        for shape in shapes:
            if shape != base.shape and shape != ():
                spec.bad(a, np.full(shape, fill), f"shape{shape}")


# -- schedules ---------------------------------------------------------------------------------

sp = Spec(R.Schedule, betas=S.beta())
nonfinite(sp, "betas")
for v, shows in [([], None), (np.zeros((0,)), None), (0.1, None), ([[0.1, 0.2]], None),
                 ([0.1, 0.0, 0.2], r"0\.0|\b0\b"), ([0.1, -0.2], r"-0\.2"), ([0.1, 1.5], r"1\.5"),
                 ([0.1, 1.0, 0.2], None), ([1.0, 0.5], None), ([1.0, 1.0], None), (None, None),
                 ([0.1, 1 + 1j], None)]:
    sp.bad("betas", v, shows=shows)


def _own(name: str) -> bool:
    """A public member of the reference's own (not a copy a mutation tool, mutmut, adds to a class)."""
    return not name.startswith("_") and "mutmut" not in name


TABLES = [n for n, f in vars(R.Schedule).items()
          if inspect.isfunction(f) and _own(n)
          and n not in ("index_from_t", "t_from_index", "log_alpha_bar_ratio", "one_minus_alpha_bar_ratio")]
for name in TABLES:
    timesteps(Spec(getattr(S, name), t=3), lead=None, required=False)
timesteps(Spec(S.index_from_t, t=3), lead=None)
# log(abar_t / abar_s) and 1 - abar_t / abar_s: s in 0..T-1, t in 1..T, s < t, identical shapes unless scalar
for ratio in (S.log_alpha_bar_ratio, S.one_minus_alpha_bar_ratio):
    timesteps(Spec(ratio, s=0, t=T), lead=None)
    timesteps(Spec(ratio, s=0, t=T), "s", lo=0, hi=T - 1, lead=None)
    sp = Spec(ratio, s=np.array([0, 1]), t=np.array([2, 3]))
    sp.bad("s", np.array([3, 1]), shows="3")                               # s >= t
    sp.bad("s", np.array([0, 1, 2]), "shape(3,)")                          # shapes differ
timesteps(Spec(S.t_from_index, i=3), "i", lo=0, hi=T - 1, lead=None)

for family in (R.linear, R.scaled_linear, R.sigmoid, R.cosine):
    sp = Spec(family, T=T)
    for v, shows in [(0, None), (-3, "-3"), (1.5, r"1\.5"), (10.0, None), (np.float64(10), None),
                     (True, None), (False, None), ("10", None), (None, None), (np.array([10]), None)]:
        sp.bad("T", v, shows=shows)
for family in (R.linear, R.scaled_linear, R.sigmoid):
    sp = Spec(family, T=T, beta_start=1e-4, beta_end=0.02)
    sp.end("beta_end", 1.0, beta_start=0.5)                 # betas in (0, 1]: the closed end
    for arg in ("beta_start", "beta_end"):
        for v, shows in [(NAN, None), (INF, None), (-INF, None), (0.0, None), (-0.25, r"-0\.25"),
                         (1.75, r"1\.75"), ("abc", None), (None, None), (np.array([0.01, 0.02]), None)]:
            sp.bad(arg, v, shows=shows)
# improved-diffusion's 1000/T scaling pushes beta_T past 1 for T < 50: the message must say why
CASES.append(Case(R.linear, dict(T=10, scale_with_T=True), "scale_with_T|T", "T=10,scale_with_T=True", None))
sp = Spec(R.cosine, T=T, s=0.008, max_beta=0.999)
for v, shows in [(NAN, None), (INF, None), (-0.125, r"-0\.125"), ("abc", None), (None, None)]:
    sp.bad("s", v, shows=shows)
for v, shows in [(NAN, None), (INF, None), (0.0, None), (-0.5, r"-0\.5"), (1.25, r"1\.25"), ("abc", None)]:
    sp.bad("max_beta", v, shows=shows)

sp = Spec(R.zero_terminal_snr, schedule=S)
schedules(sp)
sp.bad("schedule", R.Schedule([0.5]), "T=1")

sp = Spec(R.log1mexp, x=np.array([-0.5, -3.0]))
# -inf is in the domain (log1mexp(-inf) = log 1 = 0, used by zero-terminal-SNR schedules).
nonfinite(sp, "x", values=(NAN, INF))
sp.bad("x", np.array([-0.5, 0.25]), shows=r"0\.25").bad("x", 2.0).bad("x", None)


# -- forward process, posterior, parameterisations -----------------------------------------------

def data_fn(fn, arrays, *, t_arg="t", t_lo=1, same=True, data=None, **base):
    sp = Spec(fn, **base)
    schedules(sp)
    nonfinite(sp, *arrays)
    for a in (arrays if data is None else data):    # data must have shape (..., d), d >= 1
        sp.bad(a, 0.5, "0-d").bad(a, np.zeros((2, 0)), "d=0").bad(a, None)
    if t_arg:
        timesteps(sp, t_arg, lo=t_lo)
    if same and len(arrays) > 1:
        mismatch(sp, *arrays)
    return sp


data_fn(R.q_xt_given_x0, ["x0"], schedule=S, x0=X, t=3)
data_fn(R.q_sample, ["x0", "eps"], schedule=S, x0=X, t=3, eps=X2)
data_fn(R.q_xt_given_xtm1, ["x_prev"], schedule=S, x_prev=X, t=3)
sp = data_fn(R.q_xt_given_xs, ["xs"], schedule=S, xs=X, s=1, t=3)
timesteps(sp, "s", lo=0, hi=T - 1)
sp.bad("s", 3, expect="s").bad("s", 5, expect="s").bad("s", np.array([1, 4]), t=np.array([3, 4]))
sp.bad("s", np.array([1, 1, 1]), t=np.array([3, 4]), expect="s")   # s and t of different shapes

for fn in (R.posterior_mean, R.q_posterior):
    data_fn(fn, ["x0", "xt"], schedule=S, x0=X, xt=X2, t=3)
data_fn(R.x0_from_posterior_mean, ["xt", "mean"], schedule=S, xt=X, t=3, mean=X2)
sp = data_fn(R.posterior_mean_from_eps, ["xt", "eps"], schedule=S, xt=X, t=3, eps=X2)
sp.bad("t", T, schedule=ZT).bad("t", np.array([3, T]), schedule=ZT)   # alpha_T = 0

sp = data_fn(R.x0_and_eps, ["xt", "output"], schedule=S, xt=X, t=3, output=X2, prediction_type="v_prediction")
for v in ("eps", "previous_x", None):
    sp.bad("prediction_type", v)
sp = data_fn(R.x0_from_eps, ["xt", "eps"], schedule=S, xt=X, t=3, eps=X2)
sp.bad("t", T, schedule=ZT).bad("t", np.array([3, T]), schedule=ZT)   # abar_T = 0
data_fn(R.eps_from_x0, ["xt", "x0"], schedule=S, xt=X, t=3, x0=X2)
data_fn(R.v_from_x0_eps, ["x0", "eps"], schedule=S, x0=X, t=3, eps=X2)
data_fn(R.x0_from_v, ["xt", "v"], schedule=S, xt=X, t=3, v=X2)
data_fn(R.eps_from_v, ["xt", "v"], schedule=S, xt=X, t=3, v=X2)
data_fn(R.score_from_eps, ["eps"], schedule=S, eps=X, t=3)
data_fn(R.eps_from_score, ["score"], schedule=S, score=X, t=3)
sp = Spec(R.dynamic_threshold, x0=X, ratio=0.9, max_value=2.0)
nonfinite(sp, "x0", "ratio", "max_value")
sp.bad("x0", np.zeros((2, 0)), "shape (2, 0)").bad("ratio", 0.0).bad("ratio", 1.5).bad("ratio", np.array([0.5, 0.9]))
sp.bad("max_value", 0.5).bad("max_value", -1.0)


# -- Gaussians ---------------------------------------------------------------------------------

def variances(sp: Spec, *args: str) -> None:
    for a in args:
        sp.bad(a, _poison(sp.base[a], 0.0), "0 in array").bad(a, _poison(sp.base[a], -0.5), "-0.5 in array",
                                                                 shows=r"-0\.5")
        sp.bad(a, 0.0).bad(a, -1e-300)


sp = Spec(R.normal_log_density, x=X, mean=X2, variance=POS)
nonfinite(sp, "x", "mean", "variance")
variances(sp, "variance")
mismatch(sp, "x", "mean", "variance")

sp = Spec(R.kl_normal, mean1=X, variance1=POS, mean2=X2, variance2=POS[::-1].copy())
nonfinite(sp, "mean1", "variance1", "mean2", "variance2")
variances(sp, "variance1", "variance2")
mismatch(sp, "mean1", "variance1", "mean2", "variance2")

sp = Spec(R.discretized_gaussian_log_likelihood, x0=GRID[:2], mean=X2, variance=POS)
nonfinite(sp, "x0", "mean", "variance")
variances(sp, "variance")
mismatch(sp, "x0", "mean", "variance")
for v, shows in [(_poison(GRID[:2], 0.3), r"0\.3"), (_poison(GRID[:2], 1.0 + 2 / 255), None),
                 (_poison(GRID[:2], -1.5), r"-1\.5"), (_poison(GRID[:2], 2 / 255), None)]:
    sp.bad("x0", v, shows=shows)

sp = Spec(R.grid_levels, x0=GRID)
nonfinite(sp, "x0")
for v, shows in [(_poison(GRID, 0.3), r"0\.3"), (_poison(GRID, 1.5), r"1\.5"), (_poison(GRID, -1.25), r"-1\.25"),
                 (None, None)]:
    sp.bad("x0", v, shows=shows)

sp = Spec(R.u_minus_log1p, u=np.array([0.5, -0.5, 1e-3]))
nonfinite(sp, "u")
sp.bad("u", np.array([0.5, -1.0]), shows=r"-1").bad("u", np.array([0.5, -2.5]), shows=r"-2\.5")
sp.bad("u", -1.0).bad("u", None)


# -- model variances, models, ELBO terms ---------------------------------------------------------

sp = Spec(R.model_variance, schedule=S, t=3, kind="fixed_small")
schedules(sp)
timesteps(sp, lead=None)
for kind in ("bogus", "FIXED_SMALL", "fixed small", "", None, 0, ("fixed_small",)):
    sp.bad("kind", kind, shows=re.escape(repr(kind)) if isinstance(kind, str) and kind else None)
sp.bad("v", np.full((2, D), 0.5)).bad("v", np.full((2, D), 0.5), kind="fixed_large")
sp.bad("v", None, kind="learned_range")
sp = Spec(R.model_variance, schedule=S, t=T_PER_ROW, kind="learned_range", v=np.full((2, D), 0.5))
timesteps(sp)
nonfinite(sp, "v")
sp.bad("v", _poison(sp.base["v"], 1.25), shows=r"1\.25").bad("v", _poison(sp.base["v"], -0.25), shows=r"-0\.25")

sp = Spec(R.eps_model, schedule=S, eps_fn=eps_good, variance="fixed_small")
schedules(sp)
for v in (None, 3, np.zeros(3), "eps"):
    sp.bad("eps_fn", v)
for v in ("bogus", "learned", None, 1):
    sp.bad("variance", v)

# the model that eps_model builds validates its inputs and eps_fn's outputs
for variance in ("fixed_small", "fixed_large"):
    sp = Spec(R.eps_model(S, eps_good, variance), xt=X, t=T_PER_ROW)
    nonfinite(sp, "xt")
    timesteps(sp)
sp = Spec(R.eps_model(S, eps_v_good, "learned_range"), xt=X, t=T_PER_ROW)
nonfinite(sp, "xt")
timesteps(sp)
for eps_fn, arg in [(eps_wrong_shape, "eps"), (eps_broadcastable, "eps"), (eps_nan, "eps")]:
    CASES.append(Case(R.eps_model(S, eps_fn), dict(xt=X, t=T_PER_ROW), arg, f"eps_fn={eps_fn.__name__}", None))
for eps_fn, arg in [(eps_v_not_pair, "eps_fn"), (eps_v_wide, "v"), (eps_v_out_of_range, "v"), (eps_v_nan, "v")]:
    CASES.append(Case(R.eps_model(S, eps_fn, "learned_range"), dict(xt=X, t=T_PER_ROW), arg,
                      f"eps_fn={eps_fn.__name__}", None))
CASES.append(Case(R.eps_model(ZT, eps_good), dict(xt=X, t=np.array([3, T])), "t", "alpha_T=0", None))

sp = Spec(R.call_model, model=good_model, xt=X, t=T_PER_ROW)
for v in (None, 3, "model", np.zeros(3)):
    sp.bad("model", v)
for model, arg in BAD_MODELS:
    sp.bad("model", model, expect=arg)
nonfinite(sp, "xt", non_numeric=False)

sp = Spec(R.prior_term, schedule=S, x0=X)
schedules(sp)
nonfinite(sp, "x0")
sp.bad("x0", 0.5, "0-d").bad("x0", np.zeros((2, 0)), "d=0").bad("x0", None)

sp = data_fn(R.kl_term, ["x0", "xt", "model_mean", "model_var"],
             schedule=S, x0=X, xt=X2, t=3, model_mean=X3, model_var=POS, data=["x0", "xt"], t_lo=2)
sp.bad("t", 1, shows=r"\b1\b").bad("t", np.array([2, 1]))
variances(sp, "model_var")

for decoder, x0 in (("continuous", X), ("discretized", GRID[:2])):
    sp = Spec(R.decoder_nll, x0=x0, model_mean=X2, model_var=POS, decoder=decoder)
    nonfinite(sp, "x0", "model_mean", "model_var")
    variances(sp, "model_var")
    mismatch(sp, "x0", "model_mean", "model_var")
    for v in ("bogus", "Continuous", "discrete", None, 0):
        sp.bad("decoder", v)
sp.bad("x0", _poison(GRID[:2], 0.3), shows=r"0\.3").bad("x0", _poison(GRID[:2], 1.5), shows=r"1\.5")

sp = Spec(R.nats_to_bits_per_dim, nats=np.array([1.0, 2.5]), d=D)
# +-inf nats are a meaningful input (-log 0); nan never is
nonfinite(sp, "nats", values=(NAN,))
for v, shows in [(0, None), (-2, "-2"), (1.5, r"1\.5"), (3.0, None), (True, None), ("3", None), (None, None)]:
    sp.bad("d", v, shows=shows)

for estimator in (R.neg_elbo_kl_estimator, R.neg_elbo_trajectory_estimator):
    for decoder in ("continuous", "discretized"):
        sp = Spec(estimator, schedule=S5, model=good_model, x0=GRID, rng=np.random.default_rng(0),
                  decoder=decoder, chunk_elements=1 << 18)
        for model, arg in BAD_MODELS:
            sp.bad("model", model, expect=arg)
    schedules(sp)
    for v in (None, 3, "model"):
        sp.bad("model", v)
    nonfinite(sp, "x0")
    for v in (GRID[0], GRID[:1], GRID[:, :, None], 0.5, np.zeros((4, 0))):
        sp.bad("x0", v)
    for v in (0, None, np.random.RandomState(0), np.random.default_rng, np.random.PCG64(0), "rng"):
        sp.bad("rng", v)
    for v in ("bogus", None, "Discretized"):
        sp.bad("decoder", v)
    for v in (0, -1, 1.5, 1e6, True, "1000", None):
        sp.bad("chunk_elements", v)
    sp.bad("x0", _poison(GRID, 0.3), shows=r"0\.3")
for coupling in ("bogus", None, "Trajectory"):
    Spec(R.neg_elbo_kl_estimator, schedule=S5, model=good_model, x0=GRID, rng=np.random.default_rng(0),
         coupling="independent").bad("coupling", coupling)

sp = Spec(R.forward_trajectories, schedule=S5, x0=X, z=_g.standard_normal((2, T5, D)))
schedules(sp)
nonfinite(sp, "x0", "z")
for v in (X[0], 0.5, None):
    sp.bad("x0", v)
for shape in [(2, T5 - 1, D), (2, T5 + 1, D), (2, T5, D + 1), (1, T5, D), (3, T5, D), (T5, D), (2, 1, D)]:
    sp.bad("z", np.zeros(shape), f"shape{shape}")
sp.bad("x0", np.zeros((1, D)), "shape(1, 3)").bad("x0", np.zeros((2, D + 1)), "shape(2, 4)")


# -- oracles -----------------------------------------------------------------------------------

GM_ARGS = dict(weights=GM.weights.copy(), means=GM.means.copy(), covariances=GM.covariances.copy())
sp = Spec(R.GaussianMixture, **GM_ARGS)
nonfinite(sp, "weights", "means", "covariances")
for v, shows in [([0.5, 0.6], None), ([1.5, -0.5], r"-0\.5"), ([[0.3, 0.7]], None),
                 ([], None), (np.array([0.3, 0.7 + 1e-9]), None)]:
    sp.bad("weights", v, shows=shows)
for v in (np.zeros((3, 2)), np.zeros(2), np.zeros((2, 0)), np.zeros((2, 2, 1))):
    sp.bad("means", v)
cov = GM_ARGS["covariances"]
for v, label in [(cov[:, :, :1], "shape(2,2,1)"), (cov[:1], "K=1"), (cov[0], "shape(2,2)"),
                 (cov + np.array([[0.0, 0.05], [0.0, 0.0]]), "asymmetric"),
                 (cov + np.array([[[0.0, 1e-9], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]), "asymmetric by 1e-9"),
                 (cov * np.array([1.0, -1.0])[:, None, None], "negative definite"),
                 (np.zeros_like(cov), "zero"),
                 (np.array([[[1.0, 2.0], [2.0, 1.0]]] * 2), "indefinite")]:
    sp.bad("covariances", v, label)

sp = Spec(R.GaussianMixture.ring, K=8, radius=1.0, std=0.1)
for v in (0, -1, 2.5, True, "8", None):
    sp.bad("K", v)
for v in (NAN, INF, "abc", None):
    sp.bad("radius", v)
for v, shows in [(0.0, None), (-0.1, r"-0\.1"), (NAN, None), (INF, None), ("abc", None)]:
    sp.bad("std", v, shows=shows)

for method, xname in ((GM.log_prob, "x"), (GM.score, "x"), (GM.responsibilities, "x")):
    sp = Spec(method, **{xname: XG})                               # the data density (no schedule)
    nonfinite(sp, xname)
    for v in (XG[:, :1], np.zeros((2, 3)), 0.5, None):
        sp.bad(xname, v)
    sp.bad("t", 3)                                                 # a t without a schedule
    sp = Spec(method, **{xname: XG}, schedule=S, t=T_PER_ROW)      # the diffused density q_t
    nonfinite(sp, xname)
    timesteps(sp)
    schedules(sp)
for method in (GM.posterior_mean_x0, GM.optimal_eps):
    sp = Spec(method, xt=XG, schedule=S, t=T_PER_ROW)
    nonfinite(sp, "xt")
    for v in (XG[:, :1], np.zeros((2, 3)), 0.5, None):
        sp.bad("xt", v)
    timesteps(sp)
    schedules(sp)
for method in (GM.sample, GM.entropy):
    sp = Spec(method, rng=np.random.default_rng(0), n=4)
    for v in (0, None, np.random.RandomState(0), "rng"):
        sp.bad("rng", v)
    for v, shows in [(0, None), (-3, "-3"), (2.5, r"2\.5"), (4.0, None), (True, None), ("4", None), (None, None)]:
        sp.bad("n", v, shows=shows)
CASES.append(Case(GM.entropy, dict(rng=np.random.default_rng(0), n=1), "n", "n=1", None))

sp = Spec(R.LinearGaussianChain, **CHAIN_ARGS)
schedules(sp)
nonfinite(sp, "a", "b", "sigma2")
for v in (np.full(T5 - 1, 0.9), np.full((T5, 1), 0.9), 0.9):
    sp.bad("a", v)
for v in (np.zeros(T5), np.zeros((T5 - 1, D)), np.zeros((T5, 0)), np.zeros((T5, D, 1))):
    sp.bad("b", v)
for v in (np.full(T5 - 1, 0.1), np.full((T5, 1), 0.1)):
    sp.bad("sigma2", v)
variances(sp, "sigma2")

sp = Spec(CHAIN.model, xt=X, t=T_PER_ROW)
nonfinite(sp, "xt")
timesteps(sp, hi=T5)
for v in (X[:, :1], np.zeros((2, D + 1)), X[0], 0.5, None):
    sp.bad("xt", v)
for method in (CHAIN.log_prob, CHAIN.neg_elbo, CHAIN.gap):
    sp = Spec(method, x0=X)
    nonfinite(sp, "x0")
    for v in (X[:, :1], np.zeros((2, D + 1)), 0.5, None):
        sp.bad("x0", v)


sp = Spec(R.sigmoid_alpha_bar, T=T, start=-3.0, end=3.0, tau=1.0, max_beta=0.999)
for v in (0, -1, 2.5, True, "10", None):
    sp.bad("T", v)
for arg in ("start", "end", "tau", "max_beta"):
    nonfinite(sp, arg)
sp.bad("start", 3.0, expect="start").bad("end", -3.0, expect="start").bad("tau", 0.0).bad("tau", -1.0)
sp.bad("max_beta", 0.0).bad("max_beta", 1.5)


# -- inference-time processes (docs/math.md §10) and Gaussian data (docs/math.md §11) ------------------------

sp = Spec(R.Schedule, betas=S.beta(), log_alphas=np.log1p(-S.beta()))
la = np.log1p(-S.beta())
for v, label in [(la[:-1], "shape(T-1)"), (np.abs(la), "> 0"), (_poison(la, NAN), "nan"),
                 (_poison(la, -INF), "-inf where beta < 1"), (la * 1.01, "inconsistent"), ("abc", "abc")]:
    sp.bad("log_alphas", v, label)
B1 = np.append(S.beta()[:-1], 1.0)                       # beta_T = 1: log alpha_T = -inf, or below log(2^-52)
sp.bad("log_alphas", _poison(np.log1p(-B1[:-1]).tolist() + [0.0], -1.0), "-1 where beta = 1", betas=B1)
sp.end("log_alphas", np.append(np.log1p(-B1[:-1]), -INF), "-inf where beta = 1", betas=B1)
sp.end("log_alphas", np.append(np.log1p(-B1[:-1]), -40.0), "-40 where beta = 1", betas=B1)

sp = Spec(R.respace, schedule=S, kept=np.array([2, 5, T]))
schedules(sp)
for v, label in [(np.array([5, 2]), "decreasing"), (np.array([2, 2]), "repeated"), (np.array([0, 3]), "0"),
                 (np.array([3, T + 1]), "T+1"), (np.array([], dtype=np.int64), "empty"),
                 (np.array([2.0, 3.0]), "float"), (np.array([[2, 3]]), "2-D"), (np.array([True]), "bool"),
                 (None, "None"), ("2,3", "str")]:
    sp.bad("kept", v, label)

sp = Spec(R.diffusers_timesteps, T=T, n=4, spacing="trailing", steps_offset=0)
for v in (0, -1, 2.5, True, "10", None):
    sp.bad("T", v)
for v in (0, T + 1, 2.5, True, "4", None):
    sp.bad("n", v)
for v in ("lead", "", None, 3):
    sp.bad("spacing", v)
for v in (-1, 1.5, True, "1", None):
    sp.bad("steps_offset", v)
sp.bad("steps_offset", T - 1, expect="steps_offset", spacing="leading", n=2)

sp = Spec(R.space_timesteps, T=T, section_counts="2,3")
for v in (0, 2.5, True, None):
    sp.bad("T", v)
for v, label in [("ddim7", "no stride"), ("ddimx", "ddimx"), ("0,3", "0"), ("6,6", "too many"), ("a,b", "a,b"),
                 ([], "empty"), ("", "''"), (None, "None"), ([2, -1], "negative")]:
    sp.bad("section_counts", v, label)

sp = Spec(R.lucidrains_timesteps, T=T, sampling_steps=4)
for v in (0, 2.5, True, None):
    sp.bad("T", v)
for v in (0, T + 1, 2.5, True, "4", None):
    sp.bad("sampling_steps", v)

for fn in (R.ddim_coefficients, R.ddim_sigma):
    sp = Spec(fn, schedule=S, t=5, s=2, eta=0.5, final_alpha_bar=1.0)
    schedules(sp)
    timesteps(sp, "t", lead=None)
    timesteps(sp, "s", lo=0, hi=T - 1, lead=None)
    sp.bad("s", 5, expect="s").bad("s", np.array([2, 6]), t=np.array([5, 6]), expect="s")
    sp.bad("s", np.array([1, 2, 3]), t=np.array([5, 6]), expect="s")
    for v in (-0.1, 1.5, NAN, INF, "0.5", None, np.array([0.5, 0.5])):
        sp.bad("eta", v)
    for v in (0.0, -0.5, 1.5, NAN, "1", None):
        sp.bad("final_alpha_bar", v)

sp = Spec(R.ddim_step, schedule=S, xt=X, t=5, s=2, x0_hat=X2, eta=0.5, noise=X3)
schedules(sp)
nonfinite(sp, "xt", "x0_hat", "noise")
mismatch(sp, "xt", "x0_hat", "noise")
timesteps(sp, "t")
sp.bad("noise", None, "None with eta > 0").bad("eta", 2.0).bad("s", 5, expect="s")
sp.bad("eps_hat", X[:, :1], "shape(2, 1)").bad("eps_hat", _poison(X, NAN), "nan")
sp.bad("xt", 0.5, "0-d").bad("x0_hat", np.zeros((2, 0)), "d=0")

sp = Spec(R.ddim_invert, schedule=S, xs=X, s=2, t=5, x0_hat=X2)
schedules(sp)
nonfinite(sp, "xs", "x0_hat")
mismatch(sp, "xs", "x0_hat")
timesteps(sp, "t", at_s0=dict(eps_hat=X3))             # from s = 0 eps_hat is required
sp.bad("s", 5, expect="s").bad("s", -1, expect="s")
sp.bad("eps_hat", None, "None from s = 0", s=0).bad("eps_hat", X[:, :1], "shape(2, 1)")

GD = R.GaussianData(np.array([0.3, -0.5, 0.1]), 0.04)
sp = Spec(R.GaussianData, mean=np.array([0.3, -0.5, 0.1]), variance=np.array([0.04, 0.1, 0.2]))
nonfinite(sp, "mean", "variance")
for v in (np.zeros((2, 3)), np.zeros(0), 0.5, None):
    sp.bad("mean", v)
for v, shows in [(0.0, None), (-0.1, r"-0\.1"), (np.array([0.1, 0.2]), None), (np.array([[0.1, 0.2, 0.3]]), None)]:
    sp.bad("variance", v, shows=shows)

for method in (GD.x0_star, GD.eps_star, GD.v_star):
    sp = Spec(method, xt=X, schedule=S, t=T_PER_ROW)
    nonfinite(sp, "xt")
    for v in (X[:, :1], np.zeros((2, D + 1)), 0.5, None):
        sp.bad("xt", v)
    timesteps(sp)
    schedules(sp)
for method in (GD.marginal, GD.eps_variance):
    sp = Spec(method, schedule=S, t=T_PER_ROW)
    timesteps(sp, lead=None)
    schedules(sp)
sp = Spec(GD.sample, rng=np.random.default_rng(0), n=4)
for v in (0, None, np.random.RandomState(0), "rng"):
    sp.bad("rng", v)
for v in (0, -3, 2.5, True, "4", None):
    sp.bad("n", v)
for method in (GD.step_coefficients, GD.sampler_output):
    sp = Spec(method, schedule=S, tau=np.array([T, 6, 2]), process="ddim", variance="fixed_small", eta=0.5,
              final_alpha_bar=1.0)
    schedules(sp)
    for v, label in [(np.array([2, 6]), "increasing"), (np.array([T + 1, 3]), "T+1"), (np.array([3, 0]), "0"),
                     (np.array([], dtype=np.int64), "empty"), (np.array([5.0, 2.0]), "float"), (None, "None")]:
        sp.bad("tau", v, label)
    for v in ("ddpm_fixed", None, 1):
        sp.bad("process", v)
    for v in ("learned_range", None):
        sp.bad("variance", v)
    for v in (-0.5, 1.5, NAN, "0"):
        sp.bad("eta", v)
    for v in (0.0, 2.0, NAN):
        sp.bad("final_alpha_bar", v)
sp = Spec(GD.step_coefficients, schedule=S, tau=np.array([T, 6, 2]), prediction_type="epsilon")
for v in ("eps", None):
    sp.bad("prediction_type", v)
for v, label in [(np.array([T, 6]), "length 2"), (np.array([T + 1, 6, 2]), "T+1"), (np.array([T, 6.0, 2]), "float")]:
    sp.bad("model_tau", v, label)
for v, label in [(np.array([6, 2]), "length 2"), (np.array([T, 6.0, 2]), "float")]:
    sp.bad("next_tau", v, label)
sp.bad("next_tau", np.array([6, 7, 0]), "s >= t", expect="s")
sp.bad("step_schedule", R.linear(T + 1), "T+1").bad("step_schedule", "linear")
A3 = np.ones((3, 3))
sp = Spec(GD.chain_states, A=A3, B=A3, sigma=A3)
nonfinite(sp, "A", "B", "sigma")
for arg in ("A", "B", "sigma"):
    sp.bad(arg, np.ones((3, 2)), "shape(3, 2)", expect="A, B and sigma").bad(arg, None)
sp.bad("A", np.ones(3), "1-D", expect="A, B and sigma", B=np.ones(3), sigma=np.ones(3))
sp = Spec(GD.prediction, schedule=S, t=T_PER_ROW, prediction_type="v_prediction")
timesteps(sp, lead=None)
schedules(sp)
for v in ("v", None, 0):
    sp.bad("prediction_type", v)
sp = Spec(GD.regression_error, schedule=S, t=T_PER_ROW, target="sample", prediction_type="epsilon", offset=0.1,
          gain=0.05)
timesteps(sp, lead=None)
schedules(sp)
for arg in ("target", "prediction_type"):
    for v in ("x0", None):
        sp.bad(arg, v)
for arg in ("offset", "gain"):
    for v in (NAN, INF, None, "0.1", np.array([0.1, 0.2])):
        sp.bad(arg, v)

sp = Spec(R.snr, schedule=S, t=T_PER_ROW)
timesteps(sp, lead=None)
schedules(sp)
sp = Spec(R.noise_error_weight, schedule=S, t=3, variance="fixed_small")
timesteps(sp, lead=None, required=False)
schedules(sp)
for v in ("learned_range", "small", None):
    sp.bad("variance", v)
sp.bad("t", T, schedule=ZT)                                                 # alpha_T = 0
sp = Spec(R.loss_weight, schedule=S, t=T_PER_ROW, weighting="min_snr", target="v_prediction", gamma=5.0)
timesteps(sp, lead=None)
schedules(sp)
for v in ("min-snr", None, "SNR"):
    sp.bad("weighting", v)
for v in ("x0", None):
    sp.bad("target", v)
for v in (0.0, -1.0, NAN, None, "5"):
    sp.bad("gamma", v)
sp = Spec(R.loss_weight, schedule=S, t=T_PER_ROW, weighting="p2", gamma=1.0, k=1.0)
for v in (-0.5, NAN):
    sp.bad("gamma", v, expect="gamma")
for v in (0.0, -1.0, INF):
    sp.bad("k", v, expect="k")


# -- the tests ---------------------------------------------------------------------------------

def _target(fn: Callable) -> str:
    """The public name a callable exercises: 'linear', 'Schedule', 'Schedule.beta', 'eps_model'."""
    if isinstance(fn, type):
        return fn.__qualname__
    return getattr(fn, "__func__", fn).__qualname__.split(".<locals>")[0]


def _snapshot(kwargs: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in kwargs.items() if isinstance(v, (np.ndarray, list))}


def _assert_untouched(kwargs: dict, snap: dict) -> None:
    for k, before in snap.items():
        after = kwargs[k]
        if isinstance(before, np.ndarray):
            assert after.shape == before.shape and after.dtype == before.dtype, f"{k} was modified"
            same = (np.array_equal(after, before, equal_nan=True) if after.dtype.kind in "fc"
                    else np.array_equal(after, before))
            assert same, f"the caller's array {k} was modified"
        else:
            assert repr(after) == repr(before), f"the caller's list {k} was modified"


def _names(arg: str) -> str:
    """Regex: `arg` as a whole word; 'a|b' accepts either name."""
    return "|".join(rf"(?<![\w]){re.escape(a)}(?![\w])" for a in arg.split("|"))


@pytest.mark.parametrize("case", CASES, ids=[f"{_target(c.fn)}[{c.label}]" for c in CASES])
def test_bad_input_raises_value_error_naming_the_argument(case: Case):
    snap = _snapshot(case.kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # a NumPy/SciPy warning is a failure, not a pass
        with pytest.raises(ValueError, match=_names(case.arg)) as info:
            case.fn(**case.kwargs)
    if case.shows is not None:
        assert re.search(case.shows, str(info.value)), \
            f"message does not show the offending value ({case.shows!r}): {info.value}"
    _assert_untouched(case.kwargs, snap)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{_target(s.fn)}[{','.join(s.base)}]" for s in SPECS])
def test_valid_baseline_runs_and_leaves_inputs_untouched(spec: Spec):
    """Each table's valid arguments are accepted (so every bad case changes exactly what it says)."""
    snap = _snapshot(spec.base)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.fn(**spec.base)
    _assert_untouched(spec.base, snap)


@pytest.mark.parametrize("case", ENDS, ids=[f"{_target(c.fn)}[{c.label}]" for c in ENDS])
def test_valid_range_ends_are_accepted(case: Case):
    """An argument's range is closed at both ends (t = 1 and t = T, index 0 and T - 1, s = 0 and
    s = T - 1, ...): its ends are accepted, without a warning, and give no NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = case.fn(**case.kwargs)
    nan = [a for a in _arrays(out) if a.dtype.kind in "fc" and np.isnan(a).any()]
    assert not nan, f"{case.label}: NaN in the result"


def _arrays(out) -> list[np.ndarray]:
    """The arrays in a result (an array, a number, or a tuple / NamedTuple / dataclass of them)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o)]
    if hasattr(out, "__dataclass_fields__"):
        return [a for f in out.__dataclass_fields__ for a in _arrays(getattr(out, f))]
    if isinstance(out, (np.ndarray, np.generic, float, int)):
        return [np.asarray(out)]
    return []


def _data_args(spec: Spec) -> tuple[list[str], list[str]]:
    """The spec's data arguments (arrays of shape (2, d): one row per leading index) and its
    per-row timestep arguments (int arrays of shape (2,)); ([], []) for a spec with an rng
    (its draws depend on the shape) or without data."""
    if any(isinstance(v, np.random.Generator) for v in spec.base.values()):
        return [], []
    data = [k for k, v in spec.base.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"
            and v.ndim == 2 and v.shape[0] == 2]
    per_row = [k for k, v in spec.base.items() if isinstance(v, np.ndarray) and v.dtype.kind in "iu"
               and v.shape == (2,)]
    return data, per_row


#: not data of shape (..., d): the estimators' x0 and forward_trajectories' x0 are (n, d), one draw
#: per row (documented so); a mixture's means are its parameters, (K, d)
NOT_BATCHED = {"neg_elbo_kl_estimator", "neg_elbo_trajectory_estimator", "forward_trajectories", "GaussianMixture"}
SHAPE_SPECS = [s for s in SPECS if _data_args(s)[0] and _target(s.fn) not in NOT_BATCHED]


@pytest.mark.parametrize("spec", SHAPE_SPECS, ids=[f"{_target(s.fn)}[{','.join(s.base)}]" for s in SHAPE_SPECS])
def test_data_of_any_leading_shape_gives_the_rows_results(spec: Spec):
    """Data of shape (..., d) (the package's convention): a single example (d,) gives row 0 of the
    (2, d) result, and (2, 2, d) (the rows, then the rows reversed) gives the two (2, ...) results
    stacked; per-row timesteps follow the data's leading axes. Bit-for-bit: the same arithmetic
    per element, whatever the leading shape."""
    data, per_row = _data_args(spec)
    flip = {k: spec.base[k][::-1].copy() for k in data + per_row}
    base, flipped = _arrays(spec.fn(**spec.base)), _arrays(spec.fn(**{**spec.base, **flip}))
    single = _arrays(spec.fn(**{**spec.base, **{k: spec.base[k][0].copy() for k in data + per_row}}))
    stacked = _arrays(spec.fn(**{**spec.base, **{k: np.stack([spec.base[k], flip[k]]) for k in data + per_row}}))
    assert len(single) == len(stacked) == len(base)
    for i, (b, f, one, two) in enumerate(zip(base, flipped, single, stacked)):
        if b.ndim and b.shape[0] == 2:                     # per example (or per element)
            assert one.shape == b.shape[1:] and np.array_equal(one, b[0], equal_nan=True), \
                f"output {i}: for (d,) data {one} of shape {one.shape}; row 0 of (2, d) gives {b[0]}"
            expected = np.stack([b, f])
        else:                                              # not per example (a table, a constant)
            assert np.array_equal(one, b, equal_nan=True), f"output {i}: {one} for (d,) data; {b} for (2, d)"
            expected = b
        assert two.shape == expected.shape and np.array_equal(two, expected, equal_nan=True), \
            f"output {i}: shape {two.shape} for (2, 2, d) data; expected {expected.shape}"


NON_CALLABLES = {"BIN_HALF_WIDTH", "VARIANCE_KINDS", "DECODERS", "COUPLINGS", "SPACINGS", "WEIGHTINGS"}          # constants
RESULT_TYPES = {"ElboEstimate", "DiagonalNormal"}                        # returned containers, no user input
NO_INPUT_METHODS = {"LinearGaussianChain.marginal_x0"}                   # takes no argument


def _public_targets() -> set[str]:
    required = set()
    for name in R.__all__:
        obj = getattr(R, name)
        if name in NON_CALLABLES:
            assert not callable(obj), f"{name} is callable; it needs bad-input cases, not the allow-list"
            continue
        assert callable(obj), f"{name} is not callable; add it to NON_CALLABLES"
        if name in RESULT_TYPES:
            continue
        required.add(name)
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if not _own(attr):
                    continue
                if inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
                    required.add(f"{name}.{attr}")
    return required - NO_INPUT_METHODS


def test_every_public_name_has_a_bad_input_case():
    required = _public_targets()
    covered = {_target(c.fn) for c in CASES}
    missing = sorted(required - covered)
    assert not missing, f"public names without a bad-input case: {missing}"
    assert covered <= required, f"cases for non-public names: {sorted(covered - required)}"
    stale = (NON_CALLABLES | RESULT_TYPES) - set(R.__all__)
    assert not stale, f"allow-list entries not in reference.__all__: {sorted(stale)}"
    assert all(n.split(".")[0] in R.__all__ for n in NO_INPUT_METHODS)
