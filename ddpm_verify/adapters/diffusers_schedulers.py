"""Adapters for diffusers' `DDPMScheduler`, `DDIMScheduler` and `DDIMInverseScheduler` (diffusers
0.30 or newer).

Index translation (the one place): diffusers' timestep i is paper t = i + 1; its
`alphas_cumprod[i]` is abar_{i+1}; a previous timestep of -1 is x_0 (paper 0). The schedule a
scheduler claims is rebuilt in float64 from its config (`beta_schedule`, `beta_start`,
`beta_end`, `trained_betas`, `rescale_betas_zero_snr`). Data are images (n, 3, 4, 4) by default:
dynamic thresholding needs a channel axis and more. Conventions read from diffusers' code: the
DDPM variance is floored at 1e-20 (`torch.clamp(variance, min=1e-20)`), so log beta_tilde_1 is
log(1e-20); fixed_large uses beta_1 at t = 1; thresholding, when on, replaces clipping; DDIM's
eps_hat is the model's own (use_clipped_model_output=False) and its last step goes to
`final_alpha_cumprod` (abar_1 when set_alpha_to_one=False).

Samplers with fewer steps: a scheduler with inference timesteps set (`set_timesteps(n)`, or
custom timesteps) is checked on those, and its full T-step chain is not (its step follows the
set timesteps); one without is checked on its full chain and on samplers of `STEP_COUNTS` steps,
each on a copy of it with `set_timesteps(n)`. The scheduler given is never modified.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from ..errors import TargetError
from .protocol import package_version

#: the p_theta variance (protocol.VARIANCE_TYPES) each diffusers variance_type stands for, i.e.
#: what step() should sample with
VARIANCE_TYPE = {
    "fixed_small": Variance.FIXED_SMALL,
    "fixed_small_log": Variance.FIXED_SMALL,     # _get_variance returns the standard deviation
    "fixed_large": Variance.FIXED_LARGE,
    "fixed_large_log": Variance.FIXED_LARGE,     # GLIDE's max_log: _get_variance returns log beta_t
    "learned_range": Variance.LEARNED_RANGE,     # _get_variance returns the log-variance
    "learned": Variance.LEARNED_VARIANCE,        # the model outputs sigma_t^2 itself
}
PREDICTION_TYPES = Prediction.REFERENCE
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
#: the step counts a scheduler without inference timesteps is checked at (30 and 37 divide no T
#: of the usual 1000)
STEP_COUNTS = (10, 30, 37, 50)
ETAS = (0.0, 0.5, 1.0)
#: what a DDPMScheduler-like object has (the rejection message lists what is missing)
MEMBERS = ("add_noise", "step", "alphas_cumprod", "config", "_get_variance")
_SET_TIMESTEPS_ONLY = ("it places the inference timesteps of set_timesteps(), and these checks run the full "
                       "T-step chain")


def _config_has(obj, key: str) -> bool:
    cfg = obj.config
    return hasattr(cfg, key) or (isinstance(cfg, dict) and key in cfg)


def missing_members(obj) -> list[str]:
    """The members of a DDPMScheduler that `obj` lacks (config.variance_type included: DDIM
    schedulers have none)."""
    missing = [m for m in MEMBERS if not hasattr(obj, m)]
    if "config" not in missing and not _config_has(obj, "variance_type"):
        missing.append("config.variance_type")
    return missing


def looks_like_ddpm_scheduler(obj) -> bool:
    return not missing_members(obj)


def looks_like_ddim_scheduler(obj) -> bool:
    """A DDIMScheduler-like object (DDIMInverseScheduler included): step, alphas_cumprod,
    set_timesteps, and a config with set_alpha_to_one (and no variance_type)."""
    return (all(hasattr(obj, m) for m in ("step", "alphas_cumprod", "config", "set_timesteps"))
            and _config_has(obj, "set_alpha_to_one") and not _config_has(obj, "variance_type"))


def _config_defaults(scheduler) -> dict:
    return {k: p.default for k, p in inspect.signature(type(scheduler).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def inert_options(cfg, defaults: dict, samples_strided: bool) -> dict[str, str]:
    """Options set to a non-default value that change nothing the checks test, with the reason."""
    def changed(key) -> bool:
        return key in cfg and key in defaults and cfg[key] != defaults[key]

    reasons = {} if samples_strided else {"timestep_spacing": _SET_TIMESTEPS_ONLY, "steps_offset": _SET_TIMESTEPS_ONLY}
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


class _Scheduler:
    """What the three adapters share: the claimed schedule, x0_hat processing, the forward
    process, the translation of tensors and indices, and the copies set to n inference steps."""

    strided_etas = ETAS

    def __init__(self, scheduler, data_shape: tuple[int, ...], library_class, strided_ops: set):
        import torch

        self._torch = torch
        self.scheduler = scheduler
        cfg = scheduler.config
        self.kind = type(scheduler).__name__
        self.T = int(cfg.num_train_timesteps)
        self.prediction_type = str(cfg.prediction_type)
        if self.prediction_type not in PREDICTION_TYPES:
            raise TargetError(f"{self.kind} prediction_type={self.prediction_type!r} is none of "
                              f"{', '.join(PREDICTION_TYPES)} (its step() raises on it)")
        self.thresholding = None
        if cfg.get("thresholding", False):
            ratio, max_value = float(cfg.dynamic_thresholding_ratio), float(cfg.sample_max_value)
            if not (0 < ratio <= 1 and max_value >= 1):
                raise TargetError(f"{self.kind} thresholding with dynamic_thresholding_ratio={ratio} and "
                                  f"sample_max_value={max_value}: ddpm-verify checks ratio in (0, 1] and "
                                  "sample_max_value >= 1")
            self.thresholding = (ratio, max_value)
        self.clip_sample = bool(cfg.clip_sample) and self.thresholding is None
        self.clip_range = float(cfg.get("clip_sample_range", 1.0))
        self.data_shape = tuple(data_shape)
        self.version = package_version(type(scheduler), library_class)
        self.unit_roundoff = float(torch.finfo(scheduler.alphas_cumprod.dtype).eps) / 2
        self.rescaled_from = None
        self._schedule = self._claimed_schedule()
        self.timestep_rule = str(cfg.get("timestep_spacing", "leading"))
        self.steps_offset = int(cfg.get("steps_offset", 0))
        custom = bool(getattr(scheduler, "custom_timesteps", False))
        n_set = getattr(scheduler, "num_inference_steps", None)
        self.inference_steps_set = custom or n_set is not None
        if custom:
            self.timestep_rule, n_set = "custom", len(scheduler.timesteps)
        self.step_counts = (int(n_set),) if self.inference_steps_set else tuple(n for n in STEP_COUNTS if n <= self.T)
        self._copies: dict[int, object] = {}
        ops = {"betas", "alpha_bar"} | strided_ops
        ops |= {op for op, method in (("q_sample", "add_noise"), ("velocity", "get_velocity"))
                if hasattr(scheduler, method)}
        self.operations = ops
        self.inert_options = inert_options(dict(cfg), _config_defaults(scheduler), True)

    def _describe(self, extra: str) -> str:
        cfg = self.scheduler.config
        steps = (f", inference steps set: {self.timestep_rule} n={self.step_counts[0]}" if self.inference_steps_set
                 else "")
        return (f"{self.kind}(beta_schedule={cfg.beta_schedule}{extra}, prediction_type={self.prediction_type}, "
                f"clip_sample={self.clip_sample}{', thresholding=True' if self.thresholding else ''}{steps})")

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
        if cfg.get("rescale_betas_zero_snr", False):
            self.rescaled_from = sched           # the tolerance of rescaled betas depends on it
            sched = reference.zero_terminal_snr(sched)
        return sched

    def reference_schedule(self) -> reference.Schedule:
        return self._schedule

    # -- translation -------------------------------------------------------------------------------
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

    def _with_steps(self, n: int):
        """A copy of the scheduler set to n inference steps (the scheduler itself if set to n)."""
        if n not in self._copies:
            scheduler = copy.deepcopy(self.scheduler)
            if not self.inference_steps_set:
                scheduler.set_timesteps(n)
            self._copies[n] = scheduler
        return self._copies[n]

    def _noise(self, seed: int, xt, t):
        """The standard normal draws of a step with a generator seeded seed + i, regenerated."""
        torch = self._torch
        return self._per_t(lambda i, x: torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + i),
                                                    dtype=x.dtype), t, self._tensor(xt))

    # -- operations (paper t in; tensors in the scheduler's dtype out) -----------------------------
    def betas(self):
        return self.scheduler.betas

    def alpha_bar(self):
        return self.scheduler.alphas_cumprod

    def q_sample(self, x0, t, eps):
        return self.scheduler.add_noise(self._tensor(x0), self._tensor(eps), self._index(t))

    def velocity(self, x0, t, eps):
        return self.scheduler.get_velocity(self._tensor(x0), self._tensor(eps), self._index(t))

    def timesteps(self, n: int):
        return self._with_steps(n).timesteps + 1


class DiffusersDDPM(_Scheduler):
    """A target over a `diffusers.DDPMScheduler`-like object."""

    def __init__(self, scheduler, data_shape: tuple[int, ...] = (3, 4, 4)):
        cfg = scheduler.config
        variance = str(getattr(scheduler, "variance_type", cfg.variance_type))
        if variance not in VARIANCE_TYPE:
            raise TargetError(f"{type(scheduler).__name__} variance_type={variance!r} is none of "
                              f"{', '.join(VARIANCE_TYPE)}")
        self.diffusers_variance_type = variance
        self.variance_type = VARIANCE_TYPE[variance]
        self.log_variance_at_1, self.variance_floor = "floor", 1e-20
        self.large_variance_at_1 = "beta"
        try:
            from diffusers import DDPMScheduler as library
        except ImportError:  # a DDPMScheduler-like object from elsewhere
            library = None
        super().__init__(scheduler, data_shape, library,
                         {"timesteps", "strided_previous_t", "strided_step", "strided_variance"})
        if not self.inference_steps_set:       # the full chain: step() goes from t to t - 1
            self.operations |= {"previous_t", "p_variance", "predict_x0", "reverse_step"}
        self.operations = frozenset(self.operations)
        self.name = self._describe(f", variance_type={variance}")

    def previous_t(self, t: int) -> int:
        return int(self.scheduler.previous_timestep(int(t) - 1)) + 1

    def strided_previous_t(self, n: int, t: int) -> int:
        return int(self._with_steps(n).previous_timestep(int(t) - 1)) + 1

    def _variance(self, scheduler, model_output, xt, t):
        """sigma^2 from `_get_variance`, whose return is, per variance_type, the variance
        (fixed_small, fixed_large, learned), the standard deviation (fixed_small_log) or the
        log-variance (fixed_large_log, learned_range): the quantity `step` consumes."""
        c = np.asarray(xt).shape[1]
        learned = self.variance_type in (Variance.LEARNED_RANGE, Variance.LEARNED_VARIANCE)

        def at(i, out):
            predicted = out[:, c:] if learned else None
            value = scheduler._get_variance(i, predicted_variance=predicted)
            value = value.expand((len(out),) + tuple(np.asarray(xt).shape[1:]))
            if self.diffusers_variance_type == "fixed_small_log":
                return value ** 2
            if self.diffusers_variance_type in ("fixed_large_log", Variance.LEARNED_RANGE):
                return value.exp()
            return value
        return self._per_t(at, t, self._tensor(model_output))

    def p_variance(self, model_output, xt, t):
        return self._variance(self.scheduler, model_output, xt, t)

    def strided_variance(self, n, model_output, xt, t):
        return self._variance(self._with_steps(n), model_output, xt, t)

    def _step(self, scheduler, model_output, xt, t, seed: int, part: int):
        torch = self._torch

        def at(i, out, x):
            g = torch.Generator().manual_seed(seed + i)
            return scheduler.step(out, i, x, generator=g, return_dict=False)[part]
        return self._per_t(at, t, self._tensor(model_output), self._tensor(xt))

    def predict_x0(self, model_output, xt, t):
        """x0_hat as `step` computes it (its second output), clipped or thresholded."""
        return self._step(self.scheduler, model_output, xt, t, 0, part=1)

    def reverse_step(self, model_output, xt, t, seed: int):
        """(x_{t-1}, noise) from `step` at each t, with a generator seeded seed + i; the noise is
        regenerated from the same seed."""
        return self._step(self.scheduler, model_output, xt, t, seed, part=0), self._noise(seed, xt, t)

    def strided_step(self, n, model_output, xt, t, seed: int):
        return self._step(self._with_steps(n), model_output, xt, t, seed, part=0), self._noise(seed, xt, t)


class _DDIMFamily(_Scheduler):
    """A DDIMScheduler or DDIMInverseScheduler (`library_class`, from diffusers) offering `operation`."""

    variance_type = Variance.FIXED_SMALL
    ddim_eps = "unclipped"
    library_class = operation = ""

    def __init__(self, scheduler, data_shape: tuple[int, ...] = (3, 4, 4)):
        try:
            import diffusers
            library = getattr(diffusers, self.library_class)
        except ImportError:
            library = None
        super().__init__(scheduler, data_shape, library, {"timesteps", self.operation})
        self.operations = frozenset(self.operations)
        self.final_alpha_bar = "one" if scheduler.config.set_alpha_to_one else "abar_1"
        self.name = self._describe(f", set_alpha_to_one={scheduler.config.set_alpha_to_one}")


class DiffusersDDIM(_DDIMFamily):
    """A target over a `diffusers.DDIMScheduler`-like object: its DDIM step with eta in `ETAS`."""

    library_class, operation = "DDIMScheduler", "ddim_step"
    etas = ETAS

    def ddim_step(self, n, model_output, xt, t, eta: float, seed: int):
        """(x_s, noise): `step(..., eta=eta)` with a generator seeded seed + i (it draws only when eta > 0)."""
        torch = self._torch
        scheduler = self._with_steps(n)

        def at(i, out, x):
            g = torch.Generator().manual_seed(seed + i)
            return scheduler.step(out, i, x, eta=eta, generator=g, return_dict=False)[0]
        return self._per_t(at, t, self._tensor(model_output), self._tensor(xt)), self._noise(seed, xt, t)


class DiffusersDDIMInverse(_DDIMFamily):
    """A target over a `diffusers.DDIMInverseScheduler`: `step` runs DDIM at eta = 0 forward, from the
    timestep before t in its sequence to t."""

    library_class, operation = "DDIMInverseScheduler", "ddim_invert"

    def timesteps(self, n: int):
        """Its timesteps run upwards; the sampler they invert visits them in reverse."""
        return self._with_steps(n).timesteps.flip(0) + 1

    def ddim_invert(self, n, model_output, xs, t):
        scheduler = self._with_steps(n)
        return self._per_t(lambda i, out, x: scheduler.step(out, i, x, return_dict=False)[0], t,
                           self._tensor(model_output), self._tensor(xs))
