"""Adapter for diffusers' `DDPMScheduler` (diffusers 0.30 or newer).

Index translation (the one place): diffusers' timestep i is paper t = i + 1; its
`alphas_cumprod[i]` is abar_{i+1}. The schedule the scheduler claims is rebuilt in float64
from its config (`beta_schedule`, `beta_start`, `beta_end`, `trained_betas`,
`rescale_betas_zero_snr`). Its data are images (n, 3, 4, 4) by default: `step`'s dynamic
thresholding needs a channel axis and more. Conventions read from diffusers' code: the
variance is floored at 1e-20 (`torch.clamp(variance, min=1e-20)`), so log beta_tilde_1 is
log(1e-20); fixed_large uses beta_1 at t = 1; thresholding, when on, replaces clipping.
"""

from __future__ import annotations

import inspect

import numpy as np

import reference

from ..errors import TargetError
from .protocol import package_version

#: the p_theta variance (protocol.VARIANCE_TYPES) each diffusers variance_type stands for, i.e.
#: what step() should sample with
VARIANCE_TYPE = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",     # _get_variance returns the standard deviation
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",     # GLIDE's max_log: _get_variance returns log beta_t
    "learned_range": "learned_range",     # _get_variance returns the log-variance
    "learned": "learned_variance",        # the model outputs sigma_t^2 itself
}
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
#: what a DDPMScheduler-like object has (the rejection message lists what is missing)
MEMBERS = ("add_noise", "step", "alphas_cumprod", "config", "_get_variance")
_SET_TIMESTEPS_ONLY = ("it places the inference timesteps of set_timesteps(), and these checks run the full "
                       "T-step chain")


def missing_members(obj) -> list[str]:
    """The members of a DDPMScheduler that `obj` lacks (config.variance_type included: DDIM-style
    schedulers have none)."""
    missing = [m for m in MEMBERS if not hasattr(obj, m)]
    if "config" not in missing:
        cfg = obj.config
        if not (hasattr(cfg, "variance_type") or (isinstance(cfg, dict) and "variance_type" in cfg)):
            missing.append("config.variance_type")
    return missing


def looks_like_ddpm_scheduler(obj) -> bool:
    return not missing_members(obj)


def _config_defaults(scheduler) -> dict:
    return {k: p.default for k, p in inspect.signature(type(scheduler).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def inert_options(cfg, defaults: dict) -> dict[str, str]:
    """Options set to a non-default value that change nothing the checks test, with the reason."""
    def changed(key) -> bool:
        return key in cfg and key in defaults and cfg[key] != defaults[key]

    reasons = {"timestep_spacing": _SET_TIMESTEPS_ONLY, "steps_offset": _SET_TIMESTEPS_ONLY}
    if cfg.get("thresholding"):
        reasons["clip_sample"] = reasons["clip_sample_range"] = "thresholding replaces clipping in step()"
    else:
        reasons["dynamic_thresholding_ratio"] = reasons["sample_max_value"] = "thresholding is off"
        if not cfg.get("clip_sample"):
            reasons["clip_sample_range"] = "clip_sample is off"
    if cfg.get("trained_betas") is not None:
        reasons["beta_schedule"] = reasons["beta_start"] = reasons["beta_end"] = "trained_betas gives the betas"
    elif cfg.get("beta_schedule") == "squaredcos_cap_v2":
        reasons["beta_start"] = reasons["beta_end"] = "the cosine schedule does not use them"
    return {f"{k}={cfg[k]!r}": why for k, why in reasons.items() if changed(k)}


class DiffusersDDPM:
    """A target over a `diffusers.DDPMScheduler`-like object (the full T-step chain)."""

    def __init__(self, scheduler, data_shape: tuple[int, ...] = (3, 4, 4)):
        import torch

        self._torch = torch
        self.scheduler = scheduler
        cfg = scheduler.config
        kind = type(scheduler).__name__
        if getattr(scheduler, "num_inference_steps", None) is not None or getattr(scheduler, "custom_timesteps", False):
            how = scheduler.num_inference_steps or f"timesteps=[{len(scheduler.timesteps)} custom timesteps]"
            raise TargetError(f"{kind} has inference timesteps set (set_timesteps({how})): its step() then follows "
                              "a strided process; check the scheduler before set_timesteps (ddpm-verify checks the "
                              "full T-step DDPM chain)")
        self.T = int(cfg.num_train_timesteps)
        variance = str(getattr(scheduler, "variance_type", cfg.variance_type))
        if variance not in VARIANCE_TYPE:
            raise TargetError(f"{kind} variance_type={variance!r} is none of {', '.join(VARIANCE_TYPE)}")
        self.prediction_type = str(cfg.prediction_type)
        if self.prediction_type not in PREDICTION_TYPES:
            raise TargetError(f"{kind} prediction_type={self.prediction_type!r} is none of "
                              f"{', '.join(PREDICTION_TYPES)} (its step() raises on it)")
        self.diffusers_variance_type = variance
        self.variance_type = VARIANCE_TYPE[variance]
        self.thresholding = None
        if getattr(cfg, "thresholding", False):
            ratio, max_value = float(cfg.dynamic_thresholding_ratio), float(cfg.sample_max_value)
            if not (0 < ratio <= 1 and max_value >= 1):
                raise TargetError(f"{kind} thresholding with dynamic_thresholding_ratio={ratio} and "
                                  f"sample_max_value={max_value}: ddpm-verify checks ratio in (0, 1] and "
                                  "sample_max_value >= 1")
            self.thresholding = (ratio, max_value)
        self.clip_sample = bool(cfg.clip_sample) and self.thresholding is None
        self.clip_range = float(getattr(cfg, "clip_sample_range", 1.0))
        self.log_variance_at_1, self.variance_floor = "floor", 1e-20
        self.large_variance_at_1 = "beta"
        self.data_shape = tuple(data_shape)
        try:
            from diffusers import DDPMScheduler
            self.version = package_version(type(scheduler), DDPMScheduler)
        except ImportError:  # a DDPMScheduler-like object from elsewhere
            self.version = package_version(type(scheduler))
        self.name = (f"{kind}(beta_schedule={cfg.beta_schedule}, variance_type={variance}, "
                     f"prediction_type={self.prediction_type}, clip_sample={self.clip_sample}"
                     f"{', thresholding=True' if self.thresholding else ''})")
        self.unit_roundoff = float(torch.finfo(scheduler.alphas_cumprod.dtype).eps) / 2
        self.rescaled_from = None
        self._schedule = self._claimed_schedule()
        ops = {"betas", "alpha_bar", "q_sample", "previous_t", "p_variance", "predict_x0", "reverse_step"}
        if hasattr(scheduler, "get_velocity"):
            ops.add("velocity")
        self.operations = frozenset(ops)
        self.inert_options = inert_options(dict(cfg), _config_defaults(scheduler))

    # -- the claimed schedule --------------------------------------------------------------------
    def _claimed_schedule(self) -> reference.Schedule:
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
            raise TargetError(f"beta_schedule {cfg.beta_schedule!r} has no reference counterpart "
                              f"(supported: {', '.join(SCHEDULES)}, trained_betas)")
        if getattr(cfg, "rescale_betas_zero_snr", False):
            self.rescaled_from = sched           # the tolerance of rescaled betas depends on it
            sched = reference.zero_terminal_snr(sched)
        return sched

    def reference_schedule(self) -> reference.Schedule:
        return self._schedule

    # -- operations (paper t in; tensors in the scheduler's dtype out) -----------------------------
    def _tensor(self, a):
        return self._torch.as_tensor(np.asarray(a), dtype=self.scheduler.alphas_cumprod.dtype)

    def _index(self, t):
        return self._torch.as_tensor(np.asarray(t) - 1, dtype=self._torch.long)   # paper t -> diffusers i

    def _per_t(self, fn, t, *arrays):
        """fn(diffusers index, rows of each array at that t) for each distinct t, reassembled in row order."""
        out = None
        for k in np.unique(t):
            rows = np.flatnonzero(t == k)
            part = fn(int(k) - 1, *(a[rows] for a in arrays))
            if out is None:
                out = part.new_zeros((len(t),) + tuple(part.shape[1:]))
            out[self._torch.as_tensor(rows)] = part
        return out

    def betas(self):
        return self.scheduler.betas

    def alpha_bar(self):
        return self.scheduler.alphas_cumprod

    def q_sample(self, x0, t, eps):
        return self.scheduler.add_noise(self._tensor(x0), self._tensor(eps), self._index(t))

    def velocity(self, x0, t, eps):
        return self.scheduler.get_velocity(self._tensor(x0), self._tensor(eps), self._index(t))

    def previous_t(self, t: int) -> int:
        return int(self.scheduler.previous_timestep(int(t) - 1)) + 1

    def p_variance(self, model_output, xt, t):
        """sigma_t^2 from `_get_variance`, whose return is, per variance_type, the variance
        (fixed_small, fixed_large, learned), the standard deviation (fixed_small_log) or the
        log-variance (fixed_large_log, learned_range): the quantity `step` consumes."""
        c = np.asarray(xt).shape[1]
        learned = self.variance_type in ("learned_range", "learned_variance")

        def at(i, out):
            predicted = out[:, c:] if learned else None
            value = self.scheduler._get_variance(i, predicted_variance=predicted)
            value = value.expand((len(out),) + tuple(np.asarray(xt).shape[1:]))
            if self.diffusers_variance_type == "fixed_small_log":
                return value ** 2
            if self.diffusers_variance_type in ("fixed_large_log", "learned_range"):
                return value.exp()
            return value
        return self._per_t(at, t, self._tensor(model_output))

    def _step(self, model_output, xt, t, seed: int, part: int):
        torch = self._torch

        def at(i, out, x):
            g = torch.Generator().manual_seed(seed + i)
            return self.scheduler.step(out, i, x, generator=g, return_dict=False)[part]
        return self._per_t(at, t, self._tensor(model_output), self._tensor(xt))

    def predict_x0(self, model_output, xt, t):
        """x0_hat as `step` computes it (its second output), clipped or thresholded."""
        return self._step(model_output, xt, t, 0, part=1)

    def reverse_step(self, model_output, xt, t, seed: int):
        """(x_{t-1}, noise) from `step` at each t, with a generator seeded seed + i; the noise is
        regenerated from the same seed."""
        torch = self._torch
        prev = self._step(model_output, xt, t, seed, part=0)
        noise = self._per_t(lambda i, x: torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + i),
                                                     dtype=x.dtype), t, self._tensor(xt))
        return prev, noise
