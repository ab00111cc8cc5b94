"""Adapter for the improved-diffusion / guided-diffusion `GaussianDiffusion` API.

Index translation (the one place): the library's timestep i is paper t = i + 1. Units: its
`_vb_terms_bpd`, `_prior_bpd` and `calc_bpd_loop` return bits per dimension (mean over the
non-batch dimensions, divided by ln 2); this adapter multiplies by d ln 2 to give nats per
example, so a target that reports nats where it promises bits is off by ln 2 and fails.
Its tables are float64 NumPy arrays, rounded to float32 each time they are used
(`_extract_into_tensor(...).float()`), so outputs are float32 and `table_roundoff` is 2**-53.
Conventions read from its code: log beta_tilde_1 is clipped to log beta_tilde_2, FIXED_LARGE
uses beta_tilde_2 at t = 1, the decoder's normal CDF is the tanh approximation.

`create_gaussian_diffusion` returns a `SpacedDiffusion` even without respacing; its betas are
recomputed as 1 - abar_t / abar_{t-1} (`betas_recomputed`). A respaced one (fewer steps than its
base schedule) is checked as the strided sampler it is: its betas against the respacing of the
base schedule (which must be named: the object keeps only its respaced betas), the timestep its
model is called with (`timestep_map`), `p_sample`, `ddim_sample` and `ddim_reverse_sample`; its
own index j is translated to the training timestep t = timestep_map[j] + 1 here. A full-length
object is checked on its T-step chain, its DDIM sampler included.
"""

from __future__ import annotations

import math

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from ..errors import TargetError
from .protocol import package_version

PREDICTION_TYPE = {"EPSILON": Prediction.EPSILON, "START_X": Prediction.SAMPLE, "PREVIOUS_X": Prediction.PREVIOUS_X}
VARIANCE_TYPE = {"FIXED_SMALL": Variance.FIXED_SMALL, "FIXED_LARGE": Variance.FIXED_LARGE,
                 "LEARNED_RANGE": Variance.LEARNED_RANGE, "LEARNED": Variance.LEARNED_LOG_VARIANCE}
#: per LossType: (regression term present, weight of the VB term in bits/dim)
LOSSES = {"MSE": (True, 1.0), "RESCALED_MSE": (True, "T/1000"), "KL": (False, 1.0), "RESCALED_KL": (False, "T")}
#: what a GaussianDiffusion-like object has (the rejection message lists what is missing)
MEMBERS = ("q_mean_variance", "q_sample", "q_posterior_mean_variance", "p_mean_variance", "betas", "num_timesteps")


def missing_members(obj) -> list[str]:
    return [m for m in MEMBERS if not hasattr(obj, m)]


def looks_like_gaussian_diffusion(obj) -> bool:
    return not missing_members(obj)


def _enum_name(value) -> str:
    return str(getattr(value, "name", value)).upper()


def _library_class():
    try:
        from guided_diffusion.gaussian_diffusion import GaussianDiffusion
        return GaussianDiffusion
    except ImportError:
        return None


class GuidedDiffusion:
    """A target over a guided-diffusion `GaussianDiffusion`-like object.

    `schedule` names the beta schedule the object was built with (``linear`` or ``cosine`` of
    `get_named_beta_schedule`); None when unknown, and then the reference schedule is built
    from the object's own betas. `clip_denoised` is passed to `p_mean_variance`, `p_sample`
    and `calc_bpd_loop` (the library's default is True). `data_shape` is the shape of one
    example the checks feed it.
    """

    def __init__(self, diffusion, schedule: str | None = None, clip_denoised: bool = True,
                 data_shape: tuple[int, ...] = (4,), section_counts: str | None = None):
        import torch

        self._torch = torch
        self.diffusion = diffusion
        steps = int(diffusion.num_timesteps)
        kind = type(diffusion).__name__
        self.betas_recomputed = hasattr(diffusion, "timestep_map")
        self.T = int(getattr(diffusion, "original_num_steps", steps))
        self.respaced = self.T != steps
        if self.respaced and schedule is None:
            raise TargetError(f"{kind} is respaced ({steps} of {self.T} steps) and keeps only its respaced betas: "
                              "wrap it as GuidedDiffusion(obj, schedule=...) naming its base schedule, so that the "
                              "respacing can be checked against it")
        #: the training index of each of the object's steps (the identity when not respaced)
        self._map = np.asarray(getattr(diffusion, "timestep_map", range(steps)), dtype=np.int64)
        self._index_of = {int(i) + 1: j for j, i in enumerate(self._map)}
        self.step_counts = (steps,)
        self.timestep_rule = "space_timesteps" if section_counts else ("custom" if self.respaced else "leading")
        self.section_counts = section_counts
        self.etas = (0.0, 0.5, 1.0)
        self.schedule_name = schedule
        self.schedule_is_named = schedule is not None
        mean_type, var_type = _enum_name(diffusion.model_mean_type), _enum_name(diffusion.model_var_type)
        if mean_type not in PREDICTION_TYPE or var_type not in VARIANCE_TYPE:
            raise TargetError(f"{kind}: model_mean_type {mean_type} / model_var_type {var_type} is not one of "
                              f"{', '.join(PREDICTION_TYPE)} / {', '.join(VARIANCE_TYPE)}")
        self.prediction_type = PREDICTION_TYPE[mean_type]
        self.variance_type = VARIANCE_TYPE[var_type]
        self.large_variance_at_1 = "beta_tilde_2"
        self.log_variance_at_1 = "clipped"
        self.clip_sample, self.clip_range = bool(clip_denoised), 1.0
        self.decoder, self.normal_cdf = "discretized", "tanh"
        self.loss_type = _enum_name(diffusion.loss_type)
        self.unit_roundoff = 2.0 ** -24
        self.table_roundoff = 2.0 ** -53 if np.asarray(diffusion.alphas_cumprod).dtype == np.float64 else 2.0 ** -24
        self.data_shape = tuple(data_shape)
        self.version = package_version(type(diffusion), _library_class())
        respacing = f", respaced to {steps} ({section_counts or 'custom'})" if self.respaced else ""
        self.name = (f"{kind}(schedule={schedule or 'own betas'}, T={self.T}{respacing}, mean={mean_type}, "
                     f"var={var_type}, loss={self.loss_type}, clip_denoised={self.clip_sample})")
        self.inert_options = {}
        strided = {"timesteps", "ddim_step", "ddim_invert"} | ({"model_timestep"} if self.betas_recomputed else set())
        if self.respaced:
            ops = strided | {"strided_previous_t", "respaced_betas", "strided_step", "strided_variance"}
        else:
            ops = strided | {"betas", "alpha_bar", "q_mean", "q_variance", "q_log_variance", "q_sample",
                             "q_sample_random", "x0_from_eps", "eps_from_x0", "posterior_mean", "posterior_variance",
                             "posterior_log_variance", "prior_term", "predict_x0", "p_mean", "p_variance",
                             "p_log_variance", "reverse_step", "vlb_term", "total_bpd"}
        self.loss_target, self.loss_vb_weight = None, 0.0
        if self.loss_type in LOSSES:
            regression, weight = LOSSES[self.loss_type]
            weight = {"T/1000": self.T / 1000.0, "T": float(self.T)}.get(weight, weight)
            learned = self.variance_type in (Variance.LEARNED_LOG_VARIANCE, Variance.LEARNED_RANGE)
            self.loss_target = self.prediction_type if regression else None
            self.loss_vb_weight = weight if (not regression or learned) else 0.0
            if not self.respaced:
                ops.add("training_loss")
        self.operations = frozenset(op for op in ops if self._provides(op))

    def _provides(self, op: str) -> bool:
        needs = {"posterior_mean": "q_posterior_mean_variance", "x0_from_eps": "_predict_xstart_from_eps",
                 "eps_from_x0": "_predict_eps_from_xstart", "reverse_step": "p_sample", "vlb_term": "_vb_terms_bpd",
                 "prior_term": "_prior_bpd", "total_bpd": "calc_bpd_loop", "training_loss": "training_losses",
                 "strided_step": "p_sample", "ddim_step": "ddim_sample", "ddim_invert": "ddim_reverse_sample"}
        return op not in needs or hasattr(self.diffusion, needs[op])

    # -- the claimed schedule --------------------------------------------------------------------
    def reference_schedule(self) -> reference.Schedule:
        if self.schedule_name == "linear":
            return reference.linear(self.T, scale_with_T=True)
        if self.schedule_name == "cosine":
            return reference.cosine(self.T)
        if self.schedule_name is None:
            return reference.Schedule(np.asarray(self.diffusion.betas, dtype=np.float64), name="own betas")
        raise TargetError(f"schedule {self.schedule_name!r} has no reference counterpart (linear, cosine)")

    # -- conversions -------------------------------------------------------------------------------
    def _x(self, a):
        return self._torch.as_tensor(np.asarray(a), dtype=self._torch.float32)

    def _i(self, t):
        return self._torch.as_tensor(np.asarray(t) - 1, dtype=self._torch.long)     # paper t -> library index

    def _model(self, output):
        out = self._x(output)
        return lambda *args, **kwargs: out

    def _nats(self, bpd):
        return bpd / reference.nats_to_bits_per_dim(1.0, math.prod(self.data_shape))       # bits per nat and dim

    def _seeded(self, seed: int):
        fork = self._torch.random.fork_rng(devices=[])
        fork.__enter__()
        self._torch.manual_seed(seed)
        return fork

    # -- operations (paper t in; the library's tensors out) -----------------------------------------
    def betas(self):
        return np.asarray(self.diffusion.betas)

    def alpha_bar(self):
        return np.asarray(self.diffusion.alphas_cumprod)

    def q_mean(self, x0, t):
        return self.diffusion.q_mean_variance(self._x(x0), self._i(t))[0]

    def q_variance(self, x0, t):
        return self.diffusion.q_mean_variance(self._x(x0), self._i(t))[1]

    def q_log_variance(self, x0, t):
        return self.diffusion.q_mean_variance(self._x(x0), self._i(t))[2]

    def q_sample(self, x0, t, eps):
        return self.diffusion.q_sample(self._x(x0), self._i(t), noise=self._x(eps))

    def q_sample_random(self, x0, t, seed: int):
        fork = self._seeded(seed)
        try:
            return self.diffusion.q_sample(self._x(x0), self._i(t))
        finally:
            fork.__exit__(None, None, None)

    def _posterior(self, x0, xt, t):
        return self.diffusion.q_posterior_mean_variance(self._x(x0), self._x(xt), self._i(t))

    def posterior_mean(self, x0, xt, t):
        return self._posterior(x0, xt, t)[0]

    def posterior_variance(self, x0, xt, t):
        return self._posterior(x0, xt, t)[1]

    def posterior_log_variance(self, x0, xt, t):
        return self._posterior(x0, xt, t)[2]

    def x0_from_eps(self, xt, t, eps):
        return self.diffusion._predict_xstart_from_eps(self._x(xt), self._i(t), self._x(eps))

    def eps_from_x0(self, xt, t, x0):
        return self.diffusion._predict_eps_from_xstart(self._x(xt), self._i(t), self._x(x0))

    def _p(self, model_output, xt, t, key: str):
        return self.diffusion.p_mean_variance(self._model(model_output), self._x(xt), self._i(t),
                                              clip_denoised=self.clip_sample)[key]

    def predict_x0(self, model_output, xt, t):
        return self._p(model_output, xt, t, "pred_xstart")

    def p_mean(self, model_output, xt, t):
        return self._p(model_output, xt, t, "mean")

    def p_variance(self, model_output, xt, t):
        return self._p(model_output, xt, t, "variance")

    def p_log_variance(self, model_output, xt, t):
        return self._p(model_output, xt, t, "log_variance")

    def reverse_step(self, model_output, xt, t, seed: int):
        x = self._x(xt)
        fork = self._seeded(seed)
        try:
            prev = self.diffusion.p_sample(self._model(model_output), x, self._i(t),
                                           clip_denoised=self.clip_sample)["sample"]
            self._torch.manual_seed(seed)
            noise = self._torch.randn_like(x)
        finally:
            fork.__exit__(None, None, None)
        return prev, noise

    def vlb_term(self, model_output, x0, xt, t):
        out = self.diffusion._vb_terms_bpd(self._model(model_output), self._x(x0), self._x(xt), self._i(t),
                                           clip_denoised=self.clip_sample)["output"]
        return self._nats(out)

    def prior_term(self, x0):
        return self._nats(self.diffusion._prior_bpd(self._x(x0)))

    def total_bpd(self, model_fn, x0, seed: int) -> dict:
        """calc_bpd_loop with the library's own noise (seeded), regenerated here in its order
        (t = T..1, one randn_like per step). Values in nats per example; x0 MSEs as returned."""
        torch = self._torch
        x = self._x(x0)

        def model(xt, ts, **kwargs):
            return torch.as_tensor(model_fn(xt.double().numpy()), dtype=torch.float32)

        fork = self._seeded(seed)
        try:
            out = self.diffusion.calc_bpd_loop(model, x, clip_denoised=self.clip_sample)
            torch.manual_seed(seed)
            eps = torch.stack([torch.randn_like(x) for _ in range(self.T)])
        finally:
            fork.__exit__(None, None, None)
        # the loop's order t = T..1 flipped to paper order 1..T
        return {"total": self._nats(out["total_bpd"]), "prior": self._nats(out["prior_bpd"]),
                "terms": self._nats(out["vb"]).flip(1), "eps": eps.flip(0), "x0_mse": out["xstart_mse"].flip(1)}

    # -- samplers: the object's own steps (index j, training timestep t = timestep_map[j] + 1) -------------
    def _j(self, t):
        return self._torch.as_tensor([self._index_of[int(k)] for k in np.asarray(t)], dtype=self._torch.long)

    def timesteps(self, n: int):
        return self._map[::-1] + 1

    def strided_previous_t(self, n: int, t: int) -> int:
        j = self._index_of[int(t)]
        return int(self._map[j - 1]) + 1 if j > 0 else 0

    def respaced_betas(self, n: int):
        return np.asarray(self.diffusion.betas)

    def model_timestep(self, n: int, t: int) -> int:
        """The timestep the network receives at the step from t (through the object's model wrapper)."""
        seen = []

        def model(x, ts, **kwargs):
            seen.append(float(ts.reshape(-1)[0]))
            return self._torch.zeros(x.shape[0], *self._output_shape(x))
        x = self._torch.zeros((1,) + self.data_shape)
        self.diffusion.p_mean_variance(model, x, self._j([t]), clip_denoised=self.clip_sample)
        value = seen[0] * (self.T / 1000.0 if getattr(self.diffusion, "rescale_timesteps", False) else 1.0)
        return int(round(value)) + 1

    def _output_shape(self, x):
        shape = list(x.shape[1:])
        if self.variance_type in (Variance.LEARNED_LOG_VARIANCE, Variance.LEARNED_RANGE):
            shape[0] *= 2
        return shape

    def _sampled(self, sample, model_output, xt, t, seed: int, **kwargs):
        """`sample(model, x, j, ...)['sample']` with the library's own noise (seeded), and that noise
        regenerated (one randn_like, drawn after the model is called)."""
        x = self._x(xt)
        fork = self._seeded(seed)
        try:
            prev = sample(self._model(model_output), x, self._j(t), clip_denoised=self.clip_sample, **kwargs)["sample"]
            self._torch.manual_seed(seed)
            noise = self._torch.randn_like(x)
        finally:
            fork.__exit__(None, None, None)
        return prev, noise

    def strided_step(self, n, model_output, xt, t, seed: int):
        return self._sampled(self.diffusion.p_sample, model_output, xt, t, seed)

    def strided_variance(self, n, model_output, xt, t):
        return self.diffusion.p_mean_variance(self._model(model_output), self._x(xt), self._j(t),
                                              clip_denoised=self.clip_sample)["variance"]

    def ddim_step(self, n, model_output, xt, t, eta: float, seed: int):
        return self._sampled(self.diffusion.ddim_sample, model_output, xt, t, seed, eta=eta)

    def ddim_invert(self, n, model_output, xs, t):
        """`ddim_reverse_sample` from the object's step before t (the prediction is taken there) to t."""
        j_s = self._j(t) - 1
        return self.diffusion.ddim_reverse_sample(self._model(model_output), self._x(xs), j_s,
                                                  clip_denoised=self.clip_sample)["sample"]

    def training_loss(self, model_output, x0, t, eps):
        out = self.diffusion.training_losses(self._model(model_output), self._x(x0), self._i(t), noise=self._x(eps))
        return out["loss"]
