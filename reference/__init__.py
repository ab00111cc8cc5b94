"""Float64 reference implementation of the DDPM mathematics (the specification: docs/math.md).

Pure NumPy/SciPy functions; paper indexing t = 1..T throughout (see `Schedule` for the one
conversion to 0-based code indices); data of shape (..., d); log-likelihoods and KLs in nats
unless a name says bits per dimension.
"""

from .elbo import (COUPLINGS, DECODERS, VARIANCE_KINDS, ElboEstimate, call_model, decoder_nll, eps_model,
                   forward_trajectories, kl_term, model_variance, nats_to_bits_per_dim, noise_error_weight,
                   neg_elbo_kl_estimator, neg_elbo_trajectory_estimator, prior_term)
from .ddim import ddim_coefficients, ddim_invert, ddim_sigma, ddim_step
from .forward import q_sample, q_xt_given_x0, q_xt_given_xs, q_xt_given_xtm1
from .gaussian_data import GaussianData
from .gaussian import (BIN_HALF_WIDTH, DiagonalNormal, discretized_gaussian_log_likelihood,
                       grid_levels, kl_normal, normal_log_density, u_minus_log1p)
from .loss_weights import WEIGHTINGS, loss_weight, snr
from .oracles import GaussianMixture, LinearGaussianChain
from .parameterisations import (dynamic_threshold, eps_from_score, eps_from_v, eps_from_x0, score_from_eps,
                                v_from_x0_eps, x0_and_eps, x0_from_eps, x0_from_v)
from .posterior import posterior_mean, posterior_mean_from_eps, q_posterior, x0_from_posterior_mean
from .respacing import SPACINGS, diffusers_timesteps, lucidrains_timesteps, respace, space_timesteps
from .schedules import (Schedule, cosine, linear, log1mexp, scaled_linear, sigmoid, sigmoid_alpha_bar,
                        zero_terminal_snr)

__all__ = [
    "Schedule", "linear", "cosine", "scaled_linear", "sigmoid", "sigmoid_alpha_bar", "zero_terminal_snr", "log1mexp",
    "q_xt_given_x0", "q_sample", "q_xt_given_xtm1", "q_xt_given_xs",
    "posterior_mean", "posterior_mean_from_eps", "q_posterior", "x0_from_posterior_mean",
    "x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v", "x0_and_eps", "score_from_eps",
    "eps_from_score", "dynamic_threshold",
    "DiagonalNormal", "normal_log_density", "kl_normal", "discretized_gaussian_log_likelihood",
    "grid_levels", "u_minus_log1p", "BIN_HALF_WIDTH",
    "model_variance", "eps_model", "call_model", "prior_term", "kl_term", "decoder_nll",
    "nats_to_bits_per_dim", "noise_error_weight", "ElboEstimate", "neg_elbo_kl_estimator",
    "neg_elbo_trajectory_estimator", "forward_trajectories", "VARIANCE_KINDS", "DECODERS", "COUPLINGS",
    "LinearGaussianChain", "GaussianMixture", "GaussianData",
    "respace", "diffusers_timesteps", "space_timesteps", "lucidrains_timesteps", "SPACINGS",
    "ddim_coefficients", "ddim_sigma", "ddim_step", "ddim_invert", "WEIGHTINGS", "loss_weight", "snr",
]
