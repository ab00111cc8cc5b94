"""Evaluation of the shipped noise predictor eps_theta: the evaluation path vs the training path.

    python benchmarks/network_eval.py [--rows M] [--repeats R]

EpsMLP's evaluation (no gradient, `EpsMLP.evaluate`) forms its time features (the time MLP and
each block's projection, about half the arithmetic) once per distinct timestep and takes them by
row, adds them and the residual inside the matrix products (addmm), and runs EVAL_ROWS rows at a
time so that a pass's activations stay in cache; the training path forms the time features per
row, on the whole batch. On the batches the verification feeds it (M rows of every t = 1..T, as
the negative-ELBO estimators do, and one t for all rows, as a sampling step does) this prints
both times, best of R, one torch thread, their ratio, and the largest difference of the outputs.
"""

from __future__ import annotations

import argparse

import torch

from ddpm_verify.model import load
from ddpm_verify.model.network import time_embedding
from elbo_estimators import best_of          # this folder's timing helper (run as a script)


def per_row(net, x, t):
    """eps_theta with the time features formed for every row (the training path's arithmetic)."""
    e = net.time_mlp(time_embedding(t, net.emb_dim))
    h = net.x_in(x)
    for block in net.blocks:
        h = block(h, e)
    return net.out(h)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65, help="rows per t (the estimators' chunk: 65)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load()
    net, T = model.net, model.config.T
    gen = torch.Generator().manual_seed(0)
    batches = {f"all t, {args.rows} rows each": torch.arange(1, T + 1).repeat(args.rows),
               f"one t (a sampling step), {args.rows * T} rows": torch.full((args.rows * T,), T // 2)}
    print(f"shipped checkpoint, T={T}; best of {args.repeats}; one torch thread")
    print(f"{'batch':<40}{'training s':>11}{'evaluation s':>14}{'ratio':>8}{'max |diff|':>12}")
    with torch.no_grad():
        for name, t in batches.items():
            x = torch.randn(t.numel(), net.d, generator=gen)
            slow, a = best_of(lambda: per_row(net, x, t), args.repeats)
            fast, b = best_of(lambda: net(x, t), args.repeats)
            print(f"{name:<40}{slow:>11.3f}{fast:>14.3f}{slow / fast:>8.2f}{(a - b).abs().max().item():>12.1e}")


if __name__ == "__main__":
    main()
