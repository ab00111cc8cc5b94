"""Adapters: the one interface through which a third-party implementation is checked.

`protocol` defines the interface (every attribute and method a check reads, validated by
`declare` before any check runs); `diffusers_schedulers` and `guided_diffusion` adapt those
libraries' objects to it, translating their 0-based timestep indices to paper t = 1..T and
their units to nats per example, each in one place; `template` is a complete adapter of a
plain NumPy DDPM, printed by `ddpm-verify template`, to start your own from.
"""

from .protocol import LEARNED_VARIANCES, OPERATIONS, PREDICTION_TYPES, VARIANCE_TYPES, Checked, declare

__all__ = ["LEARNED_VARIANCES", "OPERATIONS", "PREDICTION_TYPES", "VARIANCE_TYPES", "Checked", "declare"]
