"""Resolve a TARGET string to a `Target` adapter (the same rules for the CLI and pytest).

- ``reference``: the float64 reference itself (checked by the property suite).
- ``diffusers`` or ``diffusers[key=value,...]``: a stock ``diffusers.DDPMScheduler`` built with
  those config values, e.g. ``diffusers[variance_type=fixed_large,clip_sample=false]``.
- ``package.module:attr``: an object, or a zero-argument callable returning one, that is
  DDPMScheduler-like (``add_noise``, ``step``, ``alphas_cumprod``, ``config``) or implements the
  adapter protocol (``operations``, ``reference_schedule``, ``unit_roundoff``).
"""

from __future__ import annotations

import importlib
import re

from .adapters.diffusers_ddpm import DiffusersDDPM, looks_like_ddpm_scheduler

BUILTIN = ("reference", "diffusers")


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


def _diffusers(options: str):
    try:
        from diffusers import DDPMScheduler
    except ImportError as exc:
        raise TargetError(f"diffusers is not installed ({exc})") from exc
    kwargs = {}
    for item in filter(None, (options or "").split(",")):
        if "=" not in item:
            raise TargetError(f"diffusers option {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        kwargs[key.strip()] = _value(value.strip())
    try:
        return DiffusersDDPM(DDPMScheduler(**kwargs))
    except Exception as exc:  # noqa: BLE001 - any construction failure is a bad target
        raise TargetError(f"DDPMScheduler({kwargs}) could not be built: {exc}") from exc


def adapt(obj, spec: str):
    """Wrap `obj` by duck typing; TargetError lists what was looked for."""
    if looks_like_ddpm_scheduler(obj):
        return DiffusersDDPM(obj)
    if all(hasattr(obj, a) for a in ("operations", "reference_schedule", "unit_roundoff", "name")):
        return obj
    raise TargetError(f"{spec}: {type(obj).__name__} is none of what a target can be: a DDPMScheduler-like "
                      "object (add_noise, step, alphas_cumprod, config) or an adapter (name, operations, "
                      "reference_schedule, unit_roundoff)")


def resolve(spec: str):
    """The adapter for `spec`; None for the reference itself."""
    if spec == "reference":
        return None
    m = re.fullmatch(r"diffusers(?:\[(.*)\])?", spec)
    if m:
        return _diffusers(m.group(1))
    if ":" not in spec:
        raise TargetError(f"unknown target {spec!r}; built-in targets: {', '.join(BUILTIN)} "
                          "(or package.module:attr)")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError or an error raised while importing
        raise TargetError(f"cannot import {module_name!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise TargetError(f"module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not looks_like_ddpm_scheduler(obj) and not hasattr(obj, "operations"):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001
            raise TargetError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc
    return adapt(obj, spec)
