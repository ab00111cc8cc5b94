"""Power of the suite: every deliberately broken variant of the reference is caught.

Each mutant of properties.support.mutants (a realistic bug: abar_{t-1} off by one, a missing square
root, a KL with swapped arguments, nats reported as bits, ...) is installed in turn, and a set
of named properties of this suite is run against the broken reference. A property *catches* a
mutant when it fails with an AssertionError; errors of other kinds are shown as E and do not
count. The test prints the matrix and asserts that each mutant is caught at least once, and
that no property fails on the intact reference (the controls).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hypothesis import HealthCheck, Phase, settings

from ddpm_verify import stats
from properties.support.mutants import MUTANTS
from properties import (test_elbo_estimators, test_elbo_identities, test_elbo_monte_carlo, test_forward,
                        test_gaussian, test_oracles, test_parameterisations, test_posterior, test_precision,
                        test_seeds)

# Hypothesis properties run here with their @example cases and 8 derandomised draws, unshrunk
FEW = settings(max_examples=8, derandomize=True, database=None, deadline=None,
               phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
PROPERTIES = [
    test_forward.test_iterated_kernel_equals_closed_form_marginal,
    test_forward.test_q_sample_is_mean_plus_sqrt_variance_times_noise,
    test_posterior.test_bayes_identity_holds_pointwise,
    test_posterior.test_noise_form_equals_x0_form_on_forward_samples,
    test_parameterisations.test_v_round_trips,
    test_parameterisations.test_score_from_eps_of_the_optimal_noise_is_the_gaussian_score,
    test_gaussian.test_kl_equals_torch_kl_divergence,
    test_gaussian.test_discretized_decoder_masses_sum_to_one,
    test_elbo_identities.test_trajectory_log_likelihood_telescopes,
    test_elbo_identities.test_kl_term_is_weighted_noise_error_plus_constant,
    test_elbo_identities.test_prior_term_is_kl_of_forward_marginal_to_standard_normal,
    test_seeds.test_erratum_seed003_2_6_L0_weight_has_no_extra_factor_2,
]


def _precision_catchers():
    """One catcher per registered precision check, on its T = 10 case of each schedule family
    (or its first case where it has no schedule)."""
    out = {}
    for name, (cases, fn) in test_precision.CHECKS.items():
        small = [c for c in cases if getattr(c, "T", 0) == 10] or cases[:1]
        def run(fn=fn, cases=tuple(small)):
            test_precision.clear_caches()
            for case in cases:
                m = fn(case)
                assert m.ok, m.message()
        out[f"precision:{name}"] = run
    return out


CATCHERS = {
    **_precision_catchers(),
    **{f"{fn.__module__.rsplit('.', 1)[-1].removeprefix('test_')}:{fn.__name__.removeprefix('test_')}": FEW(fn)
       for fn in PROPERTIES},
    "oracles:chain_gap": lambda: test_oracles.test_chain_gap_equals_log_likelihood_minus_elbo(10, 0),
    "oracles:mixture_log_prob": lambda: test_oracles.test_mixture_log_prob_matches_scipy(0),
    "oracles:mixture_tweedie": test_oracles.test_mixture_tweedie_and_optimal_eps,
    "elbo:kl_estimator_vs_exact": lambda: test_elbo_estimators.test_estimator_mean_matches_exact_neg_elbo(
        "linear-50", "kl"),
    "elbo:trajectory_vs_exact": lambda: test_elbo_estimators.test_estimator_mean_matches_exact_neg_elbo(
        "linear-50", "trajectory"),
    "elbo:kl_trajectory_coupling_vs_exact":
        lambda: test_elbo_monte_carlo.test_estimators_match_exact_elbo_of_linear_gaussian_chain("kl-trajectory", 25),
}


def _outcome(catcher) -> str:
    try:
        catcher()
    except AssertionError:
        return "X"
    except Exception:  # noqa: BLE001 - shown as E in the matrix, not counted as a catch
        return "E"
    return "."


@pytest.fixture(scope="module")
def matrix():
    controls = {name: _outcome(c) for name, c in CATCHERS.items()}
    rows = {}
    for mutant in MUTANTS:
        # a broken variant may divide by zero or overflow: its warnings are not the suite's
        with mutant.active(), np.errstate(all="ignore"), warnings.catch_warnings(), stats.unobserved():
            warnings.simplefilter("ignore")
            rows[mutant.name] = {name: _outcome(c) for name, c in CATCHERS.items()}
    test_precision.clear_caches()
    return controls, rows


def test_controls_pass_on_the_intact_reference(matrix):
    controls, _ = matrix
    failing = [name for name, o in controls.items() if o != "."]
    assert not failing, f"properties failing on the intact reference: {failing}"


def test_every_mutant_is_caught_by_a_named_property(matrix, capsys):
    _, rows = matrix
    with capsys.disabled():
        print("\n\nself-check: which property (X) caught which broken variant (E = error, not counted)")
        for mutant, outcomes in rows.items():
            caught = [name for name, o in outcomes.items() if o == "X"]
            errors = [name for name, o in outcomes.items() if o == "E"]
            print(f"  {mutant:34s} caught by {len(caught):3d}: {', '.join(caught[:6])}"
                  f"{' ...' if len(caught) > 6 else ''}{f'  [E: {len(errors)}]' if errors else ''}")
    missed = [m for m, outcomes in rows.items() if "X" not in outcomes.values()]
    assert len(rows) >= 15
    assert not missed, f"mutants caught by no property: {missed}"
