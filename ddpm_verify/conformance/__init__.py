"""Checks of a target against the float64 reference, and the runner that keeps outcomes apart.

`CHECKS` lists each check with the operation it needs and its title. `run(target)` validates
the target (`adapters.protocol.declare`), runs every check, and returns the results followed
by the conventions the target declares and its options that change nothing checked:

- a check whose operation the target lacks is ``skip``, with a reason;
- the target raising on the check's (valid) input is ``error``, one line naming the operation,
  the exception and the timesteps at which it raises;
- a wrong output (shape, dtype) is ``fail``, as is any value beyond its budget;
- an exception of ddpm-verify's own raises `InternalError` (exit status 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from reference.conventions import Variance

from ..adapters.protocol import OPERATIONS, Checked, declare
from ..errors import InternalError, TargetRaised, WrongOutput
from ..results import Result
from . import forward, likelihood, reverse, strided
from .budgets import TANH_CDF_ERROR
from .model import processes_x0


@dataclass(frozen=True)
class Check:
    operation: str
    fn: Callable
    title: str

    @property
    def name(self) -> str:
        return self.fn.__name__.removeprefix("check_")


CHECKS: list[Check] = [
    Check("betas", forward.check_betas, "schedule: beta_t"),
    Check("alpha_bar", forward.check_alpha_bar, "schedule: abar_t"),
    Check("q_mean", forward.check_q_mean, "forward: q(x_t | x_0) mean"),
    Check("q_variance", forward.check_q_variance, "forward: q(x_t | x_0) variance"),
    Check("q_log_variance", forward.check_q_log_variance, "forward: q(x_t | x_0) log-variance"),
    Check("q_sample", forward.check_q_sample, "forward: q_sample with given noise"),
    Check("q_sample_random", forward.check_q_sample_distribution, "forward: q_sample's own noise is N(0, I)"),
    Check("velocity", forward.check_velocity, "parameterisation: v"),
    Check("x0_from_eps", forward.check_x0_from_eps, "parameterisation: x0 from eps"),
    Check("eps_from_x0", forward.check_eps_from_x0, "parameterisation: eps from x0"),
    Check("posterior_mean", forward.check_posterior_mean, "posterior: mean"),
    Check("posterior_variance", forward.check_posterior_variance, "posterior: variance (t >= 2)"),
    Check("posterior_log_variance", forward.check_posterior_log_variance, "posterior: log-variance"),
    Check("previous_t", reverse.check_previous_t, "reverse: previous timestep = t - 1"),
    Check("predict_x0", reverse.check_predict_x0, "reverse: x0_hat"),
    Check("p_mean", reverse.check_p_mean, "reverse: mean of p_theta"),
    Check("p_variance", reverse.check_p_variance, "reverse: variance of p_theta (t >= 2)"),
    Check("p_log_variance", reverse.check_p_log_variance, "reverse: log-variance of p_theta"),
    Check("reverse_step", reverse.check_reverse_step, "reverse: step"),
    Check("reverse_step", reverse.check_reverse_step_distribution, "reverse: the step's noise is N(0, sigma_t^2 I)"),
    Check("reverse_step", reverse.check_last_step_noiseless, "reverse: the last step (t = 1) adds no noise"),
    Check("vlb_term", likelihood.check_vlb_terms, "likelihood: VLB terms L_{t-1} and decoder NLL (nats)"),
    Check("prior_term", likelihood.check_prior, "likelihood: prior term L_T (nats)"),
    Check("total_bpd", likelihood.check_total_bpd, "likelihood: total bound (nats)"),
    Check("training_loss", likelihood.check_training_loss, "loss: training loss"),
    Check("timesteps", strided.check_timesteps, "strided: the timesteps each sampler visits"),
    Check("strided_previous_t", strided.check_strided_previous_t, "strided: each step goes to the next timestep"),
    Check("respaced_betas", strided.check_respaced_betas, "strided: respaced betas"),
    Check("model_timestep", strided.check_model_timestep, "strided: the network gets the training timestep"),
    Check("strided_step", strided.check_strided_step, "strided: DDPM step on the respaced chain"),
    Check("strided_variance", strided.check_strided_variance, "strided: variance of that step (s >= 1)"),
    Check("strided_step", strided.check_strided_step_distribution, "strided: the step's noise is N(0, sigma'^2 I)"),
    Check("ddim_step", strided.check_ddim_step, "DDIM: step with eta"),
    Check("ddim_step", strided.check_ddim_deterministic, "DDIM: eta = 0 adds no noise"),
    Check("ddim_step", strided.check_ddim_step_distribution, "DDIM: the step's noise is N(0, sigma^2 I)"),
    Check("ddim_invert", strided.check_ddim_invert, "DDIM: inversion (eta = 0 run forward)"),
    Check("ddim_loop", strided.check_ddim_loop, "DDIM: every step of a whole sampler run"),
]


def checked(target) -> Checked:
    """`target` validated against the protocol (TargetError, exit 2, when it cannot be checked)."""
    return target if isinstance(target, Checked) else declare(target)


def run_check(target: Checked, check: Check) -> Result:
    """One check, its outcome kept apart: skip, error, fail, note or pass."""
    if check.operation not in target.operations:
        result = Result(check.title, "skip", detail=f"{target.name} does not provide the operation "
                                                    f"{check.operation!r}")
    else:
        try:
            result = check.fn(target)
        except TargetRaised as exc:
            result = Result(check.title, "error", detail=str(exc), traceback=exc.traceback)
        except WrongOutput as exc:
            result = Result(check.title, "fail", detail=str(exc))
        except InternalError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything else is a bug of ours
            raise InternalError(f"check {check.name} of {target.name}", exc) from exc
    result.name, result.operation = check.title, check.operation
    return result


def _convention(name: str, detail: str) -> Result:
    return Result(f"convention: {name}", "convention", detail=detail)


def conventions(target: Checked) -> list[Result]:
    """The conventions the target declares, for the operations it provides."""
    ops = target.operations
    model = any(OPERATIONS[op].model for op in ops)
    lines = []
    uses_log_variance = ops & {"p_variance", "p_log_variance", "reverse_step", "vlb_term", "total_bpd",
                               "training_loss", "strided_step", "strided_variance"}
    if "posterior_log_variance" in ops or (uses_log_variance and target.variance_type in (Variance.FIXED_SMALL,
                                                                                           Variance.LEARNED_RANGE)):
        text = {"clipped": "kept finite as log beta_tilde_2 (improved DDPM's clip); compared with that value",
                "floor": f"kept finite by a floor on the variance, log({target.variance_floor:g}) = "
                         f"{math.log(target.variance_floor):.4g}; compared with that value",
                "-inf": "left at -inf; compared with -inf",
                "absent": "not computed; not compared at t = 1"}[target.log_variance_at_1]
        lines.append(_convention("t = 1 log-variance", f"log beta_tilde_1 = -inf (beta_tilde_1 = 0): {text}. At "
                                 "t = 1 no noise is added; every t >= 2 is compared as the math says"))
    if model and target.variance_type == Variance.FIXED_LARGE and target.large_variance_at_1 == "beta_tilde_2":
        lines.append(_convention("fixed-large variance at t = 1",
                                 "sigma_1^2 = beta_tilde_2 (improved DDPM), not beta_1; t >= 2 use beta_t"))
    if model and target.thresholding is not None:
        ratio, max_value = target.thresholding
        lines.append(_convention("x0_hat thresholding",
                                 f"dynamic thresholding (Imagen: quantile {ratio:g} of |x0_hat| per example, "
                                 f"clamped to [1, {max_value:g}]), compared with reference.dynamic_threshold"))
    elif model and target.clip_sample:
        lines.append(_convention("x0_hat clipping", f"x0_hat clipped to [-{target.clip_range:g}, "
                                                    f"{target.clip_range:g}] before the posterior mean"))
    if target.normal_cdf == "tanh" and ops & {"vlb_term", "total_bpd", "training_loss"}:
        lines.append(_convention("normal CDF", f"the tanh approximation (error <= {TANH_CDF_ERROR:g}); decoder "
                                               "errors within its budget are notes"))
    if target.step_counts:
        rule = target.timestep_rule + (f" {target.section_counts}" if target.timestep_rule == "space_timesteps" else "")
        lines.append(_convention("inference steps", f"samplers of n = {', '.join(map(str, target.step_counts))} steps "
                                                    f"checked, timesteps by the {rule} rule"))
    if ops & {"ddim_step", "ddim_invert"} and target.final_alpha_bar == "abar_1":
        lines.append(_convention("DDIM's last step", "goes to abar_1, not abar_0 = 1 (set_alpha_to_one=False)"))
    if ops & {"ddim_step", "ddim_invert"} and target.ddim_eps == "unclipped" and processes_x0(target):
        lines.append(_convention("DDIM's eps_hat", "the model's own noise prediction, not the one the clipped "
                                                   "x0_hat implies (use_clipped_model_output=False)"))
    if target.betas_recomputed and "betas" in ops:
        lines.append(_convention("betas from abar ratios", "betas recomputed as 1 - abar_t / abar_{t-1} from the "
                                                           "tables (improved-diffusion's SpacedDiffusion); budgeted"))
    return lines


def option_notes(target: Checked) -> list[Result]:
    """A note for each option of the target that changes nothing the checks test."""
    return [Result(f"option {option}", "note", detail=f"changes nothing these checks test: {reason}")
            for option, reason in target.inert_options.items()]


def run(target) -> list[Result]:
    """Every check in the order of `CHECKS`, then the conventions and the inert options."""
    target = checked(target)
    return [run_check(target, c) for c in CHECKS] + conventions(target) + option_notes(target)


__all__ = ["CHECKS", "Check", "checked", "conventions", "option_notes", "run", "run_check"]
