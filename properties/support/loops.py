"""Whole sampling loops and training losses written the way from-scratch DDPM code is, correct and
with the bugs such code has shipped, for the self-check of `ddpm-verify check-sampler` and
`check-loss` (properties/test_loop_self_check.py).

Each factory returns an object with the end-to-end interface (README: checking a whole loop or
loss): tables in float32 torch tensors, 0-based indices, the network called as model(x, t).
`SAMPLERS` and `LOSSES` list each factory, the data shape to build it with (vectors for half the
broken ones, images (3, 4, 4) for the rest) and what the checker must say: "pass", or the name of
a check that must fail (or error).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

T_SMALL = 100


class Tables:
    """betas = linspace(1e-4, 0.02) rescaled to T steps, and the usual tables (float32)."""

    timesteps, prediction_type = "index", "epsilon"

    def __init__(self, T: int = T_SMALL, data_shape=(3, 4, 4)):
        scale = 1000 / T
        self.betas = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64).float()
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas.double(), 0).float()
        self.alphas_cumprod_prev = torch.cat([torch.ones(1), self.alphas_cumprod[:-1]])
        self.T, self.data_shape = T, tuple(data_shape)

    def at(self, table, i, x):
        """table[i] shaped to broadcast over x (i a 0-d index or one per row)."""
        return table[i].reshape(-1, *[1] * (x.dim() - 1))


# -- samplers ------------------------------------------------------------------------------------

class Ancestral(Tables):
    """Algorithm 2 of Ho et al.: x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z."""

    process = "ddpm_fixed_small"

    def sigma2(self, i):
        return self.betas[i] * (1 - self.alphas_cumprod_prev[i]) / (1 - self.alphas_cumprod[i])

    def steps(self):
        return reversed(range(self.T))

    def noise_at(self, i) -> bool:
        return i > 0

    def mean(self, x, eps, i):
        return (x - self.betas[i] / torch.sqrt(1 - self.alphas_cumprod[i]) * eps) / torch.sqrt(self.alphas[i])

    @torch.no_grad()
    def sample(self, model, n):
        x = torch.randn(n, *self.data_shape)
        for i in self.steps():
            eps = model(x, torch.full((n,), i, dtype=torch.long))
            x = self.mean(x, eps, i)
            if self.noise_at(i):
                x = x + torch.sqrt(self.sigma2(i)) * torch.randn_like(x)
        return x


class AncestralLarge(Ancestral):
    process = "ddpm_fixed_large"

    def sigma2(self, i):
        return self.betas[i]


class StopsAtTwo(Ancestral):
    """for i in reversed(range(1, T)): the step from t = 1 never runs (index 0 skipped)."""

    def steps(self):
        return reversed(range(1, self.T))


class NoNoiseAtTwo(Ancestral):
    """`if i > 1` on a 0-based index: no noise on the step from t = 2."""

    def noise_at(self, i):
        return i > 1


class NoiseOnLastStep(AncestralLarge):
    """Noise added on every step, the one to x_0 too."""

    def noise_at(self, i):
        return True


def t_plus_one_betas(tables: Tables) -> torch.Tensor:
    """beta_0..beta_T = beta_start + (beta_end - beta_start) k / T, k = 0..T (minDiffusion's
    schedule); the code's steps use beta_1..beta_T, which become its claimed `betas` (and alphas)."""
    lo, hi = float(tables.betas[0]), float(tables.betas[-1])
    full = ((hi - lo) * torch.arange(0, tables.T + 1, dtype=torch.float64) / tables.T + lo).float()
    tables.betas = full[1:]
    tables.alphas = 1 - tables.betas
    return full


class ExtraFactor(Ancestral):
    """Tables from T + 1 betas (index 0 never a step, minDiffusion's form): abar_t carries an extra
    (1 - beta_0); alpha_t and beta_t stay right."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        abar = torch.cumprod(1 - t_plus_one_betas(self).double(), 0).float()
        self.alphas_cumprod, self.alphas_cumprod_prev = abar[1:], abar[:-1]


class SmallDeclaredLarge(AncestralLarge):
    """sigma^2 = beta_tilde while the code says (and trains for) beta."""

    def sigma2(self, i):
        return Ancestral.sigma2(self, i)


class VarianceAsStd(Ancestral):
    """sigma = beta_tilde, the variance used as the standard deviation."""

    def sigma2(self, i):
        return Ancestral.sigma2(self, i) ** 2


class EpsCoefficientUnsquared(Ancestral):
    """beta_t / (1 - abar_t) where beta_t / sqrt(1 - abar_t) belongs."""

    def mean(self, x, eps, i):
        return (x - self.betas[i] / (1 - self.alphas_cumprod[i]) * eps) / torch.sqrt(self.alphas[i])


class PaperTimestepsDeclaredIndex(Ancestral):
    """The network gets i + 1 where the code declares 0-based indices (it raises at t = T)."""

    @torch.no_grad()
    def sample(self, model, n):
        return super().sample(lambda x, t: model(x, t + 1), n)


class Uint8Images(Ancestral):
    """Returns uint8 images, as many loops do: x clipped to [-1, 1], mapped to 0..255 and truncated;
    the factory maps each level k back to its bin's centre (k + 1/2) / 127.5 - 1."""

    clip_sample, output_step = True, 2 / 255

    def sample(self, model, n):
        images = ((super().sample(model, n).clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
        return (images.double() + 0.5) / 127.5 - 1


class Uint8NoNoiseAtTwo(Uint8Images, NoNoiseAtTwo):
    """uint8 images from a loop with no noise on the step from t = 2."""


class Uint8Undeclared(Uint8Images):
    """uint8 images without output_step declared: the output is not Gaussian (hint: declare it)."""

    output_step = 0.0


class DDIM(Tables):
    """DDIM (Song et al. eq. 12) over a linspace sequence of indices, the previous one from the list."""

    process = "ddim"

    def __init__(self, T: int = T_SMALL, data_shape=(3, 4, 4), steps: int = 13, eta: float = 0.0):
        super().__init__(T, data_shape)
        self.eta = eta
        self.seq = [int(v) for v in np.round(np.linspace(0, T - 1, steps))[::-1]]

    def previous(self, k, i):
        return self.seq[k + 1] if k + 1 < len(self.seq) else -1

    def sigma(self, ab, ab_prev):
        return self.eta * torch.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))

    def loop(self):
        return list(enumerate(self.seq))

    @torch.no_grad()
    def sample(self, model, n):
        x = torch.randn(n, *self.data_shape)
        for k, i in self.loop():
            j = self.previous(k, i)
            ab = self.alphas_cumprod[i]
            ab_prev = self.alphas_cumprod[j] if j >= 0 else torch.tensor(1.0)
            eps = model(x, torch.full((n,), i, dtype=torch.long))
            x0 = (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
            sigma = self.sigma(ab, ab_prev)
            x = torch.sqrt(ab_prev) * x0 + torch.sqrt(1 - ab_prev - sigma ** 2) * eps + sigma * torch.randn_like(x)
        return x


class DDIMNaivePrevious(DDIM):
    """The previous index as i - T // n whatever the sequence (diffusers' DDIMScheduler)."""

    def previous(self, k, i):
        return i - self.T // len(self.seq)


class DDIMSigmaWithoutRatio(DDIM):
    """sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t): the factor (1 - abar_t / abar_s) dropped (eta = 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, eta=1.0, **kwargs)

    def sigma(self, ab, ab_prev):
        return self.eta * torch.sqrt((1 - ab_prev) / (1 - ab))


class DDIMStopsEarly(DDIM):
    """`for k in range(len(seq) - 1)`: the last step, to x_0, never runs."""

    def loop(self):
        return list(enumerate(self.seq))[:-1]


def ancestral_images():
    return Ancestral(data_shape=(3, 8, 8))


def ancestral_vectors():
    return Ancestral(data_shape=(4,))


def ancestral_large():
    return AncestralLarge()


def ancestral_t1000():
    return Ancestral(T=1000, data_shape=(3, 8, 8))


def ddim():
    return DDIM()


def ddim_eta():
    return DDIM(eta=1.0, data_shape=(6,))


#: (factory, data shape or None for its own, what the checker must say)
SAMPLERS = [
    (ancestral_images, None, "pass"), (ancestral_vectors, None, "pass"), (ancestral_large, None, "pass"),
    (ancestral_t1000, None, "pass"), (ddim, None, "pass"), (ddim_eta, None, "pass"),
    (StopsAtTwo, (4,), "sampler: the timesteps the loop asks for"),
    (NoNoiseAtTwo, None, "sampler: output"),
    (NoiseOnLastStep, (4,), "sampler: output"),
    (ExtraFactor, None, "sampler: output"),
    (SmallDeclaredLarge, (4,), "sampler: output"),
    (VarianceAsStd, None, "sampler: output"),
    (EpsCoefficientUnsquared, (4,), "sampler: output"),
    (PaperTimestepsDeclaredIndex, None, "sampler: the timesteps the loop asks for"),
    (DDIMNaivePrevious, (4,), "sampler: output"),
    (DDIMSigmaWithoutRatio, None, "sampler: output"),
    (DDIMStopsEarly, (4,), "sampler: output"),
    (Uint8Images, (3, 8, 8), "pass"),
    (Uint8NoNoiseAtTwo, (3, 8, 8), "sampler: output"),
    (Uint8Undeclared, (3, 8, 8), "sampler: output"),
]


#: the nearby process the diagnosis of a failing output must name first, for bugs that are one
DIAGNOSES = {ExtraFactor: "abar with an extra factor (1 - beta_0) in the ancestral step",
             StopsAtTwo: "no step from t = 1", NoNoiseAtTwo: "no noise added at t = 2",
             NoiseOnLastStep: "noise on the last step", SmallDeclaredLarge: "the fixed_small variance",
             DDIMNaivePrevious: "steps to t - T // n", DDIMStopsEarly: "the last step to abar_1"}


# -- losses --------------------------------------------------------------------------------------

class Simple(Tables):
    """L_simple: t ~ U{0..T-1} (index), x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, MSE to the target."""

    objective, reduction = "epsilon_mse", "mean"

    def draw_t(self, b):
        return torch.randint(0, self.T, (b,))

    def noised(self, x0, i, noise):
        return torch.sqrt(self.at(self.alphas_cumprod, i, x0)) * x0 + \
            torch.sqrt(1 - self.at(self.alphas_cumprod, i, x0)) * noise

    def goal(self, x0, i, noise):
        return noise

    def weights(self, i):
        return None

    def reduce(self, per):
        return per.mean()

    def loss_at(self, model, x0, t, noise):
        out = model(self.noised(x0, t, noise), t)
        per = F.mse_loss(out, self.goal(x0, t, noise), reduction="none").flatten(1).mean(1)
        w = self.weights(t)
        return self.reduce(per if w is None else per * w)

    def loss(self, model, x0):
        return self.loss_at(model, x0, self.draw_t(x0.shape[0]), torch.randn_like(x0))


class SimpleV(Simple):
    objective, prediction_type = "v_mse", "v_prediction"

    def goal(self, x0, i, noise):
        ab = self.at(self.alphas_cumprod, i, x0)
        return torch.sqrt(ab) * noise - torch.sqrt(1 - ab) * x0


class SimpleX0(Simple):
    objective, prediction_type = "x0_mse", "sample"

    def goal(self, x0, i, noise):
        return x0


class MinSNR(Simple):
    """lucidrains' min-SNR weights for the eps target: min(snr, 5) / snr."""

    weighting, min_snr_gamma = "min_snr", 5.0

    def weights(self, i):
        snr = self.alphas_cumprod[i] / (1 - self.alphas_cumprod[i])
        return torch.clamp(snr, max=self.min_snr_gamma) / snr


class SNRWeightedX0(SimpleX0):
    """The x_0 loss weighted by snr_t = abar_t / (1 - abar_t)."""

    weighting = "snr"

    def weights(self, i):
        return self.alphas_cumprod[i] / (1 - self.alphas_cumprod[i])


class PerExampleSum(Simple):
    reduction = "per_example_sum"

    def loss_at(self, model, x0, t, noise):
        out = model(self.noised(x0, t, noise), t)
        return ((out - noise) ** 2).flatten(1).sum(1)


class IndexReadAsPaper(Simple):
    """t drawn in 0..T-1 (an index) but read as the paper t: alphas_cumprod[t - 1], where t = 0
    wraps to the last entry."""

    def noised(self, x0, i, noise):
        return super().noised(x0, i - 1, noise)


class MeanDeclaredSum(Simple):
    """Mean over the data dimensions where the code declares the sum."""

    reduction = "sum"


class VSignFlipped(SimpleV):
    """v = sqrt(1 - abar) x0 - sqrt(abar) eps: the sign of v flipped."""

    def goal(self, x0, i, noise):
        return -super().goal(x0, i, noise)


class MinSNRInverted(MinSNR):
    """snr / min(snr, gamma): the min-SNR weight inverted."""

    def weights(self, i):
        return 1 / super().weights(i)


class NeverDrawsT1(Simple):
    """torch.randint(1, T): index 0 (t = 1) never drawn."""

    def draw_t(self, b):
        return torch.randint(1, self.T, (b,))


class VarianceForStd(Simple):
    """x_t = sqrt(abar) x0 + (1 - abar) eps: the variance where the standard deviation belongs."""

    def noised(self, x0, i, noise):
        ab = self.at(self.alphas_cumprod, i, x0)
        return torch.sqrt(ab) * x0 + (1 - ab) * noise


class ExtraFactorLoss(Simple):
    """Tables from T + 1 betas, t drawn in 1..T (minDiffusion's form): abar_t carries (1 - beta_0)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alphas_cumprod = torch.cumprod(1 - t_plus_one_betas(self).double(), 0).float()[1:]


class X0TargetForEps(Simple):
    """Regresses on x0 while the network (and the declaration) predict eps."""

    def goal(self, x0, i, noise):
        return x0


def simple_images():
    return Simple(data_shape=(3, 8, 8))


def simple_vectors():
    return Simple(data_shape=(4,))


LOSSES = [
    (simple_images, None, "pass"), (simple_vectors, None, "pass"), (SimpleV, None, "pass"), (SimpleX0, (4,), "pass"),
    (MinSNR, None, "pass"), (PerExampleSum, (4,), "pass"), (SNRWeightedX0, None, "pass"),
    (IndexReadAsPaper, None, "loss: value given the t it draws (oracle network)"),
    (MeanDeclaredSum, (4,), "loss: value given the t it draws (oracle network)"),
    (VSignFlipped, None, "loss: value given the t it draws (oracle network)"),
    (MinSNRInverted, (4,), "loss: value given the t it draws (oracle network)"),
    (NeverDrawsT1, None, "loss: the timesteps it draws are uniform on 1..T"),
    (VarianceForStd, (4,), "loss: value given the t it draws (oracle network)"),
    (X0TargetForEps, None, "loss: value given the t it draws (oracle network)"),
    (ExtraFactorLoss, None, "loss: the x_t it hands the network"),
    (ExtraFactorLoss, (4,), "loss: the x_t it hands the network"),
]


# -- declarations the checker refuses (exit status 2), and a loop that raises ---------------------

def no_betas():
    """A sampler without `betas`."""
    loop = Ancestral()
    del loop.betas
    return loop


def unknown_process():
    loop = Ancestral()
    loop.process = "ddpm_fixed_medium"
    return loop


def no_sample_method():
    return Simple()


def bad_betas():
    loop = Ancestral()
    loop.betas = -loop.betas
    return loop


class RaisesInLoop(Ancestral):
    """Indexes its tables with paper t: alphas[t] is out of range at t = T."""

    timesteps = "paper"

    def steps(self):
        return reversed(range(1, self.T + 1))

    def mean(self, x, eps, i):
        return super().mean(x, eps, i) if i < self.T else self.betas[i]


REFUSED = {no_betas: "the attribute 'betas' is missing", unknown_process: "process = 'ddpm_fixed_medium'",
           no_sample_method: "a sampler needs a method sample(model, n)", bad_betas: "betas"}
