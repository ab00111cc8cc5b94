"""What a whole sampling loop or training loss declares, read and checked once.

`package.module:attr` names a zero-argument factory (or the object itself) whose result has:

| attribute | for | meaning (default) |
|---|---|---|
| `sample(model, n)` | sampler | runs the whole loop with `model` as the network; returns (n, *data_shape) |
| `loss(model, x0)` | loss | draws its own t and noise; returns the batch's loss or one value per example |
| `loss_at(model, x0, t, noise)` | loss | optional: the same with given t (the code's convention) and noise |
| `betas` | both | the training schedule the code claims: T values in paper order (array or tensor) |
| `data_shape` | both | the shape of one example, e.g. (3, 32, 32) or (2,) |
| `timesteps` | both | what the code passes the network: "index" (t - 1, 0..T-1), "paper" (1..T) or "fraction" (t / T) |
| `prediction_type` | both | what the code expects the network to return: "epsilon", "sample" (x_0), "v_prediction" |
| `process` | sampler | "ddpm_fixed_small", "ddpm_fixed_large" (every t from T to 1) or "ddim" (any kept steps) |
| `eta` | sampler | DDIM's eta (0) |
| `final_alpha_bar` | sampler | DDIM's last step goes to abar_0 = 1, "one" (default), or to "abar_1" |
| `clip_sample` | sampler | the loop clips x0_hat or its output to [-1, 1] (False): data clipping never touches |
| `output_step` | sampler | the output is rounded to bins of this width, each value the centre of its bin (0: not rounded) |
| `objective` | loss | "epsilon_mse", "x0_mse", "v_mse" |
| `reduction` | loss | "mean" over all elements (default), "sum" over the data dimensions then mean over the batch, "per_example_mean", "per_example_sum" |
| `weighting` | loss | "none" (default), "min_snr" (`min_snr_gamma`, 5), "p2" (`p2_gamma` 1, `p2_k` 1), "snr" (reference.loss_weights) |
| `unit_roundoff` | loss | of the code's arithmetic, for `loss_at` (float32's 2^-24) |
| `name` | both | a label for the report (the class name) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import reference
from reference.conventions import Prediction, Timesteps, Variance

from ..adapters.protocol import package_version
from ..errors import TargetError, one_line
from ..targets import load_object

PROCESSES = {"ddpm_fixed_small": ("ddpm", Variance.FIXED_SMALL), "ddpm_fixed_large": ("ddpm", Variance.FIXED_LARGE),
             "ddim": ("ddim", Variance.FIXED_SMALL)}
OBJECTIVES = {"epsilon_mse": Prediction.EPSILON, "x0_mse": Prediction.SAMPLE, "v_mse": Prediction.V}
REDUCTIONS = ("mean", "sum", "per_example_mean", "per_example_sum")
FLOAT32_ROUNDOFF = 2.0 ** -24


@dataclass
class LoopTarget:
    """A user's whole loop or loss with what it declares (module docstring), validated."""

    obj: object
    kind: str                       # "sampler" or "loss"
    name: str
    version: str
    schedule: reference.Schedule
    data_shape: tuple
    timesteps: str
    prediction_type: str
    process: str = "ddpm"
    variance: str = Variance.FIXED_SMALL
    eta: float = 0.0
    final_alpha_bar: float = 1.0
    clip_sample: bool = False
    output_step: float = 0.0
    objective: str = "epsilon_mse"
    reduction: str = "mean"
    weighting: str = "none"
    weighting_args: dict = field(default_factory=dict)
    unit_roundoff: float = FLOAT32_ROUNDOFF
    has_loss_at: bool = False

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def d(self) -> int:
        return math.prod(self.data_shape)

    @property
    def target(self) -> str:
        """The loss's regression target, in the prediction vocabulary."""
        return OBJECTIVES[self.objective]

    def declaration(self) -> dict:
        keys = ["timesteps", "prediction_type"] + (
            ["process", "variance", "eta", "final_alpha_bar", "clip_sample", "output_step"] if self.kind == "sampler" else
            ["objective", "reduction", "weighting", "weighting_args", "unit_roundoff", "has_loss_at"])
        return {"kind": self.kind, "T": self.T, "data_shape": list(self.data_shape),
                **{k: getattr(self, k) for k in keys}}


def _get(obj, who: str, attr: str, default=None, *, required: bool = False):
    try:
        present = hasattr(obj, attr)
        value = getattr(obj, attr) if present else default
    except Exception as exc:  # noqa: BLE001 - a property of the user's object raised
        raise TargetError(f"{who}: reading {attr!r} raised {one_line(exc)}") from exc
    if required and not present:
        raise TargetError(f"{who}: the attribute {attr!r} is missing (README: checking a whole loop or loss)")
    return value


def _choice(who: str, attr: str, value, options) -> str:
    if value not in options:
        raise TargetError(f"{who}: {attr} = {value!r} is none of {', '.join(map(str, options))}")
    return value


def _number(who: str, attr: str, value, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not lo <= float(value) <= hi:
        raise TargetError(f"{who}: {attr} = {value!r} must be a number in [{lo}, {hi}]")
    return float(value)


def _betas(who: str, value) -> reference.Schedule:
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    try:
        return reference.Schedule(np.asarray(value, dtype=np.float64), name="declared betas")
    except (ValueError, TypeError) as exc:
        raise TargetError(f"{who}: betas: {one_line(exc)}") from exc


def _data_shape(who: str, value) -> tuple:
    if isinstance(value, int):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{who}: data_shape = {value!r} must be a tuple of positive integers") from exc
    if not shape or any(v < 1 for v in shape):
        raise TargetError(f"{who}: data_shape = {value!r} must be a tuple of positive integers")
    return shape


def load(spec: str, kind: str) -> LoopTarget:
    """The `kind` ("sampler" or "loss") target `spec` names, its declaration validated (TargetError,
    exit status 2, naming what is wrong)."""
    if ":" not in spec:
        raise TargetError(f"TARGET must be package.module:attr naming a factory of the {kind}; got {spec!r}")
    return declare(load_object(spec), kind)


def declare(obj, kind: str) -> LoopTarget:
    """`obj` as a `kind` target, its declaration validated (TargetError naming what is wrong)."""
    if kind not in ("sampler", "loss"):
        raise ValueError(f"kind must be 'sampler' or 'loss'; got {kind!r}")
    who = str(_get(obj, type(obj).__name__, "name", None) or type(obj).__name__)
    method = "sample" if kind == "sampler" else "loss"
    if not callable(_get(obj, who, method)):
        raise TargetError(f"{who}: a {kind} needs a method {method}({'model, n' if kind == 'sampler' else 'model, x0'})")
    common = {
        "obj": obj, "kind": kind, "name": who, "version": package_version(type(obj)),
        "schedule": _betas(who, _get(obj, who, "betas", required=True)),
        "data_shape": _data_shape(who, _get(obj, who, "data_shape", required=True)),
        "timesteps": _choice(who, "timesteps", _get(obj, who, "timesteps", required=True), Timesteps.ALL),
        "prediction_type": _choice(who, "prediction_type", _get(obj, who, "prediction_type", required=True),
                                   Prediction.REFERENCE)}
    if kind == "sampler":
        process, variance = PROCESSES[_choice(who, "process", _get(obj, who, "process", required=True), PROCESSES)]
        final = _choice(who, "final_alpha_bar", _get(obj, who, "final_alpha_bar", "one"), ("one", "abar_1"))
        clip = _get(obj, who, "clip_sample", False)
        if not isinstance(clip, (bool, np.bool_)):
            raise TargetError(f"{who}: clip_sample = {clip!r} must be True or False")
        return LoopTarget(**common, process=process, variance=variance,
                          eta=_number(who, "eta", _get(obj, who, "eta", 0.0), 0.0, 1.0),
                          final_alpha_bar=1.0 if final == "one" else float(common["schedule"].alpha_bar(1)),
                          clip_sample=bool(clip),
                          output_step=_number(who, "output_step", _get(obj, who, "output_step", 0.0), 0.0, 1.0))
    weighting = _choice(who, "weighting", _get(obj, who, "weighting", "none"), reference.WEIGHTINGS)
    args = {}
    if weighting == "min_snr":
        args["gamma"] = _number(who, "min_snr_gamma", _get(obj, who, "min_snr_gamma", 5.0), 1e-12)
    elif weighting == "p2":
        args["gamma"] = _number(who, "p2_gamma", _get(obj, who, "p2_gamma", 1.0), 0.0)
        args["k"] = _number(who, "p2_k", _get(obj, who, "p2_k", 1.0), 1e-12)
    loss_at = _get(obj, who, "loss_at", None)
    return LoopTarget(**common, objective=_choice(who, "objective", _get(obj, who, "objective", required=True),
                                                  OBJECTIVES),
                      reduction=_choice(who, "reduction", _get(obj, who, "reduction", "mean"), REDUCTIONS),
                      weighting=weighting, weighting_args=args,
                      unit_roundoff=_number(who, "unit_roundoff", _get(obj, who, "unit_roundoff", FLOAT32_ROUNDOFF),
                                            1e-300, 0.5),
                      has_loss_at=callable(loss_at))
