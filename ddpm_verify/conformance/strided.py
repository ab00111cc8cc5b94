"""Checks of samplers with fewer steps than training: the timesteps they visit, the respaced DDPM
step, the DDIM step with eta and its inversion, the respaced betas and the timestep the network
is given (docs/math.md §10).

For each step count n the target serves (`step_counts`), the sampler's own sequence tau (its
`timesteps(n)`, the valid part of it: strictly decreasing in 1..T) defines the process checked:
the DDPM over the kept steps is `reference.respace`'s chain, so the DDPM step from t = tau_i is
checked with that chain's index j in place of t (`expected_model` on the chain, budgets with the
training t); the DDIM step from t to s = tau_{i+1} with `reference.ddim_coefficients`. Results of
several n are parts of one result, named ``n=<n>``; timesteps in reports are training timesteps.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.special import ndtr

import reference
from reference.conventions import Prediction

from .. import SEED
from ..results import Result, compare, from_verdict, skip, worst
from .budgets import alpha_bar_tolerance, beta_tolerance, sqrt_errors, threshold_with_budget
from .inputs import rows_for, x0_defined
from .model import expected_model, model_outputs, processes_x0

# -- the sequences ---------------------------------------------------------------------------------------

NO_SEQUENCE = "no valid sequence of timesteps to step along (the timesteps check says why)"


def rule_sequence(target, n: int) -> np.ndarray | str | None:
    """The paper timesteps the declared rule gives for n steps (None for custom sequences), or why
    the rule gives none (a `steps_offset` pushing the first timestep past T)."""
    T, rule = target.T, target.timestep_rule
    if rule in ("leading", "linspace", "trailing"):
        try:
            return reference.diffusers_timesteps(T, n, rule, target.steps_offset)
        except ValueError as exc:
            return f"the {rule} rule gives no sequence within 1..{T}: {exc}"
    if rule == "space_timesteps":
        return reference.space_timesteps(T, target.section_counts)[::-1]
    if rule == "lucidrains":
        return reference.lucidrains_timesteps(T, n)
    return None


def rounding_slack(target, n: int) -> np.ndarray:
    """Per position of the rule's sequence, how far a float evaluation of the rule may move it:
    1 where the exact value sits on a rounding boundary (a half, for diffusers' round of linspace
    and of arange; an integer, for lucidrains' truncation of a float32 linspace), else 0."""
    T, rule = target.T, target.timestep_rule
    k = range(n - 1, -1, -1)
    if rule == "linspace" and n > 1:
        return np.array([Fraction(i * (T - 1), n - 1).denominator == 2 for i in k], dtype=int)
    if rule == "trailing":
        return np.array([Fraction(T * (i + 1), n).denominator == 2 for i in k], dtype=int)
    if rule == "lucidrains":
        return np.array([(i * T) % n == 0 for i in range(n, 0, -1)], dtype=int)
    return np.zeros(n, dtype=int)


def valid_part(tau: np.ndarray, T: int) -> np.ndarray:
    """The longest prefix of tau that is strictly decreasing within 1..T."""
    ok = (tau >= 1) & (tau <= T)
    ok[1:] &= np.diff(tau) < 0
    bad = np.flatnonzero(~ok)
    return tau[:bad[0]] if bad.size else tau


def chains(target):
    """{n: (tau, kept, respaced chain)} over the declared step counts, tau the valid part of the
    target's own sequence (`check_timesteps` reports the rest)."""
    out = {}
    for n in target.step_counts:
        tau = valid_part(target.timesteps(n), target.T)
        if tau.size:
            kept = tau[::-1]
            out[n] = (tau, kept, reference.respace(target.schedule, kept))
    return out


def positions(tau: np.ndarray) -> np.ndarray:
    """Battery positions in a sequence: the first two steps, the middle one, the last two."""
    return np.unique(np.clip([0, 1, tau.size // 2, tau.size - 2, tau.size - 1], 0, tau.size - 1))


def check_timesteps(target) -> Result:
    """timesteps(n) for each n: a 1-D sequence of n timesteps, strictly decreasing in 1..T (custom: any
    length), equal to the declared rule's (`reference.diffusers_timesteps`, `space_timesteps`,
    `lucidrains_timesteps`) except by one step where a float evaluation of the rule may round the
    other way (`rounding_slack`)."""
    parts = []
    for n in target.step_counts:
        got = target.timesteps(n)
        problems = []
        valid = valid_part(got, target.T)
        if valid.size < got.size:
            i = valid.size
            after = valid[-1] if i else "the start"
            problems.append(f"entry {i} of {got.size}, {got[i]}, is not a timestep after {after} (strictly "
                            f"decreasing within 1..{target.T}, paper t = index + 1)")
        want = rule_sequence(target, n)
        if isinstance(want, str):
            problems.append(want)
            want = None
        if want is not None and target.timestep_rule != "space_timesteps" and got.size != n:
            problems.append(f"{got.size} timesteps for n = {n}")
        if want is not None and got.size == want.size:
            off = np.abs(got - want) > rounding_slack(target, want.size)
            if off.any():
                i = np.flatnonzero(off)
                problems.append(f"differs from the {target.timestep_rule} rule at {i.size} positions, e.g. "
                                f"{got[i[0]]} where the rule gives {want[i[0]]}")
        elif want is not None:
            problems.append(f"the {target.timestep_rule} rule gives {want.size}")
        part = Result(f"n={n}", "fail" if problems else "pass", values=int(got.size),
                      detail="; ".join(problems) if problems else f"{got.size} timesteps, {got[0]}..{got[-1]}")
        parts.append(part)
    return worst(*parts)


def check_strided_previous_t(target) -> Result:
    """The step from each tau_i goes to tau_{i+1}, and the last to 0 (x_0): whatever the spacing,
    never to t - T // n."""
    parts = []
    for n, (tau, _, _) in chains(target).items():
        want = np.concatenate([tau[1:], [0]])
        got = np.array([target.strided_previous_t(n, int(t)) for t in tau], dtype=np.float64)
        parts.append(compare(got, want, 0.5, tau, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


def check_model_timestep(target) -> Result:
    """The network is called with the training timestep t at the step from t (a respaced chain maps
    its index back through its timestep_map), never with the index."""
    parts = []
    for n, (tau, _, _) in chains(target).items():
        got = np.array([target.model_timestep(n, int(t)) for t in tau], dtype=np.float64)
        parts.append(compare(got, tau, 0.5, tau, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


def check_respaced_betas(target) -> Result:
    """beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}} (docs/math.md §10). Budget: the ratio of two running products
    in table arithmetic shares their prefix, so it carries (k_j - k_{j-1} + 4) u_t relative (2x margin)
    and the errors of the base betas between them, sum delta beta_i / (1 - beta_i) (`beta_tolerance`);
    plus u_t of beta' for the subtraction and the storage rounding."""
    parts = []
    for n, (_, kept, chain) in chains(target).items():
        got, u_store = target.stored_table("respaced_betas", n)
        prev = np.concatenate([[0], kept[:-1]])
        ut = target.table_roundoff
        beta = chain.beta()
        base = np.concatenate([[0.0], np.cumsum(beta_tolerance(target, target.schedule)
                                                / np.maximum(1 - target.schedule.beta(), ut))])
        tol = (2 * (kept - prev + 4) * ut + base[kept] - base[prev]) * (1 - beta) + (ut + u_store) * beta
        parts.append(compare(got, beta, tol, kept, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


# -- the respaced DDPM step ---------------------------------------------------------------------------------

def strided_inputs(target, n, tau, kept, chain, rows: int = 6, seed: int = SEED + 20):
    """Battery rows at each position of `positions(tau)`: (t, j, x_t, model output); for epsilon
    prediction only t with abar_t > 0."""
    rng = np.random.default_rng(seed + n)
    pos = positions(tau)
    t = np.repeat(x0_defined(target, tau[pos]), rows)
    j = np.searchsorted(kept, t) + 1
    xt = rng.standard_normal((t.size, target.d))
    return t, j, xt, model_outputs(target, chain, j, xt, rng)


def check_strided_step(target) -> Result:
    """x_s = mu_tilde'(x0_hat, x_t) + sigma' z at battery positions of each sequence, sigma' of the
    target's variance type on the respaced chain (beta_tilde', beta', or learned between them), no noise
    on the step to x_0; z the step's own noise regenerated. Budgets of `expected_model`."""
    parts, u = [], target.unit_roundoff
    for n, (tau, kept, chain) in chains(target).items():
        t, j, xt, out = strided_inputs(target, n, tau, kept, chain)
        exp = expected_model(target, chain, j, xt, out, clip=processes_x0(target), t_run=t)
        prev, z = target.strided_step(n, out, xt, t, SEED + n)
        noisy = (j > 1)[:, None]
        with np.errstate(invalid="ignore"):
            sd = np.where(noisy, np.exp(0.5 * exp.log_var), 0.0)
            sd_err = np.where(noisy, sd * np.abs(z) * (exp.log_var_tol / 2 + u), 0.0)
        want = exp.mean + sd * z
        parts.append(compare(prev, want, exp.mean_tol + sd_err + 4 * u * np.abs(want), t, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


def check_strided_variance(target) -> Result:
    """The variance of the step from t to s >= 1 (the step to x_0 adds none): beta_tilde', beta', or
    the learned range between log beta_tilde' and log beta' of the respaced chain."""
    parts = []
    for n, (tau, kept, chain) in chains(target).items():
        t, j, xt, out = strided_inputs(target, n, tau, kept, chain)
        exp = expected_model(target, chain, j, xt, out, clip=False, t_run=t)
        got = target.strided_variance(n, out, xt, t)
        keep = j >= 2
        var = np.exp(exp.log_var)
        parts.append(compare(got[keep], var[keep], (var * np.expm1(exp.log_var_tol))[keep], t[keep],
                             part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


def check_strided_step_distribution(target) -> Result:
    """The step's own noise, not regenerated, at the middle of the largest sequence: (x_s - mean) / sigma'
    ~ N(0, 1) over at least 40,000 values (DKW, false-fail rate 1e-6; detects a CDF distance of 0.0136)."""
    all_chains = chains(target)
    usable = [(n, c) for n, c in all_chains.items() if c[0].size >= 3]
    if not usable:
        return skip(f"{target.name}: no sequence of 3 or more steps")
    n, (tau, kept, chain) = max(usable, key=lambda item: item[1][0].size)
    t_mid = tau[tau.size // 2]
    rng = np.random.default_rng(SEED + 21)
    t = np.full(rows_for(40_000, target.d), t_mid)
    j = np.searchsorted(kept, t) + 1
    xt = rng.standard_normal((t.size, target.d))
    out = model_outputs(target, chain, j, xt, rng)
    exp = expected_model(target, chain, j, xt, out, clip=processes_x0(target), t_run=t)
    prev, _ = target.strided_step(n, out, xt, t, SEED + 22)
    z = (prev - exp.mean) / np.exp(0.5 * exp.log_var)
    return from_verdict(lambda: _normal_noise_test(z, f"strided step noise, n={n}, t={t_mid}"), z)


def _normal_noise_test(z, name: str):
    """DKW test that z is N(0, 1) (false-fail rate 1e-6)."""
    from ..stats import assert_cdf
    return assert_cdf(np.ravel(z), ndtr, name=name)


# -- DDIM -------------------------------------------------------------------------------------------------

def _predictions(target, chain, j, t, xt, out, out_err=0.0):
    """(x0_hat, its budget, eps_hat, its budget) at the chain's step j (training timestep t): x0_hat
    from the output, processed as declared (`expected_model` on the chain: a previous_x output is the
    chain's posterior mean); eps_hat = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) with x0 the processed
    x0_hat (``ddim_eps = clipped``) or the unprocessed one. eps_hat's budget: (sqrt(abar_t) dx0 +
    e_a |x0| + e_1 |eps| + 4u (|x_t| + sqrt(abar_t) |x0|)) / sqrt(1 - abar_t) (`sqrt_errors`)."""
    ref, u = target.schedule, target.unit_roundoff
    exp = expected_model(target, chain, j, xt, out, clip=processes_x0(target), out_err=out_err, t_run=t)
    x0_eps = exp.x0 if target.ddim_eps == "clipped" else \
        expected_model(target, chain, j, xt, out, clip=False, out_err=out_err, t_run=t).x0
    sa = np.sqrt(ref.alpha_bar(t)).reshape(-1, 1)
    s1 = np.sqrt(ref.one_minus_alpha_bar(t)).reshape(-1, 1)
    e_a, e_1 = sqrt_errors(target, ref, t)
    eps = (xt - sa * x0_eps) / s1
    eps_tol = (sa * exp.x0_tol + e_a * np.abs(x0_eps) + e_1 * np.abs(eps)
               + 4 * u * (np.abs(xt) + sa * np.abs(x0_eps))) / s1
    return exp.x0, exp.x0_tol, eps, eps_tol


def _final(target) -> float:
    return 1.0 if target.final_alpha_bar == "one" else float(target.schedule.alpha_bar(1))


def _ddim_expected(target, chain, j, t, s, eta: float, xt, out, z, out_err=0.0):
    """(x_s, budget, x0_hat, eps_hat) of the DDIM step from t (the chain's step j) to s: `_predictions`
    and `reference.ddim_coefficients`, x_s = a_x0 x0_hat + a_eps eps_hat + sigma z.

    Coefficient budgets, u_c the larger of the table and compute roundoffs (libraries form 1 - abar
    from tables rounded to the compute dtype) and d_t, d_s the tables' errors (`alpha_bar_tolerance`):
    a_x0 = sqrt(abar_s): d_s / (2 abar_s) + 2u relative; sigma^2 = eta^2 (1 - abar_s)(1 - r) / (1 - abar_t),
    r = abar_t / abar_s: (u_c + d_s) / (1 - abar_s) + (u_c + (d_t + d_s) / abar_s) / (1 - r) + (u_c + d_t) /
    (1 - abar_t) + 4u relative, half of it for sigma; a_eps^2 = 1 - abar_s - sigma^2: u_c + d_s + sigma^2 e
    absolute, so a_eps moves by that over 2 a_eps (its square root where a_eps vanishes); 4u of the result.
    """
    ref, u = target.schedule, target.unit_roundoff
    uc = max(target.table_roundoff, u)
    final = _final(target)
    x0, x0_tol, eps, eps_tol = _predictions(target, chain, j, t, xt, out, out_err)
    a_x0, a_eps, sigma = (np.asarray(c).reshape(-1, 1) for c in
                          reference.ddim_coefficients(ref, t, s, eta, final_alpha_bar=final))
    later = s >= 1
    tables = alpha_bar_tolerance(target, ref)
    d_t = tables[t - 1].reshape(-1, 1)
    d_s = np.where(later, tables[np.maximum(s, 1) - 1], 0.0).reshape(-1, 1)
    ab_s = np.where(later, ref.alpha_bar(np.maximum(s, 1)), final).reshape(-1, 1)
    om_t = ref.one_minus_alpha_bar(t).reshape(-1, 1)
    r = np.exp(ref.log_alpha_bar_ratio(s, t) - np.where(later, 0.0, math.log(final))).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = lambda a: np.where(a > 0, 1 / np.maximum(a, 1e-300), 0.0)      # noqa: E731
        e_ax0 = d_s / (2 * ab_s) + 2 * u
        e_sigma2 = ((uc + d_s) * inv(1 - ab_s) + (uc + (d_t + d_s) / ab_s) * inv(1 - r) + (uc + d_t) * inv(om_t)
                    + 4 * u)
        d_eps2 = uc + d_s + sigma ** 2 * e_sigma2
        d_a_eps = np.where(a_eps > 0, d_eps2 / (2 * np.maximum(a_eps, 1e-300)), np.sqrt(d_eps2))
    want = a_x0 * x0 + a_eps * eps + sigma * z
    tol = (a_x0 * (x0_tol + e_ax0 * np.abs(x0)) + a_eps * eps_tol + d_a_eps * np.abs(eps)
           + sigma * (e_sigma2 / 2) * np.abs(z) + 4 * u * np.abs(want))
    return want, tol, x0, eps


def _abar_used(target, t, s, got, x0, eps) -> str:
    """Evidence for a deterministic DDIM step that failed: per failing t, the abar_s the output
    implies (x_s = sqrt(a) x0_hat + sqrt(1 - a) eps_hat fitted by least squares on that t's rows),
    the timestep whose abar it is, and the abar_s of the next timestep the step should go to."""
    ref, lines = target.schedule, []
    for k in np.unique(t):
        rows = t == k
        basis = np.stack([x0[rows].ravel(), eps[rows].ravel()], axis=1)
        (c_x0, c_eps), *_ = np.linalg.lstsq(basis, got[rows].ravel(), rcond=None)
        a = c_x0 ** 2 / (c_x0 ** 2 + c_eps ** 2)
        used = int(np.argmin(np.abs(ref.alpha_bar() - a))) + 1
        sk = int(s[rows][0])
        should = 1.0 if sk == 0 else float(ref.alpha_bar(sk))
        lines.append(f"t={k} used abar {a:.6g} (that of t={used}), should use abar_s {should:.6g} (s={sk})")
    return "; ".join(lines)


def inversion_rows(target, tau, n: int):
    """Battery rows for inversion along tau: (s, the next larger timestep t, x_s, output at s), s at
    the first two, middle and last positions of the steps that can be inverted; None if none can."""
    up = dict(zip(np.concatenate([tau[1:], [0]]), tau))
    s_all = np.array(sorted(up))
    s_all = s_all[s_all >= (0 if _invertible_from_x0(target) else 1)]
    if target.prediction_type == Prediction.EPSILON:
        s_all = s_all[(s_all == 0) | (target.schedule.alpha_bar(np.maximum(s_all, 1)) > 0)]
    if not s_all.size:
        return None
    pick = np.unique(np.clip([0, 1, s_all.size // 2, s_all.size - 1], 0, s_all.size - 1))
    s = np.repeat(s_all[pick], 6)
    rng = np.random.default_rng(SEED + 34 + n)
    xs = rng.standard_normal((s.size, target.d))
    return s, np.array([up[k] for k in s]), xs, model_outputs(target, target.schedule, np.maximum(s, 1), xs, rng)


def _invertible_from_x0(target) -> bool:
    """Whether the first inversion step, from x_0, is defined: x_0 carries noise (final abar_1), or
    eps_hat is the model's own epsilon (or v, which equals it at abar = 1)."""
    return target.final_alpha_bar == "abar_1" or (target.ddim_eps == "unclipped" and
                                                   target.prediction_type in (Prediction.EPSILON, Prediction.V))


def _predictions_at_x0(target, xs, out):
    """`_predictions` at abar = 1 (the first inversion step from x_0 when final abar is one): x0_hat =
    x_s processed as declared, eps_hat the output itself (epsilon, or v = eps at abar = 1)."""
    u = target.unit_roundoff
    out = out[:, :target.d]
    x0, x0_tol = xs.copy(), np.zeros_like(xs)
    if target.thresholding is not None:
        x0, x0_tol = threshold_with_budget(x0, x0_tol, *target.thresholding, u)
    elif target.clip_sample:
        x0 = np.clip(x0, -target.clip_range, target.clip_range)
    return x0, x0_tol, out.copy(), u * np.abs(out)


def _inversion_expected(target, chain, kept, s, t, xs, out):
    """(x_t, budget) of DDIM inversion from s to t: `_predictions` at s (the chain's step there; from
    s = 0, at abar_1 of the training chain, or `_predictions_at_x0`), then
    x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps_hat;
    the coefficients' errors as `sqrt_errors`, the subtraction 1 - abar_t at the larger of the table
    and compute roundoffs."""
    ref, u = target.schedule, target.unit_roundoff
    x0, x0_tol, eps, eps_tol = (np.empty_like(xs) for _ in range(4))
    for rows, on_chain in ((s >= 1, True), (s == 0, False)):
        if not rows.any():
            continue
        if on_chain or target.final_alpha_bar == "abar_1":
            at = s[rows] if on_chain else np.ones(int(rows.sum()), dtype=np.int64)
            j = np.searchsorted(kept, at) + 1 if on_chain else at
            parts = _predictions(target, chain if on_chain else ref, j, at, xs[rows], out[rows])
        else:
            parts = _predictions_at_x0(target, xs[rows], out[rows])
        x0[rows], x0_tol[rows], eps[rows], eps_tol[rows] = parts
    sa = np.sqrt(ref.alpha_bar(t)).reshape(-1, 1)
    s1 = np.sqrt(ref.one_minus_alpha_bar(t)).reshape(-1, 1)
    e_a, e_1 = sqrt_errors(target, ref, t)
    e_1 = e_1 + max(target.table_roundoff, u) / (2 * s1)
    want = sa * x0 + s1 * eps
    return want, sa * x0_tol + s1 * eps_tol + e_a * np.abs(x0) + e_1 * np.abs(eps) + 4 * u * np.abs(want)


def ddim_rows(target, tau, kept, n, seed):
    """Battery rows at `positions(tau)`: (t, the chain's index j, the next timestep s, x_t, output)."""
    rng = np.random.default_rng(seed + n)
    t = np.repeat(x0_defined(target, tau[positions(tau)]), 6)
    s = np.array([dict(zip(tau, np.concatenate([tau[1:], [0]])))[k] for k in t])
    xt = rng.standard_normal((t.size, target.d))
    return t, np.searchsorted(kept, t) + 1, s, xt, model_outputs(target, target.schedule, t, xt, rng)


def check_ddim_step(target) -> Result:
    """The DDIM step from t to the next timestep s of each sequence, for each declared eta (`_ddim_expected`),
    z the step's own noise regenerated (unused at eta = 0)."""
    parts, evidence = [], []
    for n, (tau, kept, chain) in chains(target).items():
        t, j, s, xt, out = ddim_rows(target, tau, kept, n, SEED + 30)
        for eta in target.etas:
            got, z = target.ddim_step(n, out, xt, t, eta, SEED + n)
            want, tol, x0, eps = _ddim_expected(target, chain, j, t, s, eta, xt, out,
                                                z if eta > 0 else np.zeros_like(xt))
            part = compare(got, want, tol, t, part=f"n={n}, eta={eta:g}")
            if part.status == "fail" and eta == 0 and np.all(np.isfinite(got)):
                failing = np.isin(t, part.failed_timesteps)
                evidence.append(f"n={n}: " + _abar_used(target, t[failing], s[failing], got[failing], x0[failing],
                                                        eps[failing]))
            parts.append(part)
    if not parts:
        return skip(f"{target.name}: {NO_SEQUENCE}")
    result = worst(*parts)
    if evidence:
        result.detail += "; evidence (eta = 0): " + "; ".join(evidence)
    return result


def check_ddim_deterministic(target) -> Result:
    """Metamorphic: with eta = 0 the DDIM step adds no noise: two seeds give the same x_s bit for bit."""
    if 0.0 not in target.etas:
        return skip(f"{target.name}: eta = 0 is not among its etas {target.etas}")
    parts = []
    for n, (tau, kept, _) in chains(target).items():
        t, _, _, xt, out = ddim_rows(target, tau, kept, n, SEED + 31)
        a, _ = target.ddim_step(n, out, xt, t, 0.0, SEED + 1)
        b, _ = target.ddim_step(n, out, xt, t, 0.0, SEED + 2)
        parts.append(compare(a, b, 0.0, t, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")


def check_ddim_step_distribution(target) -> Result:
    """The DDIM step's own noise at the largest declared eta > 0, not regenerated: (x_s - mean) / sigma
    ~ N(0, 1) over at least 40,000 values at the middle of the longest sequence (DKW, rate 1e-6)."""
    eta = max(target.etas)
    usable = [(n, c) for n, c in chains(target).items() if c[0].size >= 3]
    if eta == 0 or not usable:
        return skip(f"{target.name}: no eta > 0 among {target.etas}, or no sequence of 3 or more steps")
    n, (tau, kept, chain) = max(usable, key=lambda item: item[1][0].size)
    i = tau.size // 2
    rng = np.random.default_rng(SEED + 32)
    t = np.full(rows_for(40_000, target.d), tau[i])
    s = np.full(t.size, tau[i + 1])
    xt = rng.standard_normal((t.size, target.d))
    out = model_outputs(target, target.schedule, t, xt, rng)
    got, _ = target.ddim_step(n, out, xt, t, eta, SEED + 33)
    mean = _ddim_expected(target, chain, np.searchsorted(kept, t) + 1, t, s, eta, xt, out, np.zeros_like(xt))[0]
    sigma = float(reference.ddim_sigma(target.schedule, int(tau[i]), int(tau[i + 1]), eta,
                                       final_alpha_bar=_final(target)))
    z = (got - mean) / sigma
    return from_verdict(lambda: _normal_noise_test(z, f"DDIM noise, n={n}, eta={eta:g}, t={tau[i]}"), z)


def check_ddim_invert(target) -> Result:
    """DDIM inversion from s to the next larger timestep t of each sequence (eta = 0 run forward), the
    model output the prediction at s (`_inversion_expected`). From s = 0 only where x_0 carries noise
    (final abar_1)."""
    parts = []
    for n, (tau, kept, chain) in chains(target).items():
        rows = inversion_rows(target, tau, n)
        if rows is None:
            continue
        s, t, xs, out = rows
        got = target.ddim_invert(n, out, xs, t)
        want, tol = _inversion_expected(target, chain, kept, s, t, xs, out)
        parts.append(compare(got, want, tol, t, part=f"n={n}"))
    return worst(*parts) if parts else skip(f"{target.name}: no step to invert")


def check_ddim_loop(target) -> Result:
    """A whole DDIM sampler (one loop, no single step to call) run with the network 0.5 tanh(x_t), for
    each n and declared eta: the timesteps the network saw are the sampler's own (`timesteps`), and
    every step from the recorded input x_i to the next x_{i+1} (the output at the end) is the DDIM
    step with the output the network gave there (rounded to the target's dtype) and the loop's noise,
    budgets of `_ddim_expected`."""
    parts, rows, u = [], 8, target.unit_roundoff
    for n, (tau, kept, chain) in chains(target).items():
        for eta in target.etas:
            loop = target.ddim_loop(n, lambda x: 0.5 * np.tanh(x), rows, eta, SEED + 40 + n)
            label = f"n={n}, eta={eta:g}"
            if not np.array_equal(loop["t"], tau):
                parts.append(Result(label, "fail", detail=f"the network saw t = {loop['t'][:6].tolist()}..., the "
                                                          f"sampler's timesteps are {tau[:6].tolist()}..."))
                continue
            t = np.repeat(tau, rows)
            s = np.repeat(np.concatenate([tau[1:], [0]]), rows)
            x = loop["x"].reshape(-1, target.d)
            out = 0.5 * np.tanh(x)
            want, tol, _, _ = _ddim_expected(target, chain, np.searchsorted(kept, t) + 1, t, s, eta, x, out,
                                             loop["z"].reshape(-1, target.d), out_err=u * np.abs(out))
            got = np.concatenate([loop["x"][1:].reshape(-1, target.d), loop["x0"]])
            parts.append(compare(got, want, tol, t, part=label))
    return worst(*parts) if parts else skip(f"{target.name}: {NO_SEQUENCE}")
