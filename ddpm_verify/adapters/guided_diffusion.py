"""Adapter for the improved-diffusion / guided-diffusion `GaussianDiffusion` API.

Index translation (the one place): the library's timestep i is paper t = i + 1. Units: its
`_vb_terms_bpd`, `_prior_bpd` and `calc_bpd_loop` return bits per dimension (mean over the
non-batch dimensions, divided by ln 2); this adapter multiplies by d ln 2 to give nats per
example, so a target that reports nats where it promises bits is off by ln 2 and fails.
Its tables are float64 NumPy arrays, rounded to float32 each time they are used
(`_extract_into_tensor(...).float()`), so outputs are float32.
"""

from __future__ import annotations

import math

import numpy as np

import reference

PREDICTION_TYPE = {"EPSILON": "epsilon", "START_X": "sample", "PREVIOUS_X": "previous_x"}
INTENDED_VARIANCE = {"FIXED_SMALL": "fixed_small", "FIXED_LARGE": "fixed_large",
                     "LEARNED_RANGE": "learned_range", "LEARNED": "learned"}
#: regression target and scale of the VB term (bits/dim) in `training_losses`, per LossType
LOSS_SPEC = {"MSE": (True, 1.0), "RESCALED_MSE": (True, "T/1000"), "KL": (False, 1.0), "RESCALED_KL": (False, "T")}
REGRESSION_TARGET = {"epsilon": "epsilon", "sample": "x0", "previous_x": "posterior_mean"}


def looks_like_gaussian_diffusion(obj) -> bool:
    return all(hasattr(obj, a) for a in ("q_mean_variance", "q_sample", "q_posterior_mean_variance",
                                          "p_mean_variance", "betas", "num_timesteps"))


def _enum_name(value) -> str:
    return str(getattr(value, "name", value)).upper()


class GuidedDiffusion:
    """A `Target` over a guided-diffusion `GaussianDiffusion`-like object.

    `schedule` names the beta schedule the object was built with (``linear`` or ``cosine`` of
    `get_named_beta_schedule`); None when unknown, and then the reference schedule is built
    from the object's own betas. `clip_denoised` is passed to `p_mean_variance`, `p_sample`
    and `calc_bpd_loop` (the library's default is True).
    """

    def __init__(self, diffusion, schedule: str | None = None, clip_denoised: bool = True):
        import torch

        self._torch = torch
        self.diffusion = diffusion
        self.T = int(diffusion.num_timesteps)
        self.schedule_name = schedule
        mean_type, var_type = _enum_name(diffusion.model_mean_type), _enum_name(diffusion.model_var_type)
        self.prediction_type = PREDICTION_TYPE.get(mean_type, mean_type.lower())
        self.variance_type = var_type.lower()
        self.intended_variance = INTENDED_VARIANCE.get(var_type)
        self.large_variance_at_1 = "beta_tilde_2"      # improved DDPM: FIXED_LARGE uses beta_tilde_2 at t = 1
        self.clip_sample, self.clip_range = bool(clip_denoised), 1.0
        self.decoder, self.normal_cdf = "discretized", "tanh"
        self.loss_type = _enum_name(diffusion.loss_type)
        self.unit_roundoff = 2.0 ** -24
        self.table_roundoff = 2.0 ** -53 if np.asarray(diffusion.alphas_cumprod).dtype == np.float64 else 2.0 ** -24
        self.rescaled_from = None
        try:
            from importlib.metadata import version
            self.version = f"guided-diffusion-sdk {version('guided-diffusion-sdk')}"
        except Exception:  # noqa: BLE001 - an object from another package
            self.version = type(diffusion).__module__
        self.name = (f"{type(diffusion).__name__}(schedule={schedule or 'own betas'}, T={self.T}, "
                     f"mean={mean_type}, var={var_type}, loss={self.loss_type}, clip_denoised={self.clip_sample})")
        ops = {"schedule", "q_marginal", "q_sample", "q_sample_random", "posterior", "conversions", "prior"}
        if self.prediction_type in REGRESSION_TARGET and self.intended_variance:
            ops |= {"p_mean_variance", "reverse_step", "vlb_terms", "total_bpd"}
            if self.loss_type in LOSS_SPEC:
                ops.add("training_loss")
        self.operations = frozenset(op for op in ops if self._provides(op))

    def _provides(self, op: str) -> bool:
        needs = {"posterior": "q_posterior_mean_variance", "conversions": "_predict_eps_from_xstart",
                 "reverse_step": "p_sample", "vlb_terms": "_vb_terms_bpd", "prior": "_prior_bpd",
                 "total_bpd": "calc_bpd_loop", "training_loss": "training_losses"}
        return op not in needs or hasattr(self.diffusion, needs[op])

    # -- the claimed schedule --------------------------------------------------------------------
    @property
    def schedule_is_named(self) -> bool:
        return self.schedule_name is not None

    def reference_schedule(self) -> reference.Schedule:
        if self.schedule_name == "linear":
            return reference.linear(self.T, scale_with_T=True)
        if self.schedule_name == "cosine":
            return reference.cosine(self.T)
        if self.schedule_name is None:
            return reference.Schedule(np.asarray(self.diffusion.betas, dtype=np.float64), name="own betas")
        raise ValueError(f"schedule {self.schedule_name!r} has no reference counterpart (linear, cosine)")

    # -- conversions -------------------------------------------------------------------------------
    def _x(self, a):
        return self._torch.as_tensor(np.asarray(a), dtype=self._torch.float32)

    def _i(self, t, n: int):
        return self._torch.as_tensor(np.broadcast_to(np.asarray(t) - 1, (n,)).copy(), dtype=self._torch.long)

    @staticmethod
    def _np(x) -> np.ndarray:
        return x.detach().double().numpy()

    def _model(self, output):
        out = self._x(output)
        return lambda *args, **kwargs: out

    def _nats(self, bpd, d: int) -> np.ndarray:
        return self._np(bpd) * d * math.log(2.0)

    def _seeded(self, seed: int):
        fork = self._torch.random.fork_rng(devices=[])
        fork.__enter__()
        self._torch.manual_seed(seed)
        return fork

    # -- operations (paper t in, float64 out) ------------------------------------------------------
    def tables(self) -> dict[str, np.ndarray]:
        return {"beta": np.array(self.diffusion.betas, dtype=np.float64),
                "alpha_bar": np.array(self.diffusion.alphas_cumprod, dtype=np.float64)}

    def q_mean_variance(self, x0, t):
        return tuple(self._np(a) for a in self.diffusion.q_mean_variance(self._x(x0), self._i(t, len(x0))))

    def q_sample(self, x0, t, eps):
        return self._np(self.diffusion.q_sample(self._x(x0), self._i(t, len(x0)), noise=self._x(eps)))

    def q_sample_random(self, x0, t, seed: int):
        fork = self._seeded(seed)
        try:
            return self._np(self.diffusion.q_sample(self._x(x0), self._i(t, len(x0))))
        finally:
            fork.__exit__(None, None, None)

    def q_posterior(self, x0, xt, t):
        out = self.diffusion.q_posterior_mean_variance(self._x(x0), self._x(xt), self._i(t, len(xt)))
        return tuple(self._np(a) for a in out)

    def x0_from_eps(self, xt, t, eps):
        return self._np(self.diffusion._predict_xstart_from_eps(self._x(xt), self._i(t, len(xt)), self._x(eps)))

    def eps_from_x0(self, xt, t, x0):
        return self._np(self.diffusion._predict_eps_from_xstart(self._x(xt), self._i(t, len(xt)), self._x(x0)))

    def p_mean_variance(self, model_output, xt, t):
        out = self.diffusion.p_mean_variance(self._model(model_output), self._x(xt), self._i(t, len(xt)),
                                             clip_denoised=self.clip_sample)
        return tuple(self._np(out[k]) for k in ("mean", "variance", "log_variance", "pred_xstart"))

    def reverse_step(self, model_output, xt, t, seed: int):
        x = self._x(xt)
        fork = self._seeded(seed)
        try:
            prev = self.diffusion.p_sample(self._model(model_output), x, self._i(t, len(xt)),
                                           clip_denoised=self.clip_sample)["sample"]
            self._torch.manual_seed(seed)
            noise = self._torch.randn_like(x)
        finally:
            fork.__exit__(None, None, None)
        return self._np(prev), self._np(noise)

    def vlb_term(self, model_output, x0, xt, t, clip: bool | None = None):
        clip = self.clip_sample if clip is None else clip
        out = self.diffusion._vb_terms_bpd(self._model(model_output), self._x(x0), self._x(xt),
                                           self._i(t, len(xt)), clip_denoised=clip)["output"]
        return self._nats(out, np.asarray(x0).shape[1])

    def prior_term(self, x0):
        return self._nats(self.diffusion._prior_bpd(self._x(x0)), np.asarray(x0).shape[1])

    def total_bpd(self, model_fn, x0, seed: int) -> dict[str, np.ndarray]:
        """calc_bpd_loop with the library's own noise (seeded), regenerated here in its order
        (t = T..1, one randn_like per step). Values in nats per example; MSEs as returned."""
        torch = self._torch
        x = self._x(x0)
        d = x.shape[1]

        def model(xt, ts, **kwargs):
            return torch.as_tensor(model_fn(xt.double().numpy()), dtype=torch.float32)

        fork = self._seeded(seed)
        try:
            out = self.diffusion.calc_bpd_loop(model, x, clip_denoised=self.clip_sample)
            torch.manual_seed(seed)
            eps = torch.stack([torch.randn_like(x) for _ in range(self.T)])
        finally:
            fork.__exit__(None, None, None)
        flip = slice(None, None, -1)                      # loop order t = T..1 -> paper order 1..T
        return {"total": self._nats(out["total_bpd"], d), "prior": self._nats(out["prior_bpd"], d),
                "terms": self._nats(out["vb"], d)[:, flip], "eps": self._np(eps)[flip],
                "x0_mse": self._np(out["xstart_mse"])[:, flip], "eps_mse": self._np(out["mse"])[:, flip]}

    def training_loss(self, model_output, x0, t, eps):
        out = self.diffusion.training_losses(self._model(model_output), self._x(x0), self._i(t, len(x0)),
                                             noise=self._x(eps))
        return self._np(out["loss"])

    @property
    def loss_spec(self) -> dict:
        """What `training_losses` computes: mean over d of the squared error against
        `regression_target` (None for the KL losses) plus `vb_scale` times the VB term in bits/dim
        (with the mean frozen; only for learned variances under MSE)."""
        mse, scale = LOSS_SPEC[self.loss_type]
        scale = {"T/1000": self.T / 1000.0, "T": float(self.T)}.get(scale, scale)
        learned = self.intended_variance in ("learned", "learned_range")
        return {"regression_target": REGRESSION_TARGET[self.prediction_type] if mse else None,
                "vb_scale": scale if (not mse or learned) else 0.0}
