"""The DDPM's loss code in torch (float32): L_simple and the VLB terms, in the conventions of
`reference` (docs/math.md §6).

Paper indexing t = 1..T; data x0 of shape (m, d); every term is per example, summed over the d
dimensions, in nats; bits per dimension = nats / (d ln 2). The tables are computed once in
float64 by `reference.Schedule` and stored in float32 on the model's device, indexed by t
(row 0 unused), so nothing on the training path leaves the device.

    L_simple = ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)||^2
    L_{t-1}  = KL(q(x_{t-1} | x_t, x0) || N(mu_theta(x_t, t), sigma_t^2 I))      t = 2..T
    L_0      = -log N(x0; mu_theta(x_1, 1), sigma_1^2 I)                          t = 1
    L_T      = KL(q(x_T | x0) || N(0, I))
    mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import reference
from reference.conventions import Variance

VARIANCES = Variance.FIXED
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Tables:
    """Per-timestep coefficients, float32 tensors of shape (T + 1,) indexed by paper t."""

    T: int
    beta: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    eps_coef: torch.Tensor                # beta_t / sqrt(1 - abar_t)
    inv_sqrt_alpha: torch.Tensor          # 1 / sqrt(alpha_t)
    posterior_coef_x0: torch.Tensor       # sqrt(abar_{t-1}) beta_t / (1 - abar_t)
    posterior_coef_xt: torch.Tensor       # sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)
    log_beta_tilde_clipped: torch.Tensor  # log beta~_t, t = 1 clipped to beta~_2
    log_beta: torch.Tensor
    alpha_bar_T: float
    log_one_minus_alpha_bar_T: float

    @classmethod
    def from_schedule(cls, schedule: reference.Schedule, device="cpu") -> Tables:
        """The tables of `schedule` (float64 reference values rounded once to float32)."""
        reference.schedules.check_schedule(schedule)

        def col(values):
            return torch.tensor(np.concatenate([[np.nan], values]), dtype=torch.float32, device=device)

        s = schedule
        return cls(T=s.T, beta=col(s.beta()), sqrt_alpha_bar=col(np.sqrt(s.alpha_bar())),
                   sqrt_one_minus_alpha_bar=col(np.sqrt(s.one_minus_alpha_bar())),
                   eps_coef=col(s.beta() / np.sqrt(s.one_minus_alpha_bar())),
                   inv_sqrt_alpha=col(1 / np.sqrt(s.alpha())),
                   posterior_coef_x0=col(s.posterior_coef_x0()), posterior_coef_xt=col(s.posterior_coef_xt()),
                   log_beta_tilde_clipped=col(s.log_beta_tilde_clipped()), log_beta=col(s.log_beta()),
                   alpha_bar_T=float(s.alpha_bar(s.T)),
                   log_one_minus_alpha_bar_T=float(s.log_one_minus_alpha_bar(s.T)))

    def log_variance(self, t: torch.Tensor, variance: str) -> torch.Tensor:
        """log sigma_t^2 of p_theta(x_{t-1} | x_t): log beta_t (fixed_large) or log beta~_t clipped (fixed_small)."""
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {', '.join(VARIANCES)}; got {variance!r}")
        return (self.log_beta if variance == Variance.FIXED_LARGE else self.log_beta_tilde_clipped)[t]


def _col(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return table[t][:, None]


def q_sample(tab: Tables, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, a draw of q(x_t | x_0) (docs/math.md §3)."""
    return _col(tab.sqrt_alpha_bar, t) * x0 + _col(tab.sqrt_one_minus_alpha_bar, t) * eps


def model_mean(tab: Tables, xt: torch.Tensor, t: torch.Tensor, eps_theta: torch.Tensor) -> torch.Tensor:
    """mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t) (docs/math.md §6)."""
    return _col(tab.inv_sqrt_alpha, t) * (xt - _col(tab.eps_coef, t) * eps_theta)


def posterior_mean(tab: Tables, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mu~_t(x_t, x_0), the mean of q(x_{t-1} | x_t, x_0) (docs/math.md §4)."""
    return _col(tab.posterior_coef_x0, t) * x0 + _col(tab.posterior_coef_xt, t) * xt


def normal_kl(m1, log_v1, m2, log_v2) -> torch.Tensor:
    """KL(N(m1, e^log_v1) || N(m2, e^log_v2)) per dimension, nats."""
    return 0.5 * (log_v2 - log_v1 - 1.0 + torch.exp(log_v1 - log_v2) + (m1 - m2) ** 2 * torch.exp(-log_v2))


def normal_nll(x, mean, log_v) -> torch.Tensor:
    """-log N(x; mean, e^log_v) per dimension, nats."""
    return 0.5 * (LOG_2PI + log_v + (x - mean) ** 2 * torch.exp(-log_v))


def l_simple(eps: torch.Tensor, eps_theta: torch.Tensor) -> torch.Tensor:
    """||eps - eps_theta||^2 per example (summed over d); its mean over (x0, t ~ U{1..T}, eps) is L_simple."""
    return torch.sum((eps - eps_theta) ** 2, dim=-1)


def vlb_term(tab: Tables, x0, xt, t, eps_theta, variance: str = Variance.FIXED_LARGE) -> torch.Tensor:
    """The t-th term of the negative ELBO at one draw x_t ~ q(x_t | x_0), per example, nats:
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for t >= 2 and the continuous
    decoder -log p_theta(x_0 | x_1) for t = 1. Shapes: x0, xt, eps_theta (m, d); t (m,)."""
    log_var = tab.log_variance(t, variance)[:, None]
    mean = model_mean(tab, xt, t, eps_theta)
    kl = normal_kl(posterior_mean(tab, x0, xt, t), tab.log_beta_tilde_clipped[t][:, None], mean, log_var)
    decoder = normal_nll(x0, mean, log_var)
    return torch.sum(torch.where((t == 1)[:, None], decoder, kl), dim=-1)


def prior_term(tab: Tables, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per example, nats: sum_d (abar_T x0^2 - abar_T - log(1 - abar_T)) / 2."""
    const = -tab.alpha_bar_T - tab.log_one_minus_alpha_bar_T        # >= 0, exact in float64
    return 0.5 * (tab.alpha_bar_T * torch.sum(x0 ** 2, dim=-1) + x0.shape[-1] * const)


def to_bits_per_dim(nats: torch.Tensor, d: int) -> torch.Tensor:
    """bits per dimension = nats / (d ln 2)."""
    return nats / (d * math.log(2.0))
