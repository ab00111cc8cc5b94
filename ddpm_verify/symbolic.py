"""Symbolic derivations of the DDPM results in docs/math.md, with sympy, from first principles.

Each function *derives* one result (completing a square, integrating, solving, taking
expectations of independent normals) rather than transcribing the formula, and returns the
derived sympy expressions together with the symbols they use. `properties/test_symbolic.py`
compares every result with docs/math.md's formula (exact symbolic equality) and with the float64
`reference` (lambdified, at Hypothesis-drawn points).

Conventions (docs/math.md §1): paper indexing; one data dimension (d = 1) throughout, which suffices
because every covariance is isotropic, so the d-dimensional statements are sums of d copies.
The schedule enters through two positive symbols, ``alpha`` = alpha_t and ``abar_prev`` =
abar_{t-1}; then beta_t = 1 - alpha and abar_t = alpha * abar_prev. The valid domain is
0 < alpha < 1, 0 < abar_prev <= 1 (sympy knows only positivity; where a step needs the rest,
e.g. ``expand_log(force=True)`` on log(beta_tilde / sigma^2), the docstring says so).

Every derivation is cached (`functools.lru_cache`): it runs once per session. The returned
objects are NamedTuples of immutable sympy expressions, safe to share.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import sympy as sp
from sympy.stats import E as expectation
from sympy.stats import Normal, variance as rv_variance

# -- the symbols shared by every derivation -----------------------------------------------------

#: alpha_t and abar_{t-1}: the two schedule quantities every step-t formula depends on
alpha = sp.Symbol("alpha_t", positive=True)
abar_prev = sp.Symbol("abar_tm1", positive=True)
#: data, noise and model outputs (one dimension)
x0 = sp.Symbol("x_0", real=True)
xt = sp.Symbol("x_t", real=True)
x_prev = sp.Symbol("x_tm1", real=True)
eps = sp.Symbol("epsilon", real=True)
eps_theta = sp.Symbol("epsilon_theta", real=True)
sigma2 = sp.Symbol("sigma_t2", positive=True)

beta = 1 - alpha                  # beta_t
abar = alpha * abar_prev          # abar_t = alpha_t abar_{t-1}


def log_normal(x, mean, var):
    """log N(x; mean, var) = -log(2 pi var) / 2 - (x - mean)^2 / (2 var) (one dimension, nats)."""
    return -sp.log(2 * sp.pi * var) / 2 - (x - mean) ** 2 / (2 * var)


class Square(NamedTuple):
    """expr = -(var - mean)^2 / (2 variance) + rest, with `rest` free of the variable."""

    mean: sp.Expr
    variance: sp.Expr
    rest: sp.Expr


def complete_the_square(expr: sp.Expr, var: sp.Symbol) -> Square:
    """Complete the square in `var` of an expression quadratic in it (a Gaussian log-density).

    Writes expr = a2 var^2 + a1 var + a0 (coefficients read off the expanded expression, and
    the remainder checked to vanish), then mean = -a1 / (2 a2), variance = -1 / (2 a2),
    rest = a0 - a1^2 / (4 a2). Raises ValueError if expr is not quadratic in var with a2 != 0.
    """
    e = sp.expand(expr)
    a2, a1, a0 = (e.coeff(var, k) for k in (2, 1, 0))
    if var in (a2.free_symbols | a1.free_symbols | a0.free_symbols) or \
            sp.simplify(e - (a2 * var ** 2 + a1 * var + a0)) != 0 or a2 == 0:
        raise ValueError(f"expr is not quadratic in {var}: {expr}")
    mean = sp.simplify(-a1 / (2 * a2))
    variance = sp.factor(sp.simplify(-1 / (2 * a2)))
    rest = sp.simplify(a0 - a1 ** 2 / (4 * a2))
    return Square(mean, variance, rest)


# -- docs/math.md §4: the posterior q(x_{t-1} | x_t, x_0) ----------------------------------------------

class Posterior(NamedTuple):
    """q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde), derived by completing the square."""

    mu_tilde: sp.Expr            # in x_0, x_t, alpha, abar_prev
    beta_tilde: sp.Expr          # in alpha, abar_prev
    coef_x0: sp.Expr             # d mu_tilde / d x_0
    coef_xt: sp.Expr             # d mu_tilde / d x_t
    bayes_quadratic_residual: sp.Expr   # 0 iff the exponents of Bayes' identity agree
    bayes_normaliser_ratio: sp.Expr     # 1 iff the normalising constants agree
    symbols: dict


@functools.lru_cache(maxsize=None)
def posterior() -> Posterior:
    """mu_tilde_t and beta_tilde_t by completing the square in x_{t-1} (docs/math.md §4).

    log q(x_t | x_{t-1}) + log q(x_{t-1} | x_0) with q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1},
    beta_t) and q(x_{t-1} | x_0) = N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}) is quadratic in x_{t-1};
    its completed square gives the mean and variance of q(x_{t-1} | x_t, x_0), which is
    proportional to it in x_{t-1}. The part left over (free of x_{t-1}) is compared with
    log q(x_t | x_0) = log N(sqrt(abar_t) x_0, 1 - abar_t): Bayes' identity of docs/math.md §4,
    split into the exponents (`bayes_quadratic_residual`, which must be 0) and the normalising
    constants (`bayes_normaliser_ratio` = beta_t (1 - abar_{t-1}) / (beta_tilde_t (1 - abar_t)),
    which must be 1).
    """
    joint = log_normal(xt, sp.sqrt(alpha) * x_prev, beta) + log_normal(x_prev, sp.sqrt(abar_prev) * x0,
                                                                       1 - abar_prev)
    sq = complete_the_square(joint, x_prev)
    mu = sp.collect(sp.expand(sq.mean), [x0, xt], sp.factor)
    # exponents: joint - log N(x_{t-1}; mu, var) - log N(x_t; sqrt(abar_t) x_0, 1 - abar_t), logs dropped
    quad = (-(xt - sp.sqrt(alpha) * x_prev) ** 2 / (2 * beta)
            - (x_prev - sp.sqrt(abar_prev) * x0) ** 2 / (2 * (1 - abar_prev))
            + (x_prev - sq.mean) ** 2 / (2 * sq.variance)
            + (xt - sp.sqrt(abar) * x0) ** 2 / (2 * (1 - abar)))
    return Posterior(
        mu_tilde=mu,
        beta_tilde=sq.variance,
        coef_x0=sp.factor(sp.diff(mu, x0)),
        coef_xt=sp.factor(sp.diff(mu, xt)),
        bayes_quadratic_residual=sp.simplify(sp.expand(quad)),
        bayes_normaliser_ratio=sp.simplify(beta * (1 - abar_prev) / (sq.variance * (1 - abar))),
        symbols=dict(x0=x0, xt=xt, x_prev=x_prev, alpha=alpha, abar_prev=abar_prev),
    )


# -- docs/math.md §5: x_0 from eps, and the noise form of mu_tilde ------------------------------------

class NoiseForm(NamedTuple):
    """x_0 solved from x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and mu_tilde in (x_t, eps)."""

    x0_from_eps: sp.Expr         # in x_t, eps, alpha, abar_prev
    mu_tilde_eps: sp.Expr        # in x_t, eps, alpha, abar_prev
    symbols: dict


@functools.lru_cache(maxsize=None)
def noise_form() -> NoiseForm:
    """The noise form of mu_tilde_t (docs/math.md §4, §5).

    Solves x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for x_0 (sympy.solve), substitutes
    that x_0 into the completed-square mu_tilde of `posterior()` and simplifies.
    """
    sol = sp.solve(sp.Eq(xt, sp.sqrt(abar) * x0 + sp.sqrt(1 - abar) * eps), x0)
    if len(sol) != 1:
        raise AssertionError(f"expected one solution for x_0, got {sol}")
    x0_eps = sp.simplify(sol[0])
    mu_eps = sp.simplify(posterior().mu_tilde.subs(x0, x0_eps))
    mu_eps = sp.collect(sp.expand(mu_eps), [xt, eps], sp.simplify)
    return NoiseForm(x0_eps, mu_eps, dict(xt=xt, eps=eps, alpha=alpha, abar_prev=abar_prev))


# -- docs/math.md §3: the forward marginal and q(x_t | x_s) -------------------------------------------

class LinearGaussian(NamedTuple):
    """x = coef * w + (noise of variance `variance`), i.e. the law N(coef * w, variance)."""

    coef: sp.Expr
    variance: sp.Expr


@functools.lru_cache(maxsize=None)
def compose_rule() -> tuple[sp.Lambda, sp.Lambda]:
    """Composition of two linear-Gaussian kernels, from the moments of independent normals.

    With z1, z2 independent N(0, 1) (sympy.stats): y = c w + sqrt(d) z2 and x = a y + sqrt(b) z1
    give E[x] = a c w and Var[x] = a^2 d + b. Returns (coef, variance) as sympy Lambdas of
    (a, b, c, d), so x | w ~ N(coef(a, b, c, d) w, variance(a, b, c, d)).
    """
    a, b, c, d = sp.symbols("a b c d", positive=True)
    w = sp.Symbol("w", real=True)
    z1, z2 = Normal("z1", 0, 1), Normal("z2", 0, 1)
    x = a * (c * w + sp.sqrt(d) * z2) + sp.sqrt(b) * z1
    mean = sp.simplify(expectation(x))
    var = sp.simplify(rv_variance(x))
    return sp.Lambda((a, b, c, d), sp.simplify(mean / w)), sp.Lambda((a, b, c, d), var)


def _compose(outer: LinearGaussian, inner: LinearGaussian) -> LinearGaussian:
    coef, var = compose_rule()
    return LinearGaussian(coef(outer.coef, outer.variance, inner.coef, inner.variance),
                          var(outer.coef, outer.variance, inner.coef, inner.variance))


class Marginal(NamedTuple):
    """q(x_t | x_0) = N(coef x_0, variance), by the induction step from step t - 1."""

    coef: sp.Expr                # in alpha, abar_prev
    variance: sp.Expr
    variance_unsimplified: sp.Expr   # alpha_t (1 - abar_{t-1}) + beta_t, as composed
    symbols: dict


@functools.lru_cache(maxsize=None)
def forward_marginal_step() -> Marginal:
    """The induction step of q(x_t | x_0) (docs/math.md §3).

    Hypothesis q(x_{t-1} | x_0) = N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}); the kernel
    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t). Composing them (`compose_rule`: mean and
    variance of a sum of independent normals) gives coef sqrt(alpha_t) sqrt(abar_{t-1}) and
    variance alpha_t (1 - abar_{t-1}) + beta_t, which simplify to sqrt(abar_t) and 1 - abar_t.
    """
    composed = _compose(LinearGaussian(sp.sqrt(alpha), beta),
                        LinearGaussian(sp.sqrt(abar_prev), 1 - abar_prev))
    return Marginal(sp.simplify(composed.coef), sp.factor(sp.expand(composed.variance)),
                    composed.variance, dict(alpha=alpha, abar_prev=abar_prev))


class Chain(NamedTuple):
    """q(x_{s+n} | x_s) = N(coef x_s, variance) by composing the n kernels of steps s+1..s+n."""

    coef: sp.Expr
    variance: sp.Expr
    alphas: tuple                # alpha_{s+1}, ..., alpha_{s+n}


@functools.lru_cache(maxsize=None)
def forward_chain(n: int) -> Chain:
    """q(x_t | x_s) for t = s + n by the chain: compose the kernels N(sqrt(alpha_r) x_{r-1}, 1 - alpha_r),
    r = s+1..t, starting from the point mass at x_s (coef 1, variance 0) (docs/math.md §3).

    The result is compared with sqrt(abar_t / abar_s) and 1 - abar_t / abar_s, where
    abar_t / abar_s = prod_r alpha_r.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (the number of steps t - s); got {n!r}")
    alphas = sp.symbols(f"alpha_1:{n + 1}", positive=True)
    law = LinearGaussian(sp.Integer(1), sp.Integer(0))
    for a in alphas:
        law = _compose(LinearGaussian(sp.sqrt(a), 1 - a), law)
    return Chain(sp.simplify(law.coef), sp.factor(sp.expand(law.variance)), alphas)


class StepBetween(NamedTuple):
    """q(x_t | x_s) = N(coef x_s, variance), solved from q(x_t | x_0) = q(x_t | x_s) o q(x_s | x_0)."""

    coef: sp.Expr                # in abar_s, abar_t
    variance: sp.Expr
    symbols: dict


@functools.lru_cache(maxsize=None)
def q_xt_given_xs_from_marginals() -> StepBetween:
    """q(x_t | x_s) by composing two marginals (docs/math.md §3).

    Unknown kernel N(c x_s, w), c > 0. Composing it with q(x_s | x_0) = N(sqrt(abar_s) x_0,
    1 - abar_s) (`compose_rule`) must give q(x_t | x_0) = N(sqrt(abar_t) x_0, 1 - abar_t);
    sympy.solve on the two moment equations gives c and w.
    """
    abar_s, abar_t = sp.symbols("abar_s abar_t", positive=True)
    c = sp.Symbol("c", positive=True)
    w = sp.Symbol("w", real=True)
    composed = _compose(LinearGaussian(c, w), LinearGaussian(sp.sqrt(abar_s), 1 - abar_s))
    sol = sp.solve([sp.Eq(composed.coef, sp.sqrt(abar_t)), sp.Eq(composed.variance, 1 - abar_t)],
                   [c, w], dict=True)
    if len(sol) != 1:
        raise AssertionError(f"expected one solution (c > 0), got {sol}")
    return StepBetween(sp.simplify(sol[0][c]), sp.simplify(sol[0][w]), dict(abar_s=abar_s, abar_t=abar_t))


# -- docs/math.md §10: the strided posterior and the DDIM family ----------------------------------------

#: abar_s and the ratio r = abar_t / abar_s of a step from t to an earlier s (both in (0, 1))
abar_s = sp.Symbol("abar_s", positive=True)
ratio = sp.Symbol("r", positive=True)
x_s = sp.Symbol("x_s", real=True)
sigma = sp.Symbol("sigma", positive=True)
eta = sp.Symbol("eta", positive=True)


class StridedPosterior(NamedTuple):
    """q(x_s | x_t, x_0) = N(mean, variance) for s < t, by completing the square in x_s."""

    mean: sp.Expr                # in x_0, x_t, abar_s, r
    coef_x0: sp.Expr
    coef_xt: sp.Expr
    variance: sp.Expr
    symbols: dict


@functools.lru_cache(maxsize=None)
def strided_posterior() -> StridedPosterior:
    """The posterior of a step that skips from t to s < t (docs/math.md §10).

    log q(x_t | x_s) + log q(x_s | x_0), with q(x_t | x_s) = N(sqrt(r) x_s, 1 - r) (docs/math.md §3,
    r = abar_t / abar_s) and q(x_s | x_0) = N(sqrt(abar_s) x_0, 1 - abar_s), is quadratic in x_s;
    its completed square is q(x_s | x_t, x_0). Compared with docs/math.md §10's coefficients with
    beta' = 1 - r, and with the respaced chain of `reference.respace`.
    """
    joint = log_normal(xt, sp.sqrt(ratio) * x_s, 1 - ratio) + log_normal(x_s, sp.sqrt(abar_s) * x0, 1 - abar_s)
    sq = complete_the_square(joint, x_s)
    mean = sp.collect(sp.expand(sq.mean), [x0, xt], sp.factor)
    return StridedPosterior(mean, sp.factor(sp.diff(mean, x0)), sp.factor(sp.diff(mean, xt)), sq.variance,
                            dict(x0=x0, xt=xt, abar_s=abar_s, r=ratio))


class DdimFamily(NamedTuple):
    """The DDIM step with the true x_0, x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s - sigma^2) eps_t
    + sigma z, and the law of x_s given x_0 when x_t ~ q(x_t | x_0) (Lemma 1)."""

    step: sp.Expr                # x_s in x_0, x_t, sigma, abar_s, r and the standard normal z
    marginal_mean: sp.Expr       # E[x_s | x_0] over x_t ~ q(x_t | x_0) and z
    marginal_variance: sp.Expr   # Var[x_s | x_0]
    sigma2_of_eta: sp.Expr       # eq. 16: eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)
    symbols: dict


@functools.lru_cache(maxsize=None)
def ddim_family() -> DdimFamily:
    """Song et al. (2021), eq. 12, 16 and Lemma 1 (docs/math.md §10).

    With the true x_0, eps_t = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t). Drawing x_t =
    sqrt(abar_t) x_0 + sqrt(1 - abar_t) e and z independent standard normals (sympy.stats), the
    mean and variance of x_s given x_0 follow for a symbolic sigma; they must be sqrt(abar_s) x_0
    and 1 - abar_s whatever sigma (and so whatever eta) is.
    """
    abar_t = ratio * abar_s
    e, z_rv = Normal("e", 0, 1), Normal("z", 0, 1)
    z = sp.Symbol("z", real=True)
    eps_t = (xt - sp.sqrt(abar_t) * x0) / sp.sqrt(1 - abar_t)
    step = sp.sqrt(abar_s) * x0 + sp.sqrt(1 - abar_s - sigma ** 2) * eps_t + sigma * z
    drawn = step.subs({xt: sp.sqrt(abar_t) * x0 + sp.sqrt(1 - abar_t) * e, z: z_rv})
    return DdimFamily(step, sp.simplify(expectation(drawn)), sp.simplify(rv_variance(drawn)),
                      eta ** 2 * (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s),
                      dict(x0=x0, xt=xt, z=z, sigma=sigma, eta=eta, abar_s=abar_s, r=ratio))


# -- docs/math.md §6: Gaussian KL, lambda_t and C_t, the continuous L_0 --------------------------------

class GaussianKL(NamedTuple):
    """KL(N(m1, v1) || N(m2, v2)) computed as the integral of p log(p / q) over the real line."""

    kl: sp.Expr
    symbols: dict


@functools.lru_cache(maxsize=None)
def gaussian_kl() -> GaussianKL:
    """KL between two one-dimensional normals by integration (docs/math.md §6).

    KL = int_{-oo}^{oo} N(x; m1, v1) (log N(x; m1, v1) - log N(x; m2, v2)) dx with v1, v2 > 0,
    done by sympy.integrate; logs of the (positive) variances expanded afterwards.
    """
    x = sp.Symbol("x", real=True)
    m1, m2 = sp.symbols("m1 m2", real=True)
    v1, v2 = sp.symbols("v1 v2", positive=True)
    p = sp.exp(-(x - m1) ** 2 / (2 * v1)) / sp.sqrt(2 * sp.pi * v1)
    integrand = sp.expand(p * (log_normal(x, m1, v1) - log_normal(x, m2, v2)))
    kl = sp.integrate(integrand, (x, -sp.oo, sp.oo))
    kl = sp.expand(sp.expand_log(sp.simplify(kl), force=False))
    return GaussianKL(kl, dict(m1=m1, v1=v1, m2=m2, v2=v2))


class NoiseKL(NamedTuple):
    """KL(q(x_{t-1}|x_t,x_0) || N(mu_theta, sigma_t^2)) = lambda_t (eps - eps_theta)^2 + C_t (d = 1)."""

    kl: sp.Expr                  # in eps, eps_theta, alpha, abar_prev, sigma2
    lam: sp.Expr                 # lambda_t, in alpha, abar_prev, sigma2
    C: sp.Expr                   # C_t, in alpha, abar_prev, sigma2
    residual: sp.Expr            # kl - lam (eps - eps_theta)^2 - C; 0 proves the form
    symbols: dict


@functools.lru_cache(maxsize=None)
def noise_kl() -> NoiseKL:
    """lambda_t and C_t of docs/math.md §6 from the integrated Gaussian KL.

    The posterior is N(mu_tilde(x_t, eps), beta_tilde) (noise form and completed square above,
    x_0 written through the true eps), the model N(mu_theta, sigma_t^2) with mu_theta the same
    noise form with eps_theta. Substituting both into `gaussian_kl` gives the KL as a function
    of eps and eps_theta; lambda_t = (1/2) d^2 KL / d eps^2 and C_t = KL at eps_theta = eps are
    read off, and the residual KL - lambda_t (eps - eps_theta)^2 - C_t must simplify to 0
    (so the KL depends on the noises only through (eps - eps_theta)^2). t >= 2 (abar_prev < 1).
    """
    g = gaussian_kl()
    s = g.symbols
    mu_eps = noise_form().mu_tilde_eps
    kl = g.kl.subs({s["m1"]: mu_eps, s["v1"]: posterior().beta_tilde,
                    s["m2"]: mu_eps.subs(eps, eps_theta), s["v2"]: sigma2})
    lam = sp.factor(sp.simplify(sp.diff(kl, eps, 2) / 2))
    C = sp.simplify(kl.subs(eps_theta, eps))
    residual = sp.simplify(sp.expand(kl - lam * (eps - eps_theta) ** 2 - C))
    return NoiseKL(kl, lam, C, residual,
                   dict(eps=eps, eps_theta=eps_theta, alpha=alpha, abar_prev=abar_prev, sigma2=sigma2))


class DecoderNLL(NamedTuple):
    """-log N(x_0; mu_theta(x_1, 1), sigma_1^2) = weight (eps - eps_theta)^2 + const (d = 1)."""

    nll: sp.Expr                 # in eps, eps_theta, alpha (= alpha_1), sigma2, x0 (cancels)
    weight: sp.Expr
    const: sp.Expr
    residual: sp.Expr
    symbols: dict


@functools.lru_cache(maxsize=None)
def decoder_nll_continuous() -> DecoderNLL:
    """The continuous L_0 identity of docs/math.md §6.

    At t = 1, abar_0 = 1 so abar_1 = alpha_1: x_1 = sqrt(alpha_1) x_0 + sqrt(1 - alpha_1) eps, and
    mu_theta = the noise form with eps_theta (`noise_form` at abar_prev = 1). The negative
    log-density -log N(x_0; mu_theta, sigma_1^2) is simplified; the weight of (eps - eps_theta)^2
    is (1/2) d^2 / d eps^2 and the constant its value at eps_theta = eps; the residual must be 0
    (and x_0 must drop out).
    """
    mu_theta = noise_form().mu_tilde_eps.subs({eps: eps_theta, abar_prev: 1})
    x1 = sp.sqrt(alpha) * x0 + sp.sqrt(1 - alpha) * eps
    nll = sp.expand(sp.expand_log(sp.simplify(-log_normal(x0, mu_theta.subs(xt, x1), sigma2))))
    weight = sp.factor(sp.simplify(sp.diff(nll, eps, 2) / 2))
    const = sp.simplify(nll.subs(eps_theta, eps))
    residual = sp.simplify(sp.expand(nll - weight * (eps - eps_theta) ** 2 - const))
    return DecoderNLL(nll, weight, const, residual,
                      dict(x0=x0, eps=eps, eps_theta=eps_theta, alpha=alpha, sigma2=sigma2))


# -- docs/math.md §5, §7: scores and Tweedie's formula ---------------------------------------------------

class ScoreNoise(NamedTuple):
    """The score of q(x_t | x_0) in x_t, at x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""

    score_xt: sp.Expr            # d/dx_t log q(x_t | x_0), in x_t, x_0, alpha, abar_prev
    score_eps: sp.Expr           # the same at x_t(x_0, eps): in eps, alpha, abar_prev
    symbols: dict


@functools.lru_cache(maxsize=None)
def score_noise() -> ScoreNoise:
    """Score-noise relation (docs/math.md §5): differentiate log N(x_t; sqrt(abar_t) x_0, 1 - abar_t) in
    x_t, substitute x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps and simplify (expected:
    -eps / sqrt(1 - abar_t), free of x_0)."""
    score = sp.simplify(sp.diff(log_normal(xt, sp.sqrt(abar) * x0, 1 - abar), xt))
    at_eps = sp.simplify(score.subs(xt, sp.sqrt(abar) * x0 + sp.sqrt(1 - abar) * eps))
    return ScoreNoise(score, at_eps, dict(xt=xt, x0=x0, eps=eps, alpha=alpha, abar_prev=abar_prev))


class Tweedie(NamedTuple):
    """Gaussian prior x_0 ~ N(m, s2): the exact posterior of x_0 given x_t, q_t and its score."""

    posterior_mean: sp.Expr      # E[x_0 | x_t] by conjugacy, in x_t, m, s2, abar
    posterior_var: sp.Expr
    marginal_mean: sp.Expr       # q_t = N(marginal_mean, marginal_var)
    marginal_var: sp.Expr
    score: sp.Expr               # d/dx_t log q_t(x_t)
    tweedie: sp.Expr             # (x_t + (1 - abar_t) score) / sqrt(abar_t)
    optimal_eps: sp.Expr         # E[eps | x_t] = (x_t - sqrt(abar_t) E[x_0 | x_t]) / sqrt(1 - abar_t)
    marginal_residual: sp.Expr   # rest of the completed square minus log q_t's exponent: must be 0
    symbols: dict


@functools.lru_cache(maxsize=None)
def tweedie() -> Tweedie:
    """Tweedie's formula for a Gaussian prior (docs/math.md §7), abar_t a single positive symbol in (0, 1).

    Bayes: log q(x_0) + log q(x_t | x_0) with q(x_0) = N(m, s2), q(x_t | x_0) = N(sqrt(abar) x_0,
    1 - abar) is quadratic in x_0; completing the square gives the conjugate posterior
    N(E[x_0 | x_t], Var[x_0 | x_t]). The marginal q_t comes from `compose_rule`
    (N(sqrt(abar) m, abar s2 + 1 - abar)); its exponent must equal the x_0-free remainder of the
    square up to a constant (`marginal_residual`, differentiated in x_t to drop the constant,
    must be 0). The score is d/dx_t log q_t, and `tweedie` = (x_t + (1 - abar) score) / sqrt(abar)
    is compared with the conjugate posterior mean.
    """
    ab = sp.Symbol("abar_t", positive=True)
    m = sp.Symbol("m", real=True)
    s2 = sp.Symbol("s2", positive=True)
    joint = log_normal(x0, m, s2) + log_normal(xt, sp.sqrt(ab) * x0, 1 - ab)
    sq = complete_the_square(joint, x0)
    marg = _compose(LinearGaussian(sp.sqrt(ab), 1 - ab), LinearGaussian(sp.Integer(1), s2))
    mm, mv = sp.simplify(marg.coef * m), sp.simplify(marg.variance)
    score = sp.simplify(sp.diff(log_normal(xt, mm, mv), xt))
    marginal_residual = sp.simplify(sp.diff(sq.rest - log_normal(xt, mm, mv), xt))
    tw = sp.simplify((xt + (1 - ab) * score) / sp.sqrt(ab))
    opt_eps = sp.simplify((xt - sp.sqrt(ab) * sq.mean) / sp.sqrt(1 - ab))
    return Tweedie(sq.mean, sq.variance, mm, mv, score, tw, opt_eps, marginal_residual,
                   dict(xt=xt, m=m, s2=s2, abar=ab))


# -- docs/math.md §8: the GAN optimal discriminator and max_D V = 2 JSD - log 4 -------------------------

class Discriminator(NamedTuple):
    """argmax over y in (0, 1) of f(y) = a log y + b log(1 - y), a, b > 0."""

    f: sp.Expr
    y_star: sp.Expr
    second_derivative_at_star: sp.Expr
    max_value: sp.Expr           # f(y_star)
    symbols: dict


@functools.lru_cache(maxsize=None)
def optimal_discriminator() -> Discriminator:
    """D* = p_data / (p_data + p_g) pointwise (docs/math.md §8): solve f'(y) = 0 for
    f(y) = a log y + b log(1 - y) (a = p_data(x), b = p_g(x) > 0), and evaluate f'' there (must be
    negative: a maximum; f is strictly concave on (0, 1))."""
    a, b = sp.symbols("a b", positive=True)
    y = sp.Symbol("y", positive=True)
    f = a * sp.log(y) + b * sp.log(1 - y)
    crit = sp.solve(sp.Eq(sp.diff(f, y), 0), y)
    if len(crit) != 1:
        raise AssertionError(f"expected one critical point, got {crit}")
    y_star = sp.simplify(crit[0])
    f2 = sp.factor(sp.simplify(sp.diff(f, y, 2).subs(y, y_star)))
    # f(y*): factor each log's argument (1 - a/(a+b) -> b/(a+b), visibly positive), then expand:
    # a log a + b log b - (a + b) log(a + b)
    value = f.subs(y, y_star).replace(sp.log, lambda arg: sp.log(sp.factor(arg)))
    value = sp.expand(sp.expand_log(value))
    return Discriminator(f, y_star, f2, value, dict(a=a, b=b, y=y))


class JSDIdentity(NamedTuple):
    """The pointwise identity behind max_D V = 2 JSD - log 4, and its sum over n support points."""

    pointwise_residual: sp.Expr  # f(y*) - [a log(2a/(a+b)) + b log(2b/(a+b)) - (a+b) log 2]
    max_v: sp.Expr               # sum_i f_i(y*_i) over n points, p_i, q_i > 0 free
    two_jsd_minus_log4: sp.Expr  # KL(p||m) + KL(q||m) - log 4, the same p, q
    residual_unnormalised: sp.Expr   # max_v - two_jsd_minus_log4 before imposing sum p = sum q = 1
    residual: sp.Expr            # the same with p_n = 1 - sum_{i<n} p_i, q_n likewise (must be 0)
    symbols: dict


@functools.lru_cache(maxsize=None)
def gan_jsd(n: int = 3) -> JSDIdentity:
    """max_D V(D, G) = 2 JSD(p_data, p_g) - log 4 (docs/math.md §8; seeds/001_afc8e6d75670c661.txt theorem 3 has JSD - log 4).

    Pointwise: with a = p_data(x), b = p_g(x), the maximum a log(a/(a+b)) + b log(b/(a+b)) of
    `optimal_discriminator` equals a log(2a/(a+b)) + b log(2b/(a+b)) - (a+b) log 2 (logs expanded;
    a, b > 0). Integrated (here: summed over n support points with probabilities p_i, q_i > 0):
    the first two terms give KL(p || m) + KL(q || m) = 2 JSD with m = (p + q) / 2, the last
    -(sum p + sum q) log 2. `residual_unnormalised` = max_V - (2 JSD - log 4) with every log
    expanded (all arguments are products and ratios of positive symbols, so no force is needed)
    is (2 - sum p - sum q) log 2; imposing p_n = 1 - sum_{i<n} p_i and q_n = 1 - sum_{i<n} q_i
    turns it into `residual`, which must be 0.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (support points); got {n!r}")
    disc = optimal_discriminator()
    a, b = disc.symbols["a"], disc.symbols["b"]
    split = a * sp.log(2 * a / (a + b)) + b * sp.log(2 * b / (a + b)) - (a + b) * sp.log(2)
    pointwise = sp.simplify(sp.expand(sp.expand_log(disc.max_value - split)))
    p = sp.symbols(f"p_1:{n + 1}", positive=True)
    q = sp.symbols(f"q_1:{n + 1}", positive=True)
    max_v = sum(disc.max_value.subs({a: pi, b: qi}, simultaneous=True) for pi, qi in zip(p, q))
    mid = [(pi + qi) / 2 for pi, qi in zip(p, q)]
    kl_pm = sum(pi * sp.log(pi / mi) for pi, mi in zip(p, mid))
    kl_qm = sum(qi * sp.log(qi / mi) for qi, mi in zip(q, mid))
    target = kl_pm + kl_qm - sp.log(4)
    unnormalised = sp.simplify(sp.expand(sp.expand_log(max_v - target)))
    normalise = {p[-1]: 1 - sum(p[:-1]), q[-1]: 1 - sum(q[:-1])}
    residual = sp.simplify(unnormalised.subs(normalise))
    return JSDIdentity(pointwise, max_v, target, unnormalised, residual,
                       dict(p=p, q=q, a=a, b=b))


#: every derivation, by name (for a runner that wants them all)
DERIVATIONS = {
    "posterior": posterior,
    "noise_form": noise_form,
    "compose_rule": compose_rule,
    "forward_marginal_step": forward_marginal_step,
    "forward_chain": forward_chain,
    "q_xt_given_xs_from_marginals": q_xt_given_xs_from_marginals,
    "gaussian_kl": gaussian_kl,
    "noise_kl": noise_kl,
    "decoder_nll_continuous": decoder_nll_continuous,
    "score_noise": score_noise,
    "tweedie": tweedie,
    "optimal_discriminator": optimal_discriminator,
    "gan_jsd": gan_jsd,
}


# -- comparing derived and stated formulas -------------------------------------------------------

def assert_identical(derived, expected, what: str, *, force_log: bool = False) -> None:
    """Assert derived == expected exactly: sympy.simplify of the difference is 0.

    ``force_log`` expands logs of products/quotients first (valid on the domain 0 < alpha_t < 1,
    0 < abar_{t-1} < 1, sigma^2 > 0, where every log argument is positive).
    """
    diff = sp.expand(derived - expected)
    if force_log:
        diff = sp.expand_log(diff, force=True)
    residual = sp.simplify(diff)
    assert residual == 0, (f"{what}: derived {derived} differs from the stated formula {expected}; "
                           f"simplify(derived - expected) = {residual}")


def differs(a, b, *, force_log: bool = False) -> bool:
    """True when a - b does not simplify to 0 (used to show the identity check has teeth)."""
    diff = sp.expand(a - b)
    if force_log:
        diff = sp.expand_log(diff, force=True)
    return sp.simplify(diff) != 0
