"""Resolve a TARGET string to a `Target` adapter (the same rules for the CLI and pytest).

- ``reference``: the float64 reference itself (checked by the property suite).
- ``diffusers`` or ``diffusers[key=value,...]``: a stock ``diffusers.DDPMScheduler`` built with
  those config values, e.g. ``diffusers[variance_type=fixed_large,clip_sample=false]``.
- ``guided-diffusion`` or ``guided-diffusion[key=value,...]``: a ``guided_diffusion``
  ``GaussianDiffusion`` with keys ``schedule`` (linear, cosine), ``steps`` (T), ``mean_type``
  (epsilon, start_x, previous_x), ``var_type`` (fixed_small, fixed_large, learned,
  learned_range), ``loss_type`` (mse, rescaled_mse, kl, rescaled_kl) and ``clip_denoised``;
  the defaults are those of ``create_gaussian_diffusion()``: linear, 1000, epsilon,
  fixed_large, mse, clip_denoised=true.
- ``package.module:attr``: an object, or a zero-argument callable returning one, that is
  DDPMScheduler-like (``add_noise``, ``step``, ``alphas_cumprod``, ``config``), GaussianDiffusion-
  like (``q_mean_variance``, ``q_sample``, ``q_posterior_mean_variance``, ``p_mean_variance``,
  ``betas``, ``num_timesteps``) or implements the adapter protocol (``name``, ``operations``,
  ``reference_schedule``, ``unit_roundoff``).
"""

from __future__ import annotations

import importlib
import re

from .adapters.diffusers_ddpm import DiffusersDDPM, looks_like_ddpm_scheduler
from .adapters.guided_diffusion import GuidedDiffusion, looks_like_gaussian_diffusion

BUILTIN = ("reference", "diffusers", "guided-diffusion")


class TargetError(Exception):
    """The target cannot be imported or built, or the usage is wrong (exit status 2)."""


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _options(library: str, options: str | None) -> dict:
    kwargs = {}
    for item in filter(None, (options or "").split(",")):
        if "=" not in item:
            raise TargetError(f"{library} option {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        kwargs[key.strip()] = _value(value.strip())
    return kwargs


def _diffusers(options: str):
    try:
        from diffusers import DDPMScheduler
    except ImportError as exc:
        raise TargetError(f"diffusers is not installed ({exc})") from exc
    kwargs = _options("diffusers", options)
    try:
        return DiffusersDDPM(DDPMScheduler(**kwargs))
    except Exception as exc:
        raise TargetError(f"DDPMScheduler({kwargs}) could not be built: {exc}") from exc


GUIDED_DEFAULTS = {"schedule": "linear", "steps": 1000, "mean_type": "epsilon", "var_type": "fixed_large",
                   "loss_type": "mse", "clip_denoised": True}


def _guided_diffusion(options: str):
    try:
        import guided_diffusion.gaussian_diffusion as gd
    except ImportError as exc:
        raise TargetError(f"guided-diffusion-sdk is not installed ({exc})") from exc
    kwargs = _options("guided-diffusion", options)
    unknown = sorted(set(kwargs) - set(GUIDED_DEFAULTS))
    if unknown:
        raise TargetError(f"guided-diffusion has no option {unknown[0]!r}; options: {', '.join(GUIDED_DEFAULTS)}")
    cfg = {**GUIDED_DEFAULTS, **kwargs}
    enums = {"mean_type": gd.ModelMeanType, "var_type": gd.ModelVarType, "loss_type": gd.LossType}
    members = {}
    for key, enum in enums.items():
        name = str(cfg[key]).upper()
        if name not in enum.__members__:
            raise TargetError(f"guided-diffusion {key}={cfg[key]!r} is not one of "
                              f"{', '.join(m.lower() for m in enum.__members__)}")
        members[key] = enum[name]
    if cfg["schedule"] not in ("linear", "cosine"):
        raise TargetError(f"guided-diffusion schedule={cfg['schedule']!r} is not one of linear, cosine")
    if not isinstance(cfg["steps"], int) or cfg["steps"] < 1:
        raise TargetError(f"guided-diffusion steps={cfg['steps']!r} must be a positive integer")
    try:
        diffusion = gd.GaussianDiffusion(betas=gd.get_named_beta_schedule(cfg["schedule"], cfg["steps"]),
                                         model_mean_type=members["mean_type"], model_var_type=members["var_type"],
                                         loss_type=members["loss_type"])
    except Exception as exc:  # noqa: BLE001 - any construction failure is a bad target
        raise TargetError(f"GaussianDiffusion({cfg}) could not be built: {type(exc).__name__}: {exc}") from exc
    return GuidedDiffusion(diffusion, schedule=cfg["schedule"], clip_denoised=bool(cfg["clip_denoised"]))


def adapt(obj, spec: str):
    """Wrap `obj` by duck typing; TargetError lists what was looked for."""
    if looks_like_ddpm_scheduler(obj):
        return DiffusersDDPM(obj)
    if looks_like_gaussian_diffusion(obj):
        return GuidedDiffusion(obj)
    if all(hasattr(obj, a) for a in ("operations", "reference_schedule", "unit_roundoff", "name")):
        return obj
    raise TargetError(f"{spec}: {type(obj).__name__} is none of what a target can be: a DDPMScheduler-like "
                      "object (add_noise, step, alphas_cumprod, config), a GaussianDiffusion-like "
                      "object (q_mean_variance, q_sample, q_posterior_mean_variance, p_mean_variance, betas, "
                      "num_timesteps) or an adapter (name, operations, "
                      "reference_schedule, unit_roundoff)")


def resolve(spec: str):
    """The adapter for `spec`; None for the reference itself."""
    if spec == "reference":
        return None
    m = re.fullmatch(r"diffusers(?:\[(.*)\])?", spec)
    if m:
        return _diffusers(m.group(1))
    m = re.fullmatch(r"guided-diffusion(?:\[(.*)\])?", spec)
    if m:
        return _guided_diffusion(m.group(1))
    if ":" not in spec:
        raise TargetError(f"unknown target {spec!r}; built-in targets: {', '.join(BUILTIN)} "
                          "(or package.module:attr)")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"cannot import {module_name!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise TargetError(f"module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not (looks_like_ddpm_scheduler(obj) or looks_like_gaussian_diffusion(obj)
                              or hasattr(obj, "operations")):
        try:
            obj = obj()
        except Exception as exc:
            raise TargetError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc
    return adapt(obj, spec)
