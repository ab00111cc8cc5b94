"""Adapters of the template's NumPy DDPM (`ddpm_verify.adapters.template`), broken or declared in
the ways a user's first adapter is, for the checker's self-check of its outcomes.

Each factory returns a target; `EXPECTED` says what `ddpm-verify check` must make of it: the
exit status, and either the check and its outcome or a fragment of the one line on stderr.
Paper t = 1..T; the template's code indexes i = t - 1.
"""

from __future__ import annotations

import numpy as np

from ddpm_verify.adapters.template import NumpyDDPM, Target


# -- the target raises on valid input ------------------------------------------------------------

class _TableOffByOneRaises(Target):
    """q_sample indexes its table with paper t instead of t - 1: t = T is out of range."""

    def q_sample(self, x0, t, eps):
        return self.ddpm.q_sample(x0, t, eps)


def raises_at_t_equal_T():
    return _TableOffByOneRaises()


class _ScalarTimestepOnly(Target):
    """posterior_mean takes the batch's one timestep: a batch mixing timesteps raises."""

    def posterior_mean(self, x0, xt, t):
        i = np.unique(t).item() - 1                     # ValueError unless every row has the same t
        return self.ddpm.q_posterior(x0, xt, np.full(len(t), i))[0]


def raises_on_mixed_timesteps():
    return _ScalarTimestepOnly()


# -- wrong outputs --------------------------------------------------------------------------------

class _FlatMean(Target):
    def posterior_mean(self, x0, xt, t):
        return super().posterior_mean(x0, xt, t).ravel()


def wrong_shape():
    return _FlatMean()


class _HalfPrecision(Target):
    def q_sample(self, x0, t, eps):
        return super().q_sample(x0, t, eps).astype(np.float16)


def float16_output():
    return _HalfPrecision()


class _IntegerBetas(Target):
    def betas(self):
        return (super().betas() * 1e4).astype(np.int64)


def integer_output():
    return _IntegerBetas()


# -- declarations that cannot be checked ----------------------------------------------------------

class _MissingMethod(Target):
    velocity = None


def missing_method():
    return _MissingMethod()


class _MissingPredictionType(Target):
    prediction_type = None


def missing_prediction_type():
    return _MissingPredictionType()


class _UnknownOperation(Target):
    operations = Target.operations + ("q_smaple",)


def unknown_operation():
    return _UnknownOperation()


class _ClipAndThreshold(Target):
    thresholding = (0.995, 1.0)


def clip_and_threshold():
    return _ClipAndThreshold()


class _MinusInfWithDecoder(Target):
    log_variance_at_1 = "-inf"


def minus_inf_with_decoder():
    return _MinusInfWithDecoder()


class _RaisingSchedule(Target):
    def reference_schedule(self):
        raise RuntimeError("no schedule configured")


def raising_reference_schedule():
    return _RaisingSchedule()


class _BadRoundoff(Target):
    unit_roundoff = 0


def bad_unit_roundoff():
    return _BadRoundoff()


# -- conventions: the t = 1 log-variance of the posterior --------------------------------------------

class _Floored(NumpyDDPM):
    """log beta_tilde_1 kept finite by a floor on the variance (lucidrains, latent-diffusion)."""

    def __init__(self):
        super().__init__()
        self.posterior_log_variance = np.log(np.maximum(self.posterior_variance, 1e-20))


class _FlooredTarget(Target):
    """A sampler-style code base (no likelihood terms) whose variance is floored at 1e-20."""

    log_variance_at_1, variance_floor = "floor", 1e-20
    operations = ("betas", "alpha_bar", "posterior_mean", "posterior_variance", "posterior_log_variance",
                  "p_mean", "p_log_variance", "reverse_step")

    def __init__(self):
        super().__init__(_Floored())


def floor_declared():
    return _FlooredTarget()


class _FlooredUndeclared(_FlooredTarget):
    log_variance_at_1 = "clipped"


def floor_undeclared():
    return _FlooredUndeclared()


class _Unclipped(NumpyDDPM):
    def __init__(self):
        super().__init__()
        with np.errstate(divide="ignore"):
            self.posterior_log_variance = np.log(self.posterior_variance)


class _MinusInfTarget(Target):
    """A sampler-only code base: the posterior with log beta_tilde_1 = -inf, no likelihood."""

    log_variance_at_1 = "-inf"
    operations = ("posterior_mean", "posterior_variance", "posterior_log_variance", "p_mean", "p_log_variance",
                  "reverse_step")

    def __init__(self):
        super().__init__(_Unclipped())


def minus_inf_declared():
    return _MinusInfTarget()


# -- any data shape ------------------------------------------------------------------------------------

class _Images(Target):
    data_shape = (3, 4, 4)


def images():
    return _Images()


#: factory -> (exit status, (check title, outcome) or a fragment of the stderr line)
EXPECTED = {
    "raises_at_t_equal_T": (1, ("forward: q_sample with given noise", "error")),
    "raises_on_mixed_timesteps": (1, ("posterior: mean", "error")),
    "wrong_shape": (1, ("posterior: mean", "fail")),
    "float16_output": (1, ("forward: q_sample with given noise", "fail")),
    "integer_output": (1, ("schedule: beta_t", "fail")),
    "floor_undeclared": (1, ("posterior: log-variance", "fail")),
    "missing_method": (2, "velocity but the object has no method"),
    "missing_prediction_type": (2, "declares no prediction_type"),
    "unknown_operation": (2, "'q_smaple'"),
    "clip_and_threshold": (2, "both clip_sample and thresholding"),
    "minus_inf_with_decoder": (2, "leaves sigma_1^2 of fixed_small undefined"),
    "raising_reference_schedule": (2, "reference_schedule() raised RuntimeError: no schedule configured"),
    "bad_unit_roundoff": (2, "unit_roundoff = 0"),
    "floor_declared": (0, ("convention: t = 1 log-variance", "convention")),
    "minus_inf_declared": (0, ("convention: t = 1 log-variance", "convention")),
    "images": (0, ("likelihood: total bound (nats)", "pass")),
}
