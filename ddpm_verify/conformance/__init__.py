"""Checks of a `Target` (ddpm_verify.adapters) against the float64 reference.

`CHECKS` lists (operation, check) pairs; `run(target)` runs every check whose operation the
target provides and skips the rest with a reason naming the target and the operation.
"""

from __future__ import annotations

from collections.abc import Callable

from . import forward, likelihood, reverse
from ._core import SEED, CheckResult, compare

CHECKS: list[tuple[str, Callable]] = [
    ("schedule", forward.check_betas),
    ("schedule", forward.check_alpha_bar),
    ("q_marginal", forward.check_q_marginal),
    ("q_sample", forward.check_q_sample),
    ("q_sample_random", forward.check_q_sample_distribution),
    ("velocity", forward.check_velocity),
    ("conversions", forward.check_conversions),
    ("posterior", forward.check_posterior),
    ("previous_t", reverse.check_previous_t),
    ("model_variance", reverse.check_model_variance),
    ("p_mean_variance", reverse.check_p_mean_variance),
    ("reverse_step", reverse.check_reverse_step),
    ("reverse_step", reverse.check_reverse_step_distribution),
    ("reverse_step", reverse.check_last_step_noiseless),
    ("vlb_terms", likelihood.check_vlb_terms),
    ("prior", likelihood.check_prior),
    ("total_bpd", likelihood.check_total_bpd),
    ("training_loss", likelihood.check_training_loss),
]


def check_name(fn: Callable) -> str:
    return fn.__name__.removeprefix("check_")


def run_check(target, operation: str, fn: Callable) -> CheckResult:
    """One check; skipped with a reason when the target lacks its operation."""
    if operation not in target.operations:
        return CheckResult(check_name(fn), "skip",
                           detail=f"{target.name} does not provide the operation {operation!r}")
    return fn(target)


def run(target) -> list[CheckResult]:
    """Every check, in the order of `CHECKS`."""
    return [run_check(target, op, fn) for op, fn in CHECKS]


__all__ = ["CHECKS", "SEED", "CheckResult", "check_name", "compare", "run", "run_check"]
