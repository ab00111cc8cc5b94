"""Training speed of the small DDPM and its time to the quality bar, from one run.

    python benchmarks/training.py [--device cpu|cuda] [--steps N] [--eval-every N]

1. Steps per second of the training loop (default config) for each available variant: eager and
   torch.compile on the chosen device, and eager on the CPU when the device is CUDA; printed with
   their ratios to the first.
   Each is timed in a fresh `ddpm-verify train` process, as a user runs it, with
   OMP_WAIT_POLICY unset: PASSIVE (the test suite's setting) measured half as fast for the
   2-thread CPU loop.
2. Time to the bar: trains the default config for --steps steps and, every --eval-every steps,
   estimates the gap -ELBO - H as (the exact eps*'s gap, measured once here by the KL-form
   estimator on 8000 rows) + (the network's part sum_t lambda_t E||eps* - eps_theta||^2, stratified
   over t with 64 draws per t), and the eps relative MSE over t >= T/20. Prints the first step and
   the training seconds (evaluation excluded) at which both meet the bar (gap <= 0.1 nats, relative
   MSE <= 5 %), and the time that many steps take at each variant's speed from 1.
   `ddpm-verify verify-model` remains the verdict on a checkpoint; this is a monitor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import reference
from ddpm_verify.model.config import TrainConfig
from ddpm_verify.model.train import pick_device, train
from ddpm_verify.model.verify import (
    EPS_MSE_BAR,
    GAP_BAR,
    elbo_control_variate,
    elbo_weights,
    eps_errors,
    eps_function,
)


def steps_per_second(device: str, compile: bool, steps: int) -> float:
    """Steps/s of `ddpm-verify train` (default config, `steps` steps) in a fresh process, as a user
    runs it; the first 100 steps, where compilation and allocation happen, are left out."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speed.pt"
        cmd = [sys.executable, "-m", "ddpm_verify.cli", "train", "--steps", str(steps + 100), "--warmup", "10",
               "--log-every", "100", "--no-progress", "--device", device, "-o", str(out)]
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        subprocess.run(cmd + (["--compile"] if compile else []), check=True, capture_output=True, text=True, env=env)
        log = torch.load(out, weights_only=True)["loss_log"]
    return steps / (log["elapsed_s"][-1] - log["elapsed_s"][0])


def exact_optimum_gap(cfg: TrainConfig, n: int = 8000, seed: int = 1) -> tuple[float, float]:
    """E[-ELBO(eps*)] - H (fixed large variance) by the KL-form estimator, paired on n rows: (mean, se)."""
    schedule, mixture = cfg.reference_schedule(), cfg.mixture()
    x0 = mixture.sample(np.random.default_rng(seed), n)
    model = reference.eps_model(schedule, lambda xt, t: mixture.optimal_eps(xt, schedule, t), "fixed_large")
    est = reference.neg_elbo_kl_estimator(schedule, model, x0, np.random.default_rng(seed + 1))
    cv = elbo_control_variate(schedule, seed + 1, n, mixture.d, np.ones(schedule.T))
    gap = est.per_sample_nats - cv + mixture.log_prob(x0)
    return float(gap.mean()), float(gap.std(ddof=1) / np.sqrt(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=10_000, help="length of the time-to-bar run")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--speed-steps", type=int, default=500)
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    variants = [(f"{device.type} eager", str(device), False), (f"{device.type} torch.compile", str(device), True)]
    if device.type == "cuda":
        variants.append(("cpu eager", "cpu", False))
    speeds = {}
    for label, dev, comp in variants:
        try:
            speeds[label] = steps_per_second(dev, comp, args.speed_steps)
        except subprocess.CalledProcessError as err:  # torch.compile needs a working compiler toolchain
            print(f"{label}: unavailable ({err.stderr.strip().splitlines()[-1][:160]})")
    base = next(iter(speeds.values()))
    for label, sps in speeds.items():
        print(f"{label:<24} {sps:8.1f} steps/s   ratio to {next(iter(speeds))}: {sps / base:.2f}")

    cfg = TrainConfig(steps=args.steps)
    gap_opt, gap_opt_se = exact_optimum_gap(cfg)
    print(f"exact eps*'s gap (fixed large, T={cfg.T}): {gap_opt:.4f} +- {gap_opt_se:.4f} nats per example")
    schedule, mixture = cfg.reference_schedule(), cfg.mixture()
    lam = elbo_weights(schedule)
    eval_time, reached = [0.0], []

    def monitor(step, ema):
        start = time.perf_counter()
        err = eps_errors(eps_function(ema.cpu()), mixture, schedule, 64, np.random.default_rng(step))
        ema.to(device)
        part = float(np.sum(lam * err["star_theta"]))
        rel = float(err["rel_mse"][max(1, cfg.T // 20) - 1:].mean())
        eval_time[0] += time.perf_counter() - start
        trained = time.perf_counter() - t0 - eval_time[0]
        ok = gap_opt + part <= GAP_BAR and rel <= EPS_MSE_BAR
        if ok and not reached:
            reached.append((step, trained))
        print(f"step {step:>6}: gap ~ {gap_opt + part:.4f} (network part {part:.4f}), eps relative MSE {rel:.2e}, "
              f"{trained:.1f}s training{'  <- bar met' if ok and reached[0][0] == step else ''}", flush=True)

    t0 = time.perf_counter()
    ckpt = train(cfg, device=str(device), progress=False, log_every=args.eval_every, callback=monitor)
    total = ckpt["provenance"]["wall_time_s"] - eval_time[0]
    if not reached:
        print(f"bar not met within {cfg.steps} steps ({total:.1f}s)")
        return
    step = reached[0][0]
    for label, sps in speeds.items():
        print(f"time to the bar, {label:<20}: {step / sps:7.1f}s ({step} steps at {sps:.1f} steps/s)")
    print(f"steps to the bar / default run of {TrainConfig().steps} steps = {step / TrainConfig().steps:.2f}")


if __name__ == "__main__":
    main()
