"""Samplers with fewer steps than training, broken the ways such code goes wrong: subclasses of the
real diffusers DDPMScheduler / DDIMScheduler / DDIMInverseScheduler and guided-diffusion
SpacedDiffusion / GaussianDiffusion, each overriding the smallest piece to carry one bug.

`BROKEN` maps names to factories (each must fail `ddpm-verify check`, exit 1), `CONTROLS` to the
stock objects in the same configurations (each must pass, exit 0). Paper t = index + 1.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler
from guided_diffusion import gaussian_diffusion as gd
from guided_diffusion.respace import SpacedDiffusion, space_timesteps

from ddpm_verify.adapters.guided_diffusion import GuidedDiffusion


# -- diffusers DDIMScheduler: the step written out, one bug at a time -----------------------------------

class _DDIM(DDIMScheduler):
    """DDIMScheduler.step for epsilon prediction with clipping, as diffusers writes it; `bug` names
    the one thing changed."""

    bug = None

    def step(self, model_output, timestep, sample, eta=0.0, use_clipped_model_output=False, generator=None,
             variance_noise=None, return_dict=True):
        step = self.config.num_train_timesteps // self.num_inference_steps
        prev_timestep = timestep - step - (1 if self.bug == "previous_abar_off_by_one" else 0)
        abar_t = self.alphas_cumprod[timestep]
        final = self.alphas_cumprod[0] if self.bug == "final_step_to_abar_1" else self.final_alpha_cumprod
        abar_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else final
        x0 = (sample - (1 - abar_t) ** 0.5 * model_output) / abar_t ** 0.5
        if self.config.clip_sample and self.bug != "clipping_ignored":
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        eps = model_output
        variance = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
        eta = 1.0 if self.bug == "eta_ignored" else eta
        std = {"sigma_without_sqrt": eta * variance, "eta_squared": eta ** 2 * variance ** 0.5}.get(
            self.bug, eta * variance ** 0.5)
        direction = ((1 - abar_prev) ** 0.5 if self.bug == "direction_without_sigma"
                     else (1 - abar_prev - std ** 2) ** 0.5) * eps
        prev = abar_prev ** 0.5 * x0 + direction
        if self.bug == "sqrt_coefficients_swapped":
            prev = (1 - abar_prev) ** 0.5 * x0 + abar_prev ** 0.5 * eps
        if eta > 0:
            noise = torch.randn(model_output.shape, generator=generator, dtype=model_output.dtype)
            prev = prev + std * noise
        return (prev, x0) if not return_dict else None


def _ddim(bug, **config):
    scheduler = _DDIM(**config)
    scheduler.bug = bug
    return scheduler


def ddim_sigma_without_sqrt():
    return _ddim("sigma_without_sqrt")


def ddim_direction_without_sigma():
    return _ddim("direction_without_sigma")


def ddim_previous_abar_off_by_one():
    return _ddim("previous_abar_off_by_one")


def ddim_final_step_to_abar_1():
    return _ddim("final_step_to_abar_1")


def ddim_eta_squared():
    return _ddim("eta_squared")


def ddim_eta_ignored():
    return _ddim("eta_ignored")


def ddim_clipping_ignored():
    return _ddim("clipping_ignored")


def ddim_sqrt_coefficients_swapped():
    return _ddim("sqrt_coefficients_swapped")


class _ShiftedTimesteps(DDIMScheduler):
    def set_timesteps(self, num_inference_steps, device=None):
        super().set_timesteps(num_inference_steps, device)
        self.timesteps = self.timesteps + self.config.steps_offset + 1       # the offset applied twice


def ddim_timesteps_offset_twice():
    return _ShiftedTimesteps(steps_offset=1)


# -- diffusers DDPMScheduler after set_timesteps ---------------------------------------------------------

class _FullChainPrevious(DDPMScheduler):
    """previous_timestep ignores the inference timesteps: every step goes to t - 1."""

    def previous_timestep(self, timestep):
        return timestep - 1


def ddpm_strided_steps_to_t_minus_one():
    scheduler = _FullChainPrevious(clip_sample=False)
    scheduler.set_timesteps(50)
    return scheduler


class _TrainingBetaInRange(DDPMScheduler):
    """The learned range's upper end uses the training beta_t, not the strided 1 - abar_t / abar_prev."""

    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        if (variance_type or self.config.variance_type) != "learned_range":
            return super()._get_variance(t, predicted_variance, variance_type)
        small = super()._get_variance(t, variance_type="fixed_small")
        frac = (predicted_variance + 1) / 2
        return frac * torch.log(self.betas[t]) + (1 - frac) * torch.log(small)


def ddpm_strided_learned_range_with_training_beta():
    scheduler = _TrainingBetaInRange(variance_type="learned_range", clip_sample=False)
    scheduler.set_timesteps(50)
    return scheduler


class _FullChainPosteriorVariance(DDPMScheduler):
    """The strided step samples with the full chain's beta_tilde_t, not the respaced beta_tilde'."""

    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        prev = self.alphas_cumprod[t - 1] if t > 0 else self.one
        return torch.clamp((1 - prev) / (1 - self.alphas_cumprod[t]) * self.betas[t], min=1e-20)


def ddpm_strided_full_chain_variance():
    scheduler = _FullChainPosteriorVariance(clip_sample=False)
    scheduler.set_timesteps(37)
    return scheduler


class _NoiseOnLastStep(DDPMScheduler):
    """The step to x_0 of a strided sequence adds beta_tilde' noise like every other."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        prev, x0 = super().step(model_output, timestep, sample, generator=generator, return_dict=False)
        if self.previous_timestep(timestep) < 0:
            abar = self.alphas_cumprod[timestep]
            prev = prev + (1 - abar) ** 0.5 * torch.randn(sample.shape, generator=generator, dtype=sample.dtype)
        return prev, x0


def ddpm_strided_noise_on_the_last_step():
    scheduler = _NoiseOnLastStep(clip_sample=False, timestep_spacing="trailing")
    scheduler.set_timesteps(20)
    return scheduler


class _LinspaceNotRounded(DDPMScheduler):
    """linspace timesteps truncated instead of rounded."""

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        super().set_timesteps(num_inference_steps, device, timesteps)
        T = self.config.num_train_timesteps
        self.timesteps = torch.from_numpy(np.linspace(0, T - 1, num_inference_steps)[::-1].astype(np.int64).copy())


def ddpm_linspace_truncated():
    scheduler = _LinspaceNotRounded(timestep_spacing="linspace")
    scheduler.set_timesteps(30)
    return scheduler


# -- diffusers DDIMInverseScheduler ----------------------------------------------------------------------

class _InverseDirection(DDIMInverseScheduler):
    """The inversion step's two abars exchanged: it predicts at the upper timestep and lands on the lower."""

    def step(self, model_output, timestep, sample, return_dict=True):
        upper = timestep
        lower = min(timestep - self.config.num_train_timesteps // self.num_inference_steps,
                    self.config.num_train_timesteps - 1)
        abar_from = self.alphas_cumprod[upper]
        abar_to = self.alphas_cumprod[lower] if lower >= 0 else self.initial_alpha_cumprod
        x0 = (sample - (1 - abar_from) ** 0.5 * model_output) / abar_from ** 0.5
        if self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return abar_to ** 0.5 * x0 + (1 - abar_to) ** 0.5 * model_output, x0


def ddim_inverse_steps_down():
    return _InverseDirection()


class _InverseInitial(DDIMInverseScheduler):
    """The first inversion step starts from abar_1 whatever set_alpha_to_one says."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.initial_alpha_cumprod = self.alphas_cumprod[0]


def ddim_inverse_initial_abar_ignored():
    return _InverseInitial(set_alpha_to_one=True)


# -- guided-diffusion SpacedDiffusion and GaussianDiffusion -----------------------------------------------

def _kwargs(var=gd.ModelVarType.FIXED_SMALL, mean=gd.ModelMeanType.EPSILON):
    return dict(betas=gd.get_named_beta_schedule("linear", 1000), model_mean_type=mean, model_var_type=var,
                loss_type=gd.LossType.MSE)


def _spaced(cls, respacing="250", **kwargs):
    return GuidedDiffusion(cls(use_timesteps=space_timesteps(1000, respacing), **_kwargs(**kwargs)),
                           schedule="linear", section_counts=respacing)


class _BetasAtKeptSteps(SpacedDiffusion):
    """The respaced chain keeps the base betas at the kept steps instead of 1 - abar_k / abar_prev."""

    def __init__(self, use_timesteps, **kwargs):
        base = np.asarray(kwargs["betas"])
        kept = sorted(use_timesteps)
        super().__init__(use_timesteps, **kwargs)
        gd.GaussianDiffusion.__init__(self, **{**kwargs, "betas": base[kept]})


def spaced_betas_at_kept_steps():
    return _spaced(_BetasAtKeptSteps)


class _ModelGetsIndex(SpacedDiffusion):
    """The model is called with the respaced index, not the training timestep (no timestep_map)."""

    def _wrap_model(self, model):
        return model


def spaced_model_gets_the_index():
    return _spaced(_ModelGetsIndex)


class _MapOffByOne(SpacedDiffusion):
    def __init__(self, use_timesteps, **kwargs):
        super().__init__(use_timesteps, **kwargs)
        self.timestep_map = [min(i + 1, 999) for i in self.timestep_map]


def spaced_timestep_map_off_by_one():
    return _spaced(_MapOffByOne)


class _PrevUnshifted(SpacedDiffusion):
    """alphas_cumprod_prev equal to alphas_cumprod: every DDIM step goes to the same noise level."""

    def __init__(self, use_timesteps, **kwargs):
        super().__init__(use_timesteps, **kwargs)
        self.alphas_cumprod_prev = self.alphas_cumprod.copy()


def spaced_ddim_previous_abar_unshifted():
    return _spaced(_PrevUnshifted, "ddim50")


class _ReverseUsesPrev(SpacedDiffusion):
    """DDIM inversion steps with alphas_cumprod_prev: back down instead of up."""

    def __init__(self, use_timesteps, **kwargs):
        super().__init__(use_timesteps, **kwargs)
        self.alphas_cumprod_next = self.alphas_cumprod_prev.copy()


def spaced_ddim_inversion_steps_down():
    return _spaced(_ReverseUsesPrev, "ddim50")


class _FullChainVarianceInRespaced(SpacedDiffusion):
    """FIXED_LARGE of the respaced chain uses the base betas at the kept steps, not beta'."""

    def __init__(self, use_timesteps, **kwargs):
        base = np.asarray(kwargs["betas"])
        super().__init__(use_timesteps, **kwargs)
        self._base_kept = base[sorted(use_timesteps)]

    def p_mean_variance(self, model, x, t, **kwargs):
        out = super().p_mean_variance(model, x, t, **kwargs)
        var = gd._extract_into_tensor(np.append(self.posterior_variance[1], self._base_kept[1:]), t, x.shape)
        return {**out, "variance": var, "log_variance": th_log(var)}


def th_log(x):
    return torch.log(x)


def spaced_fixed_large_with_training_betas():
    return _spaced(_FullChainVarianceInRespaced, var=gd.ModelVarType.FIXED_LARGE)


class _DdimSigmaSquared(gd.GaussianDiffusion):
    """ddim_sample with sigma^2 where sigma belongs (the noise's standard deviation squared)."""

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None,
                    eta=0.0):
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        abar = gd._extract_into_tensor(self.alphas_cumprod, t, x.shape)
        abar_prev = gd._extract_into_tensor(self.alphas_cumprod_prev, t, x.shape)
        sigma2 = eta * (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
        noise = torch.randn_like(x)
        mean = out["pred_xstart"] * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma2) * eps
        nonzero = (t != 0).float().view(-1, *([1] * (len(x.shape) - 1)))
        return {"sample": mean + nonzero * sigma2 * noise, "pred_xstart": out["pred_xstart"]}


def guided_ddim_sigma_squared():
    return GuidedDiffusion(_DdimSigmaSquared(**_kwargs()), schedule="linear")


# -- lucidrains GaussianDiffusion -----------------------------------------------------------------------

def _lucidrains(cls_body: dict, **options):
    """A subclass of lucidrains' GaussianDiffusion with `cls_body`, built with the checker's network."""
    import math

    from ddpm_verify.adapters.lucidrains import LucidrainsDiffusion, checker_network_for, import_lucidrains

    base = import_lucidrains().GaussianDiffusion
    cls = type("Broken" + base.__name__, (base,), cls_body)
    options = {"timesteps": 1000, "beta_schedule": "linear", "objective": "pred_noise", "sampling_timesteps": 50,
               "auto_normalize": False, **options}
    return LucidrainsDiffusion(cls(checker_network_for(3), image_size=8, **options), "linear", math.inf)


def _inverted_weights(self, *args, **kwargs):
    type(self).__mro__[1].__init__(self, *args, **kwargs)
    self.loss_weight = 1 / self.loss_weight


def lucidrains_loss_weight_inverted():
    return _lucidrains({"__init__": _inverted_weights}, objective="pred_x0")


def _unclipped_predictions(self, x, t, x_self_cond=None, clip_x_start=False, rederive_pred_noise=False):
    return type(self).__mro__[1].model_predictions(self, x, t, x_self_cond, False, rederive_pred_noise)


def lucidrains_ddim_without_clipping():
    return _lucidrains({"model_predictions": _unclipped_predictions})


def _unfloored(self, *args, **kwargs):
    type(self).__mro__[1].__init__(self, *args, **kwargs)
    self.posterior_log_variance_clipped = torch.log(self.posterior_variance)


def lucidrains_log_variance_not_floored():
    return _lucidrains({"__init__": _unfloored})


BROKEN = {f.__name__: f for f in (
    ddim_sigma_without_sqrt, ddim_direction_without_sigma, ddim_previous_abar_off_by_one, ddim_final_step_to_abar_1,
    ddim_eta_squared, ddim_eta_ignored, ddim_clipping_ignored, ddim_sqrt_coefficients_swapped,
    ddim_timesteps_offset_twice, ddpm_strided_steps_to_t_minus_one, ddpm_strided_learned_range_with_training_beta,
    ddpm_strided_full_chain_variance, ddpm_strided_noise_on_the_last_step, ddpm_linspace_truncated,
    ddim_inverse_steps_down, ddim_inverse_initial_abar_ignored, spaced_betas_at_kept_steps,
    spaced_model_gets_the_index, spaced_timestep_map_off_by_one, spaced_ddim_previous_abar_unshifted,
    spaced_ddim_inversion_steps_down, spaced_fixed_large_with_training_betas, guided_ddim_sigma_squared,
    lucidrains_loss_weight_inverted, lucidrains_ddim_without_clipping, lucidrains_log_variance_not_floored,
)}


def stock_ddim():
    return DDIMScheduler()


def stock_ddim_clean_reimplementation():
    return _ddim(None)


def stock_ddim_inverse():
    return DDIMInverseScheduler()


def stock_ddpm_strided_learned_range():
    scheduler = DDPMScheduler(variance_type="learned_range", clip_sample=False)
    scheduler.set_timesteps(50)
    return scheduler


def stock_ddpm_strided_trailing():
    scheduler = DDPMScheduler(clip_sample=False, timestep_spacing="trailing")
    scheduler.set_timesteps(20)
    return scheduler


def stock_spaced():
    return _spaced(SpacedDiffusion)


def stock_spaced_fixed_large_ddim50():
    return _spaced(SpacedDiffusion, "ddim50", var=gd.ModelVarType.FIXED_LARGE)


def stock_guided_ddim():
    return GuidedDiffusion(gd.GaussianDiffusion(**_kwargs()), schedule="linear")


def stock_lucidrains_linear():
    from ddpm_verify.adapters.lucidrains import build
    return build(beta_schedule="linear", objective="pred_noise", sampling_timesteps=50)


def stock_lucidrains_cosine_v_min_snr():
    from ddpm_verify.adapters.lucidrains import build
    return build(beta_schedule="cosine", objective="pred_v", min_snr_loss_weight=True, ddim_sampling_eta=0.5)


CONTROLS = {f.__name__: f for f in (stock_ddim, stock_ddim_clean_reimplementation, stock_ddim_inverse,
                                      stock_ddpm_strided_learned_range, stock_ddpm_strided_trailing, stock_spaced,
                                      stock_spaced_fixed_large_ddim50, stock_guided_ddim, stock_lucidrains_linear,
                                      stock_lucidrains_cosine_v_min_snr)}
