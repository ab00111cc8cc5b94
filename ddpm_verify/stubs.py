"""Stand-ins for modules a diffusion codebase imports but its math never uses.

Many repositories import torchvision, tensorboard, wandb or their trainer's packages at module
level, next to the diffusion code. `stub_missing("torchvision", "torch.utils.tensorboard")` puts
a stub in `sys.modules` for each of those names that cannot be imported (and only for those):
importing the code then works, and every attribute or call of a stub raises a RuntimeError
naming it, so a math path that did use one makes its check an ``error``, never a pass.
"""

from __future__ import annotations

import importlib
import sys
import types

#: submodules stubbed with each stubbed package (`from torchvision import transforms`)
SUBMODULES = ("transforms", "utils", "datasets")


class Unavailable:
    """Stands in for an attribute of a module that could not be imported; any use raises."""

    def __init__(self, name: str):
        self._name = name

    def _fail(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is not installed: ddpm-verify put a stub in its place to import "
                           "the diffusion code, and this code path uses it")

    __call__ = _fail

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Unavailable(f"{self._name}.{attr}")


def stub(name: str) -> types.ModuleType:
    """A module named `name` whose every attribute is an `Unavailable`."""
    module = types.ModuleType(name, f"stub of {name} (not installed), put in place by ddpm-verify")

    def attribute(attr):                                                   # PEP 562
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Unavailable(f"{name}.{attr}")
    module.__getattr__ = attribute
    module.__path__ = []                                                   # allows `from name import sub`
    return module


def stub_missing(*names: str) -> list[str]:
    """Stub each module of `names` that cannot be imported (with its `SUBMODULES`); the names stubbed."""
    stubbed = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"names: each must be a module name; got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules.setdefault(name, stub(name))
            for sub in SUBMODULES:
                sys.modules.setdefault(f"{name}.{sub}", stub(f"{name}.{sub}"))
            stubbed.append(name)
    return stubbed
