"""Differential checks of a `Target` against `reference`, with tolerances from its dtype.

Each check compares what the target computes with the float64 reference on a fixed, seeded
battery of inputs. Its tolerance is the target's unit roundoff u times the condition number
of the formula at each input (stated next to each check), so float32 tables pass with their
rounding reported as a precision note, while a wrong formula, a NaN where the math is finite,
or wrong semantics fails. Results carry the worst error, the tolerance there, and the fraction
of the budget used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

import reference

SEED = 20261122


@dataclass
class CheckResult:
    """One property of one target: status is pass, fail or skip."""

    name: str
    status: str
    worst_error: float = float("nan")
    tolerance: float = float("nan")
    detail: str = ""

    @property
    def budget_used(self) -> float:
        return self.worst_error / self.tolerance if self.tolerance > 0 else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["budget_used"] = self.budget_used
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def compare(name: str, got, want, tol, where: list[str]) -> CheckResult:
    """Elementwise |got - want| <= tol; a non-finite value where `want` is finite fails."""
    got, want, tol = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (got, want, tol)))
    labels = np.broadcast_to(np.asarray(where, dtype=object).reshape(got.shape[:1] + (1,) * (got.ndim - 1)),
                             got.shape) if where else np.full(got.shape, "", dtype=object)
    bad_value = np.isfinite(want) & ~np.isfinite(got)
    if bad_value.any():
        i = np.unravel_index(np.argmax(bad_value), got.shape)
        return CheckResult(name, "fail", float("inf"), float(tol[i]),
                           f"{got[i]} where the math gives {want[i]:.6g} ({labels[i]})")
    with np.errstate(invalid="ignore"):
        err = np.where(got == want, 0.0, np.abs(got - want))
        ratio = np.where(err == 0, 0.0, err / tol)
    i = np.unravel_index(np.argmax(ratio), got.shape)
    status = "pass" if ratio[i] <= 1 else "fail"
    rel = err[i] / abs(want[i]) if want[i] else err[i]
    return CheckResult(name, status, float(err[i]), float(tol[i]),
                       f"worst at {labels[i]}: got {got[i]:.9g}, reference {want[i]:.9g} (relative {rel:.2e})")


# -- inputs --------------------------------------------------------------------------------------

def _timesteps(T: int) -> np.ndarray:
    return np.unique(np.clip([1, 2, 3, T // 10, T // 2, T - 1, T], 1, T))


def _battery(T: int, d: int = 4):
    """Seeded inputs: per timestep t in a fixed set, rows of x0 in [-1, 1], eps ~ N(0, 1)."""
    rng = np.random.default_rng(SEED)
    t = np.repeat(_timesteps(T), 8)
    x0 = rng.uniform(-1, 1, (t.size, d))
    eps = rng.standard_normal((t.size, d))
    return t, x0, eps


# -- checks --------------------------------------------------------------------------------------

def _beta_tolerance(target, ref):
    """Betas built in the target's dtype (e.g. torch.linspace in float32): absolute error
    <= 2u max(beta), plus u |beta| for the final rounding; 2x margin.

    Betas rescaled to zero terminal SNR in that dtype (r'_t = (r_t - r_T) s, r = sqrt(abar),
    beta'_t = 1 - (r'_t / r'_{t-1})^2) also carry the cancellation in r_t - r_T: relative error
    e_t = u (r_t + r_T) / (r_t - r_T) + 2u in r'_t, hence alpha'_t (2 (e_t + e_{t-1}) + 2u) in beta'_t.
    """
    u = target.unit_roundoff
    beta = ref.beta()
    tol = 4 * u * (np.abs(beta) + np.max(beta))
    base = getattr(target, "rescaled_from", None)
    if base is not None:
        r = np.sqrt(base.alpha_bar())
        with np.errstate(divide="ignore"):
            e = np.where(r > r[-1], u * (r + r[-1]) / (r - r[-1]) + 2 * u, 0.0)
        e_prev = np.concatenate([[0.0], e[:-1]])
        tol = tol + 2 * (1 - beta) * (2 * (e + e_prev) + 2 * u)
    return tol


def check_betas(target) -> CheckResult:
    ref = target.reference_schedule()
    t = np.arange(1, ref.T + 1)
    return compare("schedule: beta_t", target.tables()["beta"], ref.beta(), _beta_tolerance(target, ref),
                   [f"t={k}" for k in t])


def _alpha_bar_tolerance(target, ref):
    """abar_t as a running product in the target's dtype: 2(t + 1)u relative from the products,
    plus the betas' errors propagated, sum_s delta beta_s / (1 - beta_s)."""
    u, T = target.unit_roundoff, ref.T
    beta = ref.beta()
    with np.errstate(divide="ignore"):
        prop = np.cumsum(_beta_tolerance(target, ref) / np.maximum(1 - beta, u))
    return ref.alpha_bar() * (2 * (np.arange(1, T + 1) + 1) * u + prop) + u * (ref.alpha_bar() == 0)


def check_alpha_bar(target) -> CheckResult:
    ref = target.reference_schedule()
    return compare("schedule: abar_t", target.tables()["alpha_bar"], ref.alpha_bar(),
                   _alpha_bar_tolerance(target, ref), [f"t={k}" for k in range(1, ref.T + 1)])


def _sqrt_errors(target, ref, t):
    """Absolute errors of sqrt(abar_t) and sqrt(1 - abar_t) from the tables' error delta:
    d sqrt(a) = delta / (2 sqrt a), d sqrt(1 - a) = (delta + u) / (2 sqrt(1 - a)), plus u each."""
    u = target.unit_roundoff
    a = ref.alpha_bar(t)
    delta = _alpha_bar_tolerance(target, ref)[t - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        e_a = np.where(a > 0, delta / (2 * np.sqrt(a)), np.sqrt(delta)) + u
        e_1 = (delta + u) / (2 * np.sqrt(1 - a)) + u
    return e_a[:, None], e_1[:, None]


def _mix_tolerance(target, ref, t, with_sa, with_s1):
    """Tolerance of sqrt(abar_t) a +- sqrt(1 - abar_t) b in the target's dtype: the tables' errors
    (`_sqrt_errors`) times |a| and |b|, and 4u of each term for the inputs' and products' roundings."""
    e_a, e_1 = _sqrt_errors(target, ref, t)
    sa, s1 = np.sqrt(ref.alpha_bar(t))[:, None], np.sqrt(ref.one_minus_alpha_bar(t))[:, None]
    a, b = np.abs(with_sa), np.abs(with_s1)
    return 2 * (a * e_a + b * e_1 + 4 * target.unit_roundoff * (sa * a + s1 * b))


def check_q_sample(target) -> CheckResult:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; inputs rounded to the target's dtype (u each)."""
    ref = target.reference_schedule()
    t, x0, eps = _battery(ref.T)
    return compare("forward: q_sample (add_noise)", target.q_sample(x0, t, eps),
                   reference.q_sample(ref, x0, t, eps), _mix_tolerance(target, ref, t, x0, eps),
                   [f"t={k}" for k in t])


def check_velocity(target) -> CheckResult:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (MATH.md 5); same error terms as q_sample."""
    ref = target.reference_schedule()
    t, x0, eps = _battery(ref.T)
    return compare("parameterisation: v (get_velocity)", target.velocity(x0, t, eps),
                   reference.v_from_x0_eps(ref, x0, t, eps), _mix_tolerance(target, ref, t, eps, x0),
                   [f"t={k}" for k in t])


def check_previous_t(target) -> CheckResult:
    """With every training step used for inference, the reverse step from t goes to t - 1."""
    T = target.reference_schedule().T
    ts = _timesteps(T)
    got = np.array([target.previous_t(k) for k in ts])
    return compare("reverse: previous timestep = t - 1", got, ts - 1, 0.5, [f"t={k}" for k in ts])


def _model_outputs(target, ref, t, xt, rng):
    """A model output for the target's prediction type and the x_0 it implies (float64)."""
    d = xt.shape[1]
    out = rng.standard_normal(xt.shape)
    sa, s1 = np.sqrt(ref.alpha_bar(t))[:, None], np.sqrt(ref.one_minus_alpha_bar(t))[:, None]
    if target.prediction_type == "epsilon":
        x0 = (xt - s1 * out) / sa
    elif target.prediction_type == "sample":
        x0 = out
    else:                                                  # v_prediction
        x0 = sa * xt - s1 * out
    frac = None
    if target.variance_type == "learned_range":
        v_raw = rng.uniform(-1, 1, (xt.shape[0], d))
        out = np.concatenate([out, v_raw], axis=1)
        frac = (v_raw + 1) / 2
    return out, x0, frac


def check_reverse_step(target) -> CheckResult:
    """One reverse step x_{t-1} = mu_tilde_t(x_t, x0_hat) + sigma_t z, z the step's own noise, for
    the target's prediction type (x0_hat clipped to [-r, r] when clip_sample) and the p_theta
    variance its variance_type stands for; at t = 1 no noise is added.

    Tolerance: the coefficients come from float32 abar_t and abar_{t-1}; beta_t = 1 - abar_t /
    abar_{t-1} loses digits by 1 / beta_t, 1 - abar_t by 1 / (1 - abar_t), and the cumulative
    product t u: relative error c = 8 u (1 / beta_t + 1 / (1 - abar_t) + t) on each term, plus
    u (|x_t| + |out|) / sqrt(abar_t) carried by an x0 predicted from eps or v.
    """
    ref = target.reference_schedule()
    T = ref.T
    rng = np.random.default_rng(SEED + 1)
    ts = _timesteps(T)
    if target.prediction_type == "epsilon":
        ts = ts[ref.alpha_bar(ts) > 0]       # x0 from eps is undefined where abar_t = 0
    got, want, tol, where = [], [], [], []
    u = target.unit_roundoff
    for k in ts:
        t = np.full(6, k)
        xt = rng.standard_normal((6, 4))
        out, x0, frac = _model_outputs(target, ref, t, xt, rng)
        if target.clip_sample:
            x0 = np.clip(x0, -target.clip_range, target.clip_range)
        mean = reference.posterior_mean(ref, x0, xt, t)
        kind = target.intended_variance
        if kind == "learned_range":
            log_lo = np.log(max(ref.beta_tilde(int(k)), 1e-20))
            var = np.exp(frac * ref.log_beta(int(k)) + (1 - frac) * log_lo)
        elif kind == "fixed_small":
            var = np.full(xt.shape, ref.beta_tilde(int(k)))
        else:
            var = np.full(xt.shape, ref.beta(int(k)))
        prev, noise = target.reverse_step(out, xt, int(k), seed=SEED + int(k))
        sd = np.sqrt(var) if k > 1 else np.zeros_like(var)
        expected = mean + sd * noise
        b, om = ref.beta(int(k)), ref.one_minus_alpha_bar(int(k))
        c = 8 * u * (1 / b + 1 / om + k)
        sa = math.sqrt(ref.alpha_bar(int(k))) if ref.alpha_bar(int(k)) > 0 else 1.0
        x0_err = 0.0 if target.prediction_type == "sample" else u * (np.abs(xt) + np.abs(out[:, :4])) / sa
        cx0, cxt = ref.posterior_coef_x0(int(k)), ref.posterior_coef_xt(int(k))
        t_tol = c * (cx0 * np.abs(x0) + cxt * np.abs(xt) + sd * np.abs(noise)) + cx0 * 8 * x0_err \
            + 4 * u * np.abs(expected)
        got.append(prev)
        want.append(expected)
        tol.append(t_tol)
        where += [f"t={k}"] * 6
    return compare(f"reverse: step ({target.prediction_type}, {target.variance_type}, "
                   f"clip={target.clip_sample})", np.concatenate(got), np.concatenate(want),
                   np.concatenate(tol), where)


CHECKS: list[tuple[str, Callable]] = [
    ("schedule", check_betas),
    ("schedule", check_alpha_bar),
    ("q_sample", check_q_sample),
    ("velocity", check_velocity),
    ("previous_t", check_previous_t),
    ("reverse_step", check_reverse_step),
]


def run(target) -> list[CheckResult]:
    """Every check whose operation the target supports; the rest are skipped with a reason."""
    results = []
    for op, fn in CHECKS:
        if op not in target.operations:
            results.append(CheckResult(fn.__name__.removeprefix("check_"), "skip",
                                       detail=f"{target.name} does not provide the operation {op!r}"))
            continue
        results.append(fn(target))
    return results
