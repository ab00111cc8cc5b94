"""check-sampler: a user's whole sampling loop, run untouched with the oracle network, against the
exact law of its output (docs/math.md §11).

1. A pilot run of 2 samples records the timesteps the loop asks the network for
   (`check_timesteps`): a DDPM process asks every t from T down to 1 once; DDIM any strictly
   decreasing sequence, which then defines the process.
2. n comes from the power needed: the smallest n at which the output tests tell each nearby
   process (`nearby`) from the declared one with probability 0.95, within an element budget.
3. The loop runs with n samples for each data set (`oracle.OracleData.passes`). Its output,
   standardised by the exact N(m, V) of each dimension, is tested per data group: mean (z-test),
   variance (chi-square) and distribution (DKW), each exact for Gaussian draws, at a false-fail
   rate of 1e-6 per group in all. An output rounded to bins (`output_step` > 0, e.g. uint8 images)
   is standardised by the randomised probability integral transform over its bin, which is
   exactly N(0, 1) under the declared law too (`stats.normal_scores`).
4. The state the loop hands the network at each call is tested the same way (mean and
   variance, Bonferroni over calls and groups, 1e-6 in all), locating the first step that departs.
5. On a failure the report names the nearby process under which the output is most likely, and
   its log-likelihood per sample above or below the declared process's.
"""

from __future__ import annotations

import contextlib
import math
import traceback as tb

import numpy as np
import torch
from scipy.stats import norm

import reference
from reference.gaussian import log_normal_mass

from .. import SEED, stats
from ..adapters.protocol import raised_by_us
from ..errors import InternalError, TargetRaised, WrongOutput, one_line
from ..results import Result, t_list
from . import nearby
from .declaration import LoopTarget
from .oracle import OracleData, OracleModel, group_label, groups

RATE = 1e-6
POWER = 0.95
PILOT_N = 2
N_MIN = 16
ELEMENT_BUDGET = 2 ** 20          # n * d per data set: the largest batch a check runs


@contextlib.contextmanager
def seeded(seed: int):
    """torch's and NumPy's global generators seeded for the user's code, and restored after."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2 ** 32)
        try:
            yield
        finally:
            np.random.set_state(state)


def as_output(value, n: int, data_shape: tuple, what: str) -> np.ndarray:
    """The user's output as float64 (n, d); WrongOutput when it is not (n, *data_shape) floats."""
    if torch.is_tensor(value):
        if not value.is_floating_point():
            raise WrongOutput(what, f"a tensor of dtype {value.dtype}; expected floating point")
        value = value.detach().cpu().double().numpy()
    value = np.asarray(value)
    if value.dtype.kind != "f":
        raise WrongOutput(what, f"an array of dtype {value.dtype}; expected floating point")
    if value.shape != (n, *data_shape):
        raise WrongOutput(what, f"an output of shape {value.shape}; expected {(n, *data_shape)}")
    return value.astype(np.float64).reshape(n, -1)


def run_loop(target: LoopTarget, od: OracleData, n: int, seed: int):
    """(output (n, d), the network's calls) of one run of the user's loop with n samples."""
    model = OracleModel(od, target.schedule, target.data_shape, target.timesteps, target.prediction_type)
    what = f"sample(model, n={n})"
    try:
        with seeded(seed):
            value = target.obj.sample(model, n)
    except Exception as exc:  # noqa: BLE001 - classified: ours (exit 3) or the loop's (error)
        if raised_by_us(exc):
            raise InternalError(f"the oracle network in {what}", exc) from exc
        where = f"at network call {len(model.calls) + 1}" + (
            f", after t = {model.calls[-1].t[0]}" if model.calls else "")
        raise TargetRaised(what, where, exc, tb.format_exc()) from exc
    return as_output(value, n, target.data_shape, what), model.calls


def asked(calls) -> tuple[np.ndarray, list[str]]:
    """The paper t of each call (its first row's), and the problems: calls mixing timesteps."""
    mixed = [i for i, c in enumerate(calls) if np.any(c.t != c.t[0])]
    problems = [f"network call {mixed[0] + 1} mixes timesteps {t_list(sorted(set(calls[mixed[0]].t.tolist())), 6)} "
                f"in one batch ({len(mixed)} such calls)"] if mixed else []
    return np.array([int(c.t[0]) for c in calls], dtype=np.int64), problems


def check_timesteps(target: LoopTarget, tau: np.ndarray, problems: list[str]) -> Result:
    """The timesteps asked, one per call: DDPM every t from T down to 1 once; DDIM strictly
    decreasing within 1..T."""
    name = "sampler: the timesteps the loop asks for"
    shown = f"{tau.size} calls: {_sequence(tau)}"
    if tau.size == 0:
        return Result(name, "fail", detail="the loop never called the network")
    problems = list(problems)
    if target.process == "ddpm":
        want = np.arange(target.T, 0, -1)
        missing = np.setdiff1d(want, tau)
        if missing.size:
            problems.append(f"t = {t_list(missing[::-1].tolist(), 6)} never asked ({missing.size} of {target.T})")
        values, counts = np.unique(tau, return_counts=True)
        if np.any(counts > 1):
            problems.append(f"t = {t_list(values[counts > 1].tolist(), 6)} asked more than once")
    if np.any(np.diff(tau) >= 0):
        i = int(np.flatnonzero(np.diff(tau) >= 0)[0])
        problems.append(f"not strictly decreasing: call {i + 2} asks t = {tau[i + 1]} after t = {tau[i]}")
    return Result(name, "fail" if problems else "pass", values=int(tau.size), timesteps=sorted(set(tau.tolist())),
                  detail="; ".join(problems + [shown]))


def _sequence(tau: np.ndarray) -> str:
    items = tau.tolist()
    if len(items) > 1 and np.all(np.diff(tau) == -1):
        return f"{items[0]}..{items[-1]}"
    return ", ".join(map(str, items)) if len(items) <= 8 else ", ".join(map(str, items[:4] + ["..."] + items[-3:]))


def output_results(outputs, passes, bases, processes, n: int, step: float = 0.0, seed: int = SEED) -> list[Result]:
    """One result per data group: the standardised outputs' mean, variance and distribution."""
    params = passes[0].params
    results = []
    rate = RATE / 3
    rng = np.random.default_rng(seed)
    for g, (mu, s) in enumerate(params):
        z = np.concatenate([stats.normal_scores(out[:, od.group == g], base.mean[-1, od.group == g],
                                         base.variance[-1, od.group == g], step, rng).ravel()
                            for out, od, base in zip(outputs, passes, bases)])
        name = f"sampler: output, data {group_label(mu, s)}"
        if not np.all(np.isfinite(z)):
            results.append(Result(name, "fail", math.inf, values=z.size,
                                  detail=f"{int(np.sum(~np.isfinite(z)))} of {z.size} values are NaN or inf"))
            continue
        verdicts, failed = [], []
        for test in (lambda: stats.assert_standard_normal_mean(z.sum(), z.size, false_fail_rate=rate, power=POWER,
                                                               name="mean of (x - m) / sqrt(V)"),
                     lambda: stats.assert_standard_normal_variance((z ** 2).sum(), z.size, false_fail_rate=rate,
                                                                   power=POWER, name="variance of (x - m) / sqrt(V)"),
                     lambda: stats.assert_cdf(z, norm.cdf, false_fail_rate=rate, power=POWER,
                                              name="distribution of (x - m) / sqrt(V) (DKW)")):
            try:
                verdicts.append(test())
            except AssertionError as exc:
                failed.append(str(exc))
        worst = max(verdicts, key=lambda v: v.statistic / v.threshold) if verdicts else None
        detail = "; ".join(failed or [str(v) for v in verdicts])
        if failed:
            detail += "; " + diagnosis(outputs, passes, bases, processes, step) + rounding_hint(outputs, step)
        results.append(Result(name, "fail" if failed else "pass",
                              worst.statistic if worst and not failed else math.nan,
                              worst.threshold if worst and not failed else math.nan, detail, values=int(z.size)))
    return results


def state_result(runs, passes, bases, n: int) -> Result:
    """The state at each network call against the declared process's, per data group: mean and
    variance of the standardised state (Bonferroni over calls and groups)."""
    name = "sampler: the state the loop hands the network at each call"
    params = passes[0].params
    steps = bases[0].mean.shape[0] - 1
    tests = 2 * len(params) * steps
    rate = RATE / tests
    thr_mean = norm.isf(rate / 2)
    failing, first, used, skipped = [], None, [], 0
    for i in range(min(steps, len(runs[0][1]))):
        calls = [run[1][i] for run in runs]
        if any(c.rows != n for c in calls):
            skipped += 1
            continue
        t = int(calls[0].t[0])
        used.append(t)
        for g, (mu, s) in enumerate(params):
            sum_z = sum_z2 = count = 0.0
            for c, od, base in zip(calls, passes, bases):
                sel = od.group == g
                m, v = base.mean[i, sel], base.variance[i, sel]
                sx, sx2 = c.sum_x[sel], c.sum_x2[sel]
                sum_z += float(np.sum((sx - n * m) / np.sqrt(v)))
                sum_z2 += float(np.sum((sx2 - 2 * m * sx + n * m ** 2) / v))
                count += n * int(sel.sum())
            if count == 0:
                continue
            zbar = abs(sum_z) / count
            lo, hi = stats.chi2_bounds(int(count), rate)
            bad_mean, bad_var = zbar > thr_mean / math.sqrt(count), not lo <= sum_z2 <= hi
            if bad_mean or bad_var:
                failing.append(t)
                if first is None:
                    what = (f"mean of (x - m) / sqrt(V) {sum_z / count:+.4g} beyond +-{thr_mean / math.sqrt(count):.3g}"
                            if bad_mean else f"variance ratio {sum_z2 / count:.5g} outside [{lo / count:.5g}, "
                                             f"{hi / count:.5g}]")
                    first = f"first departs at call {i + 1} (t = {t}), data {group_label(mu, s)}: {what}"
    note = f"; {skipped} calls with other than n = {n} rows not tested" if skipped else ""
    if failing:
        ts = sorted(set(failing))
        return Result(name, "fail", values=len(used), timesteps=sorted(set(used)), failed_timesteps=ts,
                      detail=f"{first}; departs at {len(ts)} of {len(used)} calls (false-fail rate {RATE:g} over "
                             f"{tests} tests){note}")
    return Result(name, "pass", values=len(used), timesteps=sorted(set(used)),
                  detail=f"{len(used)} calls x {len(params)} data groups, mean and variance each, within their "
                         f"bounds (false-fail rate {RATE:g} over {tests} tests){note}")


def rounding_hint(outputs, step: float) -> str:
    """A hint when an output not declared rounded takes few distinct values (a quarter or fewer)."""
    values = np.concatenate([out.ravel() for out in outputs])
    distinct = np.unique(values)
    if step or distinct.size > values.size // 4:
        return ""
    return (f"; the output takes only {distinct.size} distinct values in {values.size}: if the loop rounds it "
            f"(uint8 images), declare output_step, the width of its bins (README)")


def log_likelihood(x: np.ndarray, mean: np.ndarray, variance: np.ndarray, step: float = 0.0) -> float:
    """sum log N(x; m, V) (nats); with step > 0 the log-probability of x's bins
    [x - step/2, x + step/2), from the tail each bin lies in."""
    mean, variance = np.broadcast_to(mean, x.shape), np.broadcast_to(variance, x.shape)
    if step == 0:
        return float(np.sum(reference.normal_log_density(x, mean, variance)))
    sd = np.sqrt(variance)
    return float(np.sum(log_normal_mass((x - step / 2 - mean) / sd, (x + step / 2 - mean) / sd)))


def diagnosis(outputs, passes, bases, processes, step: float = 0.0) -> str:
    """The nearby process under which the outputs are most likely, per sample, against the declared."""
    n = outputs[0].shape[0]

    def loglik(k_process) -> float:
        return sum(log_likelihood(out, proc.mean[-1], proc.variance[-1], step)
                   for out, proc in zip(outputs, k_process)) / n
    base = loglik(bases)
    scored = sorted(((loglik([procs[i] for procs in processes]) - base, processes[0][i].name)
                     for i in range(len(processes[0]))), reverse=True)
    if not scored or scored[0][0] <= 0:
        return "none of the nearby processes fits the output better than the declared one"
    gain, name = scored[0]
    runner = f"; next: {scored[1][1]} ({scored[1][0]:+.4g})" if len(scored) > 1 else ""
    return (f"most likely nearby process: {name} (log-likelihood {gain:+.4g} nats per sample above the declared "
            f"process){runner}")


def check_sampler(target: LoopTarget, seed: int = SEED) -> tuple[list[Result], dict]:
    """The sampler's results (module docstring) and facts for the report (n, the nearby processes)."""
    params = groups(target.clip_sample)
    passes = OracleData.passes(target.d, params)
    facts: dict = {"data": [group_label(*p) for p in params], "passes": len(passes)}
    timesteps_name = "sampler: the timesteps the loop asks for"
    try:
        _, pilot_calls = run_loop(target, passes[0], PILOT_N, seed)
    except TargetRaised as exc:
        return [Result(timesteps_name, "error", detail=str(exc), traceback=exc.traceback)], facts
    except WrongOutput as exc:
        return [Result(timesteps_name, "fail", detail=str(exc))], facts
    tau, problems = asked(pilot_calls)
    timesteps = check_timesteps(target, tau, problems)
    expected = np.arange(target.T, 0, -1) if target.process == "ddpm" else tau
    if target.process == "ddim" and timesteps.status == "fail":
        return [timesteps], facts
    bases = [nearby.declared(target, od, expected) for od in passes]
    processes = [nearby.nearby(target, od, expected) for od in passes]
    needed = nearby.n_for_power(bases, processes, passes, RATE / 3, POWER)
    cap = max(N_MIN, ELEMENT_BUDGET // target.d)
    finite = {k: v for k, v in needed.items() if v <= cap}
    n = int(min(cap, max([N_MIN, *finite.values()])))
    facts.update(n=n, needed=needed, cap=cap, expected_steps=int(expected.size))
    runs = []
    try:
        for k, od in enumerate(passes):
            runs.append(run_loop(target, od, n, seed + 1 + k))
    except TargetRaised as exc:
        return [timesteps, Result("sampler: output", "error", detail=str(exc), traceback=exc.traceback)], facts
    except WrongOutput as exc:
        return [timesteps, Result("sampler: output", "fail", detail=str(exc))], facts
    for out_calls in runs:
        again, _ = asked(out_calls[1])
        if not np.array_equal(again, tau):
            timesteps = Result(timesteps.name, "fail", values=timesteps.values, timesteps=timesteps.timesteps,
                               detail=f"{timesteps.detail}; a run of {n} samples asks other timesteps "
                                      f"({again.size} calls: {_sequence(again)})")
    outputs = [out for out, _ in runs]
    results = [timesteps] + output_results(outputs, passes, bases, processes, n, target.output_step, seed)
    results.append(state_result(runs, passes, bases, n))
    return results, facts


def conventions(target: LoopTarget, facts: dict) -> list[Result]:
    """Lines on the oracle network, the data, the process and n, for the report."""
    lines = [Result("convention: the network", "convention",
                    detail=f"the exact optimum ({target.prediction_type}) for Gaussian data "
                           f"{', '.join(facts['data'])} per dimension, called with t as the code's "
                           f"'{target.timesteps}'")]
    proc = (f"DDPM, {target.variance} variance, t = {target.T}..1" if target.process == "ddpm" else
            f"DDIM, eta = {target.eta:g}, over the timesteps the loop asks, the last step to "
            f"abar = {target.final_alpha_bar:.6g}")
    lines.append(Result("convention: process", "convention", detail=proc + (
        "; x0_hat clipping declared: the data keep clipping from ever acting" if target.clip_sample else "") + (
        f"; the output rounded to bins of width {target.output_step:.6g}: standardised by the randomised "
        "probability integral transform over each bin" if target.output_step else "")))
    if "n" in facts:
        needed = facts["needed"]
        hard = [(v, k) for k, v in needed.items() if math.isfinite(v) and v <= facts["cap"]]
        beyond = sorted(k for k, v in needed.items() if v > facts["cap"])
        text = f"n = {facts['n']} samples per data set ({facts['passes']} set{'s' * (facts['passes'] > 1)})"
        if hard:
            v, k = max(hard)
            text += (f": each nearby process is detected with power {POWER:g} (the hardest, {k}, needs "
                     f"n = {v})")
        if beyond:
            text += (f"; beyond the budget of n = {facts['cap']} (not told apart with power {POWER:g}): "
                     f"{', '.join(beyond)}")
        lines.append(Result("convention: samples", "convention", detail=text))
    return lines


__all__ = ["check_sampler", "conventions", "one_line", "run_loop"]
