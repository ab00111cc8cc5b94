"""Deliberately broken third-party targets, for checking that `ddpm-verify check` has power.

Each broken target subclasses a real API (`diffusers.DDPMScheduler` or guided-diffusion's
`GaussianDiffusion`) and overrides the smallest piece (one method, or one table after
`super().__init__`) to carry one realistic bug of the kind diffusion libraries have shipped.
A zero-argument factory named for the bug returns it, so that
`ddpm-verify check properties.support.broken_targets:<name>` (from the checkout) resolves it by duck typing; guided-diffusion
objects are wrapped in the `GuidedDiffusion` adapter with their schedule name only where the
bug is in the betas themselves. `BROKEN` maps names to factories of broken targets (each must
fail a check), `CONTROLS` to stock configurations (each must pass every check) and `UNCAUGHT` to
realistic bugs whose effect stays within the checks' budgets in the configuration given (each
docstring states the measured size).

Paper indexing in the docstrings: t = 1..T is the library's index + 1, abar_0 = 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor
from guided_diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    _extract_into_tensor,
    get_named_beta_schedule,
)
from guided_diffusion.losses import discretized_gaussian_log_likelihood, normal_kl
from guided_diffusion.nn import mean_flat

from ddpm_verify.adapters.guided_diffusion import GuidedDiffusion

LN2 = math.log(2.0)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per leading index, broadcastable against `like`."""
    return values.flatten().reshape(-1, *([1] * (like.ndim - 1)))


# -- diffusers DDPMScheduler ---------------------------------------------------------------------

class PreviousTimestepSkipsOne(DDPMScheduler):
    def previous_timestep(self, timestep):
        return super().previous_timestep(timestep) - 1


class PosteriorVarianceInverted(DDPMScheduler):
    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        if (variance_type or self.config.variance_type) != "fixed_small":
            return super()._get_variance(t, predicted_variance, variance_type)
        prev_t = self.previous_timestep(t)
        abar_t = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_t = 1 - abar_t / abar_prev
        return torch.clamp((1 - abar_t) / (1 - abar_prev) * beta_t, min=1e-20)


class LearnedRangeInVarianceSpace(DDPMScheduler):
    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        if (variance_type or self.config.variance_type) != "learned_range":
            return super()._get_variance(t, predicted_variance, variance_type)
        small = super()._get_variance(t, variance_type="fixed_small")
        large = super()._get_variance(t, variance_type="fixed_large")
        frac = (predicted_variance + 1) / 2
        return torch.log(frac * large + (1 - frac) * small)


class AlphasCumprodFloat16(DDPMScheduler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alphas_cumprod = self.alphas_cumprod.half().float()


class NoiseAtFinalStep(DDPMScheduler):
    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        prev, x0_hat = super().step(model_output, timestep, sample, generator=generator, return_dict=False)
        if timestep == 0:
            noise = randn_tensor(model_output.shape, generator=generator, dtype=model_output.dtype)
            prev = prev + self._get_variance(timestep) ** 0.5 * noise
        return (prev, x0_hat) if not return_dict else DDPMSchedulerOutput(prev_sample=prev,
                                                                          pred_original_sample=x0_hat)


class VPredictionSignFlipped(DDPMScheduler):
    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        return super().step(-model_output, timestep, sample, generator=generator, return_dict=return_dict)


class AddNoiseWithoutSqrt(DDPMScheduler):
    def add_noise(self, original_samples, noise, timesteps):
        abar = _per_row(self.alphas_cumprod.to(original_samples.dtype)[timesteps], original_samples)
        return abar ** 0.5 * original_samples + (1 - abar) * noise


class AddNoiseOneBasedIndex(DDPMScheduler):
    def add_noise(self, original_samples, noise, timesteps):
        return super().add_noise(original_samples, noise, timesteps - 1)


class VelocitySignFlipped(DDPMScheduler):
    def get_velocity(self, sample, noise, timesteps):
        return -super().get_velocity(sample, noise, timesteps)


class FixedSmallLogReturnsVariance(DDPMScheduler):
    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        if (variance_type or self.config.variance_type) == "fixed_small_log":
            return super()._get_variance(t, predicted_variance, "fixed_small")
        return super()._get_variance(t, predicted_variance, variance_type)


_SWAPPED = {"fixed_small": "fixed_large", "fixed_large": "fixed_small"}


class FixedSmallLargeSwapped(DDPMScheduler):
    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        kind = variance_type or self.config.variance_type
        return super()._get_variance(t, predicted_variance, _SWAPPED.get(kind, kind))


class LinearBetasOffByOne(DDPMScheduler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps + 1,
                                    dtype=torch.float32)[:-1]
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)


class ZeroTerminalSnrIgnored(DDPMScheduler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps, dtype=torch.float32)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)


def previous_timestep_skips_one():
    """previous_timestep returns t - 2: abar_{t-2} stands for abar_{t-1} in mu_tilde_t and beta_tilde_t."""
    return PreviousTimestepSkipsOne()


def posterior_variance_inverted():
    """fixed_small sigma^2 = (1 - abar_t) / (1 - abar_{t-1}) beta_t: beta_tilde_t with its ratio inverted."""
    return PosteriorVarianceInverted()


def learned_range_in_variance_space():
    """learned_range sigma^2 = v beta_t + (1 - v) beta_tilde_t; the log-variances are what is interpolated."""
    return LearnedRangeInVarianceSpace(variance_type="learned_range")


def alphas_cumprod_float16():
    """alphas_cumprod rounded through float16 (relative error 2^-11); abar_t = prod_{s<=t} (1 - beta_s)."""
    return AlphasCumprodFloat16()


def noise_at_final_step():
    """step adds sigma_1 z at t = 1 as well; x_0 = mu_theta(x_1, 1), with no noise."""
    return NoiseAtFinalStep(variance_type="fixed_large")


def v_prediction_sign_flipped():
    """step takes x0_hat = sqrt(abar_t) x_t + sqrt(1 - abar_t) v; x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
    return VPredictionSignFlipped(prediction_type="v_prediction", clip_sample=False)


def add_noise_without_sqrt():
    """add_noise scales eps by (1 - abar_t); x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    return AddNoiseWithoutSqrt()


def add_noise_one_based_index():
    """add_noise reads alphas_cumprod[t - 1] (abar_{t-1}, abar_T at t = 1); x_t needs abar_t."""
    return AddNoiseOneBasedIndex()


def velocity_sign_flipped():
    """get_velocity returns sqrt(1 - abar_t) x_0 - sqrt(abar_t) eps; v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
    return VelocitySignFlipped()


def fixed_small_log_returns_variance():
    """fixed_small_log step scales the noise by beta_tilde_t; x_{t-1} = mu + sqrt(beta_tilde_t) z."""
    return FixedSmallLogReturnsVariance(variance_type="fixed_small_log")


def fixed_small_large_swapped():
    """fixed_small samples with beta_t, fixed_large with beta_tilde_t; sigma_t^2 = beta_tilde_t and beta_t."""
    return FixedSmallLargeSwapped()


def linear_betas_off_by_one():
    """linear betas from linspace over T + 1 points, last dropped; beta_T = 0.02 needs T points."""
    return LinearBetasOffByOne()


def zero_terminal_snr_ignored():
    """rescale_betas_zero_snr=True is accepted but not applied; abar_T = 0 after rescaling."""
    return ZeroTerminalSnrIgnored(rescale_betas_zero_snr=True, prediction_type="v_prediction")


# -- guided-diffusion GaussianDiffusion ----------------------------------------------------------

def _gaussian_diffusion(cls=GaussianDiffusion, *, steps=1000, betas=None, mean=ModelMeanType.EPSILON,
                        var=ModelVarType.FIXED_LARGE, loss=LossType.MSE):
    """A GaussianDiffusion (or subclass) over the linear schedule of `steps` steps, or over `betas`."""
    betas = get_named_beta_schedule("linear", steps) if betas is None else betas
    return cls(betas=betas, model_mean_type=mean, model_var_type=var, loss_type=loss)


def _vb_terms(diffusion, model, x_start, x_t, t, clip_denoised, *, swap_kl=False, per_unit=LN2,
              decoder_index=0):
    """guided-diffusion's `_vb_terms_bpd` with the KL's argument order, the unit divisor and the
    index that gets the decoder as parameters."""
    true_mean, _, true_log_var = diffusion.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)
    out = diffusion.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised)
    q, p = (true_mean, true_log_var), (out["mean"], out["log_variance"])
    first, second = (p, q) if swap_kl else (q, p)
    kl = mean_flat(normal_kl(*first, *second)) / per_unit
    decoder_nll = mean_flat(-discretized_gaussian_log_likelihood(
        x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])) / per_unit
    return {"output": torch.where(t == decoder_index, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}


def _p_sample(diffusion, model, x, t, clip_denoised, *, mask_last=True, draw=torch.randn_like, sd_power=0.5):
    """guided-diffusion's `p_sample` with the last-step mask, the noise law and the power of the
    variance that scales the noise as parameters."""
    out = diffusion.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
    mask = _per_row((t != 0).float(), x) if mask_last else 1.0
    sample = out["mean"] + mask * torch.exp(sd_power * out["log_variance"]) * draw(x)
    return {"sample": sample, "pred_xstart": out["pred_xstart"]}


def _posterior_tables(diffusion) -> None:
    """Recompute the posterior tables from betas, alphas_cumprod and alphas_cumprod_prev as
    guided-diffusion's __init__ does."""
    b, abar, prev = diffusion.betas, diffusion.alphas_cumprod, diffusion.alphas_cumprod_prev
    diffusion.posterior_variance = b * (1.0 - prev) / (1.0 - abar)
    diffusion.posterior_log_variance_clipped = np.log(np.append(diffusion.posterior_variance[1],
                                                                diffusion.posterior_variance[1:]))
    diffusion.posterior_mean_coef1 = b * np.sqrt(prev) / (1.0 - abar)
    diffusion.posterior_mean_coef2 = (1.0 - prev) * np.sqrt(1.0 - b) / (1.0 - abar)


class AlphasCumprodPrevUnshifted(GaussianDiffusion):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.alphas_cumprod_prev = self.alphas_cumprod.copy()
        _posterior_tables(self)


class PosteriorVarianceIsBeta(GaussianDiffusion):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.posterior_variance = self.betas.copy()
        self.posterior_log_variance_clipped = np.log(self.betas)


class PosteriorLogVarianceUnclipped(GaussianDiffusion):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.posterior_log_variance_clipped = np.log(np.maximum(self.posterior_variance, 1e-20))


class KlArgumentsSwapped(GaussianDiffusion):
    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        return _vb_terms(self, model, x_start, x_t, t, clip_denoised, swap_kl=True)


class NatsReportedAsBits(GaussianDiffusion):
    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        return _vb_terms(self, model, x_start, x_t, t, clip_denoised, per_unit=1.0)


class DecoderAtSecondStep(GaussianDiffusion):
    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        return _vb_terms(self, model, x_start, x_t, t, clip_denoised, decoder_index=1)


class NoiseAtFinalSampleStep(GaussianDiffusion):
    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None):
        return _p_sample(self, model, x, t, clip_denoised, mask_last=False)


class UniformSampleNoise(GaussianDiffusion):
    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None):
        return _p_sample(self, model, x, t, clip_denoised, draw=torch.rand_like)


class VarianceAsStandardDeviation(GaussianDiffusion):
    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None):
        return _p_sample(self, model, x, t, clip_denoised, sd_power=1.0)


class QSampleCoefficientsSwapped(GaussianDiffusion):
    def q_sample(self, x_start, t, noise=None):
        noise = torch.randn_like(x_start) if noise is None else noise
        return (_extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * x_start
                + _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * noise)


class XstartFromEpsRecipCoefficient(GaussianDiffusion):
    def _predict_xstart_from_eps(self, x_t, t, eps):
        return _extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * (x_t - eps)


class ClipDenoisedIgnored(GaussianDiffusion):
    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        return super().p_mean_variance(model, x, t, clip_denoised=False, denoised_fn=denoised_fn,
                                       model_kwargs=model_kwargs)


class PriorAtPenultimateStep(GaussianDiffusion):
    def _prior_bpd(self, x_start):
        t = torch.full((x_start.shape[0],), self.num_timesteps - 2, dtype=torch.long)
        mean, _, log_var = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, log_var, 0.0, 0.0)) / LN2


class BpdLoopWithoutPrior(GaussianDiffusion):
    def calc_bpd_loop(self, model, x_start, clip_denoised=True, model_kwargs=None):
        out = super().calc_bpd_loop(model, x_start, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        return {**out, "total_bpd": out["vb"].sum(dim=1)}


class TrainingLossSummed(GaussianDiffusion):
    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise=noise)
        mse = ((noise - model(x_t, self._scale_timesteps(t))) ** 2).flatten(1).sum(dim=1)
        return {"loss": mse, "mse": mse}


class GuidedLinearBetasOffByOne(GaussianDiffusion):
    def __init__(self, **kwargs):
        T = len(kwargs["betas"])
        kwargs["betas"] = np.linspace(1000 / T * 0.0001, 1000 / T * 0.02, T + 1)[:-1]
        super().__init__(**kwargs)


def alphas_cumprod_prev_unshifted():
    """alphas_cumprod_prev = alphas_cumprod: abar_t stands for abar_{t-1} in mu_tilde_t and beta_tilde_t."""
    return _gaussian_diffusion(AlphasCumprodPrevUnshifted)


def posterior_variance_is_beta():
    """posterior_variance = beta_t; beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t."""
    return _gaussian_diffusion(PosteriorVarianceIsBeta, var=ModelVarType.FIXED_SMALL)


def posterior_log_variance_unclipped():
    """log beta_tilde_1 = log 1e-20; the clipped log-variance at t = 1 is log beta_tilde_2."""
    return _gaussian_diffusion(PosteriorLogVarianceUnclipped, var=ModelVarType.FIXED_SMALL)


def kl_arguments_swapped():
    """_vb_terms_bpd computes KL(p_theta || q); L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))."""
    return _gaussian_diffusion(KlArgumentsSwapped)


def nats_reported_as_bits():
    """_vb_terms_bpd returns nats per dimension as bits per dimension; bits = nats / ln 2."""
    return _gaussian_diffusion(NatsReportedAsBits)


def decoder_at_second_step():
    """_vb_terms_bpd returns the decoder NLL at t = 2 and a KL at t = 1; L_0 = -log p_theta(x_0 | x_1)."""
    return _gaussian_diffusion(DecoderAtSecondStep)


def noise_at_final_sample_step():
    """p_sample adds sigma_1 z at t = 1 (no nonzero mask); x_0 = mu_theta(x_1, 1)."""
    return _gaussian_diffusion(NoiseAtFinalSampleStep)


def uniform_sample_noise():
    """p_sample draws z with rand_like (U(0, 1)); x_{t-1} = mu + sigma_t z, z ~ N(0, I)."""
    return _gaussian_diffusion(UniformSampleNoise)


def variance_as_standard_deviation():
    """p_sample scales z by exp(log sigma_t^2) = sigma_t^2; x_{t-1} = mu + sigma_t z."""
    return _gaussian_diffusion(VarianceAsStandardDeviation)


def q_sample_coefficients_swapped():
    """q_sample returns sqrt(1 - abar_t) x_0 + sqrt(abar_t) eps; x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    return _gaussian_diffusion(QSampleCoefficientsSwapped)


def xstart_from_eps_recip_coefficient():
    """x0_hat = sqrt(1 / abar_t) (x_t - eps); x0 = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps."""
    return _gaussian_diffusion(XstartFromEpsRecipCoefficient)


def clip_denoised_ignored():
    """p_mean_variance never clips x0_hat to [-1, 1], whatever clip_denoised says."""
    return _gaussian_diffusion(ClipDenoisedIgnored)


def prior_at_penultimate_step():
    """_prior_bpd uses q(x_{T-1} | x_0) (T = 100, abar_{T-1} = 1.25 abar_T); L_T = KL(q(x_T | x_0) || N(0, I))."""
    return _gaussian_diffusion(PriorAtPenultimateStep, steps=100)


def bpd_loop_without_prior():
    """calc_bpd_loop's total omits L_T (betas linspace(1e-4, 0.02, 100), L_T ~ 0.5 nats); total = L_T + sum L_{t-1}."""
    return _gaussian_diffusion(BpdLoopWithoutPrior, betas=np.linspace(1e-4, 0.02, 100))


def prior_at_penultimate_step_1000_steps():
    """As prior_at_penultimate_step at T = 1000: L_T off by 2% (<= 8.7e-7 nats), within the prior check's budget."""
    return _gaussian_diffusion(PriorAtPenultimateStep)


def bpd_loop_without_prior_1000_steps():
    """As bpd_loop_without_prior on linear T = 1000: total off by L_T <= 4.2e-5 nats, within the total's budget."""
    return _gaussian_diffusion(BpdLoopWithoutPrior)


def training_loss_summed():
    """MSE training loss summed over dimensions; documented as the mean over dimensions (mean_flat)."""
    return _gaussian_diffusion(TrainingLossSummed)


def guided_linear_betas_off_by_one():
    """linear betas from linspace over T + 1 points, last dropped; beta_T = 0.02 (1000 / T) needs T points."""
    return GuidedDiffusion(_gaussian_diffusion(GuidedLinearBetasOffByOne), schedule="linear")


# -- controls ------------------------------------------------------------------------------------

def stock_ddpm_scheduler():
    """DDPMScheduler() as shipped."""
    return DDPMScheduler()


def stock_ddpm_scheduler_v_prediction():
    """DDPMScheduler(prediction_type="v_prediction", clip_sample=False) as shipped."""
    return DDPMScheduler(prediction_type="v_prediction", clip_sample=False)


def stock_ddpm_scheduler_learned_range():
    """DDPMScheduler(variance_type="learned_range") as shipped."""
    return DDPMScheduler(variance_type="learned_range")


def stock_gaussian_diffusion():
    """GaussianDiffusion, linear 1000 steps, EPSILON, FIXED_LARGE, MSE, as shipped."""
    return _gaussian_diffusion()


def stock_gaussian_diffusion_learned_range_kl():
    """GaussianDiffusion, linear 1000 steps, EPSILON, LEARNED_RANGE, KL, as shipped (schedule named)."""
    return GuidedDiffusion(_gaussian_diffusion(var=ModelVarType.LEARNED_RANGE, loss=LossType.KL), schedule="linear")


BROKEN = {f.__name__: f for f in (
    previous_timestep_skips_one, posterior_variance_inverted, learned_range_in_variance_space,
    alphas_cumprod_float16, noise_at_final_step, v_prediction_sign_flipped, add_noise_without_sqrt,
    add_noise_one_based_index, velocity_sign_flipped, fixed_small_log_returns_variance, fixed_small_large_swapped,
    linear_betas_off_by_one, zero_terminal_snr_ignored,
    alphas_cumprod_prev_unshifted, posterior_variance_is_beta, posterior_log_variance_unclipped,
    kl_arguments_swapped, nats_reported_as_bits, decoder_at_second_step, noise_at_final_sample_step,
    uniform_sample_noise, variance_as_standard_deviation, q_sample_coefficients_swapped,
    xstart_from_eps_recip_coefficient, clip_denoised_ignored, prior_at_penultimate_step, bpd_loop_without_prior,
    training_loss_summed, guided_linear_betas_off_by_one,
)}

#: realistic bugs the checks do not catch in these configurations (effect below the budget)
UNCAUGHT = {f.__name__: f for f in (prior_at_penultimate_step_1000_steps, bpd_loop_without_prior_1000_steps)}

CONTROLS = {f.__name__: f for f in (
    stock_ddpm_scheduler, stock_ddpm_scheduler_v_prediction, stock_ddpm_scheduler_learned_range,
    stock_gaussian_diffusion, stock_gaussian_diffusion_learned_range_kl,
)}
