"""Resolve a TARGET string to a `Target` adapter (the same rules for the CLI and pytest).

- ``reference``: the float64 reference itself (checked by the property suite).
- ``diffusers`` or ``diffusers[key=value,...]``: a stock ``diffusers.DDPMScheduler`` built with
  those config values, e.g. ``diffusers[variance_type=fixed_large,clip_sample=false]``;
  ``diffusers-ddim[...]`` and ``diffusers-ddim-inverse[...]``: a ``DDIMScheduler`` and a
  ``DDIMInverseScheduler``. The key ``num_inference_steps=N`` calls ``set_timesteps(N)`` on it
  (checked on those timesteps); without, the checks try a battery of step counts.
- ``guided-diffusion`` or ``guided-diffusion[key=value,...]``: a ``guided_diffusion``
  ``GaussianDiffusion`` with keys ``schedule`` (linear, cosine), ``steps`` (T), ``mean_type``
  (epsilon, start_x, previous_x), ``var_type`` (fixed_small, fixed_large, learned,
  learned_range), ``loss_type`` (mse, rescaled_mse, kl, rescaled_kl), ``clip_denoised`` and
  ``timestep_respacing`` (improved-diffusion's, with / for its commas: ``250``, ``ddim50``,
  ``10/15/20``: a respaced ``SpacedDiffusion``); the defaults are those of
  ``create_gaussian_diffusion()``: linear, 1000, epsilon, fixed_large, mse, clip_denoised=true,
  no respacing.
- ``package.module:attr``: an object, or a zero-argument callable returning one, that is
  DDPMScheduler-like (``add_noise``, ``step``, ``alphas_cumprod``, ``config`` with a
  ``variance_type``, ``_get_variance``), DDIMScheduler-like (a config with ``set_alpha_to_one``
  and no ``variance_type``; inverse when it has ``initial_alpha_cumprod``), GaussianDiffusion-like (``q_mean_variance``,
  ``q_sample``, ``q_posterior_mean_variance``, ``p_mean_variance``, ``betas``,
  ``num_timesteps``) or implements the target protocol (``adapters.protocol``: ``name``,
  ``operations``, ``unit_roundoff``, ``reference_schedule``).

- ``lucidrains`` or ``lucidrains[key=value,...]``: lucidrains' ``GaussianDiffusion`` with its own
  options and defaults (``timesteps``, ``sampling_timesteps``, ``objective``, ``beta_schedule``,
  ``ddim_sampling_eta``, ``min_snr_loss_weight``, ``min_snr_gamma``; ``image_size`` and ``channels``
  give the data shape) and the checker's network (``adapters.lucidrains``).

The diffusers and guided-diffusion forms also take ``data_shape`` (e.g. ``data_shape=3x32x32``, or ``8`` for vectors),
the shape of one example the checks feed the target; it is not passed to the library.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from .adapters import diffusers_schedulers, guided_diffusion
from .adapters.diffusers_schedulers import (
    DiffusersDDIM,
    DiffusersDDIMInverse,
    DiffusersDDPM,
    looks_like_ddim_scheduler,
    looks_like_ddpm_scheduler,
)
from .adapters.guided_diffusion import GuidedDiffusion, looks_like_gaussian_diffusion
from .adapters.lucidrains import LucidrainsDiffusion, looks_like_lucidrains
from .errors import TargetError, one_line

BUILTIN = ("reference", "diffusers", "diffusers-ddim", "diffusers-ddim-inverse", "guided-diffusion", "lucidrains")
#: the forms of TARGET, for every command's help (the README lists each with its keys)
TARGET_HELP = ("reference, diffusers[key=value,...], diffusers-ddim[...], diffusers-ddim-inverse[...], "
               "guided-diffusion[...], lucidrains[...] (the [...] optional) or package.module:attr")
PROTOCOL_MEMBERS = ("name", "operations", "unit_roundoff", "reference_schedule")


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


def _data_shape(library: str, kwargs: dict, default: tuple[int, ...]) -> tuple[int, ...]:
    """The checker's own option data_shape ("3x32x32" or an int), removed from `kwargs`."""
    if "data_shape" not in kwargs:
        return default
    raw = kwargs.pop("data_shape")
    try:
        shape = tuple(int(n) for n in str(raw).lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise TargetError(f"{library} data_shape={raw!r} is not a shape such as 3x32x32 or 8")
    return shape


DIFFUSERS = {"diffusers": ("DDPMScheduler", DiffusersDDPM), "diffusers-ddim": ("DDIMScheduler", DiffusersDDIM),
             "diffusers-ddim-inverse": ("DDIMInverseScheduler", DiffusersDDIMInverse)}


def _diffusers(kind: str, options: str):
    """A diffusers scheduler of `kind` built with `options`, set to num_inference_steps if given."""
    class_name, adapter = DIFFUSERS[kind]
    try:
        import diffusers
    except ImportError as exc:
        raise TargetError(f"diffusers is not installed ({exc})") from exc
    kwargs = _options(kind, options)
    shape = _data_shape(kind, kwargs, (3, 4, 4))
    steps = kwargs.pop("num_inference_steps", None)
    try:
        scheduler = getattr(diffusers, class_name)(**kwargs)
        if steps is not None:
            scheduler.set_timesteps(steps)
    except Exception as exc:  # noqa: BLE001 - any construction failure is a bad target
        raise TargetError(f"{class_name}({kwargs}){f'.set_timesteps({steps})' if steps is not None else ''} "
                          f"could not be built: {one_line(exc)}") from exc
    return adapter(scheduler, data_shape=shape)


GUIDED_DEFAULTS = {"schedule": "linear", "steps": 1000, "mean_type": "epsilon", "var_type": "fixed_large",
                   "loss_type": "mse", "clip_denoised": True, "timestep_respacing": ""}


def _guided_diffusion(options: str):
    try:
        import guided_diffusion.gaussian_diffusion as gd
    except ImportError as exc:
        raise TargetError(f"guided-diffusion-sdk is not installed ({exc})") from exc
    kwargs = _options("guided-diffusion", options)
    shape = _data_shape("guided-diffusion", kwargs, (4,))
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
    if isinstance(cfg["steps"], bool) or not isinstance(cfg["steps"], int) or cfg["steps"] < 1:
        raise TargetError(f"guided-diffusion steps={cfg['steps']!r} must be a positive integer")
    respacing = str(cfg["timestep_respacing"]).replace("/", ",")     # "10/15/20": commas separate options
    kwargs = dict(betas=gd.get_named_beta_schedule(cfg["schedule"], cfg["steps"]), model_mean_type=members["mean_type"],
                  model_var_type=members["var_type"], loss_type=members["loss_type"])
    try:
        if respacing:
            from guided_diffusion.respace import SpacedDiffusion, space_timesteps
            diffusion = SpacedDiffusion(use_timesteps=space_timesteps(cfg["steps"], respacing), **kwargs)
        else:
            diffusion = gd.GaussianDiffusion(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any construction failure is a bad target
        raise TargetError(f"GaussianDiffusion({cfg}) could not be built: {one_line(exc)}") from exc
    return GuidedDiffusion(diffusion, schedule=cfg["schedule"], clip_denoised=bool(cfg["clip_denoised"]),
                           data_shape=shape, section_counts=respacing or None)


def _lucidrains(options: str):
    from .adapters.lucidrains import build

    kwargs = _options("lucidrains", options)
    known = ("timesteps", "sampling_timesteps", "objective", "beta_schedule", "ddim_sampling_eta",
             "min_snr_loss_weight", "min_snr_gamma", "image_size", "channels")
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TargetError(f"lucidrains has no option {unknown[0]!r}; options: {', '.join(known)}")
    return build(**kwargs)


def _is_target(obj) -> bool:
    return (hasattr(obj, "operations") or looks_like_ddpm_scheduler(obj) or looks_like_ddim_scheduler(obj)
            or looks_like_gaussian_diffusion(obj) or looks_like_lucidrains(obj))


def _ddim_adapter(obj):
    return DiffusersDDIMInverse(obj) if hasattr(obj, "initial_alpha_cumprod") else DiffusersDDIM(obj)


def adapt(obj, spec: str):
    """Wrap `obj` by duck typing: an object with `operations` is taken as a protocol target (and
    validated when checked); TargetError names, for each kind of object, what `obj` lacks."""
    if hasattr(obj, "operations"):
        return obj
    for looks_like, adapter, kind in ((looks_like_ddpm_scheduler, DiffusersDDPM, "a DDPMScheduler"),
                                      (looks_like_ddim_scheduler, _ddim_adapter, "a DDIMScheduler"),
                                      (looks_like_gaussian_diffusion, GuidedDiffusion, "a GaussianDiffusion"),
                                      (looks_like_lucidrains, LucidrainsDiffusion, "a lucidrains GaussianDiffusion")):
        if looks_like(obj):
            try:
                return adapter(obj)
            except TargetError:
                raise
            except Exception as exc:  # noqa: BLE001 - the object has the members but not their meaning
                raise TargetError(f"{spec}: {type(obj).__name__} looks like {kind} but could not be read as one: "
                                  f"{one_line(exc)}") from exc
    protocol = [m for m in PROTOCOL_MEMBERS if not hasattr(obj, m)]
    raise TargetError(f"{spec}: {type(obj).__name__} is none of what a target can be. As a DDPMScheduler-like "
                      f"object it lacks {', '.join(diffusers_schedulers.missing_members(obj))}; as a GaussianDiffusion-"
                      f"like object it lacks {', '.join(guided_diffusion.missing_members(obj))}; as a target of the "
                      f"protocol (ddpm-verify template) it lacks {', '.join(protocol)}")


def resolve(spec: str):
    """The adapter for `spec`; None for the reference itself."""
    if spec == "reference":
        return None
    m = re.fullmatch(r"(diffusers(?:-ddim(?:-inverse)?)?)(?:\[(.*)\])?", spec)
    if m:
        return _diffusers(m.group(1), m.group(2))
    m = re.fullmatch(r"lucidrains(?:\[(.*)\])?", spec)
    if m:
        return _lucidrains(m.group(1))
    m = re.fullmatch(r"guided-diffusion(?:\[(.*)\])?", spec)
    if m:
        return _guided_diffusion(m.group(1))
    if ":" not in spec:
        raise TargetError(f"unknown target {spec!r}; built-in targets: {', '.join(BUILTIN)} "
                          "(or package.module:attr)")
    return adapt(load_object(spec, keep=_is_target), spec)


def load_object(spec: str, keep=lambda obj: False):
    """The object `package.module:attr` names, importable from the current directory as with
    ``python -m``; a callable is called without arguments (a factory) unless `keep(obj)`."""
    module_name, attr = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure makes the target unusable
        raise TargetError(f"cannot import {module_name!r}: {one_line(exc)}") from exc
    if not hasattr(module, attr):
        raise TargetError(f"module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not keep(obj):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - the factory is the target's code
            raise TargetError(f"{spec}() raised {one_line(exc)}") from exc
    return obj
