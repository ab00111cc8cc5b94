"""check-loss: a user's whole training loss, run untouched with the oracle network, against the exact
law of its value (docs/math.md §11).

With Gaussian data (`oracle.OracleData`) and a network that returns the optimal prediction plus
delta = offset + gain x_t, the error e = y - y_hat of each dimension at t is exactly Gaussian
(`reference.GaussianData.regression_error`), so the loss of a batch whose timesteps are known has
an exact mean and variance: per example w_t times the mean (or sum) over dimensions of e^2, with
E[e^2] = mu_e^2 + s_e^2 and Var[e^2] = 2 s_e^4 + 4 mu_e^2 s_e^2. The timesteps are read from the
network's calls, so each call's value is compared with its own conditional expectation.

1. Calls of one example each give the loss per t: each value standardised by its exact mean and
   standard deviation, averaged over 10 bands of t (z-tests, CLT over the calls of a band,
   Bonferroni), and over all of them.
2. Calls of a batch draw enough timesteps to test their law: uniform over 1..T (DKW, exact for
   any distribution), and both ends drawn (binomial: P(t = T never drawn) <= rate); and the
   batch loss against the exact expectation under uniform t, with its exact standard deviation.
3. The same conditional test with two perturbed networks (offset 0.1; gain 0.1), whose losses
   are known in closed form too, so that an error the optimum hides (a term that vanishes when
   the prediction is optimal) still shows.
4. The x_t every call hands the network, against its exact law per band of t (`xt_law`), with
   enough batch calls that each nearby forward process (an extra factor in abar, t off by one,
   a variance for a standard deviation) is seen with power 0.95 within a budget of values.
5. With `loss_at(model, x0, t, noise)`: the x_t the code hands the network and the loss value,
   against float64 values from the same x0, t and noise, within a float budget.
Every statistical row has a false-fail rate of 1e-6.
"""

from __future__ import annotations

import math
import traceback as tb

import numpy as np
import torch
from scipy.stats import norm

import reference
from reference.conventions import Prediction, Timesteps

from .. import SEED, stats
from ..adapters.protocol import raised_by_us
from ..errors import InternalError, TargetRaised, WrongOutput
from ..results import Failure, Result
from .declaration import LoopTarget
from . import xt_law
from .oracle import ForwardLaw, OracleData, OracleModel, group_label, loss_groups
from .sampler import seeded

RATE = 1e-6
POWER = 0.95
BANDS = 10
PERTURBATIONS = ((0.1, 0.0), (0.0, 0.1))     # (offset, gain) of delta = offset + gain x_t
TARGET_RELATIVE = 0.02                         # discrepancy each test should see with power POWER
XT_BUDGET = 2 ** 23                            # values (examples x d) of the batch calls the x_t test may ask for


class Tables:
    """Per paper t (arrays (T,)): the exact mean and variance of one example's loss with the
    network perturbed by (offset, gain), for one data set; `weights` w_t."""

    def __init__(self, target: LoopTarget, od: OracleData, offset: float, gain: float):
        ts = np.arange(1, target.T + 1)
        e = od.data.regression_error(target.schedule, ts, target=target.target,
                                     prediction_type=target.prediction_type, offset=offset, gain=gain)
        mu2, s2 = e.mean ** 2, e.variance
        scale = 1.0 / target.d if target.reduction in ("mean", "per_example_mean") else 1.0
        self.weights = reference.loss_weight(target.schedule, ts, target.weighting, target=target.target,
                                             **target.weighting_args)
        self.mean = self.weights * scale * np.sum(mu2 + s2, axis=1)
        self.variance = (self.weights * scale) ** 2 * np.sum(2 * s2 ** 2 + 4 * mu2 * s2, axis=1)

    def of_batch(self, t: np.ndarray, per_example: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mean, variance) of the returned value(s) for examples at paper t."""
        m, v = self.mean[t - 1], self.variance[t - 1]
        return (m, v) if per_example else (np.array([m.mean()]), np.array([v.sum() / t.size ** 2]))

    def uniform(self) -> tuple[float, float]:
        """(mean, variance) of one example's loss under t uniform on 1..T."""
        return float(self.mean.mean()), float(self.variance.mean() + self.mean.var())


def as_values(value, b: int, per_example: bool, what: str) -> np.ndarray:
    """The loss as float64: one value, or one per example (WrongOutput otherwise)."""
    if torch.is_tensor(value):
        value = value.detach().cpu().double().numpy()
    value = np.asarray(value, dtype=np.float64) if np.asarray(value).dtype.kind in "fiu" else np.asarray(value)
    if value.dtype.kind != "f":
        raise WrongOutput(what, f"a value of dtype {value.dtype}; expected floating point")
    want = (b,) if per_example else ()
    if value.shape != want and not (not per_example and value.shape == (1,)):
        raise WrongOutput(what, f"a value of shape {value.shape}; expected {want or 'a scalar'} "
                                f"(reduction {'per example' if per_example else 'over the batch'})")
    return value.reshape(-1)


class Caller:
    """Calls the user's loss with an oracle network on Gaussian data, recording the timesteps."""

    def __init__(self, target: LoopTarget, od: OracleData, seed: int):
        self.target, self.od = target, od
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.per_example = target.reduction.startswith("per_example")
        self.models: dict[tuple, OracleModel] = {}
        self.law = ForwardLaw(od, target.schedule)          # the x_t of every call but loss_at's
        self.last_values = np.zeros(0)

    def x0(self, b: int) -> np.ndarray:
        return self.od.data.sample(self.rng, b)

    def model(self, offset=0.0, gain=0.0, keep_inputs=False) -> OracleModel:
        """The oracle network off the optimum by offset + gain x_t, its record of calls emptied (one
        network per perturbation, built once: its tables cover every t)."""
        key = (offset, gain, keep_inputs)
        if key not in self.models:
            t = self.target
            self.models[key] = OracleModel(self.od, t.schedule, t.data_shape, t.timesteps, t.prediction_type,
                                           offset=offset, gain=gain, keep_inputs=keep_inputs,
                                           law=None if keep_inputs else self.law)
        model = self.models[key]
        model.calls.clear()
        return model

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.reshape(a.shape[0], *self.target.data_shape)).float()

    def call(self, method: str, model: OracleModel, *args, what: str):
        """The user's `method`(model, *args); TargetRaised / InternalError on an exception."""
        try:
            return getattr(self.target.obj, method)(model, *args)
        except Exception as exc:  # noqa: BLE001 - classified: ours (exit 3) or the loss's (error)
            if raised_by_us(exc):
                raise InternalError(f"the oracle network in {what}", exc) from exc
            raise TargetRaised(what, "", exc, tb.format_exc()) from exc

    def batch(self, b: int, offset=0.0, gain=0.0) -> tuple[np.ndarray, np.ndarray]:
        """(values, paper t of each example) of one loss call on b examples."""
        model = self.model(offset, gain)
        what = f"loss(model, x0 of shape {(b, *self.target.data_shape)})"
        values = as_values(self.call("loss", model, self.tensor(self.x0(b)), what=what), b, self.per_example, what)
        if not model.calls:
            raise WrongOutput(what, "without calling the network")
        first = model.calls[0]
        if first.rows != b or any(c.rows != b or np.any(c.t != first.t) for c in model.calls[1:]):
            raise WrongOutput(what, f"after calling the network with {[c.rows for c in model.calls]} rows "
                                    f"(expected {b}, the same timesteps in every call)")
        return values, first.t


def _standardised(caller, tables, calls: int, b: int, offset=0.0, gain=0.0):
    """(z of each returned value, paper t of each value's example(s), all timesteps drawn)."""
    zs, ts, drawn, raw = [], [], [], []
    for _ in range(calls):
        values, t = caller.batch(b, offset, gain)
        m, v = tables.of_batch(t, caller.per_example)
        raw.append(values)
        zs.append((values - m) / np.sqrt(v))
        ts.append(t if caller.per_example else np.array([int(np.round(t.mean()))]))
        drawn.append(t)
    caller.last_values = np.concatenate(raw)
    return np.concatenate(zs), np.concatenate(ts), np.concatenate(drawn)


def _z_result(name: str, z: np.ndarray, rate: float, detail: str = "",
              statistic: str = "mean of (loss - E[loss | t]) / sd[loss | t]") -> Result:
    if not np.all(np.isfinite(z)):
        return Result(name, "fail", math.inf, values=z.size,
                      detail=f"{int(np.sum(~np.isfinite(z)))} of {z.size} values are NaN or inf where the math is finite")
    try:
        v = stats.assert_mean(z, 0.0, sigma=1.0, false_fail_rate=rate, power=POWER, name=statistic)
    except AssertionError as exc:
        return Result(name, "fail", detail=f"{exc}{'; ' + detail if detail else ''}", values=z.size)
    return Result(name, "pass", v.statistic, v.threshold, f"{v}{'; ' + detail if detail else ''}", values=z.size)


def batch_size(d: int) -> int:
    """Examples per batch call: 64, or more for small data (at least 16384 values a call)."""
    return max(64, math.ceil(16384 / d))


def _calls_for(tables: Tables, b: int, per_example: bool, relative: float, rate: float, lo: int, hi: int) -> int:
    """Calls of b examples for a z-test at `rate` to see a relative error `relative` in the loss
    with power POWER: ((z_rate + z_power) cv / relative)^2 values, cv^2 = E[Var] / E[mean]^2 of one
    example's loss (over b for a batch's mean)."""
    cv2 = float(np.mean(tables.variance) / np.mean(tables.mean) ** 2) / (1 if per_example else b)
    values = stats.min_samples_mean(relative, math.sqrt(cv2), rate, POWER)
    return int(min(hi, max(lo, math.ceil(values / (b if per_example else 1)))))


def band_result(caller: Caller, tables: Tables) -> Result:
    """Loss calls of one example each: the value given t, averaged over 10 bands of t (a 10%
    relative error per band is the target, within 200..1000 calls)."""
    T = caller.target.T
    rate = RATE / BANDS
    calls = BANDS * _calls_for(tables, 1, True, 0.1, rate, 20, 100)
    z, t, _ = _standardised(caller, tables, calls, 1)
    edges = np.linspace(0, T, BANDS + 1).round().astype(int)
    thr = norm.isf(rate / 2)
    failures, ts = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (t > lo) & (t <= hi)
        if sel.sum() < 2:
            continue
        ts.append(int(hi))
        mean = float(z[sel].mean())
        if not abs(mean) * math.sqrt(sel.sum()) <= thr:
            failures.append(Failure(f"{lo + 1}..{hi}", (), mean, 0.0, thr / math.sqrt(sel.sum()),
                                    part=f"{int(sel.sum())} calls"))
    detail = ("; ".join(f"t in {f.t}: mean z {f.got:+.3g} beyond +-{f.tolerance:.3g} ({f.part})" for f in failures)
              if failures else f"{BANDS} bands of t, {calls} calls of one example, each band's mean z within its bound")
    return Result("loss: value per band of t (oracle network)", "fail" if failures else "pass", values=len(ts),
                  failures=failures, detail=f"{detail} (false-fail rate {RATE:g} over {BANDS} bands)")


def batch_results(caller: Caller, tables: Tables, examples: int = 0) -> list[Result]:
    """Batch calls (at least `examples` examples in all): the value given the timesteps drawn,
    their law, and the loss under uniform t."""
    T, b = caller.target.T, batch_size(caller.target.d)
    draws = math.ceil(math.log(4 / RATE) / -math.log1p(-1 / T))       # t = 1 and t = T each drawn
    calls = max(math.ceil(max(draws, examples) / b),
                _calls_for(tables, b, caller.per_example, TARGET_RELATIVE, RATE, 20, 1000))
    z, _, drawn = _standardised(caller, tables, calls, b)
    results = [_z_result("loss: value given the t it draws (oracle network)", z, RATE,
                         f"{calls} calls of {b}; E and sd from the exact law of e = y - y_hat"),
               _t_law(drawn, T)]
    mean, var = tables.uniform()
    values = caller.last_values
    sd = math.sqrt(var if caller.per_example else var / b)
    results.append(_z_result("loss: expected value under uniform t (oracle network)", (values - mean) / sd, RATE,
                             f"{calls} calls of {b}: mean {values.mean():.6g}, exact {mean:.6g}",
                             statistic="mean of (loss - E[loss]) / sd[loss], t uniform"))
    return results


def _t_law(t: np.ndarray, T: int) -> Result:
    """The drawn timesteps: uniform on 1..T (DKW on the discrete CDF), and t = 1 and t = T drawn."""
    name = "loss: the timesteps it draws are uniform on 1..T"
    rate = RATE / 2
    grid = np.arange(1, T + 1)
    ecdf = np.searchsorted(np.sort(t), grid, side="right") / t.size
    stat = float(np.max(np.abs(ecdf - grid / T)))
    thr = stats.dkw_epsilon(t.size, rate)
    problems = []
    if stat > thr:
        k = int(np.argmax(np.abs(ecdf - grid / T)))
        problems.append(f"empirical CDF {ecdf[k]:.4f} at t = {grid[k]} where the uniform law gives {grid[k] / T:.4f}")
    for end in (1, T):
        count = int(np.sum(t == end))
        if count == 0:
            problems.append(f"t = {end} never drawn in {t.size} draws (probability {(1 - 1 / T) ** t.size:.1e} "
                            f"if uniform)")
    lo, hi = int(t.min()), int(t.max())
    detail = (f"{t.size} timesteps drawn, {lo}..{hi}; sup |F_n - F| = {stat:.4g} vs DKW bound {thr:.4g}; "
              f"false-fail rate {RATE:g}")
    return Result(name, "fail" if problems else "pass", stat, thr, "; ".join(problems + [detail]),
                  values=int(t.size))


def perturbed_results(caller: Caller, od: OracleData, target: LoopTarget) -> list[Result]:
    results = []
    for offset, gain in PERTURBATIONS:
        tables = Tables(target, od, offset, gain)
        b = batch_size(target.d)
        calls = _calls_for(tables, b, caller.per_example, TARGET_RELATIVE, RATE, 20, 1000)
        z, _, _ = _standardised(caller, tables, calls, b, offset, gain)
        what = f"offset {offset:g}" if offset else f"gain {gain:g} x_t"
        results.append(_z_result(f"loss: value given t, network off the optimum by {what}", z, RATE,
                                 f"{calls} calls of {b}"))
    return results


def loss_at_results(caller: Caller, od: OracleData, target: LoopTarget) -> list[Result]:
    """`loss_at` with given t and noise: the network's input x_t and the loss value against float64."""
    T, u = target.T, target.unit_roundoff
    b = 2 * BANDS
    t = np.unique(np.clip(np.round(np.linspace(1, T, b)), 1, T)).astype(np.int64)
    b = t.size
    x0 = caller.x0(b)
    noise = caller.rng.standard_normal(x0.shape)
    model = caller.model(0.1, 0.05, keep_inputs=True)
    code_t = {Timesteps.INDEX: torch.from_numpy(t - 1), Timesteps.PAPER: torch.from_numpy(t),
              Timesteps.FRACTION: torch.from_numpy(t / T).float()}[target.timesteps]
    what = f"loss_at(model, x0, t, noise) on {b} examples"
    value = caller.call("loss_at", model, caller.tensor(x0), code_t, caller.tensor(noise), what=what)
    got = as_values(value, b, caller.per_example, what)
    if not model.calls:
        raise WrongOutput(what, "without calling the network")
    sched = target.schedule
    sa, s1 = np.sqrt(sched.alpha_bar(t))[:, None], np.sqrt(sched.one_minus_alpha_bar(t))[:, None]
    x0_32, noise_32 = (caller.tensor(a).double().numpy().reshape(b, -1) for a in (x0, noise))
    xt = reference.q_sample(sched, x0_32, t, noise_32)
    # the code's float arithmetic, and its sqrt(1 - abar_t) from a rounded abar_t: relative error
    # u abar_t / (1 - abar_t) (the cancellation at small t)
    ab = sched.alpha_bar(t)[:, None]
    xt_err = 3 * u * (sa * np.abs(x0_32) + s1 * np.abs(noise_32)) + u * ab / (1 - ab) * s1 * np.abs(noise_32)
    call = model.calls[0]
    results = [_exact_xt(call, t, xt, xt_err)]
    slope, intercept = od.data.prediction(sched, t, target.prediction_type)
    out = (slope + 0.05) * xt + intercept + 0.1
    y, y_err = _target(target, sched, t, x0_32, noise_32, u)
    yhat, d_yhat = _convert(target, sched, t, xt, out)
    e = y - yhat
    e_err = y_err + np.abs(d_yhat * (slope + 0.05)) * xt_err + 4 * u * (np.abs(yhat) + np.abs(d_yhat * out))
    w = reference.loss_weight(sched, t, target.weighting, target=target.target, **target.weighting_args)
    w_err = 8 * (u / sched.one_minus_alpha_bar(t) + u) * w if target.weighting != "none" else 0 * w
    scale = 1.0 / target.d if target.reduction in ("mean", "per_example_mean") else 1.0
    per = w * scale * np.sum(e ** 2, axis=1)
    per_err = w * scale * np.sum(2 * np.abs(e) * e_err + e_err ** 2, axis=1) + w_err * per / np.maximum(w, 1e-300) \
        + (target.d + 4) * u * per
    want, tol = (per, per_err) if caller.per_example else (np.array([per.mean()]), np.array([per_err.mean()]))
    err = np.abs(got - want)
    bad = np.flatnonzero(~(err <= tol))
    name = "loss_at: the loss with given t and noise"
    if bad.size:
        failures = [Failure(int(t[i]) if caller.per_example else "batch", (int(i),), float(got[i]), float(want[i]),
                            float(tol[i])) for i in bad]
        i = bad[0]
        return results + [Result(name, "fail", float(np.max(err)), float(tol[i]), operation="loss_at",
                                 timesteps=t.tolist(), failed_timesteps=[int(t[j]) for j in bad] if caller.per_example
                                 else [], values=int(got.size), failures=failures,
                                 detail=f"got {got[i]:.9g}, float64 {want[i]:.9g} (tolerance {tol[i]:.3g})")]
    k = int(np.argmax(err / tol))
    return results + [Result(name, "pass", float(err[k]), float(tol[k]), operation="loss_at", timesteps=t.tolist(),
                             values=int(got.size), detail=f"worst: got {got[k]:.9g}, float64 {want[k]:.9g}")]


def _exact_xt(call, t: np.ndarray, xt: np.ndarray, xt_err: np.ndarray) -> Result:
    name = "loss_at: x_t handed to the network"
    if call.rows != t.size or not np.array_equal(call.t, t):
        return Result(name, "fail", detail=f"the network got t = {call.t.tolist()[:6]}... for the given "
                                           f"t = {t.tolist()[:6]}...")
    got = call.inputs
    err = np.abs(got - xt)
    tol = xt_err + 2.0 ** -24 * np.abs(xt)
    bad = err > tol
    if np.any(bad):
        rows = sorted(set(np.nonzero(bad)[0].tolist()))
        i, j = np.unravel_index(np.argmax(err / np.maximum(tol, 1e-300)), err.shape)
        return Result(name, "fail", float(err[i, j]), float(tol[i, j]), timesteps=t.tolist(),
                      failed_timesteps=[int(t[r]) for r in rows], values=int(err.size),
                      failures=[Failure(int(t[i]), (int(i), int(j)), float(got[i, j]), float(xt[i, j]),
                                        float(tol[i, j]))],
                      detail=f"worst at t={t[i]}: got {got[i, j]:.9g}, sqrt(abar_t) x0 + sqrt(1 - abar_t) noise = "
                             f"{xt[i, j]:.9g}")
    k = np.unravel_index(np.argmax(err / np.maximum(tol, 1e-300)), err.shape)
    return Result(name, "pass", float(err[k]), float(tol[k]), timesteps=t.tolist(), values=int(err.size),
                  detail="x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise within float32 arithmetic")


def _target(target, sched, t, x0, noise, u):
    """The regression target y from x0 and the noise, and its float error as the code computes it."""
    if target.target == Prediction.EPSILON:
        return noise, 0 * noise
    if target.target == Prediction.SAMPLE:
        return x0, 0 * x0
    sa, s1 = np.sqrt(sched.alpha_bar(t))[:, None], np.sqrt(sched.one_minus_alpha_bar(t))[:, None]
    return reference.v_from_x0_eps(sched, x0, t, noise), 3 * u * (sa * np.abs(noise) + s1 * np.abs(x0))


def _convert(target, sched, t, xt, out):
    """y_hat: the network output `out` (of the prediction type) as the target's type at t, and
    d y_hat / d out (affine, so a difference of two evaluations; for the error budget)."""
    value = _converted(target, sched, t, xt, out)
    return value, _converted(target, sched, t, xt, out + 1) - value


def _converted(target, sched, t, xt, out):
    p, y = target.prediction_type, target.target
    if p == y:
        return out
    x0, eps = reference.x0_and_eps(sched, xt, t, out, p)
    return {Prediction.SAMPLE: x0, Prediction.EPSILON: eps}.get(y) if y != Prediction.V else reference.v_from_x0_eps(
        sched, x0, t, eps)


def check_loss(target: LoopTarget, seed: int = SEED) -> tuple[list[Result], dict]:
    """The loss's results (module docstring) and facts for the report."""
    params = loss_groups()
    od = OracleData.build(target.d, params)
    needed = xt_law.examples_needed(od, target.schedule, RATE, POWER)
    cap = XT_BUDGET // target.d
    examples = max([0, *(v for v in needed.values() if v <= cap)])
    facts = {"data": [group_label(*p) for p in params[:min(len(params), target.d)]], "needed": needed, "cap": cap}
    caller = Caller(target, od, seed)
    tables = Tables(target, od, 0.0, 0.0)
    with seeded(seed):
        results = _run_all(caller, tables, od, target, examples)
    return results, facts


def _run_all(caller: Caller, tables: Tables, od: OracleData, target: LoopTarget, examples: int) -> list[Result]:
    results = []
    steps = (("loss: value given the t it draws (oracle network)", lambda: batch_results(caller, tables, examples)),
             ("loss: value per band of t (oracle network)", lambda: [band_result(caller, tables)]),
             ("loss: value given t, network off the optimum", lambda: perturbed_results(caller, od, target)))
    for name, step in steps:
        try:
            results += step()
        except TargetRaised as exc:
            results.append(Result(name, "error", detail=str(exc), traceback=exc.traceback))
        except WrongOutput as exc:
            results.append(Result(name, "fail", detail=str(exc)))
    if caller.law.count.any():
        results.append(xt_law.result(caller.law, od, target.schedule, RATE))
    if target.has_loss_at:
        try:
            results += loss_at_results(caller, od, target)
        except TargetRaised as exc:
            results.append(Result("loss_at: the loss with given t and noise", "error", detail=str(exc),
                                  traceback=exc.traceback))
        except WrongOutput as exc:
            results.append(Result("loss_at: the loss with given t and noise", "fail", detail=str(exc)))
    else:
        results.append(Result("loss_at: the loss with given t and noise", "skip",
                              detail=f"{target.name} has no loss_at(model, x0, t, noise)"))
    return results


def conventions(target: LoopTarget, facts: dict) -> list[Result]:
    w = target.weighting + (f" ({', '.join(f'{k}={v:g}' for k, v in target.weighting_args.items())})"
                            if target.weighting_args else "")
    return [Result("convention: the network", "convention",
                   detail=f"the exact optimum ({target.prediction_type}) for Gaussian data {', '.join(facts['data'])} "
                          f"per dimension, called with t as the code's '{target.timesteps}'"),
            Result("convention: loss", "convention",
                   detail=f"{target.objective}, reduction {target.reduction}, weighting {w}, T = {target.T}"),
            Result("convention: examples", "convention", detail=_examples_line(facts))]


def _examples_line(facts: dict) -> str:
    """Which nearby forward process set the number of examples, and which stay beyond the budget."""
    needed, cap = facts["needed"], facts["cap"]
    within = [(v, k) for k, v in needed.items() if v <= cap]
    beyond = sorted(k for k, v in needed.items() if v > cap)
    text = "the x_t test"
    if within:
        v, k = max(within)
        text += f" tells each nearby forward process apart with power {POWER:g} (the hardest, {k}, needs {v} examples)"
    if beyond:
        text += f"; beyond the budget of {cap} examples: {', '.join(beyond)}"
    return text
