"""The names of the choices the math leaves to the code: one vocabulary for the reference, the
adapters, the checks and the model (docs/math.md §1, §6).

Each class is a namespace of string constants (the strings are what users write in a
declaration or a TARGET string), with tuples of the names each layer accepts.
"""

from __future__ import annotations


class Variance:
    """sigma_t^2 of the reverse model p_theta(x_{t-1} | x_t) (docs/math.md §6.1)."""

    FIXED_SMALL = "fixed_small"                    # beta_tilde_t, the posterior variance
    FIXED_LARGE = "fixed_large"                    # beta_t
    LEARNED_RANGE = "learned_range"                # exp(v log beta_t + (1 - v) log beta_tilde_t), v in [0, 1]
    LEARNED_LOG_VARIANCE = "learned_log_variance"  # the network outputs log sigma_t^2
    LEARNED_VARIANCE = "learned_variance"          # the network outputs sigma_t^2
    FIXED = (FIXED_SMALL, FIXED_LARGE)
    REFERENCE = (FIXED_SMALL, FIXED_LARGE, LEARNED_RANGE)          # computed by reference.model_variance
    LEARNED = (LEARNED_RANGE, LEARNED_LOG_VARIANCE, LEARNED_VARIANCE)
    ALL = REFERENCE + (LEARNED_LOG_VARIANCE, LEARNED_VARIANCE)


class Prediction:
    """What a network's output (or a loss's regression target) is (docs/math.md §5)."""

    EPSILON = "epsilon"                            # the noise eps
    SAMPLE = "sample"                              # x_0
    V = "v_prediction"                             # v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
    PREVIOUS_X = "previous_x"                      # the posterior mean mu_tilde_t itself
    REFERENCE = (EPSILON, SAMPLE, V)               # each converts to the others at every t
    ALL = REFERENCE + (PREVIOUS_X,)


class Timesteps:
    """What code passes the network for the paper timestep t = 1..T (docs/math.md §1)."""

    INDEX = "index"                                # t - 1, 0..T-1 (alphas_cumprod[i] = abar_{i+1})
    PAPER = "paper"                                # t, 1..T
    FRACTION = "fraction"                          # t / T
    ALL = (INDEX, PAPER, FRACTION)
