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

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        a = self.lin1(nn.functional.silu(self.norm(h))) + self.time(e)
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

    #: rows per pass of the evaluation path: a pass's activations (2048 x hidden float32) stay in
    #: cache (benchmarks/network_eval.py)
    EVAL_ROWS = 2048

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and t.numel() > 1:
            return self.evaluate(xt, t)
        e = self.time_mlp(time_embedding(t, self.emb_dim))
        h = self.x_in(xt)
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)

    def evaluate(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """forward's function without autograd (forward takes this path when gradients are off),
        arranged for speed; equal to the training arithmetic up to float32 rounding (the order of
        the additions). The time features, about half the arithmetic of a batch from all T steps
        or of a sampling step's single t, once per distinct t, with lin1's bias folded in, then
        gathered by row (`index_select`; broadcast when there is one t); each block's first product
        accumulated onto those shifts and its second onto the residual in place (`addmm_`, no copy of
        the addend); the LayerNorm's output activated in place; EVAL_ROWS rows per pass."""
        t_distinct, rows = torch.unique(t, return_inverse=True)
        e = self.time_mlp(time_embedding(t_distinct, self.emb_dim))
        shifts = [block.time(e) + block.lin1.bias for block in self.blocks]
        one_t = t_distinct.numel() == 1
        out = []
        for lo in range(0, xt.shape[0], self.EVAL_ROWS):
            h = self.x_in(xt[lo:lo + self.EVAL_ROWS])
            r = None if one_t else rows[lo:lo + self.EVAL_ROWS]
            for block, shift in zip(self.blocks, shifts):
                u = nn.functional.silu(block.norm(h), inplace=True)
                a = (torch.addmm(shift, u, block.lin1.weight.t()) if one_t
                     else torch.index_select(shift, 0, r).addmm_(u, block.lin1.weight.t()))
                h = h.addmm_(nn.functional.silu(a, inplace=True), block.lin2.weight.t()).add_(block.lin2.bias)
            out.append(self.out(h))
        return torch.cat(out) if len(out) != 1 else out[0]
