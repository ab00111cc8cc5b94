"""`ddpm-verify verify-model`: a trained checkpoint checked against `reference` and the exact
optimum of its Gaussian-mixture data (docs/math.md §6, §7).

a. the loss code equals the reference's terms (`loss_check`), float32 budgets;
b. eps_theta against eps* = E[eps | x_t] per t (relative MSE), and the orthogonality
   E||eps - eps_theta||^2 = E||eps - eps*||^2 + E||eps* - eps_theta||^2;
c. the negative ELBO by the closed-form-KL estimator and by the trajectory estimator agree, and
   its dependence on the network is sum_t lambda_t E||eps* - eps_theta||^2 (docs/math.md §6);
d. E[-ELBO] (fixed large variance, T steps) >= H(data), with the gap reported and held to the bar;
e. ancestral samples against fresh data (two-sample DKW tests) and the mixture weights.

Statistical checks use `ddpm_verify.stats` with the false-fail rates stated in `RATES`; every
draw comes from one seed. All values are nats per example unless a name says otherwise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.stats import norm

import reference
from reference.conventions import Variance

from .. import SEED, stats
from ..results import Result, from_verdict
from .checkpoint import TrainedModel
from .loss_check import check_loss_code, loss_battery
from .sampler import ancestral_sample

#: the quality bar of the shipped checkpoint (nats per example; relative MSE)
GAP_BAR = 0.1
EPS_MSE_BAR = 0.05
#: false-fail rates of the statistical checks (each the rate of the whole check, Bonferroni inside)
RATES = {"orthogonality": 1e-6, "estimators agree": 1e-6, "ELBO network part": 1e-6, "bound above entropy": 1e-6,
         "gap bar": 1e-2, "samples vs data": 1e-6, "mixture weights": 1e-6}


@dataclass(frozen=True)
class Sizes:
    """Monte Carlo sizes. loss_per_t: rows per t for check a; eps_per_t: draws per t for b;
    elbo: data rows of the closed-form-KL estimator for c and d (each at all T steps); trajectory:
    the first of those rows that the trajectory estimator also runs on (c); samples: ancestral
    samples for e (EpsMLP.EVAL_ROWS, one pass of the network per step); data: fresh data draws
    they are compared with (no network: cheap). Each keeps its checks' detectable discrepancies
    at most those that 4000 rows, samples and data draws gave with control-variate coefficients
    of 1 and Hoeffding's bound in its quadratic form."""

    loss_per_t: int = 4
    eps_per_t: int = 256
    elbo: int = 4000
    trajectory: int = 2400
    samples: int = 2048
    data: int = 40_000


@dataclass
class Report:
    checks: list[Result] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)          # per-t arrays and samples, for the plots

    @property
    def passed(self) -> bool:
        return all(c.status in ("pass", "note") for c in self.checks)

    def as_json(self) -> dict:
        checks = [{"name": c.name, "passed": c.status in ("pass", "note"), "detail": c.detail,
                   **{k: v for k, v in c.as_dict().items() if k not in ("name", "detail")}} for c in self.checks]
        return {**self.values, "passed": self.passed, "checks": checks,
                "eps_relative_mse_per_t": _floats(self.series["eps_rel_mse"]),
                "vlb_terms_nats": _floats(self.series["vlb_terms"])}


def _floats(a) -> list:
    return [float(x) for x in np.asarray(a).ravel()]


def eps_function(net: torch.nn.Module):
    """eps_theta as a float64 numpy function (xt (m, d), t (m,)) -> (m, d); the net runs in float32."""
    def eps_fn(xt, t):
        with torch.no_grad():
            return net(torch.as_tensor(xt, dtype=torch.float32),
                       torch.as_tensor(t, dtype=torch.int64)).double().numpy()
    return eps_fn


def elbo_weights(schedule: reference.Schedule) -> np.ndarray:
    """lambda_t of the fixed-large ELBO, (T,): the weight of ||eps - eps_theta||^2 in the t-th term
    (`reference.noise_error_weight`)."""
    return reference.noise_error_weight(schedule, variance=Variance.FIXED_LARGE)


def elbo_control_variate(schedule: reference.Schedule, seed: int, n: int, d: int,
                         coefficients: np.ndarray) -> np.ndarray:
    """sum_t c_t lambda_t (||eps_t||^2 - d) per row, mean 0 exactly for any fixed c (T,), for the
    noise that `reference.neg_elbo_kl_estimator` draws from default_rng(seed) ((n, T, d) normals
    in row order); subtracting it from that estimator's per-row values keeps their mean and, with
    c from `control_variate_coefficients`, removes most of their variance."""
    eps = np.random.default_rng(seed).standard_normal((n, schedule.T, d))
    return np.sum(coefficients * elbo_weights(schedule) * (np.sum(eps ** 2, axis=-1) - d), axis=1)


def control_variate_coefficients(err: dict, d: int) -> np.ndarray:
    """c_t = Cov(||eps - eps_theta||^2, ||eps||^2) / Var(||eps||^2) per t, Var(||eps||^2) = 2d,
    from check b's draws (x_0 and eps independent of the ELBO study's): the c minimising the
    variance of the t-th term lambda_t (||eps - eps_theta||^2 - c (||eps||^2 - d)). About 1 at
    small t, where eps_theta(x_t) is nearly eps, and near 0 at large t, where it is nearly noise;
    a fixed c of 1 would add variance there (on the shipped checkpoint these halve the per-example
    variance of -ELBO - H against c = 1)."""
    T = err["eps_theta"].size
    loss = err["draws"]["eps_theta"].reshape(T, -1)
    centred = err["draws"]["noise_sq"].reshape(T, -1) - d
    return np.mean((loss - loss.mean(axis=1, keepdims=True)) * centred, axis=1) / (2 * d)


# -- b. the learned eps against the exact eps* ------------------------------------------------------

def eps_errors(eps_fn, mixture, schedule, per_t: int, rng: np.random.Generator) -> dict:
    """Per t (stratified, `per_t` draws of x_0, eps each): E||eps* - eps_theta||^2, E||eps*||^2,
    E||eps - eps*||^2, E||eps - eps_theta||^2, plus the per-draw arrays (with ||eps||^2)."""
    T = schedule.T
    t = np.repeat(np.arange(1, T + 1, dtype=np.int64), per_t)
    x0 = mixture.sample(rng, t.size)
    eps = rng.standard_normal(x0.shape)
    xt = reference.q_sample(schedule, x0, t, eps)
    theta, star = eps_fn(xt, t), mixture.optimal_eps(xt, schedule, t)
    sq = lambda a: np.sum(a ** 2, axis=1)
    draws = {"t": t, "star_theta": sq(star - theta), "star": sq(star), "eps_star": sq(eps - star),
             "eps_theta": sq(eps - theta), "cross": 2 * np.sum((eps - star) * (star - theta), axis=1),
             "noise_sq": sq(eps)}
    per = {k: v.reshape(T, per_t).mean(axis=1) for k, v in draws.items() if k not in ("t", "cross", "noise_sq")}
    return {"draws": draws, **per, "rel_mse": per["star_theta"] / per["star"]}


def check_eps(err: dict, schedule) -> tuple[list[Result], float]:
    T = schedule.T
    t0 = max(1, T // 20)
    rel = err["rel_mse"][t0 - 1:]
    avg = float(rel.mean())
    # standard error of the average, per t by the delta method on the ratio of two means
    d = err["draws"]
    n = d["t"].size // T
    a, b = d["star_theta"].reshape(T, n)[t0 - 1:], d["star"].reshape(T, n)[t0 - 1:]
    ra = err["star_theta"][t0 - 1:] / err["star"][t0 - 1:]
    var = np.var(a - ra[:, None] * b, axis=1, ddof=1) / (n * err["star"][t0 - 1:] ** 2)
    se = float(math.sqrt(var.sum()) / rel.size)
    bar = Result("eps relative MSE <= 5% (t >= T/20)", "pass" if avg <= EPS_MSE_BAR else "fail", avg,
                      EPS_MSE_BAR, f"mean over t = {t0}..{T} of E||eps_theta - eps*||^2 / E||eps*||^2 = {avg:.3g} "
                      f"+- {se:.2g} (se); worst t: {int(np.argmax(rel)) + t0} ({rel.max():.3g}); "
                      f"t = 1: {err['rel_mse'][0]:.3g}")
    ortho = from_verdict(name="orthogonality of the eps error", run=lambda: stats.assert_mean(
        d["cross"], 0.0, false_fail_rate=RATES["orthogonality"],
        name="E||eps - eps_theta||^2 - E||eps - eps*||^2 - E||eps* - eps_theta||^2 = E[2 (eps - eps*).(eps* - eps_theta)] "
             f"= 0 over t ~ U{{1..{T}}} (float64 rounding of eps* < 1e-11, negligible)"))
    return [bar, ortho], avg


# -- c, d. the negative ELBO ----------------------------------------------------------------------

def elbo_study(eps_fn, mixture, schedule, n: int, n_trajectory: int, seeds: dict, coefficients: np.ndarray) -> dict:
    """The KL-form estimator (fixed large) for the model and, on the same n x_0 and noise, for
    eps*; the trajectory estimator on the first n_trajectory of those x_0 with its own noise;
    log q(x_0) for the entropy.

    Control variate: sum_t c_t lambda_t (||eps_t||^2 - d) has mean 0 (the KL estimator's noise is
    default_rng(seed).standard_normal((n, T, d)), its documented draw order; c fixed by check b's
    independent draws, `control_variate_coefficients`); subtracting it keeps the mean of the
    per-example -ELBO and removes most of its variance."""
    if not 2 <= n_trajectory <= n:
        raise ValueError(f"n_trajectory must lie in 2..{n} (the KL-form estimator's rows); got {n_trajectory}")
    x0 = mixture.sample(np.random.default_rng(seeds["x0"]), n)
    log_q = mixture.log_prob(x0)
    model = reference.eps_model(schedule, eps_fn, Variance.FIXED_LARGE)
    optimum = reference.eps_model(schedule, lambda xt, t: mixture.optimal_eps(xt, schedule, t), Variance.FIXED_LARGE)
    kl = reference.neg_elbo_kl_estimator(schedule, model, x0, np.random.default_rng(seeds["kl"]))
    kl_opt = reference.neg_elbo_kl_estimator(schedule, optimum, x0, np.random.default_rng(seeds["kl"]))
    traj = reference.neg_elbo_trajectory_estimator(schedule, model, x0[:n_trajectory],
                                                   np.random.default_rng(seeds["traj"]))
    cv = elbo_control_variate(schedule, seeds["kl"], n, mixture.d, coefficients)
    return {"x0": x0, "log_q": log_q, "kl": kl, "kl_opt": kl_opt, "traj": traj, "cv": cv,
            "neg_elbo": kl.per_sample_nats - cv, "neg_elbo_opt": kl_opt.per_sample_nats - cv}


def check_elbo(study: dict, err: dict, schedule) -> tuple[list[Result], dict]:
    T, d = schedule.T, study["x0"].shape[1]
    neg_elbo, log_q = study["neg_elbo"], study["log_q"]
    gap = neg_elbo + log_q                                         # per example: -ELBO - (-log q(x_0))
    n = gap.size
    se = lambda a: float(np.std(a, ddof=1) / math.sqrt(a.size))
    values = {"neg_elbo_nats": float(neg_elbo.mean()), "neg_elbo_se": se(neg_elbo),
              "neg_elbo_bpd": float(reference.nats_to_bits_per_dim(neg_elbo.mean(), d)),
              "data_entropy_nats": float(-log_q.mean()), "data_entropy_se": se(log_q),
              "gap_nats": float(gap.mean()), "gap_se": se(gap),
              "gap_of_exact_eps_star_nats": float((study["neg_elbo_opt"] + log_q).mean()),
              "gap_of_exact_eps_star_se": se(study["neg_elbo_opt"] + log_q)}
    checks = []
    m = study["traj"].n
    diff = study["traj"].per_sample_nats - study["neg_elbo"][:m]
    checks.append(from_verdict(name="KL-form and trajectory estimators agree", run=lambda: stats.assert_mean(
        diff, 0.0, false_fail_rate=RATES["estimators agree"],
        name=f"E[trajectory - KL-form] = 0, paired on {m} x_0 with independent noise (fixed large, T={T}); "
             f"trajectory {study['traj'].mean_nats:.4f} +- {study['traj'].stderr_nats:.3f}, "
             f"KL-form on the same x_0 {neg_elbo[:m].mean():.4f} +- {se(neg_elbo[:m]):.3f}")))
    # the network's part: -ELBO(model) - (-ELBO(eps*)) on the same draws is sum_t lambda_t
    # (||eps - eps_theta||^2 - ||eps - eps*||^2), whose mean is sum_t lambda_t E||eps* - eps_theta||^2;
    # check b's independent draws give the same sum as T lambda_t ||eps* - eps_theta||^2 at t ~ U{1..T}
    lam = elbo_weights(schedule)
    part_elbo = study["neg_elbo"] - study["neg_elbo_opt"]
    part_eps = T * lam[err["draws"]["t"] - 1] * err["draws"]["star_theta"]
    values["gap_network_part_nats"] = float(np.sum(lam * err["star_theta"]))
    checks.append(from_verdict(name="ELBO's network part = sum_t lambda_t E||eps* - eps_theta||^2", run=lambda: (
        stats.assert_means_equal(part_elbo, part_eps, false_fail_rate=RATES["ELBO network part"],
                                 name=f"-ELBO(model) - (-ELBO(eps*)) = {part_elbo.mean():.4g} on the ELBO draws vs "
                                      f"sum_t lambda_t E||eps* - eps_theta||^2 = {values['gap_network_part_nats']:.4g} "
                                      f"on check b's draws"))))
    checks.append(from_verdict(name="-ELBO >= H(data)", run=lambda: stats.assert_mean_in(
        gap, 0.0, math.inf, false_fail_rate=RATES["bound above entropy"],
        name=f"E[-ELBO] - H = {gap.mean():.4f} +- {se(gap):.3f} nats per example >= 0 (-ELBO {neg_elbo.mean():.4f}, "
             f"H {-log_q.mean():.4f}, paired on {n} x_0)")))
    z = float(norm.isf(RATES["gap bar"]))
    upper = values["gap_nats"] + z * values["gap_se"]
    checks.append(Result(f"gap -ELBO - H <= {GAP_BAR} nats", "pass" if upper <= GAP_BAR else "fail", upper,
                              GAP_BAR, f"gap {values['gap_nats']:.4f} +- {values['gap_se']:.4f}; one-sided upper "
                              f"bound at rate {RATES['gap bar']:g}: {upper:.4f}; of it the network's part "
                              f"{values['gap_network_part_nats']:.4f}, the exact eps*'s gap on the same draws "
                              f"{values['gap_of_exact_eps_star_nats']:.4f}"))
    return checks, values


# -- e. samples against data ----------------------------------------------------------------------

N_DIRECTIONS = 8


def check_samples(samples: np.ndarray, data: np.ndarray, mixture) -> tuple[list[Result], dict]:
    """Two-sample DKW tests of the radius and of N_DIRECTIONS projections (Bonferroni over them),
    and the mixture weights as mean responsibilities (Hoeffding's bound in its KL form per
    component, Bonferroni over K): E_q[r_k(x)] = pi_k exactly when the samples follow the data."""
    angles = np.pi * np.arange(N_DIRECTIONS) / N_DIRECTIONS
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    stats_per = {"radius": (np.linalg.norm(samples, axis=1), np.linalg.norm(data, axis=1))}
    for a, u in zip(angles, dirs):
        stats_per[f"projection at {math.degrees(a):.1f} deg"] = (samples @ u, data @ u)
    rate = RATES["samples vs data"] / len(stats_per)
    verdicts = []

    def run_two_sample():
        for label, (x, y) in stats_per.items():
            verdicts.append(stats.assert_same_distribution(x, y, false_fail_rate=rate, name=f"samples vs data: {label}"))
        worst = max(verdicts, key=lambda v: v.statistic / v.threshold)
        return replace(worst, name=f"{len(verdicts)} two-sample DKW tests (rate {rate:.2g} each); worst {worst.name}",
                       false_fail_rate=RATES["samples vs data"], detail="")
    two_sample = from_verdict(run_two_sample, samples, name="samples vs data (two-sample)")

    resp = mixture.responsibilities(samples)
    weights = resp.mean(axis=0)
    k_rate = RATES["mixture weights"] / mixture.K
    w_verdicts = []

    def run_weights():
        for k in range(mixture.K):
            w_verdicts.append(stats.assert_mean_bounded(resp[:, k], mixture.weights[k], 0.0, 1.0, false_fail_rate=k_rate,
                                                        name=f"weight of mode {k}"))
        worst = max(w_verdicts, key=lambda v: v.statistic)
        return replace(worst, name=f"mixture weights {np.array2string(weights, precision=4)} vs "
                                   f"{np.array2string(mixture.weights, precision=4)}; worst {worst.name}",
                       false_fail_rate=RATES["mixture weights"], detail="")
    weight_check = from_verdict(run_weights, samples, name="mixture weights recovered")
    return [two_sample, weight_check], {"mixture_weights": _floats(weights),
                                        "mixture_weights_max_error": float(np.max(np.abs(weights - mixture.weights)))}


# -- all of it ------------------------------------------------------------------------------------

def verify(model: TrainedModel, sizes: Sizes = Sizes(), seed: int = SEED, log=print) -> Report:
    """Run checks a-e on `model` (on the CPU) and collect the report."""
    cfg, net = model.config, model.net
    schedule, mixture = cfg.reference_schedule(), cfg.mixture()
    seeds = dict(zip(("loss", "eps", "x0", "kl", "traj", "samples", "data"),
                     (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(7))))
    report = Report()
    timings = {}
    eps_fn = eps_function(net)

    start = time.perf_counter()
    x0, t, eps = loss_battery(mixture, schedule.T, np.random.default_rng(seeds["loss"]), sizes.loss_per_t)
    loss_result, _ = check_loss_code(net, model.tables, schedule, x0, t, eps)
    report.checks.append(loss_result)
    timings["a_loss_code_s"] = time.perf_counter() - start
    log(f"a. loss code vs reference: {loss_result.status} ({timings['a_loss_code_s']:.1f}s)")

    start = time.perf_counter()
    err = eps_errors(eps_fn, mixture, schedule, sizes.eps_per_t, np.random.default_rng(seeds["eps"]))
    eps_checks, avg = check_eps(err, schedule)
    report.checks += eps_checks
    timings["b_eps_error_s"] = time.perf_counter() - start
    log(f"b. eps error: relative MSE {avg:.4g} ({timings['b_eps_error_s']:.1f}s)")

    start = time.perf_counter()
    study = elbo_study(eps_fn, mixture, schedule, sizes.elbo, sizes.trajectory, seeds,
                       control_variate_coefficients(err, mixture.d))
    elbo_checks, values = check_elbo(study, err, schedule)
    report.checks += elbo_checks
    timings["cd_elbo_s"] = time.perf_counter() - start
    log(f"c, d. -ELBO {values['neg_elbo_nats']:.4f}, H {values['data_entropy_nats']:.4f}, gap "
        f"{values['gap_nats']:.4f} +- {values['gap_se']:.4f} ({timings['cd_elbo_s']:.1f}s)")

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seeds["samples"])
    samples = ancestral_sample(net, model.tables, sizes.samples, mixture.d, variance=Variance.FIXED_SMALL,
                               generator=gen).double().numpy()
    data = mixture.sample(np.random.default_rng(seeds["data"]), sizes.data)
    sample_checks, sample_values = check_samples(samples, data, mixture)
    report.checks += sample_checks
    timings["e_samples_s"] = time.perf_counter() - start
    log(f"e. samples: {', '.join(c.status for c in sample_checks)} ({timings['e_samples_s']:.1f}s)")

    report.values = {"checkpoint": str(model.path), "neg_elbo_nats": values.pop("neg_elbo_nats"),
                     "data_entropy_nats": values.pop("data_entropy_nats"), "eps_relative_mse": avg,
                     **values, **sample_values, "config": cfg.to_dict(), "provenance": model.provenance,
                     "seed": seed, "sizes": sizes.__dict__, "variance": Variance.FIXED_LARGE, "T": schedule.T,
                     "timings_s": {k: round(v, 2) for k, v in timings.items()}}
    report.series = {"eps_rel_mse": err["rel_mse"], "eps_star_theta": err["star_theta"], "eps_star": err["star"],
                     "eps_floor": err["eps_star"], "eps_loss": err["eps_theta"],
                     "vlb_terms": study["kl"].terms_nats, "vlb_terms_opt": study["kl_opt"].terms_nats,
                     "samples": samples, "data": data}
    return report
