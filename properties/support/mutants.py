"""Deliberately broken variants of `reference`, for checking that the property suite has power.

Each `Mutant` is one realistic bug of the kind diffusion libraries have shipped. `mutant.active()`
is a context manager that swaps the bug into the imported `reference` package (every module
that holds the original object sees the broken one) and restores it on exit. Used by
properties/test_self_check.py, which asserts that each mutant is caught by a named property.
"""

from __future__ import annotations

import contextlib
import math
import sys
import weakref
from dataclasses import dataclass
from typing import Callable
from unittest import mock

import numpy as np

from reference import elbo, forward, gaussian, parameterisations, posterior, schedules
from reference.schedules import Schedule


@dataclass(frozen=True)
class Mutant:
    """A named bug: `patch()` returns a context manager that installs it."""

    name: str
    description: str
    patch: Callable[[], contextlib.AbstractContextManager]

    def active(self) -> contextlib.AbstractContextManager:
        return self.patch()


def _holders(original) -> list[tuple[object, str]]:
    """(module, attribute) pairs in `reference` that hold `original`."""
    found = []
    for name, module in list(sys.modules.items()):
        if name == "reference" or name.startswith("reference."):
            for attr, value in vars(module).items():
                if value is original:
                    found.append((module, attr))
    return found


@contextlib.contextmanager
def _replace(original, replacement):
    """Replace a function (or constant) everywhere `reference` refers to it by name."""
    with contextlib.ExitStack() as stack:
        for module, attr in _holders(original):
            stack.enter_context(mock.patch.object(module, attr, replacement))
        yield


def _recompute_posterior(tab: dict) -> None:
    """Rebuild the tables derived from abar_t and abar_{t-1} after a mutation of those."""
    om, omp, b = tab["one_minus_alpha_bar"], tab["one_minus_alpha_bar_prev"], tab["beta"]
    tab["posterior_coef_x0"] = np.sqrt(tab["alpha_bar_prev"]) * b / om
    tab["posterior_coef_xt"] = np.sqrt(tab["alpha"]) * omp / om
    tab["beta_tilde"] = omp / om * b
    with np.errstate(divide="ignore"):
        log_bt = np.log(tab["beta_tilde"])
    log_bt[0] = log_bt[1] if log_bt.size > 1 else np.log(b[0])
    tab["log_beta_tilde_clipped"] = log_bt


#: the Schedule accessors of its tables (each `accessor(t=None)`: the whole table, or its values at t)
TABLES = ("beta", "log_beta", "alpha", "log_alpha", "log_alpha_bar", "alpha_bar", "one_minus_alpha_bar",
          "log_one_minus_alpha_bar", "alpha_bar_prev", "one_minus_alpha_bar_prev", "posterior_coef_x0",
          "posterior_coef_xt", "beta_tilde", "log_beta_tilde_clipped")


@contextlib.contextmanager
def _tables(mutate: Callable[[dict], None]):
    """While active, every Schedule's table accessors return its tables as `mutate` changed them
    (each schedule's tables mutated once, from the intact accessors)."""
    intact = {name: getattr(Schedule, name) for name in TABLES}
    mutated: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def table(schedule: Schedule, name: str) -> np.ndarray:
        if schedule not in mutated:
            tab = {n: intact[n](schedule) for n in TABLES}
            mutate(tab)
            mutated[schedule] = tab
        return mutated[schedule][name]

    def accessor(name: str):
        def at(self, t=None):
            values = table(self, name)
            return values.copy() if t is None else values[self.index_from_t(t)]
        return at

    with mock.patch.multiple(Schedule, **{name: accessor(name) for name in TABLES}):
        yield


def _abar_prev_not_shifted(tab):
    tab["alpha_bar_prev"] = tab["alpha_bar"].copy()          # alphas_cumprod_prev = alphas_cumprod
    tab["one_minus_alpha_bar_prev"] = tab["one_minus_alpha_bar"].copy()
    _recompute_posterior(tab)


def _coef_x0_missing_sqrt(tab):
    tab["posterior_coef_x0"] = tab["alpha_bar_prev"] * tab["beta"] / tab["one_minus_alpha_bar"]


def _log_variance_not_clipped(tab):
    tab["log_beta_tilde_clipped"] = np.log(tab["beta_tilde"] + 1e-20)


def _posterior_variance_is_beta(tab):
    tab["beta_tilde"] = tab["beta"].copy()
    tab["log_beta_tilde_clipped"] = np.log(tab["beta"])


def _abar_float32(tab):
    abar = tab["alpha_bar"].astype(np.float32).astype(np.float64)
    prev = np.concatenate([[1.0], abar[:-1]])
    tab["alpha_bar"], tab["alpha_bar_prev"] = abar, prev
    tab["one_minus_alpha_bar"], tab["one_minus_alpha_bar_prev"] = 1.0 - abar, 1.0 - prev
    with np.errstate(divide="ignore"):
        tab["log_alpha_bar"] = np.log(abar)
        tab["log_one_minus_alpha_bar"] = np.log(1.0 - abar)
    _recompute_posterior(tab)


def _q_sample_variance_as_std(schedule, x0, t, eps):
    x0, eps = np.asarray(x0, float), np.asarray(eps, float)
    abar = schedules.coef_at(schedule, "alpha_bar", t, x0.shape, "x0")
    return np.sqrt(abar) * x0 + (1 - abar) * eps             # (1 - abar) where sqrt(1 - abar) belongs


def _kl_swapped(m1, v1, m2, v2):
    return _ORIGINAL["kl"](m2, v2, m1, v1)


def _kl_no_half(m1, v1, m2, v2):
    return 2.0 * _ORIGINAL["kl"](m1, v1, m2, v2)


def _log_density_without_2pi(x, mean, variance):
    return -0.5 * (np.log(variance) + (x - mean) ** 2 / variance)


def _tanh_cdf_mass(a, b, a_lo=0.0, b_lo=0.0):
    """improved-diffusion's approx_standard_normal_cdf: 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    def cdf(x):
        with np.errstate(invalid="ignore", over="ignore"):
            y = 0.5 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        return np.where(np.isneginf(x), 0.0, np.where(np.isposinf(x), 1.0, y))
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(cdf(b) - cdf(a), 1e-12))


def _nats_as_bits(nats, d):
    return np.asarray(nats, float) / d                         # forgets the ln 2


def _v_sign(schedule, x0, t, eps):
    x0, eps = np.asarray(x0, float), np.asarray(eps, float)
    sa = np.sqrt(schedules.coef_at(schedule, "alpha_bar", t, x0.shape, "x0"))
    s1 = np.sqrt(schedules.coef_at(schedule, "one_minus_alpha_bar", t, x0.shape, "x0"))
    return sa * eps + s1 * x0


def _score_sign(schedule, eps, t):
    eps = np.asarray(eps, float)
    return eps / np.sqrt(schedules.coef_at(schedule, "one_minus_alpha_bar", t, eps.shape, "eps"))


def _mu_eps_abar(schedule, xt, t, eps):
    xt, eps = np.asarray(xt, float), np.asarray(eps, float)
    abar = schedules.coef_at(schedule, "alpha_bar", t, xt.shape, "xt")       # sqrt(abar_t), not sqrt(alpha_t)
    beta = schedules.coef_at(schedule, "beta", t, xt.shape, "xt")
    one_minus = schedules.coef_at(schedule, "one_minus_alpha_bar", t, xt.shape, "xt")
    return (xt - beta / np.sqrt(one_minus) * eps) / np.sqrt(abar)


def _prior_term_wrong_t(schedule, x0):
    x0 = np.asarray(x0, float)
    abar = schedule.alpha_bar(max(schedule.T - 1, 1))                       # abar_{T-1}
    return 0.5 * (abar * np.sum(x0 ** 2, axis=-1) + x0.shape[-1] * gaussian.u_minus_log1p(-abar))


def _learned_range_in_variance_space(schedule, t, kind, v=None):
    if kind != "learned_range":
        return _ORIGINAL["model_variance"](schedule, t, kind, v)
    v = np.asarray(v, float)
    var = (v * schedules.coef_at(schedule, "beta", t, v.shape, "v")
           + (1 - v) * np.exp(schedules.coef_at(schedule, "log_beta_tilde_clipped", t, v.shape, "v")))
    return var, np.log(var)


def _cosine_without_offset(T, *, s=0.008, max_beta=0.999):
    return _ORIGINAL["cosine"](T, s=0.0, max_beta=max_beta)


def _linear_off_by_one(T, *, beta_start=1e-4, beta_end=0.02, scale_with_T=False):
    scale = 1000.0 / T if scale_with_T else 1.0
    return Schedule(np.linspace(scale * beta_start, scale * beta_end, T + 1)[1:], name="linear")


def _zero_terminal_snr_shrunk(schedule):
    betas = _ORIGINAL["zero_terminal_snr"](schedule).beta()
    betas[:-1] *= 0.987
    return Schedule(betas, name=f"zero_terminal_snr({schedule.name})")


def _xs_mean_without_sqrt(schedule, xs, s, t):
    log_ratio = schedules.expand_to(schedule.log_alpha_bar_ratio(s, t), np.shape(xs), x_name="xs")
    return gaussian.DiagonalNormal(np.exp(log_ratio) * np.asarray(xs, float), -np.expm1(log_ratio),
                                   schedules.log1mexp(log_ratio))


_ORIGINAL = {"kl": gaussian.kl_normal_unchecked, "model_variance": elbo.model_variance, "cosine": schedules.cosine,
             "zero_terminal_snr": schedules.zero_terminal_snr}


MUTANTS: list[Mutant] = [
    Mutant("abar_prev_not_shifted", "abar_{t-1} taken as abar_t (alphas_cumprod_prev = alphas_cumprod)",
           lambda: _tables(_abar_prev_not_shifted)),
    Mutant("posterior_coef_missing_sqrt", "x_0 weight of mu_tilde uses abar_{t-1} instead of its square root",
           lambda: _tables(_coef_x0_missing_sqrt)),
    Mutant("q_sample_variance_as_std", "q_sample scales eps by 1 - abar_t instead of sqrt(1 - abar_t)",
           lambda: _replace(forward.q_sample, _q_sample_variance_as_std)),
    Mutant("kl_arguments_swapped", "KL(p_theta || q) computed instead of KL(q || p_theta)",
           lambda: _replace(gaussian.kl_normal_unchecked, _kl_swapped)),
    Mutant("kl_missing_half", "Gaussian KL without its factor 1/2",
           lambda: _replace(gaussian.kl_normal_unchecked, _kl_no_half)),
    Mutant("nats_reported_as_bits", "bits per dimension = nats / d, the ln 2 forgotten",
           lambda: _replace(elbo.nats_to_bits_per_dim, _nats_as_bits)),
    Mutant("decoder_bin_width_doubled", "discretised decoder bins of half-width 2/255 (the full width)",
           lambda: _replace(gaussian.BIN_EDGE_DENOMINATOR, 127.5)),
    Mutant("log_variance_not_clipped", "log beta_tilde_1 taken as log(0 + 1e-20) instead of clipped to beta_tilde_2",
           lambda: _tables(_log_variance_not_clipped)),
    Mutant("posterior_variance_is_beta", "beta_tilde_t replaced by beta_t", lambda: _tables(_posterior_variance_is_beta)),
    Mutant("abar_float32", "abar_t rounded through float32, 1 - abar_t formed by subtraction",
           lambda: _tables(_abar_float32)),
    Mutant("log_density_without_2pi", "Gaussian log-density without the log(2 pi) term",
           lambda: _replace(gaussian.normal_log_density_unchecked, _log_density_without_2pi)),
    Mutant("decoder_tanh_cdf", "discretised decoder with the tanh approximation of the normal CDF",
           lambda: _replace(gaussian.log_normal_mass, _tanh_cdf_mass)),
    Mutant("v_sign", "v = sqrt(abar) eps + sqrt(1 - abar) x_0 (sign of the x_0 term)",
           lambda: _replace(parameterisations.v_from_x0_eps, _v_sign)),
    Mutant("score_sign", "score = +eps / sqrt(1 - abar_t)", lambda: _replace(parameterisations.score_from_eps, _score_sign)),
    Mutant("noise_form_divides_by_sqrt_abar", "mu_theta divides by sqrt(abar_t) instead of sqrt(alpha_t)",
           lambda: _replace(posterior.posterior_mean_from_eps, _mu_eps_abar)),
    Mutant("prior_term_wrong_t", "L_T evaluated with abar_{T-1}", lambda: _replace(elbo.prior_term, _prior_term_wrong_t)),
    Mutant("learned_range_in_variance_space", "learned range interpolates variances, not log-variances",
           lambda: _replace(elbo.model_variance, _learned_range_in_variance_space)),
    Mutant("cosine_without_offset", "cosine schedule with s = 0 whatever s is asked for",
           lambda: _replace(schedules.cosine, _cosine_without_offset)),
    Mutant("linear_off_by_one", "linear betas from linspace(start, end, T + 1)[1:]",
           lambda: _replace(schedules.linear, _linear_off_by_one)),
    Mutant("zero_terminal_snr_shrunk", "zero-terminal-SNR betas 1.3 % too small (all but beta_T = 1)",
           lambda: _replace(schedules.zero_terminal_snr, _zero_terminal_snr_shrunk)),
    Mutant("xs_mean_without_sqrt", "q(x_t | x_s) mean scaled by abar_t / abar_s instead of its square root",
           lambda: _replace(forward.q_xt_given_xs, _xs_mean_without_sqrt)),
]

assert len({m.name for m in MUTANTS}) == len(MUTANTS)
