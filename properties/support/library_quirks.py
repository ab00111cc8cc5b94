"""Library objects the checker must read correctly, or refuse with a reason: diffusers schedulers
in states and kinds it does not check, guided-diffusion's SpacedDiffusion respaced, and a
GaussianDiffusion whose q_sample returns the wrong shape. `EXPECTED` is as in `broken_adapters`.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler
from guided_diffusion import gaussian_diffusion as gd
from guided_diffusion.script_util import create_gaussian_diffusion


def strided():
    """A DDPMScheduler after set_timesteps(50): its step follows 50 inference timesteps."""
    s = DDPMScheduler(clip_sample=False)
    s.set_timesteps(50)
    return s


def custom_timesteps():
    """A DDPMScheduler given custom inference timesteps (num_inference_steps stays None)."""
    s = DDPMScheduler()
    s.set_timesteps(timesteps=[999, 500, 20, 0])
    return s


def ddim():
    return DDIMScheduler()


def respaced():
    return create_gaussian_diffusion(timestep_respacing="250")


class _FlatQSample(gd.GaussianDiffusion):
    def q_sample(self, x_start, t, noise=None):
        return super().q_sample(x_start, t, noise).flatten()


def flat_q_sample():
    return _FlatQSample(betas=gd.get_named_beta_schedule("linear", 100), model_mean_type=gd.ModelMeanType.EPSILON,
                        model_var_type=gd.ModelVarType.FIXED_SMALL, loss_type=gd.LossType.MSE)


_HERE = "properties.support.library_quirks"

#: TARGET -> (exit status, (check title, outcome) or a fragment of the stderr line)
EXPECTED = {
    "diffusers[thresholding=true]": (0, ("convention: x0_hat thresholding", "convention")),
    "diffusers[thresholding=true,sample_max_value=2.0]": (0, ("reverse: x0_hat", "pass")),
    "diffusers[steps_offset=1]": (0, ("strided: the timesteps each sampler visits", "pass")),
    "diffusers[thresholding=false,sample_max_value=3.0]": (0, ("option sample_max_value=3.0", "note")),
    "diffusers": (0, ("convention: t = 1 log-variance", "convention")),
    "diffusers[prediction_type=eps]": (2, "prediction_type='eps' is none of epsilon, sample, v_prediction"),
    "diffusers[variance_type=wide]": (2, "variance_type='wide'"),
    f"{_HERE}:strided": (0, ("convention: inference steps", "convention")),
    f"{_HERE}:custom_timesteps": (0, ("strided: the timesteps each sampler visits", "pass")),
    f"{_HERE}:ddim": (0, ("DDIM: step with eta", "pass")),
    f"{_HERE}:respaced": (2, "keeps only its respaced betas"),
    f"{_HERE}:flat_q_sample": (1, ("forward: q_sample with given noise", "fail")),
    # real bugs of diffusers 0.42.1: DDIM's previous timestep is t - T // n whatever the spacing, and
    # trailing spacing yields one timestep too many (index -1) for n = 61
    "diffusers-ddim[timestep_spacing=trailing]": (1, ("DDIM: step with eta", "fail")),
    "diffusers[timestep_spacing=trailing,num_inference_steps=61]": (1, ("strided: the timesteps each sampler visits",
                                                                       "fail")),
    # lucidrains' defaults (sigmoid schedule, pred_v): the schedule's end points are float32
    "lucidrains": (1, ("schedule: beta_t", "fail")),
    "lucidrains[beta_schedule=cosine,sampling_timesteps=37]": (0, ("DDIM: every step of a whole sampler run",
                                                                  "pass")),
    "lucidrains[colour=red]": (2, "lucidrains has no option 'colour'"),
}
