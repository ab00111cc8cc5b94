"""Precision of every `reference` function against an independent 50-digit evaluation.

Expected values come from `ddpm_verify.highprec`, which evaluates the docs/math.md formulas in arb
ball arithmetic (or in mpmath, `highprec.engine`) and never calls `reference`. Inputs are
exact: float64 data, and the float64 betas the reference built (the betas themselves are
checked against the schedule's defining formula).

Error measures (all bounded by BOUND = 1e-12, see `highprec.measure`):
- schedule tables, variances, log-variances, and outputs that are plain products
  (e.g. sqrt(abar_t) x_0, score_from_eps): relative error per element; an exact 0 must be
  computed as an exact 0 (t = 1: 1 - abar_0, beta_tilde_1, the x_t coefficient).
- outputs that are sums/differences of terms over data vectors (q_sample, posterior means,
  the eps/x0/v conversions, mixture score and E[x_0 | x_t]): normwise relative error per row,
  max_j |computed - exact| / max_j |exact| over the d components of that row (one row = one t).
- log-densities, KLs, ELBO terms: relative error per element (per example for sums over d);
  absolute error where the exact value is 0; exact values below DBL_MIN (no float64 relative
  precision there) are measured against DBL_MIN.

`MEASUREMENTS` maps each measured function (a name such as ``q_sample`` or
``q_posterior.variance``) to its cases and the function measuring one case; `measure(name,
case)` gives the Result. properties/test_precision.py runs every (name, case) as one test
(``test_matches_exact[<name>-<case>]``); benchmarks/precision.py prints the worst per name.
"""


from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from . import highprec as hp
from .results import Result

D = 3                       # data dimension of the per-timestep checks


# -- cases ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sched:
    """A schedule case: family in {linear, linear_scaled, cosine} and T."""

    family: str
    T: int

    def __str__(self) -> str:
        return f"{self.family}-T{self.T}"


SCHEDULES = ([Sched("linear", T) for T in (1, 2, 10, 1000, 4000)]
             + [Sched("linear_scaled", T) for T in (1000, 4000)]
             + [Sched("cosine", T) for T in (1, 2, 10, 1000, 4000)])
SCHEDULES_T2 = [c for c in SCHEDULES if c.T >= 2]          # kl_term needs some t in 2..T
CHAIN_CASES = [c for c in SCHEDULES if c.family != "linear_scaled" and c.T <= 1000]
MIXTURE_CASES = ["data", Sched("linear", 10), Sched("cosine", 2), Sched("linear", 1000),
                 Sched("cosine", 1000), Sched("cosine", 4000)]
MIXTURE_T_CASES = MIXTURE_CASES[1:]


def built(case: Sched):
    """(reference schedule, exact tables from its float64 betas). The schedule is built afresh on
    every call (so a changed reference shows up); `highprec` memoises the tables on the betas."""
    if case.family == "cosine":
        sched = reference.cosine(case.T)
    else:
        sched = reference.linear(case.T, scale_with_T=case.family == "linear_scaled")
    return sched, hp.schedule_tables(sched.beta())


def exact_betas(case: Sched) -> np.ndarray:
    """beta_t from the family's defining formula (docs/math.md §2), exactly (`highprec`)."""
    if case.family == "cosine":
        return hp.cosine_betas(case.T)
    return hp.linear_betas(case.T, scale_with_T=case.family == "linear_scaled")


def all_t(case: Sched, seed: int, *arrays: str):
    """t = 1..T (one row per t) and named standard-normal (T, D) inputs from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, case.T + 1)
    return (t, [f"t={k}" for k in t], *(rng.standard_normal((case.T, D)) for _ in arrays))


# -- registry -----------------------------------------------------------------------------------

MEASUREMENTS: dict[str, tuple[list, object]] = {}
_GROUP_CACHES: list = []


def clear_caches() -> None:
    """Forget cached reference outputs of grouped measurements (for a run against a changed
    reference: the self-check's broken variants)."""
    for cache in _GROUP_CACHES:
        cache.cache_clear()


def measure(name: str, case) -> Result:
    """The Result of measurement `name` on `case`."""
    return MEASUREMENTS[name][1](case)


def cases() -> list[tuple[str, object]]:
    """Every (name, case), in registration order."""
    return [(name, case) for name, (cs, _) in MEASUREMENTS.items() for case in cs]


def small_cases() -> list[tuple[str, object]]:
    """Per measurement its T = 10 case of each schedule family, or its first case where it has no
    schedule: every formula once, cheaply."""
    out = []
    for name, (cs, _) in MEASUREMENTS.items():
        out += [(name, case) for case in ([c for c in cs if getattr(c, "T", 0) == 10] or cs[:1])]
    return out


def precision_check(name: str, cases):
    """Register `fn(case) -> Result` as measurement `name` over `cases`."""
    cases = list(cases)

    def register(fn):
        MEASUREMENTS[name] = (cases, fn)
        return fn
    return register


def precision_group(prefix: str, parts: list[str], cases):
    """Register one measurement per part of a function computing several outputs at once
    (`fn(case) -> {part: Result}`, evaluated once per case). `cases`: a list, or a dict
    part -> list."""
    def register(fn):
        cached = functools.lru_cache(maxsize=None)(fn)
        _GROUP_CACHES.append(cached)
        for part in parts:
            precision_check(f"{prefix}.{part}", cases[part] if isinstance(cases, dict) else cases)(
                lambda case, part=part: cached(case)[part])
        return fn
    return register


# -- schedule tables (docs/math.md §2, §4) ---------------------------------------------------------------

TABLES = ["beta", "log_beta", "alpha", "log_alpha", "log_alpha_bar", "alpha_bar", "one_minus_alpha_bar",
          "log_one_minus_alpha_bar", "alpha_bar_prev", "one_minus_alpha_bar_prev", "posterior_coef_x0",
          "posterior_coef_xt", "beta_tilde", "log_beta_tilde_clipped"]


def _table_check(name: str):
    def check(case: Sched) -> Result:
        sched, tab = built(case)
        exact = exact_betas(case) if name == "beta" else tab[name]
        accessor = getattr(sched, name)
        spots = sorted({1, 2, case.T - 1, case.T} & set(range(1, case.T + 1)))
        computed = np.concatenate([accessor(), [accessor(t) for t in spots]])
        expected = np.concatenate([exact, exact[np.array(spots) - 1]])
        labels = [f"t={t}" for t in range(1, case.T + 1)] + [f"t={t} (int t)" for t in spots]
        return hp.measure(name, case, computed, expected, labels, zero="exact")
    return check


for _name in TABLES:
    precision_check(_name, SCHEDULES)(_table_check(_name))


@precision_check("sigmoid_alpha_bar", [1, 2, 10, 1000, 4000])
def _sigmoid_alpha_bar(T):
    """The sigmoid schedule defined through abar, every beta (the last one capped at 0.999)."""
    return hp.measure("sigmoid_alpha_bar", f"T={T}", reference.sigmoid_alpha_bar(T).beta(),
                       hp.sigmoid_alpha_bar_betas(T), [f"t={t}" for t in range(1, T + 1)])


@precision_check("zero_terminal_snr", SCHEDULES_T2)
def _zero_terminal_snr(case):
    """Every beta of the schedule rescaled to zero terminal SNR, against its definition through
    sqrt(abar) (`highprec.zero_terminal_snr_betas`), which the reference never forms as such."""
    sched, _ = built(case)
    return hp.measure("zero_terminal_snr", case, reference.zero_terminal_snr(sched).beta(),
                      hp.zero_terminal_snr_betas(sched.beta()), [f"t={t}" for t in range(1, case.T + 1)],
                      zero="exact")


# -- forward process (docs/math.md §3) --------------------------------------------------------------------

def _normal_parts(name: str, case, got, exact, labels) -> dict:
    """The measurements of a DiagonalNormal `got` against exact (mean, variance, log_variance)."""
    mean, var, log_var = exact
    return {"mean": hp.measure(f"{name}.mean", case, got.mean, mean, labels),
            "variance": hp.measure(f"{name}.variance", case, got.variance, var, labels, zero="exact"),
            "log_variance": hp.measure(f"{name}.log_variance", case, got.log_variance, log_var, labels)}


@precision_group("q_xt_given_x0", ["mean", "variance", "log_variance"], SCHEDULES)
def _q_xt_given_x0(case):
    sched, tab = built(case)
    t, labels, x0 = all_t(case, 101, "x0")
    got = reference.q_xt_given_x0(sched, x0, t)
    return _normal_parts("q_xt_given_x0", case, got, hp.q_xt_given_x0(tab, t, x0), labels)


@precision_check("q_sample", SCHEDULES)
def _q_sample(case):
    sched, tab = built(case)
    t, labels, x0, eps = all_t(case, 102, "x0", "eps")
    return hp.measure("q_sample", case, reference.q_sample(sched, x0, t, eps),
                       hp.q_sample(tab, t, x0, eps), labels, kind="normwise")


@precision_group("q_xt_given_xtm1", ["mean", "variance", "log_variance"], SCHEDULES)
def _q_xt_given_xtm1(case):
    sched, tab = built(case)
    t, labels, x = all_t(case, 103, "x_prev")
    got = reference.q_xt_given_xtm1(sched, x, t)
    return _normal_parts("q_xt_given_xtm1", case, got, hp.q_xt_given_xtm1(tab, t, x), labels)


@precision_group("q_xt_given_xs", ["mean", "variance", "log_variance"], SCHEDULES)
def _q_xt_given_xs(case):
    """Every t with s = t - 1 (one kernel step: the hardest ratio), s = 0, and a random s < t."""
    sched, tab = built(case)
    rng = np.random.default_rng(104)
    T = case.T
    t1 = np.arange(1, T + 1)
    t = np.concatenate([t1, t1, t1])
    s = np.concatenate([t1 - 1, np.zeros(T, dtype=np.int64), rng.integers(0, t1)])
    xs = rng.standard_normal((3 * T, D))
    labels = [f"s={a}, t={b}" for a, b in zip(s, t)]
    got = reference.q_xt_given_xs(sched, xs, s, t)
    return _normal_parts("q_xt_given_xs", case, got, hp.q_xt_given_xs(tab, s, t, xs), labels)


# -- posterior (docs/math.md §4) ---------------------------------------------------------------------------

@precision_check("posterior_mean", SCHEDULES)
def _posterior_mean(case):
    sched, tab = built(case)
    t, labels, x0, xt = all_t(case, 201, "x0", "xt")
    return hp.measure("posterior_mean", case, reference.posterior_mean(sched, x0, xt, t),
                       hp.posterior_mean(tab, t, x0, xt), labels, kind="normwise")


@precision_check("x0_from_posterior_mean", SCHEDULES)
def _x0_from_posterior_mean(case):
    sched, tab = built(case)
    t, labels, xt, mean = all_t(case, 204, "xt", "mean")
    return hp.measure("x0_from_posterior_mean", case, reference.x0_from_posterior_mean(sched, xt, t, mean),
                      hp.x0_from_posterior_mean(tab, t, xt, mean), labels, kind="normwise")


@precision_check("posterior_mean_from_eps", SCHEDULES)
def _posterior_mean_from_eps(case):
    sched, tab = built(case)
    t, labels, xt, eps = all_t(case, 202, "xt", "eps")
    return hp.measure("posterior_mean_from_eps", case, reference.posterior_mean_from_eps(sched, xt, t, eps),
                       hp.posterior_mean_from_eps(tab, t, xt, eps), labels, kind="normwise")


@precision_group("q_posterior", ["mean", "variance", "log_variance"], SCHEDULES)
def _q_posterior(case):
    sched, tab = built(case)
    t, labels, x0, xt = all_t(case, 203, "x0", "xt")
    got = reference.q_posterior(sched, x0, xt, t)
    var, log_var = hp.posterior_variance(tab, t, x0.shape)       # log beta_tilde_1 = -inf
    name = "q_posterior"
    return {"mean": hp.measure(f"{name}.mean", case, got.mean, hp.posterior_mean(tab, t, x0, xt), labels,
                                kind="normwise"),
            "variance": hp.measure(f"{name}.variance", case, got.variance, var, labels, zero="exact"),
            "log_variance": hp.measure(f"{name}.log_variance", case, got.log_variance, log_var, labels)}


# -- parameterisations (docs/math.md §5) --------------------------------------------------------------------
# Differences of two terms: normwise per row. score_from_eps / eps_from_score are products:
# elementwise.

CONVERSIONS = {   # name: (argument names after (schedule, ...)), measure kind
    "x0_from_eps": (("xt", "t", "eps"), "normwise"),
    "eps_from_x0": (("xt", "t", "x0"), "normwise"),
    "v_from_x0_eps": (("x0", "t", "eps"), "normwise"),
    "x0_from_v": (("xt", "t", "v"), "normwise"),
    "eps_from_v": (("xt", "t", "v"), "normwise"),
    "score_from_eps": (("eps", "t"), "elementwise"),
    "eps_from_score": (("score", "t"), "elementwise"),
}


def _conversion_check(name: str):
    args, kind = CONVERSIONS[name]

    def check(case):
        sched, tab = built(case)
        data_names = [a for a in args if a != "t"]
        t, labels, *data = all_t(case, 300 + list(CONVERSIONS).index(name), *data_names)
        vals = dict(zip(data_names, data), t=t)
        got = getattr(reference, name)(sched, *(vals[a] for a in args))
        exact = getattr(hp, name)(tab, t, *data)
        return hp.measure(name, case, got, exact, labels, kind=kind)
    return check


for _name in CONVERSIONS:
    precision_check(_name, SCHEDULES)(_conversion_check(_name))


# -- Gaussians (docs/math.md §6) ------------------------------------------------------------------------------

def _log_uniform(rng, lo, hi, n):
    return 10.0 ** rng.uniform(lo, hi, n)


@precision_check("normal_log_density", ["random"])
def _normal_log_density(case):
    rng = np.random.default_rng(401)
    n = 2000
    mean = 3 * rng.standard_normal(n)
    var = _log_uniform(rng, -8, 4, n)
    z = rng.standard_normal(n) * _log_uniform(rng, -3, 1.5, n)     # distance in standard deviations
    x = mean + np.sqrt(var) * z
    x[:20] = mean[:20]
    labels = [f"x={a!r}, mean={b!r}, var={c!r}" for a, b, c in zip(x.tolist(), mean.tolist(), var.tolist())]
    return hp.measure("normal_log_density", case, reference.normal_log_density(x, mean, var),
                       hp.normal_log_density(x, mean, var), labels)


KL_GROUPS = ["random", "disparate variances", "near-equal variances, equal means",
             "near-equal variances, close means", "adjacent doubles", "identical (KL = 0)"]


def _kl_inputs(group: str):
    """(m1, v1, m2, v2) for one input group: random pairs (v from 1e-6 to 1e2); variance ratios
    v1/v2 from 1e-12 to 1e12; nearly equal variances v1 = v2 (1 + u), |u| from 1e-15 to 1e-1, with
    equal and with close means; adjacent doubles; identical distributions (KL = 0 exactly)."""
    rng = np.random.default_rng(402 + KL_GROUPS.index(group))
    n = 600
    m, v2 = rng.standard_normal(n), _log_uniform(rng, -6, 2, n)
    u = rng.choice([-1, 1], n) * _log_uniform(rng, -15, -1, n)
    if group == "random":
        return m, _log_uniform(rng, -6, 2, n), rng.standard_normal(n), v2
    if group == "disparate variances":
        return m, v2 * _log_uniform(rng, -12, 12, n), rng.standard_normal(n), v2
    if group == "near-equal variances, equal means":
        return m, v2 * (1 + u), m.copy(), v2
    if group == "near-equal variances, close means":
        return m + np.sqrt(v2) * rng.standard_normal(n) * _log_uniform(rng, -8, 0, n), v2 * (1 + u), m.copy(), v2
    if group == "adjacent doubles":
        return m, np.nextafter(v2, np.inf), m.copy(), v2
    return m[:50], v2[:50], m[:50].copy(), v2[:50]


@precision_check("kl_normal", KL_GROUPS)
def _kl_normal(case):
    m1, v1, m2, v2 = _kl_inputs(case)
    labels = [f"m1={a!r}, v1={b!r}, m2={c!r}, v2={d!r}"
              for a, b, c, d in zip(m1.tolist(), v1.tolist(), m2.tolist(), v2.tolist())]
    return hp.measure("kl_normal", case, reference.kl_normal(m1, v1, m2, v2),
                       hp.kl_normal(m1, v1, m2, v2), labels)


@precision_check("u_minus_log1p", ["near 0 and wide"])
def _u_minus_log1p(case):
    rng = np.random.default_rng(403)
    fixed = [0.0, 1e-300, 1e-100, 1e-20, 1e-10, 1e-5, 1e-3, 0.05, 0.1, 0.19999, 0.2, 0.20001, 0.5]
    u = np.array(fixed + [-v for v in fixed[1:]]
                 + [-0.9, -0.999999, -1 + 2.0 ** -52, 1.0, 10.0, 1e5, 1e100, 1e300]
                 + list(rng.choice([-1, 1], 1000) * _log_uniform(rng, -12, -0.1, 1000)))
    return hp.measure("u_minus_log1p", case, reference.u_minus_log1p(u), hp.u_minus_log1p(u),
                       [f"u={v!r}" for v in u.tolist()])


@precision_check("log1mexp", ["near 0 and tails"])
def _log1mexp(case):
    rng = np.random.default_rng(404)
    ln2 = math.log(2.0)
    fixed = [0.0, -1e-300, -1e-100, -1e-20, -1e-10, -1e-5, -0.1, -0.5, np.nextafter(-ln2, 0), -ln2,
             np.nextafter(-ln2, -1), -0.7, -1.0, -2.0, -10.0, -36.0, -37.0, -40.0, -100.0, -700.0,
             -745.0, -800.0, -1e5, -np.inf]
    x = np.array(fixed + list(-_log_uniform(rng, -15, 3, 1000)))
    return hp.measure("log1mexp", case, reference.log1mexp(x), hp.log1mexp(x), [f"x={v!r}" for v in x.tolist()])


#: the discretised decoder's bound: tighter than BOUND, everywhere its result is a normal float
DECODER_BOUND = 1e-13


def _disc_inputs():
    """Grid levels incl. both edge bins, sd from 1e-4 to 1, means at/near the bin and up to 40 sd
    away in both directions, means at and near the bin's edges (x -+ 1/255 -+ c sd: the bin's mass
    then lies at the far tail of one edge, down to below the normal range), and fixed far means
    (-3 .. 3)."""
    rng = np.random.default_rng(405)
    levels = np.unique(np.concatenate([[0, 1, 2, 3, 126, 127, 128, 129, 252, 253, 254, 255],
                                       rng.integers(0, 256, 20)]))
    sds = np.logspace(-4, 0, 9)
    # means at x + offset * sd: in the edge bins a mean beyond the open edge gives mass 1 - (far tail)
    offsets = np.array([0.0, 0.3, -0.3, 0.9, -0.9, 2.0, -2.0, 5.0, -5.0, 8.0, -8.0, 12.0, -12.0,
                        20.0, -20.0, 30.0, -30.0, 40.0, -40.0])
    at_edges = np.array([0.0, 0.5, -0.5, 3.0, -3.0, 7.0, -7.0, 37.0, -37.0, 38.3, -38.3, 39.0, -39.0])
    far = np.array([-3.0, -1.2, 0.0, 1.2, 3.0])                                           # absolute means
    x, mean, sd = [], [], []
    for k in levels:
        xk = k / 127.5 - 1.0
        for s in sds:
            edges = [xk + side / 255.0 + c * s for side in (-1.0, 1.0) for c in at_edges]
            for m in list(xk + offsets * s) + edges + list(far):
                x.append(xk), mean.append(m), sd.append(s)
    x, mean, sd = np.array(x), np.array(mean), np.array(sd)
    return x, mean, sd ** 2, [f"x={a!r}, mean={b!r}, sd={c:.3g}"
                              for a, b, c in zip(x.tolist(), mean.tolist(), sd.tolist())]


@functools.lru_cache(maxsize=None)
def _disc_exact():
    x, mean, var, labels = _disc_inputs()
    return x, mean, var, labels, hp.discretized_gaussian_log_likelihood(x, mean, var)


@precision_check("discretized_gaussian_log_likelihood", ["edges+tails"])
def _discretized(case):
    x, mean, var, labels, exact = _disc_exact()
    return hp.measure("discretized_gaussian_log_likelihood", case,
                      reference.discretized_gaussian_log_likelihood(x, mean, var), exact, labels,
                      bound=DECODER_BOUND)


# -- ELBO terms (docs/math.md §6) -------------------------------------------------------------------------------

@precision_check("prior_term", SCHEDULES)
def _prior_term(case):
    sched, tab = built(case)
    x0 = np.random.default_rng(501).standard_normal((64, D))
    return hp.measure("prior_term", case, reference.prior_term(sched, x0), hp.prior_term(tab, x0),
                       [f"example {i}" for i in range(64)])


@precision_check("kl_term", SCHEDULES_T2)
def _kl_term(case):
    """t = 2..T; model mean = exact mu_tilde + sqrt(beta_tilde) z, model variance = beta_tilde e^w, |w| <= 1/2."""
    sched, tab = built(case)
    rng = np.random.default_rng(502)
    t = np.arange(2, case.T + 1)
    x0, xt, z = (rng.standard_normal((t.size, D)) for _ in range(3))
    mu, _ = hp.to_double_double(hp.posterior_mean(tab, t, x0, xt))
    bt, _ = hp.to_double_double(hp.posterior_variance(tab, t, x0.shape)[0])
    model_mean = mu + np.sqrt(bt) * z
    model_var = bt * np.exp(rng.uniform(-0.5, 0.5, x0.shape))
    return hp.measure("kl_term", case, reference.kl_term(sched, x0, xt, t, model_mean, model_var),
                       hp.kl_term(tab, t, x0, xt, model_mean, model_var), [f"t={k}" for k in t])


def _decoder_inputs():
    rng = np.random.default_rng(503)
    n = 300
    k = rng.integers(0, 256, (n, D))
    k[:20], k[20:40], k[40:60, 0], k[40:60, 1] = 0, 255, 0, 255          # edge bins
    x0 = k / 127.5 - 1.0
    sd = _log_uniform(rng, -4, 0, n * D).reshape(n, D)
    mean = x0 + sd * rng.standard_normal((n, D)) * _log_uniform(rng, -1, 1, n * D).reshape(n, D)
    mean[60:80] = rng.choice([-3.0, 3.0], (20, D))                          # far tails
    return x0, mean, sd ** 2


@precision_group("decoder_nll", ["continuous", "discretized"], ["random+edges"])
def _decoder_nll(case):
    x0, mean, var = _decoder_inputs()
    labels = [f"example {i}" for i in range(x0.shape[0])]
    return {dec: hp.measure(f"decoder_nll.{dec}", case, reference.decoder_nll(x0, mean, var, dec),
                            hp.decoder_nll(x0, mean, var, dec), labels,
                            bound=DECODER_BOUND if dec == "discretized" else hp.BOUND)
            for dec in ("continuous", "discretized")}


def _model_variance_check(kind: str):
    def check(case):
        sched, tab = built(case)
        t = np.arange(1, case.T + 1)
        v = None
        if kind == Variance.LEARNED_RANGE:
            v = np.random.default_rng(504).uniform(0, 1, (case.T, D))
            v[:, 0], v[:, 1] = 0.0, 1.0
        var, log_var = reference.model_variance(sched, t, kind, v)
        exact_var, exact_log_var = hp.model_variance(tab, t, kind, v)
        labels = [f"t={k}" for k in t]
        return hp.worst_of(
            hp.measure(f"model_variance.{kind} (variance)", case, var, exact_var, labels, zero="exact"),
            hp.measure(f"model_variance.{kind} (log variance)", case, log_var, exact_log_var, labels))
    return check


for _kind in reference.VARIANCE_KINDS:
    precision_check(f"model_variance.{_kind}", SCHEDULES)(_model_variance_check(_kind))


@precision_check("nats_to_bits_per_dim", ["d=1", "d=3", "d=3072"])
def _nats_to_bits(case):
    d = int(case[2:])
    rng = np.random.default_rng(505)
    nats = rng.standard_normal(500) * _log_uniform(rng, -5, 6, 500)
    return hp.measure("nats_to_bits_per_dim", case, reference.nats_to_bits_per_dim(nats, d),
                       hp.nats_to_bits_per_dim(nats, d), [f"nats={v!r}" for v in nats.tolist()])


# -- inference-time processes and Gaussian data (docs/math.md §10, §11) ----------------------------------------------

@dataclass(frozen=True)
class Strided:
    """A schedule case and the timesteps a sampler visits (a rule of the libraries, in `reference`)."""

    sched: Sched
    rule: str

    def __str__(self) -> str:
        return f"{self.sched} {self.rule}"

    def tau(self) -> np.ndarray:
        T, (kind, arg) = self.sched.T, self.rule.split(" ", 1)
        if kind == "lucidrains":
            return reference.lucidrains_timesteps(T, int(arg))
        if kind == "space":
            return reference.space_timesteps(T, arg)[::-1]
        return reference.diffusers_timesteps(T, int(arg), kind)


STRIDED = [Strided(Sched("linear", 1000), "leading 50"), Strided(Sched("linear", 1000), "trailing 37"),
           Strided(Sched("cosine", 1000), "linspace 30"), Strided(Sched("cosine", 4000), "space ddim50"),
           Strided(Sched("linear_scaled", 4000), "space 10,15,20"), Strided(Sched("cosine", 1000), "lucidrains 25"),
           Strided(Sched("linear", 10), "space 2,3"), Strided(Sched("linear", 1000), "leading 1000"),
           Strided(Sched("cosine", 2), "trailing 1")]
RESPACED = ["alpha_bar", "one_minus_alpha_bar", "log_alpha_bar", "beta", "beta_tilde", "log_beta_tilde_clipped",
            "posterior_coef_x0", "posterior_coef_xt"]


@precision_group("respace", RESPACED, STRIDED)
def _respace(case):
    sched, tab = built(case.sched)
    kept = case.tau()[::-1]
    chain, exact = reference.respace(sched, kept), hp.respaced_tables(tab, kept)
    labels = [f"j={j} (t={k})" for j, k in enumerate(kept, 1)]
    return {name: hp.measure(f"respace.{name}", case, getattr(chain, name)(), exact[name], labels, zero="exact")
            for name in RESPACED}


DDIM_CASES = [(c, 0.5, "1") for c in SCHEDULES_T2] + [(Sched("linear", 1000), 0.0, "1"),
                                                      (Sched("cosine", 1000), 1.0, "1"),
                                                      (Sched("linear", 1000), 0.3, "abar_1")]


def _ddim_inputs(case):
    """t = 1..T each with s = t - 1, s = 0 and a random s < t."""
    sched_case, eta, final = case
    sched, tab = built(sched_case)
    rng = np.random.default_rng(601)
    T = sched_case.T
    t1 = np.arange(1, T + 1)
    t = np.concatenate([t1, t1, t1])
    s = np.concatenate([t1 - 1, np.zeros(T, dtype=np.int64), rng.integers(0, t1)])
    final_value = 1.0 if final == "1" else float(sched.alpha_bar(1))
    if final != "1":
        # the step from t = 1 to x_0 at abar_1 (rounded to float64) is the identity up to that
        # rounding: 1 - abar_1 / final has no relative precision to measure
        keep = t >= 2
        t, s = t[keep], s[keep]
    labels = [f"t={a}, s={b}" for a, b in zip(t, s)]
    return sched, tab, t, s, eta, final_value, labels, rng


@precision_group("ddim_coefficients", ["x0", "eps", "sigma"], DDIM_CASES)
def _ddim_coefficients(case):
    sched, tab, t, s, eta, final, labels, _ = _ddim_inputs(case)
    got = reference.ddim_coefficients(sched, t, s, eta, final_alpha_bar=final)
    exact = hp.ddim_coefficients(tab, t, s, eta, final)
    return {part: hp.measure(f"ddim_coefficients.{part}", case, g, e, labels, zero="exact")
            for part, g, e in zip(("x0", "eps", "sigma"), got, exact)}


@precision_check("ddim_step", DDIM_CASES)
def _ddim_step(case):
    sched, tab, t, s, eta, final, labels, rng = _ddim_inputs(case)
    xt, x0, z = (rng.standard_normal((t.size, D)) for _ in range(3))
    got = reference.ddim_step(sched, xt, t, s, x0, eta=eta, noise=z, final_alpha_bar=final)
    return hp.measure("ddim_step", case, got, hp.ddim_step(tab, t, s, eta, final, xt, x0, z), labels,
                       kind="normwise")


@precision_check("ddim_invert", SCHEDULES_T2)
def _ddim_invert(case):
    sched, tab = built(case)
    rng = np.random.default_rng(602)
    t = np.arange(2, case.T + 1)
    s = rng.integers(1, t)
    xs, x0 = rng.standard_normal((t.size, D)), rng.standard_normal((t.size, D))
    return hp.measure("ddim_invert", case, reference.ddim_invert(sched, xs, s, t, x0),
                       hp.ddim_invert(tab, s, t, xs, x0), [f"s={a}, t={b}" for a, b in zip(s, t)], kind="normwise")


GAUSSIAN_DATA = (np.array([0.3, -0.5, 1.2]), np.array([0.04, 1.0, 2.5]))


@precision_group("GaussianData", ["x0_star", "eps_star", "v_star", "eps_variance"], SCHEDULES)
def _gaussian_data(case):
    sched, tab = built(case)
    t, labels, xt = all_t(case, 603, "xt")
    data = reference.GaussianData(*GAUSSIAN_DATA)
    x0, eps, v, var, _ = hp.gaussian_data(tab, t, *GAUSSIAN_DATA, xt)
    return {"x0_star": hp.measure("GaussianData.x0_star", case, data.x0_star(xt, sched, t), x0, labels,
                                   kind="normwise"),
            "eps_star": hp.measure("GaussianData.eps_star", case, data.eps_star(xt, sched, t), eps, labels,
                                    kind="normwise"),
            "v_star": hp.measure("GaussianData.v_star", case, data.v_star(xt, sched, t), v, labels, kind="normwise"),
            "eps_variance": hp.measure("GaussianData.eps_variance", case, data.eps_variance(sched, t), var,
                                        labels, zero="exact")}


SAMPLERS = [(c, "ddpm", 0.0, Variance.FIXED_SMALL, "1") for c in STRIDED[:4]] + [
    (STRIDED[0], "ddpm", 0.0, Variance.FIXED_LARGE, "1"), (STRIDED[1], "ddim", 0.0, Variance.FIXED_SMALL, "1"),
    (STRIDED[5], "ddim", 0.5, Variance.FIXED_SMALL, "1"), (STRIDED[2], "ddim", 1.0, Variance.FIXED_SMALL, "abar_1")]
#: the diagnosis' nearby processes: another prediction type with the network called at t + 1 (capped
#: at T), and DDIM stepping to t - T // n (floored at 0) whatever the sequence
SHIFTED = [(STRIDED[0], "ddpm", Prediction.SAMPLE, "model+1"), (STRIDED[1], "ddim", Prediction.V, "model+1"),
           (STRIDED[3], "ddpm", Prediction.EPSILON, "model+1"), (STRIDED[5], "ddim", Prediction.EPSILON, "next=t-T//n")]


@precision_group("GaussianData.step_coefficients_shifted", ["mean", "variance"], SHIFTED)
def _shifted_sampler_output(case):
    strided, process, prediction, shift = case
    sched, tab = built(strided.sched)
    tau = strided.tau()
    model_tau = next_tau = None
    if shift == "model+1":
        model_tau = np.minimum(tau + 1, sched.T)
    else:
        next_tau = np.maximum(tau - sched.T // tau.size, 0)
    data = reference.GaussianData(*GAUSSIAN_DATA)
    coefficients = data.step_coefficients(sched, tau, process=process, prediction_type=prediction,
                                          model_tau=model_tau, next_tau=next_tau)
    got = data.chain_states(*coefficients)
    m, v = hp.gaussian_sampler_output(tab, tau, *GAUSSIAN_DATA, process, prediction=prediction,
                                       model_tau=model_tau, next_tau=next_tau)
    labels = ["output"]
    return {"mean": hp.measure("GaussianData.step_coefficients.mean", case, got.mean[-1:], m[None], labels,
                                kind="normwise"),
            "variance": hp.measure("GaussianData.step_coefficients.variance", case, got.variance[-1:], v[None],
                                    labels)}


@precision_group("GaussianData.sampler_output", ["mean", "variance", "log_variance"], SAMPLERS)
def _sampler_output(case):
    strided, process, eta, variance, final = case
    sched, tab = built(strided.sched)
    final = float(sched.alpha_bar(1)) if final == "abar_1" else 1.0
    got = reference.GaussianData(*GAUSSIAN_DATA).sampler_output(sched, strided.tau(), process=process, eta=eta,
                                                                variance=variance, final_alpha_bar=final)
    m, v = hp.gaussian_sampler_output(tab, strided.tau(), *GAUSSIAN_DATA, process, eta, final,
                                       "small" if variance == Variance.FIXED_SMALL else "large")
    labels = ["output"]
    return {"mean": hp.measure("GaussianData.sampler_output.mean", case, got.mean[None], m[None], labels,
                                kind="normwise"),
            "variance": hp.measure("GaussianData.sampler_output.variance", case, got.variance[None], v[None],
                                    labels),
            # as exp(log V) against V: an absolute error in log V is the relative error of V
            "log_variance": hp.measure("GaussianData.sampler_output.log_variance", case,
                                        np.exp(got.log_variance)[None], v[None], labels)}


# -- oracles (docs/math.md §7) -------------------------------------------------------------------------------------

def _chain(case):
    """A linear-Gaussian chain near the true reverse process: a_t = c1_t (1 + 0.1 z) + 0.05 z',
    b_t = 0.05 z'', sigma_t^2 = beta_t e^w (|w| <= 1/2); 6 examples in d = 2."""
    sched, tab = built(case)
    rng = np.random.default_rng(601)
    T = case.T
    c1, _ = hp.to_double_double(tab["posterior_coef_xt"])
    a = c1 * (1 + 0.1 * rng.standard_normal(T)) + 0.05 * rng.standard_normal(T)
    b = 0.05 * rng.standard_normal((T, 2))
    sigma2 = sched.beta() * np.exp(rng.uniform(-0.5, 0.5, T))
    x0 = rng.standard_normal((6, 2))
    return sched, tab, a, b, sigma2, x0


@precision_group("LinearGaussianChain", ["log_prob", "neg_elbo"], CHAIN_CASES)
def _chain_checks(case):
    sched, tab, a, b, sigma2, x0 = _chain(case)
    chain = reference.LinearGaussianChain(sched, a, b, sigma2)
    labels = [f"example {i}" for i in range(x0.shape[0])]
    return {"log_prob": hp.measure("LinearGaussianChain.log_prob", case, chain.log_prob(x0),
                                    hp.chain_log_prob(a, b, sigma2, x0), labels),
            "neg_elbo": hp.measure("LinearGaussianChain.neg_elbo", case, chain.neg_elbo(x0),
                                    hp.chain_neg_elbo(tab, a, b, sigma2, x0), labels)}


MIX_WEIGHTS = np.array([0.5, 0.3, 0.2])
MIX_MEANS = np.array([[1.0, 0.0], [-0.5, 0.8], [-0.3, -1.2]])
MIX_COVS = np.array([[[0.04, 0.01], [0.01, 0.02]],
                     [[0.1, -0.03], [-0.03, 0.05]],
                     [[0.01, 0.0], [0.0, 0.09]]])


@precision_group("GaussianMixture", ["log_prob", "score", "posterior_mean_x0", "optimal_eps"],
                 {"log_prob": MIXTURE_CASES, "score": MIXTURE_CASES,
                  "posterior_mean_x0": MIXTURE_T_CASES, "optimal_eps": MIXTURE_T_CASES})
def _mixture_checks(case):
    """12 points x t in {1, 2, T/2, T-1, T} (or the data density itself); score, E[x_0|x_t] and eps*
    normwise per point, log q_t relative per point."""
    gm = reference.GaussianMixture(MIX_WEIGHTS, MIX_MEANS, MIX_COVS)
    pts = 1.2 * np.random.default_rng(602).standard_normal((12, 2))
    if case == "data":
        x, labels = pts, [f"x={p.tolist()}" for p in pts]
        got = {"log_prob": gm.log_prob(x), "score": gm.score(x)}
        abar = np.ones(len(x))
    else:
        sched, tab = built(case)
        ts = sorted({1, 2, case.T // 2, case.T - 1, case.T} & set(range(1, case.T + 1)))
        t = np.repeat(ts, len(pts))
        x = np.tile(pts, (len(ts), 1))
        labels = [f"t={k}, x={p.tolist()}" for k, p in zip(t, x)]
        got = {"log_prob": gm.log_prob(x, sched, t), "score": gm.score(x, sched, t),
               "posterior_mean_x0": gm.posterior_mean_x0(x, sched, t), "optimal_eps": gm.optimal_eps(x, sched, t)}
        abar = tab["alpha_bar"][t - 1]
    exact = dict(zip(["log_prob", "score", "posterior_mean_x0", "optimal_eps"],
                     hp.mixture_quantities(MIX_WEIGHTS, MIX_MEANS, MIX_COVS, x, abar)))
    return {part: hp.measure(f"GaussianMixture.{part}", case, got[part], exact[part], labels,
                              kind="elementwise" if part == "log_prob" else "normwise")
            for part in got}      # E[x_0 | x_t] and eps* need a schedule: not in the data case
