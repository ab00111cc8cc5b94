"""The figures of `ddpm-verify verify-model --plots DIR` (matplotlib, PNG, no display needed).

vlb_terms.png    the terms L_{t-1} of the negative ELBO per t (model and exact eps*), nats
eps_error.png    E||eps* - eps_theta||^2 and E||eps*||^2 per t, and their ratio (relative MSE)
score_fields.png learned and exact score grad log q_t at four t (arrows), over the data density
samples.png      ancestral samples over data drawn from the mixture
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import reference

from .verify import EPS_MSE_BAR, Report, elbo_weights

SCORE_TIMES = (10, 100, 300, 600)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(report: Report, model, directory) -> list[Path]:
    """Write the four PNGs into `directory` (created if needed); returns their paths."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    s, T = report.series, report.values["T"]
    t = np.arange(1, T + 1)
    paths = []

    lam = elbo_weights(model.config.reference_schedule())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.loglog(t[1:], s["vlb_terms"][1:T], label="trained model", lw=1.2)
    ax1.loglog(t[1:], s["vlb_terms_opt"][1:T], label="exact eps*", lw=1.0, ls="--")
    ax1.set_xlabel("t")
    ax1.set_ylabel("nats per example")
    ax1.set_title(f"L_(t-1), t >= 2 (decoder L_0 = {s['vlb_terms'][0]:.3f}, L_T = {s['vlb_terms'][T]:.2g})",
                  fontsize=9)
    ax1.legend(fontsize=8)
    ax2.semilogx(t, s["vlb_terms"][:T] - s["vlb_terms_opt"][:T], lw=1.0,
                 label="term(model) - term(eps*), same draws")
    ax2.semilogx(t, lam * s["eps_star_theta"], lw=1.0, ls="--", label="lambda_t E||eps* - eps_theta||^2")
    ax2.set_xlabel("t")
    ax2.set_title(f"the network's part of each term (sum {report.values['gap_network_part_nats']:.4f} nats)",
                  fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "vlb_terms.png", plt))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.loglog(t, s["eps_star_theta"], label="E||eps* - eps_theta||^2 (network error)")
    ax1.loglog(t, s["eps_star"], label="E||eps*||^2", ls="--")
    ax1.loglog(t, s["eps_floor"], label="E||eps - eps*||^2 (loss floor)", ls=":")
    ax1.set_xlabel("t")
    ax1.legend(fontsize=8)
    ax1.set_title("noise prediction error per t", fontsize=9)
    ax2.loglog(t, s["eps_rel_mse"])
    ax2.axhline(EPS_MSE_BAR, color="red", lw=0.8, ls="--", label=f"bar {EPS_MSE_BAR:.0%} (on the average)")
    ax2.axvline(max(1, T // 20), color="grey", lw=0.8, ls=":", label="t = T/20")
    ax2.set_xlabel("t")
    ax2.set_title(f"E||eps_theta - eps*||^2 / E||eps*||^2 (mean over t >= T/20: "
                  f"{report.values['eps_relative_mse']:.2g})", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / "eps_error.png", plt))
    paths.append(_score_fields(model, out / "score_fields.png", plt))

    fig, ax = plt.subplots(figsize=(6, 6))
    samples = s["samples"]
    data = s["data"][:len(samples)]          # as many data points as samples, drawn alike
    ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.35, label=f"data ({len(data)})", color="tab:blue")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.35, label=f"model samples ({len(samples)})", color="tab:orange")
    w = report.values["mixture_weights"]
    for k, m in enumerate(model.config.mixture().means):
        ax.annotate(f"{w[k]:.3f}", m * 1.28, ha="center", va="center", fontsize=8)
    ax.set_aspect("equal")
    ax.set_title("ancestral samples (fixed small) over data; recovered weights", fontsize=9)
    ax.legend(loc="center", fontsize=8, markerscale=4)
    fig.tight_layout()
    paths.append(_save(fig, out / "samples.png", plt))
    return paths


def _score_fields(model, path, plt):
    import torch

    cfg = model.config
    schedule, mixture = cfg.reference_schedule(), cfg.mixture()
    lim = 1.0 * cfg.radius + 0.6
    g = np.linspace(-lim, lim, 17)
    X, Y = np.meshgrid(g, g)
    x = np.stack([X.ravel(), Y.ravel()], axis=1)
    fine = np.linspace(-lim, lim, 160)
    FX, FY = np.meshgrid(fine, fine)
    xf = np.stack([FX.ravel(), FY.ravel()], axis=1)
    times = [t for t in SCORE_TIMES if t <= schedule.T]
    fig, axes = plt.subplots(2, len(times), figsize=(3.2 * len(times), 7.0), squeeze=False)
    for j, t in enumerate(times):
        tt = np.full(len(x), t)
        with torch.no_grad():
            eps = model.net(torch.tensor(x, dtype=torch.float32), torch.tensor(tt)).double().numpy()
        learned = reference.score_from_eps(schedule, eps, tt)
        exact = mixture.score(x, schedule, tt)
        dens = np.exp(mixture.log_prob(xf, schedule, np.full(len(xf), t))).reshape(FX.shape)
        scale = np.percentile(np.linalg.norm(exact, axis=1), 90) * 12
        for i, (field, label) in enumerate(((learned, "learned"), (exact, "exact"))):
            ax = axes[i, j]
            ax.contourf(FX, FY, dens, levels=12, cmap="Greys", alpha=0.5)
            ax.quiver(x[:, 0], x[:, 1], field[:, 0], field[:, 1], scale=scale, width=0.004,
                      color="tab:red" if i == 0 else "tab:blue")
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label} score, t={t}", fontsize=9)
    fig.suptitle("grad log q_t: learned -eps_theta / sqrt(1 - abar_t) against the exact mixture score", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
