"""The declared sampling process and the nearby ones a loop's bug would turn it into.

Each is the exact law of the loop's states and output run with the oracle network
(`reference.GaussianData.step_coefficients` and `chain_states`, docs/math.md §11): the declared
process, and the ones that differ from it by one of the bugs found in real from-scratch code:
the other variance, a loop that stops before t = 1, noise on the last step or none at t = 2,
a network called with t - 1 or t + 1, tables whose abar carries an extra factor (1 - beta_0) (in
the posterior-mean form of the step, and in Ho et al.'s ancestral form, where alpha_t stays),
and for DDIM the other eta, a step to t - T // n, the last step to abar_1 instead of 1 (or the
reverse). `n_for_power` turns their distance from the declared output into a sample size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from .. import stats
from .oracle import OracleData


@dataclass(frozen=True)
class Process:
    """A process's states: mean and variance (S + 1, d) of the state before each step, the last
    row the output."""

    name: str
    mean: np.ndarray
    variance: np.ndarray


def _states(data, target, tau, coefficients=None, **changes) -> tuple[np.ndarray, np.ndarray]:
    kw = dict(process=target.process, variance=target.variance, eta=target.eta,
              final_alpha_bar=target.final_alpha_bar, prediction_type=target.prediction_type)
    kw.update(changes)
    A, B, sigma = coefficients if coefficients is not None else data.step_coefficients(target.schedule, tau, **kw)
    states = data.chain_states(A, B, sigma)
    return states.mean, states.variance


def extra_beta(schedule: reference.Schedule) -> float:
    """beta_0 of tables built from T + 1 betas (index 0 never a step): the schedule extrapolated one
    step back, 2 beta_1 - beta_2 (a linear schedule's linspace over T + 1 points), or beta_1 when
    that is not in (0, 1)."""
    b = schedule.beta()
    back = 2 * b[0] - b[1] if b.size > 1 else b[0]
    return float(back if 0 < back < 1 else b[0])


def extra_factor(schedule: reference.Schedule) -> reference.Schedule:
    """The schedule whose abar_t = (1 - beta_0) abar_t of `schedule` (`extra_beta`): one factor of a
    beta that is never a step."""
    betas = schedule.beta().copy()
    betas[0] = 1 - (1 - extra_beta(schedule)) * (1 - betas[0])
    return reference.Schedule(betas, name=f"{schedule.name} with an extra factor (1 - beta_0)")


def declared(target, od: OracleData, tau: np.ndarray) -> Process:
    m, v = _states(od.data, target, tau)
    return Process("declared", m, v)


def nearby(target, od: OracleData, tau: np.ndarray) -> list[Process]:
    """The nearby processes over the sequence `tau` (paper t, strictly decreasing)."""
    data, T = od.data, target.T
    out = []
    A, B, sigma = data.step_coefficients(target.schedule, tau, process=target.process, variance=target.variance,
                                         eta=target.eta, final_alpha_bar=target.final_alpha_bar,
                                         prediction_type=target.prediction_type)

    def add(name, m_v):
        out.append(Process(name, *m_v))

    if target.process == "ddpm":
        other = Variance.FIXED_LARGE if target.variance == Variance.FIXED_SMALL else Variance.FIXED_SMALL
        add(f"the {other} variance", _states(data, target, tau, variance=other))
        if tau.size >= 2:
            m, v = _states(data, target, tau)
            add(f"no step from t = {tau[-1]} (the output is x_{tau[-1]})", (m[:-1], v[:-1]))
            quiet = sigma.copy()
            quiet[-2] = 0
            add(f"no noise added at t = {tau[-2]}", _states(data, target, tau, (A, B, quiet)))
            m, v = _states(data, target, tau, (A, B, quiet))
            add(f"no noise at t = {tau[-2]} and no step from t = {tau[-1]}", (m[:-1], v[:-1]))
        noisy = sigma.copy()
        noisy[-1] = math.sqrt(float(target.schedule.beta(int(tau[-1]))))
        add(f"noise on the last step (sigma^2 = beta_{tau[-1]})", _states(data, target, tau, (A, B, noisy)))
    else:
        other = 1.0 if target.eta == 0 else 0.0
        add(f"eta = {other:g}", _states(data, target, tau, eta=other))
        naive = np.maximum(tau - T // tau.size, 0)
        if np.any(naive != np.concatenate([tau[1:], [0]])):
            add(f"steps to t - T // n = t - {T // tau.size}", _states(data, target, tau, next_tau=naive))
        final = float(target.schedule.alpha_bar(1)) if target.final_alpha_bar == 1.0 else 1.0
        add("the last step to abar_1" if final < 1 else "the last step to abar_0 = 1",
            _states(data, target, tau, final_alpha_bar=final))
        if tau.size >= 2:
            m, v = _states(data, target, tau)
            add(f"no last step (the output is x_{tau[-1]})", (m[:-1], v[:-1]))
    for shift in (-1, 1):
        model_tau = np.clip(tau + shift, 1, T)
        if np.any(model_tau != tau):
            add(f"the network called with t {'-' if shift < 0 else '+'} 1",
                _states(data, target, tau, model_tau=model_tau))
    tables = extra_factor(target.schedule)
    final = {} if target.final_alpha_bar == 1.0 else {"final_alpha_bar": float(tables.alpha_bar(1))}
    add("abar with an extra factor (1 - beta_0)", _states(data, target, tau, step_schedule=tables, **final))
    if target.process == "ddpm" and target.prediction_type == Prediction.EPSILON:
        add("abar with an extra factor (1 - beta_0) in the ancestral step",
            _states(data, target, tau, ancestral_extra_factor(data, target, tau)))
    return out


def ancestral_extra_factor(data: reference.GaussianData, target, tau: np.ndarray):
    """(A, B, sigma) of Ho et al.'s ancestral step x_prev = (x - beta_t / sqrt(1 - abar'_t) eps_hat) /
    sqrt(alpha_t) + sigma_t z with abar'_t = (1 - beta_0) abar_t (tables from T + 1 betas) and
    alpha_t, beta_t intact, eps_hat the optimal prediction at t, no noise at t = 1. Unlike the
    posterior-mean form, its step from t = 1 does not reach x0_hat when abar' != abar."""
    schedule = target.schedule
    slope, intercept = data.prediction(schedule, tau, Prediction.EPSILON)
    beta, alpha = schedule.beta(tau)[:, None], schedule.alpha(tau)[:, None]
    tables = extra_factor(schedule)
    k = beta / np.sqrt(tables.one_minus_alpha_bar(tau))[:, None]
    A, B = (1 - k * slope) / np.sqrt(alpha), -k * intercept / np.sqrt(alpha)
    var = (beta if target.variance == Variance.FIXED_LARGE
           else tables.beta_tilde(tau)[:, None] / tables.beta(tau)[:, None] * beta)
    sigma = np.where(tau[:, None] > 1, np.sqrt(var), 0.0)
    return A, B, np.broadcast_to(sigma, A.shape).copy()


def _draws_needed(delta: float, rho: float, rate: float, power: float) -> float:
    """Standard-normal draws for the mean test to see a shift delta, or the variance test a ratio
    1 + rho, with probability `power` (the fewer of the two; inf when both are 0)."""
    need = math.inf
    if abs(delta) > 1e-12:
        need = stats.min_samples_mean(abs(delta), 1.0, rate, power)
    if abs(rho) > 1e-12:
        need = min(need, stats.min_samples_variance(abs(rho), rate, power))
    return need


def n_for_power(base: list[Process], alternatives: list[list[Process]], passes: list[OracleData], rate: float,
                power: float) -> dict[str, float]:
    """For each nearby process, the n at which the output tests of some data group (at `rate` each)
    tell it from the declared process with probability `power`. `base[k]` and `alternatives[k]` are
    the processes under data set `passes[k]`; a group's draws per sample count its dimensions over
    all passes."""
    params = passes[0].params
    counts = np.zeros(len(params))
    for od in passes:
        counts += np.bincount(od.group, minlength=len(params))
    needed: dict[str, float] = {}
    for i, alt in enumerate(alternatives[0]):
        best = math.inf
        for g in range(len(params)):
            k = next(k for k, od in enumerate(passes) if np.any(od.group == g))
            j = int(np.flatnonzero(passes[k].group == g)[0])
            m, v = base[k].mean[-1, j], base[k].variance[-1, j]
            am, av = alternatives[k][i].mean[-1, j], alternatives[k][i].variance[-1, j]
            delta = (am - m) / math.sqrt(v)
            rho = (av + (am - m) ** 2) / v - 1
            best = min(best, _draws_needed(delta, rho, rate, power) / counts[g])
        needed[alt.name] = math.ceil(best) if math.isfinite(best) else math.inf
    return needed
