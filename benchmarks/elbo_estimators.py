"""Wall time of the vectorised ELBO estimators against per-timestep loops and the RNG floor.

T = 1000, d = 2, 10 000 samples; the model is the DDPM mean from a cheap non-linear noise
predictor (eps_theta = tanh(x_t)) with fixed large variance. Prints, from one run, each
estimator's time, the time of the per-timestep loop doing the same work on the same draws
(improved-diffusion's calc_bpd_loop shape), and the time of drawing the same number of
standard normals, then the ratios loop / vectorised and vectorised / normals.
Run: python3 benchmarks/elbo_estimators.py [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import reference as ref
from ddpm_verify.loops import neg_elbo_kl_loop, neg_elbo_trajectory_loop


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the minimum is kept")
    parser.add_argument("-n", type=int, default=10_000, help="samples (trajectories)")
    parser.add_argument("-T", type=int, default=1000)
    args = parser.parse_args()
    T, d, n = args.T, 2, args.n
    schedule = ref.linear(T)
    model = ref.eps_model(schedule, lambda xt, t: np.tanh(xt), "fixed_large")
    x0 = np.random.default_rng(0).uniform(-1, 1, (n, d))
    seed = 12345

    t_normals, _ = best_of(lambda: np.random.default_rng(seed).standard_normal((n, T, d)), args.repeats)
    print(f"T={T} d={d} n={n}; best of {args.repeats} runs; "
          f"drawing {n * T * d:,} standard normals: {t_normals:.3f} s")
    print(f"{'estimator':<14}{'vectorised s':>14}{'loop s':>10}{'loop/vec':>10}{'vec/normals':>13}"
          f"{'|vec - loop| nats':>19}")
    for name, vec, loop in (
        ("trajectory", ref.neg_elbo_trajectory_estimator, neg_elbo_trajectory_loop),
        ("closed-form KL", ref.neg_elbo_kl_estimator, neg_elbo_kl_loop),
    ):
        t_vec, est_vec = best_of(lambda: vec(schedule, model, x0, np.random.default_rng(seed)), args.repeats)
        t_loop, est_loop = best_of(lambda: loop(schedule, model, x0, np.random.default_rng(seed)), args.repeats)
        diff = np.max(np.abs(est_vec.per_sample_nats - est_loop.per_sample_nats))
        print(f"{name:<14}{t_vec:>14.3f}{t_loop:>10.3f}{t_loop / t_vec:>10.2f}{t_vec / t_normals:>13.2f}"
              f"{diff:>19.2e}")


if __name__ == "__main__":
    main()
