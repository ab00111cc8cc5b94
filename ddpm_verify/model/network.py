"""The noise-prediction network eps_theta(x_t, t): an MLP with a sinusoidal time embedding.

Sized for low-dimensional data (the 2-D Gaussian-mixture ring): x_t and an embedding of t enter
a residual MLP; every block gets its own projection of the time embedding. float32 throughout.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (paper indexing, shape (m,)): (m, dim) float32,
    [cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ..., sin(t w_{h-1})], w_j = max_period^(-j / h), h = dim / 2
    (the transformer's positional encoding, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / half * torch.arange(half, dtype=torch.float32, device=t.device))
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResidualBlock(nn.Module):
    """h + W2 silu(W1 silu(h) + P e): a two-layer residual update conditioned on the time features e."""

    def __init__(self, hidden: int, emb: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.lin1 = nn.Linear(hidden, hidden)
        self.time = nn.Linear(emb, hidden)
        self.lin2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """rows: for time features e of the distinct timesteps, the row of e each row of h takes."""
        p = self.time(e)
        a = self.lin1(nn.functional.silu(self.norm(h))) + (p if rows is None else p[rows])
        return h + self.lin2(nn.functional.silu(a))


class EpsMLP(nn.Module):
    """eps_theta(x_t, t) for data of dimension d: (m, d) float32 and int64 t in 1..T -> (m, d).

    hidden: width; depth: number of residual blocks; emb_dim: size of the sinusoidal embedding
    (even), mapped by a two-layer MLP to the time features every block receives.
    """

    def __init__(self, d: int = 2, hidden: int = 256, depth: int = 3, emb_dim: int = 128):
        super().__init__()
        if emb_dim % 2:
            raise ValueError(f"emb_dim must be even (cosines and sines); got {emb_dim}")
        self.d, self.emb_dim = d, emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.x_in = nn.Linear(d, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, d))

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows = None
        if not torch.is_grad_enabled() and t.numel() > 1:
            # evaluation: the time features (about half the network's arithmetic) once per distinct t,
            # then taken by row; a batch from all T steps, or a sampling step's single t, repeats t often
            t, rows = torch.unique(t, return_inverse=True)
        e = self.time_mlp(time_embedding(t, self.emb_dim))
        h = self.x_in(xt)
        for block in self.blocks:
            h = block(h, e, rows)
        return self.out(h)
