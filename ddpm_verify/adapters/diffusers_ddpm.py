"""Adapter for diffusers' `DDPMScheduler` (diffusers 0.30 or newer).

Index translation (the one place): diffusers' timestep i is paper t = i + 1; its
`alphas_cumprod[i]` is abar_{i+1}. The schedule the scheduler claims is rebuilt in float64
from its config (`beta_schedule`, `beta_start`, `beta_end`, `trained_betas`,
`rescale_betas_zero_snr`).
"""

from __future__ import annotations

import numpy as np

import reference

#: the p_theta variance each diffusers variance_type stands for (what step() should sample with)
INTENDED_VARIANCE = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",     # returns the standard deviation; same distribution
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",     # GLIDE's max_log: log-variance log beta_t
    "learned_range": "learned_range",
    "learned": "learned_variance",        # the model outputs sigma_t^2 itself
}
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def looks_like_ddpm_scheduler(obj) -> bool:
    return all(hasattr(obj, a) for a in ("add_noise", "step", "alphas_cumprod", "config"))


class DiffusersDDPM:
    """A `Target` over a `diffusers.DDPMScheduler`-like object."""

    def __init__(self, scheduler):
        import torch

        self._torch = torch
        self.scheduler = scheduler
        cfg = scheduler.config
        self.T = int(cfg.num_train_timesteps)
        self.variance_type = str(getattr(scheduler, "variance_type", cfg.variance_type))
        self.prediction_type = str(cfg.prediction_type)
        #: the reference model variance (elbo.VARIANCE_KINDS) that step() should sample with
        self.intended_variance = INTENDED_VARIANCE.get(self.variance_type)
        self.clip_sample = bool(cfg.clip_sample) and not bool(getattr(cfg, "thresholding", False))
        self.clip_range = float(getattr(cfg, "clip_sample_range", 1.0))
        try:
            import diffusers
            self.version = f"diffusers {diffusers.__version__}"
        except ImportError:  # a DDPMScheduler-like object from elsewhere
            self.version = type(scheduler).__module__
        self.name = (f"{type(scheduler).__name__}(beta_schedule={cfg.beta_schedule}, variance_type="
                     f"{self.variance_type}, prediction_type={self.prediction_type}, clip_sample={self.clip_sample})")
        self.unit_roundoff = float(torch.finfo(scheduler.alphas_cumprod.dtype).eps) / 2
        ops = {"schedule", "q_sample", "previous_t"}
        if self.intended_variance and hasattr(scheduler, "_get_variance"):
            ops.add("model_variance")
        if hasattr(scheduler, "get_velocity"):
            ops.add("velocity")
        if self.intended_variance and self.prediction_type in ("epsilon", "sample", "v_prediction"):
            ops.add("reverse_step")
        self.operations = frozenset(ops)
        self.rescaled_from = None
        self.large_variance_at_1 = "beta"

    # -- the claimed schedule --------------------------------------------------------------------
    def reference_schedule(self) -> reference.Schedule:
        cfg = self.scheduler.config
        if cfg.trained_betas is not None:
            sched = reference.Schedule(np.asarray(cfg.trained_betas, dtype=np.float64), name="trained_betas")
        elif cfg.beta_schedule == "linear":
            sched = reference.linear(self.T, beta_start=cfg.beta_start, beta_end=cfg.beta_end)
        elif cfg.beta_schedule == "scaled_linear":
            sched = reference.scaled_linear(self.T, beta_start=cfg.beta_start, beta_end=cfg.beta_end)
        elif cfg.beta_schedule == "squaredcos_cap_v2":
            sched = reference.cosine(self.T)
        elif cfg.beta_schedule == "sigmoid":
            sched = reference.sigmoid(self.T, beta_start=cfg.beta_start, beta_end=cfg.beta_end)
        else:
            raise ValueError(f"beta_schedule {cfg.beta_schedule!r} has no reference counterpart "
                             f"(supported: {', '.join(SCHEDULES)}, trained_betas)")
        if getattr(cfg, "rescale_betas_zero_snr", False):
            self.rescaled_from = sched           # the tolerance of rescaled betas depends on it
            sched = reference.zero_terminal_snr(sched)
        return sched

    # -- operations (paper t in, float64 out) ------------------------------------------------------
    def _tensor(self, a):
        return self._torch.as_tensor(np.asarray(a), dtype=self.scheduler.alphas_cumprod.dtype)

    def _index(self, t):
        return self._torch.as_tensor(np.asarray(t) - 1, dtype=self._torch.long)   # paper t -> diffusers i

    def tables(self) -> dict[str, np.ndarray]:
        return {"beta": self.scheduler.betas.double().numpy().copy(),
                "alpha_bar": self.scheduler.alphas_cumprod.double().numpy().copy()}

    def q_sample(self, x0, t, eps) -> np.ndarray:
        out = self.scheduler.add_noise(self._tensor(x0), self._tensor(eps), self._index(t))
        return out.double().numpy()

    def velocity(self, x0, t, eps) -> np.ndarray:
        return self.scheduler.get_velocity(self._tensor(x0), self._tensor(eps), self._index(t)).double().numpy()

    def previous_t(self, t: int) -> int:
        return int(self.scheduler.previous_timestep(int(t) - 1)) + 1

    def model_variance(self, t: int, model_output) -> np.ndarray:
        """sigma_t^2 from `_get_variance`, whose return is, per variance_type, the variance
        (fixed_small, fixed_large), the standard deviation (fixed_small_log) or the log-variance
        (fixed_large_log, learned_range): the quantity `step` consumes."""
        out = self._tensor(model_output)
        d = out.shape[1] // 2 if self.variance_type in ("learned", "learned_range") else None
        predicted = out[:, d:] if d else None
        value = self.scheduler._get_variance(int(t) - 1, predicted_variance=predicted).double()
        value = value.expand(out.shape[0], d or out.shape[1]).numpy()
        if self.variance_type == "fixed_small_log":
            return value ** 2
        if self.variance_type in ("fixed_large_log", "learned_range"):
            return np.exp(value)
        return value

    def reverse_step(self, model_output, xt, t: int, seed: int):
        """(x_{t-1}, noise) from one `step` at paper t; the noise is regenerated from the same seed."""
        torch = self._torch
        out = self._tensor(model_output)
        sample = self._tensor(xt)
        g = torch.Generator().manual_seed(seed)
        prev = self.scheduler.step(out, int(t) - 1, sample, generator=g, return_dict=False)[0]
        noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(seed), dtype=sample.dtype)
        return prev.double().numpy(), noise.double().numpy()
