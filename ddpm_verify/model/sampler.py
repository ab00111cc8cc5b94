"""Ancestral sampling from the DDPM: x_T ~ N(0, I), then x_{t-1} ~ N(mu_theta(x_t, t), sigma_t^2 I)
for t = T..1, with no noise at the last step (docs/math.md §6)."""

from __future__ import annotations

import torch

from reference.conventions import Variance

from .losses import Tables, model_mean


@torch.no_grad()
def ancestral_sample(net: torch.nn.Module, tab: Tables, n: int, d: int, *, variance: str = Variance.FIXED_SMALL,
                     generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """n draws of x_0 from p_theta, shape (n, d) float32; sigma_t^2 = beta~_t (fixed_small, t = 1
    clipped as in `Tables`) or beta_t (fixed_large). The returned x_0 is the mean mu_theta(x_1, 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    x = torch.randn(n, d, generator=generator, device=device)
    for step in range(tab.T, 1, -1):
        t = torch.full((n,), step, dtype=torch.int64, device=device)
        sd = torch.exp(0.5 * tab.log_variance(t, variance))[:, None]
        x = model_mean(tab, x, t, net(x, t)) + sd * torch.randn(n, d, generator=generator, device=device)
    t = torch.ones(n, dtype=torch.int64, device=device)
    return model_mean(tab, x, t, net(x, t))
