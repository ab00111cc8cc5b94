"""The target protocol: everything a check reads from the implementation it checks.

A target is any object with the attributes below and one method per operation it lists in
`operations`. `ddpm-verify template` prints a complete, runnable example (a plain NumPy
DDPM and its adapter). Before any check runs, `declare` validates the object: a missing or
ill-typed attribute, an operation without its method, or an inconsistent declaration ends the
run with exit status 2 and a line naming what is wrong. Checks then see the target only
through the `Checked` object `declare` returns: the declared attributes, defaults filled in,
and the operations, called through one guard that reshapes inputs to the target's
`data_shape`, converts outputs (NumPy arrays or torch tensors) to float64, and turns a wrong
shape or dtype into a failed check and an exception into an ``error`` naming the input.

Conventions of every method: timesteps are paper t = 1..T (a library's 0-based index i is
t = i + 1; the adapter converts in one place); ``t`` is an int64 array with one timestep per
row, rows may mix timesteps; data arrays (x0, xt, eps) have shape ``(n, *data_shape)`` and
are float64 (round them to your dtype); likelihood terms are nats per example (an adapter of
code that reports bits per dimension multiplies by d ln 2, d = prod(data_shape)). A model
output (``model_output``) has the data's shape, except for learned variances, where axis 1
(the channel axis; the only data axis of vectors) is doubled: the mean part, then the
variance part, as improved-diffusion and diffusers split it.

Attributes (R: required; O: optional, with its default; M: required by the operations that
take a model output; S: required by the strided operations, which take n, the number of
inference steps, first)

========================  ==  ===============================================================
``name``                  R   str: the target's name in reports.
``operations``            R   collection of str: the operations it provides (names below).
``unit_roundoff``         R   float: unit roundoff u of the dtype of the target's arithmetic on
                              data (2**-24 for float32, 2**-53 for float64). Outputs in a
                              coarser dtype fail. Every budget is u times a condition number.
``reference_schedule()``  R   method returning the `reference.Schedule` the target claims to
                              implement (its T is the target's T).
``version``               O   str; default: the distribution that provides the class's package.
``table_roundoff``        O   float, default ``unit_roundoff``: unit roundoff of the arithmetic
                              in which the schedule tables (beta_t, abar_t and coefficients
                              derived from them such as sqrt(1 - abar_t)) are *computed*,
                              whatever dtype they are stored in: tables computed in float64 and
                              stored or used in float32 have 2**-53. The storage rounding is
                              read from the dtype of the tables `betas()` and `alpha_bar()`
                              return, and the rounding on use is in ``unit_roundoff``'s budget.
``data_shape``            O   tuple of ints, default (4,): the shape of one example; images
                              are (C, H, W). The checks' inputs have this shape.
``schedule_is_named``     O   bool, default True: False when `reference_schedule` was built from
                              the target's own betas, so comparing the betas proves nothing
                              (``betas`` is then skipped).
``betas_recomputed``      O   bool, default False: the betas are recomputed from the tables as
                              1 - abar_t / abar_{t-1} (improved-diffusion's SpacedDiffusion),
                              which costs about 3 table_roundoff absolute per beta.
``rescaled_from``         O   `reference.Schedule` or None: the schedule before a zero-terminal-
                              SNR rescaling done in table arithmetic (its cancellation is
                              budgeted).
``prediction_type``       M   epsilon, sample (x_0), v_prediction or previous_x (the posterior
                              mean itself): what the model output predicts.
``variance_type``         M   the variance of p_theta(x_{t-1} | x_t) the target samples with:
                              fixed_small (beta_tilde_t), fixed_large (beta_t), learned_range
                              (log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t, v =
                              (output + 1) / 2), learned_log_variance (the output is log
                              sigma^2) or learned_variance (the output is sigma^2).
``clip_sample``           O   bool, default False: x0_hat is clipped to [-clip_range, clip_range].
``clip_range``            O   float, default 1.0.
``thresholding``          O   None (default) or (ratio, max_value): Imagen's dynamic
                              thresholding of x0_hat (`reference.dynamic_threshold`); not
                              together with ``clip_sample``.
``large_variance_at_1``   O   convention, default ``beta``: sigma_1^2 of fixed_large; improved
                              DDPM uses ``beta_tilde_2``.
``log_variance_at_1``     O   convention, default ``clipped``: log beta_tilde_1 = -inf kept finite
                              as log beta_tilde_2 (``clipped``), as log(variance_floor)
                              (``floor``), left at ``-inf``, or not computed (``absent``: not
                              compared). Applies to the posterior's and fixed_small's and
                              learned_range's log-variance at t = 1, where no noise is added.
``variance_floor``        O   float, default 1e-20: the floor of ``log_variance_at_1 = floor``.
``decoder``               O   discretized (default; 8-bit data in [-1, 1]) or continuous: the
                              decoder p_theta(x_0 | x_1) of the t = 1 term.
``normal_cdf``            O   exact (default) or tanh (0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715
                              x^3))), error <= 1.8e-4): an error within that approximation's
                              budget is a ``note``.
``loss_target``           O   what ``training_loss`` regresses on, in the prediction names:
                              epsilon, sample (x_0), v_prediction, previous_x (the posterior
                              mean), or None (no regression term); required with it.
``loss_vb_weight``        O   float, default 0: weight of the VB term, in bits per dimension,
                              added to the loss (improved DDPM's hybrid loss; the KL losses).
``loss_reduction``        O   mean (default) or sum: over the data dimensions of one example.
``loss_weighting``        O   none (default) or min_snr: the per-t weight of the regression term,
                              min(snr_t, gamma) / snr_t times snr_t for an x0 target and
                              snr_t / (snr_t + 1) for a v target (Hang et al. 2023 in the form that
                              makes every target the eps loss; lucidrains' loss_weight).
``min_snr_gamma``         O   float, default inf: gamma of min_snr (inf: no clipping).
``inert_options``         O   dict {option: reason}, default {}: options of the target that
                              change nothing the checks test; each is reported as a ``note``.
``step_counts``           O   tuple of ints, default (): the numbers of inference steps n whose
                              samplers the strided operations (those taking ``n``) serve: the
                              count a scheduler is set to, or a battery the adapter can set.
``timestep_rule``         S   the sequence a sampler of n steps visits: leading, linspace or
                              trailing (diffusers' timestep_spacing), space_timesteps
                              (improved-diffusion's respacing, with ``section_counts``),
                              lucidrains, or custom (only its validity is checked).
``steps_offset``          O   int, default 0: diffusers' offset of the leading spacing.
``section_counts``        O   str: the respacing of space_timesteps, e.g. "250" or "ddim50".
``final_alpha_bar``       O   convention, default ``one``: the abar of x_0 for the last DDIM step;
                              ``abar_1`` for diffusers' set_alpha_to_one=False.
``ddim_eps``              O   convention, default ``clipped``: DDIM's eps_hat derived from the
                              clipped (or thresholded) x0_hat, as Song et al. and
                              improved-diffusion do; ``unclipped``: from the model's own
                              prediction (diffusers' use_clipped_model_output=False).
``etas``                  O   tuple of floats in [0, 1], default (0.0,): the eta values
                              `ddim_step` is checked with.
========================  ==  ===============================================================

Operations: `OPERATIONS` below, one method each (the table in the README lists them with
the checks that use them).
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import re
import sys
import traceback as tb
from dataclasses import dataclass

import numpy as np

import reference
from reference.conventions import Prediction, Variance

from ..errors import InternalError, TargetError, TargetRaised, WrongOutput, one_line

PREDICTION_TYPES = Prediction.ALL
TIMESTEP_RULES = ("leading", "linspace", "trailing", "space_timesteps", "lucidrains", "custom")
FINAL_ALPHA_BARS = ("one", "abar_1")
DDIM_EPS = ("clipped", "unclipped")
VARIANCE_TYPES = Variance.ALL
#: variance types whose model output carries a variance part (axis 1 doubled)
LEARNED_VARIANCES = Variance.LEARNED
LOG_VARIANCE_AT_1 = ("clipped", "floor", "-inf", "absent")
LARGE_VARIANCE_AT_1 = ("beta", "beta_tilde_2")
DECODERS = ("discretized", "continuous")
NORMAL_CDFS = ("exact", "tanh")
LOSS_TARGETS = Prediction.ALL + (None,)
LOSS_REDUCTIONS = ("mean", "sum")
LOSS_WEIGHTINGS = ("none", "min_snr")


@dataclass(frozen=True)
class Operation:
    """One method of the protocol: its signature, what it computes, the kinds of its arguments
    (x: data array, out: model output, t: timesteps, t_int: one timestep, seed: int, model_fn:
    a function of x_t) and of its result (table (T,), data (n, *data_shape), variance (data, or
    one value per example as (n,) or (n, 1, ..., 1)), per_example (n,), step (x_prev, z),
    timestep (int), bound (dict))."""

    signature: str
    meaning: str
    args: tuple[str, ...]
    returns: str
    model: bool = False       # takes a model output: needs prediction_type and variance_type


OPERATIONS: dict[str, Operation] = {op.signature.split("(")[0]: op for op in (
    Operation("betas()", "beta_t, t = 1..T", (), "table"),
    Operation("alpha_bar()", "abar_t = prod_{s<=t} (1 - beta_s), t = 1..T", (), "table"),
    Operation("q_mean(x0, t)", "mean of q(x_t | x_0): sqrt(abar_t) x0", ("x", "t"), "data"),
    Operation("q_variance(x0, t)", "variance of q(x_t | x_0): 1 - abar_t", ("x", "t"), "variance"),
    Operation("q_log_variance(x0, t)", "log(1 - abar_t)", ("x", "t"), "variance"),
    Operation("q_sample(x0, t, eps)", "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for the given eps",
              ("x", "t", "x"), "data"),
    Operation("q_sample_random(x0, t, seed)", "x_t with the target's own noise, seeded", ("x", "t", "seed"), "data"),
    Operation("velocity(x0, t, eps)", "v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0", ("x", "t", "x"), "data"),
    Operation("x0_from_eps(xt, t, eps)", "x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)", ("x", "t", "x"), "data"),
    Operation("eps_from_x0(xt, t, x0)", "eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)", ("x", "t", "x"), "data"),
    Operation("posterior_mean(x0, xt, t)", "mu_tilde_t(x0, x_t), the mean of q(x_{t-1} | x_t, x_0)",
              ("x", "x", "t"), "data"),
    Operation("posterior_variance(x0, xt, t)", "beta_tilde_t (compared for t >= 2)", ("x", "x", "t"), "variance"),
    Operation("posterior_log_variance(x0, xt, t)", "log beta_tilde_t; t = 1 by log_variance_at_1",
              ("x", "x", "t"), "variance"),
    Operation("previous_t(t)", "the timestep one reverse step from t goes to", ("t_int",), "timestep"),
    Operation("predict_x0(model_output, xt, t)", "x0_hat from the output, clipped or thresholded as declared",
              ("out", "x", "t"), "data", True),
    Operation("p_mean(model_output, xt, t)", "mean of p_theta(x_{t-1} | x_t): mu_tilde_t(x0_hat, x_t)",
              ("out", "x", "t"), "data", True),
    Operation("p_variance(model_output, xt, t)", "sigma_t^2 of p_theta (compared for t >= 2)",
              ("out", "x", "t"), "variance", True),
    Operation("p_log_variance(model_output, xt, t)", "log sigma_t^2 of p_theta", ("out", "x", "t"), "variance", True),
    Operation("reverse_step(model_output, xt, t, seed)",
              "(x_{t-1}, z): one ancestral step with its own seeded noise, and that noise regenerated",
              ("out", "x", "t", "seed"), "step", True),
    Operation("vlb_term(model_output, x0, xt, t)",
              "KL(q(x_{t-1}|x_t,x_0) || p_theta) for t >= 2, the decoder NLL at t = 1; nats per example",
              ("out", "x", "x", "t"), "per_example", True),
    Operation("prior_term(x0)", "L_T = KL(q(x_T | x_0) || N(0, I)), nats per example", ("x",), "per_example"),
    Operation("total_bpd(model_fn, x0, seed)",
              "the whole bound with the target's own noise: {'total', 'prior': (n,), 'terms': (n, T), "
              "'eps': (T, n, *data_shape), optional 'x0_mse': (n, T)}, nats; model_fn(xt) -> model output",
              ("model_fn", "x", "seed"), "bound", True),
    Operation("training_loss(model_output, x0, t, eps)", "the per-example training loss (loss_target, ...)",
              ("out", "x", "t", "x"), "per_example", True),
    Operation("timesteps(n)", "the paper timesteps a sampler of n steps visits, decreasing (then 0)", ("n",),
              "ints"),
    Operation("strided_previous_t(n, t)", "the timestep the step from t goes to in that sampler (0: x_0)",
              ("n", "t_int"), "timestep"),
    Operation("respaced_betas(n)", "the betas of the respaced chain, in increasing t (beta'_j)", ("n",), "table_n"),
    Operation("model_timestep(n, t)", "the paper timestep the network is called with at the step from t",
              ("n", "t_int"), "timestep"),
    Operation("strided_step(n, model_output, xt, t, seed)",
              "(x_s, z): one ancestral step of the respaced DDPM from t to the next timestep s, and its noise",
              ("n", "out", "x", "t", "seed"), "step", True),
    Operation("strided_variance(n, model_output, xt, t)", "the variance of that step (compared where s >= 1)",
              ("n", "out", "x", "t"), "variance", True),
    Operation("ddim_step(n, model_output, xt, t, eta, seed)",
              "(x_s, z): one DDIM step (Song et al. eq. 12) from t to the next timestep s, and its noise",
              ("n", "out", "x", "t", "eta", "seed"), "step", True),
    Operation("ddim_loop(n, model_fn, rows, eta, seed)",
              "a whole DDIM sampler run with the network model_fn(x_t): {'t': the paper timesteps the network "
              "saw (S,), 'x': its inputs (S, rows, *data_shape), 'z': the noise of each step, 'x0': the output}",
              ("n", "model_fn", "rows", "eta", "seed"), "loop", True),
    Operation("ddim_invert(n, model_output, xs, t)",
              "x_t from x_s, s the timestep before t in that sampler, by the eta = 0 map run forward; the "
              "model output is the prediction at s", ("n", "out", "x", "t"), "data", True),
)}


# -- the declaration ------------------------------------------------------------------------------

def _fail(name: str, message: str):
    raise TargetError(f"{name}: {message}")


def _choice(name, label: str, value, allowed) -> str:
    if value not in allowed:
        _fail(name, f"{label} = {value!r} is none of {', '.join(str(a) for a in allowed)}")
    return value


def _roundoff(name, label: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < float(value) < 0.5:
        _fail(name, f"{label} = {value!r} must be a number in (0, 0.5), the unit roundoff of a float dtype "
                    "(2**-24 for float32)")
    return float(value)


def _data_shape(name, value) -> tuple[int, ...]:
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if not shape or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape):
        _fail(name, f"data_shape = {value!r} must be a non-empty tuple of positive integers, e.g. (4,) or (3, 32, 32)")
    return tuple(int(n) for n in shape)


def _flag(name, label: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, f"{label} = {value!r} must be True or False")
    return bool(value)


def _positive(name, label: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < float(value) < math.inf:
        _fail(name, f"{label} = {value!r} must be a positive number")
    return float(value)


@functools.lru_cache(maxsize=None)
def _distributions() -> dict:
    return importlib.metadata.packages_distributions()


def package_version(cls, library=None) -> str:
    """'<distribution> <version>' of the package `cls` comes from; when `cls` subclasses `library`
    (a class of the wrapped library) from another package, ' on <its distribution> <version>'
    follows."""
    def describe(c) -> str:
        top = c.__module__.split(".")[0]
        dists = _distributions().get(top)
        if not dists:
            return f"{top} (not an installed distribution)"
        name = re.sub(r"[-_.]+", "-", dists[0]).lower()          # PEP 503 normal form
        try:
            return f"{name} {importlib.metadata.version(dists[0])}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} (version unknown)"
    own = describe(cls)
    if library is None or not issubclass(cls, library) or \
            library.__module__.split(".")[0] == cls.__module__.split(".")[0]:
        return own
    return f"{own} on {describe(library)}"


def _attribute(obj, name: str, default=None, *, required: bool = False, who: str = "target"):
    try:
        present = hasattr(obj, name)
        value = getattr(obj, name) if present else default
    except Exception as exc:  # noqa: BLE001 - a property of the target raised
        raise TargetError(f"{who}: reading the attribute {name!r} raised {one_line(exc)}") from exc
    if required and not present:
        raise TargetError(f"{who}: the attribute {name!r} is missing (see `ddpm-verify template`)")
    return value


def declare(obj) -> Checked:
    """Validate `obj` against the protocol; the `Checked` target, or TargetError naming the problem."""
    for attr in ("name", "operations", "unit_roundoff", "reference_schedule"):
        _attribute(obj, attr, required=True, who=type(obj).__name__)
    name = _attribute(obj, "name")
    if not isinstance(name, str) or not name:
        raise TargetError(f"{type(obj).__name__}: name = {name!r} must be a non-empty string")
    raw_ops = _attribute(obj, "operations")
    if isinstance(raw_ops, str) or not all(isinstance(op, str) for op in _iterable(name, raw_ops)):
        _fail(name, f"operations = {raw_ops!r} must be a collection of operation names")
    ops = frozenset(raw_ops)
    unknown = sorted(ops - set(OPERATIONS))
    if unknown:
        _fail(name, f"operations names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                    f"not an operation of the protocol ({', '.join(OPERATIONS)})")
    lacking = sorted(op for op in ops if not callable(_attribute(obj, op, who=name)))
    if lacking:
        _fail(name, f"operations lists {', '.join(lacking)} but the object has no method of that name "
                    f"({', '.join(OPERATIONS[op].signature for op in lacking)})")
    decl = {"target": obj, "name": name, "operations": ops,
            "unit_roundoff": _roundoff(name, "unit_roundoff", _attribute(obj, "unit_roundoff"))}
    decl["version"] = str(_attribute(obj, "version", None, who=name) or package_version(type(obj)))
    table = _attribute(obj, "table_roundoff", None, who=name)
    decl["table_roundoff"] = decl["unit_roundoff"] if table is None else _roundoff(name, "table_roundoff", table)
    decl["data_shape"] = _data_shape(name, _attribute(obj, "data_shape", (4,), who=name))
    decl["schedule"] = _schedule(obj, name)
    for flag, default in (("schedule_is_named", True), ("betas_recomputed", False), ("clip_sample", False)):
        decl[flag] = _flag(name, flag, _attribute(obj, flag, default, who=name))
    rescaled = _attribute(obj, "rescaled_from", None, who=name)
    if rescaled is not None and not isinstance(rescaled, reference.Schedule):
        _fail(name, f"rescaled_from = {rescaled!r} must be a reference.Schedule or None")
    decl["rescaled_from"] = rescaled
    decl.update(_model_semantics(obj, name, ops))
    decl.update(_loss_semantics(obj, name, ops))
    decl.update(_strided_semantics(obj, name, ops, decl["schedule"].T))
    decoder_ops = sorted(ops & ({"vlb_term", "total_bpd", "training_loss"} if decl["loss_vb_weight"]
                                else {"vlb_term", "total_bpd"}))
    if decl["log_variance_at_1"] in ("-inf", "absent") \
            and decl["variance_type"] in (Variance.FIXED_SMALL, Variance.LEARNED_RANGE) \
            and decoder_ops:
        _fail(name, f"log_variance_at_1 = {decl['log_variance_at_1']!r} leaves sigma_1^2 of {decl['variance_type']} "
                    f"undefined, but {', '.join(decoder_ops)} evaluate the decoder at t = 1 with it; declare the value "
                    "the code uses there (clipped or floor)")
    inert = _attribute(obj, "inert_options", {}, who=name) or {}
    if not isinstance(inert, dict):
        _fail(name, f"inert_options = {inert!r} must be a dict {{option: reason}}")
    decl["inert_options"] = {str(k): str(v) for k, v in inert.items()}
    return Checked(decl)


def _iterable(name, value):
    try:
        return list(value)
    except TypeError:
        _fail(name, f"operations = {value!r} must be a collection of operation names")


def _schedule(obj, name) -> reference.Schedule:
    method = _attribute(obj, "reference_schedule", who=name)
    if not callable(method):
        _fail(name, "reference_schedule must be a method returning a reference.Schedule")
    try:
        sched = method()
    except Exception as exc:  # noqa: BLE001 - the target's own code
        raise TargetError(f"{name}: reference_schedule() raised {one_line(exc)}") from exc
    if not isinstance(sched, reference.Schedule):
        _fail(name, f"reference_schedule() returned {type(sched).__name__}, not a reference.Schedule")
    return sched


def _model_semantics(obj, name: str, ops: frozenset) -> dict:
    model_ops = sorted(op for op in ops if OPERATIONS[op].model)
    get = functools.partial(_attribute, obj, who=name)
    out = {"prediction_type": get("prediction_type", None), "variance_type": get("variance_type", None)}
    for key, allowed in (("prediction_type", PREDICTION_TYPES), ("variance_type", VARIANCE_TYPES)):
        if out[key] is None:
            if model_ops:
                _fail(name, f"operations {', '.join(model_ops)} take a model output, but the target declares no "
                            f"{key} (one of {', '.join(allowed)})")
        else:
            _choice(name, key, out[key], allowed)
    out["clip_range"] = _positive(name, "clip_range", get("clip_range", 1.0))
    thresholding = get("thresholding", None)
    if thresholding is not None:
        try:
            ratio, max_value = (float(v) for v in thresholding)
        except (TypeError, ValueError):
            _fail(name, f"thresholding = {thresholding!r} must be None or (ratio, max_value)")
        if not (0 < ratio <= 1 and max_value >= 1):
            _fail(name, f"thresholding = {thresholding!r}: ratio must lie in (0, 1] and max_value be >= 1")
        if _flag(name, "clip_sample", get("clip_sample", False)):
            _fail(name, "declares both clip_sample and thresholding; declare the one its code applies to x0_hat")
        thresholding = (ratio, max_value)
    out["thresholding"] = thresholding
    out["large_variance_at_1"] = _choice(name, "large_variance_at_1", get("large_variance_at_1", "beta"),
                                         LARGE_VARIANCE_AT_1)
    out["log_variance_at_1"] = _choice(name, "log_variance_at_1", get("log_variance_at_1", "clipped"),
                                       LOG_VARIANCE_AT_1)
    out["variance_floor"] = _positive(name, "variance_floor", get("variance_floor", 1e-20))
    out["decoder"] = _choice(name, "decoder", get("decoder", "discretized"), DECODERS)
    out["normal_cdf"] = _choice(name, "normal_cdf", get("normal_cdf", "exact"), NORMAL_CDFS)
    return out


def _loss_semantics(obj, name: str, ops: frozenset) -> dict:
    get = functools.partial(_attribute, obj, who=name)
    target = get("loss_target", None)
    weight = get("loss_vb_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)) or not 0 <= weight < math.inf:
        _fail(name, f"loss_vb_weight = {weight!r} must be a number >= 0")
    reduction = _choice(name, "loss_reduction", get("loss_reduction", "mean"), LOSS_REDUCTIONS)
    _choice(name, "loss_target", target, LOSS_TARGETS)
    if "training_loss" in ops and target is None and not weight:
        _fail(name, "training_loss is listed, but the loss has neither a loss_target nor a loss_vb_weight")
    weighting = _choice(name, "loss_weighting", get("loss_weighting", "none"), LOSS_WEIGHTINGS)
    gamma = get("min_snr_gamma", math.inf)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)) or not gamma > 0:
        _fail(name, f"min_snr_gamma = {gamma!r} must be a number > 0 (inf: no clipping)")
    return {"loss_target": target, "loss_vb_weight": float(weight), "loss_reduction": reduction,
            "loss_weighting": weighting, "min_snr_gamma": float(gamma)}


#: the operations of samplers with fewer steps than training (they take n first)
STRIDED_OPERATIONS = frozenset(op for op, spec in OPERATIONS.items() if spec.args[:1] == ("n",))


def _strided_semantics(obj, name: str, ops: frozenset, T: int) -> dict:
    get = functools.partial(_attribute, obj, who=name)
    counts = get("step_counts", ()) or ()
    try:
        counts = tuple(counts)
    except TypeError:
        counts = None
    if counts is None or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 1 <= n <= T
                                 for n in counts):
        _fail(name, f"step_counts = {get('step_counts', ())!r} must be a tuple of step counts in 1..T = 1..{T}")
    strided = sorted(ops & STRIDED_OPERATIONS)
    if strided and not counts:
        _fail(name, f"operations {', '.join(strided)} serve samplers of n steps, but step_counts is empty")
    if strided and "timesteps" not in ops:
        _fail(name, f"operations {', '.join(strided)} need the operation timesteps(n): the sequence they follow")
    rule = get("timestep_rule", None)
    if strided or rule is not None:
        _choice(name, "timestep_rule", rule, TIMESTEP_RULES)
    offset = get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        _fail(name, f"steps_offset = {offset!r} must be an integer >= 0")
    sections = get("section_counts", None)
    if rule == "space_timesteps" and not isinstance(sections, str):
        _fail(name, "timestep_rule = 'space_timesteps' needs section_counts, e.g. '250' or 'ddim50'")
    etas = get("etas", (0.0,))
    try:
        etas = tuple(float(e) for e in etas)
    except (TypeError, ValueError):
        etas = ()
    if not etas or not all(0.0 <= e <= 1.0 for e in etas):
        _fail(name, f"etas = {get('etas', None)!r} must be a non-empty tuple of numbers in [0, 1]")
    return {"step_counts": tuple(int(n) for n in counts), "timestep_rule": rule, "steps_offset": int(offset),
            "section_counts": sections, "etas": etas,
            "final_alpha_bar": _choice(name, "final_alpha_bar", get("final_alpha_bar", "one"), FINAL_ALPHA_BARS),
            "ddim_eps": _choice(name, "ddim_eps", get("ddim_eps", "clipped"), DDIM_EPS)}


# -- the guarded target ---------------------------------------------------------------------------

#: modules whose frames are the numerical libraries, not the target's or ddpm-verify's own code
_NUMERICS = ("numpy", "torch", "scipy")
#: modules of ddpm-verify that are targets, not the checker
_TARGET_MODULES = ("ddpm_verify.adapters.template", "ddpm_verify.endtoend.template")


class BadModelCall(ValueError):
    """The target called the model it was given with input that is not data of its shape."""


def raised_by_us(exc: BaseException) -> bool:
    """True when the innermost frame outside NumPy/torch/SciPy is ddpm-verify's own code (an
    adapter, or the model function handed to the target): then the exception is a bug of ours,
    not the target's."""
    if isinstance(exc, BadModelCall):
        return False
    for frame, _ in reversed(list(tb.walk_tb(exc.__traceback__))):
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in _NUMERICS:
            continue
        return module.startswith("ddpm_verify.") and module not in _TARGET_MODULES
    return False


class Checked:
    """A validated target: the declared attributes (defaults filled in) as attributes, `schedule`
    (its `reference_schedule()`), `T`, `d` = prod(data_shape), and one method per declared
    operation taking and returning the checks' flat float64 arrays ((n, d) for data)."""

    def __init__(self, decl: dict):
        self.__dict__.update(decl)
        self.T = self.schedule.T
        self.d = math.prod(self.data_shape)
        self.output_roundoff: dict[str, float] = {}    # op -> unit roundoff of its last output's dtype

    def declaration(self) -> dict:
        """The declared attributes, for reports."""
        skip = ("target", "schedule", "rescaled_from", "operations", "T", "d", "output_roundoff")
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out.update(operations=sorted(self.operations), schedule=repr(self.schedule))
        return out

    def __getattr__(self, op: str):
        if op not in OPERATIONS:
            raise AttributeError(op)
        if op not in self.__dict__["operations"]:
            raise AttributeError(f"{self.__dict__['name']} does not provide the operation {op!r}")
        return functools.partial(self.call, op)

    # -- inputs, flat -> the target's shapes --------------------------------------------------------
    def _shaped(self, a: np.ndarray) -> np.ndarray:
        return np.array(a, dtype=np.float64).reshape((len(a),) + self.data_shape)

    def _output_to_target(self, out: np.ndarray) -> np.ndarray:
        """A flat model output ((n, d), or (n, 2d) with a variance part) in the target's layout."""
        if self.variance_type in LEARNED_VARIANCES:
            mean, var = self._shaped(out[:, :self.d]), self._shaped(out[:, self.d:])
            return np.concatenate([mean, var], axis=1)
        return self._shaped(out)

    def output_from_target(self, out) -> np.ndarray:
        """The inverse of `_output_to_target` (for model functions the target calls)."""
        out = np.asarray(out, dtype=np.float64)
        if self.variance_type in LEARNED_VARIANCES:
            c = out.shape[1] // 2
            return np.concatenate([out[:, :c].reshape(len(out), -1), out[:, c:].reshape(len(out), -1)], axis=1)
        return out.reshape(len(out), -1)

    def _model_fn(self, flat_fn):
        def model_fn(xt):
            xt = np.asarray(xt, dtype=np.float64)
            if xt.ndim < 1 or xt.shape[1:] != self.data_shape:
                raise BadModelCall(f"the model was called with x_t of shape {xt.shape}; expected "
                                   f"(n, {', '.join(map(str, self.data_shape))})")
            return self._output_to_target(flat_fn(xt.reshape(len(xt), self.d)))
        return model_fn

    def _to_target(self, kind: str, value):
        if kind == "x":
            return self._shaped(value)
        if kind == "out":
            return self._output_to_target(np.asarray(value, dtype=np.float64))
        if kind == "t":
            return np.array(value, dtype=np.int64).reshape(-1)
        if kind in ("t_int", "seed", "n", "rows"):
            return int(value)
        if kind == "eta":
            return float(value)
        if kind == "model_fn":
            return self._model_fn(value)
        raise ValueError(f"unknown argument kind {kind!r}")

    # -- outputs, the target's -> flat float64 ------------------------------------------------------
    def stored_table(self, op: str, *args) -> tuple[np.ndarray, float]:
        """(the table `op` returns, as float64; the unit roundoff of the dtype it came in): a table
        computed in float64 but stored in float32 carries the storage rounding too."""
        table = self.call(op, *args)
        return table, self.output_roundoff[op]

    def _array(self, op: str, value, what: str) -> np.ndarray:
        """`value` (NumPy array, torch tensor or number) as float64, after checking its dtype."""
        if hasattr(value, "detach") and hasattr(value, "dtype"):          # a torch tensor
            if not value.dtype.is_floating_point:
                raise WrongOutput(op, f"{what} of dtype {value.dtype}, not a floating-point dtype")
            u_out = float(_torch().finfo(value.dtype).eps) / 2
            dtype_name = str(value.dtype).removeprefix("torch.")
            value = value.detach().cpu().double().numpy()
        else:
            try:
                value = np.asarray(value)
            except Exception as exc:  # noqa: BLE001
                raise WrongOutput(op, f"{what} that is not an array ({one_line(exc)})") from exc
            if value.dtype.kind != "f":
                raise WrongOutput(op, f"{what} of dtype {value.dtype}, not a floating-point dtype")
            u_out, dtype_name = float(np.finfo(value.dtype).eps) / 2, str(value.dtype)
        if u_out > self.unit_roundoff * (1 + 1e-9):
            raise WrongOutput(op, f"{what} in {dtype_name} (unit roundoff {u_out:.2g}), coarser than the declared "
                                  f"unit_roundoff {self.unit_roundoff:.2g}")
        self.output_roundoff[op] = u_out
        return np.array(value, dtype=np.float64)

    def _expect(self, op: str, a: np.ndarray, shape: tuple, what: str) -> np.ndarray:
        if a.shape != shape:
            raise WrongOutput(op, f"{what} of shape {a.shape}; expected {shape}")
        return a

    def _data(self, op: str, value, n: int, what: str = "an output") -> np.ndarray:
        a = self._array(op, value, what)
        return self._expect(op, a, (n,) + self.data_shape, what).reshape(n, self.d)

    def _variance(self, op: str, value, n: int) -> np.ndarray:
        a = self._array(op, value, "a variance")
        full = (n,) + self.data_shape
        if a.shape in ((n,), (n,) + (1,) * len(self.data_shape)):
            return np.broadcast_to(a.reshape(n, 1), (n, self.d)).copy()
        return self._expect(op, a, full, "a variance").reshape(n, self.d)

    def _from_target(self, op: str, value, n: int):
        kind = OPERATIONS[op].returns
        if kind == "table":
            return self._expect(op, self._array(op, value, "a table"), (self.T,), "a table")
        if kind == "table_n":
            return self._expect(op, self._array(op, value, "a table"), (n,), "a table")
        if kind == "ints":
            return self._ints(op, value)
        if kind == "data":
            return self._data(op, value, n)
        if kind == "variance":
            return self._variance(op, value, n)
        if kind == "per_example":
            return self._expect(op, self._array(op, value, "per-example values"), (n,), "per-example values")
        if kind == "step":
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise WrongOutput(op, f"{type(value).__name__}; expected a pair (x_prev, z)")
            return self._data(op, value[0], n, "x_prev"), self._data(op, value[1], n, "z")
        if kind == "timestep":
            return self._timestep(op, value)
        if kind == "loop":
            return self._loop(op, value)
        return self._bound(op, value, n)

    def _loop(self, op: str, value) -> dict:
        if not isinstance(value, dict) or not {"t", "x", "z", "x0"} <= set(value):
            raise WrongOutput(op, "no dict with the keys t, x, z and x0")
        t = self._ints(op, value["t"])
        x = self._array(op, value["x"], "x")
        rows = x.shape[1] if x.ndim > 1 else 0
        shape = (t.size, rows) + self.data_shape
        out = {"t": t, "x": self._expect(op, x, shape, "x").reshape(t.size, rows, self.d)}
        out["z"] = self._expect(op, self._array(op, value["z"], "z"), shape, "z").reshape(t.size, rows, self.d)
        out["x0"] = self._expect(op, self._array(op, value["x0"], "x0"), shape[1:], "x0").reshape(rows, self.d)
        return out

    def _ints(self, op: str, value) -> np.ndarray:
        """A 1-D array of integers (NumPy, torch or a list), as int64."""
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        a = np.asarray(value)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise WrongOutput(op, f"{a.dtype} values of shape {a.shape}; expected a 1-D array of integer timesteps")
        return a.astype(np.int64)

    def _timestep(self, op: str, value) -> int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise WrongOutput(op, f"{value!r}; expected an integer timestep") from None
        if number != int(number):
            raise WrongOutput(op, f"{value!r}; expected an integer timestep")
        return int(number)

    def _bound(self, op: str, value, n: int) -> dict:
        if not isinstance(value, dict) or not {"total", "prior", "terms", "eps"} <= set(value):
            raise WrongOutput(op, "no dict with the keys total, prior, terms and eps")
        out = {k: self._expect(op, self._array(op, value[k], k), (n,), k) for k in ("total", "prior")}
        out["terms"] = self._expect(op, self._array(op, value["terms"], "terms"), (n, self.T), "terms")
        eps = self._expect(op, self._array(op, value["eps"], "eps"), (self.T, n) + self.data_shape, "eps")
        out["eps"] = eps.reshape(self.T, n, self.d)
        if "x0_mse" in value:
            out["x0_mse"] = self._expect(op, self._array(op, value["x0_mse"], "x0_mse"), (n, self.T), "x0_mse")
        return out

    # -- the call -------------------------------------------------------------------------------------
    def call(self, op: str, *args):
        """Call the target's `op` on flat inputs; flat float64 outputs. A target exception becomes
        TargetRaised (with the timesteps at which it raises), a wrong output WrongOutput, and an
        exception from ddpm-verify's own adapter code InternalError."""
        spec = OPERATIONS[op]
        shaped = [self._to_target(kind, a) for kind, a in zip(spec.args, args)]
        n = next((len(a) for kind, a in zip(spec.args, args) if kind in ("x", "t")), 0)
        if spec.returns == "table_n":
            n = len(self.call("timesteps", args[0]))
        method = getattr(self.target, op)
        try:
            value = method(*shaped)
        except Exception as exc:  # noqa: BLE001 - classified below
            if raised_by_us(exc):
                raise InternalError(f"the adapter's {op}", exc) from exc
            raise TargetRaised(op, self._locate(method, spec, shaped, args), exc, tb.format_exc()) from exc
        return self._from_target(op, value, n)

    def _locate(self, method, spec: Operation, shaped: list, args) -> str:
        """Where the call raised: the timesteps at which it raises alone, found by calling again
        on the rows of each timestep; or the single timestep / the input's shape."""
        kinds = list(spec.args)
        at_n = f"n = {shaped[kinds.index('n')]}, " if "n" in kinds else ""
        if "t_int" in kinds:
            return f"{at_n}t = {shaped[kinds.index('t_int')]}"
        if "t" not in kinds:
            xs = [a for kind, a in zip(kinds, shaped) if kind == "x"]
            return f"x0 of shape {xs[0].shape}" if xs else at_n.removesuffix(", ")
        return at_n + self._raising_timesteps(method, kinds, shaped)

    @staticmethod
    def _raising_timesteps(method, kinds: list, shaped: list) -> str:
        t = shaped[kinds.index("t")]
        distinct = np.unique(t)
        if distinct.size == 1:
            return f"t = {distinct[0]}"
        raising = []
        for k in distinct:
            rows = t == k
            subset = [a[rows] if kind in ("x", "out", "t") else a for kind, a in zip(kinds, shaped)]
            try:
                method(*subset)
            except Exception:  # noqa: BLE001
                raising.append(int(k))
        if not raising:
            return f"on a batch mixing t = {', '.join(map(str, distinct))}; each t alone runs"
        return f"t = {', '.join(map(str, raising))}; {len(raising)} of {distinct.size} timesteps"


def _torch():
    return sys.modules["torch"]
