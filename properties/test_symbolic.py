"""The sympy derivations of `ddpm_verify.symbolic` against docs/math.md and against `reference`.

For each derivation two kinds of check:

(a) exact symbolic equality with docs/math.md's formula, written here as a sympy expression in
    the same symbols: `assert_identical` asserts ``sympy.simplify(derived - expected) == 0``,
    and `test_identity_check_rejects_wrong_formulas` shows it rejects near-miss formulas
    (the seeds' errata among them), so these tests can fail;
(b) the derived expression, lambdified with the mpmath backend and evaluated at 40 digits on
    the float64 inputs taken as exact (betas -> alpha_t = 1 - beta_t, abar_{t-1} = prod alpha_s),
    against the float64 `reference` at Hypothesis-drawn points. The error measured is then the
    reference's alone, and each tolerance is U = 2^-53 (float64 unit roundoff) times a count
    of roundings times a stated condition factor, written next to the assertion.

Condition factor used throughout: L_t = |log abar_t|. The reference's abar tables come from a
compensated cumulative sum of log1p(-beta_s), whose absolute error is O(U L_t); exp turns that
into a relative error O(U L_t) of abar_t, and -expm1 into a relative error O(U) of 1 - abar_t
(|log a| a / (1 - a) <= 1). So a schedule coefficient built from k table entries has relative
error at most about k U (1 + L_t).

Runtime: the derivations run once per session (lru_cache); the whole module takes a few
seconds on 2 cores (see ``pytest properties/test_symbolic.py --durations=10``).
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize_scalar
from scipy.special import rel_entr

import reference as ref
from ddpm_verify import symbolic as S
from ddpm_verify.symbolic import assert_identical, differs
from properties._numerics import assert_close

#: under pytest-xdist (--dist loadgroup) this module runs on one worker, each derivation (cached
#: in `ddpm_verify.symbolic`) once; test_strided's derivation tests join the group
pytestmark = pytest.mark.xdist_group("symbolic")

U = 2.0 ** -53              # float64 unit roundoff
DPS = 40                    # digits of the exact (mpmath) evaluations of the derived expressions
#: absolute floor for underflow: below DBL_MIN = 2^-1022 a rounding errs by up to 2^-1075 absolutely
#: rather than U relatively, and the divisions that follow (by sqrt(abar_t) >= 2^-4, 1 - abar_t >=
#: 1e-4, variances >= 1e-3) magnify that by less than 2^25 in the drawn ranges; it matters only when
#: the compared values are themselves below ~1e-290
FLOOR = 2.0 ** -1000

# the symbols of the derivations
alpha, abar_prev, x0, xt, eps, eps_theta, sigma2 = (S.alpha, S.abar_prev, S.x0, S.xt, S.eps,
                                                    S.eps_theta, S.sigma2)
beta = 1 - alpha
abar = alpha * abar_prev


# -- helpers ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def mp_fn(args: tuple, expr: sp.Expr):
    """lambdify(args, expr) with the mpmath backend (cached: one lambdify per expression)."""
    return sp.lambdify(args, expr, modules="mpmath")


def exact(args: tuple, expr: sp.Expr, *values) -> float:
    """expr at `values` (float64, taken as exact, or mpf) evaluated at DPS digits, rounded to float."""
    with mpmath.workdps(DPS):
        return float(mp_fn(args, expr)(*[v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v))
                                         for v in values]))


def exact_step(betas, t):
    """(alpha_t, abar_{t-1}) as mpf at DPS digits from the float64 betas taken as exact."""
    with mpmath.workdps(DPS):
        alphas = [1 - mpmath.mpf(b) for b in betas]
        return alphas[t - 1], mpmath.fprod(alphas[:t - 1]) if t > 1 else mpmath.mpf(1)


def cond(schedule, t) -> float:
    """1 + L_t with L_t = |log abar_t| (see the module docstring)."""
    return 1.0 + abs(float(schedule.log_alpha_bar(t)))


def a1(x) -> np.ndarray:
    """A scalar as data of shape (1,) (d = 1)."""
    return np.array([float(x)])


# -- strategies ---------------------------------------------------------------------------------

BETA = st.floats(1e-4, 0.5, allow_nan=False, allow_infinity=False)
DATA = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)
NOISE = st.floats(-6.0, 6.0, allow_nan=False, allow_infinity=False)


@st.composite
def schedule_and_t(draw, min_t: int = 1, max_T: int = 8):
    """(betas, t): 1 <= T <= max_T betas in [1e-4, 0.5] (so 1 - abar_t >= 1e-4, L_t <= 5.6) and t in min_t..T."""
    betas = tuple(draw(st.lists(BETA, min_size=max(1, min_t), max_size=max_T)))
    return betas, draw(st.integers(min_t, len(betas)))


@st.composite
def schedule_s_t(draw, max_T: int = 8):
    """(betas, s, t) with 0 <= s < t <= T."""
    betas, t = draw(schedule_and_t(max_T=max_T))
    return betas, draw(st.integers(0, t - 1)), t


# edge cases pinned with @example: T = 1 (t = 1 = T), t = 1 of a longer schedule, t = T with the
# largest betas (abar_T = 2^-8), and t = 2 with the smallest (1 - abar_t ~ 2e-4: the worst
# cancellation in 1 - abar_t and the largest 1 / sqrt(1 - abar_t)).
T1 = ((0.02,), 1)
FIRST = ((1e-4, 0.02, 0.3), 1)
LAST = ((0.5,) * 8, 8)
TINY = ((1e-4, 1e-4), 2)


# -- docs/math.md §4: posterior ------------------------------------------------------------------------

MATH_MU_TILDE = (sp.sqrt(abar_prev) * beta / (1 - abar) * x0
                 + sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt)
MATH_BETA_TILDE = (1 - abar_prev) / (1 - abar) * beta
MATH_MU_TILDE_EPS = (xt - beta / sp.sqrt(1 - abar) * eps) / sp.sqrt(alpha)


def test_posterior_completing_square_matches_math():
    """mu_tilde_t, beta_tilde_t and both coefficients by completing the square = docs/math.md §4;
    Bayes' identity holds exactly (exponents and normalisers); beta_tilde_1 = 0, mu_tilde_1 = x_0."""
    post = S.posterior()
    assert_identical(post.mu_tilde, MATH_MU_TILDE, "mu_tilde_t")
    assert_identical(post.beta_tilde, MATH_BETA_TILDE, "beta_tilde_t")
    assert_identical(post.coef_x0, sp.sqrt(abar_prev) * beta / (1 - abar), "coefficient of x_0")
    assert_identical(post.coef_xt, sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar), "coefficient of x_t")
    assert post.bayes_quadratic_residual == 0, post.bayes_quadratic_residual
    assert sp.simplify(post.bayes_normaliser_ratio - 1) == 0, post.bayes_normaliser_ratio
    assert sp.simplify(post.beta_tilde.subs(abar_prev, 1)) == 0          # t = 1: abar_0 = 1
    assert sp.simplify(post.mu_tilde.subs(abar_prev, 1) - x0) == 0


@given(case=schedule_and_t(), x0v=DATA, xtv=DATA)
@example(case=T1, x0v=1.5, xtv=-2.0)
@example(case=FIRST, x0v=-3.0, xtv=7.0)
@example(case=LAST, x0v=10.0, xtv=-10.0)
@example(case=TINY, x0v=0.3, xtv=0.30001)
def test_posterior_mean_and_beta_tilde_match_reference(case, x0v, xtv):
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    a, ap = exact_step(betas, t)
    post = S.posterior()
    mu = exact((alpha, abar_prev, x0, xt), post.mu_tilde, a, ap, x0v, xtv)
    c0 = exact((alpha, abar_prev), post.coef_x0, a, ap)
    c1 = exact((alpha, abar_prev), post.coef_xt, a, ap)
    got = float(ref.posterior_mean(schedule, a1(x0v), a1(xtv), t)[0])
    # each coefficient: <= 6 table entries and operations, each <= U (1 + L_t) relative; then two
    # products and a sum of terms of size |c0 x0|, |c1 xt|: 16 U (1 + L_t) (|c0 x0| + |c1 xt|)
    tol = 16 * U * cond(schedule, t) * (abs(c0 * x0v) + abs(c1 * xtv))
    assert_close(f"posterior_mean t={t} betas={betas}", got, mu, tol + FLOOR)
    bt = exact((alpha, abar_prev), post.beta_tilde, a, ap)
    got_bt = float(schedule.beta_tilde(t))
    # beta_tilde = (1 - abar_{t-1}) / (1 - abar_t) beta_t: three table entries, two operations, plus
    # rounding the exact value: 8 U (1 + L_t) relative; an exact 0 at t = 1 must be an exact 0
    tol_bt = 8 * U * cond(schedule, t) * bt
    assert_close(f"beta_tilde t={t} betas={betas}", got_bt, bt, tol_bt + FLOOR)


# -- docs/math.md §4, §5: noise form, x_0 from eps, score -----------------------------------------------

def test_noise_form_matches_math():
    """x_0 solved from x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is docs/math.md §5's; the x_0-form
    mu_tilde with that x_0 substituted is docs/math.md §4's noise form."""
    nf = S.noise_form()
    assert_identical(nf.x0_from_eps, (xt - sp.sqrt(1 - abar) * eps) / sp.sqrt(abar), "x_0 from eps")
    assert_identical(nf.mu_tilde_eps, MATH_MU_TILDE_EPS, "noise form of mu_tilde_t")
    assert eps not in S.posterior().mu_tilde.free_symbols and x0 not in nf.mu_tilde_eps.free_symbols


@given(case=schedule_and_t(), xtv=DATA, epsv=NOISE)
@example(case=T1, xtv=1.0, epsv=-1.0)
@example(case=LAST, xtv=-10.0, epsv=6.0)
@example(case=TINY, xtv=0.01, epsv=6.0)
def test_noise_form_and_x0_from_eps_match_reference(case, xtv, epsv):
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    a, ap = exact_step(betas, t)
    nf = S.noise_form()
    args = (alpha, abar_prev, xt, eps)
    c = cond(schedule, t)
    with mpmath.workdps(DPS):
        sa, s1, k = mpmath.sqrt(a * ap), mpmath.sqrt(1 - a * ap), (1 - a) / mpmath.sqrt(1 - a * ap)
        sqrt_alpha = mpmath.sqrt(a)
    mu = exact(args, nf.mu_tilde_eps, a, ap, xtv, epsv)
    got = float(ref.posterior_mean_from_eps(schedule, a1(xtv), t, a1(epsv))[0])
    # (x_t - beta / sqrt(1 - abar) eps) / sqrt(alpha): the coefficient from 3 table entries, then
    # 3 operations on terms of size |x_t| / sqrt(alpha) and k |eps| / sqrt(alpha): 16 U (1 + L_t) x that
    tol = 16 * U * c * float((abs(xtv) + k * abs(epsv)) / sqrt_alpha)
    assert_close(f"posterior_mean_from_eps t={t} betas={betas}", got, mu, tol + FLOOR)
    x0e = exact(args, nf.x0_from_eps, a, ap, xtv, epsv)
    got_x0 = float(ref.x0_from_eps(schedule, a1(xtv), t, a1(epsv))[0])
    # (x_t - sqrt(1 - abar) eps) / sqrt(abar): same count, terms |x_t| / sqrt(abar), sqrt(1 - abar) |eps| / sqrt(abar)
    tol_x0 = 16 * U * c * float((abs(xtv) + s1 * abs(epsv)) / sa)
    assert_close(f"x0_from_eps t={t} betas={betas}", got_x0, x0e, tol_x0 + FLOOR)


def test_score_noise_matches_math():
    """grad_{x_t} log q(x_t | x_0) at x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is -eps / sqrt(1 - abar)
    (docs/math.md §5), and it does not depend on x_0."""
    sn = S.score_noise()
    assert_identical(sn.score_xt, -(xt - sp.sqrt(abar) * x0) / (1 - abar), "score of q(x_t | x_0)")
    assert_identical(sn.score_eps, -eps / sp.sqrt(1 - abar), "score in terms of eps")
    assert x0 not in sn.score_eps.free_symbols


@given(case=schedule_and_t(), x0v=DATA, epsv=NOISE)
@example(case=T1, x0v=1.0, epsv=2.0)
@example(case=LAST, x0v=-10.0, epsv=-6.0)
@example(case=TINY, x0v=5.0, epsv=1e-3)
def test_score_from_eps_matches_reference(case, x0v, epsv):
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    a, ap = exact_step(betas, t)
    sn = S.score_noise()
    c = cond(schedule, t)
    s1 = math.sqrt(float(schedule.one_minus_alpha_bar(t)))
    score = exact((alpha, abar_prev, eps), sn.score_eps, a, ap, epsv)
    got = float(ref.score_from_eps(schedule, a1(epsv), t)[0])
    # -eps / sqrt(1 - abar): one table entry, a sqrt and a division, and rounding the exact value
    tol = 8 * U * c * abs(epsv) / s1
    assert_close(f"score_from_eps t={t} betas={betas}", got, score, tol + FLOOR)
    # the x_t form at a float x_t, against the reference's eps_from_x0 followed by score_from_eps:
    # eps_from_x0 cancels terms of size |x_t| and sqrt(abar) |x_0| over sqrt(1 - abar), and the
    # score divides by sqrt(1 - abar) again: 16 U (1 + L_t) (|x_t| + sqrt(abar) |x_0|) / (1 - abar)
    xtf = float(ref.q_sample(schedule, a1(x0v), t, a1(epsv))[0])
    score_xt = exact((alpha, abar_prev, xt, x0), sn.score_xt, a, ap, xtf, x0v)
    got_xt = float(ref.score_from_eps(schedule, ref.eps_from_x0(schedule, a1(xtf), t, a1(x0v)), t)[0])
    tol_xt = 16 * U * c * (abs(xtf) + abs(x0v)) / s1 ** 2
    assert_close(f"score of q(x_t | x_0) t={t} betas={betas}", got_xt, score_xt, tol_xt + FLOOR)


# -- docs/math.md §3: forward marginal, q(x_t | x_s) ----------------------------------------------------

def test_compose_rule_and_forward_marginal_induction():
    """Mean and variance of a sum of independent normals (sympy.stats) give the composition rule;
    the induction step alpha_t (1 - abar_{t-1}) + beta_t = 1 - abar_t (seeds/002_7b2066bcb9a0a2e2.txt, 2.1) follows."""
    coef, var = S.compose_rule()
    a_, b_, c_, d_ = sp.symbols("a b c d", positive=True)
    assert_identical(coef(a_, b_, c_, d_), a_ * c_, "composed mean coefficient")
    assert_identical(var(a_, b_, c_, d_), a_ ** 2 * d_ + b_, "composed variance")
    m = S.forward_marginal_step()
    assert_identical(m.variance_unsimplified, alpha * (1 - abar_prev) + beta, "composed variance")
    assert_identical(m.coef, sp.sqrt(abar), "sqrt(abar_t)")
    assert_identical(m.variance, 1 - abar, "1 - abar_t")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_forward_chain_matches_math(n):
    """Composing n kernels from x_s gives N(sqrt(abar_t / abar_s) x_s, 1 - abar_t / abar_s),
    with abar_t / abar_s = prod_{s < r <= t} alpha_r."""
    ch = S.forward_chain(n)
    ratio = sp.Mul(*ch.alphas)
    assert_identical(ch.coef, sp.sqrt(ratio), f"chain of {n}: mean coefficient")
    assert_identical(ch.variance, 1 - ratio, f"chain of {n}: variance")


def test_q_xt_given_xs_from_marginals_matches_math():
    sb = S.q_xt_given_xs_from_marginals()
    ab_s, ab_t = sb.symbols["abar_s"], sb.symbols["abar_t"]
    assert_identical(sb.coef, sp.sqrt(ab_t / ab_s), "coefficient of q(x_t | x_s)")
    assert_identical(sb.variance, 1 - ab_t / ab_s, "variance of q(x_t | x_s)")


@given(case=schedule_and_t(), x0v=DATA)
@example(case=T1, x0v=1.0)
@example(case=LAST, x0v=-10.0)
@example(case=TINY, x0v=3.0)
def test_forward_marginal_matches_reference(case, x0v):
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    a, ap = exact_step(betas, t)
    m = S.forward_marginal_step()
    mean = exact((alpha, abar_prev), m.coef, a, ap) * x0v      # the product by x_0 adds <= U
    var = exact((alpha, abar_prev), m.variance, a, ap)
    got = ref.q_xt_given_x0(schedule, a1(x0v), t)
    c = cond(schedule, t)
    # sqrt(abar_t) x_0 and 1 - abar_t: one table entry (<= 2 U (1 + L_t)), one operation, the rounding
    # of the exact value and of the product above: 8 U (1 + L_t) relative
    assert_close(f"q(x_t | x_0) mean t={t} betas={betas}", float(got.mean[0]), mean, 8 * U * c * abs(mean) + FLOOR)
    assert_close(f"q(x_t | x_0) variance t={t} betas={betas}", float(got.variance[0]), var, 8 * U * c * var + FLOOR)


@given(case=schedule_s_t(), xsv=DATA)
@example(case=(T1[0], 0, 1), xsv=2.0)
@example(case=(LAST[0], 7, 8), xsv=-1.0)
@example(case=(LAST[0], 0, 8), xsv=10.0)
@example(case=(TINY[0], 1, 2), xsv=0.5)
def test_q_xt_given_xs_matches_reference(case, xsv):
    """The chain (n = t - s kernels) and the two-marginal solution against reference.q_xt_given_xs."""
    betas, s, t = case
    schedule = ref.Schedule(np.array(betas))
    ch = S.forward_chain(t - s)
    with mpmath.workdps(DPS):
        alphas = [1 - mpmath.mpf(b) for b in betas]
        abar_s, abar_t = mpmath.fprod(alphas[:s]), mpmath.fprod(alphas[:t])
    mean = exact(ch.alphas, ch.coef, *alphas[s:t]) * xsv
    var = exact(ch.alphas, ch.variance, *alphas[s:t])
    sb = S.q_xt_given_xs_from_marginals()
    sym = (sb.symbols["abar_s"], sb.symbols["abar_t"])
    mean_m = exact(sym, sb.coef, abar_s, abar_t) * xsv
    var_m = exact(sym, sb.variance, abar_s, abar_t)
    got = ref.q_xt_given_xs(schedule, a1(xsv), s, t)
    gm, gv = float(got.mean[0]), float(got.variance[0])
    # the reference: exp(log ratio / 2) x_s and -expm1(log ratio), log ratio from compensated prefix
    # sums (absolute error O(U |log ratio|) <= O(U L_t)); with the roundings of the exact values:
    # 8 U (1 + L_t) relative
    c = cond(schedule, t)
    for name, m_, v_ in (("chain", mean, var), ("marginals", mean_m, var_m)):
        assert_close(f"q(x_t | x_s) mean ({name}) s={s} t={t} betas={betas}", gm, m_, 8 * U * c * abs(m_) + FLOOR)
        assert_close(f"q(x_t | x_s) variance ({name}) s={s} t={t} betas={betas}", gv, v_, 8 * U * c * v_ + FLOOR)


# -- docs/math.md §6: Gaussian KL, lambda_t and C_t, L_0 ------------------------------------------------

def test_gaussian_kl_by_integration_matches_math():
    g = S.gaussian_kl()
    m1, v1, m2, v2 = (g.symbols[k] for k in ("m1", "v1", "m2", "v2"))
    expected = (sp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2
    assert_identical(g.kl, expected, "KL(N(m1, v1) || N(m2, v2))")
    assert sp.simplify(g.kl.subs({m2: m1, v2: v1})) == 0


@given(m1v=DATA, m2v=DATA, v1v=st.floats(1e-3, 1e3), v2v=st.floats(1e-3, 1e3))
@example(m1v=0.0, m2v=0.0, v1v=1.0, v2v=1.0)                 # KL = 0 exactly
@example(m1v=1.0, m2v=1.0, v1v=1.0, v2v=1.0 + 2 ** -40)      # v1 ~ v2: KL ~ u^2 / 4
@example(m1v=-10.0, m2v=10.0, v1v=1e-3, v2v=1e3)             # disparate variances
def test_gaussian_kl_matches_reference(m1v, m2v, v1v, v2v):
    g = S.gaussian_kl()
    kl = exact(tuple(g.symbols[k] for k in ("m1", "v1", "m2", "v2")), g.kl, m1v, v1v, m2v, v2v)
    got = float(ref.kl_normal(m1v, v1v, m2v, v2v))
    r = v1v / v2v
    # 0.5 ((m1 - m2)^2 / v2 + g(r - 1)): the mean part has 4 roundings relative to (m1 - m2)^2 / v2;
    # g's argument (v1 - v2) / v2 carries U (r + 1), and g(u) = u - (log v1 - log v2) (|u| >= 0.1)
    # cancels terms of size |u| + |log v1| + |log v2|; 16 U times the sum of those sizes
    scale = (m1v - m2v) ** 2 / v2v + r + 1 + abs(math.log(v1v)) + abs(math.log(v2v))
    tol = 16 * U * scale if abs(r - 1) >= 0.1 else 16 * U * ((m1v - m2v) ** 2 / v2v + kl + U)
    # (for |u| < 0.1 the reference's series is accurate relative to g itself; +U: floor at KL = 0)
    assert_close("kl_normal", got, kl, tol + FLOOR)


MATH_LAMBDA = beta ** 2 / (2 * sigma2 * alpha * (1 - abar))
MATH_C = (MATH_BETA_TILDE / sigma2 - 1 - sp.log(MATH_BETA_TILDE / sigma2)) / 2     # d = 1


def test_noise_kl_lambda_and_C_match_math():
    """KL(q(x_{t-1}|x_t,x_0) || N(mu_theta, sigma^2)) = lambda_t (eps - eps_theta)^2 + C_t exactly
    (residual 0), with lambda_t and C_t those of docs/math.md §6; C_t = 0 at sigma^2 = beta_tilde_t."""
    nk = S.noise_kl()
    assert nk.residual == 0, nk.residual
    assert_identical(nk.lam, MATH_LAMBDA, "lambda_t")
    assert_identical(nk.C, MATH_C, "C_t", force_log=True)
    assert sp.simplify(nk.C.subs(sigma2, S.posterior().beta_tilde)) == 0


@given(case=schedule_and_t(min_t=2), x0v=DATA, epsv=NOISE, eps_thv=NOISE,
       kind=st.sampled_from(["fixed_small", "fixed_large", "learned_range"]), v=st.floats(0.0, 1.0))
@example(case=((1e-4, 0.02), 2), x0v=1.0, epsv=0.5, eps_thv=0.5, kind="fixed_small", v=0.0)
@example(case=TINY, x0v=-10.0, epsv=6.0, eps_thv=-6.0, kind="fixed_large", v=0.0)
@example(case=LAST, x0v=10.0, epsv=-6.0, eps_thv=6.0, kind="learned_range", v=0.3)
def test_noise_kl_matches_reference_kl_term(case, x0v, epsv, eps_thv, kind, v):
    """lambda_t (eps - eps_theta)^2 + C_t against reference.kl_term with the eps-model's mean and variance."""
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    eps_fn = ((lambda x, tt: (np.full_like(x, eps_thv), np.full_like(x, v))) if kind == "learned_range"
              else (lambda x, tt: np.full_like(x, eps_thv)))
    model = ref.eps_model(schedule, eps_fn, variance=kind)
    xtv = ref.q_sample(schedule, a1(x0v), t, a1(epsv))
    mean, var = model(xtv[None], t)
    mean, var = mean[0], np.broadcast_to(var, (1, 1))[0]
    got = float(ref.kl_term(schedule, a1(x0v), xtv, t, mean, var))    # summed over d = 1: 0-d
    a, ap = exact_step(betas, t)
    nk = S.noise_kl()
    s2 = float(var[0])                                          # the model's variance: an exact input
    with mpmath.workdps(DPS):
        ab = a * ap
        eps_true = (mpmath.mpf(float(xtv[0])) - mpmath.sqrt(ab) * x0v) / mpmath.sqrt(1 - ab)
        lam = mp_fn((alpha, abar_prev, sigma2), nk.lam)(a, ap, mpmath.mpf(s2))
        C = mp_fn((alpha, abar_prev, sigma2), nk.C)(a, ap, mpmath.mpf(s2))
        kl = float(lam * (eps_true - eps_thv) ** 2 + C)
        k = float((1 - a) / mpmath.sqrt(a * (1 - ab)))          # beta / sqrt(alpha (1 - abar))
        c0 = float(mpmath.sqrt(ap) * (1 - a) / (1 - ab))
        c1 = float(mpmath.sqrt(a) * (1 - ap) / (1 - ab))
        r = float(mp_fn((alpha, abar_prev), S.posterior().beta_tilde)(a, ap) / s2)
        diff = float(k * (eps_true - eps_thv))                     # exact mu_tilde - mu_theta
    c = cond(schedule, t)
    # The reference subtracts two means computed separately (x_0 form and eps form): each carries
    # <= 16 U (1 + L_t) times the sizes of its terms; the KL's mean part then errs by
    # |diff| delta / sigma^2 + delta^2 / sigma^2, and its variance part g(r - 1) by
    # 16 U (1 + L_t) (1 + r + |log r|) (beta_tilde from 3 table entries, u - log terms).
    delta = 16 * U * c * (abs(c0 * x0v) + abs(c1 * xtv[0]) + abs(xtv[0]) / math.sqrt(a) + k * abs(eps_thv))
    tol = abs(diff) * delta / s2 + delta ** 2 / s2 + 16 * U * c * (1 + r + abs(math.log(r)))
    assert_close(f"kl_term vs lambda_t (eps - eps_theta)^2 + C_t, t={t} betas={betas} kind={kind}", got, kl, tol + FLOOR)
    if kind != "learned_range":                 # lambda_t itself: from 4 table entries, 16 U (1 + L_t) relative
        got_lam = float(ref.noise_error_weight(schedule, t, kind))
        assert_close(f"noise_error_weight t={t} betas={betas} kind={kind}", got_lam, float(lam),
                     16 * U * c * float(lam) + FLOOR)


def test_decoder_nll_matches_math_and_seed003_weight():
    """-log N(x_0; mu_theta(x_1, 1), sigma_1^2) = beta_1 / (2 sigma_1^2 alpha_1) (eps - eps_theta)^2
    + log(2 pi sigma_1^2) / 2 (docs/math.md §6); the weight is lambda_1 = beta_1^2 / (2 alpha_1 (1 - abar_1)
    sigma_1^2), and not seeds/003_41986d511ba79145.txt's (2.6) value with an extra factor 2 in the denominator."""
    dn = S.decoder_nll_continuous()
    assert dn.residual == 0, dn.residual
    assert x0 not in dn.nll.free_symbols
    assert_identical(dn.weight, beta / (2 * sigma2 * alpha), "weight of (eps - eps_theta)^2 in L_0")
    assert_identical(dn.const, sp.log(2 * sp.pi * sigma2) / 2, "constant of L_0")
    assert_identical(dn.weight, S.noise_kl().lam.subs(abar_prev, 1), "L_0 weight = lambda_1")
    assert differs(dn.weight, beta / (4 * sigma2 * alpha)), "seeds/003_41986d511ba79145.txt's extra factor 2 must be rejected"


@given(case=schedule_and_t(), x0v=DATA, epsv=NOISE, eps_thv=NOISE,
       kind=st.sampled_from(["fixed_small", "fixed_large"]))
@example(case=T1, x0v=1.0, epsv=0.5, eps_thv=0.5, kind="fixed_small")
@example(case=((1e-4, 0.5), 1), x0v=-10.0, epsv=6.0, eps_thv=-6.0, kind="fixed_large")
@example(case=((0.5, 0.5), 1), x0v=10.0, epsv=-6.0, eps_thv=6.0, kind="fixed_small")
def test_decoder_nll_matches_reference(case, x0v, epsv, eps_thv, kind):
    """The derived L_0 integrand at t = 1 against reference.decoder_nll with the eps-model's mean."""
    betas, _ = case
    schedule = ref.Schedule(np.array(betas))
    model = ref.eps_model(schedule, lambda x, tt: np.full_like(x, eps_thv), variance=kind)
    x1 = ref.q_sample(schedule, a1(x0v), 1, a1(epsv))
    mean, var = model(x1[None], 1)
    s2 = float(var)
    got = float(ref.decoder_nll(a1(x0v), mean[0], np.full(1, s2)))   # summed over d = 1: 0-d
    dn = S.decoder_nll_continuous()
    a, _ = exact_step(betas, 1)
    with mpmath.workdps(DPS):
        eps_true = (mpmath.mpf(float(x1[0])) - mpmath.sqrt(a) * x0v) / mpmath.sqrt(1 - a)
        w = mp_fn((alpha, sigma2), dn.weight)(a, mpmath.mpf(s2))
        nll = float(w * (eps_true - eps_thv) ** 2 + mp_fn((sigma2,), dn.const)(mpmath.mpf(s2)))
        diff = float(mpmath.sqrt((1 - a) / a) * (eps_true - eps_thv))   # exact x_0 - mu_theta (up to sign)
    c = cond(schedule, 1)
    # the model mean (x_1 - sqrt(beta_1) eps_theta) / sqrt(alpha_1) errs by 16 U (1 + L_1) x the sizes of
    # its terms, and x_0 - mean by delta = that + U |x_0|; the squared part then errs by
    # |diff| delta / sigma^2 + delta^2 / sigma^2 from its input, and the evaluation
    # (log(2 pi) + log sigma^2 + (x_0 - mean)^2 / sigma^2) / 2 adds <= 4 roundings of its three parts' sizes
    delta = 16 * U * c * (abs(x1[0]) + math.sqrt(betas[0]) * abs(eps_thv)) / math.sqrt(1 - betas[0]) + U * abs(x0v)
    tol = (abs(diff) * delta / s2 + delta ** 2 / s2
           + 4 * U * (math.log(2 * math.pi) + abs(math.log(s2)) + diff ** 2 / s2))
    assert_close(f"decoder_nll betas={betas} kind={kind}", got, nll, tol + FLOOR)
    got_w = float(ref.noise_error_weight(schedule, 1, kind))      # lambda_1: the decoder's weight, 3 table entries
    assert_close(f"noise_error_weight t=1 betas={betas} kind={kind}", got_w, float(w), 16 * U * c * float(w) + FLOOR)


# -- docs/math.md §7: Tweedie ------------------------------------------------------------------------------

def test_tweedie_matches_math():
    """Gaussian prior N(m, s2): the conjugate E[x_0 | x_t] (completing the square in x_0) equals
    Tweedie's (x_t + (1 - abar) score) / sqrt(abar); q_t = N(sqrt(abar) m, abar s2 + 1 - abar);
    E[eps | x_t] = -sqrt(1 - abar) score (docs/math.md §7)."""
    tw = S.tweedie()
    m, s2, ab = tw.symbols["m"], tw.symbols["s2"], tw.symbols["abar"]
    assert tw.marginal_residual == 0, tw.marginal_residual
    assert_identical(tw.marginal_mean, sp.sqrt(ab) * m, "mean of q_t")
    assert_identical(tw.marginal_var, ab * s2 + 1 - ab, "variance of q_t")
    assert_identical(tw.tweedie, tw.posterior_mean, "Tweedie's formula vs the conjugate posterior mean")
    assert_identical(tw.posterior_mean, m + sp.sqrt(ab) * s2 / (ab * s2 + 1 - ab) * (xt - sp.sqrt(ab) * m),
                     "conjugate posterior mean")
    assert_identical(tw.posterior_var, s2 * (1 - ab) / (ab * s2 + 1 - ab), "conjugate posterior variance")
    assert_identical(tw.optimal_eps, -sp.sqrt(1 - ab) * tw.score, "E[eps | x_t] = -sqrt(1 - abar) score")


@given(case=schedule_and_t(), mv=st.floats(-3.0, 3.0), s2v=st.floats(1e-2, 10.0), xtv=DATA)
@example(case=T1, mv=0.0, s2v=1.0, xtv=1.0)                   # s2 = 1: q_t = N(sqrt(abar) m, 1)
@example(case=TINY, mv=3.0, s2v=1e-2, xtv=-10.0)
@example(case=LAST, mv=-3.0, s2v=10.0, xtv=10.0)
def test_tweedie_matches_reference_mixture(case, mv, s2v, xtv):
    """The derived posterior mean, score and E[eps | x_t] against a one-component reference.GaussianMixture."""
    betas, t = case
    schedule = ref.Schedule(np.array(betas))
    gm = ref.GaussianMixture([1.0], [[mv]], [[[s2v]]])
    tw = S.tweedie()
    args = (tw.symbols["abar"], tw.symbols["m"], tw.symbols["s2"], xt)
    with mpmath.workdps(DPS):
        a, ap = exact_step(betas, t)
        ab = a * ap
    post = exact(args, tw.posterior_mean, ab, mv, s2v, xtv)
    tweedie = exact(args, tw.tweedie, ab, mv, s2v, xtv)
    score = exact(args, tw.score, ab, mv, s2v, xtv)
    opt_eps = exact(args, tw.optimal_eps, ab, mv, s2v, xtv)
    x = np.array([[xtv]])
    got_post = float(gm.posterior_mean_x0(x, schedule, t)[0, 0])
    got_score = float(gm.score(x, schedule, t)[0, 0])
    got_eps = float(gm.optimal_eps(x, schedule, t)[0, 0])
    c = cond(schedule, t)
    sa, om = math.sqrt(float(ab)), float(1 - ab)
    ev = float(ab) * s2v + om                  # variance of q_t
    centred = abs(xtv) + sa * abs(mv)          # sizes of the terms of x_t - sqrt(abar) m
    # score = -(x_t - sqrt(abar) m) / ev: the difference errs by 4 U (1 + L_t) centred, ev by 4 U (1 + L_t)
    # relative; 16 U (1 + L_t) centred / ev covers both and the final rounding
    tol_score = 16 * U * c * centred / ev
    assert_close(f"GaussianMixture.score t={t} betas={betas}", got_score, score, tol_score + FLOOR)
    # E[x_0 | x_t] = m + gain (x_t - sqrt(abar) m), gain = sqrt(abar) s2 / ev: same count over |m| + gain centred
    tol_post = 16 * U * c * (abs(mv) + sa * s2v / ev * centred)
    assert_close(f"GaussianMixture.posterior_mean_x0 t={t} betas={betas}", got_post, post, tol_post + FLOOR)
    assert_close("Tweedie vs conjugate mean", tweedie, post, 2 * U * abs(post) + FLOOR)  # both exact: 2 roundings
    # eps* = -sqrt(1 - abar) score: the score's bound times sqrt(1 - abar), plus two roundings
    tol_eps = math.sqrt(om) * tol_score + 4 * U * abs(opt_eps)
    assert_close(f"GaussianMixture.optimal_eps t={t} betas={betas}", got_eps, opt_eps, tol_eps + FLOOR)


# -- docs/math.md §8: GAN -------------------------------------------------------------------------------

def test_gan_optimal_discriminator_symbolic():
    """argmax_y a log y + b log(1 - y) = a / (a + b) in (0, 1), a strict maximum (f'' < 0 there)."""
    d = S.optimal_discriminator()
    a, b = d.symbols["a"], d.symbols["b"]
    assert_identical(d.y_star, a / (a + b), "optimal discriminator")
    assert d.y_star.is_positive is True and sp.factor(1 - d.y_star).is_positive is True   # b / (a + b)
    assert d.second_derivative_at_star.is_negative is True, d.second_derivative_at_star
    assert_identical(d.second_derivative_at_star, -(a + b) ** 3 / (a * b), "f''(y*)")


def test_gan_jsd_identity_symbolic():
    """Pointwise: a log(a/(a+b)) + b log(b/(a+b)) = a log(2a/(a+b)) + b log(2b/(a+b)) - (a+b) log 2;
    summed over 3 support points: max_D V = 2 JSD - log 4 exactly when p and q sum to 1, and not
    seeds/001_afc8e6d75670c661.txt's JSD - log 4."""
    j = S.gan_jsd(3)
    assert j.pointwise_residual == 0, j.pointwise_residual
    assert j.residual == 0, j.residual
    assert_identical(j.residual_unnormalised, (2 - sum(j.symbols["p"]) - sum(j.symbols["q"])) * sp.log(2),
                     "max V - (2 JSD - log 4) before normalisation")
    jsd = (j.two_jsd_minus_log4 + sp.log(4)) / 2
    assert differs(j.max_v, jsd - sp.log(4), force_log=True), "seeds/001_afc8e6d75670c661.txt's JSD - log 4 must be rejected"


@given(a=st.floats(1e-3, 1e3), b=st.floats(1e-3, 1e3))
@example(a=1.0, b=1.0)
@example(a=1e-3, b=1e3)
@example(a=1e3, b=1e-3)
def test_gan_optimal_discriminator_matches_scipy(a, b):
    d = S.optimal_discriminator()
    sym = (d.symbols["a"], d.symbols["b"])
    y_star = exact(sym, d.y_star, a, b)
    f_star = exact(sym, d.max_value, a, b)
    # root of f'(y) = a / y - b / (1 - y) by brentq (rtol = 4 eps = 8 U, its minimum): its stopping
    # rule gives 8 U y*; rounding in f' (a / y, b / (1 - y), their difference: |f'| noise 3 U (a + b)
    # over |f''(y*)| = (a + b)^3 / (a b)) moves the root by 3 U y* (1 - y*), the rounding of 1 - y
    # by U y*, the rounding of y* adds U / 2: 12.5 U y* in all, asserted as 16 U y*
    root = brentq(lambda y: a / y - b / (1 - y), 1e-12, 1 - 1e-12, xtol=1e-300, rtol=8 * U, maxiter=500)
    assert_close(f"brentq root of f' vs a / (a + b), a={a!r} b={b!r}", root, y_star, 16 * U * y_star + FLOOR)
    # the derived point is at least as good as scipy's bounded minimiser of -f (value within the
    # rounding of f: 8 U (|a log y| + |b log(1 - y)|))
    f = lambda y: a * math.log(y) + b * math.log1p(-y)                    # noqa: E731
    opt = minimize_scalar(lambda y: -f(y), bounds=(1e-12, 1 - 1e-12), method="bounded",
                          options={"xatol": 1e-14})
    fscale = abs(a * math.log(y_star)) + abs(b * math.log1p(-y_star))
    assert f(opt.x) <= f_star + 8 * U * fscale, (a, b, opt.x, f(opt.x), y_star, f_star)
    assert_close(f"f(y*) vs the derived maximum, a={a!r} b={b!r}", f(y_star), f_star, 8 * U * fscale + FLOOR)


def js_divergence(p, q) -> float:
    """JSD(p, q) = KL(p || m) / 2 + KL(q || m) / 2, m = (p + q) / 2, nats, by scipy.special.rel_entr.

    (Not scipy.spatial.distance.jensenshannon: it returns sqrt(JSD), which is nan when rounding
    makes the JSD of two nearly equal distributions slightly negative.)
    """
    m = (p + q) / 2
    return float(np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / 2


@st.composite
def two_distributions(draw):
    n = draw(st.integers(2, 6))
    w = st.floats(1e-3, 1.0)
    p, q = (np.array(draw(st.lists(w, min_size=n, max_size=n))) for _ in range(2))
    return p / p.sum(), q / q.sum()


@given(pq=two_distributions())
@example(pq=(np.array([0.5, 0.5]), np.array([0.5, 0.5])))          # p = q: max V = -log 4
@example(pq=(np.array([0.999, 0.001]), np.array([0.001, 0.999])))
def test_gan_max_v_equals_two_jsd_minus_log4_numerically(pq):
    """sum p log D* + q log(1 - D*) with D* = p / (p + q) equals 2 JSD - log 4 (JSD from
    scipy.special.rel_entr, natural log) and the derived symbolic sum evaluated exactly."""
    p, q = pq
    n = p.size
    d_star = p / (p + q)
    max_v = float(np.sum(p * np.log(d_star) + q * np.log1p(-d_star)))
    jsd = js_divergence(p, q)
    terms = float(np.sum(np.abs(p * np.log(d_star)) + np.abs(q * np.log1p(-d_star))))
    # both sides: n terms of size <= |p log D*| + |q log(1 - D*)| (and the same for the KLs to m,
    # which are <= those + (p + q) log 2), each term with <= 6 roundings, summed; the normalisation
    # of p and q (sum 1 within n U each) shifts the identity by (2 - sum p - sum q) log 2 <= 2 n U
    tol = 8 * U * n * (2 * terms + math.log(4)) + 2 * n * U
    assert_close(f"max_D V vs 2 JSD - log 4 (scipy), p={p} q={q}", max_v, 2 * jsd - math.log(4), tol + FLOOR)
    j = S.gan_jsd(n)
    syms = (*j.symbols["p"], *j.symbols["q"])
    exact_max_v = exact(syms, j.max_v, *p, *q)
    assert_close(f"max_D V vs derived sum, p={p} q={q}", max_v, exact_max_v, 8 * U * n * terms + U * abs(exact_max_v) + FLOOR)
    exact_target = exact(syms, j.two_jsd_minus_log4, *p, *q)
    # both exact: they differ by (2 - sum p - sum q) log 2 only, |sum p - 1| <= n U after p / p.sum()
    assert_close(f"derived max V vs derived 2 JSD - log 4, p={p} q={q}", exact_max_v, exact_target, 4 * n * U + FLOOR)


def test_gan_seed001_constant_is_wrong_numerically():
    """seeds/001_afc8e6d75670c661.txt theorem 3 writes C(G) = JSD - log 4; at p != q it is off by JSD > 0 (docs/math.md §9)."""
    p, q = np.array([0.9, 0.1]), np.array([0.2, 0.8])
    d_star = p / (p + q)
    max_v = float(np.sum(p * np.log(d_star) + q * np.log(1 - d_star)))
    jsd = js_divergence(p, q)
    tol = 64 * U                                # O(1) terms, a few roundings each (see the test above)
    assert abs(max_v - (2 * jsd - math.log(4))) <= tol
    assert abs(max_v - (jsd - math.log(4))) > 1e6 * tol, (max_v, jsd)   # JSD = 0.2754 here


# -- the identity check has teeth ------------------------------------------------------------------

def test_identity_check_rejects_wrong_formulas():
    """Near-miss formulas (index slips, the seeds' errata) are reported as different, so the
    symbolic tests above can fail."""
    post, nf, nk = S.posterior(), S.noise_form(), S.noise_kl()
    # abar_t where abar_{t-1} belongs (off by one in the cumulative product)
    assert differs(post.beta_tilde, (1 - abar) / (1 - abar) * beta)
    assert differs(post.mu_tilde, sp.sqrt(abar) * beta / (1 - abar) * x0
                   + sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt)
    # standard deviation where a variance belongs
    assert differs(nf.mu_tilde_eps, (xt - beta / (1 - abar) * eps) / sp.sqrt(alpha))
    # seeds/003_41986d511ba79145.txt (2.6): an extra factor 2 in lambda's denominator
    assert differs(nk.lam, beta ** 2 / (4 * sigma2 * alpha * (1 - abar)))
    # KL with its arguments swapped
    g = S.gaussian_kl()
    m1, v1, m2, v2 = (g.symbols[k] for k in ("m1", "v1", "m2", "v2"))
    assert differs(g.kl, (sp.log(v1 / v2) + (v2 + (m1 - m2) ** 2) / v1 - 1) / 2)
    with pytest.raises(AssertionError):
        assert_identical(post.beta_tilde, beta, "beta_tilde vs beta")
