"""Variance of the three negative-ELBO estimators, measured in one run (seeds/001_afc8e6d75670c661.txt's claim).

Ring-mixture data (8 modes, radius 1, std 0.1), linear schedule scaled to T, one x_0 repeated
n times, models: the exact eps* and two worse ones, fixed large or small variance. Prints each
estimator's per-sample variance and the ratios Var(trajectory) / Var(KL) with their 1 - 1e-6
intervals (ddpm_verify.stats.variance_ratio_interval).
Run: python3 benchmarks/elbo_variance.py [-n 4000] [-T 100 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

import reference as ref
from ddpm_verify.stats import variance_ratio_interval


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-T", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    mixture = ref.GaussianMixture.ring()
    x0 = np.tile(mixture.sample(np.random.default_rng(0), 1), (args.n, 1))
    print(f"n={args.n} draws per estimator, x0={x0[0].round(4).tolist()}")
    print(f"{'T':>5} {'model':<22}{'var KL-indep':>13}{'var KL-traj':>12}{'var traj':>10}"
          f"{'traj/KL-indep [interval]':>30}{'traj/KL-traj':>14}")
    for T in args.T:
        schedule = ref.linear(T, scale_with_T=True)
        opt = lambda xt, t: mixture.optimal_eps(xt, schedule, t)  # noqa: E731
        models = {"eps*, fixed large": ref.eps_model(schedule, opt, "fixed_large"),
                  "eps*, fixed small": ref.eps_model(schedule, opt, "fixed_small"),
                  "0.8 eps*, fixed large": ref.eps_model(schedule, lambda xt, t: 0.8 * opt(xt, t), "fixed_large"),
                  "tanh(x), fixed large": ref.eps_model(schedule, lambda xt, t: np.tanh(xt), "fixed_large")}
        for name, model in models.items():
            kl_i = ref.neg_elbo_kl_estimator(schedule, model, x0, np.random.default_rng(1)).per_sample_nats
            kl_t = ref.neg_elbo_kl_estimator(schedule, model, x0, np.random.default_rng(2),
                                             coupling="trajectory").per_sample_nats
            tr = ref.neg_elbo_trajectory_estimator(schedule, model, x0, np.random.default_rng(3)).per_sample_nats
            r, lo, hi = variance_ratio_interval(tr, kl_i)
            r2, _, _ = variance_ratio_interval(tr, kl_t)
            print(f"{T:>5} {name:<22}{np.var(kl_i, ddof=1):>13.4g}{np.var(kl_t, ddof=1):>12.4g}"
                  f"{np.var(tr, ddof=1):>10.4g}{f'{r:.3g} [{lo:.3g}, {hi:.3g}]':>30}{r2:>14.3g}")


if __name__ == "__main__":
    main()
