"""Template wrapper for `ddpm-verify check-sampler` and `check-loss`: a plain from-scratch DDPM in
torch (Ho et al. 2020, Algorithms 1 and 2) and the two classes that show it to the checks.

    ddpm-verify template --loop > my_loop.py
    ddpm-verify check-sampler my_loop:Sampler
    ddpm-verify check-loss my_loop:Loss

As printed, both pass. To check your code, replace `Diffusion` by your implementation (import it
instead), keep `sample` and `loss` calling your loop and your loss untouched with the `model`
they are given, and set the declarations to what your code does: `betas` (the T values it
claims, in paper order), `data_shape`, `timesteps` ("index": it passes t - 1 to the network;
"paper"; "fraction": t / T), `prediction_type`, `process` (and `eta` for DDIM), `clip_sample`,
`output_step` (its output is rounded, e.g. uint8 images), `objective`, `reduction`, `weighting`.
The README lists every attribute with its default.
"""

import torch

# -- the code under test: a from-scratch DDPM (replace it with yours) --------------------------------


class Diffusion:
    """Linear schedule, T steps, float32 tables indexed by i = t - 1 (0-based, as most code has them)."""

    def __init__(self, T=1000, beta_start=1e-4, beta_end=0.02):
        self.T = T
        self.betas = torch.linspace(beta_start, beta_end, T)
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1), self.alphas_cumprod[:-1]])

    @torch.no_grad()
    def sample(self, network, n, shape):
        """Algorithm 2 with sigma_t^2 = beta_tilde_t, no noise on the last step."""
        x = torch.randn(n, *shape)
        for i in reversed(range(self.T)):
            eps = network(x, torch.full((n,), i, dtype=torch.long))
            x = (x - self.betas[i] / torch.sqrt(1 - self.alphas_cumprod[i]) * eps) / torch.sqrt(self.alphas[i])
            if i > 0:
                variance = self.betas[i] * (1 - self.alphas_cumprod_prev[i]) / (1 - self.alphas_cumprod[i])
                x = x + torch.sqrt(variance) * torch.randn_like(x)
        return x

    def loss(self, network, x0):
        """Algorithm 1: L_simple, the mean over every element of (eps - eps_theta)^2."""
        i = torch.randint(0, self.T, (x0.shape[0],))
        noise = torch.randn_like(x0)
        ab = self.alphas_cumprod[i].view(-1, *[1] * (x0.dim() - 1))
        x_t = torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise
        return torch.nn.functional.mse_loss(network(x_t, i), noise)


# -- the wrapper: what the checks call, and what the code declares -----------------------------------


class Sampler:
    """ddpm-verify check-sampler my_loop:Sampler"""

    data_shape = (3, 16, 16)
    timesteps, prediction_type = "index", "epsilon"
    process = "ddpm_fixed_small"

    def __init__(self):
        self.diffusion = Diffusion()
        self.betas = self.diffusion.betas

    def sample(self, model, n):
        return self.diffusion.sample(model, n, self.data_shape)


class Loss(Sampler):
    """ddpm-verify check-loss my_loop:Loss"""

    objective, reduction = "epsilon_mse", "mean"

    def loss(self, model, x0):
        return self.diffusion.loss(model, x0)
